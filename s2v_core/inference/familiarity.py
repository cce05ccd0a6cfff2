"""Does a recording look like what the model was trained on? Feature ranges and warnings.

At the end of fine-tuning, :func:`training_ranges` summarises the training nights: for every
modality and base feature of :mod:`s2v_core.signals.features` (raw values, before the per-night
normalisation), the 1st and 99th percentile over nights of the per-night median. The ranges are
saved in the checkpoint (``extra["feature_ranges"]``).

The adaptation stage also records the files of the real recordings it trained on (size and
SHA-256, ``extra["training_recordings"]``): :func:`seen_in_training` recognises such a file when a
user stages it, and :func:`seen_in_training_warning` says why its agreement with the expert
overstates what to expect (``s2v predict``, ``s2v_core.stage`` and the app show it).

For a new night, :func:`unfamiliar_modalities` computes the same per-night medians and counts the
features that fall outside the training range (widened by a quarter of its width on each side).
A modality with more than :data:`MAX_OUTSIDE_SHARE` of its features outside is reported: its
predictions rest on inputs unlike anything seen in training (another montage, a unit or scaling
problem, a population or device the synthetic and public training data do not cover).
:func:`familiar_subset` drops such modalities from a subset, so that the night is staged from
the modalities that do look like the training data (``s2v predict`` and the app do this unless
told to keep them; on the 50-Hz DREAMS excerpt-3 PSG, whose EOG, EMG and respiratory channels are
flagged, it is what makes the full recording stage as well as its EEG alone: bench/RESULTS.md).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from s2v_core.night import Night
from s2v_core.signals.features import FEATURE_VERSION, base_feature_names, epoch_features

__all__ = [
    "LOW_CONFIDENCE",
    "MAX_OUTSIDE_SHARE",
    "familiar_subset",
    "file_fingerprint",
    "night_medians",
    "seen_in_training",
    "seen_in_training_warning",
    "training_ranges",
    "unfamiliar_modalities",
]

MAX_OUTSIDE_SHARE = 0.3
"""A modality is unfamiliar when more than this share of its features' night medians are outside."""

LOW_CONFIDENCE = 0.55
"""A night whose mean per-epoch confidence (top stage probability) is below this gets a warning."""

_WIDEN = 0.25


def night_medians(modality: str, epochs: np.ndarray, valid: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
    """Per-night median of each raw base feature over the valid epochs, ``(n_base,)``; NaN if none.

    ``raw``: ``epoch_features(modality, epochs, valid)`` when it is already computed.
    """
    if raw is None:
        raw = epoch_features(modality, epochs, valid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a modality without valid epochs
        return np.nanmedian(raw[np.asarray(valid, bool)], axis=0) if np.any(valid) else np.full(raw.shape[1], np.nan)


def training_ranges(medians: Mapping[str, Iterable[np.ndarray]]) -> dict:
    """``{"version", "modalities": {m: {"lo", "hi", "n_nights"}}}`` from per-night medians."""
    out = {"version": FEATURE_VERSION, "modalities": {}}
    for m, rows in medians.items():
        x = np.array([r for r in rows if np.isfinite(r).any()], dtype=np.float64)
        if len(x) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanpercentile(x, 1, axis=0), np.nanpercentile(x, 99, axis=0)
        out["modalities"][m] = {"lo": [round(float(v), 6) for v in lo], "hi": [round(float(v), 6) for v in hi],
                                "n_nights": len(x)}  # fmt: skip
    return out


def unfamiliar_modalities(night: Night, ranges: Mapping | None, modalities: Iterable[str], *,
                          base: Mapping[str, np.ndarray] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """Modalities of ``night`` whose features lie outside the training ranges, with those features.

    Returns an empty dict without ranges (models trained before they were recorded) or when the
    feature version differs. ``base``: the night's raw base features per modality
    (:meth:`Night.base_features <s2v_core.night.Night.base_features>`) where already computed.
    """
    if not ranges or ranges.get("version") != FEATURE_VERSION:
        return {}
    out = {}
    for m in modalities:
        ref = ranges.get("modalities", {}).get(m)
        if ref is None or m not in night.signals:
            continue
        med = night_medians(m, night.signals[m], night.epoch_valid[m], None if base is None else base.get(m))
        lo, hi = np.asarray(ref["lo"]), np.asarray(ref["hi"])
        width = np.maximum(hi - lo, 1e-9)
        ok = np.isfinite(med)
        outside = ok & ((med < lo - _WIDEN * width) | (med > hi + _WIDEN * width))
        if ok.any() and outside.sum() > MAX_OUTSIDE_SHARE * ok.sum():
            names = base_feature_names(m)
            out[m] = [names[j] for j in np.flatnonzero(outside)]
    return out


def familiar_subset(subset: Iterable[str], unfamiliar: Mapping[str, list[str]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(kept, left_out)``: ``subset`` without its modalities in ``unfamiliar``, in the given order.

    When every modality of ``subset`` is unfamiliar nothing is left out (there is nothing better
    to stage from; the prediction then carries the "unlike the training data" warnings).
    """
    subset = tuple(subset)
    kept = tuple(m for m in subset if m not in unfamiliar)
    if not kept:
        return subset, ()
    return kept, tuple(m for m in subset if m in unfamiliar)


def file_fingerprint(path: str | os.PathLike) -> dict:
    """``{"file", "size", "sha256"}`` of a file (its name, bytes and SHA-256 of its content)."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"file": Path(path).name, "size": os.path.getsize(path), "sha256": digest}


def seen_in_training(extra: Mapping | None, *, path: str | os.PathLike | None = None,
                     size: int | None = None, sha256: str | None = None) -> dict | None:  # fmt: skip
    """The entry of ``extra["training_recordings"]`` whose file is this one, or None.

    Give the file's ``path`` (hashed only when its size matches a training file, so other files
    cost one ``stat``), or its ``size`` and ``sha256`` (an upload already hashed).
    """
    records = [r for r in (extra or {}).get("training_recordings") or [] if isinstance(r, Mapping)]
    if path is not None:
        try:
            size = os.path.getsize(path)
        except OSError:
            return None
    candidates = [r for r in records if r.get("size") == size]
    if not candidates:
        return None
    if sha256 is None:
        if path is None:
            return None
        try:
            sha256 = file_fingerprint(path)["sha256"]
        except OSError:
            return None
    return next((r for r in candidates if r.get("sha256") == sha256), None)


def seen_in_training_warning(entry: Mapping) -> str:
    """The caution for a recording the model was trained on (an entry of :func:`seen_in_training`)."""
    name = entry.get("night") or entry.get("file") or "one of its recordings"
    return (f"this recording was part of this model's training data ({name}, subject {entry.get('subject', '?')}): "
            "its agreement with the expert hypnogram overstates what to expect on a new recording; the model "
            "card gives leave-one-subject-out figures for it")  # fmt: skip
