"""Resampling, epoching and per-night robust scaling of canonical signals."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as sps
from scipy.ndimage import maximum_filter1d

from s2v_core.limits.bounds import MAX_RECORDING_S
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.signals import _quantiles
from s2v_core.signals._nan import fill_nan_linear
from s2v_core.signals._polyphase import resample_poly_line

__all__ = [
    "MAX_DENOMINATOR",
    "MAX_POLYPHASE_FACTOR",
    "epoch_matrix",
    "rational_ratio",
    "resample",
    "robust_scale",
    "robust_stats",
]

MAX_DENOMINATOR = 1000
"""Largest up/down factor tried when turning a rate ratio into a fraction."""
MAX_POLYPHASE_FACTOR = 2**16
"""Largest up or down factor :func:`resample` accepts (its filter has 20x as many taps): covers
128 Hz from the slowest rate a reader accepts (:data:`s2v_core.limits.bounds.MIN_SFREQ_HZ`, 38,400)."""


def rational_ratio(sfreq_in: float, sfreq_out: float) -> tuple[int, int]:
    """Integer ``(up, down)`` with ``up / down ~= sfreq_out / sfreq_in``.

    Examples
    --------
    >>> rational_ratio(200, 128), rational_ratio(1, 4)
    ((16, 25), (4, 1))
    """
    if not (np.isfinite(sfreq_in) and np.isfinite(sfreq_out)) or sfreq_in <= 0 or sfreq_out <= 0:
        raise ValueError(
            f"sampling rates must be positive and finite, got in={sfreq_in}, out={sfreq_out}"
        )
    frac = Fraction(sfreq_out / sfreq_in).limit_denominator(MAX_DENOMINATOR)
    if frac.numerator > MAX_POLYPHASE_FACTOR:
        # a slow channel at an odd rate (0.250833 Hz -> 128 Hz is 153600/301): approximate the
        # inverse ratio instead, so that ``up`` stays within the polyphase bound; the rate error is at
        # most ~1e-5 relative (a channel this slow drifts by under a second over an 8-h night)
        inv = Fraction(sfreq_in / sfreq_out).limit_denominator(MAX_POLYPHASE_FACTOR)
        if inv.numerator > 0:
            return inv.denominator, inv.numerator
    if frac.numerator == 0:
        raise ValueError(f"cannot resample from {sfreq_in} Hz to {sfreq_out} Hz (ratio too small)")
    return frac.numerator, frac.denominator


def resample(x: np.ndarray, sfreq_in: float, sfreq_out: float) -> np.ndarray:
    """Resample a 1-D signal with a polyphase anti-aliasing filter, keeping NaN gaps.

    The rate ratio becomes ``up/down`` through ``Fraction(...).limit_denominator(1000)`` and
    :func:`scipy.signal.resample_poly`'s filter does the work (Kaiser window, ``padtype="line"`` so a
    DC offset such as SpO2 ~ 95 % does not droop at the edges), computed as block matrix products
    for float32 input (:func:`s2v_core.signals._polyphase.resample_poly_line`, equal to float32
    rounding). Non-finite runs are bridged linearly for the filter (in float64, with scipy's own
    loop) and put back as NaN at every output sample whose time falls on a missing input sample
    (for downsampling: whose input window holds one).

    Parameters
    ----------
    x : np.ndarray, shape (n_times,)
        Signal in any unit.
    sfreq_in, sfreq_out : float
        Input and output sampling rates in Hz.

    Returns
    -------
    np.ndarray, shape (round(n_times * sfreq_out / sfreq_in),), float32
        A float32 copy when the rates are equal.

    Examples
    --------
    >>> resample(np.ones(256), 256, 128).shape
    (128,)
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {x.shape}")
    if sfreq_in == sfreq_out:
        return x.astype(np.float32, copy=True)
    up, down = rational_ratio(sfreq_in, sfreq_out)
    n_out = _bounded_output_length(x.size, sfreq_in, sfreq_out, up, down)
    if x.size == 0 or n_out == 0:
        return np.zeros(0, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        filled, bad = fill_nan_linear(x)
    else:  # the common case: filter in float32 (the canonical type; about 1.3x faster, no copy)
        filled = x.astype(np.float32, copy=False)
    if bad.all():
        return np.full(n_out, np.nan, dtype=np.float32)
    if x.size == 1:
        y = np.full(n_out, filled[0])
    elif filled.dtype == np.float32:  # the same filter and padding, as matrix products (3-8x faster)
        y = resample_poly_line(filled, up, down)
    else:
        y = sps.resample_poly(filled, up, down, padtype="line")
    if y.size >= n_out:
        y = y[:n_out]
    else:  # rounding can leave us one sample short: hold the last value
        y = np.concatenate([y, np.full(n_out - y.size, y[-1] if y.size else filled[-1])])
    if bad.any():
        y[_bad_output_samples(bad, sfreq_in, sfreq_out, n_out)] = np.nan
    return y.astype(np.float32)


def _bounded_output_length(n_in: int, sfreq_in: float, sfreq_out: float, up: int, down: int) -> int:
    """Output samples of :func:`resample`, refused before any allocation when absurd.

    The readers check every declared rate and length against :mod:`s2v_core.limits.bounds` first; this
    guard keeps a library caller from asking for a signal longer than the longest recording
    accepted (:data:`~s2v_core.limits.bounds.MAX_RECORDING_S` at ``sfreq_out``) or for a polyphase
    filter beyond :data:`MAX_POLYPHASE_FACTOR` (``scipy`` builds ``20 * max(up, down)`` taps).

    Raises
    ------
    ValueError
        Either bound is exceeded.
    """
    n_out = int(np.floor(n_in * sfreq_out / sfreq_in + 0.5))
    longest = int(np.ceil(MAX_RECORDING_S * sfreq_out)) + 1
    if n_out > longest:
        raise ValueError(
            f"resampling {n_in} samples from {sfreq_in:g} to {sfreq_out:g} Hz gives {n_out} samples, "
            f"more than {MAX_RECORDING_S / 3600:g} h at {sfreq_out:g} Hz ({longest})"
        )
    if max(up, down) > MAX_POLYPHASE_FACTOR:
        raise ValueError(
            f"cannot resample from {sfreq_in:g} Hz to {sfreq_out:g} Hz: the factor {up}/{down} needs "
            f"a filter of over {20 * MAX_POLYPHASE_FACTOR} taps"
        )
    return n_out


def _bad_output_samples(
    bad: np.ndarray, sfreq_in: float, sfreq_out: float, n_out: int
) -> np.ndarray:
    """Output samples whose time maps onto missing input (nearest-sample rule)."""
    ratio = sfreq_in / sfreq_out  # input samples per output sample
    mask = bad.astype(np.float32)
    if ratio > 1:
        mask = maximum_filter1d(mask, size=int(np.ceil(ratio)), mode="nearest")
    positions = np.arange(n_out) * ratio
    return np.interp(positions, np.arange(bad.size), mask) >= 0.5


def epoch_matrix(x: np.ndarray, sfreq: int, n_epochs: int, *, copy: bool = True) -> np.ndarray:
    """Cut a 1-D signal into consecutive 30-s epochs.

    Parameters
    ----------
    x : np.ndarray, shape (n_times,)
        Signal sampled at ``sfreq``; sample 0 is the start of epoch 0.
    sfreq : int
        Sampling rate in Hz (an integer so that an epoch holds a whole number of samples).
    n_epochs : int
        Number of epochs wanted. A longer signal is truncated; a shorter one is padded with
        NaN at the end.
    copy : bool
        False: return a view of ``x`` when it is contiguous float32 and long enough (writing to
        the epochs then writes to ``x``); otherwise, and by default, a new array.

    Returns
    -------
    np.ndarray, shape (n_epochs, sfreq * 30), float32

    Examples
    --------
    >>> epoch_matrix(np.arange(10.0), 1, 2).shape
    (2, 30)
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"epoch_matrix expects a 1-D signal, got shape {x.shape}")
    if int(sfreq) != sfreq or sfreq <= 0:
        raise ValueError(f"sfreq must be a positive integer number of Hz, got {sfreq}")
    if n_epochs < 0:
        raise ValueError(f"n_epochs must be >= 0, got {n_epochs}")
    per_epoch = int(sfreq) * EPOCH_SECONDS
    need = per_epoch * int(n_epochs)
    if not copy and x.dtype == np.float32 and x.size >= need and x.flags.c_contiguous:
        return x[:need].reshape(int(n_epochs), per_epoch)
    out = np.full(need, np.nan, dtype=np.float32)
    take = min(need, x.size)
    out[:take] = x[:take]
    return out.reshape(int(n_epochs), per_epoch)


def robust_scale(x: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Centre on the median and divide by the inter-quartile range (per night).

    Parameters
    ----------
    x : np.ndarray, any shape, e.g. (n_epochs, samples_per_epoch)
        Signal in physical units; NaN allowed.
    valid : np.ndarray of bool, same shape as ``x``, optional
        Samples that may enter the statistics (e.g. usable epochs broadcast over samples).
        Non-finite samples never do.

    Returns
    -------
    scaled : np.ndarray, same shape as ``x``, float32
        ``(x - median) / iqr``; NaN stays NaN. When ``iqr == 0`` (flat signal, an IQR
        below 1e-12 of the median's size, or no valid sample) the divisor is 1 and only
        the median is removed.
    median : float
        Median of the valid samples (0.0 when there is none).
    iqr : float
        75th minus 25th percentile of the valid samples; 0.0 flags "could not scale".

    Examples
    --------
    >>> scaled, med, iqr = robust_scale(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    >>> med, iqr, scaled.tolist()
    (3.0, 2.0, [-1.0, -0.5, 0.0, 0.5, 1.0])
    """
    x = np.asarray(x)
    median, iqr = robust_stats(x, valid)  # (0.0, 0.0) without a valid sample: a float32 copy
    divisor = iqr if iqr > 0 else 1.0
    scaled = ((x.astype(np.float64) - median) / divisor).astype(np.float32)
    return scaled, median, iqr


def robust_stats(x: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """The ``(median, iqr)`` of :func:`robust_scale`, without scaling anything.

    Same arguments and rules: only finite samples where ``valid`` holds count; ``(0.0, 0.0)`` when
    there is none; the IQR is 0.0 when it is numerically zero.
    """
    x = np.asarray(x)
    use = np.isfinite(x)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != x.shape:
            raise ValueError(f"valid mask shape {valid.shape} does not match signal {x.shape}")
        use &= valid
    values = x if use.all() else x[use]
    if values.size == 0:
        return 0.0, 0.0
    values = values.ravel()
    if values.dtype in (np.float32, np.float64):  # exact in float64: no float64 copy of the night
        q25, median, q75 = _quantiles.percentile(values, [25, 50, 75], np.float64)
    else:
        q25, median, q75 = np.percentile(values.astype(np.float64), [25, 50, 75])
    iqr = float(q75 - q25)
    if iqr <= 1e-12 * max(1.0, abs(float(median))):  # numerically zero: do not blow up
        iqr = 0.0
    return float(median), iqr
