"""The :class:`Hypnogram` container and the two builders every hypnogram reader ends with.

Both work on numbers already pulled out of a file: onset/duration/label annotations
(:func:`hypnogram_from_annotations`) or one code per epoch of any length
(:func:`hypnogram_from_epochs`). The epoch-grid arithmetic is in
:mod:`s2v_core.io.hypnogram.grid`; file formats in :mod:`s2v_core.io.hypnogram.formats`,
:mod:`s2v_core.io.hypnogram.text` and :mod:`s2v_core.io.hypnogram.wfdb_stages`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from s2v_core.errors import HypnogramError
from s2v_core.io.hypnogram.grid import (
    EPOCH_S,
    before_start_warning,
    grid_stages,
    regrid_stages,
    resolve_overlaps,
    shift_stages,
)
from s2v_core.io.hypnogram.labels import (
    NOT_STAGE,
    UNKNOWN,
    as_text_array,
    classify_event,
    map_stage_labels,
)
from s2v_core.io.text_limits import MAX_TEXT_ROWS, check_count, check_labels, excerpt, excerpts
from s2v_core.stages import STAGE_NAMES, UNSCORED

__all__ = [
    "EVENT_COLUMNS",
    "MAX_EPOCHS",
    "NO_START",
    "Hypnogram",
    "check_length",
    "empty_events",
    "hypnogram_from_annotations",
    "hypnogram_from_epochs",
    "stage_codes",
]

log = logging.getLogger(__name__)

EVENT_COLUMNS: tuple[str, ...] = ("onset_s", "duration_s", "label", "kind")
MAX_EPOCHS = 7 * 2880
"""Longest hypnogram accepted: 7 days of 30-s epochs."""
NO_START = "the file carries no absolute start time; recording_start is not used"
_LONG_INTEGER = re.compile(r"\s*([+-]?)\d{19,}(\.0*)?\s*")
_LONG_CODE = "9" * 19  # stands for any integer label over 18 digits


def empty_events() -> pd.DataFrame:
    """An events table with no rows and the standard columns."""
    return pd.DataFrame(
        {
            "onset_s": pd.Series(dtype=float),
            "duration_s": pd.Series(dtype=float),
            "label": pd.Series(dtype=str),
            "kind": pd.Series(dtype=str),
        }
    )


def stage_codes(
    labels: ArrayLike, codes: str = "auto", *, source: str = ""
) -> tuple[np.ndarray, list[str]]:
    """:func:`~s2v_core.io.hypnogram.labels.map_stage_labels` that accepts integers of any size.

    Integer labels of more than 18 digits (which ``map_stage_labels`` would turn into an
    infinite float) are read as ``-1`` (negative: unscored) or a 19-digit code (unknown).

    Parameters
    ----------
    labels : array_like
        ``(K,)`` label texts.
    codes : {"auto", "project", "rk"}
        Table for integer labels, as in ``map_stage_labels``.
    source : str
        File path, for messages.

    Returns
    -------
    stage : np.ndarray
        ``(K,)`` int64 codes -1..4, or ``NOT_STAGE`` / ``UNKNOWN``.
    warnings : list of str
    """
    texts = as_text_array(labels)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=texts.size)
    for k in np.flatnonzero(lengths > 18):  # rare: a loop over long labels only
        match = _LONG_INTEGER.fullmatch(texts[k])
        if match:
            texts[k] = "-1" if match.group(1) == "-" else _LONG_CODE
    return map_stage_labels(texts, codes, source=source)


@dataclass
class Hypnogram:
    """Sleep stages per 30-s epoch, with epoch 0 starting at the recording start.

    Attributes
    ----------
    stages : np.ndarray
        ``(n_epochs,)`` int8 project codes: W=0 N1=1 N2=2 N3=3 REM=4, unscored=-1.
    epoch_seconds : float
        Epoch length in seconds; always 30 after reading (other lengths are re-gridded).
    source : str
        Path of the file it came from ("" when built in memory).
    format : str
        Key of :data:`s2v_core.io.hypnogram.FORMATS` that was read.
    warnings : list of str
        Everything the user should know about (re-gridding, overlaps, padding...).
    events : pandas.DataFrame or None
        Scored events: ``onset_s``, ``duration_s`` (seconds from the recording start),
        ``label`` (as written in the file) and ``kind`` (apnea, hypopnea, arousal,
        desaturation, limb or other).
    """

    stages: np.ndarray
    epoch_seconds: float = EPOCH_S
    source: str = ""
    format: str = ""
    warnings: list[str] = field(default_factory=list)
    events: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        stages = np.asarray(self.stages)
        if stages.ndim != 1:
            raise ValueError(f"stages must be 1-D, got shape {stages.shape}")
        if stages.size and (stages.min() < UNSCORED or stages.max() > 4):
            raise ValueError("stages must hold project codes -1..4")
        self.stages = stages.astype(np.int8)

    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return int(self.stages.size)

    def counts(self) -> dict[str, int]:
        """Epochs per stage: ``{"W", "N1", "N2", "N3", "REM", "unscored"}`` -> count."""
        binned = np.bincount(self.stages.astype(np.int64) + 1, minlength=6)
        out = {name: int(binned[code + 1]) for code, name in enumerate(STAGE_NAMES)}
        out["unscored"] = int(binned[0])
        return out

    def aligned(
        self, n_epochs: int, *, tolerance_epochs: int = 1, allow_mismatch: bool = False
    ) -> Hypnogram:
        """Fit the hypnogram to a signal of ``n_epochs`` 30-s epochs.

        Trailing extra epochs that are all unscored are dropped silently. A remaining
        difference of at most ``tolerance_epochs`` is fixed (pad with -1 at the end, or
        trim the end) with a warning. A bigger difference raises :class:`HypnogramError`
        unless ``allow_mismatch`` is true, in which case the end is padded or trimmed and
        the warning says how many scored epochs were dropped or how many were padded.

        Parameters
        ----------
        n_epochs : int
            Number of 30-s epochs in the signal.
        tolerance_epochs : int
            Largest difference fixed without ``allow_mismatch``.
        allow_mismatch : bool
            Pad/trim whatever the difference.

        Returns
        -------
        Hypnogram
            A new hypnogram with exactly ``n_epochs`` epochs; the first
            ``min(n_epochs, len)`` epochs are unchanged.
        """
        if n_epochs < 0:
            raise ValueError(f"n_epochs must be >= 0, got {n_epochs}")
        stages = self.stages
        if stages.size > n_epochs:  # drop trailing unscored epochs beyond the signal
            scored = np.flatnonzero(stages[n_epochs:] != UNSCORED)
            stages = stages[: n_epochs + (scored[-1] + 1 if scored.size else 0)]
        diff = stages.size - n_epochs
        warnings = list(self.warnings)
        if diff != 0:
            minutes = EPOCH_S / 60.0
            if abs(diff) > tolerance_epochs and not allow_mismatch:
                raise HypnogramError(
                    self.source or None,
                    f"the hypnogram has {stages.size} epochs ({stages.size * minutes:.1f} min) "
                    f"but the signal has {n_epochs} epochs ({n_epochs * minutes:.1f} min); "
                    f"a difference of {abs(diff)} epochs is more than the tolerance of "
                    f"{tolerance_epochs}. Check that the hypnogram belongs to this recording, "
                    "or let it pad/trim the hypnogram's end anyway (s2v: --allow-mismatch; "
                    "Python: allow_mismatch=True).",
                )
            if diff > 0:
                n_scored = int(np.count_nonzero(stages[n_epochs:] != UNSCORED))
                warnings.append(
                    f"trimmed {diff} epochs from the end of the hypnogram to fit the signal "
                    f"({n_epochs} epochs); {n_scored} of them were scored and are dropped"
                )
                stages = stages[:n_epochs]
            else:
                warnings.append(
                    f"padded {-diff} unscored epochs at the end of the hypnogram "
                    f"({stages.size} epochs) to fit the signal ({n_epochs} epochs)"
                )
                stages = np.concatenate([stages, np.full(-diff, UNSCORED, dtype=np.int8)])
        return replace(self, stages=stages.copy(), warnings=warnings)

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch: ``onset_s``, ``duration_s``, ``stage`` (int), ``label``."""
        names = np.array((*STAGE_NAMES, "?"))  # index -1 -> "?"
        return pd.DataFrame(
            {
                "onset_s": np.arange(self.n_epochs, dtype=float) * self.epoch_seconds,
                "duration_s": np.full(self.n_epochs, float(self.epoch_seconds)),
                "stage": self.stages.astype(int),
                "label": names[self.stages.astype(int)],
            }
        )


def hypnogram_from_annotations(
    onsets_s: ArrayLike,
    durations_s: ArrayLike,
    labels: ArrayLike,
    *,
    source: str = "",
    n_epochs: int | None = None,
    codes: str = "auto",
    strict: bool = False,
    start_offset_s: float = 0.0,
    events: pd.DataFrame | None = None,
    fmt: str = "",
) -> Hypnogram:
    """Build a 30-s hypnogram from onset/duration/label annotations.

    Epoch ``i`` covers ``[30 i, 30 i + 30)`` seconds from the recording start. Annotations
    off the 30-s grid are assigned by overlap (majority; ties -> earliest; an epoch scored
    for under 15 s is -1). Overlapping stage annotations that disagree: the one that starts
    later wins where they overlap, with a warning. A stage annotation without a duration
    (NaN or 0) lasts until the next stage annotation (the last one: 30 s).

    Labels that are not stages are not used for staging: respiratory, arousal, limb and
    desaturation annotations and anything else that does not look like a stage label
    ("Lights off") go to ``events``; a label that looks like a stage but is unknown (or any
    non-stage label when ``strict``) raises :class:`HypnogramError`.

    Parameters
    ----------
    onsets_s, durations_s : array-like
        ``(K,)`` seconds from the start of the file's scoring.
    labels : array-like of str
        ``(K,)`` annotation texts; integer texts are stage codes (see ``codes``).
    source : str
        File path, for messages.
    n_epochs : int, optional
        Grid length; default: up to the end of the last stage annotation.
    codes : {"auto", "project", "rk"}
        How integer labels are read ("auto": project codes unless a code above 4 appears).
    strict : bool
        Every label must be a stage label.
    start_offset_s : float
        Seconds from the recording start to the file's time zero; negative = the scoring
        starts before the recording (its leading part is dropped, with a warning).
    events : pandas.DataFrame, optional
        Already-classified events to add (same time base as ``onsets_s``).
    fmt : str
        Format key stored on the result.

    Returns
    -------
    Hypnogram
    """
    onsets = np.round(np.asarray(onsets_s, dtype=float).ravel(), 6)
    durations = np.round(np.asarray(durations_s, dtype=float).ravel(), 6)
    texts = as_text_array(labels)
    if not onsets.size == durations.size == texts.size:
        raise HypnogramError(source or None, "onsets, durations and labels differ in length")
    # before any label is mapped (s2v_core.io.text_limits)
    check_count(source or None, texts.size, MAX_TEXT_ROWS, "annotations")
    check_labels(source or None, texts, unit="annotation")
    if not np.all(np.isfinite(onsets)):
        raise HypnogramError(source or None, "some annotation onsets are not numbers")
    negative = np.flatnonzero(durations < 0)
    if negative.size:
        k = negative[0]
        raise HypnogramError(
            source or None,
            f"{negative.size} annotations have a negative duration "
            f"(first: {excerpt(texts[k])} at {onsets[k]:g} s, duration {durations[k]:g} s)",
        )
    stage, warnings = stage_codes(texts, codes, source=source)
    _check_labels(texts, stage, strict, source)
    is_stage = stage > NOT_STAGE
    if not np.any(is_stage):
        shown = excerpts(np.unique(texts)[:5])
        raise HypnogramError(
            source or None, f"no sleep-stage annotations found (labels seen: {shown})"
        )
    on, du, st = onsets[is_stage] + start_offset_s, durations[is_stage], stage[is_stage]
    du, missing_warning = _fill_missing_durations(on, du)
    warnings += missing_warning
    s, e, c, conflicts = resolve_overlaps(on, on + du, st)
    if conflicts:
        warnings.append(
            f"{conflicts} stage annotations overlap a different stage; where they overlap "
            "the annotation that starts later wins"
        )
    warnings += before_start_warning(s, e, c)
    if n_epochs is None:
        n_epochs = max(0, math.ceil(float(e.max()) / EPOCH_S - 1e-9))
    check_length(n_epochs, source)
    grid = grid_stages(s, e, c, n_epochs)
    table = _events_table(
        onsets[~is_stage] + start_offset_s, durations[~is_stage], texts[~is_stage]
    )
    if events is not None and len(events):
        shifted = events.assign(onset_s=events["onset_s"] + start_offset_s)
        table = pd.concat([table, shifted], ignore_index=True) if len(table) else shifted
    table = table.sort_values("onset_s", kind="stable").reset_index(drop=True)
    table = table[table["onset_s"] + table["duration_s"].fillna(0) >= 0].reset_index(drop=True)
    return Hypnogram(grid, source=source, format=fmt, warnings=warnings, events=table)


def check_length(n_epochs: int, source: str) -> None:
    """Refuse hypnograms longer than :data:`MAX_EPOCHS` (almost always wrong time units)."""
    if n_epochs > MAX_EPOCHS:
        raise HypnogramError(
            source or None,
            f"the scoring spans {n_epochs * EPOCH_S / 3600:.0f} h; hypnograms longer than "
            f"{MAX_EPOCHS * EPOCH_S / 86400:.0f} days are refused (are the onsets in seconds "
            "from the recording start, and is epoch_seconds right?)",
        )


def _check_labels(texts: np.ndarray, stage: np.ndarray, strict: bool, source: str) -> None:
    bad = stage == UNKNOWN
    if strict:
        bad |= stage == NOT_STAGE
    if not np.any(bad):
        return
    names, counts = np.unique(texts[bad], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:5]
    shown = ", ".join(f"{excerpt(names[i], 24)} ({counts[i]}x)" for i in order)
    raise HypnogramError(
        source or None,
        f"{names.size} unknown stage labels in {int(bad.sum())} annotations: {shown}. "
        "Known labels include W, N1, N2, N3, R/REM, 'Sleep stage 1..4/R/W/?', "
        "'Stage 2 sleep|2', MT and ?.",
    )


def _fill_missing_durations(on: np.ndarray, du: np.ndarray) -> tuple[np.ndarray, list[str]]:
    missing = ~np.isfinite(du) | (du <= 0)
    if not np.any(missing):
        return du, []
    order = np.argsort(on, kind="stable")
    next_onset = np.empty_like(on)
    next_onset[order[:-1]] = on[order[1:]]
    next_onset[order[-1]] = on[order[-1]] + EPOCH_S
    filled = np.where(missing, np.maximum(next_onset - on, 0.0), du)
    filled[missing & (filled <= 0)] = EPOCH_S  # duplicate onsets: one epoch each
    return filled, [
        f"{int(missing.sum())} stage annotations have no duration; each lasts until the "
        "next stage annotation (the last one: 30 s)"
    ]


def _events_table(onsets: np.ndarray, durations: np.ndarray, texts: np.ndarray) -> pd.DataFrame:
    if onsets.size == 0:
        return empty_events()
    kinds = [classify_event(t) for t in texts]
    return pd.DataFrame({"onset_s": onsets, "duration_s": durations, "label": texts, "kind": kinds})


def hypnogram_from_epochs(
    codes: np.ndarray,
    epoch_seconds: float,
    *,
    source: str = "",
    fmt: str = "",
    warnings: list[str] | None = None,
    events: pd.DataFrame | None = None,
    start_offset_s: float = 0.0,
) -> Hypnogram:
    """Wrap per-epoch project codes of any epoch length as a 30-s :class:`Hypnogram`.

    ``codes`` is ``(n,)`` project codes for consecutive ``epoch_seconds`` epochs starting
    ``start_offset_s`` seconds after the recording start.
    """
    warnings = list(warnings or [])
    check_length(
        math.ceil(len(codes) * epoch_seconds / EPOCH_S + abs(start_offset_s) / EPOCH_S), source
    )
    stages = regrid_stages(codes, epoch_seconds, EPOCH_S)
    if start_offset_s:
        stages, shift_warnings = shift_stages(stages, start_offset_s)
        warnings += shift_warnings
    if events is None:
        events = empty_events()
    elif start_offset_s:
        events = events.assign(onset_s=events["onset_s"] + start_offset_s)
    return Hypnogram(stages, source=source, format=fmt, warnings=warnings, events=events)
