"""The fast EEG/EOG/EMG features (issue 12) give what the plain numpy they replaced gave.

The shipped model was trained on the features of ``FEATURE_VERSION`` 2, so the speed work in
``s2v_core.signals.features`` must not change them. This module keeps a private copy of the code
as it was before that work (``_ref_*``, slow: ``x**3``, ``np.median``/``np.partition`` with two
indices, an FFT per 1-s window) and compares the library with it on small deterministic nights.

Tolerances, and why:

- every raw feature except three is **bit-identical** (same order statistics, same FFT inputs and
  dtypes, same filter): the spectral edge, peak frequencies, zero crossings and ordinal patterns
  are thresholds on those values, so a single rounding could move them by a whole bin;
- ``abs_skewness``, ``kurtosis`` (products instead of ``pow``) and ``sigma_bursts`` (a DFT matrix
  product instead of an FFT per window) differ by float32 rounding: raw values within
  ``rtol=1e-5, atol=1e-5`` (float32 resolution is ~6e-8; the sums over 1920 samples add a few
  roundings);
- what the model reads (:func:`night_features`: standardised, smoothed, clipped to +-5) within
  ``rtol=1e-4, atol=1e-5``: about 1e-5 of a within-night IQR, far below anything the model can
  tell apart; the differences seen are ~1e-6.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy import signal as sps
from scipy.ndimage import convolve1d

from s2v_core.modalities import EPOCH_SECONDS, SFREQ
from s2v_core.recording.loading import load_night
from s2v_core.shipped import shipped_night
from s2v_core.signals import features as F
from s2v_core.signals.resampling import resample

BIOPOTENTIALS = ("eeg", "eog", "emg")
ROUNDING_ONLY = {"eeg": ("abs_skewness", "kurtosis", "sigma_bursts"),
                 "eog": ("abs_skewness", "kurtosis", "sigma_bursts"), "emg": ("kurtosis",)}  # fmt: skip
RAW_TOL = {"rtol": 1e-5, "atol": 1e-5}
NIGHT_TOL = {"rtol": 1e-4, "atol": 1e-5}


# --- the reference: features.py before the speed work (FEATURE_VERSION 2), frozen ---------------
_REF_BAND_LIMIT_HZ = (0.3, 25.0)
_REF_FEATURE_SFREQ = 64
_REF_EEG_BANDS = (("slow", 0.3, 1.0), ("delta", 1.0, 4.0), ("theta", 4.0, 8.0), ("alpha", 8.0, 12.0),
                  ("sigma", 12.0, 16.0), ("beta", 16.0, 25.0))  # fmt: skip
_REF_EMG_BANDS = (("low", 0.3, 4.0), ("mid", 4.0, 12.0), ("high", 12.0, 25.0))
_REF_SLEEP_BANDS = {"sdelta": (0.5, 2.0), "fdelta": (2.0, 4.0), "delta": (0.5, 4.0), "theta": (4.0, 8.0),
                    "alpha": (8.0, 12.0), "sigma": (12.0, 16.0), "beta": (16.0, 25.0)}  # fmt: skip
_REF_TOTAL = (0.5, 25.0)
_REF_SHAPE_BAND = (0.3, 25.0)
_REF_TRIANGLE = np.concatenate([np.arange(1, 9), np.arange(7, 0, -1)]).astype(np.float64)


def _ref_welch_power(x, sfreq):
    seg = 4 * sfreq
    step = seg // 2
    starts = np.arange(0, x.shape[1] - seg + 1, step)
    window = np.hanning(seg).astype(np.float32)
    segments = np.stack([x[:, s : s + seg] for s in starts], axis=1)
    segments = segments - segments.mean(axis=2, keepdims=True)
    spec = np.fft.rfft(segments * window, axis=2)
    power = (spec.real**2 + spec.imag**2).mean(axis=1)
    return np.fft.rfftfreq(seg, 1.0 / sfreq), power


def _ref_band_limited(x, sfreq, lo, hi, out_sfreq):
    n_out = x.shape[1] * out_sfreq // sfreq
    spec = np.fft.rfft(x, axis=1)[:, : n_out // 2 + 1]
    f = np.fft.rfftfreq(x.shape[1], 1.0 / sfreq)[: n_out // 2 + 1]
    spec[:, (f < lo) | (f > hi)] = 0
    return (np.fft.irfft(spec, n=n_out, axis=1) * (n_out / x.shape[1])).astype(np.float32)


def _ref_perm_entropy(x):
    a, b, c = x[:, :-2], x[:, 1:-1], x[:, 2:]
    codes = (a < b).astype(np.int64) + 2 * (b < c) + 4 * (a < c)
    n = codes.shape[1]
    counts = np.bincount((codes + 8 * np.arange(len(x))[:, None]).ravel(), minlength=8 * len(x))
    p = counts.reshape(len(x), 8) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return h / np.log2(6.0)


def _ref_petrosian_fd(x):
    n = x.shape[1]
    d = np.diff(x, axis=1)
    n_delta = (np.diff(np.signbit(d).astype(np.int8), axis=1) != 0).sum(axis=1)
    return np.log10(n) / (np.log10(n) + np.log10(n / (n + 0.4 * n_delta)))


def _ref_time_domain(y, freqs, power, sfreq):
    var0 = y.var(axis=1) + 1e-12
    d1 = np.diff(y, axis=1)
    d2 = np.diff(d1, axis=1)
    var1, var2 = d1.var(axis=1) + 1e-12, d2.var(axis=1) + 1e-12
    mobility = np.sqrt(var1 / var0)
    complexity = np.sqrt(var2 / var1) / mobility
    centred = y - np.median(y, axis=1, keepdims=True)
    crossings = (np.diff(np.signbit(centred).astype(np.int8), axis=1) != 0).sum(axis=1) / EPOCH_SECONDS
    q25, q75 = np.percentile(y[:, ::2], [25, 75], axis=1)
    z = (y - y.mean(axis=1, keepdims=True)) / np.sqrt(var0)[:, None]
    kurtosis = (z**4).mean(axis=1) - 3.0
    band = (freqs >= _REF_BAND_LIMIT_HZ[0]) & (freqs <= _REF_BAND_LIMIT_HZ[1])
    p = power[:, band] / (power[:, band].sum(axis=1, keepdims=True) + 1e-20)
    with np.errstate(divide="ignore", invalid="ignore"):
        spectral_entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1) / np.log(band.sum())
    edge = freqs[band][np.minimum((np.cumsum(p, axis=1) < 0.95).sum(axis=1), band.sum() - 1)]
    return [np.log(var0), np.log(mobility * sfreq), np.log(complexity), crossings, _ref_perm_entropy(y),
            _ref_petrosian_fd(y), np.log(q75 - q25 + 1e-6), np.log1p(np.maximum(kurtosis, -0.99) + 1.0),
            spectral_entropy, edge]  # fmt: skip


def _ref_biopotential_features(modality, x):
    y = _ref_band_limited(x, SFREQ[modality], *_REF_BAND_LIMIT_HZ, out_sfreq=_REF_FEATURE_SFREQ)
    freqs, power = _ref_welch_power(y, _REF_FEATURE_SFREQ)
    bands = _REF_EMG_BANDS if modality == "emg" else _REF_EEG_BANDS
    bp = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for _, lo, hi in bands], axis=1) + 1e-12
    rel = np.log(bp / bp.sum(axis=1, keepdims=True))
    cols = list(rel.T)
    if modality == "eeg":
        b = {name: bp[:, i] for i, (name, _, _) in enumerate(_REF_EEG_BANDS)}
        cols += [np.log((b["slow"] + b["delta"]) / b["beta"]), np.log(b["theta"] / b["alpha"]),
                 np.log(b["sigma"] / b["theta"]), np.log(b["alpha"] / (b["slow"] + b["delta"]))]  # fmt: skip
    elif modality == "eog":
        cols.append(np.log((bp[:, 0] + bp[:, 1]) / bp[:, 2:].sum(axis=1)))
    cols += _ref_time_domain(y, freqs, power, _REF_FEATURE_SFREQ)
    return np.stack(cols, axis=1)


def _ref_median_welch(x, sfreq):
    seg = 4 * sfreq
    segs = np.lib.stride_tricks.sliding_window_view(x, seg, axis=1)[:, :: seg // 2]
    segs = segs - segs.mean(axis=2, keepdims=True)
    win = np.hanning(seg + 2)[1:-1].astype(np.float32)
    spec = np.fft.rfft(segs * win, axis=2)
    psd = np.median(spec.real**2 + spec.imag**2, axis=1) / (sfreq * (win**2).sum())
    return np.fft.rfftfreq(seg, 1.0 / sfreq), psd


def _ref_band_sum(freqs, psd, lo, hi):
    return psd[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)


def _ref_sleep_eeg_features(x, ok, sfreq):
    eps, lg = 1e-6, np.log10
    sos = sps.butter(4, _REF_SHAPE_BAND, btype="bandpass", fs=sfreq, output="sos")
    flat = np.where(ok[:, None], np.nan_to_num(x), 0.0).ravel().astype(np.float64)
    step = max(1, sfreq // _REF_FEATURE_SFREQ)
    fs = sfreq // step
    xt = sps.sosfiltfilt(sos, flat)[::step].reshape(len(x), -1).astype(np.float32)
    freqs, psd = _ref_median_welch(xt, fs)
    total = _ref_band_sum(freqs, psd, *_REF_TOTAL) + eps
    bp = {b: _ref_band_sum(freqs, psd, lo, hi) + eps for b, (lo, hi) in _REF_SLEEP_BANDS.items()}
    cols = [lg(bp[b] / total) for b in _REF_SLEEP_BANDS]
    cols += [lg(bp["delta"] / bp["theta"]), lg(bp["delta"] / bp["sigma"]), lg(bp["delta"] / bp["beta"]),
             lg(bp["alpha"] / bp["theta"]), lg(bp["sigma"] / (bp["theta"] + bp["alpha"])),
             lg((bp["theta"] + bp["alpha"]) / (bp["sigma"] + bp["beta"]))]  # fmt: skip
    n = xt.shape[1]
    xc = xt - xt.mean(axis=1, keepdims=True)
    v0 = (xc * xc).mean(axis=1)
    std = np.sqrt(v0) + eps
    part = np.partition(xc, [n // 4, 3 * n // 4], axis=1)
    cols += [lg(total), lg(std), lg(part[:, 3 * n // 4] - part[:, n // 4] + eps)]
    band = (freqs >= _REF_TOTAL[0]) & (freqs < _REF_TOTAL[1])
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
    mobility = np.sqrt(v1 / (v0 + eps))
    signs = np.signbit(xc)
    dev = xc / std[:, None]
    cols += [mobility, np.sqrt(v2 / v1) / mobility, (signs[:, 1:] != signs[:, :-1]).sum(axis=1) / EPOCH_SECONDS,
             np.abs((dev**3).mean(axis=1)), (dev**4).mean(axis=1) - 3.0]  # fmt: skip
    cols += [_ref_sigma_bursts(xt, fs), _ref_slow_wave_size(xt, std, fs)]
    return np.stack(cols, axis=1)


def _ref_sigma_bursts(xt, sfreq):
    segs = np.lib.stride_tricks.sliding_window_view(xt, sfreq, axis=1)[:, :: sfreq // 2]
    spec = np.fft.rfft(segs * np.hanning(sfreq).astype(np.float32), axis=2)
    pw = spec.real**2 + spec.imag**2
    fr = np.fft.rfftfreq(sfreq, 1.0 / sfreq)
    rel = pw[:, :, (fr >= 12) & (fr <= 16)].sum(axis=2) / (pw[:, :, (fr >= 0.5) & (fr <= 20)].sum(axis=2) + 1e-6)
    k = rel.shape[1]
    part = np.partition(rel, [k // 2, int(0.95 * k)], axis=1)
    return np.log10((part[:, int(0.95 * k)] + 1e-6) / (part[:, k // 2] + 1e-6))


def _ref_slow_wave_size(xt, std, sfreq):
    n_ep, n = xt.shape
    step = sfreq // 8
    smooth = xt[:, : n // step * step].reshape(n_ep, -1, step).mean(axis=2)
    per_s = smooth[:, : smooth.shape[1] // 8 * 8].reshape(n_ep, -1, 8)
    ptp = per_s.max(axis=2) - per_s.min(axis=2)
    return np.log10(ptp.max(axis=1) / std + 1e-6)


def _ref_epoch_features(modality, epochs, valid):
    names = F.base_feature_names(modality)
    x = np.asarray(epochs, dtype=np.float32)
    ok = np.asarray(valid, bool).copy()
    ok &= np.isfinite(x).all(axis=1)
    out = np.full((len(x), len(names)), np.nan, np.float32)
    if not ok.any():
        return out
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if modality in ("eeg", "eog"):
            values = _ref_sleep_eeg_features(x, ok, SFREQ[modality])
            values[~ok] = np.nan
        else:
            values = np.full_like(out, np.nan)
            values[ok] = _ref_biopotential_features(modality, x[ok])
    return np.where(np.isfinite(values), values, np.nan).astype(np.float32)


def _ref_normalise_within_night(values, valid):
    v = np.asarray(values, np.float64)
    ok = np.asarray(valid, bool)[:, None] & np.isfinite(v)
    out = np.zeros_like(v, dtype=np.float32)
    for j in range(v.shape[1]):
        col = v[ok[:, j], j]
        if len(col) < 2:
            continue
        q25, med, q75 = np.percentile(col, [25, 50, 75])
        scale = q75 - q25
        if not scale > 1e-9:
            scale = 1.349 * col.std()
        if not scale > 1e-9:
            continue
        out[ok[:, j], j] = np.clip((col - med) / scale, -5.0, 5.0)
    return out


def _ref_rolling(values, valid, kernel, centred):
    w = (np.asarray(valid, bool)[:, None] & np.isfinite(values)).astype(np.float64)
    x = np.where(w > 0, values, 0.0)
    if centred:
        num = convolve1d(x * w, kernel, axis=0, mode="constant")
        den = convolve1d(w, kernel, axis=0, mode="constant")
    else:
        k = len(kernel)
        pad_x, pad_w = np.pad(x * w, ((k - 1, 0), (0, 0))), np.pad(w, ((k - 1, 0), (0, 0)))
        num = sum(kernel[j] * pad_x[j : j + len(x)] for j in range(k))
        den = sum(kernel[j] * pad_w[j : j + len(x)] for j in range(k))
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 1e-9)


def _ref_absolute(values, modality):
    names = F.base_feature_names(modality)
    scale = F.ABSOLUTE_SCALE[modality]
    idx = [names.index(n) for n in scale]
    centre = np.array([c for c, _ in scale.values()])
    spread = np.array([s for _, s in scale.values()])
    with np.errstate(invalid="ignore"):
        z = np.clip((values[:, idx] - centre) / spread, -5.0, 5.0)
    return np.where(np.isfinite(z), z, 0.0)


def _ref_night_features(modality, epochs, valid):
    raw = np.asarray(_ref_epoch_features(modality, epochs, valid), np.float64)
    ok = np.asarray(valid, bool) & np.isfinite(raw).any(axis=1)
    centre_raw = _ref_rolling(raw, ok, _REF_TRIANGLE, centred=True)
    parts = [_ref_normalise_within_night(raw, ok), _ref_normalise_within_night(centre_raw, ok),
             _ref_normalise_within_night(_ref_rolling(raw, ok, np.ones(4), centred=False), ok)]  # fmt: skip
    if modality in F.ABSOLUTE_SCALE:
        parts += [_ref_absolute(raw, modality), _ref_absolute(centre_raw, modality)]
    out = np.concatenate(parts, axis=1)
    out[~ok] = 0.0
    return out.astype(np.float32)


# --- deterministic inputs -----------------------------------------------------------------------
def _synthetic(modality: str, n_epochs: int, seed: int) -> np.ndarray:
    """A night of sleep-like 128-Hz epochs: slow waves, alpha, spindle bursts, muscle noise, drift."""
    rng = np.random.default_rng(seed)
    spe = SFREQ[modality] * EPOCH_SECONDS
    t = np.arange(spe) / SFREQ[modality]
    out = np.empty((n_epochs, spe))
    for i in range(n_epochs):
        depth = rng.random()
        x = depth * 60 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6))
        x += (1 - depth) * 15 * np.sin(2 * np.pi * rng.uniform(8, 12) * t)
        centre = rng.uniform(2, 28)
        x += rng.uniform(0, 25) * np.exp(-((t - centre) ** 2) / 0.3) * np.sin(2 * np.pi * 13 * t)
        x += rng.normal(0, 3 + (20 if modality == "emg" else 2) * rng.random(), spe)
        x += rng.normal(0, 30) * t / t[-1]
        out[i] = x
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def shipped_signals():
    psg, hyp = shipped_night()
    night = load_night(psg, hyp, modalities=BIOPOTENTIALS)
    return {m: (np.asarray(night.signals[m][:120], np.float32), np.asarray(night.epoch_valid[m][:120]))
            for m in BIOPOTENTIALS}  # fmt: skip


def _case(name: str, modality: str, shipped_signals) -> tuple[np.ndarray, np.ndarray]:
    if name == "shipped":
        return shipped_signals[modality]
    x = _synthetic(modality, 40, seed=11 + BIOPOTENTIALS.index(modality))
    ok = np.ones(len(x), bool)
    if name == "gaps":  # NaN and inf samples, epochs marked invalid, a whole epoch missing
        x[3, 100:400] = np.nan
        x[7, 50] = np.inf
        x[20] = np.nan
        ok[10:13] = False
    elif name == "from_50hz":  # what a 50-Hz recording becomes after resampling to 128 Hz
        x = resample(resample(x.ravel(), 128, 50), 50, 128)[: x.size].reshape(x.shape).astype(np.float32)
    elif name == "two_epochs":
        x, ok = x[5:7], ok[5:7]
    elif name == "one_epoch":
        x, ok = x[8:9], ok[8:9]
    return x, ok


CASES = ("synthetic", "gaps", "from_50hz", "two_epochs", "one_epoch", "shipped")


# --- tests --------------------------------------------------------------------------------------
def test_the_reference_is_for_this_feature_version():
    assert F.FEATURE_VERSION == 2, "a new feature version needs a new frozen reference here"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("modality", BIOPOTENTIALS)
def test_raw_features_match_the_reference(modality, case, shipped_signals):
    x, ok = _case(case, modality, shipped_signals)
    new = F.epoch_features(modality, x, ok)
    ref = _ref_epoch_features(modality, x, ok)
    assert new.dtype == ref.dtype == np.float32 and new.shape == ref.shape
    names = F.base_feature_names(modality)
    for j, name in enumerate(names):
        if name in ROUNDING_ONLY[modality]:
            np.testing.assert_allclose(new[:, j], ref[:, j], **RAW_TOL, err_msg=name)
        else:
            np.testing.assert_array_equal(new[:, j], ref[:, j], err_msg=name)  # NaN where NaN
    assert np.isfinite(new[ok & np.isfinite(x).all(axis=1)]).mean() > 0.9  # not a vacuous comparison


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("modality", BIOPOTENTIALS)
def test_night_features_match_the_reference(modality, case, shipped_signals):
    x, ok = _case(case, modality, shipped_signals)
    new = F.night_features(modality, x, ok)
    ref = _ref_night_features(modality, x, ok)
    assert new.dtype == ref.dtype and new.shape == ref.shape == (len(x), F.n_features(modality))
    np.testing.assert_allclose(new, ref, **NIGHT_TOL)
    if len(x) > 10:
        assert np.abs(ref).max() > 0.5  # standardised columns that actually vary


def test_eeg_path_treats_nonfinite_ok_epochs_as_before():
    """``ok`` epochs with NaN or inf (only a direct caller can pass them) still read as nan_to_num."""
    x = _synthetic("eeg", 6, seed=3)
    x[1, 10] = np.nan
    x[4, 99] = -np.inf
    ok = np.ones(6, bool)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        new, ref = F._sleep_eeg_features(x, ok, 128), _ref_sleep_eeg_features(x, ok, 128)
    np.testing.assert_array_equal(new[:, :20], ref[:, :20])  # band powers and spectral shape
    np.testing.assert_allclose(new, ref, rtol=1e-5, atol=1e-5)


def test_order_statistic_helpers_are_bit_identical_to_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 14, 15, 960, 1920):
        x = rng.standard_normal((7, n)).astype(np.float32)
        x[0] = np.round(x[0])  # ties
        x[1, : n // 2] = -0.0
        np.testing.assert_array_equal(F._row_medians(x), np.median(x, axis=1))
        s = np.sort(x, axis=1)
        np.testing.assert_array_equal(F._median_of_sorted(s), np.median(x, axis=1))
        assert F._row_medians(x).dtype == np.median(x, axis=1).dtype == np.float32
    blocks = rng.standard_normal((5, 30, 8)).astype(np.float32)
    np.testing.assert_array_equal(F._pairwise(blocks, np.add) / 8, blocks.mean(axis=2))
    np.testing.assert_array_equal(F._pairwise(blocks, np.maximum), blocks.max(axis=2))
    odd = blocks[..., :6]
    np.testing.assert_array_equal(F._pairwise(odd, np.minimum), odd.min(axis=2))


def test_normalise_within_night_is_bit_identical_to_the_reference():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n, c = int(rng.integers(0, 50)), int(rng.integers(0, 7))
        v = rng.standard_normal((n, c)) * rng.choice([1e-12, 1.0, 1e3])
        if n and c > 5:
            v[:, 0] = 3.0  # constant: all zeros
            v[rng.random(n) < 0.2, 1] = np.nan  # columns with their own usable rows
            v[rng.random(n) < 0.1, 2] = np.inf
            v[: n // 2 + 1, 3] = 1.0  # IQR 0 but not constant: the std fallback
            v[:, 4] = np.round(v[:, 4])
        valid = rng.random(n) < rng.choice([0.05, 0.5, 1.0])
        new, ref = F.normalise_within_night(v, valid), _ref_normalise_within_night(v, valid)
        assert new.dtype == ref.dtype and new.shape == ref.shape
        np.testing.assert_array_equal(new, ref)


@pytest.mark.slow
def test_the_biopotential_features_are_faster_than_the_reference():
    """On a 2-h night, at least twice as fast as the reference (about 3x on one core)."""
    timings = {}
    for modality in BIOPOTENTIALS:
        x = _synthetic(modality, 240, seed=1)
        ok = np.ones(len(x), bool)
        for name, fn in (("new", F.epoch_features), ("ref", _ref_epoch_features)):
            best = np.inf
            for _ in range(3):
                t = time.process_time()
                fn(modality, x, ok)
                best = min(best, time.process_time() - t)
            timings[modality, name] = best
    new = sum(v for (_, name), v in timings.items() if name == "new")
    ref = sum(v for (_, name), v in timings.items() if name == "ref")
    assert new * 2 < ref, timings
