"""Signal processing for canonical nights: resampling, units, scaling, epochs, cardiac and
respiratory derivations, quality checks.

Modules: :mod:`.resampling` (resample, epoch_matrix, robust_scale, robust_stats), :mod:`.units`
(unit_scale_to_uV, to_percent), :mod:`.cardio` (detect_rpeaks, ibi_from_beats),
:mod:`.resp` (resp_from_effort, resp_from_ecg), :mod:`.quality` (epoch_quality,
plausibility_warnings).
"""

from s2v_core.signals.cardio import detect_rpeaks, ibi_from_beats
from s2v_core.signals.quality import epoch_quality, plausibility_warnings
from s2v_core.signals.resampling import (
    epoch_matrix,
    rational_ratio,
    resample,
    robust_scale,
    robust_stats,
)
from s2v_core.signals.resp import resp_from_ecg, resp_from_effort
from s2v_core.signals.units import to_percent, unit_scale_to_uV

__all__ = [
    "detect_rpeaks",
    "epoch_matrix",
    "epoch_quality",
    "ibi_from_beats",
    "plausibility_warnings",
    "rational_ratio",
    "resample",
    "resp_from_ecg",
    "resp_from_effort",
    "robust_scale",
    "robust_stats",
    "to_percent",
    "unit_scale_to_uV",
]
