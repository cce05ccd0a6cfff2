"""Downstream model: gated fusion of the present modalities, staging and night heads.

METHOD.md section 5: encode each available modality separately with the backbone, fuse per
position with gates (one learned scalar per modality, softmax over the modalities present), and
put small MLP heads on top. The gates are what the app shows as modality importance; the
optional per-epoch gate (section 7) lets the importance vary through the night.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from s2v_core.model.config import HeadConfig, ModelConfig
from s2v_core.model.sleep2vec import Sleep2Vec

__all__ = [
    "ClassifierOutput",
    "FusionOutput",
    "GatedFusion",
    "NightHead",
    "Sleep2VecClassifier",
    "StagingHead",
    "count_classifier_parameters",
    "masked_softmax",
]


class FusionOutput(NamedTuple):
    """Fused hidden states and the gate weights that produced them."""

    fused: Tensor  # (B, T, H)
    global_weights: Tensor  # (B, M): softmax of the per-modality logits over present modalities
    epoch_weights: Tensor  # (B, T, M): weights actually applied at each position


class ClassifierOutput(NamedTuple):
    """Outputs of :class:`Sleep2VecClassifier`."""

    stage_logits: Tensor  # (B, T, n_stage_classes)
    night: Tensor | None  # (B, night_outputs), or None without a night head
    global_weights: Tensor  # (B, M)
    epoch_weights: Tensor  # (B, T, M)
    fused: Tensor | None = None  # (B, T, H): the staging head's input (the fused epoch states)


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the entries where ``mask`` is True; exactly 0 elsewhere and on empty rows.

    Finite fill values keep gradients free of NaN even when a whole row is masked.
    """
    filled = logits.masked_fill(~mask, torch.finfo(logits.dtype).min / 2)
    weights = torch.softmax(filled, dim=dim) * mask.to(logits.dtype)
    return weights / weights.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(logits.dtype).tiny)


class GatedFusion(nn.Module):
    """Per-position convex combination of the modalities present.

    Parameters
    ----------
    modalities : sequence of str
        Modalities that can be fused, in a fixed order (the M axis of the weights).
    hidden : int
        Width H of the hidden states.
    per_epoch : bool
        Add a per-position logit ``Linear_m(h_m,t)`` to the global logit of each modality
        (initialised to zero, so training starts from the global gates).
    """

    def __init__(self, modalities: Sequence[str], hidden: int, per_epoch: bool):
        super().__init__()
        self.modalities = tuple(modalities)
        self.hidden = hidden
        self.logits = nn.Parameter(torch.zeros(len(self.modalities)))
        self.epoch_gates: nn.ModuleDict | None = None
        if per_epoch:
            self.epoch_gates = nn.ModuleDict({m: nn.Linear(hidden, 1) for m in self.modalities})
            for gate in self.epoch_gates.values():
                nn.init.zeros_(gate.weight)
                nn.init.zeros_(gate.bias)

    def _stack(
        self, hidden: Mapping[str, Tensor], present: Mapping[str, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        """States ``(B, T, M, H)`` (zeros for a modality not given) and availability ``(B, M)``."""
        unknown = sorted(set(hidden) - set(self.modalities))
        if unknown:
            raise ValueError(f"cannot fuse {', '.join(unknown)}; gates exist for {self.modalities}")
        if not hidden:
            raise ValueError("hidden is empty; fuse needs at least one modality")
        ref = next(iter(hidden.values()))
        B, T, H = ref.shape
        stacked, avail = [], []
        for m in self.modalities:
            if m in hidden:
                stacked.append(hidden[m])
                p = present.get(m) if present is not None else None
                avail.append(torch.ones(B, dtype=torch.bool, device=ref.device) if p is None else p)
            else:
                stacked.append(ref.new_zeros(B, T, H))
                avail.append(torch.zeros(B, dtype=torch.bool, device=ref.device))
        states = torch.stack(stacked, dim=2)  # (B, T, M, H)
        avail_t = torch.stack(avail, dim=1).to(device=ref.device, dtype=torch.bool)  # (B, M)
        return states, avail_t

    def _local_logits(self, states: Tensor) -> Tensor:
        """Per-position gate logits ``(B, T, M)`` of the states ``(B, T, M, H)`` (per-epoch gates only)."""
        return torch.cat(
            [self.epoch_gates[m](states[:, :, i]) for i, m in enumerate(self.modalities)],
            dim=-1,
        )  # (B, T, M)

    def forward(
        self, hidden: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> FusionOutput:
        """Fuse.

        Parameters
        ----------
        hidden : dict of str to Tensor, each (B, T, H)
            Hidden states of the modalities given (a missing key means absent).
        present : dict of str to Tensor (B,) bool, optional
            Per-sample availability (missing key = present for every sample of ``hidden``).

        Returns
        -------
        FusionOutput
            Absent modalities get weight exactly 0; a sample with no modality present gets
            all-zero weights and a zero fused state.
        """
        states, avail_t = self._stack(hidden, present)  # (B, T, M, H), (B, M)
        B, T = states.shape[:2]
        global_logits = self.logits.to(states.dtype).expand(B, -1)  # (B, M)
        global_weights = masked_softmax(global_logits, avail_t)  # (B, M)
        if self.epoch_gates is None:
            epoch_weights = global_weights[:, None, :].expand(B, T, -1)  # (B, T, M)
        else:
            epoch_logits = global_logits[:, None, :] + self._local_logits(states)  # (B, T, M)
            epoch_weights = masked_softmax(epoch_logits, avail_t[:, None, :].expand(B, T, -1))
        fused = torch.einsum("btm,btmh->bth", epoch_weights, states)  # (B, T, H)
        return FusionOutput(fused, global_weights, epoch_weights)

    def forward_subsets(
        self,
        hidden: Mapping[str, Tensor],
        subsets: Tensor,
        present: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Fuse many modality subsets of the same hidden states in one pass.

        The backbone encodes every modality on its own (no cross-modal attention), so the
        hidden states of a modality do not depend on which other modalities are present: only
        the gates and the fused state do. Row ``k`` of the result equals
        ``forward({m: hidden[m] for m in subset k}, present)``.

        Parameters
        ----------
        hidden : dict of str to Tensor, each (B, T, H)
            Hidden states of every modality some subset uses.
        subsets : Tensor, shape (S, M), bool
            One row per subset, columns in :attr:`modalities` order; every row non-empty and
            using only modalities of ``hidden``.
        present : dict of str to Tensor (B,) bool, optional
            Per-sample availability (missing key = present for every sample of ``hidden``).

        Returns
        -------
        FusionOutput
            With a leading subset axis: ``fused`` (S, B, T, H), ``global_weights`` (S, B, M),
            ``epoch_weights`` (S, B, T, M).
        """
        states, avail_t = self._stack(hidden, present)  # (B, T, M, H), (B, M)
        B, T = states.shape[:2]
        M = len(self.modalities)
        if subsets.dim() != 2 or subsets.shape[1] != M or subsets.dtype != torch.bool:
            raise ValueError(
                f"subsets must be an (S, {M}) bool tensor, got {subsets.dtype} {tuple(subsets.shape)}"
            )
        subsets = subsets.to(states.device)
        given = torch.tensor([m in hidden for m in self.modalities], device=states.device)
        if bool((subsets & ~given).any()):
            raise ValueError("a subset uses a modality whose hidden states were not given")
        if not bool(subsets.any(dim=1).all()):
            raise ValueError("every subset needs at least one modality")
        S = subsets.shape[0]
        avail = subsets[:, None, :] & avail_t[None]  # (S, B, M)
        global_logits = self.logits.to(states.dtype).expand(S, B, -1)  # (S, B, M)
        global_weights = masked_softmax(global_logits, avail)  # (S, B, M)
        if self.epoch_gates is None:
            epoch_weights = global_weights[:, :, None, :].expand(S, B, T, M)  # (S, B, T, M)
        else:
            # the per-position logit of a modality depends on its own states only: computed once
            epoch_logits = self.logits.to(states.dtype) + self._local_logits(states)  # (B, T, M)
            epoch_weights = masked_softmax(
                epoch_logits[None].expand(S, B, T, M), avail[:, :, None, :].expand(S, B, T, M)
            )  # (S, B, T, M)
        # one (S, M) @ (M, H) product per position, laid out (B, T, S, H) so that no large copy
        # is needed; returned as a (S, B, T, H) view
        fused = torch.matmul(epoch_weights.permute(1, 2, 0, 3), states).permute(2, 0, 1, 3)
        return FusionOutput(fused, global_weights, epoch_weights)


def _mlp(n_in: int, n_hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(n_in),
        nn.Linear(n_in, n_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(n_hidden, n_out),
    )


class StagingHead(nn.Module):
    """Per-token MLP: (B, T, H) -> (B, T, n_classes) logits."""

    def __init__(
        self, hidden: int, n_classes: int = 5, head_hidden: int = 128, dropout: float = 0.1
    ):
        super().__init__()
        self.mlp = _mlp(hidden, head_hidden, n_classes, dropout)

    def forward(self, fused: Tensor) -> Tensor:
        return self.mlp(fused)  # (B, T, C)


class NightHead(nn.Module):
    """Masked mean over valid tokens, then an MLP: (B, T, H) -> (B, n_outputs)."""

    def __init__(self, hidden: int, n_outputs: int, head_hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.mlp = _mlp(hidden, head_hidden, n_outputs, dropout)

    def forward(self, fused: Tensor, valid: Tensor) -> Tensor:
        """``fused`` (B, T, H), ``valid`` (B, T) bool -> (B, n_outputs)."""
        w = valid.to(fused.dtype)[..., None]  # (B, T, 1)
        pooled = (fused * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)  # (B, H)
        return self.mlp(pooled)  # (B, K)


class Sleep2VecClassifier(nn.Module):
    """Backbone (no masking, no projection) + gated fusion + staging head (+ night head).

    Parameters
    ----------
    config : ModelConfig
        Backbone architecture.
    head : HeadConfig, optional
        Heads and gates; defaults to 5-class staging with per-epoch gates.
    seed : int, optional
        Seed for the weight initialisation.
    """

    def __init__(
        self, config: ModelConfig, head: HeadConfig | None = None, *, seed: int | None = None
    ):
        super().__init__()
        self.config = config
        self.head_config = head or HeadConfig()
        hc = self.head_config
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.backbone = Sleep2Vec(config, pretraining=False)
            self.fusion = GatedFusion(config.modalities, config.hidden, hc.per_epoch_gate)
            self.staging = StagingHead(
                config.hidden, hc.n_stage_classes, hc.head_hidden, hc.head_dropout
            )
            self.night = (
                NightHead(config.hidden, hc.night_outputs, hc.head_hidden, hc.head_dropout)
                if hc.night_outputs
                else None
            )
        self.set_tokenizers_trainable(not hc.freeze_tokenizers)

    def set_tokenizers_trainable(self, trainable: bool) -> None:
        """Freeze (False) or unfreeze (True) the per-modality tokenizers."""
        for p in self.backbone.tokenizers.parameters():
            p.requires_grad_(trainable)

    def load_backbone(self, pretrained: Sleep2Vec) -> None:
        """Copy tokenizer and encoder weights from a pretrained :class:`Sleep2Vec`."""
        if pretrained.config.to_dict() != self.config.to_dict():
            raise ValueError("the pretrained backbone's config differs from this classifier's")
        state = {
            k: v
            for k, v in pretrained.state_dict().items()
            if k.startswith(("tokenizers.", "encoder."))
        }
        self.backbone.load_state_dict(state, strict=True)

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        valid: Tensor,
        present: Mapping[str, Tensor] | None = None,
    ) -> ClassifierOutput:
        """Stage logits per token, night outputs and gate weights.

        Parameters
        ----------
        inputs : dict of str to Tensor (B, T, token_width)
            Any non-empty subset of the model's modalities.
        valid : Tensor, shape (B, T), bool
        present : dict of str to Tensor (B,) bool, optional
            Per-sample availability (missing key = present for every sample).
        """
        return self.heads(self.backbone(inputs, valid, present), valid, present)

    def heads(
        self,
        hidden: Mapping[str, Tensor],
        valid: Tensor,
        present: Mapping[str, Tensor] | None = None,
    ) -> ClassifierOutput:
        """Fusion and heads on hidden states the backbone already computed (``forward``'s second half).

        Parameters
        ----------
        hidden : dict of str to Tensor, each (B, T, H)
            ``self.backbone(inputs, valid, present)``.
        valid : Tensor, shape (B, T), bool
        present : dict of str to Tensor (B,) bool, optional
        """
        fused, global_w, epoch_w = self.fusion(hidden, present)  # (B, T, H), (B, M), (B, T, M)
        logits = self.staging(fused)  # (B, T, C)
        night = self.night(fused, valid) if self.night is not None else None  # (B, K)
        return ClassifierOutput(logits, night, global_w, epoch_w, fused)

    def forward_subsets(
        self,
        hidden: Mapping[str, Tensor],
        valid: Tensor,
        subsets: Tensor,
        present: Mapping[str, Tensor] | None = None,
    ) -> ClassifierOutput:
        """Fusion and heads for many modality subsets of states the backbone already computed.

        ``hidden = self.backbone(inputs, valid, present)`` once for every modality; then row
        ``k`` of the result equals ``self(inputs restricted to subset k, valid, present)``
        (the backbone encodes each modality separately, so its states do not depend on the
        subset). See :meth:`GatedFusion.forward_subsets`.

        Parameters
        ----------
        hidden : dict of str to Tensor, each (B, T, H)
        valid : Tensor, shape (B, T), bool
        subsets : Tensor, shape (S, M), bool
            Columns in ``config.modalities`` order.
        present : dict of str to Tensor (B,) bool, optional

        Returns
        -------
        ClassifierOutput
            With a leading subset axis: ``stage_logits`` (S, B, T, C), ``night`` (S, B, K) or
            None, ``global_weights`` (S, B, M), ``epoch_weights`` (S, B, T, M), ``fused``
            (S, B, T, H).
        """
        fused, global_w, epoch_w = self.fusion.forward_subsets(hidden, subsets, present)
        # the head works per position: run it on the fused states' own (B, T, S, H) memory layout
        logits = self.staging(fused.permute(1, 2, 0, 3)).permute(2, 0, 1, 3)  # (S, B, T, C)
        night = None
        if self.night is not None:
            S, B, T, H = fused.shape
            rows = valid[None].expand(S, B, T).reshape(S * B, T)
            night = self.night(fused.reshape(S * B, T, H), rows).reshape(S, B, -1)  # (S, B, K)
        return ClassifierOutput(logits, night, global_w, epoch_w, fused)


def count_classifier_parameters(config: ModelConfig, head: HeadConfig | None = None) -> int:
    """Number of parameters of ``Sleep2VecClassifier(config, head)``, counted on the meta device."""
    with torch.device("meta"):
        model = Sleep2VecClassifier(config, head)
    return sum(p.numel() for p in model.parameters())
