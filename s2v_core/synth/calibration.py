"""Per-stage statistics that say whether synthetic nights look like real ones, and the reference.

The generator is calibrated against public real recordings (``scripts/calibrate_synth.py``
measures them): the EEG of the DREAMS excerpts and the heart beats of PhysioNet slpdb. The
statistics are scale-free, so amplifiers and units do not matter, and they are computed on the
same engineered features the model reads (:mod:`s2v_core.signals.features`):

* EEG, ``contrast:<band>:<stage>``: mean log10 relative power of the band in epochs of the stage
  minus its mean in all other epochs (e.g. alpha in wake, delta in N3, sigma in N2, theta in N1);
* EEG, ``share:<band>:<stage>``: the band's mean share of the 0.5-25 Hz power in the stage;
* EEG, ``amplitude:<stage>-N2``: how much larger (log10 of the 0.3-25 Hz standard deviation) the
  EEG is in the stage than in N2 of the same night, averaged over nights. A ratio within a night,
  so it is free of the amplifier's gain, and it says what the shares cannot: real N3 is about 1.6
  times as large as N2, real wake about as large as N2;
* IBI, ``z:<feature>:<stage>``: median over nights of the within-night robust z-score of a heart
  rate variability feature in epochs of the stage (heart rate, RMSSD, HF power, LF/HF, VLF power).

The reference values and their tolerances live in ``s2v_core/data/synth_calibration.json``;
``tests/test_synth_calibration.py`` keeps the generator within them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from s2v_core.night import Night
from s2v_core.signals.features import base_feature_names, epoch_features, normalise_within_night
from s2v_core.stages import N1, N2, N3, REM, STAGE_NAMES, W

__all__ = [
    "AMPLITUDE_STAGES",
    "EEG_BANDS",
    "EEG_CONTRASTS",
    "IBI_FEATURES",
    "REFERENCE_FILE",
    "compare",
    "eeg_amplitudes",
    "eeg_contrasts",
    "ibi_stage_z",
    "load_reference",
    "night_statistics",
]

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "data" / "synth_calibration.json"

EEG_CONTRASTS: tuple[tuple[str, int], ...] = (
    ("alpha", W), ("beta", W), ("theta", N1), ("sigma", N2), ("fdelta", N3), ("sdelta", N3), ("theta", REM),
)  # fmt: skip
"""(band, stage) pairs whose contrast is measured in the EEG."""

EEG_BANDS: tuple[str, ...] = ("sdelta", "fdelta", "theta", "alpha", "sigma", "beta")
"""Bands of :mod:`s2v_core.signals.features` whose share of the power is measured per stage."""

AMPLITUDE_STAGES: tuple[int, ...] = (W, N1, N3, REM)
"""Stages whose EEG amplitude is compared with N2 of the same night."""

_MIN_EPOCHS = 4
"""Epochs a stage needs in a night for its amplitude to count."""

IBI_FEATURES: tuple[str, ...] = ("log_ibi", "log_ibi_rmssd", "log_hf_2min", "log_lf_hf", "log_vlf_5min")
"""HRV features whose within-night z-score is measured per stage."""


def _eeg_rows(nights: Iterable[Night]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(raw EEG features, scored and usable epochs, stages)`` of each night with EEG, computed once."""
    out = []
    for night in nights:
        if "eeg" in night.modalities:
            ok = night.epoch_valid["eeg"] & (night.stages >= 0)
            out.append((epoch_features("eeg", night.signals["eeg"], ok), ok, night.stages))
    return out


def eeg_contrasts(nights: Iterable[Night]) -> dict[str, float]:
    """``contrast:<band>:<stage>`` and ``share:<band>:<stage>`` over the scored EEG epochs of all ``nights`` pooled."""
    return _contrasts(_eeg_rows(nights))


def eeg_amplitudes(nights: Iterable[Night]) -> dict[str, float]:
    """``amplitude:<stage>-N2``: mean over nights of the stage's mean ``log_std`` minus N2's."""
    return _amplitudes(_eeg_rows(nights))


def _contrasts(eeg: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    if not eeg:
        return {}
    names = base_feature_names("eeg")
    x = np.concatenate([values[ok] for values, ok, _ in eeg])
    s = np.concatenate([stages[ok] for _, ok, stages in eeg])
    out = {}
    for band, stage in EEG_CONTRASTS:
        col = x[:, names.index(f"rel_{band}")]
        here, rest = col[(s == stage) & np.isfinite(col)], col[(s != stage) & np.isfinite(col)]
        if len(here) >= 5 and len(rest) >= 5:
            out[f"contrast:{band}:{STAGE_NAMES[stage]}"] = float(here.mean() - rest.mean())
    for band in EEG_BANDS:
        share = 10.0 ** x[:, names.index(f"rel_{band}")]  # the features are log10 shares
        for stage in (W, N1, N2, N3, REM):
            sel = (s == stage) & np.isfinite(share)
            if sel.sum() >= 5:
                out[f"share:{band}:{STAGE_NAMES[stage]}"] = float(share[sel].mean())
    return out


def _amplitudes(eeg: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    col = base_feature_names("eeg").index("log_std")
    per_night: dict[str, list[float]] = {}
    for values, ok, stages in eeg:
        amp = values[:, col]
        good = ok & np.isfinite(amp)
        n2 = good & (stages == N2)
        if n2.sum() < _MIN_EPOCHS:
            continue
        for stage in AMPLITUDE_STAGES:
            sel = good & (stages == stage)
            if sel.sum() >= _MIN_EPOCHS:
                key = f"amplitude:{STAGE_NAMES[stage]}-N2"
                per_night.setdefault(key, []).append(float(amp[sel].mean() - amp[n2].mean()))
    return {k: float(np.mean(v)) for k, v in per_night.items()}


def ibi_stage_z(nights: Iterable[Night]) -> dict[str, float]:
    """``z:<feature>:<stage>``: median over nights of the stage's median within-night z-score."""
    names = base_feature_names("ibi")
    per_night: dict[str, list[float]] = {}
    for night in nights:
        if "ibi" not in night.modalities:
            continue
        ok = night.epoch_valid["ibi"]
        raw = epoch_features("ibi", night.signals["ibi"], ok)
        good = ok & np.isfinite(raw).all(axis=1)
        z = normalise_within_night(raw, good)
        for feature in IBI_FEATURES:
            col = z[:, names.index(feature)]
            for stage in (W, N1, N2, N3, REM):
                sel = good & (night.stages == stage)
                if sel.sum() >= 5:
                    per_night.setdefault(f"z:{feature}:{STAGE_NAMES[stage]}", []).append(float(np.median(col[sel])))
    return {k: float(np.median(v)) for k, v in per_night.items()}


def night_statistics(nights: list[Night]) -> dict[str, float]:
    """Every calibration statistic the nights allow (EEG contrasts and amplitudes, IBI stage z-scores)."""
    eeg = _eeg_rows(nights)  # the EEG features of each night once, for both EEG statistics
    return {**_contrasts(eeg), **_amplitudes(eeg), **ibi_stage_z(nights)}


def load_reference(path: str | Path = REFERENCE_FILE) -> dict[str, dict[str, float]]:
    """``{statistic: {"real": value, "tolerance": t, ...}}`` from the reference file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["statistics"]


def compare(synthetic: dict[str, float], reference: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Synthetic vs real per statistic: ``statistic, real, synthetic, difference, tolerance, ok``."""
    rows = []
    for name, ref in reference.items():
        value = synthetic.get(name, float("nan"))
        diff = value - ref["real"]
        rows.append({"statistic": name, "real": ref["real"], "synthetic": value, "difference": diff,
                     "tolerance": ref["tolerance"], "ok": bool(abs(diff) <= ref["tolerance"])})  # fmt: skip
    return pd.DataFrame(rows)
