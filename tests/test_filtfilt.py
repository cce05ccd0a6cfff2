"""sosfiltfilt_every: scipy's sosfiltfilt(sos, x)[::step], bit for bit, a chunk at a time."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from s2v_core.signals._filtfilt import sosfiltfilt_every

FILTERS = {
    "band 0.3-25 Hz at 128": sps.butter(4, (0.3, 25), btype="bandpass", fs=128, output="sos"),
    "band 0.3-25 Hz at 64": sps.butter(4, (0.3, 25), btype="bandpass", fs=64, output="sos"),
    "low 20 Hz": sps.butter(6, 20, btype="lowpass", fs=100, output="sos"),  # zeros: fewer taps
    "high 0.5 Hz": sps.butter(2, 0.5, btype="highpass", fs=256, output="sos"),
    "notch 50 Hz": sps.tf2sos(*sps.iirnotch(50, 30, fs=256)),
}


@pytest.mark.parametrize("name", list(FILTERS))
@pytest.mark.parametrize("n", [31, 100, 997, 4096, 70_001])
@pytest.mark.parametrize("step", [1, 2, 3, 4])
def test_equals_scipy_bit_for_bit(name, n, step):
    sos = FILTERS[name]
    rng = np.random.default_rng(n * 7 + step)
    x = rng.normal(0, 40, n) + np.linspace(-300, 500, n)  # a drift: the padding matters
    edge = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    if n <= edge:
        with pytest.raises(ValueError, match="padlen"):
            sps.sosfiltfilt(sos, x)
        with pytest.raises(ValueError, match="padlen"):
            sosfiltfilt_every(sos, x.copy(), step)
        return
    expected = sps.sosfiltfilt(sos, x)[::step].astype(np.float32)
    for chunk in (1, 7, 1000, 1 << 16):  # one sample at a time, odd pieces, one piece
        if chunk == 1 and n > 5000:
            continue
        got = sosfiltfilt_every(sos, x.copy(), step, chunk=chunk)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_the_input_is_overwritten_and_checked():
    sos = FILTERS["low 20 Hz"]
    x = np.random.default_rng(0).normal(size=500)
    keep = x.copy()
    sosfiltfilt_every(sos, x)
    assert not np.array_equal(x, keep)  # documented: x holds the forward pass
    for bad in (keep.astype(np.float32), np.stack([keep, keep]), keep[::2], keep[:0:-1]):
        with pytest.raises(ValueError, match="float64"):
            sosfiltfilt_every(sos, bad)
    with pytest.raises(ValueError, match=">= 1"):
        sosfiltfilt_every(sos, keep.copy(), 0)
