"""Zero-phase IIR filtering of a whole night with little memory: :func:`scipy.signal.sosfiltfilt`
(odd padding, its default pad length), keeping every ``step``-th sample, bit for bit.

``sosfiltfilt`` builds the padded signal, copies it into ``sosfilt`` for the forward pass, reverses
the result and copies it again for the backward pass: five or six whole-signal float64 arrays (an
8-h channel at 128 Hz is 30 MB each), and every fresh large array costs page faults, most of all in
a new process. Here both passes run a chunk at a time, the state of each second-order section
carried from chunk to chunk (``sosfilt``'s ``zi``): ``sosfilt`` runs its sections sample by sample,
so a run in pieces performs the same operations in the same order. The forward pass writes over
the input, the backward pass reads it from the end and keeps only the samples asked for. The
result equals ``sosfiltfilt(sos, x)[::step]`` exactly (tests/test_filtfilt.py).
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

__all__ = ["sosfiltfilt_every"]

_CHUNK = 1 << 16
"""Samples per ``sosfilt`` call (512 KiB of float64)."""


def sosfiltfilt_every(sos: np.ndarray, x: np.ndarray, step: int = 1, *, chunk: int = _CHUNK) -> np.ndarray:
    """``scipy.signal.sosfiltfilt(sos, x)[::step]`` as float32, computed in place of ``x``.

    Parameters
    ----------
    sos : np.ndarray, shape (n_sections, 6)
        Second-order sections (e.g. from ``scipy.signal.butter(..., output="sos")``).
    x : np.ndarray, shape (n,), float64, C-contiguous
        The signal. It is **overwritten** (it holds the forward pass afterwards).
    step : int
        Keep every ``step``-th sample of the result, from the first.
    chunk : int
        Samples per ``sosfilt`` call.

    Returns
    -------
    np.ndarray, shape (ceil(n / step),), float32

    Raises
    ------
    ValueError
        ``x`` is not a 1-D, C-contiguous float64 array, or not longer than the padding (as
        ``sosfiltfilt`` refuses it).
    """
    sos = np.asarray(sos, np.float64)
    if x.ndim != 1 or x.dtype != np.float64 or not x.flags.c_contiguous or not x.flags.writeable:
        raise ValueError("x must be a writeable 1-D C-contiguous float64 array")
    if step < 1 or chunk < 1:
        raise ValueError(f"step and chunk must be >= 1, got {step} and {chunk}")
    n_sections = len(sos)
    ntaps = 2 * n_sections + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    edge = 3 * ntaps  # sosfiltfilt's default padlen
    n = len(x)
    if n <= edge:
        raise ValueError(f"The length of the input vector x must be greater than padlen, which is {edge}.")
    # the odd extensions at both ends (scipy's odd_ext), taken before x is overwritten
    left = 2 * x[:1] - x[edge:0:-1]
    right = 2 * x[-1:] - x[-2 : -(edge + 2) : -1]
    zi = sps.sosfilt_zi(sos)
    # forward pass: left extension, the signal (written over x), right extension
    _, state = sps.sosfilt(sos, left, zi=zi * left[:1])
    for a in range(0, n, chunk):
        x[a : a + chunk], state = sps.sosfilt(sos, x[a : a + chunk], zi=state)
    y_right, _ = sps.sosfilt(sos, right, zi=state)
    # backward pass from the end: the right extension, then the signal; the left extension's
    # backward outputs would only be cut off, so that pass is not run
    _, state = sps.sosfilt(sos, y_right[::-1], zi=zi * y_right[-1:])
    out = np.empty(-(-n // step), np.float32)
    for b in range(n, 0, -chunk):
        a = max(0, b - chunk)
        z, state = sps.sosfilt(sos, x[b - 1 : a - 1 if a else None : -1], zi=state)  # z[k]: index b-1-k
        first = -(-a // step) * step
        keep = np.arange(first, b, step)
        out[keep // step] = z[b - 1 - keep]
    return out
