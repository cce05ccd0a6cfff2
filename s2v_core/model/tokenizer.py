"""Per-modality tokenizer: one raw 30-s epoch -> one d-dimensional token (METHOD.md section 3).

Optionally (``ModelConfig.spectral_bands > 0``, our addition to the paper's tokenizer) a third
branch adds the epoch's log power in fixed frequency bands. A linear map of raw samples cannot
measure band power, which does not depend on the phase of a rhythm, so on small training sets
the raw MLP alone learns little from EEG, EOG and EMG; the band powers give it the quantities
sleep scorers read (delta, theta, alpha, sigma, beta, muscle tone) directly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FEATURE_BIN_RANGE",
    "BandPower",
    "FeatureBins",
    "ModalityTokenizer",
    "band_matrix",
]

FEATURE_BIN_RANGE = 2.0
"""The bin edges of :class:`FeatureBins` are spread evenly over [-2, 2] (features are standardised)."""


def band_matrix(samples: int, n_bands: int) -> np.ndarray:
    """Averaging matrix from the ``samples // 2 + 1`` rFFT bins to log-spaced bands.

    The bands tile bins 1 .. samples // 2 (DC left out) with edges spaced evenly in log
    frequency; where that would make a band narrower than one bin, neighbouring edges merge,
    so a short epoch gets fewer than ``n_bands`` bands.

    Returns
    -------
    np.ndarray, shape (samples // 2 + 1, n_out), float32
        Column j averages the power of the bins of band j (n_out <= n_bands).
    """
    n_bins = samples // 2 + 1
    if n_bins < 3 or n_bands < 1:
        raise ValueError(f"need >= 4 samples and >= 1 band, got {samples} samples, {n_bands} bands")
    edges = np.unique(np.round(np.geomspace(1, n_bins, n_bands + 1)).astype(int))
    w = np.zeros((n_bins, len(edges) - 1), dtype=np.float32)
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        w[lo:hi, j] = 1.0 / (hi - lo)
    return w


class BandPower(nn.Module):
    """Log power per frequency band of each epoch (no trainable weights).

    ``log(mean |rFFT(x)|^2 / samples over the band's bins + 1e-6)``; computed in float32.
    """

    def __init__(self, samples: int, n_bands: int):
        super().__init__()
        self.samples = samples
        # not saved in checkpoints: it follows from (samples, n_bands) in the config
        self.register_buffer("bands", torch.from_numpy(band_matrix(samples, n_bands)), persistent=False)

    @property
    def n_out(self) -> int:
        return int(self.bands.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft(x.float(), dim=-1)
            power = (spec.real.square() + spec.imag.square()) / self.samples  # (..., n_bins)
            return torch.log(power @ self.bands + 1e-6)  # (..., n_out)


class FeatureBins(nn.Module):
    """One-hot bin of every standardised feature (no trainable weights): ``(..., f) -> (..., f * (k + 1))``.

    ``k`` edges spread evenly over ``[-FEATURE_BIN_RANGE, FEATURE_BIN_RANGE]`` cut each feature
    into ``k + 1`` bins; a linear map of the one-hot code is then a learned step function of each
    feature. Why: a network that reads the feature values themselves extrapolates linearly
    outside the training range, and a real recording's features often lie there (another site,
    another montage, a 30-min excerpt normalised within itself); a step function stays flat
    beyond its outer edges, as a decision tree does. On the recipe's synthetic nights, a linear
    classifier on these codes stages DREAMS excerpts 1, 2, 4 zero-shot at kappa 0.68, one on the
    feature values at 0.33 (bench/RESULTS.md, issue 12).
    """

    def __init__(self, n_edges: int):
        super().__init__()
        if n_edges < 1:
            raise ValueError(f"need >= 1 bin edge, got {n_edges}")
        self.n_bins = n_edges + 1
        # not a buffer: checkpoints are rebuilt on the meta device, and the edges follow from the config
        self.edges = tuple(np.linspace(-FEATURE_BIN_RANGE, FEATURE_BIN_RANGE, n_edges).tolist())

    def forward(self, x: Tensor) -> Tensor:
        edges = torch.tensor(self.edges, dtype=torch.float32, device=x.device)
        idx = torch.bucketize(x.float().contiguous(), edges)  # (..., f) in 0 .. n_edges
        return F.one_hot(idx, self.n_bins).flatten(-2).to(x.dtype)


class ModalityTokenizer(nn.Module):
    """From one epoch's input to a token: up to three branches, summed, then LayerNorm.

    * raw (the paper's): ``Dropout(Linear(SiLU(Linear(x)))) + Linear(x)`` on the raw samples,
      hidden width ``2 d``;
    * spectral (``spectral_bands > 0``): ``Linear(LayerNorm(BandPower(x)))``;
    * features (``n_features > 0``): the same MLP-plus-residual shape on the engineered,
      per-night normalised features of :mod:`s2v_core.signals.features`, read as they are or,
      with ``feature_bins > 0``, through their one-hot bins (:class:`FeatureBins`).

    The input of one token is the raw samples (when a raw or spectral branch reads them) followed
    by the features. Each modality has its own instance (weights are not shared).

    Parameters
    ----------
    samples_per_token : int
        Samples in one 30-s epoch of the modality (3840 at 128 Hz, 120 at 4 Hz); 0 when no branch
        reads samples.
    d_token : int
        Token width d.
    dropout : float
        Dropout after the MLP branches (0.1 in the paper).
    spectral_bands : int
        0 (the paper's raw tokenizer) or the number of log-power bands of the spectral branch.
    raw_branch : bool
        Build the raw-sample MLP (the paper's tokenizer).
    n_features : int
        Width of the engineered-feature input (0: no feature branch).
    feature_bins : int
        0: the feature branch reads the feature values; k > 0: their one-hot bins between k
        evenly spaced edges (:class:`FeatureBins`).

    Examples
    --------
    >>> import torch
    >>> tok = ModalityTokenizer(120, 8)
    >>> tok(torch.zeros(2, 5, 120)).shape
    torch.Size([2, 5, 8])
    >>> ModalityTokenizer(0, 8, raw_branch=False, n_features=30)(torch.zeros(2, 5, 30)).shape
    torch.Size([2, 5, 8])
    >>> ModalityTokenizer(0, 8, raw_branch=False, n_features=30, feature_bins=9)(torch.zeros(2, 5, 30)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        samples_per_token: int,
        d_token: int,
        dropout: float = 0.1,
        spectral_bands: int = 0,
        *,
        raw_branch: bool = True,
        n_features: int = 0,
        feature_bins: int = 0,
    ):
        super().__init__()
        if (raw_branch or spectral_bands) and samples_per_token < 1:
            raise ValueError("the raw and spectral branches need samples_per_token >= 1")
        if not (raw_branch or spectral_bands or n_features):
            raise ValueError("a tokenizer needs at least one branch")
        self.samples_per_token = samples_per_token if (raw_branch or spectral_bands) else 0
        self.n_features = n_features
        self.mlp: nn.Sequential | None = None
        self.residual: nn.Linear | None = None
        if raw_branch:
            self.mlp, self.residual = _mlp_with_residual(samples_per_token, d_token, dropout)
        self.spectral: nn.Sequential | None = None
        if spectral_bands:
            power = BandPower(samples_per_token, spectral_bands)
            self.spectral = nn.Sequential(power, nn.LayerNorm(power.n_out), nn.Linear(power.n_out, d_token))
        self.feature_mlp: nn.Sequential | None = None
        self.feature_residual: nn.Linear | None = None
        self.feature_bins: FeatureBins | None = None
        if n_features:
            width = n_features
            if feature_bins:
                self.feature_bins = FeatureBins(feature_bins)
                width = n_features * self.feature_bins.n_bins
            self.feature_mlp, self.feature_residual = _mlp_with_residual(width, d_token, dropout)
        self.norm = nn.LayerNorm(d_token)

    @property
    def input_width(self) -> int:
        """Width of one token's input: samples then features."""
        return self.samples_per_token + self.n_features

    def forward(self, x: Tensor) -> Tensor:
        """Tokenise epochs.

        Parameters
        ----------
        x : Tensor, shape (..., input_width), float
            Robust-scaled raw samples of each epoch (if read), then its features (if any).

        Returns
        -------
        Tensor, shape (..., d_token)
        """
        raw, feats = x[..., : self.samples_per_token], x[..., self.samples_per_token :]
        out = 0
        if self.mlp is not None:
            out = self.mlp(raw) + self.residual(raw)
        if self.spectral is not None:
            out = out + self.spectral(raw)
        if self.feature_mlp is not None:
            if self.feature_bins is not None:
                feats = self.feature_bins(feats)
            out = out + self.feature_mlp(feats) + self.feature_residual(feats)
        return self.norm(out)  # (..., d)


def _mlp_with_residual(width: int, d_token: int, dropout: float) -> tuple[nn.Sequential, nn.Linear]:
    mlp = nn.Sequential(nn.Linear(width, 2 * d_token), nn.SiLU(), nn.Linear(2 * d_token, d_token), nn.Dropout(dropout))
    return mlp, nn.Linear(width, d_token)
