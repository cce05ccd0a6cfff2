"""Engineered per-epoch features that transfer between recordings, normalised within each night.

The model's tokenizers can read these instead of (or next to) the raw samples. They are chosen to be
invariant to what differs between sites, devices and the synthetic generator: absolute gain and
polarity (everything is relative or normalised within the night), sampling rate and anti-alias
filter (biopotential features only use 0.3-25 Hz, which a 50-Hz recording still has), line noise
(above 25 Hz) and montage details (relative band powers and shapes rather than amplitudes).

Per modality, :func:`epoch_features` gives the raw values of each base feature for every epoch;
:func:`night_features` turns them into what the model reads:

1. each base feature is robustly standardised within the night (minus the median, over the IQR,
   both over the valid epochs), then clipped to +-5;
2. two smoothed copies are appended, as scorers read context: a centred triangular moving
   average over 7.5 min and a trailing (past-only) one over 2 min, each standardised the same way;
3. for EEG and EOG, the scale-free base features (relative band powers, ratios, spectral shape,
   Hjorth, zero crossings, moments: not the amplitudes) are appended once more *without* the
   within-night normalisation, as is and smoothed (centred, 7.5 min), standardised by fixed
   constants (:data:`ABSOLUTE_SCALE`). Normalising within a recording says how an epoch differs from
   the rest of that recording only: in a 30-min excerpt with no wake (DREAMS excerpt 2) the lightest
   N2 then looks like wake. The absolute values keep what the recording is as a whole;
4. invalid epochs are 0 (the night's median; the reference centre for the absolute columns).

So the feature vector of a modality has ``3 * len(base_feature_names(m))`` entries, plus
``2 * len(ABSOLUTE_SCALE[m])`` for EEG and EOG (:func:`feature_names`). Everything is vectorised
numpy over epochs: on one core, an eight-hour night takes about 0.15 s for EEG or EOG (of which
0.06 s is the night's band-pass filter), 0.1 s for EMG, 0.25 s for ECG (R-peak detection) and a few
hundredths of a second for each 4-Hz modality.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import signal as sps
from scipy.ndimage import convolve1d, maximum_filter1d, uniform_filter1d

from s2v_core.modalities import EPOCH_SECONDS, SFREQ, check_modality
from s2v_core.signals._filtfilt import sosfiltfilt_every
from s2v_core.signals.cardio import detect_rpeaks, ibi_from_beats

__all__ = [
    "ABSOLUTE_SCALE",
    "BAND_LIMIT_HZ",
    "FEATURE_VERSION",
    "SMOOTHING_EPOCHS",
    "base_feature_names",
    "epoch_features",
    "feature_names",
    "features_from_raw",
    "n_features",
    "night_features",
    "normalise_within_night",
    "smooth_centred",
]

FEATURE_VERSION = 2
"""Changes whenever a feature definition changes (checkpoints keep the version they were trained with).
2: absolute scale-free EEG/EOG columns appended (:data:`ABSOLUTE_SCALE`)."""

BAND_LIMIT_HZ = (0.3, 25.0)
"""Biopotential features use this band only: a 50-Hz recording has nothing above 25 Hz."""

SMOOTHING_EPOCHS = (15, 4)
"""Centred triangular moving average over 15 epochs (7.5 min), trailing one over 4 epochs (2 min)."""

_CLIP = 5.0
_FEATURE_SFREQ = 64  # biopotential features are computed on the 0.3-25 Hz band at 64 Hz
_EEG_BANDS = (("slow", 0.3, 1.0), ("delta", 1.0, 4.0), ("theta", 4.0, 8.0), ("alpha", 8.0, 12.0),
              ("sigma", 12.0, 16.0), ("beta", 16.0, 25.0))  # fmt: skip
_SLEEP_EEG = ("rel_sdelta", "rel_fdelta", "rel_delta", "rel_theta", "rel_alpha", "rel_sigma", "rel_beta",
              "ratio_delta_theta", "ratio_delta_sigma", "ratio_delta_beta", "ratio_alpha_theta",
              "ratio_sigma_theta_alpha", "ratio_theta_alpha_sigma_beta", "log_power", "log_std", "log_iqr",
              "spectral_edge", "median_frequency", "spectral_entropy", "aperiodic_slope", "peak_8_16",
              "hjorth_mobility", "hjorth_complexity", "zero_crossings", "abs_skewness", "kurtosis",
              "sigma_bursts", "slow_wave_ptp")  # fmt: skip
_EMG_BANDS = (("low", 0.3, 4.0), ("mid", 4.0, 12.0), ("high", 12.0, 25.0))
_TIME_DOMAIN = ("log_power", "hjorth_mobility", "hjorth_complexity", "zero_crossings",
                "perm_entropy", "petrosian_fd", "log_iqr", "kurtosis", "spectral_entropy",
                "spectral_edge")  # fmt: skip

_CARDIAC = ("log_ibi", "log_ibi_std", "log_ibi_rmssd", "log_hf_2min", "log_lf_5min", "log_lf_hf",
            "log_vlf_5min", "ibi_detrended", "log_ibi_range", "hf_peak_hz")  # fmt: skip
_BREATHING = ("rate_hz", "regularity", "log_amplitude", "amplitude_cv", "log_low_high", "log_amp_change",
              "crossings", "spectral_entropy")  # fmt: skip
_SPO2 = ("level", "log_range", "drop_from_max", "slope", "desaturations", "log_std")

_BASE_NAMES: dict[str, tuple[str, ...]] = {
    "ibi": _CARDIAC,
    "ecg": _CARDIAC + ("log_qrs_amplitude_cv",),
    "resp": _BREATHING,
    "effort": _BREATHING,
    "airflow": _BREATHING,
    "spo2": _SPO2,
    "eeg": _SLEEP_EEG,
    "eog": _SLEEP_EEG,
    "emg": tuple(f"rel_{b}" for b, _, _ in _EMG_BANDS) + _TIME_DOMAIN,
}


ABSOLUTE_SCALE: dict[str, dict[str, tuple[float, float]]] = {
    # (centre, spread) of each raw feature: median and IQR over the training nights of the recipe's
    # synthetic cohort (48 nights, seed 2026; generator calibrated against DREAMS), rounded. Fixed
    # constants, so every recording is read on the same scale; tests/test_features.py checks that
    # the generator's nights still come out near (0, 1) with them.
    "eeg": {
        "rel_sdelta": (-0.29, 0.11), "rel_fdelta": (-0.67, 0.15), "rel_delta": (-0.135, 0.1),
        "rel_theta": (-0.87, 0.28), "rel_alpha": (-1.21, 0.37), "rel_sigma": (-1.63, 0.26),
        "rel_beta": (-1.6, 0.32), "ratio_delta_theta": (0.72, 0.37), "ratio_delta_sigma": (1.48, 0.34),
        "ratio_delta_beta": (1.46, 0.41), "ratio_alpha_theta": (-0.33, 0.25),
        "ratio_sigma_theta_alpha": (-0.91, 0.23), "ratio_theta_alpha_sigma_beta": (0.59, 0.23),
        "spectral_edge": (11.8, 3.5), "median_frequency": (1.75, 0.5), "spectral_entropy": (0.72, 0.11),
        "aperiodic_slope": (-1.82, 0.3), "peak_8_16": (9.75, 1.5), "hjorth_mobility": (0.48, 0.17),
        "hjorth_complexity": (2.47, 0.84), "zero_crossings": (10.1, 2.9), "abs_skewness": (0.1, 0.16),
        "kurtosis": (0.12, 1.8),
    },
    "eog": {
        "rel_sdelta": (-0.04, 0.08), "rel_fdelta": (-1.74, 1.6), "rel_delta": (-0.018, 0.031),
        "rel_theta": (-1.63, 1.2), "rel_alpha": (-2.12, 0.85), "rel_sigma": (-2.46, 1.0),
        "rel_beta": (-2.36, 1.2), "ratio_delta_theta": (1.6, 1.2), "ratio_delta_sigma": (2.45, 1.0),
        "ratio_delta_beta": (2.34, 1.2), "ratio_alpha_theta": (-0.25, 0.46),
        "ratio_sigma_theta_alpha": (-0.82, 0.66), "ratio_theta_alpha_sigma_beta": (0.5, 0.77),
        "spectral_edge": (3.25, 4.8), "median_frequency": (0.75, 0.5), "spectral_entropy": (0.36, 0.23),
        "aperiodic_slope": (-1.8, 1.4), "peak_8_16": (9.75, 2.5), "hjorth_mobility": (0.19, 0.1),
        "hjorth_complexity": (5.3, 4.7), "zero_crossings": (3.5, 3.2), "abs_skewness": (0.125, 0.26),
        "kurtosis": (0.14, 2.6),
    },
}  # fmt: skip
"""Per modality, the scale-free base features also given to the model without within-night normalisation."""


def base_feature_names(modality: str) -> tuple[str, ...]:
    """Names of the base features of ``modality`` (before the two smoothed copies)."""
    return _BASE_NAMES[check_modality(modality)]


def feature_names(modality: str) -> tuple[str, ...]:
    """Names of the features :func:`night_features` returns for ``modality``, in column order."""
    base = base_feature_names(modality)
    absolute = tuple(ABSOLUTE_SCALE.get(modality, {}))
    return (base + tuple(f"{n}@centre" for n in base) + tuple(f"{n}@past" for n in base)
            + tuple(f"{n}@abs" for n in absolute) + tuple(f"{n}@abs_centre" for n in absolute))  # fmt: skip


def n_features(modality: str) -> int:
    """Number of columns :func:`night_features` returns for ``modality``."""
    return 3 * len(base_feature_names(modality)) + 2 * len(ABSOLUTE_SCALE.get(modality, {}))


# --- biopotentials (EEG, EOG, chin EMG) -------------------------------------------------------
# Speed notes for the functions below. Their outputs are those of the plain numpy they replaced
# (tests/test_features_speed_equivalence.py keeps a copy of that as the reference):
#  - order statistics come from ``np.sort`` of float32 rows (vectorised, several times faster
#    than ``np.partition`` with two indices, ``np.median`` or ``np.percentile``) or from one
#    single-index partition; they select the same values, so they are bit-identical;
#  - FFTs and filters whose output feeds a discrete feature (spectral edge, peak frequency, zero
#    crossings, ordinal patterns) keep their inputs, shapes, dtypes and arithmetic exactly: one
#    rounding there could move a feature by a whole frequency bin or crossing;
#  - third and fourth powers are products (``x**3`` of a float32 array goes through ``pow``,
#    about 60 ns a value), and the spindle-band powers come from a matrix product with the DFT
#    rows of the bins needed instead of an FFT per 1-s window: these differ from the reference by
#    float32 rounding only (about 1e-6 relative; continuous features, no thresholds after them).
def _median_of_sorted(s: np.ndarray) -> np.ndarray:
    """``np.median(s, axis=-1)`` of ``s`` already sorted along its last axis (bit-identical)."""
    k = s.shape[-1]
    upper = s[..., k // 2]
    return upper if k % 2 else (s[..., k // 2 - 1] + upper) / 2


def _row_medians(x: np.ndarray) -> np.ndarray:
    """``np.median(x, axis=1)`` of a 2-D float array without NaN (bit-identical, faster).

    One single-index partition puts the upper middle value in place and the smaller half before
    it; the lower middle value is that half's maximum.
    """
    k = x.shape[1]
    part = np.partition(x, k // 2, axis=1)
    upper = part[:, k // 2]
    return upper if k % 2 else (part[:, : k // 2].max(axis=1) + upper) / 2


def _welch_power(x: np.ndarray, sfreq: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean periodogram of 4-s Hann segments with 50 % overlap, per epoch.

    Returns frequencies ``(n_freq,)`` and power ``(n_epochs, n_freq)``.
    """
    seg = 4 * sfreq
    segments = np.lib.stride_tricks.sliding_window_view(x, seg, axis=1)[:, :: seg // 2]  # (n, k, seg)
    segments = segments - segments.mean(axis=2, keepdims=True)
    segments *= np.hanning(seg).astype(np.float32)
    spec = np.fft.rfft(segments, axis=2)
    power = (spec.real**2 + spec.imag**2).mean(axis=1)  # (n, n_freq)
    return np.fft.rfftfreq(seg, 1.0 / sfreq), power


def _band_limited(x: np.ndarray, sfreq: int, lo: float, hi: float, out_sfreq: int) -> np.ndarray:
    """Each epoch with everything outside ``lo..hi`` Hz removed (ideal FFT filter), at ``out_sfreq``.

    ``out_sfreq`` must be at least ``2 * hi``; the same epoch comes back with fewer samples.
    """
    n_out = x.shape[1] * out_sfreq // sfreq
    spec = np.fft.rfft(x, axis=1)[:, : n_out // 2 + 1]
    f = np.fft.rfftfreq(x.shape[1], 1.0 / sfreq)[: n_out // 2 + 1]
    spec[:, (f < lo) | (f > hi)] = 0
    y = np.fft.irfft(spec, n=n_out, axis=1)
    y *= n_out / x.shape[1]
    return y.astype(np.float32, copy=False)


def _perm_entropy(x: np.ndarray) -> np.ndarray:
    """Normalised permutation entropy of order 3, delay 1, of each row (0: regular, 1: random)."""
    a, b, c = x[:, :-2], x[:, 1:-1], x[:, 2:]
    # the ordinal pattern of (a, b, c) from three comparisons, one byte a pattern; ties count as
    # "not less"; 6 of the 8 codes occur
    codes = np.less(a, b).view(np.uint8)
    codes |= np.less(b, c).view(np.uint8) << 1
    codes |= np.less(a, c).view(np.uint8) << 2
    n = codes.shape[1]
    rows = 8 * np.arange(len(x), dtype=np.intp)[:, None]
    counts = np.bincount((codes + rows).ravel(), minlength=8 * len(x))
    p = counts.reshape(len(x), 8) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return h / np.log2(6.0)


def _petrosian_fd(x: np.ndarray, d: np.ndarray | None = None) -> np.ndarray:
    """Petrosian fractal dimension of each row (``d``: its first difference, if already computed)."""
    n = x.shape[1]
    signs = np.signbit(np.diff(x, axis=1) if d is None else d)
    n_delta = np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1)
    return np.log10(n) / (np.log10(n) + np.log10(n / (n + 0.4 * n_delta)))


def _time_domain(y: np.ndarray, freqs: np.ndarray, power: np.ndarray, sfreq: int) -> list[np.ndarray]:
    """The :data:`_TIME_DOMAIN` features of band-limited epochs ``y`` and their spectrum."""
    var0 = y.var(axis=1) + 1e-12
    d1 = np.diff(y, axis=1)
    d2 = np.diff(d1, axis=1)
    var1, var2 = d1.var(axis=1) + 1e-12, d2.var(axis=1) + 1e-12
    mobility = np.sqrt(var1 / var0)
    complexity = np.sqrt(var2 / var1) / mobility
    signs = np.signbit(y - _row_medians(y)[:, None])
    crossings = np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1) / EPOCH_SECONDS
    q25, q75 = np.percentile(np.sort(y[:, ::2], axis=1), [25, 75], axis=1, overwrite_input=True)
    z = y - y.mean(axis=1, keepdims=True)
    z /= np.sqrt(var0)[:, None]
    z *= z
    z *= z  # z**4
    kurtosis = z.mean(axis=1) - 3.0
    band = (freqs >= BAND_LIMIT_HZ[0]) & (freqs <= BAND_LIMIT_HZ[1])
    p = power[:, band] / (power[:, band].sum(axis=1, keepdims=True) + 1e-20)
    with np.errstate(divide="ignore", invalid="ignore"):
        spectral_entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1) / np.log(band.sum())
    edge = freqs[band][np.minimum((np.cumsum(p, axis=1) < 0.95).sum(axis=1), band.sum() - 1)]
    return [np.log(var0), np.log(mobility * sfreq), np.log(complexity), crossings, _perm_entropy(y),
            _petrosian_fd(y, d1), np.log(q75 - q25 + 1e-6), np.log1p(np.maximum(kurtosis, -0.99) + 1.0),
            spectral_entropy, edge]  # fmt: skip


def _band_powers(freqs: np.ndarray, power: np.ndarray, bands) -> np.ndarray:
    """Power in each band ``(n_epochs, n_bands)``."""
    return np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for _, lo, hi in bands], axis=1)


def _biopotential_features(modality: str, x: np.ndarray) -> np.ndarray:
    y = _band_limited(x, SFREQ[modality], *BAND_LIMIT_HZ, out_sfreq=_FEATURE_SFREQ)
    freqs, power = _welch_power(y, _FEATURE_SFREQ)
    bands = _EMG_BANDS if modality == "emg" else _EEG_BANDS
    bp = _band_powers(freqs, power, bands) + 1e-12
    rel = np.log(bp / bp.sum(axis=1, keepdims=True))
    cols = list(rel.T)
    if modality == "eeg":
        b = {name: bp[:, i] for i, (name, _, _) in enumerate(_EEG_BANDS)}
        cols += [np.log((b["slow"] + b["delta"]) / b["beta"]), np.log(b["theta"] / b["alpha"]),
                 np.log(b["sigma"] / b["theta"]), np.log(b["alpha"] / (b["slow"] + b["delta"]))]  # fmt: skip
    elif modality == "eog":
        cols.append(np.log((bp[:, 0] + bp[:, 1]) / bp[:, 2:].sum(axis=1)))
    cols += _time_domain(y, freqs, power, _FEATURE_SFREQ)
    return np.stack(cols, axis=1)


# --- EEG and EOG: the sleep-scoring feature set -----------------------------------------------
_SLEEP_BANDS = {"sdelta": (0.5, 2.0), "fdelta": (2.0, 4.0), "delta": (0.5, 4.0), "theta": (4.0, 8.0),
                "alpha": (8.0, 12.0), "sigma": (12.0, 16.0), "beta": (16.0, 25.0)}  # fmt: skip
_TOTAL = (0.5, 25.0)
_SHAPE_BAND = (0.3, 25.0)  # every EEG/EOG feature reads the night band-passed to this


def _median_welch(x: np.ndarray, sfreq: int) -> tuple[np.ndarray, np.ndarray]:
    """Median over 4-s Hann segments (50 % overlap) of the periodogram, per epoch (robust to artefacts)."""
    seg = 4 * sfreq
    segs = np.lib.stride_tricks.sliding_window_view(x, seg, axis=1)[:, :: seg // 2]
    segs = segs - segs.mean(axis=2, keepdims=True)
    win = np.hanning(seg + 2)[1:-1].astype(np.float32)
    segs *= win
    spec = np.fft.rfft(segs, axis=2)  # (n, k, n_freq)
    power = spec.real**2
    power += spec.imag**2
    power = np.ascontiguousarray(power.transpose(0, 2, 1))  # (n, n_freq, k): segments last, to sort
    power.sort(axis=2)
    psd = _median_of_sorted(power) / (sfreq * (win**2).sum())
    return np.fft.rfftfreq(seg, 1.0 / sfreq), psd


def _band_sum(freqs: np.ndarray, psd: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return psd[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)


def _shape_band(x: np.ndarray, ok: np.ndarray, sfreq: int) -> tuple[np.ndarray, int]:
    """The night band-passed to :data:`_SHAPE_BAND` as one signal and halved towards 64 Hz.

    Epochs not ``ok`` are zeros; returns ``(n_epochs, samples)`` float32 and the new rate.
    """
    sos = sps.butter(4, _SHAPE_BAND, btype="bandpass", fs=sfreq, output="sos")
    flat = np.zeros(x.shape, np.float64)
    np.copyto(flat, x, where=ok[:, None])
    if not np.isfinite(flat.sum()):  # NaN or inf in an ok epoch (or an overflowing sum): nan_to_num
        flat = np.where(ok[:, None], np.nan_to_num(x), 0.0).astype(np.float64)
    step = max(1, sfreq // _FEATURE_SFREQ)
    xt = sosfiltfilt_every(sos, flat.ravel(), step).reshape(len(x), -1)  # sosfiltfilt(...)[::step], less memory
    return xt, sfreq // step


def _sleep_eeg_features(x: np.ndarray, ok: np.ndarray, sfreq: int) -> np.ndarray:
    """:data:`_SLEEP_EEG` features of every epoch: band powers, ratios, amplitude, spectral shape,
    Hjorth, zero crossings, moments, spindle bursts and slow-wave size, all from 0.3-25 Hz.

    ``x`` is the whole night (all epochs, in order): it is band-passed (0.3-25 Hz) as one signal,
    then halved to 64 Hz, where every feature is computed (one median-Welch spectrum per epoch feeds
    the band powers, ratios and spectral shape).
    """
    eps, lg = 1e-6, np.log10
    xt, fs = _shape_band(x, ok, sfreq)
    freqs, psd = _median_welch(xt, fs)
    total = _band_sum(freqs, psd, *_TOTAL) + eps
    bp = {b: _band_sum(freqs, psd, lo, hi) + eps for b, (lo, hi) in _SLEEP_BANDS.items()}
    cols = [lg(bp[b] / total) for b in _SLEEP_BANDS]
    cols += [lg(bp["delta"] / bp["theta"]), lg(bp["delta"] / bp["sigma"]), lg(bp["delta"] / bp["beta"]),
             lg(bp["alpha"] / bp["theta"]), lg(bp["sigma"] / (bp["theta"] + bp["alpha"])),
             lg((bp["theta"] + bp["alpha"]) / (bp["sigma"] + bp["beta"]))]  # fmt: skip
    n = xt.shape[1]
    xc = xt - xt.mean(axis=1, keepdims=True)
    v0 = (xc * xc).mean(axis=1)
    std = np.sqrt(v0) + eps
    srt = np.sort(xc, axis=1)  # the quartiles (the values np.partition would select)
    cols += [lg(total), lg(std), lg(srt[:, 3 * n // 4] - srt[:, n // 4] + eps)]
    del srt
    band = (freqs >= _TOTAL[0]) & (freqs < _TOTAL[1])
    f_in, p_in = freqs[band], psd[:, band] + eps * 1e-3
    cum = np.cumsum(p_in, axis=1)
    cum /= cum[:, -1:]
    pn = p_in / p_in.sum(axis=1, keepdims=True)
    fit = (freqs >= 1.0) & (freqs < 25.0)
    lf = np.log10(freqs[fit]) - np.log10(freqs[fit]).mean()
    lp = np.log10(psd[:, fit] + eps * 1e-3)
    peak_band = (freqs >= 8.0) & (freqs < 16.0)
    cols += [f_in[np.argmax(cum >= 0.95, axis=1)], f_in[np.argmax(cum >= 0.5, axis=1)],
             -(pn * np.log2(pn)).sum(axis=1) / np.log2(pn.shape[1]),
             (lp - lp.mean(axis=1, keepdims=True)) @ lf / (lf**2).sum(),
             freqs[peak_band][np.argmax(psd[:, peak_band], axis=1)]]  # fmt: skip
    d1 = np.diff(xt, axis=1)
    d2 = np.diff(d1, axis=1)
    v1, v2 = d1.var(axis=1) + eps, d2.var(axis=1) + eps
    del d1, d2
    mobility = np.sqrt(v1 / (v0 + eps))
    signs = np.signbit(xc)
    crossings = np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1) / EPOCH_SECONDS
    del signs
    dev = xc
    dev /= std[:, None]  # xc is not needed any more
    sq = dev * dev
    dev *= sq  # dev**3
    sq *= sq  # dev**4
    cols += [mobility, np.sqrt(v2 / v1) / mobility, crossings,
             np.abs(dev.mean(axis=1)), sq.mean(axis=1) - 3.0]  # fmt: skip (skew: sign-free, for flipped files)
    del dev, sq
    cols += [_sigma_bursts(xt, fs), _slow_wave_size(xt, std, fs)]
    return np.stack(cols, axis=1)


def _sigma_bursts(xt: np.ndarray, sfreq: int) -> np.ndarray:
    """Spindle bursts: 95th percentile over median of the 12-16 Hz share in 1-s windows (hop 0.5 s).

    The Hann-windowed periodogram of each window is needed at the 0.5-20 Hz bins only: one matrix
    product with those bins' windowed DFT rows gives them, far faster than an FFT per window.
    """
    fr = np.fft.rfftfreq(sfreq, 1.0 / sfreq)
    broad = np.flatnonzero((fr >= 0.5) & (fr <= 20))
    in_sigma = (fr[broad] >= 12) & (fr[broad] <= 16)
    win = np.hanning(sfreq).astype(np.float32).astype(np.float64)  # the float32 window of the FFT version
    angle = (2 * np.pi / sfreq) * np.outer(np.arange(sfreq), broad)
    dft = np.concatenate([win[:, None] * np.cos(angle), win[:, None] * np.sin(angle)], axis=1)
    segs = np.lib.stride_tricks.sliding_window_view(xt, sfreq, axis=1)[:, :: sfreq // 2]
    n_ep, k = segs.shape[:2]
    coef = np.ascontiguousarray(segs).reshape(n_ep * k, sfreq) @ dft.astype(np.float32)
    pw = coef[:, : len(broad)] ** 2
    pw += coef[:, len(broad) :] ** 2
    rel = (pw[:, in_sigma].sum(axis=1) / (pw.sum(axis=1) + 1e-6)).reshape(n_ep, k)
    part = np.partition(rel, [k // 2, int(0.95 * k)], axis=1)
    return np.log10((part[:, int(0.95 * k)] + 1e-6) / (part[:, k // 2] + 1e-6))


def _slow_wave_size(xt: np.ndarray, std: np.ndarray, sfreq: int) -> np.ndarray:
    """Slow waves and K-complexes: the largest 1-s peak-to-peak of the signal averaged to 8 Hz, over its std."""
    n_ep, n = xt.shape
    step = sfreq // 8
    blocks = xt[:, : n // step * step].reshape(n_ep, -1, step)
    # the mean of 8 values summed in numpy's own (pairwise) order, without a reduction per block
    smooth = _pairwise(blocks, np.add) / 8 if step == 8 else blocks.mean(axis=2)
    per_s = smooth[:, : smooth.shape[1] // 8 * 8].reshape(n_ep, -1, 8)
    ptp = _pairwise(per_s, np.maximum) - _pairwise(per_s, np.minimum)
    return np.log10(ptp.max(axis=1) / std + 1e-6)


def _pairwise(a: np.ndarray, op: np.ufunc) -> np.ndarray:
    """``op`` over the last axis, combining neighbours ((a0 a1) (a2 a3)) ... when its length is a power of 2."""
    if a.shape[-1] & (a.shape[-1] - 1):
        return op.reduce(a, axis=-1)
    while a.shape[-1] > 1:
        a = op(a[..., 0::2], a[..., 1::2])
    return a[..., 0]


# --- cardio-respiratory (4-Hz series) --------------------------------------------------------
_SLOW_SFREQ = 4


def _continuous(epochs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The night as one series with invalid epochs NaN, and that series with NaN filled."""
    x = np.array(epochs, dtype=np.float64)
    x[~valid] = np.nan
    flat = x.ravel()
    good = np.isfinite(flat)
    filled = flat.copy()
    if good.any() and not good.all():
        idx = np.arange(len(flat))
        filled[~good] = np.interp(idx[~good], idx[good], flat[good])
    elif not good.any():
        filled[:] = 0.0
    return flat, filled


def _centred_windows(series: np.ndarray, n_epochs: int, spe: int, width: int) -> np.ndarray:
    """``(n_epochs, width)`` windows of ``series`` centred on each epoch (edges padded by reflection)."""
    pad = width
    padded = np.pad(series, pad, mode="reflect") if len(series) > pad else np.pad(series, pad, mode="edge")
    centres = np.arange(n_epochs) * spe + spe // 2 + pad
    starts = centres - width // 2
    view = np.lib.stride_tricks.sliding_window_view(padded, width)
    return view[starts]


def _window_spectrum(windows: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    w = windows - windows.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(w * np.hanning(w.shape[1]), axis=1)
    return np.fft.rfftfreq(w.shape[1], 1.0 / sfreq), (spec.real**2 + spec.imag**2) / w.shape[1]


def _band(freqs: np.ndarray, power: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) + 1e-12


def _cardiac_features(ibi_epochs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """HRV per epoch from the 4-Hz inter-beat-interval series (seconds)."""
    n, spe = ibi_epochs.shape
    flat, filled = _continuous(ibi_epochs, valid)
    x = flat.reshape(n, spe)
    mean = np.nanmean(x, axis=1)
    std = np.nanstd(x, axis=1)
    rmssd = np.sqrt(np.nanmean(np.diff(x, axis=1) ** 2, axis=1))
    rng = np.nanmax(x, axis=1) - np.nanmin(x, axis=1)
    f2, p2 = _window_spectrum(_centred_windows(filled, n, spe, 120 * _SLOW_SFREQ), _SLOW_SFREQ)
    f5, p5 = _window_spectrum(_centred_windows(filled, n, spe, 300 * _SLOW_SFREQ), _SLOW_SFREQ)
    hf, lf, vlf = _band(f2, p2, 0.15, 0.4), _band(f5, p5, 0.04, 0.15), _band(f5, p5, 0.01, 0.04)
    hf_band = (f2 >= 0.15) & (f2 < 0.4)
    hf_peak = f2[hf_band][np.argmax(p2[:, hf_band], axis=1)]
    local = uniform_filter1d(np.where(np.isfinite(mean), mean, np.nanmedian(mean)), 21, mode="nearest")
    return np.stack([np.log(mean), np.log(std + 1e-4), np.log(rmssd + 1e-4), np.log(hf), np.log(lf),
                     np.log(lf / hf), np.log(vlf), (mean - local) / (np.nanmedian(mean) + 1e-6),
                     np.log(rng + 1e-4), hf_peak], axis=1)  # fmt: skip


def _ecg_features(ecg_epochs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cardiac features of the beats detected in the ECG, plus QRS amplitude variability (respiration)."""
    n, spe = ecg_epochs.shape
    sfreq = SFREQ["ecg"]
    flat, _ = _continuous(ecg_epochs, valid)
    peaks = detect_rpeaks(flat, sfreq)
    ibi, ok = ibi_from_beats(peaks / sfreq, n * EPOCH_SECONDS, out_sfreq=_SLOW_SFREQ)
    ibi_epochs = ibi.reshape(n, EPOCH_SECONDS * _SLOW_SFREQ)
    ibi_valid = valid & ok.reshape(n, -1).mean(axis=1).__ge__(0.5)
    cardiac = _cardiac_features(ibi_epochs, ibi_valid)
    amp = np.full(len(peaks), np.nan)
    if len(peaks):
        amp = np.abs(np.nan_to_num(flat[peaks]))
    owner = np.minimum(peaks // spe, n - 1)
    total = np.bincount(owner, weights=amp, minlength=n)
    total2 = np.bincount(owner, weights=amp**2, minlength=n)
    count = np.bincount(owner, minlength=n)
    mean = total / np.maximum(count, 1)
    cv = np.sqrt(np.maximum(total2 / np.maximum(count, 1) - mean**2, 0)) / (mean + 1e-9)
    cv[count < 5] = np.nan
    out = np.concatenate([cardiac, np.log(cv + 1e-4)[:, None]], axis=1)
    out[~ibi_valid, :-1] = np.nan
    return out


def _breathing_features(x_epochs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rate, regularity and amplitude of a breathing signal (belt, flow or derived respiration)."""
    n, spe = x_epochs.shape
    flat, filled = _continuous(x_epochs, valid)
    x = flat.reshape(n, spe)
    f, pw = _window_spectrum(_centred_windows(filled, n, spe, 60 * _SLOW_SFREQ), _SLOW_SFREQ)
    band = (f >= 0.08) & (f <= 0.7)
    peak = np.argmax(pw[:, band], axis=1)
    rate = f[band][peak]
    near = np.abs(f[None, :] - rate[:, None]) <= 0.04
    total = _band(f, pw, 0.05, 1.0)
    regularity = (pw * near).sum(axis=1) / total
    std = np.nanstd(x, axis=1)
    prev = np.concatenate([[np.nan], std[:-1]])
    segs = _centred_windows(np.abs(filled - np.median(filled)), n, spe, 60 * _SLOW_SFREQ)
    peaks = segs.reshape(n, 10, -1).max(axis=2)  # the largest excursion in each 6-s part of the minute
    amp_cv = peaks.std(axis=1) / (peaks.mean(axis=1) + 1e-9)
    centred = x - np.nanmedian(x, axis=1, keepdims=True)
    crossings = (np.diff(np.signbit(centred).astype(np.int8), axis=1) != 0).sum(axis=1) / (2.0 * EPOCH_SECONDS)
    p = pw[:, (f >= 0.05) & (f < 1.0)]
    p = p / (p.sum(axis=1, keepdims=True) + 1e-20)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1) / np.log(p.shape[1])
    return np.stack([rate, regularity, np.log(std + 1e-9), amp_cv, np.log(_band(f, pw, 0.05, 0.1) / _band(f, pw, 0.1, 0.5)),
                     np.log((std + 1e-9) / (prev + 1e-9)), crossings, entropy], axis=1)  # fmt: skip


def _spo2_features(x_epochs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Level, dips and desaturations of SpO2 (%)."""
    n, spe = x_epochs.shape
    flat, filled = _continuous(x_epochs, valid)
    x = flat.reshape(n, spe)
    level = np.nanmedian(x, axis=1)
    rng = np.nanmax(x, axis=1) - np.nanmin(x, axis=1)
    baseline = maximum_filter1d(filled, 120 * _SLOW_SFREQ, mode="nearest")  # 2-min running maximum
    drop = np.nanmax((baseline - filled).reshape(n, spe), axis=1)
    slope = np.nanmean(x[:, -8:], axis=1) - np.nanmean(x[:, :8], axis=1)
    below = (baseline - filled) >= 3.0
    onsets = np.flatnonzero(np.diff(below.astype(np.int8)) == 1) + 1
    events = np.bincount(np.minimum(onsets // spe, n - 1), minlength=n).astype(np.float64)
    events = uniform_filter1d(events, 11, mode="constant") * 11  # desaturations within +-2.5 min
    return np.stack([level, np.log(rng + 0.1), drop, slope, events, np.log(np.nanstd(x, axis=1) + 0.05)], axis=1)


_EXTRACTORS = {"eeg": lambda x, ok: _sleep_eeg_features(x, ok, SFREQ["eeg"]),
               "eog": lambda x, ok: _sleep_eeg_features(x, ok, SFREQ["eog"]),
               "ibi": _cardiac_features, "ecg": _ecg_features, "resp": _breathing_features,
               "effort": _breathing_features, "airflow": _breathing_features, "spo2": _spo2_features}  # fmt: skip


# --- per night --------------------------------------------------------------------------------
def epoch_features(modality: str, epochs: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Raw base features of every epoch, ``(n_epochs, len(base_feature_names(modality)))`` float32.

    Parameters
    ----------
    modality : str
    epochs : np.ndarray, shape (n_epochs, samples_per_epoch)
        The canonical night's epochs (physical units; the scale does not matter).
    valid : np.ndarray, shape (n_epochs,), bool, optional
        Usable epochs; the others get NaN.
    """
    names = base_feature_names(modality)
    x = np.asarray(epochs, dtype=np.float32)
    ok = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool).copy()
    ok &= np.isfinite(x).all(axis=1)
    out = np.full((len(x), len(names)), np.nan, np.float32)
    if not ok.any():
        return out
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of epochs without data
        if modality in _EXTRACTORS:  # whole-night series: context windows cross epoch borders
            values = _EXTRACTORS[modality](x, ok)
            values[~ok] = np.nan
        elif ok.all():
            values = _biopotential_features(modality, x)
        else:
            values = np.full_like(out, np.nan)
            values[ok] = _biopotential_features(modality, x[ok])
    return np.where(np.isfinite(values), values, np.nan).astype(np.float32)


def normalise_within_night(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Robust scores per column over the valid epochs: ``(x - median) / IQR``, clipped to +-5.

    Non-finite entries and invalid epochs become 0; a constant column is all zeros.
    """
    v = np.asarray(values, np.float64)
    ok = np.asarray(valid, bool)[:, None] & np.isfinite(v)
    out = np.zeros_like(v, dtype=np.float32)
    # columns with the same usable rows (usually all of them) are scored together, column by column
    groups: dict[bytes, list[int]] = {}
    for j in range(v.shape[1]):
        groups.setdefault(np.packbits(ok[:, j]).tobytes(), []).append(j)
    for members in groups.values():
        cols = np.array(members)
        rows = np.flatnonzero(ok[:, cols[0]])
        if len(rows) < 2:
            continue
        sub = v[np.ix_(rows, cols)]
        q25, med, q75 = np.percentile(sub, [25, 50, 75], axis=0)
        scale = q75 - q25
        for k in np.flatnonzero(~(scale > 1e-9)):
            scale[k] = 1.349 * np.ascontiguousarray(sub[:, k]).std()
        keep = scale > 1e-9
        if keep.any():
            z = np.clip((sub[:, keep] - med[keep]) / scale[keep], -_CLIP, _CLIP)
            out[np.ix_(rows, cols[keep])] = z
    return out


_TRIANGLE = np.concatenate([np.arange(1, 9), np.arange(7, 0, -1)]).astype(np.float64)  # 15 epochs, 7.5 min


def _rolling(values: np.ndarray, valid: np.ndarray, kernel: np.ndarray, centred: bool) -> np.ndarray:
    """Weighted moving average down the epochs over valid values only (NaN where none)."""
    w = (np.asarray(valid, bool)[:, None] & np.isfinite(values)).astype(np.float64)
    x = np.where(w > 0, values, 0.0)
    if centred:
        num = convolve1d(x * w, kernel, axis=0, mode="constant")
        den = convolve1d(w, kernel, axis=0, mode="constant")
    else:  # the window ends at the epoch
        k = len(kernel)
        pad_x, pad_w = np.pad(x * w, ((k - 1, 0), (0, 0))), np.pad(w, ((k - 1, 0), (0, 0)))
        num = sum(kernel[j] * pad_x[j : j + len(x)] for j in range(k))
        den = sum(kernel[j] * pad_w[j : j + len(x)] for j in range(k))
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 1e-9)


def smooth_centred(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The centred triangular moving average over 7.5 min (step 2 of the module docstring) of each
    column, over the valid finite values only (NaN where a window has none); not yet standardised."""
    return _rolling(values, valid, _TRIANGLE, centred=True)


def night_features(modality: str, epochs: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """What the model reads: normalised base features plus their smoothed copies.

    Returns
    -------
    np.ndarray, shape (n_epochs, n_features(modality)), float32
        Columns as :func:`feature_names`; invalid epochs are all zeros.
    """
    x = np.asarray(epochs)
    ok = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool)
    return features_from_raw(epoch_features(modality, x, ok), ok, modality)


def _absolute(values: np.ndarray, modality: str) -> np.ndarray:
    """Columns of :data:`ABSOLUTE_SCALE` standardised by its fixed constants, clipped, NaN -> 0."""
    names = base_feature_names(modality)
    scale = ABSOLUTE_SCALE[modality]
    idx = [names.index(n) for n in scale]
    centre = np.array([c for c, _ in scale.values()])
    spread = np.array([s for _, s in scale.values()])
    with np.errstate(invalid="ignore"):
        z = np.clip((values[:, idx] - centre) / spread, -_CLIP, _CLIP)
    return np.where(np.isfinite(z), z, 0.0)


def features_from_raw(raw: np.ndarray, valid: np.ndarray, modality: str) -> np.ndarray:
    """Steps 1-4 of the module docstring on raw base features (:func:`epoch_features`) of ``modality``.

    The normalisation uses exactly the rows given: pass a stretch of a night to normalise within
    that stretch (as a 30-min recording is normalised within its 30 minutes).
    """
    raw = np.asarray(raw, np.float64)
    if raw.shape[1] != len(base_feature_names(modality)):
        raise ValueError(f"{modality}: {raw.shape[1]} raw features, expected {len(base_feature_names(modality))}")
    ok = np.asarray(valid, bool) & np.isfinite(raw).any(axis=1)
    z = normalise_within_night(raw, ok)
    centre_raw = smooth_centred(raw, ok)
    centre = normalise_within_night(centre_raw, ok)
    past = normalise_within_night(_rolling(raw, ok, np.ones(SMOOTHING_EPOCHS[1]), centred=False), ok)
    parts = [z, centre, past]
    if modality in ABSOLUTE_SCALE:
        parts += [_absolute(raw, modality), _absolute(centre_raw, modality)]
    out = np.concatenate(parts, axis=1)
    out[~ok] = 0.0
    return out.astype(np.float32)
