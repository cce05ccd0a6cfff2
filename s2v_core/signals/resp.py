"""Breathing waveforms: from an effort/airflow channel, or derived from the ECG (EDR)."""

from __future__ import annotations

import logging

import numpy as np

from s2v_core.signals._nan import butter_bandpass, nan_sosfiltfilt
from s2v_core.signals.resampling import resample

__all__ = [
    "EDR_BAND_HZ",
    "EFFORT_BAND_HZ",
    "MAX_BEAT_GAP_S",
    "QRS_HALF_WIDTH_S",
    "resp_from_ecg",
    "resp_from_effort",
]

log = logging.getLogger(__name__)

EFFORT_BAND_HZ = (0.05, 1.0)
"""Pass band for a breathing waveform from a belt or flow sensor (3-60 breaths/min)."""

EDR_BAND_HZ = (0.1, 0.7)
"""Pass band for ECG-derived respiration (6-42 breaths/min)."""

QRS_HALF_WIDTH_S = 0.06
"""Half-width of the window around an R peak whose peak-to-peak range is the QRS amplitude."""

MAX_BEAT_GAP_S = 3.0
"""EDR is NaN where consecutive R peaks are further apart than this."""


def resp_from_effort(x: np.ndarray, sfreq: float, out_sfreq: float = 4.0) -> np.ndarray:
    """Breathing waveform from a thoracic/abdominal belt or an airflow channel.

    The signal is first resampled to ``out_sfreq`` (polyphase anti-aliasing, see
    :func:`~s2v_core.signals.resample`), then band-passed 0.05-1 Hz with a zero-phase
    Butterworth filter (order 2, run forwards and backwards). Filtering after resampling
    keeps the 0.05 Hz corner well conditioned. NaN gaps stay NaN.

    Parameters
    ----------
    x : np.ndarray, shape (n_times,)
        Effort or flow signal, any unit.
    sfreq : float
        Its sampling rate in Hz.
    out_sfreq : float
        Output rate in Hz (4 Hz canonical; must exceed 2 Hz).

    Returns
    -------
    np.ndarray, shape (round(n_times * out_sfreq / sfreq),), float32
        Zero-mean breathing waveform in the input unit.
    """
    y = resample(np.asarray(x), sfreq, out_sfreq)
    if y.size < 3:
        return y
    sos = butter_bandpass(*EFFORT_BAND_HZ, sfreq=out_sfreq)
    return nan_sosfiltfilt(sos, y).astype(np.float32)


def resp_from_ecg(
    ecg: np.ndarray,
    sfreq: float,
    rpeaks: np.ndarray,
    duration_s: float,
    out_sfreq: float = 4.0,
) -> np.ndarray:
    """ECG-derived respiration (EDR) from the beat-to-beat QRS amplitude.

    Breathing moves the heart relative to the electrodes and changes thoracic impedance,
    so the QRS amplitude follows respiration. For each R peak the peak-to-peak range of the
    ECG within +-60 ms (R minus S/Q; insensitive to baseline wander and to polarity) is
    taken, outlier amplitudes (beyond 5 IQR of the median: artefacts, ectopic beats) are
    dropped, the remaining values are linearly interpolated onto the ``out_sfreq`` grid
    and band-passed 0.1-0.7 Hz. The sign of EDR is arbitrary (depends on the lead).
    Our own implementation; neurokit2 is not used.

    Parameters
    ----------
    ecg : np.ndarray, shape (n_times,)
        ECG lead, any unit; NaN allowed.
    sfreq : float
        ECG sampling rate in Hz.
    rpeaks : np.ndarray, shape (n_beats,), int
        R-peak sample indices into ``ecg`` (e.g. from :func:`detect_rpeaks`).
    duration_s : float
        Length of the output in seconds.
    out_sfreq : float
        Output rate in Hz.

    Returns
    -------
    np.ndarray, shape (round(duration_s * out_sfreq),), float32
        EDR in the ECG unit; NaN before the first and after the last beat and in beat gaps
        longer than 3 s.
    """
    x = np.asarray(ecg, dtype=np.float64)
    peaks = np.asarray(rpeaks, dtype=np.int64)
    n_out = max(int(np.floor(duration_s * out_sfreq + 0.5)), 0)
    out = np.full(n_out, np.nan, dtype=np.float32)
    peaks = np.unique(peaks[(peaks >= 0) & (peaks < x.size)])
    if peaks.size < 4 or n_out == 0:
        log.info("EDR: fewer than 4 R peaks; returning NaN")
        return out

    half = max(int(round(QRS_HALF_WIDTH_S * sfreq)), 1)
    idx = np.clip(peaks[:, None] + np.arange(-half, half + 1)[None, :], 0, x.size - 1)
    windows = x[idx]  # (n_beats, 2 * half + 1)
    finite = np.isfinite(windows).all(axis=1)
    amplitude = np.ptp(np.where(np.isfinite(windows), windows, 0.0), axis=1)
    q25, med, q75 = np.percentile(amplitude[finite], [25, 50, 75]) if finite.any() else (0, 0, 0)
    spread = max(q75 - q25, 1e-12)
    keep = finite & (np.abs(amplitude - med) <= 5 * spread)
    if keep.sum() < 4:
        return out
    beat_t = peaks[keep] / sfreq
    amp = amplitude[keep]

    t = np.arange(n_out) / out_sfreq
    edr = np.interp(t, beat_t, amp)
    # valid only between beats that are close enough together
    nxt = np.clip(np.searchsorted(beat_t, t, side="left"), 1, beat_t.size - 1)
    covered = (
        (t >= beat_t[0]) & (t <= beat_t[-1]) & (beat_t[nxt] - beat_t[nxt - 1] <= MAX_BEAT_GAP_S)
    )
    edr[~covered] = np.nan
    if covered.sum() < 3:
        return out
    sos = butter_bandpass(*EDR_BAND_HZ, sfreq=out_sfreq)
    return nan_sosfiltfilt(sos, edr).astype(np.float32)
