"""Stage one night from many modality subsets at once: encode each modality once, fuse per subset.

The backbone encodes every modality on its own: the tokenizer is per modality and the shared
encoder attends within one modality's token sequence only (no cross-modal attention), so the
hidden states of a modality are the same whatever else is switched on. Only the gated fusion and
the heads depend on the subset. :func:`encode_night` therefore runs the night's inputs (scaling,
engineered features), the tokenizers and the encoder once per modality, and
:func:`predict_subsets` runs just the gates, the fused state and the staging head for each
subset, many subsets per batched pass
(:meth:`~s2v_core.model.fusion.Sleep2VecClassifier.forward_subsets`). Every subset's
:class:`~s2v_core.inference.predict.Prediction` equals what
:func:`~s2v_core.inference.predict.predict_night` gives for it, to float rounding.

On the 8-h nine-modality sample night this stages all 511 subsets in about 2 s on a 2-core CPU,
where one ``predict_night`` per subset takes 10 to 20 minutes (``bench/bench_subsets.py``).

Examples
--------
>>> preds = predict_subsets(model, night, [("eeg",), ("eeg", "eog"), ("ibi", "resp")])  # doctest: +SKIP
>>> preds[("eeg", "eog")].stages  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from s2v_core.inference.familiarity import unfamiliar_modalities
from s2v_core.inference.predict import (
    MAX_WINDOWS_PER_PASS,
    WINDOW_EPOCHS,
    Prediction,
    assemble_prediction,
    input_spec,
    model_modalities,
    night_windows,
    predict_night,
    resolve_subset,
)
from s2v_core.modalities import MODALITIES
from s2v_core.model.device import resolve_device
from s2v_core.night import Night

__all__ = [
    "FUSION_BATCH_ELEMENTS",
    "EncodedNight",
    "Progress",
    "encode_night",
    "fuses_subsets",
    "predict_subsets",
    "work_units",
]

log = logging.getLogger(__name__)

FUSION_BATCH_ELEMENTS = 1 << 23
"""Fused-state values (subsets x windows x epochs x hidden) per batched fusion pass (32 MiB in float32)."""

Progress = Callable[[float, float], None]
"""``progress(done, total)``: work done so far, in units roughly proportional to time."""

# Cost of each step per window of 120 epochs, for the time estimate of a progress bar (measured
# with the shipped model on an idle 2-core CPU: ~12 ms to read one modality's inputs, scaling and
# engineered features included, ~3 ms to encode them, ~0.15 ms to fuse and stage one subset).
_READ_COST = 12.0
_ENCODE_COST = 3.0
_FUSE_COST = 0.15


@dataclass
class EncodedNight:
    """A night's per-modality encoder states: what every subset shares.

    Attributes
    ----------
    modalities : tuple of str
        The modalities encoded, canonical order.
    hidden : dict of str to Tensor, each (n_windows, window_epochs, H)
        Encoder output of each modality (zero at padding and where the modality is absent from
        a window), on the device the model runs on.
    pad_valid : np.ndarray, shape (n_windows, window_epochs), bool
        False on the padding after the last epoch.
    present : dict of str to np.ndarray (n_windows,) bool
        The modality has at least one valid epoch in the window.
    valid : dict of str to np.ndarray (n_epochs,) bool
        Per-epoch validity of each modality.
    n_epochs : int
    window_epochs : int
    base : dict of str to np.ndarray
        The night's raw base features of each modality encoded, when the model reads engineered
        features (:meth:`Night.base_features <s2v_core.night.Night.base_features>`): the
        familiarity check of every subset reuses them. Empty otherwise.
    """

    modalities: tuple[str, ...]
    hidden: dict[str, torch.Tensor]
    pad_valid: np.ndarray
    present: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    n_epochs: int
    window_epochs: int
    base: dict[str, np.ndarray] = field(default_factory=dict)


def fuses_subsets(model: object) -> bool:
    """Whether ``model`` can fuse many subsets of states encoded once (a ``Sleep2VecClassifier``)."""
    return callable(getattr(model, "forward_subsets", None)) and hasattr(model, "backbone")


class _Meter:
    """Adds up work units and reports them to an optional ``progress(done, total)``."""

    def __init__(self, total: float, progress: Progress | None):
        self.done, self.total, self.progress = 0.0, max(float(total), 1e-9), progress

    def add(self, units: float) -> None:
        self.done = min(self.total, self.done + units)
        if self.progress is not None:
            self.progress(self.done, self.total)


def work_units(
    night: Night, n_encoded: int, n_fused: int, window_epochs: int = WINDOW_EPOCHS
) -> float:
    """The work of encoding ``n_encoded`` modalities of ``night`` and fusing ``n_fused`` subsets.

    In the units the ``progress`` callbacks of :func:`encode_night` and :func:`predict_subsets`
    report, roughly proportional to time (calibrated with the shipped model on a CPU).
    """
    n_win = _n_windows(night, window_epochs)
    return n_win * (n_encoded * (_READ_COST + _ENCODE_COST) + n_fused * _FUSE_COST)


def _n_windows(night: Night, window_epochs: int) -> int:
    return max(1, -(-night.n_epochs // window_epochs))


def _encode(model: object, night: Night, subset: tuple[str, ...], window_epochs: int,
            device: torch.device, max_windows: int, meter: _Meter) -> EncodedNight:  # fmt: skip
    """:func:`encode_night` for a resolved subset, reporting to ``meter``."""
    t0 = time.perf_counter()
    spec = input_spec(model)
    base = night.base_features(subset) if spec["features"] else {}
    inputs, pad_valid, present, valid = night_windows(night, subset, window_epochs, **spec, base=base)
    n_win = len(pad_valid)
    meter.add(len(subset) * n_win * _READ_COST)
    t1 = time.perf_counter()
    valid_t = torch.from_numpy(pad_valid).to(device)
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in subset}
    with torch.inference_mode():
        # all modalities in one backbone pass per chunk of windows, as predict_night batches them:
        # few large operations (each modality is still encoded on its own: rows never mix)
        for s in range(0, n_win, max_windows):
            sl = slice(s, s + max_windows)
            x = {m: torch.from_numpy(inputs[m][sl]).to(device) for m in subset}
            p = {m: torch.from_numpy(present[m][sl]).to(device) for m in subset}
            out = model.backbone(x, valid_t[sl], p)  # {m: (w, T, H)}
            for m in subset:
                parts[m].append(out[m])
            meter.add(len(subset) * len(pad_valid[sl]) * _ENCODE_COST)
    hidden = {m: torch.cat(v) if len(v) > 1 else v[0] for m, v in parts.items()}
    log.debug(
        "encoded %s: inputs %.2f s, encoder %.2f s",
        "+".join(subset),
        t1 - t0,
        time.perf_counter() - t1,
    )
    return EncodedNight(subset, hidden, pad_valid, present, valid, night.n_epochs, window_epochs, base)


def encode_night(
    model: object,
    night: Night,
    modalities: tuple[str, ...] | None = None,
    *,
    window_epochs: int = WINDOW_EPOCHS,
    device: str = "cpu",
    max_windows: int = MAX_WINDOWS_PER_PASS,
    progress: Progress | None = None,
) -> EncodedNight:
    """Read, tokenise and encode each modality of ``night`` once (what no subset changes).

    Parameters
    ----------
    model : Sleep2VecClassifier
        From :func:`~s2v_core.inference.predict.load_classifier` (eval mode).
    night : Night
    modalities : tuple of str, optional
        The modalities to encode (default: every one the night and the model share).
    window_epochs, device, max_windows
        As for :func:`~s2v_core.inference.predict.predict_night`.
    progress : callable, optional
        ``progress(done, total)`` after each step.

    Returns
    -------
    EncodedNight

    Raises
    ------
    S2VError
        An empty subset, or one naming modalities the night or the model lacks.
    """
    if not fuses_subsets(model):
        raise TypeError(
            f"{type(model).__name__} has no backbone and forward_subsets; a Sleep2VecClassifier is needed"
        )
    subset = resolve_subset(model, night, modalities)
    meter = _Meter(work_units(night, len(subset), 0, window_epochs), progress)
    return _encode(
        model, night, subset, window_epochs, resolve_device(device), max(1, max_windows), meter
    )


def predict_subsets(
    model: object,
    night: Night,
    subsets: Iterable[Iterable[str]],
    *,
    encoded: EncodedNight | None = None,
    window_epochs: int = WINDOW_EPOCHS,
    device: str = "cpu",
    with_embeddings: bool = False,
    name: str = "",
    max_windows: int = MAX_WINDOWS_PER_PASS,
    ranges: dict | None = None,
    progress: Progress | None = None,
    batch_elements: int = FUSION_BATCH_ELEMENTS,
) -> dict[tuple[str, ...], Prediction]:
    """Stage ``night`` from each of ``subsets``, encoding every modality only once.

    Parameters
    ----------
    model : Sleep2VecClassifier
        From :func:`~s2v_core.inference.predict.load_classifier` (eval mode). Another model
        object (without :meth:`forward_subsets`) is run subset by subset with
        :func:`~s2v_core.inference.predict.predict_night`.
    night : Night
    subsets : iterable of iterables of str
        Modality subsets, each non-empty, any order; duplicates are staged once.
    encoded : EncodedNight, optional
        This night's :func:`encode_night` by this model with the same ``window_epochs``
        (encoding is skipped); it must hold every modality the subsets use.
    window_epochs, device, with_embeddings, name, max_windows, ranges
        As for :func:`~s2v_core.inference.predict.predict_night`.
    progress : callable, optional
        ``progress(done, total)`` after each step, in units roughly proportional to time
        (so ``elapsed * (total - done) / done`` estimates the time left).
    batch_elements : int
        Bound on the fused states of one batched fusion pass (subsets x epochs x hidden).

    Returns
    -------
    dict of tuple of str to Prediction
        Keyed by each subset in canonical order, in the order first given; each equal (to float
        rounding) to ``predict_night(model, night, subset, ...)``.

    Raises
    ------
    S2VError
        A subset that is empty or names modalities the night or the model lacks.
    NonFiniteOutputError
        The model's outputs hold NaN or infinite values.
    ValueError
        ``encoded`` does not fit this night, window length or subsets.
    """
    wanted = list(dict.fromkeys(resolve_subset(model, night, tuple(s)) for s in subsets))
    if not wanted:
        return {}
    if not fuses_subsets(model):
        return _one_by_one(model, night, wanted, window_epochs=window_epochs, device=device,
                           with_embeddings=with_embeddings, name=name, max_windows=max_windows,
                           ranges=ranges, progress=progress)  # fmt: skip
    union = tuple(m for m in MODALITIES if any(m in s for s in wanted))
    dev = resolve_device(device)
    n_win = _n_windows(night, window_epochs)
    if encoded is not None:
        _check_encoded(encoded, night, window_epochs, union)
    n_encoded = 0 if encoded is not None else len(union)
    meter = _Meter(work_units(night, n_encoded, len(wanted), window_epochs), progress)
    if encoded is None:
        encoded = _encode(model, night, union, window_epochs, dev, max(1, max_windows), meter)
    unfamiliar = unfamiliar_modalities(night, ranges, union, base=encoded.base) if ranges else None
    known = model_modalities(model)
    masks = torch.zeros(len(wanted), len(known), dtype=torch.bool)
    for k, subset in enumerate(wanted):
        masks[k, [known.index(m) for m in subset]] = True
    hidden = {m: encoded.hidden[m] for m in union}
    present = {m: torch.from_numpy(encoded.present[m]).to(dev) for m in union}
    valid_t = torch.from_numpy(encoded.pad_valid).to(dev)
    per_subset = encoded.pad_valid.size * next(iter(hidden.values())).shape[-1]
    step = max(1, int(batch_elements) // max(1, per_subset))
    out: dict[tuple[str, ...], Prediction] = {}
    with torch.inference_mode():
        for start in range(0, len(wanted), step):
            chunk = wanted[start : start + step]
            res = model.forward_subsets(
                hidden, valid_t, masks[start : start + step].to(dev), present
            )
            logits = res.stage_logits.float().cpu()  # (s, W, T, C)
            gates = res.epoch_weights.float().cpu()  # (s, W, T, M)
            fused = res.fused.float().cpu() if with_embeddings else None  # (s, W, T, H)
            for j, subset in enumerate(chunk):
                out[subset] = assemble_prediction(
                    model, night, subset, logits[j], gates[j], encoded.valid,
                    fused=None if fused is None else fused[j], name=name, ranges=ranges,
                    unfamiliar=unfamiliar,
                )  # fmt: skip
            meter.add(len(chunk) * n_win * _FUSE_COST)
    return out


def _check_encoded(
    encoded: EncodedNight, night: Night, window_epochs: int, union: tuple[str, ...]
) -> None:
    if encoded.n_epochs != night.n_epochs or encoded.window_epochs != window_epochs:
        raise ValueError(
            f"encoded night has {encoded.n_epochs} epochs in windows of {encoded.window_epochs}; "
            f"this night has {night.n_epochs} epochs and windows of {window_epochs} were asked for"
        )
    missing = [m for m in union if m not in encoded.hidden]
    if missing:
        raise ValueError(
            f"encoded night lacks {', '.join(missing)}; it holds {', '.join(encoded.modalities)}"
        )


def _one_by_one(model: object, night: Night, wanted: list[tuple[str, ...]], *, progress: Progress | None,
                **kwargs) -> dict[tuple[str, ...], Prediction]:  # fmt: skip
    """Fallback for models that cannot fuse subsets in a batch: one full prediction per subset."""
    out = {}
    for k, subset in enumerate(wanted):
        out[subset] = predict_night(model, night, subset, **kwargs)
        if progress is not None:
            progress(float(k + 1), float(len(wanted)))
    return out
