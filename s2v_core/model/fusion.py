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
        global_logits = self.logits.to(ref.dtype).expand(B, -1)  # (B, M)
        global_weights = masked_softmax(global_logits, avail_t)  # (B, M)
        if self.epoch_gates is None:
            epoch_weights = global_weights[:, None, :].expand(B, T, -1)  # (B, T, M)
        else:
            local = torch.cat(
                [self.epoch_gates[m](states[:, :, i]) for i, m in enumerate(self.modalities)],
                dim=-1,
            )  # (B, T, M)
            epoch_logits = global_logits[:, None, :] + local  # (B, T, M)
            epoch_weights = masked_softmax(epoch_logits, avail_t[:, None, :].expand(B, T, -1))
        fused = torch.einsum("btm,btmh->bth", epoch_weights, states)  # (B, T, H)
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
        hidden = self.backbone(inputs, valid, present)  # {m: (B, T, H)}
        fused, global_w, epoch_w = self.fusion(hidden, present)  # (B, T, H), (B, M), (B, T, M)
        logits = self.staging(fused)  # (B, T, C)
        night = self.night(fused, valid) if self.night is not None else None  # (B, K)
        return ClassifierOutput(logits, night, global_w, epoch_w, fused)


def count_classifier_parameters(config: ModelConfig, head: HeadConfig | None = None) -> int:
    """Number of parameters of ``Sleep2VecClassifier(config, head)``, counted on the meta device."""
    with torch.device("meta"):
        model = Sleep2VecClassifier(config, head)
    return sum(p.numel() for p in model.parameters())
