"""Issue 15: the faster percentiles/medians of the preprocessing path give bit-identical results.

The old implementations are kept here as the reference; every new result must equal theirs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2v_core import signals as sig
from s2v_core.recording import loading
from s2v_core.signals import _quantiles, quality, resampling

DREAMS = Path("/work/shared/data/dreams/excerpt3.edf")


# --- the old implementations (reference) ---------------------------------------------------------
def old_plausibility_warnings(modality: str, x: np.ndarray) -> list[str]:
    quality.check_modality(modality)
    name = modality.upper()
    x = np.asarray(x, dtype=np.float32).ravel()
    out: list[str] = []
    values = x[np.isfinite(x)]
    if values.size == 0:
        return [f"{name}: no finite samples (all missing)"]
    nan_fraction = 1.0 - values.size / x.size
    if nan_fraction > quality._NAN_WARN_FRACTION:
        out.append(f"{name}: {nan_fraction:.0%} of samples are missing (NaN)")
    median = float(np.median(values))
    std = float(values.std())
    flat = std == 0 or std <= 1e-9 * abs(median)
    if modality == "spo2":
        out.extend(quality._spo2_warnings(values, median, flat))
        return out
    if flat:
        out.append(f"{name}: signal is flat (constant {median:.4g}); sensor disconnected?")
        return out
    if modality in quality._AMPLITUDE_RANGE_UV:
        lo, hi, typical = quality._AMPLITUDE_RANGE_UV[modality]
        deviation = np.abs(values - median)
        if modality == "ecg":
            amp, what = float(np.percentile(deviation, 99.5)), "R-peak amplitude"
        else:
            amp, what = float(np.median(deviation)), "median absolute amplitude"
        if not lo <= amp <= hi:
            out.append(
                f"{name}: {what} {amp:.3g} uV is outside the plausible {lo:g}-{hi:g} uV; "
                f"{quality._unit_hint(amp, lo, hi, typical)}"
            )
    elif modality == "ibi":
        outside = float(np.mean((values < 0.3) | (values > 2.0)))
        if not 0.3 <= median <= 2.0:
            hint = " (looks like milliseconds: x0.001)" if 300 <= median <= 2000 else ""
            out.append(f"IBI: median interval {median:.3g} s is outside 0.3-2 s{hint}")
        elif outside > 0.05:
            out.append(f"IBI: {outside:.0%} of intervals are outside 0.3-2 s")
    return out


def old_robust_scale(x, valid=None):
    x = np.asarray(x)
    use = np.isfinite(x)
    if valid is not None:
        use &= np.asarray(valid, dtype=bool)
    values = x[use].astype(np.float64)
    if values.size == 0:
        return x.astype(np.float32, copy=True), 0.0, 0.0
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    iqr = float(q75 - q25)
    if iqr <= 1e-12 * max(1.0, abs(float(median))):
        iqr = 0.0
    divisor = iqr if iqr > 0 else 1.0
    scaled = ((x.astype(np.float64) - median) / divisor).astype(np.float32)
    return scaled, float(median), iqr


def old_amplitude(x: np.ndarray, modality: str) -> float:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return float("nan")
    step = max(1, finite.size // 200_000)
    dev = np.abs(finite[::step] - np.median(finite[::step]))
    return float(np.percentile(dev, 99.5) if modality == "ecg" else np.median(dev))


def old_clipped(x: np.ndarray) -> np.ndarray:
    import warnings

    x = np.asarray(x, dtype=np.float64)  # the old epoch_quality passed float64 epochs
    finite = np.isfinite(x)
    whole = finite.all(axis=1)
    q_lo, q_hi = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if whole.any():
        q_lo[whole], q_hi[whole] = np.percentile(x[whole], [1, 99], axis=1)
    if not whole.all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q_lo[~whole], q_hi[~whole] = np.nanpercentile(x[~whole], [1, 99], axis=1)
    tol = quality.CLIP_TOLERANCE * (q_hi - q_lo)
    near = finite & (
        (np.abs(x - q_lo[:, None]) <= tol[:, None]) | (np.abs(x - q_hi[:, None]) <= tol[:, None])
    )
    count = np.maximum(finite.sum(axis=1), 1)
    return (near.sum(axis=1) / count > 0.5) & (q_hi > q_lo)


def old_row_stats(x):
    finite = np.isfinite(x)
    count = finite.sum(axis=1)
    safe = np.maximum(count, 1)
    mean = np.where(finite, x, 0.0).sum(axis=1) / safe
    dev = np.where(finite, x - mean[:, None], 0.0)
    std = np.sqrt((dev**2).sum(axis=1) / safe)
    return count, mean, std


def old_epoch_quality(x_epochs, modality, *, max_nan_fraction=quality.MAX_NAN_FRACTION_EPOCH):
    import warnings

    quality.check_modality(modality)
    x = np.asarray(x_epochs, dtype=np.float64)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    count, mean, std = old_row_stats(x)
    usable = count > 0
    usable &= (1.0 - count / x.shape[1]) <= max_nan_fraction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if modality == "spo2":
            med = np.nanmedian(x, axis=1)
            lo, hi = quality.SPO2_USABLE_RANGE
            return usable & (med >= lo) & (med <= hi)
        flat = (std == 0) | (std <= 1e-6 * np.abs(mean))
        moving = std[usable & ~flat]
        if moving.size:
            flat |= std < quality.RELATIVE_FLAT * np.median(moving)
        usable &= ~flat
        if modality != "ibi":
            usable &= ~old_clipped(x)
    return usable


# --- helpers ----------------------------------------------------------------------------------------
def _arrays(rng: np.random.Generator):
    for n in (1, 2, 3, 4, 7, 100, 4097, 65535, 65536, 65537, 200_001, 1_000_000):
        yield rng.standard_normal(n) * 20
        yield rng.integers(-3, 4, n).astype(float)  # many ties
        yield np.round(rng.standard_normal(n) * 3) / 3
        yield np.sort(rng.exponential(size=n))[::-1].copy()  # sorted, skewed
        z = np.full(n, 2.5)
        z[::5] = -0.0
        yield z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_and_percentile_equal_numpy(dtype):
    rng = np.random.default_rng(15)
    for v in _arrays(rng):
        x = v.astype(dtype)
        ref, new = np.median(x), _quantiles.median(x)
        assert ref.dtype == new.dtype and np.array_equal(ref, new), (x.size, ref, new)
        for q in ([25, 50, 75], [1, 99], 99.5, 50, 0, 100, [0, 100], 33.3, 1):
            ref, new = np.percentile(x, q), _quantiles.percentile(x, q)
            assert np.asarray(ref).dtype == np.asarray(new).dtype, (x.size, q)
            assert np.array_equal(ref, new), (x.size, q, ref, new)
        ref = np.percentile(x.astype(np.float64), [25, 50, 75])
        assert np.array_equal(ref, _quantiles.percentile(x, [25, 50, 75], np.float64))


def test_signed_zeros_like_numpy():
    """Mixed -0.0 and +0.0 at the median: the same sign as numpy's."""
    rng = np.random.default_rng(16)
    for trial in range(200):
        n = int(rng.choice([11, 100, 1001, 70_000, 300_001]))
        x = np.where(rng.random(n) < 0.5, -0.0, 0.0)
        x[rng.random(n) < 0.2] = rng.standard_normal()
        x = x.astype(np.float32 if trial % 2 else np.float64)
        assert np.signbit(np.median(x)) == np.signbit(_quantiles.median(x))
        ref, new = np.percentile(x, [25, 50, 75]), _quantiles.percentile(x, [25, 50, 75])
        assert np.array_equal(np.signbit(ref), np.signbit(new)) and np.array_equal(ref, new)


def test_bracket_fallback_is_exact():
    """A subsample that misses the tail (one huge cluster) still gives numpy's answer."""
    x = np.zeros(300_000, np.float32)
    x[1::4096] = np.arange(
        1, x[1::4096].size + 1, dtype=np.float32
    )  # every subsampled value differs
    for q in (0, 1, 50, 99, 99.5, 100):
        assert np.array_equal(np.percentile(x, q), _quantiles.percentile(x, q))
    assert np.array_equal(np.median(x), _quantiles.median(x))


@pytest.mark.parametrize("modality", ["eeg", "eog", "emg", "ecg", "ibi", "spo2", "resp"])
def test_plausibility_warnings_equal_old(modality):
    rng = np.random.default_rng(3)
    scales = {"ibi": (0.9, 0.1), "spo2": (95, 1)}
    loc, sd = scales.get(modality, (0.0, 30.0))
    for n_epochs, nan_frac, factor in (
        (960, 0.0, 1.0),
        (960, 0.3, 1e-6),
        (40, 0.1, 1e3),
        (3, 0, 1),
    ):
        x = (loc + sd * rng.standard_normal((n_epochs, 3840))) * factor
        x[rng.random(x.shape) < nan_frac] = np.nan
        x = x.astype(np.float32)
        assert quality.plausibility_warnings(modality, x) == old_plausibility_warnings(modality, x)
    flat = np.full((100, 3840), 3.0, np.float32)
    assert quality.plausibility_warnings(modality, flat) == old_plausibility_warnings(
        modality, flat
    )


def test_robust_scale_equal_old():
    rng = np.random.default_rng(4)
    for shape in ((5,), (400, 3840), (481, 3840), (7, 120)):
        for dtype in (np.float32, np.float64, np.int16):
            x = (rng.standard_normal(shape) * 50).astype(dtype)
            if dtype != np.int16:
                x.flat[::97] = np.nan
            valid = rng.random(shape) < 0.9
            for v in (None, valid):
                new, old = resampling.robust_scale(x, v), old_robust_scale(x, v)
                assert np.array_equal(new[0], old[0], equal_nan=True)
                assert new[1:] == old[1:]
                assert resampling.robust_stats(x, v) == old[1:]


@pytest.mark.parametrize("modality", ["eeg", "ecg"])
def test_amplitude_equal_old(modality):
    rng = np.random.default_rng(5)
    for n in (1000, 7_372_800):
        x = (rng.standard_normal(n) * 40).astype(np.float32)
        assert loading._amplitude(x, modality) == old_amplitude(x, modality)
        x[::1000] = np.nan
        assert loading._amplitude(x, modality) == old_amplitude(x, modality)


def test_clipped_equal_old():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((200, 3840))
    x[:20] = np.clip(x[:20], -0.5, 0.5)  # clipped epochs
    x[50:60, ::3] = np.nan  # gaps
    x[70] = np.nan
    assert np.array_equal(quality._clipped(x), old_clipped(x))
    full = rng.standard_normal((100, 3840))
    full[:10] = np.clip(full[:10], -0.3, 0.3)
    assert np.array_equal(quality._clipped(full), old_clipped(full))
    # float32 epochs (counted against float32 intervals): quantised values sit exactly at
    # distance tol from the levels, rails hold half the samples, tiny and huge scales
    for scale in (1e-30, 1e-6, 1.0, 300.0, 1e30):
        for y in (
            rng.integers(-100, 101, (120, 3840)).astype(float),
            np.clip(rng.standard_normal((120, 3840)) * 2, -1, 1),
            np.round(rng.standard_normal((120, 3840)) * 50) / 50,
        ):
            y32 = (y * scale).astype(np.float32)
            y32[100:105, ::7] = np.nan
            y32[106] = 3.0
            assert np.array_equal(quality._clipped(y32), old_clipped(y32)), scale
            assert np.array_equal(quality.epoch_quality(y32, "emg"), old_epoch_quality(y32, "emg"))


def test_float32_interval_is_exact():
    rng = np.random.default_rng(9)
    q = np.concatenate([rng.standard_normal(500) * 10 ** rng.uniform(-8, 8, 500), [0.0, 1.0, 2.5]])
    tol = np.abs(q) * rng.choice([0.0, 1e-9, 1e-3, 0.02], q.size)
    tol[-3:] = [0.0, 0.5, 0.0]
    a, b, ok = quality._float32_interval(q, tol)
    assert ok.all()
    for v, qi, ti in ((a, q, tol), (b, q, tol)):
        for step in (np.float32(-np.inf), np.float32(np.inf)):
            w = np.nextafter(v, step)
            for cand in (v, w):
                got = (cand >= a) & (cand <= b)
                want = np.abs(cand.astype(np.float64) - qi) <= ti
                assert np.array_equal(got, want)


@pytest.mark.parametrize("modality", ["eeg", "emg", "ecg", "ibi", "spo2", "resp"])
def test_epoch_quality_equal_old(modality):
    rng = np.random.default_rng(7)
    for n_epochs, width in ((960, 3840), (130, 3840), (70, 120), (3, 1000), (0, 3840)):
        for dtype in (np.float32, np.float64, np.int16):
            x = rng.standard_normal((n_epochs, width)) * 40 + (95 if modality == "spo2" else 0)
            if n_epochs > 20:
                x[:10] = np.clip(x[:10], -5, 5)  # clipped
                x[10:13] = 7.0  # flat
                x[13:15] *= 1e-4  # nearly flat
                if dtype != np.int16:
                    x[15:18, ::2] = np.nan  # half missing
                    x[18, :] = np.nan
                    x[19, 5] = np.inf
            x = x.astype(dtype)
            new, old = quality.epoch_quality(x, modality), old_epoch_quality(x, modality)
            assert np.array_equal(new, old), (n_epochs, width, dtype)


def test_row_stats_equal_old():
    rng = np.random.default_rng(8)
    for shape in ((64, 3840), (1, 5), (30, 120)):
        x = rng.standard_normal(shape) * 30 + 1e3
        for y in (x, np.where(rng.random(shape) < 0.1, np.nan, x)):
            for a, b in zip(quality._row_stats(y), old_row_stats(y), strict=True):
                assert np.array_equal(a, b)


# --- whole nights: the canonical Night is bit-identical to the old code's ----------------------------
def _old_night(monkeypatch, load):
    from s2v_core import night as night_module

    with monkeypatch.context() as m:
        m.setattr(sig, "plausibility_warnings", old_plausibility_warnings)
        m.setattr(sig, "epoch_quality", old_epoch_quality)
        m.setattr(loading, "_amplitude", old_amplitude)
        m.setattr(night_module, "robust_stats", lambda x, valid=None: old_robust_scale(x, valid)[1:])
        night = load()
        stats = night.scaling_stats()
    return night, stats


def _assert_same(monkeypatch, load):
    old, old_stats = _old_night(monkeypatch, load)
    new = load()
    assert new.signals.keys() == old.signals.keys()
    for m in new.signals:
        assert np.array_equal(new.signals[m], old.signals[m], equal_nan=True), m
        assert np.array_equal(new.epoch_valid[m], old.epoch_valid[m]), m
        assert new.provenance[m].warnings == old.provenance[m].warnings, m
    assert new.warnings == old.warnings
    assert new.scaling_stats() == old_stats


def test_sample_night_identical(monkeypatch):
    from s2v_core.synth.cohort import full_sample_night

    edf, hyp = full_sample_night()
    _assert_same(monkeypatch, lambda: loading.load_night(edf, hyp))


def test_shipped_night_identical(monkeypatch):
    from s2v_core.shipped import shipped_night

    edf, hyp = shipped_night()
    _assert_same(monkeypatch, lambda: loading.load_night(edf, hyp))


@pytest.mark.skipif(not DREAMS.exists(), reason="DREAMS excerpt3.edf not present")
def test_dreams_excerpt_identical(monkeypatch):
    hyp = DREAMS.with_name("Hypnogram_excerpt3.txt")
    _assert_same(monkeypatch, lambda: loading.load_night(DREAMS, hyp, allow_mismatch=True))
