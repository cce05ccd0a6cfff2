"""s2v_core.signals: resampling, units, scaling, epochs, R peaks, IBI, breathing, quality."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from s2v_core.signals import (
    detect_rpeaks,
    epoch_matrix,
    epoch_quality,
    ibi_from_beats,
    plausibility_warnings,
    rational_ratio,
    resample,
    resp_from_ecg,
    resp_from_effort,
    robust_scale,
    robust_stats,
    to_percent,
    unit_scale_to_uV,
)
from tests.conftest import shared_path

# --------------------------------------------------------------------------- helpers

# (offset s from the R peak, gaussian width s, amplitude mV): P, Q, R, S, T
_PQRST = ((-0.18, 0.025, 0.12), (-0.025, 0.008, -0.12), (0.0, 0.01, 1.0), (0.025, 0.008, -0.3),
          (0.26, 0.04, 0.3))  # fmt: skip


def synth_ecg(beats_s, sfreq, duration_s, rng, noise_mV=0.02, wander_mV=0.1):
    """ECG in uV with R peaks exactly at ``beats_s``, baseline wander and white noise."""
    n = int(round(duration_s * sfreq))
    ecg = np.zeros(n)
    for offset, width, amp in _PQRST:
        half = int(4 * width * sfreq) + 1
        centre = (np.asarray(beats_s) + offset) * sfreq
        idx = np.round(centre).astype(int)[:, None] + np.arange(-half, half + 1)
        inside = (idx >= 0) & (idx < n)
        wave = amp * np.exp(-0.5 * ((idx - centre[:, None]) / (width * sfreq)) ** 2)
        np.add.at(ecg, idx[inside], wave[inside])
    t = np.arange(n) / sfreq
    ecg += wander_mV * np.sin(2 * np.pi * 0.05 * t) + noise_mV * rng.standard_normal(n)
    return ecg * 1000.0


def beat_train(rng, duration_s, mean_rr=0.85, start=0.4):
    """Beat times with respiratory sinus arrhythmia and jitter, first beat at ``start``."""
    k = np.arange(int(duration_s / 0.5))
    rr = mean_rr + 0.06 * np.sin(2 * np.pi * k / 12) + 0.015 * rng.standard_normal(k.size)
    beats = start + np.concatenate([[0.0], np.cumsum(rr)])
    return beats[beats < duration_s - 0.5]


def fraction_found(peaks_idx, sfreq, true_s, tol_s=0.05):
    """Fraction of true beats with a detection within ``tol_s``, and of detections that are false."""
    found_s = np.asarray(peaks_idx) / sfreq
    dist = np.abs(found_s[:, None] - np.asarray(true_s)[None, :])
    return float(np.mean(dist.min(axis=0) <= tol_s)), float(np.mean(dist.min(axis=1) > tol_s))


def sine_fit(y, sfreq, freq):
    """Amplitude of the ``freq`` component of ``y`` (least squares on sin and cos)."""
    t = np.arange(y.size) / sfreq
    design = np.stack(
        [np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], 1
    )
    coef, *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    return float(np.hypot(coef[0], coef[1]))


# --------------------------------------------------------------------------- resample


def test_resample_keeps_frequency_and_amplitude_of_10hz_sine():
    t = np.arange(60 * 256) / 256
    y = resample(np.sin(2 * np.pi * 10 * t), 256, 128)
    assert y.dtype == np.float32 and y.shape == (60 * 128,)
    core = y[256:-256]
    spectrum = np.abs(np.fft.rfft(core, n=core.size * 8))
    peak_hz = np.fft.rfftfreq(core.size * 8, 1 / 128)[np.argmax(spectrum)]
    assert abs(peak_hz - 10) < 0.1  # within 1 %
    assert abs(sine_fit(core, 128, 10) - 1.0) < 0.01


def test_resample_attenuates_alias_by_more_than_40_db():
    t = np.arange(60 * 256) / 256
    y = resample(np.sin(2 * np.pi * 100 * t), 256, 128)  # 100 Hz would alias to 28 Hz
    rms_in = np.sqrt(0.5)
    rms_out = np.sqrt(np.mean(y[256:-256].astype(np.float64) ** 2))
    assert 20 * np.log10(rms_out / rms_in) < -40


@pytest.mark.parametrize(
    "sfreq_in, sfreq_out, up, down",
    [(1, 4, 4, 1), (256, 128, 1, 2), (200, 128, 16, 25), (100, 128, 32, 25), (50, 128, 64, 25),
     (500, 128, 32, 125), (10, 4, 2, 5), (250, 128, 64, 125)],
)  # fmt: skip
def test_resample_rates_lengths_and_waveform(sfreq_in, sfreq_out, up, down):
    assert rational_ratio(sfreq_in, sfreq_out) == (up, down)
    n = int(301 * sfreq_in) + 1  # odd lengths exercise the rounding
    freq = 0.05 * min(sfreq_in, sfreq_out)  # well inside both pass bands
    x = 3.0 + np.sin(2 * np.pi * freq * np.arange(n) / sfreq_in)
    y = resample(x, sfreq_in, sfreq_out)
    assert y.shape == (int(np.floor(n * sfreq_out / sfreq_in + 0.5)),)
    assert y.dtype == np.float32
    expected = 3.0 + np.sin(2 * np.pi * freq * np.arange(y.size) / sfreq_out)
    edge = int(10 * sfreq_out)
    np.testing.assert_allclose(y[edge:-edge], expected[edge:-edge], atol=0.02)
    # the DC offset does not droop at the edges (padtype="line")
    assert abs(float(y[0]) - 3.0) < 0.5 and abs(float(y[-1]) - 3.0) < 1.1


def test_resample_identity_is_a_float32_copy():
    x = np.arange(10, dtype=np.float64)
    y = resample(x, 128, 128)
    assert y.dtype == np.float32 and np.array_equal(y, x)
    y[0] = 99
    assert x[0] == 0


def test_resample_puts_nan_gaps_back_at_mapped_positions():
    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * 3 * np.arange(40 * 256) / 256) + 0.1 * rng.standard_normal(40 * 256)
    clean = resample(x, 256, 128)
    x[1000:1500] = np.nan
    y = resample(x, 256, 128)
    nan_idx = np.flatnonzero(np.isnan(y))
    assert nan_idx.min() >= 498 and nan_idx.max() <= 751  # input 1000-1499 -> output 500-749
    assert np.isnan(y[500:750]).all() and nan_idx.size <= 254
    far = np.r_[0:450, 800 : y.size]  # away from the gap the result equals the gap-free one
    np.testing.assert_allclose(y[far], clean[far], atol=1e-4)


def test_resample_spo2_1hz_to_4hz_with_dropout():
    x = np.full(600, 96.0)
    x[100:103] = np.nan
    y = resample(x, 1, 4)
    assert y.shape == (2400,)
    # input samples 100-102 stand for 99.5-102.5 s -> output samples 398-410
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(y)), np.arange(398, 411))
    np.testing.assert_allclose(y[np.isfinite(y)], 96.0, atol=0.1)  # polyphase ripple < 0.1 %
    assert np.isnan(resample(np.full(50, np.nan), 1, 4)).all()


def test_resample_rejects_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 10)), 256, 128)
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10), 0, 128)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    "dimension, factor",
    [("uV", 1.0), ("µV", 1.0), ("\u03bcV", 1.0), (" UV ", 1.0), ("mcV", 1.0), ("microV", 1.0),
     ("microvolts", 1.0), ("mV", 1e3), ("mv", 1e3), ("V", 1e6), ("volts", 1e6), ("nV", 1e-3),
     ("", None), ("  ", None), ("degC", None), ("%", None), (None, None)],
)  # fmt: skip
def test_unit_scale_to_uV(dimension, factor):
    assert unit_scale_to_uV(dimension) == factor


def test_to_percent_detects_fractions_and_keeps_percent():
    frac = np.array([0.95, 0.97, np.nan, 0.91], dtype=np.float32)
    y, note = to_percent(frac, "%")
    np.testing.assert_allclose(y[[0, 1, 3]], [95.0, 97.0, 91.0], rtol=1e-6)
    assert np.isnan(y[2]) and y.dtype == np.float32 and "fraction" in note
    y, note = to_percent(np.array([95.0, 97.0]), "%")
    assert note is None and y.tolist() == [95.0, 97.0]
    y, note = to_percent(np.array([95.0, 97.0]), "")
    assert y.tolist() == [95.0, 97.0] and "not '%'" in note


# --------------------------------------------------------------------------- robust scale, epochs


def test_robust_scale_gives_median_zero_iqr_one():
    rng = np.random.default_rng(1)
    x = rng.normal(40, 7, size=(50, 120)).astype(np.float32)
    x[3, :10] = np.nan
    x[4, :5] = 1e6  # outliers do not move median or IQR much
    scaled, med, iqr = robust_scale(x)
    finite = scaled[np.isfinite(scaled)]
    assert abs(np.median(finite)) < 1e-5
    q25, q75 = np.percentile(finite, [25, 75])
    assert abs((q75 - q25) - 1.0) < 1e-5
    assert abs(med - 40) < 0.5 and abs(iqr - 7 * 1.349) < 0.5
    assert np.isnan(scaled[3, :10]).all() and scaled.dtype == np.float32


def test_robust_scale_valid_mask_and_flat_signal():
    x = np.concatenate([np.full(100, 1000.0), np.arange(100.0)])
    valid = np.r_[np.zeros(100, bool), np.ones(100, bool)]
    _, med, iqr = robust_scale(x, valid)
    assert med == pytest.approx(49.5) and iqr == pytest.approx(49.5)
    scaled, med, iqr = robust_scale(np.full(20, 5.0))
    assert iqr == 0.0 and med == 5.0 and np.all(scaled == 0)
    scaled, med, iqr = robust_scale(np.full(4, np.nan))
    assert (med, iqr) == (0.0, 0.0) and np.isnan(scaled).all()
    with pytest.raises(ValueError, match="shape"):
        robust_scale(x, valid[:10])
    # the statistics alone: the same numbers, without a scaled copy
    assert robust_stats(x, valid) == robust_scale(x, valid)[1:]
    assert robust_stats(np.full(4, np.nan)) == (0.0, 0.0)
    assert robust_stats(np.full(20, 5.0)) == (5.0, 0.0)


def test_epoch_matrix_view_only_when_asked_and_possible():
    x = np.arange(130.0, dtype=np.float32)
    view = epoch_matrix(x, 2, 2, copy=False)  # 120 of 130 samples: a view, the tail ignored
    assert view.shape == (2, 60) and np.shares_memory(view, x)
    assert not np.shares_memory(epoch_matrix(x, 2, 2), x)  # the default copies
    short = epoch_matrix(x, 2, 3, copy=False)  # 130 < 180 samples: padded, so a new array
    assert not np.shares_memory(short, x) and np.isnan(short[2, 10:]).all()
    as64 = epoch_matrix(x.astype(np.float64), 2, 2, copy=False)  # float32 is the canonical type
    assert as64.dtype == np.float32 and not np.shares_memory(as64, x)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, st.integers(20, 300), elements=st.floats(-1e4, 1e4, allow_nan=False)),
)
def test_robust_scale_property(x):
    scaled, med, iqr = robust_scale(x)
    if iqr > 0:
        q25, q50, q75 = np.percentile(scaled.astype(np.float64), [25, 50, 75])
        assert abs(q50) < 1e-3 + 1e-5 * abs(med) / iqr
        assert abs((q75 - q25) - 1) < 1e-3
    else:
        np.testing.assert_allclose(scaled, x - med, atol=1e-3 * (1 + abs(med)))


def test_epoch_matrix_truncates_and_pads_with_nan():
    x = np.arange(4 * 95, dtype=np.float64)  # 95 s at 4 Hz
    m = epoch_matrix(x, 4, 3)
    assert m.shape == (3, 120) and m.dtype == np.float32
    assert m[1, 0] == 120 and m[2, -1] == 359
    m = epoch_matrix(x, 4, 4)
    assert m[3, :20].tolist() == list(range(360, 380)) and np.isnan(m[3, 20:]).all()
    assert epoch_matrix(x, 4, 0).shape == (0, 120)


# --------------------------------------------------------------------------- R peaks


@pytest.fixture(scope="module")
def ecg_case():
    rng = np.random.default_rng(7)
    beats = beat_train(rng, 300.0)
    return beats, synth_ecg(beats, 128, 300.0, rng)


def test_detect_rpeaks_finds_known_beats(ecg_case):
    beats, ecg = ecg_case
    peaks = detect_rpeaks(ecg, 128)
    assert peaks.dtype == np.int64 and np.all(np.diff(peaks) > 0)
    hit, false = fraction_found(peaks, 128, beats)
    assert hit >= 0.98 and false <= 0.02
    found_s = peaks / 128  # located on the R wave, not merely near the QRS
    err = np.abs(found_s[:, None] - beats[None, :]).min(axis=1)
    assert np.median(err) < 0.01


def test_detect_rpeaks_handles_inverted_ecg(ecg_case):
    beats, ecg = ecg_case
    peaks = detect_rpeaks(-ecg, 128)
    hit, false = fraction_found(peaks, 128, beats)
    assert hit >= 0.98 and false <= 0.02
    err = np.abs((peaks / 128)[:, None] - beats[None, :]).min(axis=1)
    assert np.median(err) < 0.01


def test_detect_rpeaks_splits_on_nan(ecg_case):
    beats, ecg = ecg_case
    x = ecg.copy()
    x[10_000:12_000] = np.nan  # 78.1-93.75 s missing
    x[20_000:20_300] = np.nan
    peaks = detect_rpeaks(x, 128)
    assert not np.any((peaks >= 10_000) & (peaks < 12_000))
    outside = beats[((beats < 78.0) | (beats > 94.0)) & ((beats < 156.2) | (beats > 158.7))]
    hit, _ = fraction_found(peaks, 128, outside)
    assert hit >= 0.98


def test_detect_rpeaks_empty_for_flat_or_missing():
    assert detect_rpeaks(np.zeros(128 * 20), 128).size == 0
    assert detect_rpeaks(np.full(128 * 20, np.nan), 128).size == 0
    assert detect_rpeaks(np.zeros(100), 128).dtype == np.int64


# --------------------------------------------------------------------------- IBI


def test_ibi_regular_beats():
    beats = np.arange(2.0, 58.0, 0.8)
    ibi, ok = ibi_from_beats(beats, 60.0)
    assert ibi.shape == ok.shape == (240,) and ibi.dtype == np.float32
    t = np.arange(240) / 4
    np.testing.assert_array_equal(ok, (t >= 2.0) & (t <= beats[-1]))
    np.testing.assert_allclose(ibi[ok], 0.8, atol=1e-6)
    assert np.isnan(ibi[~ok]).all()


def test_ibi_irregular_beats_interpolate_between_midpoints():
    beats = np.array([0.0, 1.0, 1.5, 2.5, 3.0, 4.0, 5.2])  # intervals 1, .5, 1, .5, 1, 1.2
    ibi, ok = ibi_from_beats(beats, 6.0, out_sfreq=4.0, max_rel_dev=None)
    t = np.arange(24) / 4
    mids = np.array([0.5, 1.25, 2.0, 2.75, 3.5, 4.6])
    vals = np.array([1.0, 0.5, 1.0, 0.5, 1.0, 1.2])
    inside = (t >= 0) & (t <= 5.2)
    np.testing.assert_array_equal(ok, inside)
    np.testing.assert_allclose(ibi[inside], np.interp(t[inside], mids, vals), atol=1e-6)
    assert ibi[8] == pytest.approx(1.0) and ibi[5] == pytest.approx(0.5)  # t = 2.0 and 1.25


def test_ibi_gaps_and_implausible_intervals_are_masked():
    beats = np.r_[np.arange(0.0, 20.01, 1.0), np.arange(25.0, 40.01, 1.0)]  # 5-s gap
    ibi, ok = ibi_from_beats(beats, 45.0)
    t = np.arange(ibi.size) / 4
    assert not ok[(t > 20.0) & (t < 25.0)].any()
    assert ok[(t >= 0) & (t <= 20)].all() and ok[(t >= 25) & (t <= 40)].all()
    assert not ok[t > 40].any()
    # a 2.5-s pause is implausible (> max_ibi_s) but shorter than max_gap_s: bridged
    beats = np.r_[np.arange(0.0, 4.01, 1.0), np.arange(6.5, 12.01, 1.0)]
    ibi, ok = ibi_from_beats(beats, 12.0, max_rel_dev=None)
    np.testing.assert_array_equal(ok, np.arange(48) / 4 <= 11.5)
    np.testing.assert_allclose(ibi[ok], 1.0, atol=1e-6)
    # an extra beat splits 1 s into 0.15 (implausible, dropped) and 0.85 s (kept)
    beats = np.r_[np.arange(0.0, 10.01, 1.0), 5.15]
    ibi, ok = ibi_from_beats(beats, 10.0, max_rel_dev=None)
    assert ok.all() and 0.85 <= np.nanmin(ibi) < 0.87  # 0.15 never shows up


def test_ibi_ectopic_beats_bridged_or_masked():
    beats = np.arange(0.0, 30.01, 1.0)
    beats[10] = 9.6  # premature V beat
    beat_ok = np.ones(beats.size, bool)
    beat_ok[10] = False
    ibi, ok = ibi_from_beats(beats, 30.0, beat_ok=beat_ok)
    assert ok.all()  # the 2-s hole (9 s to 11 s) is shorter than max_gap_s: bridged
    np.testing.assert_allclose(ibi, 1.0, atol=1e-6)  # the 0.6/1.4 pair does not leak in
    # two ectopic beats in a row leave a 3.3-s hole: masked
    beats = np.arange(0.0, 30.01, 1.1)
    beat_ok = np.ones(beats.size, bool)
    beat_ok[[10, 11]] = False
    ibi, ok = ibi_from_beats(beats, 30.0, beat_ok=beat_ok)
    t = np.arange(120) / 4
    assert not ok[(t > 9.9) & (t < 13.2)].any() and ok[(t > 1) & (t < 9.8)].all()


def test_ibi_relative_check_catches_missed_beat():
    beats = np.delete(np.arange(0.0, 30.01, 0.8), 15)  # one beat missed -> a 1.6 s interval
    ibi, ok = ibi_from_beats(beats, 30.0)
    np.testing.assert_allclose(ibi[ok], 0.8, atol=1e-6)
    assert ok.sum() == pytest.approx(4 * 29.6, abs=2)  # 1.6-s hole is bridged, all valid
    ibi_raw, _ = ibi_from_beats(beats, 30.0, max_rel_dev=None)
    assert np.nanmax(ibi_raw) == pytest.approx(1.6)


def test_ibi_degenerate_inputs():
    ibi, ok = ibi_from_beats(np.array([3.0]), 10.0)
    assert np.isnan(ibi).all() and not ok.any() and ibi.shape == (40,)
    with pytest.raises(ValueError, match="same shape"):
        ibi_from_beats(np.arange(5.0), 10.0, beat_ok=np.ones(3, bool))


# --------------------------------------------------------------------------- breathing


def test_resp_from_effort_keeps_breathing_sine():
    rng = np.random.default_rng(3)
    t = np.arange(300 * 32) / 32
    breath = np.sin(2 * np.pi * 0.25 * t)
    x = 500 + 2.0 * breath + 0.3 * np.sin(2 * np.pi * 8 * t) + 0.05 * rng.standard_normal(t.size)
    x[3200:3300] = np.nan
    y = resp_from_effort(x, 32)
    assert y.shape == (1200,) and y.dtype == np.float32
    assert np.isnan(y[400:412]).all()
    truth = np.sin(2 * np.pi * 0.25 * np.arange(1200) / 4)
    core = np.isfinite(y) & (np.arange(1200) > 80) & (np.arange(1200) < 1120)
    assert np.corrcoef(y[core], truth[core])[0, 1] > 0.99
    assert abs(sine_fit(y[600:1100], 4, 0.25) - 2.0) < 0.1
    assert abs(np.nanmean(y[100:1100])) < 0.05  # DC (500) removed


def test_resp_from_ecg_follows_amplitude_modulation():
    rng = np.random.default_rng(11)
    duration, fs = 240.0, 128
    beats = beat_train(rng, duration)
    t = np.arange(int(duration * fs)) / fs
    breath = np.sin(2 * np.pi * 0.25 * t + 0.7)
    ecg = synth_ecg(beats, fs, duration, rng) * (1 + 0.15 * breath)
    edr = resp_from_ecg(ecg, fs, detect_rpeaks(ecg, fs), duration)
    assert edr.shape == (960,) and edr.dtype == np.float32
    assert np.isnan(edr[0])  # before the first beat (0.4 s)
    truth = np.sin(2 * np.pi * 0.25 * np.arange(960) / 4 + 0.7)
    core = np.isfinite(edr) & (np.arange(960) > 40) & (np.arange(960) < 920)
    assert abs(np.corrcoef(edr[core], truth[core])[0, 1]) > 0.8


def test_resp_from_ecg_with_too_few_beats_is_nan():
    edr = resp_from_ecg(np.zeros(1280), 128, np.array([10, 200]), 10.0)
    assert edr.shape == (40,) and np.isnan(edr).all()


# --------------------------------------------------------------------------- quality


def test_epoch_quality_flags_missing_flat_and_clipped():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 20, size=(8, 3840))
    x[1] = np.nan
    x[2] = 3.0  # constant
    x[3] = 1e-4 * rng.standard_normal(3840)  # near-flat next to 20-uV epochs
    x[4] = np.clip(
        60 * np.sin(2 * np.pi * np.arange(3840) / 128), -20, 20
    )  # rails 80 % of the time
    x[5, :2500] = np.nan  # 65 % missing
    x[6, :1000] = np.nan  # 26 % missing: still usable
    ok = epoch_quality(x, "eeg")
    assert ok.tolist() == [True, False, False, False, False, False, True, True]


def test_epoch_quality_spo2_and_ibi_rules():
    spo2 = np.full((4, 120), 97.0)  # a steady 97 % is physiological
    spo2[1] = 0.0  # probe off
    spo2[2, :100] = np.nan
    assert epoch_quality(spo2, "spo2").tolist() == [True, False, False, True]
    rng = np.random.default_rng(2)
    ibi = 0.9 + 0.03 * rng.standard_normal((3, 120))
    ibi[1] = 0.9
    assert epoch_quality(ibi, "ibi").tolist() == [True, False, True]
    with pytest.raises(ValueError, match="unknown modality"):
        epoch_quality(ibi, "ppg")


def test_plausibility_warnings_unit_mistakes():
    rng = np.random.default_rng(4)
    eeg_uv = rng.normal(0, 25, 30 * 128 * 20)
    assert plausibility_warnings("eeg", eeg_uv) == []
    (msg,) = plausibility_warnings("eeg", eeg_uv * 1e-6)
    assert msg.startswith("EEG:") and "stored in V" in msg
    (msg,) = plausibility_warnings("emg", eeg_uv * 1e-3)
    assert "stored in mV" in msg
    ecg = synth_ecg(np.arange(0.5, 59, 0.9), 128, 60, rng)
    assert plausibility_warnings("ecg", ecg) == []
    (msg,) = plausibility_warnings("ecg", ecg / 1000)
    assert msg.startswith("ECG:") and "stored in mV" in msg


def test_plausibility_warnings_spo2_and_ibi():
    rng = np.random.default_rng(6)
    spo2 = np.clip(96 + 1.5 * rng.standard_normal(4000), 85, 100)
    assert plausibility_warnings("spo2", spo2) == []
    (msg,) = plausibility_warnings("spo2", spo2 / 100)
    assert "implausible SpO2" in msg and "0-1 fraction" in msg
    (msg,) = plausibility_warnings("spo2", spo2 * 10)
    assert "implausible SpO2" in msg and "x10" in msg
    (msg,) = plausibility_warnings("spo2", np.full(100, 95.0))
    assert "implausible SpO2" in msg and "no variation" in msg
    ibi = 0.9 + 0.05 * rng.standard_normal(2000)
    assert plausibility_warnings("ibi", ibi) == []
    (msg,) = plausibility_warnings("ibi", ibi * 1000)
    assert "milliseconds" in msg


def test_plausibility_warnings_missing_and_flat():
    x = np.random.default_rng(8).normal(0, 1, 1000)
    x[:300] = np.nan
    (msg,) = plausibility_warnings("effort", x)
    assert msg == "EFFORT: 30% of samples are missing (NaN)"
    assert "flat" in plausibility_warnings("airflow", np.zeros(500))[0]
    assert plausibility_warnings("resp", np.full(10, np.nan)) == [
        "RESP: no finite samples (all missing)"
    ]


def test_detect_rpeaks_on_slow_50hz_ecg():
    rng = np.random.default_rng(9)
    beats = beat_train(rng, 120.0)
    ecg = synth_ecg(beats, 50, 120.0, rng)  # sleepecg alone fails below ~60 Hz
    peaks = detect_rpeaks(ecg, 50)
    hit, false = fraction_found(peaks, 50, beats)
    assert hit >= 0.98 and false <= 0.02


# --------------------------------------------------------------------------- real data


def _dominant_hz(x, sfreq=4.0):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), 4 * x.size))
    freqs = np.fft.rfftfreq(4 * x.size, 1 / sfreq)
    band = (freqs > 0.1) & (freqs < 0.7)
    return freqs[band][np.argmax(spectrum[band])]


@pytest.mark.realdata
def test_dreams_excerpt3_ecg_beats_and_edr_rate():
    mne = pytest.importorskip("mne")
    raw = mne.io.read_raw_edf(shared_path("dreams", "excerpt3.edf"), preload=True, verbose="error")
    sfreq = raw.info["sfreq"]  # 50 Hz
    ecg = raw.get_data(picks=["ECG"])[0]
    peaks = detect_rpeaks(ecg, sfreq)
    rate_bpm = 60 * peaks.size / (ecg.size / sfreq)
    assert 45 <= rate_bpm <= 90  # 1780 beats in 30 min (59 bpm)
    ibi, ok = ibi_from_beats(peaks / sfreq, 1800.0)
    assert ok.mean() > 0.95 and 0.8 < np.nanmedian(ibi) < 1.3
    # EDR breathing rate agrees with the thoracic belt in most 2-min windows
    edr = resp_from_ecg(ecg, sfreq, peaks, 1800.0)
    belt = resp_from_effort(raw.get_data(picks=["VTH"])[0], sfreq)
    starts = range(0, edr.size - 480, 240)
    diffs = [abs(_dominant_hz(edr[k : k + 480]) - _dominant_hz(belt[k : k + 480])) for k in starts]
    assert np.mean(np.array(diffs) < 0.05) > 0.6  # 0.75 measured; the abdominal belt gets 0.82
