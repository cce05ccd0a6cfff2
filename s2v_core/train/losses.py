"""Contrastive losses: DASH-InfoNCE and plain InfoNCE over time-aligned tokens (METHOD.md §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "dash_infonce",
    "dash_weights",
    "info_nce",
]


def dash_weights(
    age: Tensor,
    sex: Tensor,
    site: Tensor,
    night_id: Tensor,
    *,
    age_bandwidth: float = 20.0,
    sex_diff_factor: float = 0.8,
    site_same: float = 1.3,
    site_diff: float = 0.8,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Raw (not yet row-normalised) negative weights and same-night indicator.

    ``k_ij = clamp(exp(-|age_i - age_j| / age_bandwidth) * sex_ij, 0, 1)`` with
    ``sex_ij = 1`` for the same sex and ``sex_diff_factor`` otherwise; ``w_ij = k_ij * site_ij +
    eps`` with ``site_ij = site_same`` or ``site_diff``. A factor is neutral (1) when either
    window's value is unknown (age NaN, sex -1, site -1): missing metadata neither up- nor
    down-weights a negative. Same-night pairs (j != i) get ``w = eps`` and ``h = 1``; the
    diagonal gets ``w = 1``, ``h = 0``.

    Parameters
    ----------
    age : Tensor, shape (N,), float, years (NaN = unknown)
    sex : Tensor, shape (N,), long (-1 unknown, 0 female, 1 male)
    site : Tensor, shape (N,), long (-1 unknown)
    night_id : Tensor, shape (N,), long; windows of the same night share it

    Returns
    -------
    weights : Tensor, shape (N, N), float32
    same_night : Tensor, shape (N, N), bool; True for j != i of the same night (h_ij = 1)
    """
    age = age.float()
    known_age = ~torch.isnan(age)
    both_age = known_age[:, None] & known_age[None, :]
    gap = (age[:, None] - age[None, :]).abs()
    k_age = torch.where(both_age, torch.exp(-gap.nan_to_num(0.0) / age_bandwidth), 1.0)
    both_sex = (sex[:, None] >= 0) & (sex[None, :] >= 0)
    same_sex = sex[:, None] == sex[None, :]
    k_sex = torch.where(both_sex & ~same_sex, sex_diff_factor, 1.0)
    k = (k_age * k_sex).clamp(0.0, 1.0)
    both_site = (site[:, None] >= 0) & (site[None, :] >= 0)
    same_site = site[:, None] == site[None, :]
    site_factor = torch.where(both_site, torch.where(same_site, site_same, site_diff), 1.0)
    weights = k * site_factor + eps
    eye = torch.eye(age.shape[0], dtype=torch.bool, device=age.device)
    same_night = (night_id[:, None] == night_id[None, :]) & ~eye
    weights = torch.where(same_night, eps, weights)
    weights = torch.where(eye, 1.0, weights)
    return weights, same_night


def _directional_loss(
    sim: Tensor, log_w: Tensor, margin: Tensor, valid_t: Tensor, tau: float
) -> Tensor:
    """Sum of ``loss_i,t`` over valid anchors; ``sim`` (T, N, N) is anchor x candidate.

    ``-log(e^p / (e^p + sum_neg e^l)) = softplus(logsumexp_neg(l - p))``: this form keeps float32
    precision when the loss is small (no ``log(big) - big`` cancellation).
    """
    N = sim.shape[-1]
    eye = torch.eye(N, dtype=torch.bool, device=sim.device)
    positive = torch.diagonal(sim, dim1=1, dim2=2) / tau  # (T, N)
    logits = (sim - margin) / tau + log_w - positive[..., None]  # (T, N, N), relative to positive
    # only valid negatives count; a finite fill keeps gradients finite on empty rows
    negatives = valid_t[:, None, :] & ~eye  # (T, N, N)
    logits = logits.masked_fill(~negatives, torch.finfo(logits.dtype).min / 4)
    per_anchor = F.softplus(torch.logsumexp(logits, dim=-1))  # (T, N); 0 without negatives
    return per_anchor.masked_fill(~valid_t, 0.0).sum()


def dash_infonce(
    za: Tensor,
    zb: Tensor,
    valid: Tensor,
    age: Tensor,
    sex: Tensor,
    site: Tensor,
    night_id: Tensor,
    *,
    tau: float = 0.2,
    age_bandwidth: float = 20.0,
    sex_diff_factor: float = 0.8,
    site_same: float = 1.3,
    site_diff: float = 0.8,
    eps: float = 1e-6,
    margin: float = 0.5,
    weighting: bool = True,
) -> Tensor:
    """DASH-InfoNCE between two modalities' time-aligned embeddings of the same windows.

    For each time step t, with ``s_ij = <za_i,t, zb_j,t>``::

        loss_i,t = -log( exp(s_ii / tau) / sum_j w_ij exp((s_ij - margin * h_ij) / tau) )

    averaged over anchors ``i`` valid at ``t`` and symmetrised (a -> b and b -> a). Only
    candidates valid at ``t`` enter the sum. Weights come from :func:`dash_weights`; for each
    anchor and time step the negatives' weights are rescaled so that their mean over the valid
    negatives from other nights is 1, and ``w_ii = 1``. Windows of the anchor's own night are
    false negatives: they keep a weight of order ``eps`` (and the margin), are left out of that
    mean, and so stay effectively removed even when a row has no other negative.

    Unknown metadata (age NaN, sex -1, site -1) make the corresponding factor neutral (1).

    The loss is always >= 0: the positive term is part of the denominator with weight 1, so the
    ratio is <= 1. It is exactly 0 when no anchor has a valid negative (e.g. N = 1).

    Parameters
    ----------
    za, zb : Tensor, shape (N, T, D)
        L2-normalised projections of modalities a and b; row i of both is the same window.
    valid : Tensor, shape (N, T), bool
        False at padding.
    age : Tensor, shape (N,), float, years (NaN = unknown)
    sex : Tensor, shape (N,), long (-1 unknown, 0 female, 1 male)
    site : Tensor, shape (N,), long (-1 unknown)
    night_id : Tensor, shape (N,), long; windows of the same night share it
    tau : float
        Temperature.
    age_bandwidth, sex_diff_factor, site_same, site_diff, eps, margin : float
        DASH factors (METHOD.md section 4 defaults).
    weighting : bool
        False gives plain InfoNCE: every weight 1, no margin, metadata ignored.

    Returns
    -------
    Tensor, shape (), the mean loss (0 when no position is valid).

    Examples
    --------
    >>> za = torch.nn.functional.normalize(torch.randn(4, 3, 8), dim=-1)
    >>> valid = torch.ones(4, 3, dtype=torch.bool)
    >>> unknown = torch.full((4,), -1)
    >>> loss = dash_infonce(za, za, valid, torch.full((4,), float("nan")), unknown, unknown,
    ...                     torch.arange(4))
    >>> bool(loss >= 0)
    True
    """
    N, T, _ = za.shape
    if zb.shape != za.shape or valid.shape != (N, T):
        raise ValueError(
            f"za {tuple(za.shape)}, zb {tuple(zb.shape)} and valid {tuple(valid.shape)} "
            "must be (N, T, D), (N, T, D) and (N, T)"
        )
    for name, meta in (("age", age), ("sex", sex), ("site", site), ("night_id", night_id)):
        if meta.shape != (N,):
            raise ValueError(f"{name} must have shape ({N},), got {tuple(meta.shape)}")
    valid_t = valid.t().bool()  # (T, N)
    n_anchors = valid_t.sum()  # stays on the device: a batch without anchors has every term 0
    sim = torch.einsum("itd,jtd->tij", za.float(), zb.float())  # (T, N, N)
    eye = torch.eye(N, dtype=torch.bool, device=za.device)
    if weighting:
        weights, same_night = dash_weights(
            age.to(za.device),
            sex.to(za.device),
            site.to(za.device),
            night_id.to(za.device),
            age_bandwidth=age_bandwidth,
            sex_diff_factor=sex_diff_factor,
            site_same=site_same,
            site_diff=site_diff,
            eps=eps,
        )
        # True negatives: j != i, valid at t, and from another night. Same-night windows are
        # false negatives: they keep weight ~eps and stay out of the normalisation.
        negatives = valid_t[:, None, :] & ~eye & ~same_night  # (T, N, N)
        neg_w = weights * negatives  # (T, N, N)
        n_neg = negatives.sum(dim=-1, keepdim=True)  # (T, N, 1)
        mean_w = torch.where(
            n_neg > 0, neg_w.sum(dim=-1, keepdim=True) / n_neg.clamp_min(1), 1.0
        )  # (T, N, 1)
        row_w = torch.where(eye, 1.0, weights / mean_w.clamp_min(torch.finfo(torch.float32).tiny))
        log_w = row_w.log()  # (T, N, N)
        margin_t = same_night.float() * margin  # (N, N)
    else:
        log_w = torch.zeros(1, N, N, device=za.device)
        margin_t = torch.zeros(N, N, device=za.device)
    # b -> a uses the transposed similarities; weights and margins are symmetric in (i, j)
    # before row normalisation, and the normalisation depends only on the anchor's row
    loss_ab = _directional_loss(sim, log_w, margin_t, valid_t, tau)
    loss_ba = _directional_loss(sim.transpose(1, 2), log_w, margin_t, valid_t, tau)
    return (loss_ab + loss_ba) / (2 * n_anchors.clamp_min(1))


def info_nce(za: Tensor, zb: Tensor, valid: Tensor, *, tau: float = 0.2) -> Tensor:
    """Plain symmetric InfoNCE over time-aligned tokens (the paper's baseline).

    Same as :func:`dash_infonce` with ``weighting=False``: at each time step, window i's token
    in modality a must pick window i's token in modality b among all valid windows.

    Parameters
    ----------
    za, zb : Tensor, shape (N, T, D), L2-normalised
    valid : Tensor, shape (N, T), bool

    Returns
    -------
    Tensor, shape ()
    """
    N = za.shape[0]
    unknown = torch.full((N,), -1, dtype=torch.long, device=za.device)
    nan = torch.full((N,), float("nan"), device=za.device)
    return dash_infonce(
        za, zb, valid, nan, unknown, unknown, torch.arange(N, device=za.device),
        tau=tau, weighting=False,
    )  # fmt: skip
