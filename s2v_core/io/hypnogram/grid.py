"""The 30-s epoch grid: interval -> epoch assignment, re-gridding, shifting, overlap resolution.

Rule everywhere: an epoch takes the stage with the largest time overlap; ties go to the
stage that starts first inside the epoch; an epoch scored for under half its length is
unscored (-1).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.stages import UNSCORED

__all__ = [
    "EPOCH_S",
    "before_start_warning",
    "grid_stages",
    "regrid_stages",
    "resolve_overlaps",
    "shift_stages",
]

EPOCH_S = float(EPOCH_SECONDS)
_EPS = 1e-6  # seconds; onsets are rounded to the microsecond before gridding


def grid_stages(
    starts: np.ndarray, ends: np.ndarray, codes: np.ndarray, n_epochs: int, epoch_s: float = EPOCH_S
) -> np.ndarray:
    """Assign non-overlapping stage intervals to a regular epoch grid.

    Epoch ``i`` covers ``[epoch_s * i, epoch_s * (i + 1))``. Each epoch takes the stage
    with the largest time overlap; ties go to the stage that starts earliest inside the
    epoch; an epoch whose scored part (stages 0..4) is under half its length is -1.

    Parameters
    ----------
    starts, ends : np.ndarray
        ``(K,)`` interval bounds in seconds; intervals must not overlap.
    codes : np.ndarray
        ``(K,)`` project codes (-1 intervals count as unscored).
    n_epochs : int
        Length of the output grid.
    epoch_s : float
        Grid epoch length in seconds.

    Returns
    -------
    np.ndarray
        ``(n_epochs,)`` int8 stage codes.
    """
    total = n_epochs * epoch_s
    s = np.clip(np.asarray(starts, dtype=float), 0.0, total)
    e = np.clip(np.asarray(ends, dtype=float), 0.0, total)
    c = np.asarray(codes, dtype=np.int64)
    keep = (c >= 0) & (e > s)
    s, e, c = s[keep], e[keep], c[keep]
    # one spare row absorbs pieces that end exactly on the grid end
    cover = np.zeros((n_epochs + 1, 5))
    first = np.full((n_epochs + 1, 5), np.inf)
    i0 = np.floor(s / epoch_s + 1e-9).astype(np.int64)
    i1 = np.floor(e / epoch_s + 1e-9).astype(np.int64)
    one = i0 == i1
    many = ~one
    np.add.at(cover, (i0[one], c[one]), e[one] - s[one])
    np.add.at(cover, (i0[many], c[many]), (i0[many] + 1) * epoch_s - s[many])
    np.add.at(cover, (i1[many], c[many]), e[many] - i1[many] * epoch_s)
    inner = np.zeros((n_epochs + 2, 5))  # difference array for fully covered epochs
    np.add.at(inner, (i0[many] + 1, c[many]), epoch_s)
    np.add.at(inner, (i1[many], c[many]), -epoch_s)
    cover += np.cumsum(inner, axis=0)[: n_epochs + 1]
    np.minimum.at(first, (i0, c), s)
    cover, first = cover[:n_epochs], first[:n_epochs]
    epoch_start = (np.arange(n_epochs) * epoch_s)[:, None]
    first = np.where(np.isinf(first) & (cover > 0), epoch_start, first)  # covered from the start
    best = cover.max(axis=1, initial=0.0)
    candidates = cover >= best[:, None] - _EPS
    stages = np.argmin(np.where(candidates, first, np.inf), axis=1).astype(np.int8)
    stages[cover.sum(axis=1) < epoch_s / 2 - _EPS] = UNSCORED
    return stages


def regrid_stages(
    stages: ArrayLike, src_epoch_seconds: float, dst_epoch_seconds: float = EPOCH_S
) -> np.ndarray:
    """Re-grid per-epoch stage codes to another epoch length by majority of time overlap.

    Ties go to the stage that comes first in time; a destination epoch whose scored part
    is under half its length is -1. DREAMS: six 5-s codes -> one 30-s epoch.

    Parameters
    ----------
    stages : np.ndarray
        ``(n_src,)`` project codes, one per source epoch.
    src_epoch_seconds, dst_epoch_seconds : float
        Source and destination epoch lengths in seconds.

    Returns
    -------
    np.ndarray
        ``(ceil(n_src * src / dst),)`` int8 codes.

    Examples
    --------
    >>> regrid_stages(np.array([2, 2, 2, 3, 3, 3, 0, 0, 0, 0, -1, -1]), 5.0).tolist()
    [2, 0]
    """
    if src_epoch_seconds <= 0 or dst_epoch_seconds <= 0:
        raise ValueError("epoch lengths must be positive seconds")
    codes = np.asarray(stages, dtype=np.int64)
    if codes.size and (codes.min() < UNSCORED or codes.max() > 4):
        raise ValueError("stages must hold project codes -1..4")
    if math.isclose(src_epoch_seconds, dst_epoch_seconds):
        return codes.astype(np.int8)
    starts = np.arange(codes.size) * float(src_epoch_seconds)
    n_dst = math.ceil(codes.size * src_epoch_seconds / dst_epoch_seconds - 1e-9)
    return grid_stages(starts, starts + src_epoch_seconds, codes, n_dst, dst_epoch_seconds)


def shift_stages(stages: np.ndarray, offset_s: float) -> tuple[np.ndarray, list[str]]:
    """Move 30-s stages that start ``offset_s`` after the recording start onto its grid.

    A positive offset pads unscored epochs at the front; a negative one drops the scoring
    that falls before the recording (with a warning). Returns ``(stages, warnings)``.
    """
    codes = np.asarray(stages, dtype=np.int64)
    if abs(offset_s) < _EPS:
        return codes.astype(np.int8), []
    starts = np.arange(codes.size) * EPOCH_S + offset_s
    warnings = before_start_warning(starts, starts + EPOCH_S, codes)
    n_out = max(0, math.ceil((codes.size * EPOCH_S + offset_s) / EPOCH_S - 1e-9))
    return grid_stages(starts, starts + EPOCH_S, codes, n_out), warnings


def before_start_warning(starts: np.ndarray, ends: np.ndarray, codes: np.ndarray) -> list[str]:
    """A warning when intervals (seconds from the recording start) begin before it."""
    lost = np.clip(ends, None, 0.0) - np.clip(starts, None, 0.0)
    lost_scored = float(lost[codes >= 0].sum())
    if starts.size == 0 or starts.min() >= 0:
        return []
    return [
        f"the hypnogram starts {-starts.min():.0f} s before the recording; the scoring before "
        f"the recording start is dropped ({lost_scored / EPOCH_S:.1f} scored epochs)"
    ]


def resolve_overlaps(
    starts: np.ndarray, ends: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Make stage intervals disjoint; where they overlap, the later-starting one wins.

    Equal onsets: the one later in the file wins. Returns sorted ``(starts, ends, codes,
    n_conflicts)`` where ``n_conflicts`` counts annotations that overwrote a different stage.
    """
    order = np.argsort(starts, kind="stable")
    s, e, c = starts[order], ends[order], codes[order]
    if s.size < 2 or np.all(s[1:] >= np.maximum.accumulate(e)[:-1] - _EPS):
        return s, e, c, 0
    bounds = np.unique(np.concatenate([s, e]))
    painted = np.full(bounds.size - 1, -99, dtype=np.int64)  # -99 = not covered
    lo = np.searchsorted(bounds, s)
    hi = np.searchsorted(bounds, e)
    conflicts = 0
    for k in range(s.size):  # loop over annotations, only when some overlap
        seg = painted[lo[k] : hi[k]]
        conflicts += bool(np.any((seg != -99) & (seg != c[k])))
        seg[:] = c[k]
    covered = painted != -99
    return bounds[:-1][covered], bounds[1:][covered], painted[covered], conflicts
