"""Epoch usability and physiological plausibility checks on canonical signals."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import numpy as np

from s2v_core.modalities import check_modality
from s2v_core.signals import _quantiles

__all__ = [
    "CLIP_TOLERANCE",
    "MAX_NAN_FRACTION_EPOCH",
    "RELATIVE_FLAT",
    "SPO2_USABLE_RANGE",
    "epoch_quality",
    "plausibility_warnings",
]

log = logging.getLogger(__name__)

MAX_NAN_FRACTION_EPOCH = 0.5
"""An epoch with more missing samples than this is not usable."""

RELATIVE_FLAT = 0.01
"""An epoch whose std is below this fraction of the night's median epoch std counts as flat."""

CLIP_TOLERANCE = 0.01
"""Samples within this fraction of the 1-99 % range of a rail count as sitting on it."""

SPO2_USABLE_RANGE = (50.0, 100.5)
"""Epoch median SpO2 outside this (%) means the probe is off or the scaling is wrong."""

# Plausible ranges (canonical units) of a robust amplitude statistic, and a typical value
# used to pick the most likely unit mistake.
_AMPLITUDE_RANGE_UV: dict[str, tuple[float, float, float]] = {
    "eeg": (0.5, 2000.0, 20.0),  # median |x - median|
    "eog": (0.5, 2000.0, 30.0),
    "emg": (0.5, 2000.0, 5.0),
    "ecg": (100.0, 20000.0, 1000.0),  # R-peak amplitude ~ 99.5th percentile of |x - median|
}
_UNIT_MISTAKES = ((1e6, "V"), (1e3, "mV"), (1e-3, "nV"))
_NAN_WARN_FRACTION = 0.2


def _row_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row finite count, mean and std of a 2-D array, without NaN warnings."""
    finite = np.isfinite(x)
    count = finite.sum(axis=1)
    safe = np.maximum(count, 1)
    if count.sum() == x.size:  # nothing to mask out: the same sums without the np.where copies
        mean = x.sum(axis=1) / safe
        dev = x - mean[:, None]
    else:
        mean = np.where(finite, x, 0.0).sum(axis=1) / safe
        dev = np.where(finite, x - mean[:, None], 0.0)
    std = np.sqrt((dev**2).sum(axis=1) / safe)
    return count, mean, std


def epoch_quality(
    x_epochs: np.ndarray, modality: str, *, max_nan_fraction: float = MAX_NAN_FRACTION_EPOCH
) -> np.ndarray:
    """Which epochs of one night's canonical signal are usable.

    An epoch is unusable when more than ``max_nan_fraction`` of it is missing (all-NaN
    included), when it is flat (std exactly 0, below 1e-6 of its mean, or below 1 % of the
    night's median epoch std), or when more than half of its samples sit on the 1st or 99th
    percentile level (clipped at an amplifier rail). SpO2 is not tested for flatness or
    clipping (a steady 97 % is normal); its epochs are unusable when their median is outside
    50-100.5 % (probe off). IBI is not tested for clipping.

    Parameters
    ----------
    x_epochs : np.ndarray, shape (n_epochs, samples_per_epoch)
        Canonical physical-unit epochs of ``modality``.
    modality : str
        Canonical modality name.
    max_nan_fraction : float
        Largest tolerated fraction of missing samples per epoch.

    Returns
    -------
    np.ndarray, shape (n_epochs,), bool
        True where the epoch is usable.
    """
    check_modality(modality)
    x = np.asarray(x_epochs)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    # float32 epochs are not copied to float64 as a whole: every per-row statistic below is
    # computed in float64 on blocks of rows (the same numbers, in cache), the percentiles from
    # the float32 values (the same order statistics)
    if x.ndim != 2:
        raise ValueError(f"x_epochs must be (n_epochs, samples_per_epoch), got shape {x.shape}")
    if x.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    count, mean, std = _blocked_row_stats(x)
    usable = count > 0
    usable &= (1.0 - count / x.shape[1]) <= max_nan_fraction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are already excluded
        if modality == "spo2":
            med = np.nanmedian(x.astype(np.float64, copy=False), axis=1)
            lo, hi = SPO2_USABLE_RANGE
            return usable & (med >= lo) & (med <= hi)
        flat = (std == 0) | (std <= 1e-6 * np.abs(mean))
        moving = std[usable & ~flat]
        if moving.size:
            flat |= std < RELATIVE_FLAT * np.median(moving)
        usable &= ~flat
        if modality != "ibi":
            usable &= ~_clipped(x)
    return usable


_BLOCK_ROWS = 64
"""Rows per float64 block in :func:`epoch_quality` (64 x 30 s at 128 Hz: 2 MiB)."""


def _row_blocks(n_rows: int) -> range:
    return range(0, n_rows, _BLOCK_ROWS)


def _blocked_row_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_row_stats` of ``x`` in float64, a block of rows at a time (the same numbers per row)."""
    blocks = (x[i : i + _BLOCK_ROWS].astype(np.float64, copy=False) for i in _row_blocks(len(x)))
    parts = [_row_stats(b) for b in blocks]
    count, mean, std = (np.concatenate(p) for p in zip(*parts, strict=True))
    return count, mean, std


def _clipped(x: np.ndarray) -> np.ndarray:
    """Rows where more than half the finite samples sit on the 1st or 99th percentile level.

    ``x`` is float32 or float64; the levels and distances are those of ``x`` in float64.
    """
    finite = np.isfinite(x)
    whole = finite.all(axis=1)
    q_lo, q_hi = np.full(len(x), np.nan), np.full(len(x), np.nan)
    # complete rows: np.percentile(x, [1, 99], axis=1) in float64, from the rows' tails only;
    # rows with gaps keep np.nanpercentile (it loops over rows in Python; same values on
    # complete rows: both interpolate linearly)
    if whole.all():
        q_lo, q_hi = _quantiles.row_percentiles(x, [1, 99])
    elif whole.any():
        q_lo[whole], q_hi[whole] = _quantiles.row_percentiles(x[whole], [1, 99])
    if not whole.all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q_lo[~whole], q_hi[~whole] = np.nanpercentile(
                x[~whole].astype(np.float64, copy=False), [1, 99], axis=1
            )
    tol = CLIP_TOLERANCE * (q_hi - q_lo)
    near = np.zeros(len(x), dtype=np.intp)
    exact = np.ones(len(x), dtype=bool)  # rows counted below in float64
    if x.dtype == np.float32:
        # |x - q| <= tol (in float64) holds for the float32 values of an interval: count those in
        # float32, without converting the epochs
        lo_a, lo_b, lo_ok = _float32_interval(q_lo, tol)
        hi_a, hi_b, hi_ok = _float32_interval(q_hi, tol)
        fast = lo_ok & hi_ok
        if fast.any():
            xf = x[fast] if not fast.all() else x
            on = (xf >= lo_a[fast, None]) & (xf <= lo_b[fast, None])
            on |= (xf >= hi_a[fast, None]) & (xf <= hi_b[fast, None])
            near[fast] = np.count_nonzero(on, axis=1)
        exact = ~fast
    for i in _row_blocks(len(x)):
        rows = np.arange(i, min(i + _BLOCK_ROWS, len(x)))[exact[i : i + _BLOCK_ROWS]]
        if rows.size == 0:
            continue
        xb, tb = x[rows].astype(np.float64, copy=False), tol[rows, None]
        lo, hi = q_lo[rows, None], q_hi[rows, None]
        near[rows] = (finite[rows] & ((np.abs(xb - lo) <= tb) | (np.abs(xb - hi) <= tb))).sum(axis=1)
    count = np.maximum(finite.sum(axis=1), 1)
    return (near / count > 0.5) & (q_hi > q_lo)


def _float32_interval(q: np.ndarray, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the float32 ``v`` with ``abs(float64(v) - q) <= tol``: ``[a, b]`` (empty if a > b).

    ``float64(v) - q`` rounds monotonically in ``v``, so the values form an interval; its ends
    start at ``q -+ tol`` rounded to float32 and move by single float32 steps until they are the
    exact ends. ``ok`` is False where that does not settle (or ``q``/``tol`` are not finite): those
    rows are counted in float64.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.isfinite(q) & np.isfinite(tol)
        q, tol = np.where(ok, q, 0.0), np.where(ok, tol, 0.0)
        a, b = (q - tol).astype(np.float32), (q + tol).astype(np.float32)
        ok &= np.isfinite(a) & np.isfinite(b)
        up, down = np.float32(np.inf), np.float32(-np.inf)

        def above(v: np.ndarray) -> np.ndarray:
            return (v.astype(np.float64) - q) >= -tol

        def below(v: np.ndarray) -> np.ndarray:
            return (v.astype(np.float64) - q) <= tol

        a = _settle(a, above, up, down, ok)
        b = _settle(b, below, down, up, ok)
    return a, b, ok


def _settle(
    v: np.ndarray, inside: Callable, inward: np.float32, outward: np.float32, ok: np.ndarray
) -> np.ndarray:
    """Move ``v`` to the outermost float32 where ``inside`` holds (``ok`` cleared if it does not settle)."""
    for _ in range(8):  # inward until inside
        move = ~inside(v)
        if not move.any():
            break
        v = np.where(move, np.nextafter(v, inward), v)
    ok &= inside(v)
    for _ in range(8):  # outward while still inside
        step = np.nextafter(v, outward)
        move = inside(step) & np.isfinite(step)
        if not move.any():
            break
        v = np.where(move, step, v)
    ok &= ~(inside(np.nextafter(v, outward)) & np.isfinite(np.nextafter(v, outward)))
    return v


def _unit_hint(value: float, lo: float, hi: float, typical: float) -> str:
    """Name the unit mistake that would bring ``value`` (in uV) into ``[lo, hi]``."""
    fits = [
        (abs(np.log10(value * f / typical)), f, u)
        for f, u in _UNIT_MISTAKES
        if lo <= value * f <= hi
    ]
    if not fits or value <= 0:
        return "check the channel unit and gain"
    _, factor, unit = min(fits)
    factor_text = f"{factor:,.0f}" if factor >= 1 else f"{factor:g}"
    return f"probably stored in {unit}, not uV (x{factor_text} would give {value * factor:.3g} uV)"


def plausibility_warnings(modality: str, x: np.ndarray) -> list[str]:
    """Human-readable warnings when a canonical signal is physiologically implausible.

    Checks (canonical units: uV, s, %): more than 20 % missing; flat signal; EEG/EOG/EMG
    median absolute amplitude outside 0.5-2000 uV and ECG R-peak amplitude outside
    0.1-20 mV, with a hint at the likely unit mistake (V or mV stored as uV is the most
    common one); SpO2 median outside 70-100 %, values above 100 % or no variation; IBI
    median outside 0.3-2 s or more than 5 % of intervals outside that range.

    Parameters
    ----------
    modality : str
        Canonical modality name.
    x : np.ndarray, any shape, e.g. (n_times,) or (n_epochs, samples_per_epoch)
        The whole night in canonical physical units (before robust scaling).

    Returns
    -------
    list of str
        Empty when nothing looks wrong. Each message starts with the modality name.

    Examples
    --------
    >>> plausibility_warnings("eeg", np.random.default_rng(0).normal(0, 2e-5, 3840))[0][:40]
    'EEG: median absolute amplitude 1.35e-05 '
    """
    check_modality(modality)
    name = modality.upper()
    # float32 is the canonical signals' own type: no float64 copy of a whole night for a warning
    x = np.asarray(x, dtype=np.float32).ravel()
    out: list[str] = []
    finite = np.isfinite(x)
    values = x if finite.all() else x[finite]  # never modified below
    if values.size == 0:
        return [f"{name}: no finite samples (all missing)"]
    nan_fraction = 1.0 - values.size / x.size
    if nan_fraction > _NAN_WARN_FRACTION:
        out.append(f"{name}: {nan_fraction:.0%} of samples are missing (NaN)")
    median = float(_quantiles.median(values))  # = np.median, without partitioning a full copy
    std = float(values.std())
    flat = std == 0 or std <= 1e-9 * abs(median)
    if modality == "spo2":
        out.extend(_spo2_warnings(values, median, flat))
        return out
    if flat:
        out.append(f"{name}: signal is flat (constant {median:.4g}); sensor disconnected?")
        return out
    if modality in _AMPLITUDE_RANGE_UV:
        lo, hi, typical = _AMPLITUDE_RANGE_UV[modality]
        deviation = np.abs(values - median)
        if modality == "ecg":
            amp, what = float(_quantiles.percentile(deviation, 99.5)), "R-peak amplitude"
        else:
            amp, what = float(_quantiles.median(deviation)), "median absolute amplitude"
        if not lo <= amp <= hi:
            out.append(
                f"{name}: {what} {amp:.3g} uV is outside the plausible {lo:g}-{hi:g} uV; "
                f"{_unit_hint(amp, lo, hi, typical)}"
            )
    elif modality == "ibi":
        outside = float(np.mean((values < 0.3) | (values > 2.0)))
        if not 0.3 <= median <= 2.0:
            hint = " (looks like milliseconds: x0.001)" if 300 <= median <= 2000 else ""
            out.append(f"IBI: median interval {median:.3g} s is outside 0.3-2 s{hint}")
        elif outside > 0.05:
            out.append(f"IBI: {outside:.0%} of intervals are outside 0.3-2 s")
    return out


def _spo2_warnings(values: np.ndarray, median: float, flat: bool) -> list[str]:
    lo, hi = float(values.min()), float(values.max())
    if not (flat or median < 70 or median > 100 or hi > 100.0 + 1e-3):
        return []
    if 0.7 <= median <= 1.0:
        hint = "looks like a 0-1 fraction (x100)"
    elif 700 <= median <= 1000:
        hint = "looks scaled x10 (divide by 10)"
    elif flat:
        hint = "no variation at all: probe off or a constant placeholder"
    else:
        hint = "check scaling"
    return [f"SPO2: implausible SpO2 (median {median:.3g} %, range {lo:.3g}-{hi:.3g}): {hint}"]
