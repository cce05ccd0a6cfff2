"""Whole-night inference with a fine-tuned classifier, for any subset of modalities.

The night is cut into windows of 120 epochs (the last one padded), every window goes through the
model in one batched forward pass, and the outputs are stitched back into one row per epoch:
stage, stage probabilities, and the gate weights (global and per epoch) of the modalities used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import S2VError
from .modalities import MODALITIES
from .night import Night
from .stages import STAGE_NAMES

WINDOW_EPOCHS = 120


@dataclass
class Prediction:
    """Per-epoch output of the staging model for one night and one modality subset."""

    stages: np.ndarray  # (n_epochs,) int8, W=0 N1=1 N2=2 N3=3 REM=4
    probabilities: np.ndarray  # (n_epochs, 5) float32, rows sum to 1
    modalities: tuple[str, ...]  # modalities the model saw
    global_gates: dict[str, float]  # learned per-modality weight, renormalised over `modalities`
    epoch_gates: np.ndarray  # (n_epochs, len(modalities)) float32, rows sum to 1
    model_id: str = ""
    embeddings: np.ndarray | None = field(default=None, repr=False)  # (n_epochs, H) fused, optional

    def to_frame(self, start_time: datetime | None = None, epoch_seconds: float = 30.0) -> pd.DataFrame:
        """One row per epoch: onset, clock time (if known), stage, label, probabilities, gates."""
        n = len(self.stages)
        df = pd.DataFrame({"epoch": np.arange(n), "onset_s": np.arange(n) * epoch_seconds})
        if start_time is not None:
            df["clock_time"] = [(start_time + timedelta(seconds=float(s))).isoformat() for s in df["onset_s"]]
        df["stage"] = self.stages.astype(int)
        df["label"] = [STAGE_NAMES[s] for s in self.stages]
        for k, name in enumerate(STAGE_NAMES):
            df[f"p_{name}"] = np.round(self.probabilities[:, k], 5)
        for j, m in enumerate(self.modalities):
            df[f"gate_{m}"] = np.round(self.epoch_gates[:, j], 5)
        return df


def model_id(path: str | Path) -> str:
    """A short stable id of a checkpoint folder (name + hash of its config and weights sizes)."""
    p = Path(path)
    h = hashlib.sha256()
    for f in sorted(p.glob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    return f"{p.name}-{h.hexdigest()[:8]}"


def load_classifier(path: str | Path, *, device: str = "cpu"):
    """Load a fine-tuned classifier checkpoint in eval mode: ``(model, config, extra)``."""
    from .checkpoint import load_checkpoint

    model, config, extra = load_checkpoint(path, device=device)
    if not hasattr(model, "fusion"):
        raise S2VError(
            f"{Path(path).name}: this checkpoint is a pretrained encoder, not a staging model; "
            "fine-tune it first (s2v finetune) or pass the classifier folder"
        )
    model.eval()
    return model, config, extra


def _windows(x: np.ndarray, n_windows: int, window: int) -> np.ndarray:
    """(n_epochs, spe) -> (n_windows, window, spe), zero-padded."""
    n, spe = x.shape
    out = np.zeros((n_windows * window, spe), dtype=np.float32)
    out[:n] = x
    return out.reshape(n_windows, window, spe)


def _model_modalities(model) -> tuple[str, ...]:
    return tuple(model.config.modalities) if hasattr(model, "config") else MODALITIES


def predict_night(
    model,
    night: Night,
    modalities: tuple[str, ...] | None = None,
    *,
    window_epochs: int = WINDOW_EPOCHS,
    device: str = "cpu",
    with_embeddings: bool = False,
    name: str = "",
) -> Prediction:
    """Stage every epoch of ``night`` from the chosen modalities.

    Parameters
    ----------
    model : Sleep2VecClassifier
        From :func:`load_classifier`.
    night : Night
    modalities : tuple of str, optional
        Subset to use (default: every modality both the night and the model have).
    window_epochs : int
        Epochs per window (the model's training length, 120).

    Raises
    ------
    S2VError
        If the subset is empty, or names modalities the night or the model lacks.
    """
    known = _model_modalities(model)
    available = tuple(m for m in night.modalities if m in known)
    if modalities is None:
        subset = available
    else:
        missing = [m for m in modalities if m not in available]
        if missing:
            raise S2VError(
                f"cannot use {', '.join(missing)}: this night and model have "
                f"{', '.join(available) if available else 'no modality in common'}"
            )
        subset = tuple(m for m in MODALITIES if m in modalities)
    if not subset:
        raise S2VError(
            "no modality to predict from: switch at least one on "
            f"(available: {', '.join(available) if available else 'none'})"
        )
    inputs_np, valid_np = night.model_inputs(subset)
    subset = tuple(m for m in subset if m in inputs_np)
    n = night.n_epochs
    n_win = max(1, -(-n // window_epochs))
    pad_valid = np.zeros(n_win * window_epochs, dtype=bool)
    pad_valid[:n] = True
    pad_valid = pad_valid.reshape(n_win, window_epochs)
    inputs = {m: torch.from_numpy(_windows(inputs_np[m], n_win, window_epochs)).to(device) for m in subset}
    present = {}
    valid = torch.from_numpy(pad_valid).to(device)
    for m in subset:
        v = np.zeros(n_win * window_epochs, dtype=bool)
        v[:n] = valid_np[m]
        present[m] = torch.from_numpy(v.reshape(n_win, window_epochs).any(axis=1)).to(device)
    with torch.inference_mode():
        out = model(inputs, valid, present)
    logits = out.stage_logits.float().reshape(n_win * window_epochs, -1)[:n]
    probs = torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float32)
    order = list(_model_modalities(model))
    cols = [order.index(m) for m in subset]
    epoch_w = out.epoch_weights.float().reshape(n_win * window_epochs, -1)[:n][:, cols].cpu().numpy()
    sums = epoch_w.sum(axis=1, keepdims=True)
    epoch_w = np.divide(epoch_w, sums, out=np.zeros_like(epoch_w), where=sums > 0).astype(np.float32)
    glob = out.global_weights.float()[0, cols].cpu().numpy()
    glob = glob / glob.sum() if glob.sum() > 0 else glob
    return Prediction(
        stages=probs.argmax(axis=1).astype(np.int8),
        probabilities=probs,
        modalities=subset,
        global_gates={m: float(g) for m, g in zip(subset, glob, strict=True)},
        epoch_gates=epoch_w,
        model_id=name,
    )
