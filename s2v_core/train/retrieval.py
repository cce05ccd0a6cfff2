"""Validation: pairwise cross-modal retrieval accuracy, per modality pair.

For a pair (a, b) and a set of windows, at every time step t each valid window's token in
modality a must find the same window's token in modality b (highest cosine similarity among
the windows valid at t), and vice versa. Chance is ``1 / n_candidates``. The per-pair table is
what model selection uses (its mean) and what the app draws as a heatmap.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from s2v_core.model.sleep2vec import Sleep2Vec
from s2v_core.train.windows import WindowDataset

__all__ = [
    "RETRIEVAL_COLUMNS",
    "RetrievalScore",
    "choose_pair_windows",
    "pairwise_retrieval",
    "retrieval_accuracy",
]

log = logging.getLogger(__name__)

RETRIEVAL_COLUMNS = ("pair", "modality_a", "modality_b", "accuracy", "chance", "n", "loss")
"""Columns of the per-pair table (``retrieval.csv``)."""

LossFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


class RetrievalScore(NamedTuple):
    """Top-1 retrieval over anchor positions, averaged over both directions."""

    accuracy: float  # share of (anchor, t) whose best match is itself (NaN when n == 0)
    chance: float  # mean of 1 / n_candidates over the same positions (NaN when n == 0)
    n: int  # anchor positions scored per direction (valid at t, >= 2 candidates at t)


def _retrieval_sums(za: Tensor, zb: Tensor, valid: Tensor) -> tuple[float, float, int]:
    """Sum of correct (mean of both directions), sum of 1/n_candidates, number of anchors."""
    N, T, _ = za.shape
    if zb.shape != za.shape or valid.shape != (N, T):
        raise ValueError(
            f"za {tuple(za.shape)}, zb {tuple(zb.shape)} and valid {tuple(valid.shape)} "
            "must be (N, T, D), (N, T, D) and (N, T)"
        )
    valid_t = valid.t().bool()  # (T, N)
    n_cand = valid_t.sum(dim=1)  # (T,)
    anchors = valid_t & (n_cand >= 2)[:, None]  # (T, N): a lone window is not a retrieval
    n = int(anchors.sum())
    if n == 0:
        return 0.0, 0.0, 0
    sim = torch.einsum("itd,jtd->tij", za.float(), zb.float())  # (T, N, N) anchor x candidate
    blocked = ~valid_t[:, None, :]  # (T, 1, N) invalid candidates
    target = torch.arange(N, device=za.device)
    hit_ab = sim.masked_fill(blocked, -torch.inf).argmax(dim=-1) == target  # (T, N)
    hit_ba = sim.transpose(1, 2).masked_fill(blocked, -torch.inf).argmax(dim=-1) == target
    correct = 0.5 * float((hit_ab & anchors).sum() + (hit_ba & anchors).sum())
    chance = float((anchors / n_cand.clamp_min(1)[:, None]).sum())
    return correct, chance, n


def retrieval_accuracy(za: Tensor, zb: Tensor, valid: Tensor) -> RetrievalScore:
    """Top-1 cross-modal retrieval accuracy of time-aligned embeddings.

    At each time step t, for each window i valid at t, is ``argmax_j <za[i, t], zb[j, t]>`` over
    the windows j valid at t equal to i? The same for b -> a; the two are averaged. Time steps
    with fewer than two valid windows are skipped (retrieval among one candidate is trivial).

    Parameters
    ----------
    za, zb : Tensor, shape (N, T, D)
        Embeddings of modalities a and b (any scale; cosine or dot product give the same
        ranking for L2-normalised vectors); row i of both is the same window.
    valid : Tensor, shape (N, T), bool
        Positions where both modalities are valid.

    Returns
    -------
    RetrievalScore
        ``accuracy`` and ``chance`` in [0, 1]; ``n`` anchor positions per direction.

    Examples
    --------
    >>> z = torch.nn.functional.normalize(torch.randn(4, 3, 8), dim=-1)
    >>> retrieval_accuracy(z, z, torch.ones(4, 3, dtype=torch.bool))
    RetrievalScore(accuracy=1.0, chance=0.25, n=12)
    """
    correct, chance, n = _retrieval_sums(za, zb, valid)
    if n == 0:
        return RetrievalScore(float("nan"), float("nan"), 0)
    return RetrievalScore(correct / n, chance / n, n)


def choose_pair_windows(
    dataset: WindowDataset, max_windows: int, *, min_windows: int = 2, seed: int = 0
) -> dict[tuple[str, str], np.ndarray]:
    """For every modality pair, up to ``max_windows`` windows having both, in a seeded order.

    The order is shuffled (fixed by ``seed``) so that consecutive chunks mix nights; pairs with
    fewer than ``min_windows`` such windows are left out.
    """
    chosen = {}
    for k, (a, b) in enumerate(itertools.combinations(dataset.modalities, 2)):
        both = np.intersect1d(dataset.windows_with(a), dataset.windows_with(b))
        if len(both) < min_windows:
            continue
        rng = np.random.default_rng([seed, k])
        chosen[(a, b)] = rng.permutation(both)[:max_windows]
    return chosen


def _autocast(device: torch.device, bf16: bool):
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def _embed(
    model: Sleep2Vec,
    dataset: WindowDataset,
    modality: str,
    windows: np.ndarray,
    batch_size: int,
    device: torch.device,
    bf16: bool,
) -> dict[str, Tensor]:
    """Projected embeddings ``z`` (n, T, P) float32 on the CPU, validity and metadata."""
    zs, valids, meta = [], [], {"age": [], "sex": [], "site": [], "night_index": []}
    for start in range(0, len(windows), batch_size):
        items = [dataset.item(int(i), (modality,)) for i in windows[start : start + batch_size]]
        x = torch.stack([it["inputs"][modality] for it in items]).to(device)  # (B, T, spe)
        valid = torch.stack([it["valid"][modality] & it["pad_valid"] for it in items])  # (B, T)
        with _autocast(device, bf16):
            hidden = model({modality: x}, valid.to(device))[modality]  # (B, T, H)
            z = model.project(hidden)  # (B, T, P)
        zs.append(z.float().cpu())
        valids.append(valid)
        for key in meta:
            meta[key].extend(it[key] for it in items)
    return {
        "z": torch.cat(zs),
        "valid": torch.cat(valids),
        "age": torch.tensor(meta["age"], dtype=torch.float32),
        "sex": torch.tensor(meta["sex"], dtype=torch.long),
        "site": torch.tensor(meta["site"], dtype=torch.long),
        "night_index": torch.tensor(meta["night_index"], dtype=torch.long),
    }


def pairwise_retrieval(
    model: Sleep2Vec,
    dataset: WindowDataset,
    *,
    batch_size: int = 16,
    max_windows: int = 128,
    loss_fn: LossFn | None = None,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Retrieval accuracy (and optionally the contrastive loss) for every modality pair.

    Each (window, modality) is encoded once, without token masking, in eval mode, with its own
    validity mask; windows of a pair are then scored in chunks of ``batch_size`` (the candidate
    set, as in training), and the chunks are pooled.

    Parameters
    ----------
    model : Sleep2Vec
        A pretraining model (with a projection head), typically the EMA copy.
    dataset : WindowDataset
        Validation windows; pairs are drawn from ``dataset.modalities`` that the model has.
    batch_size : int
        Windows per chunk (candidates per retrieval); chance is about ``1 / batch_size``.
    max_windows : int
        At most this many windows per pair (see :func:`choose_pair_windows`).
    loss_fn : callable, optional
        ``loss_fn(za, zb, valid, age, sex, site, night_index)``; its mean over chunks (weighted
        by anchor positions) fills the ``loss`` column, NaN without it.
    device : str or torch.device
        Where to run the model.
    bf16 : bool
        bf16 autocast (CUDA only).
    seed : int
        Seed of the window choice.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RETRIEVAL_COLUMNS`, one row per pair scored (pair = ``"a-b"``).
    """
    device = torch.device(device)
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for retrieval, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        usable = [m for m in dataset.modalities if m in model.config.modalities]
        chosen = {
            pair: idx
            for pair, idx in choose_pair_windows(dataset, max_windows, seed=seed).items()
            if pair[0] in usable and pair[1] in usable
        }
        needed: dict[str, np.ndarray] = {}
        for (a, b), idx in chosen.items():
            for m in (a, b):
                needed[m] = np.union1d(needed.get(m, np.zeros(0, np.int64)), idx)
        cache = {
            m: _embed(model, dataset, m, idx, batch_size, device, bf16) for m, idx in needed.items()
        }
        rows = []
        for (a, b), idx in chosen.items():
            ra = np.searchsorted(needed[a], idx)
            rb = np.searchsorted(needed[b], idx)
            rows.append(_score_pair(a, b, cache[a], cache[b], ra, rb, batch_size, loss_fn))
    finally:
        model.train(was_training)
    return pd.DataFrame(rows, columns=list(RETRIEVAL_COLUMNS))


def _score_pair(a, b, ca, cb, ra, rb, batch_size, loss_fn) -> dict:
    correct = chance = loss_sum = 0.0
    n = 0
    for start in range(0, len(ra), batch_size):
        ia = torch.as_tensor(ra[start : start + batch_size])
        ib = torch.as_tensor(rb[start : start + batch_size])
        if len(ia) < 2:
            continue
        za, zb = ca["z"][ia], cb["z"][ib]  # (B, T, P)
        valid = ca["valid"][ia] & cb["valid"][ib]  # (B, T)
        c, ch, k = _retrieval_sums(za, zb, valid)
        correct, chance, n = correct + c, chance + ch, n + k
        if loss_fn is not None and k:
            meta = [ca[key][ia] for key in ("age", "sex", "site", "night_index")]
            loss_sum += float(loss_fn(za, zb, valid, *meta)) * k
    nan = float("nan")
    return {
        "pair": f"{a}-{b}",
        "modality_a": a,
        "modality_b": b,
        "accuracy": correct / n if n else nan,
        "chance": chance / n if n else nan,
        "n": n,
        "loss": loss_sum / n if n and loss_fn is not None else nan,
    }
