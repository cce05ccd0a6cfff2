"""Whole-night inference with a fine-tuned classifier, for any subset of modalities.

The night is cut into windows of 120 epochs (the last one zero-padded and masked), the windows
go through the model together in one batched forward pass (or a few, for very long nights), and
the outputs are stitched back into one row per epoch: stage, stage probabilities, the gate
weights of the modalities used (global and per epoch) and, on request, the fused embeddings.

A modality takes part in a window when at least one of its epochs there is valid; invalid
epochs are zeros after scaling (:meth:`Night.model_inputs`), as in fine-tuning.

Examples
--------
>>> model, config, extra = load_classifier("models/sleep2vec-small/classifier")  # doctest: +SKIP
>>> pred = predict_night(model, night, ("eeg", "eog"))  # doctest: +SKIP
>>> pred.to_frame(night.start_time).head()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from s2v_core.errors import S2VError
from s2v_core.inference.familiarity import LOW_CONFIDENCE, familiar_subset, unfamiliar_modalities
from s2v_core.modalities import EPOCH_SECONDS, MODALITIES
from s2v_core.model.checkpoint import load_checkpoint
from s2v_core.model.device import resolve_device
from s2v_core.night import Night
from s2v_core.stages import STAGE_NAMES

__all__ = [
    "MAX_WINDOWS_PER_PASS",
    "MERGE_GROUPS",
    "NonFiniteOutputError",
    "REPRESENTATIVE_STAGE",
    "WINDOW_EPOCHS",
    "Prediction",
    "assemble_prediction",
    "load_classifier",
    "model_id",
    "model_modalities",
    "input_spec",
    "night_windows",
    "predict_night",
    "refuse_non_finite",
    "resolve_subset",
]

log = logging.getLogger(__name__)

WINDOW_EPOCHS = 120
"""Epochs per window (one hour), the length the staging model is fine-tuned on."""

MAX_WINDOWS_PER_PASS = 24
"""Windows per forward pass: a whole 24-h night goes through in one pass."""

MERGE_GROUPS: dict[int, tuple[tuple[int, ...], ...]] = {
    5: ((0,), (1,), (2,), (3,), (4,)),
    4: ((0,), (1, 2), (3,), (4,)),
    3: ((0,), (1, 2, 3), (4,)),
}
"""5-class stage codes summed into each class of the 5-, 4- and 3-class problems."""

REPRESENTATIVE_STAGE: dict[int, tuple[int, ...]] = {
    5: (0, 1, 2, 3, 4),
    4: (0, 2, 3, 4),
    3: (0, 2, 4),
}
"""A 5-class code standing for each merged class (``merge_stages`` maps it back to the class)."""


@dataclass
class Prediction:
    """Per-epoch output of the staging model for one night and one modality subset.

    Attributes
    ----------
    stages : np.ndarray, shape (n_epochs,), int8
        Most probable stage, W=0 N1=1 N2=2 N3=3 REM=4.
    probabilities : np.ndarray, shape (n_epochs, 5), float32
        Stage probabilities; rows sum to 1.
    modalities : tuple of str
        Modalities the model used, canonical order (the columns of ``epoch_gates``).
    global_gates : dict of str to float
        Learned per-modality gate, softmax over ``modalities`` (sums to 1).
    epoch_gates : np.ndarray, shape (n_epochs, len(modalities)), float32
        Gate weights applied at each epoch; rows sum to 1, 0 for a modality absent from the
        epoch's window.
    model_id : str
        Which model produced this (see :func:`model_id`).
    embeddings : np.ndarray, shape (n_epochs, H), float32, optional
        Fused hidden states, when asked for.
    coverage : np.ndarray, shape (n_epochs,), int8, optional
        Number of used modalities with a valid signal at each epoch (0: predicted from nothing).
    warnings : list of str
        Night-level cautions: inputs unlike the training data, low confidence (see
        :mod:`s2v_core.inference.familiarity`).
    left_out : tuple of str
        Modalities asked for but not used because their inputs look unlike the training data
        (``predict_night(..., leave_out_unfamiliar=True)``); empty otherwise.
    """

    stages: np.ndarray
    probabilities: np.ndarray
    modalities: tuple[str, ...]
    global_gates: dict[str, float]
    epoch_gates: np.ndarray
    model_id: str = ""
    embeddings: np.ndarray | None = field(default=None, repr=False)
    coverage: np.ndarray | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)
    left_out: tuple[str, ...] = ()

    @property
    def n_epochs(self) -> int:
        return int(len(self.stages))

    @property
    def confidence(self) -> np.ndarray:
        """Per-epoch confidence: the probability of the predicted stage, ``(n_epochs,)`` float32."""
        return self.probabilities.max(axis=1).astype(np.float32)

    @property
    def gate_columns(self) -> tuple[str, ...]:
        """Column names of ``epoch_gates`` in :meth:`to_frame` (``gate_<modality>``)."""
        return tuple(f"gate_{m}" for m in self.modalities)

    def merged(self, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Stages and probabilities for the 4-class (W, N1+N2, N3, REM) or 3-class problem.

        Probabilities of merged stages are summed before taking the most probable class, so a
        3-class prediction can be NREM even where no single NREM stage won.

        Returns
        -------
        stages : np.ndarray, shape (n_epochs,), int8
            Merged class codes ``0 .. n_classes - 1`` (see :func:`s2v_core.stages.class_names`).
        probabilities : np.ndarray, shape (n_epochs, n_classes), float32
        """
        if n_classes not in MERGE_GROUPS:
            raise ValueError(f"n_classes must be 5, 4 or 3, got {n_classes!r}")
        probs = np.stack(
            [self.probabilities[:, list(g)].sum(axis=1) for g in MERGE_GROUPS[n_classes]], axis=1
        ).astype(np.float32)
        return probs.argmax(axis=1).astype(np.int8), probs

    def merged_as_five(self, n_classes: int) -> np.ndarray:
        """:meth:`merged` stages written as representative 5-class codes (for ``staging_metrics``)."""
        stages, _ = self.merged(n_classes)
        return np.asarray(REPRESENTATIVE_STAGE[n_classes], dtype=np.int8)[stages]

    def to_frame(
        self, start_time: datetime | None = None, epoch_seconds: float = EPOCH_SECONDS
    ) -> pd.DataFrame:
        """One row per epoch.

        Columns: ``epoch``, ``onset_s`` (seconds from the recording start), ``clock_time``
        (ISO, only with ``start_time``), ``stage`` (code), ``label``, ``p_W`` .. ``p_REM``,
        ``gate_<modality>`` per used modality, and ``n_valid_modalities`` when known.
        """
        n = self.n_epochs
        onset = np.arange(n) * float(epoch_seconds)
        df = pd.DataFrame({"epoch": np.arange(n), "onset_s": onset})
        if start_time is not None:
            df["clock_time"] = [
                (start_time + timedelta(seconds=float(s))).isoformat() for s in onset
            ]
        df["stage"] = self.stages.astype(int)
        df["label"] = np.asarray(STAGE_NAMES, dtype=object)[self.stages.astype(int)]
        df["confidence"] = np.round(self.confidence, 5)
        for k, name in enumerate(STAGE_NAMES):
            df[f"p_{name}"] = np.round(self.probabilities[:, k], 5)
        for j, col in enumerate(self.gate_columns):
            df[col] = np.round(self.epoch_gates[:, j], 5)
        if self.coverage is not None:
            df["n_valid_modalities"] = self.coverage.astype(int)
        return df


def model_id(path: str | Path) -> str:
    """A short stable id of a checkpoint folder: its name and a hash of its files.

    JSON files are hashed by content, weights by name and size (cheap, and a retrained model
    changes its ``config.json`` metrics anyway).
    """
    p = Path(path)
    h = hashlib.sha256()
    for f in sorted(p.glob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    return f"{p.name}-{h.hexdigest()[:8]}"


def load_classifier(path: str | Path, *, device: str = "cpu") -> tuple[Any, Any, dict]:
    """Load a fine-tuned classifier checkpoint, in eval mode.

    Parameters
    ----------
    path : str or Path
        Checkpoint folder written by :func:`s2v_core.train.finetune.finetune` (``.../best``).
    device : str
        "cpu" (default), "cuda", or "auto".

    Returns
    -------
    model : Sleep2VecClassifier
    config : ModelConfig
    extra : dict
        Fine-tuning metadata (config, validation metrics, training data, class names).

    Raises
    ------
    S2VError
        Missing folder, unreadable checkpoint, or a pretrained encoder without a staging head.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise S2VError(f"{folder}: no such model folder (a classifier checkpoint folder is needed)")
    model, config, extra = load_checkpoint(folder, device=resolve_device(device))
    if not hasattr(model, "fusion"):
        raise S2VError(
            f"{folder.name}: this checkpoint is a pretrained encoder, not a staging model; "
            "fine-tune it first (s2v finetune) or pass the classifier folder"
        )
    model.eval()
    return model, config, extra


def model_modalities(model: Any) -> tuple[str, ...]:
    """Modalities the model has tokenizers for, canonical order."""
    return tuple(model.config.modalities) if hasattr(model, "config") else MODALITIES


def resolve_subset(model: Any, night: Night, modalities: tuple[str, ...] | None) -> tuple[str, ...]:
    """The modalities to use: ``modalities`` (checked) or all the night and the model share.

    Raises
    ------
    S2VError
        An empty subset, or one naming modalities the night or the model lacks (the message
        lists what is available).
    """
    known = model_modalities(model)
    available = tuple(m for m in night.modalities if m in known)
    listed = ", ".join(available) if available else "none"
    if modalities is None:
        subset = available
    else:
        missing = [m for m in modalities if m not in available]
        if missing:
            raise S2VError(
                f"cannot use {', '.join(missing)}: this night and model have {listed}"
                if available
                else f"cannot use {', '.join(missing)}: this night and model have no modality in common"
            )
        subset = tuple(m for m in MODALITIES if m in modalities)
    if not subset:
        raise S2VError(f"no modality to predict from: switch at least one on (available: {listed})")
    return subset


def input_spec(model: Any) -> dict[str, Any]:
    """What ``model``'s tokenizers read: ``{"raw": bool, "features": int}`` for :meth:`Night.model_inputs`."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {"raw": True, "features": 0}
    return {"raw": cfg.reads_samples, "features": cfg.features}


def night_windows(
    night: Night,
    subset: tuple[str, ...],
    window_epochs: int = WINDOW_EPOCHS,
    *,
    raw: bool = True,
    features: int = 0,
    base: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cut the scaled inputs of a night into zero-padded windows.

    ``raw`` and ``features`` are :func:`input_spec`'s; ``base`` is the night's raw base features
    where already computed (:meth:`Night.base_features <s2v_core.night.Night.base_features>`).

    Returns
    -------
    inputs : dict of str to np.ndarray, each (n_windows, window_epochs, token_width) float32
    pad_valid : np.ndarray, shape (n_windows, window_epochs), bool
        False on the padding after the last epoch.
    present : dict of str to np.ndarray, each (n_windows,) bool
        The modality has at least one valid epoch in the window.
    valid : dict of str to np.ndarray, each (n_epochs,) bool
        Per-epoch validity of each modality (unwindowed).
    """
    if window_epochs < 1:
        raise ValueError(f"window_epochs must be >= 1, got {window_epochs}")
    scaled, valid = night.model_inputs(subset, raw=raw, features=features, base=base)
    n = night.n_epochs
    n_win = max(1, -(-n // window_epochs))
    total = n_win * window_epochs
    pad_valid = np.zeros(total, dtype=bool)
    pad_valid[:n] = True
    inputs, present = {}, {}
    for m in subset:
        x = np.zeros((total, scaled[m].shape[1]), dtype=np.float32)
        x[:n] = scaled[m]
        inputs[m] = x.reshape(n_win, window_epochs, -1)  # (W, T, spe)
        ok = np.zeros(total, dtype=bool)
        ok[:n] = valid[m]
        present[m] = ok.reshape(n_win, window_epochs).any(axis=1)  # (W,)
    return inputs, pad_valid.reshape(n_win, window_epochs), present, valid


def _forward(
    model: Any,
    inputs: dict[str, np.ndarray],
    pad_valid: np.ndarray,
    present: dict[str, np.ndarray],
    device: torch.device,
    max_windows: int,
    with_fused: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run all windows through the model, ``max_windows`` at a time.

    Returns logits (W, T, C), epoch gate weights (W, T, M) and fused states (W, T, H) or None.
    """
    # The fused states come back in the model's output: no hook is registered, so a model shared
    # by several threads (the app's cached model) is never modified and outputs never mix.
    logits, gates, fused_parts = [], [], []
    with torch.inference_mode():
        for s in range(0, len(pad_valid), max_windows):
            sl = slice(s, s + max_windows)
            x = {m: torch.from_numpy(v[sl]).to(device) for m, v in inputs.items()}
            p = {m: torch.from_numpy(v[sl]).to(device) for m, v in present.items()}
            out = model(x, torch.from_numpy(pad_valid[sl]).to(device), p)
            logits.append(out.stage_logits.float().cpu())  # (w, T, C)
            gates.append(out.epoch_weights.float().cpu())  # (w, T, M)
            if with_fused:
                fused_parts.append(out.fused.float().cpu())  # (w, T, H)
    fused = torch.cat(fused_parts) if with_fused else None
    return torch.cat(logits), torch.cat(gates), fused


def predict_night(
    model: Any,
    night: Night,
    modalities: tuple[str, ...] | None = None,
    *,
    window_epochs: int = WINDOW_EPOCHS,
    device: str = "cpu",
    with_embeddings: bool = False,
    name: str = "",
    max_windows: int = MAX_WINDOWS_PER_PASS,
    ranges: dict | None = None,
    leave_out_unfamiliar: bool = False,
    base: dict[str, np.ndarray] | None = None,
) -> Prediction:
    """Stage every epoch of ``night`` from the chosen modalities.

    Parameters
    ----------
    model : Sleep2VecClassifier
        From :func:`load_classifier` (eval mode).
    night : Night
    modalities : tuple of str, optional
        Subset to use (default: every modality both the night and the model have); any
        order, the result uses canonical order.
    window_epochs : int
        Epochs per window (the model's fine-tuning length, 120).
    device : str
        Where to run ("cpu", "cuda", "auto"); the model must already be there.
    with_embeddings : bool
        Also return the fused per-epoch states in ``Prediction.embeddings``.
    name : str
        Stored as ``Prediction.model_id``.
    max_windows : int
        Windows per forward pass (memory bound for very long nights).
    ranges : dict, optional
        The training feature ranges of the model (``extra["feature_ranges"]`` of its checkpoint):
        modalities outside them are reported in ``Prediction.warnings``.
    leave_out_unfamiliar : bool
        With ``ranges``: stage from the chosen modalities minus those whose inputs look unlike
        the training data (:func:`~s2v_core.inference.familiarity.familiar_subset`; all of
        them when every one does). What was left out is in ``Prediction.left_out`` and its
        warnings.
    base : dict of str to np.ndarray, optional
        The night's raw base features (:meth:`Night.base_features
        <s2v_core.night.Night.base_features>`) where already computed; the others are computed.

    Returns
    -------
    Prediction

    Raises
    ------
    S2VError
        If the subset is empty, or names modalities the night or the model lacks.
    NonFiniteOutputError
        The model's outputs hold NaN or infinite values (broken weights or inputs).
    """
    subset = resolve_subset(model, night, modalities)
    spec = input_spec(model)
    # the raw base features feed both the model's inputs and the familiarity check: computed once
    if spec["features"] or ranges:
        given = base or {}
        base = {**night.base_features(m for m in subset if m not in given), **{m: given[m] for m in subset if m in given}}
    else:
        base = None
    unfamiliar = unfamiliar_modalities(night, ranges, subset, base=base)
    left_out: tuple[str, ...] = ()
    if leave_out_unfamiliar:
        subset, left_out = familiar_subset(subset, unfamiliar)
    inputs, pad_valid, present, valid = night_windows(night, subset, window_epochs, **spec, base=base)
    logits, gates, fused = _forward(
        model,
        inputs,
        pad_valid,
        present,
        resolve_device(device),
        max(1, max_windows),
        with_embeddings,
    )
    return assemble_prediction(
        model, night, subset, logits, gates, valid, fused=fused, name=name, ranges=ranges,
        unfamiliar=unfamiliar, left_out=left_out,
    )  # fmt: skip


def assemble_prediction(
    model: Any,
    night: Night,
    subset: tuple[str, ...],
    logits: torch.Tensor,
    gates: torch.Tensor,
    valid: dict[str, np.ndarray],
    *,
    fused: torch.Tensor | None = None,
    name: str = "",
    ranges: dict | None = None,
    unfamiliar: dict[str, list[str]] | None = None,
    left_out: tuple[str, ...] = (),
) -> Prediction:
    """The :class:`Prediction` of one subset from the model's windowed outputs.

    Parameters
    ----------
    model : Sleep2VecClassifier
    night : Night
    subset : tuple of str
        The modalities used, canonical order (from :func:`resolve_subset`).
    logits : Tensor, shape (n_windows, window_epochs, C), float32, on the CPU
    gates : Tensor, shape (n_windows, window_epochs, M), float32, on the CPU
        Epoch gate weights over all the model's modalities.
    valid : dict of str to np.ndarray (n_epochs,) bool
        Per-epoch validity of each modality of ``subset`` (see :func:`night_windows`).
    fused : Tensor, shape (n_windows, window_epochs, H), optional
        The fused states, returned as ``Prediction.embeddings``.
    name : str
        Stored as ``Prediction.model_id``.
    ranges : dict, optional
        The model's training feature ranges (warnings about unfamiliar inputs).
    unfamiliar : dict, optional
        :func:`~s2v_core.inference.familiarity.unfamiliar_modalities` of ``night`` for these
        ``ranges`` and at least the modalities of ``subset``, when already known (it is the
        same for every subset, and costly).
    left_out : tuple of str
        Modalities asked for but left out of ``subset`` as unfamiliar (see :func:`predict_night`).

    Raises
    ------
    NonFiniteOutputError
        The outputs hold NaN or infinite values.
    """
    n = night.n_epochs
    cols = [model_modalities(model).index(m) for m in subset]
    refuse_non_finite(logits.reshape(-1, logits.shape[-1])[:n], "stage scores", name)
    refuse_non_finite(gates.reshape(-1, gates.shape[-1])[:n][:, cols], "gate weights", name)
    if fused is not None:
        refuse_non_finite(fused.reshape(-1, fused.shape[-1])[:n], "embeddings", name)
    probs = torch.softmax(logits.reshape(-1, logits.shape[-1])[:n], dim=-1).numpy()  # (n, C)
    epoch_w = gates.reshape(-1, gates.shape[-1])[:n][:, cols].numpy()  # (n, len(subset))
    sums = epoch_w.sum(axis=1, keepdims=True)
    epoch_w = np.divide(epoch_w, sums, out=np.zeros_like(epoch_w), where=sums > 0)
    with torch.no_grad():
        glob = torch.softmax(model.fusion.logits.detach().float().cpu()[cols], dim=0).numpy()
    coverage = np.sum([valid[m] for m in subset], axis=0).astype(np.int8).reshape(n)
    emb = None if fused is None else fused.reshape(-1, fused.shape[-1])[:n].numpy()
    return Prediction(
        warnings=_night_warnings(night, subset, probs, coverage, ranges, unfamiliar, left_out),
        stages=probs.argmax(axis=1).astype(np.int8),
        probabilities=probs.astype(np.float32),
        modalities=subset,
        global_gates={m: float(g) for m, g in zip(subset, glob, strict=True)},
        epoch_gates=epoch_w.astype(np.float32),
        model_id=name,
        embeddings=None if emb is None else emb.astype(np.float32),
        coverage=coverage,
        left_out=tuple(left_out),
    )


class NonFiniteOutputError(S2VError):
    """The model gave NaN or infinite outputs: nothing is written rather than every epoch W."""


def refuse_non_finite(values: torch.Tensor | np.ndarray, what: str, model_name: str = "") -> None:
    """Raise :class:`NonFiniteOutputError` when any row of ``values`` ``(n_epochs, ...)`` is not finite.

    The argmax of NaN probabilities is stage 0, so a broken model (NaN weights, an overflow)
    used to stage every epoch W with empty probability columns, and exit 0.
    """
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
    if not bad.any():
        return
    model = f"model {model_name}" if model_name else "the model"
    raise NonFiniteOutputError(
        f"{model} gave non-finite {what} (NaN or infinite) at {int(bad.sum())} of {len(bad)} epochs "
        f"(first: epoch {int(np.argmax(bad))}); its weights or the inputs are broken, so no stages "
        "are given (they would all read W)"
    )


def _night_warnings(night: Night, subset: tuple[str, ...], probs: np.ndarray, coverage: np.ndarray,
                    ranges: dict | None, unfamiliar: dict[str, list[str]] | None = None,
                    left_out: tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """Cautions about one night's prediction (inputs unlike the training data, low confidence).

    ``unfamiliar``: :func:`unfamiliar_modalities` for ``ranges`` and (at least) ``subset`` and
    ``left_out``, if known.
    """
    out = []
    if unfamiliar is None:
        unfamiliar = unfamiliar_modalities(night, ranges, subset + tuple(left_out))

    def features(m: str) -> str:
        names = unfamiliar.get(m, [])
        return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

    if left_out:
        out.append(f"{', '.join(left_out)} left out: {'its' if len(left_out) == 1 else 'their'} signals look unlike the "
                   f"recordings this model was trained on ({'; '.join(f'{m}: {features(m)}' for m in left_out)} "
                   f"outside the training range); staged from {', '.join(subset)}")  # fmt: skip
    for m in subset:
        if m in unfamiliar:
            out.append(f"{m} looks unlike the recordings this model was trained on ({features(m)} outside the "
                       "training range): treat its stages with caution")  # fmt: skip
    covered = coverage > 0
    if covered.any():
        mean_conf = float(probs[covered].max(axis=1).mean())
        if mean_conf < LOW_CONFIDENCE:
            out.append(f"low confidence: the predicted stage has {mean_conf:.0%} probability on average "
                       f"(below {LOW_CONFIDENCE:.0%}); the model is unsure about this recording")  # fmt: skip
    return out
