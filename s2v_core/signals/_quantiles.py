"""Exact, faster replacements for ``np.median`` and ``np.percentile`` on large 1-D arrays (internal).

``np.median``/``np.percentile`` partition a full copy of the data (introselect, ~40 ms for an 8-h
night at 128 Hz). The same order statistics are found here by bracketing each wanted rank with a
sorted deterministic subsample, counting the values below the bracket and partitioning only the
values inside it; when a bracket misses (never for ordinary signals) the full partition is used.
The order statistics are values of the array, so the results are bit-identical to numpy's: the
final interpolation repeats numpy's ``_lerp`` (numpy 2.x, method "linear") step for step. When an
order statistic is zero, numpy itself is called (its partition decides whether -0.0 or +0.0 is
returned among equal values).
"""

from __future__ import annotations

import numpy as np

_MIN_BRACKETED = 1 << 16
"""Below this many values a plain ``np.partition`` is as fast."""
_SUBSAMPLE = 32768


def order_statistics(values: np.ndarray, ks: np.ndarray | list[int]) -> np.ndarray:
    """``np.sort(values)[ks]`` without sorting: ``values`` 1-D and NaN-free, ``ks`` in ``[0, n)``."""
    values = np.asarray(values)
    ks = np.asarray(ks, dtype=np.intp)
    n = values.size
    if n < _MIN_BRACKETED:
        return np.partition(values, np.unique(ks))[ks]
    sub = np.sort(values[:: n // _SUBSAMPLE])
    m = sub.size
    out = np.empty(ks.size, dtype=values.dtype)
    for group in _groups(np.unique(ks)):
        k_lo, k_hi = int(group[0]), int(group[-1])
        p = (k_lo + 0.5) / n
        margin = 5.0 * np.sqrt(m * p * (1.0 - p)) + 4.0 + (k_hi - k_lo) * m / n
        r_lo, r_hi = int(np.floor(p * m - margin)), int(np.ceil((k_hi + 0.5) / n * m + margin))
        lo = sub[r_lo] if r_lo >= 0 else None
        hi = sub[r_hi] if r_hi < m else None
        inside = np.ones(n, dtype=bool) if lo is None else values >= lo
        below = n - int(np.count_nonzero(inside))  # NaN-free: "not >= lo" is "< lo"
        if hi is not None:
            inside &= values <= hi
        mid = values[inside]
        if below <= k_lo and below + mid.size > k_hi:
            got = np.partition(mid, group - below)[group - below]
        else:  # the bracket missed: the full partition (still exact)
            got = np.partition(values, group)[group]
        for k, v in zip(group, got, strict=True):
            out[ks == k] = v
    return out


def _groups(ks: np.ndarray) -> list[np.ndarray]:
    """Sorted unique ranks split into runs of neighbours (found with one bracket)."""
    cuts = np.nonzero(np.diff(ks) > 1)[0] + 1
    return np.split(ks, cuts)


def median(values: np.ndarray) -> np.floating:
    """``np.median(values)`` of a non-empty, NaN-free 1-D array, bit for bit (same dtype)."""
    values = np.asarray(values)
    n = values.size
    ks = [n // 2 - 1, n // 2] if n % 2 == 0 else [(n - 1) // 2]
    middle = order_statistics(values, ks)
    if not middle.all():  # a zero: which of -0.0 and +0.0 numpy's partition picks is its own
        return np.median(values)
    # np.median takes np.mean of the middle one or two partitioned values: do exactly that
    return np.mean(middle)


def percentile(
    values: np.ndarray, q: float | list[float], dtype: type | None = None
) -> np.ndarray | np.floating:
    """``np.percentile(values, q)`` (method "linear") of a non-empty, NaN-free 1-D array, bit for bit.

    A scalar ``q`` (Python int or float) interpolates in the array's dtype, like numpy's weak
    promotion; a list gives float64 (for float32 or float64 values). ``dtype`` (e.g. float64 for
    float32 values) gives ``np.percentile(values.astype(dtype), q)`` without the copy.
    """
    values = np.asarray(values)
    weak_q = type(q) in (int, float)
    quantiles = np.true_divide(q, 100)
    n = values.size
    virtual = np.asanyarray((n - 1) * quantiles)
    previous = np.floor(virtual)
    nxt = previous + 1
    above = virtual >= n - 1
    previous = np.where(above, -1.0, previous)  # numpy indexes the last value with -1
    nxt = np.where(above, -1.0, nxt)
    below = virtual < 0
    previous = np.where(below, 0.0, previous).astype(np.intp)
    nxt = np.where(below, 0.0, nxt).astype(np.intp)
    prev_ks, next_ks = np.where(previous < 0, n - 1, previous), np.where(nxt < 0, n - 1, nxt)
    stats = order_statistics(values, np.concatenate([prev_ks.ravel(), next_ks.ravel()]))
    if not stats.all():  # a zero: which of -0.0 and +0.0 numpy's partition picks is its own
        return np.percentile(values if dtype is None else values.astype(dtype), q)
    half = prev_ks.size
    a = stats[:half].reshape(prev_ks.shape)
    b = stats[half:].reshape(next_ks.shape)
    gamma = np.asanyarray(virtual - previous, dtype=virtual.dtype)
    if dtype is not None:  # the order statistics of the converted array are the converted ones
        a, b = a.astype(dtype), b.astype(dtype)
    if weak_q:
        gamma = float(gamma)
        a, b = a[()], b[()]
    return _lerp(a, b, gamma)


def _lerp(a, b, t):  # noqa: ANN001, ANN202 - numpy's _lerp, numpy 2.x
    diff_b_a = b - a
    lerp_interpolation = np.asanyarray(np.add(a, diff_b_a * t))
    np.subtract(
        b,
        diff_b_a * (1 - t),
        out=lerp_interpolation,
        where=np.asanyarray(t >= 0.5),
        casting="unsafe",
        dtype=type(lerp_interpolation.dtype),
    )
    if lerp_interpolation.ndim == 0:
        lerp_interpolation = lerp_interpolation[()]
    return lerp_interpolation


_TAIL = 0.05
"""Ranks within this fraction of either end of a row are found by :func:`row_order_statistics`'s tail bracket."""


def row_order_statistics(x: np.ndarray, ks: list[int]) -> np.ndarray:
    """``np.sort(x, axis=1)[:, ks].T`` of a NaN-free 2-D array, for ranks near either end of the rows.

    Each row's tail is bracketed by a sorted subsample of the row; only the values beyond the
    bracket are sorted (a few percent of the row). Rows whose bracket misses, and ranks away from
    the ends, use ``np.partition``. Exact: the results are values of the rows.
    """
    x = np.asarray(x)
    n_rows, n = x.shape
    ks = np.unique(np.asarray(ks, dtype=np.intp))
    out = np.empty((ks.size, n_rows), dtype=x.dtype)
    if n_rows == 0:
        return out
    step = 8
    low = ks < _TAIL * n
    high = ks >= (1 - _TAIL) * n
    if n < 1024 or not (low | high).all():
        part = np.partition(x, ks, axis=1)
        return part[:, ks].T.copy()
    sub = np.sort(x[:, ::step], axis=1)
    m = sub.shape[1]
    for side_ks, is_low in ((ks[low], True), (ks[high], False)):
        if side_ks.size == 0:
            continue
        sel = low if is_low else high
        # ranks counted from this side's end
        depth = int(side_ks.max()) + 1 if is_low else n - int(side_ks.min())
        p = depth / n
        j = int(np.ceil(p * m + 5.0 * np.sqrt(m * p * (1 - p)) + 4.0))
        j = min(j, m - 1)
        thr = sub[:, j] if is_low else sub[:, m - 1 - j]
        mask = x <= thr[:, None] if is_low else x >= thr[:, None]
        counts = np.count_nonzero(mask, axis=1)
        width = int(counts.max())
        good = counts >= depth
        flat = np.flatnonzero(mask)  # row-major: the candidates of row 0, then of row 1, ...
        rows = flat // n
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        pos = np.arange(flat.size) - starts[rows]
        fill = np.inf if is_low else -np.inf
        tails = np.full((n_rows, width), fill, dtype=x.dtype)
        tails[rows, pos] = x.reshape(-1)[flat] if x.flags.c_contiguous else x[rows, flat % n]
        tails.sort(axis=1)
        idx = side_ks if is_low else width - (n - side_ks)
        got = tails[:, idx].T
        if not good.all():  # a bracket missed: partition those rows (still exact)
            got[:, ~good] = np.partition(x[~good], side_ks, axis=1)[:, side_ks].T
        out[sel] = got
    return out


def row_percentiles(x: np.ndarray, q: list[float], dtype: type = np.float64) -> np.ndarray:
    """``np.percentile(x.astype(dtype), q, axis=1)`` (method "linear") of a NaN-free 2-D array, bit for bit.

    Fast for percentiles near 0 or 100 (:func:`row_order_statistics`), exact for any.
    """
    x = np.asarray(x)
    n = x.shape[1]
    quantiles = np.true_divide(q, 100)
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual)
    nxt = previous + 1
    above = virtual >= n - 1
    previous = np.where(above, -1.0, previous)
    nxt = np.where(above, -1.0, nxt)
    below = virtual < 0
    previous = np.where(below, 0.0, previous).astype(np.intp)
    nxt = np.where(below, 0.0, nxt).astype(np.intp)
    prev_ks, next_ks = np.where(previous < 0, n - 1, previous), np.where(nxt < 0, n - 1, nxt)
    wanted = np.unique(np.concatenate([prev_ks, next_ks]))
    stats = row_order_statistics(x, list(wanted)).astype(dtype)
    where = {int(k): i for i, k in enumerate(wanted)}
    a = stats[[where[int(k)] for k in prev_ks]]
    b = stats[[where[int(k)] for k in next_ks]]
    gamma = np.asanyarray(virtual - previous, dtype=virtual.dtype).reshape(-1, 1)
    return _lerp(a, b, gamma)
