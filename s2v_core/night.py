"""The canonical night: nine modalities at fixed rates, one row per 30-s epoch.

A :class:`Night` holds each available modality as ``(n_epochs, samples_per_epoch)`` float32 in
physical units (µV for biopotentials, % for SpO2, seconds for IBI, arbitrary units for breathing
signals), a per-epoch validity mask, the stage labels, metadata and provenance. Robust per-night
scaling is applied on the way into the model (:meth:`Night.model_inputs`) so that displays keep
physical units.

Nights are stored on disk as a folder of ``.npy`` arrays plus ``night.json`` so that cohort stores
can memory-map them. :meth:`Night.to_frame` gives the stages one row per epoch and
:meth:`Night.to_yasa` the hypnogram as a ``yasa.Hypnogram`` (:func:`yasa_hypnogram`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from s2v_core.limits.jsonfile import read_json
from s2v_core.modalities import EPOCH_SECONDS, MODALITIES, SFREQ, UNITS, samples_per_epoch
from s2v_core.signals.features import (
    FEATURE_VERSION,
    epoch_features,
    features_from_raw,
)
from s2v_core.signals.resampling import robust_stats
from s2v_core.stages import STAGE_NAMES, UNSCORED, merge_stages

__all__ = [
    "FORMAT_VERSION",
    "YASA_LABELS",
    "Night",
    "NightMeta",
    "Provenance",
    "apply_scaling",
    "n_epochs_for",
    "stage_labels",
    "yasa_hypnogram",
]

FORMAT_VERSION = 1

YASA_LABELS: dict[int, tuple[str, ...]] = {
    5: ("WAKE", "N1", "N2", "N3", "REM"),
    4: ("WAKE", "LIGHT", "DEEP", "REM"),
    3: ("WAKE", "NREM", "REM"),
}
"""YASA's stage labels of the 5-, 4- (W, N1+N2, N3, REM) and 3-class (W, NREM, REM) problems;
unscored epochs are YASA's ``"UNS"``."""


@dataclass
class NightMeta:
    """Who and where a night comes from. Unknown values are ``None``."""

    night_id: str
    subject: str | None = None
    site: str | None = None
    age: float | None = None  # years
    sex: str | None = None  # "M" or "F"


@dataclass
class Provenance:
    """How one canonical modality was obtained."""

    modality: str
    source: str  # channel label, or e.g. "derived from ECG 'ECG II' (R-peaks, sleepecg)"
    original_sfreq: float | None  # Hz, rate in the file
    unit_in: str  # dimension as written in the file
    unit_scale: float  # multiplier applied to reach the canonical unit
    reader: str  # "pyedflib", "mne", "native" (EDF+D), "wfdb", "derived"
    method: str = ""  # resampling / derivation method
    warnings: list[str] = field(default_factory=list)


@dataclass
class Night:
    """A canonical night.

    Attributes
    ----------
    meta : NightMeta
    signals : dict[str, np.ndarray]
        Modality -> ``(n_epochs, samples_per_epoch(modality))`` float32, physical units, NaN where
        missing. Only available modalities have a key.
    epoch_valid : dict[str, np.ndarray]
        Modality -> ``(n_epochs,)`` bool: the epoch has a usable signal.
    stages : np.ndarray
        ``(n_epochs,)`` int8, W=0 N1=1 N2=2 N3=3 REM=4 unscored=-1.
    """

    meta: NightMeta
    signals: dict[str, np.ndarray]
    epoch_valid: dict[str, np.ndarray]
    stages: np.ndarray
    provenance: dict[str, Provenance] = field(default_factory=dict)
    start_time: datetime | None = None
    source_file: str = ""
    warnings: list[str] = field(default_factory=list)
    hypnogram_source: str = ""

    def __post_init__(self) -> None:
        n = len(self.stages)
        for m, x in self.signals.items():
            if m not in SFREQ:
                raise ValueError(f"unknown modality {m!r}")
            if x.shape != (n, samples_per_epoch(m)):
                raise ValueError(
                    f"{m}: shape {x.shape} does not match ({n}, {samples_per_epoch(m)})"
                )
            if m not in self.epoch_valid:
                self.epoch_valid[m] = np.isfinite(x).any(axis=1)

    # --- derived views -----------------------------------------------------------------------
    @property
    def n_epochs(self) -> int:
        return int(len(self.stages))

    @property
    def duration_s(self) -> float:
        return self.n_epochs * EPOCH_SECONDS

    @property
    def modalities(self) -> tuple[str, ...]:
        """Available modalities in canonical order."""
        return tuple(m for m in MODALITIES if m in self.signals and self.epoch_valid[m].any())

    def availability(self) -> np.ndarray:
        """``(n_epochs, 9)`` bool, columns in :data:`MODALITIES` order."""
        out = np.zeros((self.n_epochs, len(MODALITIES)), dtype=bool)
        for j, m in enumerate(MODALITIES):
            if m in self.epoch_valid:
                out[:, j] = self.epoch_valid[m]
        return out

    def to_frame(self) -> Any:
        """The night's stages, one row per 30-s epoch, as a ``pandas.DataFrame``.

        Columns: ``epoch``, ``onset_s`` (seconds from the start), ``clock_time`` (ISO, only with
        a start time), ``stage`` (code, -1 unscored), ``label`` (``W`` .. ``REM`` or
        ``unscored``) and ``valid_<modality>`` (bool) for each modality the night holds.
        """
        import pandas as pd

        n = self.n_epochs
        onset = np.arange(n) * float(EPOCH_SECONDS)
        df = pd.DataFrame({"epoch": np.arange(n), "onset_s": onset})
        if self.start_time is not None:
            df["clock_time"] = [(self.start_time + timedelta(seconds=float(s))).isoformat() for s in onset]
        df["stage"] = np.asarray(self.stages).astype(int)
        df["label"] = stage_labels(self.stages)
        for m in MODALITIES:
            if m in self.epoch_valid:
                df[f"valid_{m}"] = np.asarray(self.epoch_valid[m], dtype=bool)
        return df

    def to_yasa(self, n_stages: int = 5, *, scorer: str = "reference") -> Any:
        """The night's hypnogram as a ``yasa.Hypnogram`` (see :func:`yasa_hypnogram`).

        Unscored epochs (all of them when the night was loaded without a hypnogram) are ``"UNS"``.
        """
        return yasa_hypnogram(self.stages, self.start_time, n_stages=n_stages, scorer=scorer)

    def stage_counts(self) -> dict[str, int]:
        s = self.stages
        counts = {name: int((s == code).sum()) for code, name in enumerate(STAGE_NAMES)}
        counts["unscored"] = int((s == UNSCORED).sum())
        return counts

    def scaling_stats(self) -> dict[str, tuple[float, float]]:
        """Per-modality ``(median, IQR)`` over valid samples: the robust per-night scaling."""

        stats = {}
        for m, x in self.signals.items():
            ok = self.epoch_valid[m]
            if not ok.any():
                continue
            use = np.flatnonzero(ok)
            rows = np.asarray(x[use[:: max(1, len(use) // 400)]], dtype=np.float32)  # <= 400 epochs suffice
            med, iqr = robust_stats(rows)
            stats[m] = (float(med), float(iqr) if iqr > 0 else 1.0)
        return stats

    def model_inputs(
        self,
        modalities: tuple[str, ...] | None = None,
        *,
        raw: bool = True,
        features: int = 0,
        base: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """What the model's tokenizers read, per modality and epoch.

        Parameters
        ----------
        modalities : tuple of str, optional
            Default: every available modality.
        raw : bool
            Include the robustly scaled samples (see :func:`apply_scaling`).
        features : int
            0, or the version of the engineered features to append
            (:func:`s2v_core.signals.features.night_features`, normalised within this night).
        base : mapping of str to np.ndarray, optional
            This night's raw base features per modality, already computed
            (:meth:`base_features`): the engineered features are derived from them instead of
            being computed again. Modalities not in it are computed here.

        Returns
        -------
        inputs : dict[str, np.ndarray]
            Modality -> ``(n_epochs, width)`` float32: the scaled samples, then the features.
        valid : dict[str, np.ndarray]
            Modality -> ``(n_epochs,)`` bool.
        """
        if features not in (0, FEATURE_VERSION):
            raise ValueError(f"features must be 0 or {FEATURE_VERSION}, got {features!r}")
        stats = self.scaling_stats()
        wanted = self.modalities if modalities is None else modalities
        inputs, valid = {}, {}
        for m in wanted:
            if m not in stats:
                continue
            ok = self.epoch_valid[m]
            parts = [apply_scaling(self.signals[m], *stats[m], ok)] if raw else []
            if features:
                raw_features = base[m] if base is not None and m in base else epoch_features(m, self.signals[m], ok)
                parts.append(features_from_raw(raw_features, ok, m))
            inputs[m] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            valid[m] = ok.copy()
        return inputs, valid

    def base_features(self, modalities: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Raw base features of each modality's epochs (:func:`~s2v_core.signals.features.epoch_features`).

        What both the model's engineered inputs (:meth:`model_inputs` with ``base``) and the
        familiarity check (:mod:`s2v_core.inference.familiarity`) read, so that a prediction
        computes them once. Modalities the night lacks are skipped.
        """
        wanted = self.modalities if modalities is None else modalities
        return {m: epoch_features(m, self.signals[m], self.epoch_valid[m]) for m in wanted if m in self.signals}

    def summary(self) -> dict:
        """A JSON-ready description (what ``s2v info --json`` prints); no identifying fields."""
        mods = {}
        for m in MODALITIES:
            if m in self.signals:
                prov = self.provenance.get(m)
                mods[m] = {
                    "available": bool(self.epoch_valid[m].any()),
                    "valid_fraction": round(float(self.epoch_valid[m].mean()), 4) if self.n_epochs else 0.0,
                    "source": prov.source if prov else "",
                    "original_sfreq": prov.original_sfreq if prov else None,
                    "sfreq": SFREQ[m],
                    "unit_in": prov.unit_in if prov else "",
                    "unit": UNITS[m],
                    "unit_scale": prov.unit_scale if prov else 1.0,
                    "reader": prov.reader if prov else "",
                    "method": prov.method if prov else "",
                    "warnings": list(prov.warnings) if prov else [],
                }
            else:
                mods[m] = {"available": False}
        return {
            "night_id": self.meta.night_id,
            "source_file": self.source_file,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "duration_s": self.duration_s,
            "n_epochs": self.n_epochs,
            "modalities": mods,
            "available": list(self.modalities),
            "metadata": asdict(self.meta),
            "hypnogram": self.hypnogram_source or None,
            "stage_counts": self.stage_counts(),
            "warnings": list(self.warnings),
        }

    # --- storage -------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``folder/<modality>.npy``, ``valid.npy``, ``stages.npy`` and ``night.json``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for m, x in self.signals.items():
            np.save(out / f"{m}.npy", np.ascontiguousarray(x, dtype=np.float32))
        np.save(out / "valid.npy", self.availability())
        np.save(out / "stages.npy", self.stages.astype(np.int8))
        doc = {
            "format_version": FORMAT_VERSION,
            "meta": asdict(self.meta),
            "provenance": {m: asdict(p) for m, p in self.provenance.items()},
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "source_file": self.source_file,
            "hypnogram_source": self.hypnogram_source,
            "warnings": self.warnings,
            "modalities": sorted(self.signals, key=MODALITIES.index),
        }
        (out / "night.json").write_text(json.dumps(doc, indent=1))
        return out

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> Night:
        """Read a night written by :meth:`save`; arrays are memory-mapped by default."""
        src = Path(folder)
        doc = read_json(src / "night.json")  # size and nesting capped (issue 16)
        doc = doc if isinstance(doc, dict) else {}
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{src}: night format {doc.get('format_version')}, this version reads {FORMAT_VERSION}"
            )
        mode = "r" if mmap else None
        avail = np.load(src / "valid.npy")
        signals = {m: np.load(src / f"{m}.npy", mmap_mode=mode) for m in doc["modalities"]}
        valid = {m: avail[:, MODALITIES.index(m)].copy() for m in signals}
        start = doc.get("start_time")
        return cls(
            meta=NightMeta(**doc["meta"]),
            signals=signals,
            epoch_valid=valid,
            stages=np.load(src / "stages.npy"),
            provenance={m: Provenance(**p) for m, p in doc["provenance"].items()},
            start_time=datetime.fromisoformat(start) if start else None,
            source_file=doc.get("source_file", ""),
            warnings=doc.get("warnings", []),
            hypnogram_source=doc.get("hypnogram_source", ""),
        )


def apply_scaling(
    x: np.ndarray, median: float, iqr: float, valid: np.ndarray | None = None, clip: float = 20.0
) -> np.ndarray:
    """``(x - median) / iqr`` clipped to +-``clip``, NaN and invalid epochs set to 0, float32.

    ``x`` is ``(n_epochs, spe)`` (or any slice of epochs); ``valid`` is ``(n_epochs,)`` bool.
    """
    out = (np.asarray(x, dtype=np.float32) - np.float32(median)) / np.float32(iqr if iqr > 0 else 1.0)
    np.clip(out, -clip, clip, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    if valid is not None:
        out[~np.asarray(valid, bool)] = 0.0
    return out


def n_epochs_for(duration_s: float) -> int:
    """Whole 30-s epochs in a recording of ``duration_s`` seconds (a partial last epoch is dropped)."""
    return int(math.floor(duration_s / EPOCH_SECONDS + 1e-9))


def stage_labels(stages: np.ndarray) -> np.ndarray:
    """Names of stage codes: ``W`` .. ``REM``, and ``unscored`` for -1 (object array)."""
    names = np.asarray((*STAGE_NAMES, "unscored"), dtype=object)  # index -1 is the last
    return names[np.asarray(stages).astype(int)]


def yasa_hypnogram(
    stages: Any,
    start_time: datetime | None = None,
    *,
    n_stages: int = 5,
    probabilities: np.ndarray | None = None,
    scorer: str | None = None,
    epoch_seconds: float = EPOCH_SECONDS,
) -> Any:
    """A ``yasa.Hypnogram`` of project stage codes (needs YASA >= 0.7: ``pip install yasa``).

    Parameters
    ----------
    stages : array_like of int, shape (n_epochs,)
        W=0 N1=1 N2=2 N3=3 REM=4, unscored=-1 (YASA's ``"UNS"``).
    start_time : datetime, optional
        Clock time of the first epoch; the hypnogram is then indexed by time.
    n_stages : {5, 4, 3}
        YASA's 5-stage labels (``WAKE N1 N2 N3 REM``), or merged to 4 (``WAKE LIGHT DEEP REM``:
        N1+N2 is light sleep) or 3 (``WAKE NREM REM``), as :func:`s2v_core.stages.merge_stages`
        merges.
    probabilities : np.ndarray, shape (n_epochs, 5), optional
        Stage probabilities, kept as the hypnogram's ``proba``. With fewer than 5 stages they are
        summed per merged class and each scored epoch takes the most probable merged class (as
        :meth:`s2v_core.inference.predict.Prediction.merged` does).
    scorer : str, optional
        YASA's scorer name (the name of ``hyp.hypno``).
    epoch_seconds : float
        Epoch length; YASA's ``freq``.

    Raises
    ------
    ValueError
        ``n_stages`` other than 5, 4 or 3, codes outside -1..4, or probabilities of another shape.
    ModuleNotFoundError
        YASA is not installed.
    """
    if n_stages not in YASA_LABELS:
        raise ValueError(
            f"n_stages must be 5, 4 or 3, got {n_stages!r} (for 2 stages, call "
            ".consolidate_stages(2) on the 5-stage hypnogram)"
        )
    codes = np.asarray(stages)
    if codes.ndim != 1 or (codes.size and (codes.min() < UNSCORED or codes.max() > 4)):
        raise ValueError("stages must be a 1-D array of codes -1..4 (0=W 1=N1 2=N2 3=N3 4=REM -1=unscored)")
    try:
        import pandas as pd
        import yasa
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"to_yasa needs YASA ({exc}); install it with: pip install yasa") from exc
    labels = YASA_LABELS[n_stages]
    merged = merge_stages(codes.astype(int), n_stages).astype(int)
    proba = None
    if probabilities is not None:
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != (codes.size, 5):
            raise ValueError(f"probabilities must have shape ({codes.size}, 5), got {p.shape}")
        table = merge_stages(np.arange(5), n_stages)
        p = np.stack([p[:, table == k].sum(axis=1) for k in range(n_stages)], axis=1)
        p /= np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
        merged = np.where(merged >= 0, p.argmax(axis=1), UNSCORED)
        proba = pd.DataFrame(p, columns=list(labels))
    values = np.asarray((*labels, "UNS"), dtype=object)[merged]  # -1 -> "UNS"
    return yasa.Hypnogram(
        list(values),
        n_stages=n_stages,
        freq=f"{float(epoch_seconds):g}s",
        start=start_time,
        scorer=scorer,
        proba=proba,
    )
