"""Small vectorised building blocks for the synthetic signals (noise, envelopes, event placement)."""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sps

from s2v_core.modalities import EPOCH_SECONDS


def band_noise(
    n: int,
    sfreq: float,
    bands: list[tuple[float, float]],
    rng: np.random.Generator,
    *,
    relative_taper: float | None = None,
) -> np.ndarray:
    """Gaussian noise limited to each frequency band, each with unit RMS.

    One FFT of white noise is shared by every band (bands that do not overlap are then
    independent); band edges are raised-cosine tapers 0.5 Hz wide so that bursts do not ring, or
    ``relative_taper`` times the band width (+ 0.005 Hz) for slow bands, where a 0.5-Hz taper
    would spread a 0.04-0.15 Hz band far into faster rhythms.

    Parameters
    ----------
    n : int
        Number of samples.
    sfreq : float
        Sampling rate in Hz.
    bands : list of (low, high)
        Pass bands in Hz.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (len(bands), n), float32
    """
    spec = sp_fft.rfft(rng.standard_normal(n, dtype=np.float32), workers=-1)
    df = sfreq / n
    out = np.empty((len(bands), n), dtype=np.float32)
    shaped = np.zeros_like(spec)
    for i, (lo, hi) in enumerate(bands):
        taper = _TAPER_HZ if relative_taper is None else relative_taper * (hi - lo) + 0.005
        i0 = max(int((lo - taper) / df), 0)
        i1 = min(int((hi + taper) / df) + 2, len(spec))
        shaped[:] = 0
        shaped[i0:i1] = spec[i0:i1] * _band_gain(np.arange(i0, i1) * df, lo, hi, taper)
        out[i] = sp_fft.irfft(shaped, n, workers=-1)
        out[i] /= max(float(np.std(out[i])), 1e-12)
    return out


_TAPER_HZ = 0.5


def _band_gain(freqs: np.ndarray, lo: float, hi: float, taper: float = _TAPER_HZ) -> np.ndarray:
    """Raised-cosine band-pass gain, 1 inside ``[lo, hi]``, 0 beyond ``taper`` Hz outside."""
    below = np.clip((freqs - (lo - taper)) / taper, 0.0, 1.0)
    above = np.clip(((hi + taper) - freqs) / taper, 0.0, 1.0)
    return ((0.5 - 0.5 * np.cos(np.pi * below)) * (0.5 - 0.5 * np.cos(np.pi * above))).astype(
        np.float32
    )


def pink_noise(
    n: int, sfreq: float, rng: np.random.Generator, *, exponent: float = 1.0, f_min: float = 0.3
) -> np.ndarray:
    """Noise with a 1/f^exponent power spectrum above ``f_min`` Hz, unit RMS, float32, shape (n,)."""
    spec = sp_fft.rfft(rng.standard_normal(n, dtype=np.float32), workers=-1)
    freqs = np.arange(len(spec), dtype=np.float32) * np.float32(sfreq / n)
    spec *= np.maximum(freqs, np.float32(f_min)) ** np.float32(-exponent / 2.0)
    spec[0] = 0.0
    x = sp_fft.irfft(spec, n, workers=-1)
    x /= max(float(np.std(x)), 1e-12)
    return x


def lowpass_noise(
    n: int, sfreq: float, cutoff: float, rng: np.random.Generator, *, relative_taper: float | None = None
) -> np.ndarray:
    """Unit-RMS Gaussian noise below ``cutoff`` Hz (slow random fluctuations), float32, shape (n,)."""
    return band_noise(n, sfreq, [(0.0, cutoff)], rng, relative_taper=relative_taper)[0]


def epoch_envelope(values: np.ndarray, sfreq: float, n: int, ramp_s: float = 2.0) -> np.ndarray:
    """Piecewise-constant per-epoch values with linear ramps of ``ramp_s`` seconds between epochs.

    Parameters
    ----------
    values : ndarray, shape (n_epochs,)
        One value per 30-s epoch.
    sfreq : float
        Output sampling rate in Hz.
    n : int
        Output length in samples.
    ramp_s : float
        Duration of each transition, centred on the epoch boundary.

    Returns
    -------
    ndarray, shape (n,), float32
    """
    values = np.asarray(values, dtype=float)
    starts = np.arange(len(values)) * EPOCH_SECONDS
    half = ramp_s / 2.0
    knots_t = np.column_stack([starts + half, starts + EPOCH_SECONDS - half]).ravel()
    knots_v = np.repeat(values, 2)
    t = np.arange(n) / sfreq
    return np.interp(t, knots_t, knots_v).astype(np.float32)


def per_sample(values: np.ndarray, sfreq: float, n: int) -> np.ndarray:
    """Per-epoch values repeated to every sample (no smoothing), shape (n,)."""
    idx = np.minimum((np.arange(n) / sfreq // EPOCH_SECONDS).astype(int), len(values) - 1)
    return np.asarray(values)[idx]


def place_waveforms(n: int, onsets: np.ndarray, waveforms: np.ndarray) -> np.ndarray:
    """Sum short waveforms into a length-``n`` signal (overlaps add), float32.

    Parameters
    ----------
    n : int
        Output length in samples.
    onsets : ndarray, shape (k,), int
        First sample of each waveform.
    waveforms : ndarray, shape (k, L)
        One waveform per event; samples falling outside ``[0, n)`` are dropped.
    """
    if len(onsets) == 0:
        return np.zeros(n, dtype=np.float32)
    idx = np.asarray(onsets)[:, None] + np.arange(waveforms.shape[1])[None, :]
    ok = (idx >= 0) & (idx < n)
    return np.bincount(idx[ok], weights=waveforms[ok], minlength=n).astype(np.float32)


def event_onsets(rate_per_min: np.ndarray, sfreq: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson event onsets (sample indices) with a per-epoch rate (events per minute)."""
    counts = rng.poisson(np.asarray(rate_per_min) * EPOCH_SECONDS / 60.0)
    epoch = np.repeat(np.arange(len(counts)), counts)
    t = (epoch + rng.random(len(epoch))) * EPOCH_SECONDS
    return np.sort((t * sfreq).astype(np.int64))


def apply_filters(
    x: np.ndarray, sfreq: float, highpass: float | None, lowpass: float | None
) -> np.ndarray:
    """Causal Butterworth filtering as an amplifier would (order 1 high-pass, order 2 low-pass).

    A low-pass at or above 0.45 x ``sfreq`` is skipped (the acquisition's anti-aliasing stage
    is assumed to have handled it).
    """
    sections = []
    if highpass:
        sections.append(sps.butter(1, highpass, "highpass", fs=sfreq, output="sos"))
    if lowpass and lowpass < 0.45 * sfreq:
        sections.append(sps.butter(2, lowpass, "lowpass", fs=sfreq, output="sos"))
    y = np.asarray(x, dtype=np.float32)
    if sections:
        y = sps.sosfilt(np.vstack(sections).astype(np.float32), y)
    return y.astype(np.float32, copy=False)


def resample_to(x: np.ndarray, sfreq_in: int, sfreq_out: int) -> np.ndarray:
    """Polyphase resampling between integer rates, float32."""
    if sfreq_in == sfreq_out:
        return np.asarray(x, dtype=np.float32)
    g = np.gcd(int(sfreq_in), int(sfreq_out))
    return sps.resample_poly(x, sfreq_out // g, sfreq_in // g).astype(np.float32)
