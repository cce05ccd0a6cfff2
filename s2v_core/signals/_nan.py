"""NaN-aware helpers shared by the signal modules (internal)."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps


def fill_nan_linear(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill non-finite samples of a 1-D signal by linear interpolation.

    Parameters
    ----------
    x : np.ndarray, shape (n_times,)
        Signal, any float dtype.

    Returns
    -------
    filled : np.ndarray, shape (n_times,), float64
        ``x`` with NaN/inf runs replaced by the straight line between their finite neighbours;
        leading and trailing runs hold the nearest finite value. All zeros if nothing is finite.
    bad : np.ndarray, shape (n_times,), bool
        True where ``x`` was not finite.
    """
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x.copy(), bad
    if bad.all():
        return np.zeros_like(x), bad
    idx = np.arange(x.size)
    filled = x.copy()
    filled[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return filled, bad


def finite_segments(x: np.ndarray, min_length: int = 1) -> np.ndarray:
    """Start/stop indices of the runs of finite samples in a 1-D signal.

    Returns
    -------
    np.ndarray, shape (n_segments, 2), int64
        Half-open ``[start, stop)`` sample ranges, only those with at least ``min_length``
        samples, in time order.
    """
    ok = np.isfinite(np.asarray(x))
    edges = np.diff(np.concatenate(([0], ok.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    keep = (stops - starts) >= min_length
    return np.stack([starts[keep], stops[keep]], axis=1).astype(np.int64)


def nan_sosfiltfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase SOS filtering that tolerates NaN gaps.

    NaN runs are bridged linearly for the filter and set back to NaN afterwards.

    Parameters
    ----------
    sos : np.ndarray, shape (n_sections, 6)
        Second-order sections from :func:`scipy.signal.butter`.
    x : np.ndarray, shape (n_times,)
        Signal.

    Returns
    -------
    np.ndarray, shape (n_times,), float64
    """
    filled, bad = fill_nan_linear(x)
    if bad.all() or filled.size < 2:
        return np.full(filled.shape, np.nan)
    padlen = min(3 * (2 * len(sos) + 1), filled.size - 1)
    out = sps.sosfiltfilt(sos, filled, padlen=padlen)
    out[bad] = np.nan
    return out


def butter_bandpass(low_hz: float, high_hz: float, sfreq: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass as second-order sections; ``high_hz`` is kept below Nyquist.

    Returns
    -------
    np.ndarray, shape (order, 6)
    """
    nyquist = sfreq / 2.0
    high = min(high_hz, 0.9 * nyquist)
    if not 0 < low_hz < high:
        raise ValueError(
            f"band-pass {low_hz}-{high_hz} Hz is not possible at sfreq={sfreq} Hz "
            f"(needs 0 < low < high < {nyquist} Hz)"
        )
    return sps.butter(order, [low_hz, high], btype="bandpass", fs=sfreq, output="sos")
