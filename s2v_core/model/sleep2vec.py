"""The sleep2vec backbone: per-modality tokenizers, a shared RoPE encoder, a projection head."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2v_core.model.config import ModelConfig
from s2v_core.model.encoder import SharedEncoder, small_normal
from s2v_core.model.tokenizer import ModalityTokenizer

__all__ = [
    "Sleep2Vec",
    "count_parameters",
    "sample_token_mask",
]

log = logging.getLogger(__name__)


def sample_token_mask(
    valid: Tensor, ratio: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Choose ``round(ratio * n_valid)`` valid positions per row, uniformly at random.

    Parameters
    ----------
    valid : Tensor, shape (B, T), bool
    ratio : float
        Fraction of each row's valid positions to mask, in [0, 1).
    generator : torch.Generator, optional
        Source of randomness (on any device); the global one when None.

    Returns
    -------
    Tensor, shape (B, T), bool
        True at masked positions; never True at padding.
    """
    rng_device = generator.device if generator is not None else valid.device
    scores = torch.rand(valid.shape, generator=generator, device=rng_device).to(valid.device)
    scores = scores.masked_fill(~valid, 2.0)  # padding ranks after every valid position
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position in its row
    n_mask = torch.round(valid.sum(dim=1) * ratio).long()  # (B,)
    return ranks < n_mask[:, None]


def _scatter_rows(
    rows: Tensor | None,
    part: slice,
    keep: Tensor | None,
    n: int,
    shape: tuple[int, ...],
    like: Tensor,
) -> Tensor:
    """Put ``rows[part]`` (``n`` rows, one per True in ``keep``; every row when None) into zeros."""
    if keep is None or n == shape[0]:
        return rows[part]
    dtype = rows.dtype if rows is not None else torch.float32
    out = torch.zeros(shape, device=like.device, dtype=dtype)
    return out.index_put((keep,), rows[part]) if n else out


class Sleep2Vec(nn.Module):
    """Tokenizers (one per modality), learned mask vectors, shared encoder, projection head.

    Each modality's sequence is encoded separately by the same encoder (no cross-modal
    attention); present modalities are batched together along the batch dimension.

    Parameters
    ----------
    config : ModelConfig
        Architecture.
    pretraining : bool
        Build the mask vectors and the projection head (True for contrastive pretraining;
        downstream models drop both).
    seed : int, optional
        Seed for the weight initialisation (the global RNG state is left untouched).

    Examples
    --------
    >>> from s2v_core.model.config import get_preset
    >>> model = Sleep2Vec(get_preset("tiny", modalities=("ibi", "spo2")), seed=0)
    >>> x = {"ibi": torch.zeros(2, 7, 120), "spo2": torch.zeros(2, 7, 120)}
    >>> hidden = model.encode(x, torch.ones(2, 7, dtype=torch.bool))
    >>> hidden["ibi"].shape
    torch.Size([2, 7, 32])
    """

    def __init__(self, config: ModelConfig, *, pretraining: bool = True, seed: int | None = None):
        super().__init__()
        self.config = config
        self.pretraining = pretraining
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self._build()

    def _build(self) -> None:
        cfg = self.config
        self.tokenizers = nn.ModuleDict(
            {
                m: ModalityTokenizer(
                    cfg.samples_per_token(m) if cfg.reads_samples else 0,
                    cfg.d_token,
                    cfg.tokenizer_dropout,
                    cfg.spectral_bands,
                    raw_branch=cfg.raw_branch,
                    n_features=cfg.n_features(m),
                    feature_bins=cfg.feature_bins_of(m),
                )
                for m in cfg.modalities
            }
        )
        self.encoder = SharedEncoder(
            cfg.d_token,
            cfg.hidden,
            cfg.n_layers,
            cfg.n_heads,
            cfg.mlp_ratio,
            cfg.dropout,
            cfg.use_cls,
            cfg.rope_base,
        )
        self.mask_vectors: nn.ParameterDict | None = None
        self.projection: nn.Sequential | None = None
        if self.pretraining:
            self.mask_vectors = nn.ParameterDict(
                {m: nn.Parameter(small_normal(cfg.d_token)) for m in cfg.modalities}
            )
            self.projection = nn.Sequential(
                nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.proj_dim)
            )

    def check_inputs(
        self,
        inputs: Mapping[str, Tensor],
        valid: Tensor,
        present: Mapping[str, Tensor] | None = None,
    ) -> list[str]:
        """Validate shapes and names; return the input modalities in canonical order."""
        cfg = self.config
        if not inputs:
            raise ValueError(f"inputs is empty; give at least one of {', '.join(cfg.modalities)}")
        unknown = sorted(set(inputs) - set(cfg.modalities))
        if unknown:
            raise ValueError(
                f"this model has no tokenizer for {', '.join(unknown)}; "
                f"it has {', '.join(cfg.modalities)}"
            )
        if valid.dim() != 2 or valid.dtype != torch.bool:
            raise ValueError(
                f"valid must be a (B, T) bool tensor, got {valid.dtype} {tuple(valid.shape)}"
            )
        B, T = valid.shape
        if T > cfg.max_len:
            raise ValueError(f"sequence of {T} tokens exceeds max_len={cfg.max_len}")
        names = [m for m in cfg.modalities if m in inputs]
        for m in names:
            want = (B, T, cfg.token_width(m))
            if tuple(inputs[m].shape) != want:
                raise ValueError(
                    f"inputs[{m!r}] has shape {tuple(inputs[m].shape)}, expected {want}"
                )
            if present is not None and m in present and tuple(present[m].shape) != (B,):
                raise ValueError(
                    f"present[{m!r}] has shape {tuple(present[m].shape)}, expected ({B},)"
                )
        return names

    def encode_sequences(
        self,
        inputs: Mapping[str, Tensor],
        valid: Tensor,
        present: Mapping[str, Tensor] | None = None,
        *,
        mask_tokens: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """Like :meth:`forward`, and also return the CLS outputs ``{m: (B, H)}`` (None without CLS)."""
        names = self.check_inputs(inputs, valid, present)
        B, T = valid.shape
        if mask_tokens and self.mask_vectors is None:
            raise ValueError("mask_tokens=True needs a pretraining model (built with mask vectors)")
        # per modality the rows that have it: None for all of them, known without reading the
        # device (pretraining and any call without ``present``); a ``present`` mask is read once,
        # as its count of rows sets the shapes
        rows: list[tuple[Tensor | None, int]] = []
        tokens, row_valid = [], []
        for m in names:
            keep, n = None, B
            if present is not None and m in present:
                keep = present[m].to(device=valid.device, dtype=torch.bool)
                n = int(keep.sum())
                keep = None if n == B else keep
            rows.append((keep, n))
            if n == 0:
                continue
            x, v = (inputs[m], valid) if keep is None else (inputs[m][keep], valid[keep])
            tok = self.tokenizers[m](x)  # (B_m, T, d)
            if mask_tokens:
                where = sample_token_mask(v, self.config.mask_ratio, generator=generator)
                tok = torch.where(where[..., None], self.mask_vectors[m].to(tok.dtype), tok)
            tokens.append(tok)
            row_valid.append(v)
        hidden_all = cls_all = None
        if tokens:
            hidden_all, cls_all = self.encoder(
                torch.cat(tokens, dim=0), torch.cat(row_valid, dim=0)
            )
        hidden: dict[str, Tensor] = {}
        cls: dict[str, Tensor] | None = {} if self.config.use_cls else None
        start = 0
        for m, (keep, n) in zip(names, rows, strict=True):
            part = slice(start, start + n)
            hidden[m] = _scatter_rows(hidden_all, part, keep, n, (B, T, self.config.hidden), valid)
            if cls is not None:
                cls[m] = _scatter_rows(cls_all, part, keep, n, (B, self.config.hidden), valid)
            start += n
        return hidden, cls

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        valid: Tensor,
        present: Mapping[str, Tensor] | None = None,
        mask_tokens: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Per-modality hidden states.

        Parameters
        ----------
        inputs : dict of str to Tensor, each (B, T, token_width), float32
            Robust-scaled epochs of each modality given; any non-empty subset of the model's
            modalities (a missing key means absent for the whole batch).
        valid : Tensor, shape (B, T), bool
            False at padding (end of a night); padded tokens are masked out of attention.
        present : dict of str to Tensor (B,) bool, optional
            Per-sample availability of each input modality (missing key = present everywhere).
            Absent (sample, modality) pairs are not computed; their hidden states are zero.
        mask_tokens : bool
            Replace ``mask_ratio`` of the valid tokens of each (sample, modality) sequence by the
            modality's learned mask vector (pretraining only).
        generator : torch.Generator, optional
            Randomness of the token masking.

        Returns
        -------
        dict of str to Tensor, each (B, T, hidden)
            Zero at padding and for absent (sample, modality) pairs.
        """
        hidden, _ = self.encode_sequences(
            inputs, valid, present, mask_tokens=mask_tokens, generator=generator
        )
        return hidden

    def project(self, hidden: Tensor) -> Tensor:
        """Projection head: (..., hidden) -> L2-normalised (..., proj_dim)."""
        if self.projection is None:
            raise ValueError("this model was built without a projection head (pretraining=False)")
        return F.normalize(self.projection(hidden), dim=-1)  # (..., P)

    def encode(
        self,
        inputs: Mapping[str, Tensor],
        valid: Tensor,
        present: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Inference: eval mode, no masking, no gradients; same outputs as :meth:`forward`."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(inputs, valid, present)
        finally:
            self.train(was_training)


def count_parameters(config: ModelConfig, *, pretraining: bool = True) -> int:
    """Number of parameters of ``Sleep2Vec(config)``, counted on the meta device (no memory)."""
    with torch.device("meta"):
        model = Sleep2Vec(config, pretraining=pretraining)
    return sum(p.numel() for p in model.parameters())
