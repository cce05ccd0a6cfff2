"""The block-matrix polyphase resampler equals scipy's resample_poly(padtype="line")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from s2v_core.signals import _polyphase
from s2v_core.signals._polyphase import polyphase_plan, resample_poly_line
from s2v_core.signals.resampling import rational_ratio, resample

RATES = [256, 512, 200, 250, 500, 100, 1000, 300, 50, 1, 10, 128 * 3]


@pytest.mark.parametrize("fs_in", RATES)
@pytest.mark.parametrize("n", [2, 3, 7, 64, 1001, 40_000])
def test_matches_scipy_resample_poly(fs_in, n):
    rng = np.random.default_rng(fs_in * 7 + n)
    x = (rng.standard_normal(n).cumsum() + 40.0).astype(np.float32)  # drift and a DC offset: the line padding matters
    up, down = rational_ratio(fs_in, 128 if fs_in > 10 else 4)
    want = sps.resample_poly(x, up, down, padtype="line")
    got = resample_poly_line(x, up, down)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-5 * (np.ptp(x) + 1.0))


def test_edges_follow_the_line_padding():
    # a pure ramp is reproduced exactly by line padding, including the first and last outputs
    x = np.linspace(-3.0, 5.0, 2561).astype(np.float32)
    got = resample_poly_line(x, 1, 2)
    np.testing.assert_allclose(got, x[::2], atol=1e-4)
    # a constant offset with zero padding would droop to about half at the ends; line padding keeps
    # it within the filter's passband ripple per phase (scipy's too: about 0.015 at 95)
    flat = resample_poly_line(np.full(999, 95.0, np.float32), 16, 25)
    np.testing.assert_allclose(flat, 95.0, atol=0.05)
    np.testing.assert_allclose(flat, sps.resample_poly(np.full(999, 95.0, np.float32), 16, 25, padtype="line"), atol=1e-4)


def test_huge_factors_fall_back_to_scipy(monkeypatch):
    assert polyphase_plan(1, 2) is not None
    assert polyphase_plan(1, 50_000) is None  # tap table too large: scipy's loop is used instead
    calls = []
    real = sps.resample_poly
    monkeypatch.setattr(_polyphase.sps, "resample_poly", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    x = np.random.default_rng(0).standard_normal(200_000).astype(np.float32)
    got = resample_poly_line(x, 1, 50_000)
    assert calls == [(1, 50_000)]
    np.testing.assert_allclose(got, real(x, 1, 50_000, padtype="line"), atol=1e-6)


def test_resample_uses_it_and_keeps_nan_gaps():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(256 * 60).astype(np.float32)
    np.testing.assert_allclose(resample(x, 256, 128), sps.resample_poly(x, 1, 2, padtype="line"), atol=1e-5)
    x[1000:1500] = np.nan  # the gap path bridges in float64 and keeps scipy's loop
    y = resample(x, 256, 128)
    assert np.isnan(y[520:730]).all() and np.isfinite(y[:480]).all() and np.isfinite(y[770:]).all()


@pytest.mark.parametrize("fs_in", [256, 200, 1, 500])
def test_chunks_join_seamlessly(fs_in, monkeypatch):
    # long recordings are filtered a chunk of blocks at a time: force many small chunks
    monkeypatch.setattr(_polyphase, "_CHUNK_SAMPLES", 300)
    rng = np.random.default_rng(fs_in)
    x = (rng.standard_normal(25_003).cumsum() + 7.0).astype(np.float32)
    up, down = rational_ratio(fs_in, 128 if fs_in > 10 else 4)
    want = sps.resample_poly(x, up, down, padtype="line")
    np.testing.assert_allclose(resample_poly_line(x, up, down), want, rtol=0, atol=5e-5 * np.ptp(x))


@pytest.mark.parametrize("fs_in", [256, 250, 500])
def test_result_does_not_depend_on_the_blas_thread_count(fs_in, monkeypatch):
    """A Dask worker (one BLAS thread) must reproduce a serial run (several) bit for bit.

    Every product is small enough for one BLAS thread; a product split between threads rounds
    differently on some CPUs (seen with OpenBLAS on AVX-512 machines), so this fails there when the
    products are not bounded. The bound is checked on every machine below.
    """
    from threadpoolctl import threadpool_limits

    x = (np.random.default_rng(fs_in).standard_normal(fs_in * 1800) * 300).astype(np.float32)
    up, down = rational_ratio(fs_in, 128)
    with threadpool_limits(limits=4, user_api="blas"):
        many = resample_poly_line(x, up, down)
    with threadpool_limits(limits=1, user_api="blas"):
        one = resample_poly_line(x, up, down)
    np.testing.assert_array_equal(many, one)
    # every matrix product the resampler runs stays within the one-thread bound
    sizes = []
    real_matmul = np.matmul

    class Recording:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def matmul(a, b, **kw):
            sizes.append(a.shape[0] * a.shape[1] * b.shape[1])
            return real_matmul(a, b, **kw)

    monkeypatch.setattr(_polyphase, "np", Recording())
    resample_poly_line(x, up, down)
    assert sizes and max(sizes) <= _polyphase._ONE_THREAD_GEMM
