"""Cardiac signals: R-peak detection on ECG and the evenly sampled inter-beat-interval series."""

from __future__ import annotations

import logging

import numpy as np
from scipy import signal as sps
from scipy.ndimage import median_filter

from s2v_core.signals._nan import finite_segments
from s2v_core.signals.resampling import resample

__all__ = [
    "DETECTION_SFREQ",
    "MIN_DETECTION_SFREQ",
    "MIN_RELATIVE_QRS",
    "MIN_SEGMENT_S",
    "POLARITY_RADIUS_S",
    "REFINE_RADIUS_S",
    "RUNNING_MEDIAN_BEATS",
    "RUNNING_MEDIAN_QRS",
    "detect_rpeaks",
    "ibi_from_beats",
]

log = logging.getLogger(__name__)

MIN_SEGMENT_S = 5.0
"""Finite ECG stretches shorter than this (seconds) are not searched for beats."""

REFINE_RADIUS_S = 0.05
"""Half-width of the window in which a detected beat is moved onto the R-wave maximum."""

MIN_DETECTION_SFREQ = 100.0
"""ECG sampled slower than this (Hz) is upsampled before detection."""

DETECTION_SFREQ = 128.0
"""Rate (Hz) a slow ECG is upsampled to for detection."""

POLARITY_RADIUS_S = 0.12
"""Half-width of the window around each first-pass beat used to decide QRS polarity."""

RUNNING_MEDIAN_QRS = 31
"""Beats in the running median of QRS amplitude used to reject noise detections."""

MIN_RELATIVE_QRS = 0.3
"""A detection whose QRS amplitude is below this fraction of the running median is dropped."""

RUNNING_MEDIAN_BEATS = 9
"""Intervals in the running median that :func:`ibi_from_beats` compares each interval with."""


def detect_rpeaks(ecg: np.ndarray, sfreq: float) -> np.ndarray:
    """Find R peaks with :func:`sleepecg.detect_heartbeats`, robust to NaN gaps and polarity.

    The ECG is split into its finite stretches (NaN gaps, dropouts; stretches shorter than
    5 s or flat are skipped) and each stretch goes to sleepecg's Pan-Tompkins detector. The
    QRS polarity is then decided over all beats (is the largest deflection within +-120 ms
    positive or negative in a 0.5 Hz high-passed copy?); an inverted ECG is flipped and
    detected again, because sleepecg places its beats early on a negative R wave. Every beat
    is finally moved onto the R-wave maximum within +-50 ms, and detections whose QRS
    peak-to-peak amplitude is below 30 % of the running median of 31 beats (noise picked up
    during threshold learning) are dropped. An ECG sampled below 100 Hz is first upsampled
    to 128 Hz (sleepecg's band-pass needs it) and the beats are mapped back.

    Parameters
    ----------
    ecg : np.ndarray, shape (n_times,)
        One ECG lead, any unit; NaN allowed.
    sfreq : float
        Sampling rate in Hz (>= 100 Hz recommended; the canonical rate is 128 Hz).

    Returns
    -------
    np.ndarray, shape (n_beats,), int64
        Sorted, unique sample indices of the R peaks.
    """
    x = np.asarray(ecg, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"detect_rpeaks expects a 1-D ECG, got shape {x.shape}")
    if sfreq < MIN_DETECTION_SFREQ:  # sleepecg's 5-30 Hz band-pass needs > 60 Hz
        log.info("ECG at %g Hz: upsampled to %g Hz for beat detection", sfreq, DETECTION_SFREQ)
        upsampled = resample(x, sfreq, DETECTION_SFREQ)
        peaks = detect_rpeaks(upsampled, DETECTION_SFREQ)
        back = np.round(peaks * (sfreq / DETECTION_SFREQ)).astype(np.int64)
        return np.unique(np.clip(back, 0, max(x.size - 1, 0)))
    segments = finite_segments(x, min_length=max(int(MIN_SEGMENT_S * sfreq), 2))
    segments = [(a, b) for a, b in segments if np.ptp(x[a:b]) > 0]
    if not segments:
        return np.zeros(0, dtype=np.int64)
    highpassed = np.full(x.shape, np.nan)
    sos = sps.butter(2, 0.5, btype="highpass", fs=sfreq, output="sos")
    for start, stop in segments:  # a handful of stretches per night, not epochs
        highpassed[start:stop] = sps.sosfiltfilt(sos, x[start:stop])
    beats = _detect_in_segments(x, segments, sfreq)
    if beats.size == 0:
        return beats
    wide = _windows(highpassed, beats, max(int(round(POLARITY_RADIUS_S * sfreq)), 1))
    if np.nanmedian(np.nanmax(wide, axis=1) + np.nanmin(wide, axis=1)) < 0:
        log.info("ECG looks inverted (dominant negative QRS); flipped before detection")
        x, highpassed = -x, -highpassed
        beats = _detect_in_segments(x, segments, sfreq)
        if beats.size == 0:
            return beats
    radius = max(int(round(REFINE_RADIUS_S * sfreq)), 1)
    windows = _windows(highpassed, beats, radius)  # (n_beats, 2 * radius + 1)
    beats = beats + np.argmax(np.where(np.isfinite(windows), windows, -np.inf), axis=1) - radius
    amplitude = np.ptp(np.nan_to_num(_windows(highpassed, beats, radius)), axis=1)
    size = min(RUNNING_MEDIAN_QRS, amplitude.size | 1)
    typical = median_filter(amplitude, size=size, mode="mirror")
    beats = beats[amplitude >= MIN_RELATIVE_QRS * typical]
    return np.unique(np.clip(beats, 0, x.size - 1)).astype(np.int64)


def _detect_in_segments(x: np.ndarray, segments: list[tuple[int, int]], sfreq: float) -> np.ndarray:
    """sleepecg beats of every finite stretch, as sorted unique indices into ``x``."""
    from sleepecg import detect_heartbeats  # imported here: keeps package import light

    found: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    for start, stop in segments:
        try:
            beats = detect_heartbeats(np.ascontiguousarray(x[start:stop]), float(sfreq))
        except ValueError as err:  # sleepecg refuses flat or pathological input
            log.debug("no beats in samples %d-%d: %s", start, stop, err)
            continue
        found.append(np.asarray(beats, dtype=np.int64) + start)
    return np.unique(np.concatenate(found))


def _windows(x: np.ndarray, centres: np.ndarray, radius: int) -> np.ndarray:
    """Samples ``x[c - radius : c + radius + 1]`` for every centre; outside the array is NaN."""
    offsets = np.arange(-radius, radius + 1)
    idx = centres[:, None] + offsets[None, :]
    inside = (idx >= 0) & (idx < x.size)
    out = np.full(idx.shape, np.nan)
    out[inside] = x[idx[inside]]
    return out


def ibi_from_beats(
    beat_times_s: np.ndarray,
    duration_s: float,
    *,
    out_sfreq: float = 4.0,
    min_ibi_s: float = 0.3,
    max_ibi_s: float = 2.0,
    max_gap_s: float = 3.0,
    beat_ok: np.ndarray | None = None,
    max_rel_dev: float | None = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Evenly sampled inter-beat-interval series with a validity mask.

    Each interval ``d_k = t_{k+1} - t_k`` is placed at the midpoint of its two beats and the
    series is the straight line between consecutive *good* midpoints (``np.interp``), sampled
    at ``j / out_sfreq`` seconds. An interval is good when it lies in
    ``[min_ibi_s, max_ibi_s]``, both of its beats are normal (``beat_ok``), and it is within
    a factor ``1 + max_rel_dev`` of the running median of 9 intervals (catches missed and
    extra beats). Bad intervals are interpolated over when the stretch they leave uncovered
    (end of the previous good interval to start of the next) is at most ``max_gap_s``.

    Parameters
    ----------
    beat_times_s : np.ndarray, shape (n_beats,)
        Beat (R-peak) times in seconds from the start of the recording.
    duration_s : float
        Recording length in seconds; the output has ``round(duration_s * out_sfreq)`` samples.
    out_sfreq : float
        Output sampling rate in Hz (4 Hz canonical).
    min_ibi_s, max_ibi_s : float
        Physiologically plausible interval range in seconds.
    max_gap_s : float
        Longest uncovered stretch (seconds) that is bridged by interpolation and still valid.
    beat_ok : np.ndarray of bool, shape (n_beats,), optional
        False for non-normal beats (ectopic V, S...); intervals touching them are bad.
    max_rel_dev : float or None
        Relative deviation from the running median that makes an interval bad
        (``d > (1 + r) * med`` or ``d < med / (1 + r)``); ``None`` switches the check off.

    Returns
    -------
    ibi : np.ndarray, shape (n_out,), float32
        Interval in seconds; NaN where invalid.
    valid : np.ndarray, shape (n_out,), bool
        False before the first and after the last good interval, in uncovered stretches
        longer than ``max_gap_s``.

    Examples
    --------
    >>> ibi, ok = ibi_from_beats(np.arange(0, 61, 1.0), 60.0)
    >>> float(np.nanmean(ibi)), bool(ok.all())
    (1.0, True)
    """
    times = np.asarray(beat_times_s, dtype=np.float64)
    ok = np.ones(times.shape, dtype=bool) if beat_ok is None else np.asarray(beat_ok, dtype=bool)
    if times.ndim != 1 or ok.shape != times.shape:
        raise ValueError(
            f"beat_times_s must be 1-D and beat_ok the same shape, got {times.shape} and {ok.shape}"
        )
    order = np.argsort(times, kind="stable")
    times, ok = times[order], ok[order]
    n_out = max(int(np.floor(duration_s * out_sfreq + 0.5)), 0)
    ibi = np.full(n_out, np.nan, dtype=np.float32)
    valid = np.zeros(n_out, dtype=bool)
    if times.size < 2 or n_out == 0:
        return ibi, valid

    starts, ends = times[:-1], times[1:]
    intervals = ends - starts
    good = (intervals >= min_ibi_s) & (intervals <= max_ibi_s) & ok[:-1] & ok[1:]
    if max_rel_dev is not None and intervals.size >= 3:
        local = median_filter(intervals, size=RUNNING_MEDIAN_BEATS, mode="mirror")
        ratio = intervals / np.maximum(local, 1e-9)
        good &= (ratio <= 1 + max_rel_dev) & (ratio >= 1 / (1 + max_rel_dev))
    if not good.any():
        return ibi, valid

    g_start, g_end, g_val = starts[good], ends[good], intervals[good]
    t = np.arange(n_out) / out_sfreq
    nxt = np.searchsorted(g_end, t, side="left")  # first good interval ending at or after t
    has_next = nxt < g_end.size
    nxt_c = np.minimum(nxt, g_end.size - 1)
    inside = has_next & (g_start[nxt_c] <= t)
    prev_c = np.maximum(nxt - 1, 0)
    bridged = has_next & (nxt >= 1) & (g_start[nxt_c] - g_end[prev_c] <= max_gap_s)
    valid = inside | bridged
    midpoints = 0.5 * (g_start + g_end)
    ibi[valid] = np.interp(t[valid], midpoints, g_val)
    return ibi, valid
