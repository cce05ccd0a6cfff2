"""Standard sleep statistics of one hypnogram (AASM conventions).

The recording period (time in bed, TIB) is every epoch of the hypnogram, scored or not.
Sleep is any of N1, N2, N3, REM. The sleep period runs from the first to the last sleep
epoch. REM latency is measured from sleep onset (AASM), not from lights off.

REM latency: ours and YASA's
----------------------------
``REM_latency_min`` here is the AASM REM latency: minutes from the first epoch of sleep to the
first REM epoch. YASA's ``Lat_REM`` (``yasa.sleep_statistics`` and
``yasa.Hypnogram.sleep_statistics``) is measured from the start of the recording, so
``REM_latency_min == Lat_REM - SOL``. On the 20 Sleep-EDF hypnograms trimmed to their sleep
period +- 30 min the two differ by exactly SOL (30 min); on slpdb, whose records start asleep,
they agree.

Why not ``yasa.sleep_statistics``
---------------------------------
Run on 36 real hypnograms (20 Sleep-EDF, 12 slpdb, 4 DREAMS; 74 unscored epochs among them),
yasa 0.8.1 gives exactly our numbers for TIB, SPT, TST, SE, SOL, WASO, the minutes and the
percentages of each stage (tests/test_library_review.py), so switching gains nothing, and:

* the REM latency convention differs (above); a switch would change a published number;
* ``yasa.sleep_statistics`` is deprecated and goes in yasa 0.9; its successor,
  ``yasa.Hypnogram.sleep_statistics``, needs a ``Hypnogram`` built from stage names, rounds every
  value to 4 decimals, and took 0.6 ms a night against 0.09 ms here (building the object aside);
* YASA has no ``n_awakenings``, ``n_stage_shifts`` or ``unscored_min``. Its ``SFI`` counts
  sleep-to-wake transitions per hour of TST including the final awakening after the last sleep
  epoch and not across an unscored epoch; ``n_awakenings`` counts them within the sleep period
  (so one fewer when the night ends awake) and across unscored epochs;
* importing yasa takes 1.7 s; this module is on the app's and the CLI's fast paths.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.stages import N1, N2, N3, REM, UNSCORED, W

__all__ = [
    "STAT_DEFINITIONS",
    "compare_sleep_statistics",
    "sleep_statistics",
]

log = logging.getLogger(__name__)

STAT_DEFINITIONS: dict[str, str] = {
    "TIB_min": "Time in bed: length of the whole recording period, scored and unscored epochs, in minutes.",
    "SPT_min": "Sleep period time: from the first to the last epoch of sleep (any stage), in minutes.",
    "TST_min": "Total sleep time: minutes scored N1, N2, N3 or REM.",
    "SE_pct": "Sleep efficiency: total sleep time as a percentage of time in bed.",
    "SOL_min": "Sleep onset latency: minutes from the start of the recording to the first epoch of any sleep stage.",
    "WASO_min": "Wake after sleep onset: minutes scored wake between the first and the last sleep epoch.",
    "REM_latency_min": "REM latency (AASM): minutes from sleep onset, not from lights off, to the first REM epoch.",
    "W_min": "Minutes scored wake anywhere in the recording.",
    "N1_min": "Minutes scored N1.",
    "N2_min": "Minutes scored N2.",
    "N3_min": "Minutes scored N3 (slow-wave sleep).",
    "REM_min": "Minutes scored REM.",
    "N1_pct": "N1 as a percentage of total sleep time.",
    "N2_pct": "N2 as a percentage of total sleep time.",
    "N3_pct": "N3 as a percentage of total sleep time.",
    "REM_pct": "REM as a percentage of total sleep time.",
    "unscored_min": "Minutes not scored (movement, artefact or missing) within the recording.",
    "n_awakenings": "Number of transitions from sleep to wake within the sleep period (unscored epochs skipped).",
    "n_stage_shifts": "Number of changes between consecutive scored epochs over the whole recording (unscored epochs skipped).",
}
"""One-sentence definition of each statistic, keyed as in :func:`sleep_statistics`; app hover text."""

_STAGES: tuple[tuple[str, int], ...] = (("N1", N1), ("N2", N2), ("N3", N3), ("REM", REM))


def _check_hypnogram(stages: Any) -> np.ndarray:
    arr = np.asarray(stages)
    if arr.ndim != 1:
        raise ValueError(f"stages must be a 1-D array of stage codes, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("the hypnogram has no epochs; sleep statistics need at least one")
    arr = arr.astype(np.int64)
    bad = (arr < UNSCORED) | (arr > REM)
    if np.any(bad):
        raise ValueError(
            f"stages hold invalid codes {sorted(set(arr[bad].tolist()))[:5]}; "
            "allowed: 0=W 1=N1 2=N2 3=N3 4=REM -1=unscored"
        )
    return arr


def sleep_statistics(
    stages: Any, *, epoch_seconds: float = float(EPOCH_SECONDS)
) -> dict[str, float]:
    """Sleep statistics of one night.

    Parameters
    ----------
    stages : array_like of int, shape (n_epochs,)
        Project stage codes (0=W 1=N1 2=N2 3=N3 4=REM, -1=unscored), first epoch at the
        start of the recording period (lights off when known).
    epoch_seconds : float
        Length of one epoch, in seconds.

    Returns
    -------
    dict of str -> float
        Keys of :data:`STAT_DEFINITIONS`; durations in minutes (``*_min``), percentages in
        0..100 (``*_pct``), counts as floats. A night without sleep gives TST 0, SE 0,
        SPT 0, and NaN for SOL, WASO, REM latency and the stage percentages. A night
        without REM gives REM latency NaN.

    Raises
    ------
    ValueError
        If the hypnogram is empty, not 1-D, or holds codes outside -1..4.

    Examples
    --------
    >>> s = sleep_statistics([0, 0, 1, 2, 2, 0, 4, 4, 0, 0])
    >>> s["SOL_min"], s["TST_min"], s["WASO_min"], s["REM_latency_min"]
    (1.0, 2.5, 0.5, 2.0)
    """
    hyp = _check_hypnogram(stages)
    if epoch_seconds <= 0:
        raise ValueError(f"epoch_seconds must be positive, got {epoch_seconds}")
    minutes = epoch_seconds / 60.0
    nan = float("nan")
    is_sleep = hyp >= N1
    sleep_idx = np.flatnonzero(is_sleep)
    tib = hyp.size * minutes
    tst = float(is_sleep.sum()) * minutes
    out: dict[str, float] = {
        "TIB_min": tib,
        "SPT_min": 0.0,
        "TST_min": tst,
        "SE_pct": 100.0 * tst / tib,
        "SOL_min": nan,
        "WASO_min": nan,
        "REM_latency_min": nan,
        "W_min": float(np.sum(hyp == W)) * minutes,
    }
    for name, code in _STAGES:
        out[f"{name}_min"] = float(np.sum(hyp == code)) * minutes
    for name, _ in _STAGES:
        out[f"{name}_pct"] = 100.0 * out[f"{name}_min"] / tst if tst > 0 else nan
    out["unscored_min"] = float(np.sum(hyp == UNSCORED)) * minutes

    scored = hyp[hyp != UNSCORED]
    out["n_stage_shifts"] = float(np.count_nonzero(np.diff(scored)))
    out["n_awakenings"] = 0.0
    if sleep_idx.size:
        onset, last = int(sleep_idx[0]), int(sleep_idx[-1])
        period = hyp[onset : last + 1]
        out["SPT_min"] = period.size * minutes
        out["SOL_min"] = onset * minutes
        out["WASO_min"] = float(np.sum(period == W)) * minutes
        rem_idx = np.flatnonzero(hyp == REM)
        if rem_idx.size:
            out["REM_latency_min"] = (int(rem_idx[0]) - onset) * minutes
        period_scored = period[period != UNSCORED]
        to_wake = (period_scored[:-1] >= N1) & (period_scored[1:] == W)
        out["n_awakenings"] = float(np.count_nonzero(to_wake))
    return {k: out[k] for k in STAT_DEFINITIONS}


def compare_sleep_statistics(
    reference: Any, predicted: Any, *, epoch_seconds: float = float(EPOCH_SECONDS)
) -> pd.DataFrame:
    """Sleep statistics of a reference and a predicted hypnogram side by side.

    Parameters
    ----------
    reference, predicted : array_like of int, shape (n_epochs,)
        Project stage codes of the same night.
    epoch_seconds : float
        Length of one epoch, in seconds.

    Returns
    -------
    pandas.DataFrame
        Index: statistic names (as in :data:`STAT_DEFINITIONS`); columns ``reference``,
        ``predicted`` and ``difference`` (predicted minus reference).
    """
    ref = sleep_statistics(reference, epoch_seconds=epoch_seconds)
    pred = sleep_statistics(predicted, epoch_seconds=epoch_seconds)
    if np.asarray(reference).size != np.asarray(predicted).size:
        log.warning(
            "reference has %d epochs, prediction %d: statistics are not of the same period",
            np.asarray(reference).size,
            np.asarray(predicted).size,
        )
    frame = pd.DataFrame({"reference": pd.Series(ref), "predicted": pd.Series(pred)})
    frame["difference"] = frame["predicted"] - frame["reference"]
    frame.index.name = "statistic"
    return frame
