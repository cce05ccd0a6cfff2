"""Readers for text hypnograms: CSV/TSV/TXT tables and DREAMS ``[Hypnogram]`` files.

A table is either one stage per row (optionally with an epoch-number column), or
annotations with onset, (duration) and label columns. Headers are optional and matched
case-insensitively (``onset``/``start``/``time``, ``duration``, ``label``/``stage``/
``annotation``/``description``/``event``, ``epoch``), which covers EDFbrowser's
``Onset,Duration,Annotation`` export. Without a header: one column = labels; two columns
whose first holds consecutive integers = epoch, label; a time then a label = onset, label;
three or more = onset, duration, label. Onsets are seconds from the recording start, or
clock times (``hh:mm:ss`` or ISO date-times) taken relative to the first row (or to
``recording_start`` when given).
"""

from __future__ import annotations

import csv
import logging
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from s2v_core.errors import HypnogramError
from s2v_core.io.hypnogram.core import (
    MAX_EPOCHS,
    NO_START,
    Hypnogram,
    hypnogram_from_annotations,
    hypnogram_from_epochs,
    stage_codes,
)
from s2v_core.io.hypnogram.labels import NOT_STAGE, UNKNOWN
from s2v_core.io.text_limits import (
    MAX_FIELD_CHARS,
    MAX_TEXT_BYTES,
    MAX_TEXT_ROWS,
    check_count,
    check_file_size,
    check_labels,
    clip_message,
    excerpt,
    excerpts,
)
from s2v_core.stages import DREAMS_CODES, UNSCORED

__all__ = [
    "DAY_S",
    "MAX_TEXT_BYTES",
    "read_dreams",
    "read_table",
    "read_text_lines",
]

log = logging.getLogger(__name__)

DAY_S = 86400.0
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2}(?:\.\d*)?)$")
_DECIMAL_COMMA = re.compile(r"^([+-]?\d+),(\d+)$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ROLE_NAMES: dict[str, frozenset[str]] = {
    "onset": frozenset("onset onsets start starttime begin time clocktime timestamp".split()),
    "duration": frozenset("duration durations dur length".split()),
    "label": frozenset(
        "label stage stages sleepstage annotation description event hypnogram score scoring "
        "value".split()
    ),
    "epoch": frozenset("epoch epochs epochno epochnumber epochindex index".split()),
}
"""Header names (lower case, letters only) -> column role."""


def read_text_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file (``#`` comments dropped).

    Refuses (:mod:`s2v_core.io.text_limits`) a file over :data:`MAX_TEXT_BYTES`, more than
    :data:`MAX_TEXT_ROWS` lines (a header allowed) and a line over :data:`MAX_FIELD_CHARS`.
    """
    check_file_size(path, MAX_TEXT_BYTES, "text hypnograms")
    raw = path.read_bytes()
    breaks = max(raw.count(b"\n"), raw.count(b"\r"))  # cheap: before decoding and splitting
    check_count(path, breaks, MAX_TEXT_ROWS + 1, "lines")  # + 1: a header line
    if b"\x00" in raw[:4096]:
        raise HypnogramError(path, "binary file: not a text hypnogram")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    check_count(path, len(lines), MAX_TEXT_ROWS + 1, "lines")
    check_labels(path, lines, limit=MAX_FIELD_CHARS, what="line", unit="line")
    lines = [ln.strip() for ln in lines]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise HypnogramError(path, "empty file: no stages in it")
    return lines


_HUGE_CODE = 10**18  # stands for any DREAMS code over 18 digits


def read_dreams(path: Path, *, epoch_seconds: float | None = None) -> Hypnogram:
    """DREAMS ``[Hypnogram]`` file: one code per 5 s (5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4, <0 unscored)."""
    lines = read_text_lines(path)
    if lines[0].lower() != "[hypnogram]":
        raise HypnogramError(path, "a DREAMS hypnogram must start with a '[Hypnogram]' line")
    values: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        if not re.fullmatch(r"[+-]?\d+", line):
            raise HypnogramError(
                path, f"line {number}: {excerpt(line)} is not an integer stage code"
            )
        # clamp codes of more than 18 digits (int() refuses over 4300 digits; int64 overflows)
        big = len(line.lstrip("+-").lstrip("0")) > 18
        values.append((-1 if line.startswith("-") else _HUGE_CODE) if big else int(line))
    if not values:
        raise HypnogramError(path, "empty hypnogram: no codes after '[Hypnogram]'")
    unknown = sorted({v for v in values if v >= 0 and v not in DREAMS_CODES})
    if unknown:
        raise HypnogramError(
            path,
            f"unknown DREAMS codes {unknown[:5]}; allowed: 5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4, negative = unscored",
        )
    codes = np.array([max(v, -1) for v in values], dtype=np.int64)  # any negative: unscored
    table = np.array([DREAMS_CODES[k] for k in range(6)], dtype=np.int8)
    stages = np.where(codes < 0, UNSCORED, table[np.clip(codes, 0, 5)])
    return hypnogram_from_epochs(stages, epoch_seconds or 5.0, source=str(path), fmt="dreams")


def _sniff_rows(lines: list[str]) -> list[list[str]]:
    sample = lines[:50]
    for delimiter in ("\t", ";", ","):
        if all(delimiter in ln for ln in sample):
            rows = [[c.strip() for c in row] for row in csv.reader(lines, delimiter=delimiter)]
            if delimiter == ";":  # European decimal commas: "30,0"
                rows = [[_DECIMAL_COMMA.sub(r"\1.\2", c) for c in row] for row in rows]
            return rows
    # whitespace-separated only when every row starts with a time: "0 30 W", "22:00:00 W"
    split = [ln.split() for ln in sample]
    if all(len(tokens) >= 2 and _is_time(tokens[0]) for tokens in split[1:] or [[]]):
        rows = []
        for line in lines:
            tokens = line.split()
            if len(tokens) >= 3 and _is_time(tokens[0]) and _NUMBER.match(tokens[1]):
                rows.append([tokens[0], tokens[1], " ".join(tokens[2:])])
            elif len(tokens) >= 2 and _is_time(tokens[0]):
                rows.append([tokens[0], " ".join(tokens[1:])])
            else:
                rows.append(tokens)
        return rows
    return [[ln] for ln in lines]


def _is_time(text: str) -> bool:
    return bool(_NUMBER.match(text) or _CLOCK.match(text) or _iso(text) is not None)


def _iso(text: str) -> datetime | None:
    if len(text) < 16 or not text[:4].isdigit():
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _role(name: str) -> str | None:
    key = re.sub(r"[^a-z]", "", name.lower().split("(")[0])
    for role, names in _ROLE_NAMES.items():
        if (
            key in names
            or (role == "onset" and key.startswith("onset"))
            or (role == "duration" and key.startswith("duration"))
        ):
            return role
    return None


def _is_header(row: list[str]) -> bool:
    """A first row naming columns, or holding only words that are neither stages nor times."""
    if any(_role(cell) for cell in row):
        return True
    if any(_is_time(cell) for cell in row):
        return False
    stage, _ = stage_codes(np.array(row, dtype=object))
    return bool(np.all(stage == NOT_STAGE))


def read_table(
    path: Path,
    *,
    epoch_seconds: float | None = None,
    codes: str = "auto",
    recording_start: datetime | None = None,
) -> Hypnogram:
    """CSV/TSV/TXT hypnogram (see the module docstring for the layouts understood)."""
    try:
        rows = _sniff_rows(read_text_lines(path))
    except csv.Error as err:  # a quoted field over csv's limit, a NUL byte...
        problem = clip_message(err)
        if "field larger than field limit" in problem:
            problem = (
                f"a quoted field is over {csv.field_size_limit():,} characters; fields over "
                f"{MAX_FIELD_CHARS:,} characters are refused"
            )
        raise HypnogramError(path, f"unreadable CSV: {problem}") from None
    # a quoted field may span lines: each cell again (every line is already within the limit)
    check_labels(path, [max(r, key=len, default="") for r in rows], limit=MAX_FIELD_CHARS,
                 what="field")  # fmt: skip
    header = rows[0] if _is_header(rows[0]) else None
    body = rows[1:] if header is not None else rows
    if not body:
        raise HypnogramError(path, "the table has a header but no rows")
    width = max(max(len(r) for r in body), len(header or []))
    body = [r + [""] * (width - len(r)) for r in body]
    columns = list(zip(*body, strict=True))
    roles = _column_roles(path, header, columns)
    check_labels(path, columns[roles["label"]], what="label")  # before any label is mapped
    labels = np.array(columns[roles["label"]], dtype=object)
    if "onset" not in roles:
        return _per_epoch(path, labels, columns, roles, epoch_seconds, codes, recording_start)
    onsets, offset = _parse_onsets(path, columns[roles["onset"]], recording_start)
    warnings: list[str] = []
    if "duration" in roles:
        durations = np.array(
            [_duration(path, v, i) for i, v in enumerate(columns[roles["duration"]])]
        )
    elif np.all(np.diff(onsets) > 0):  # each row lasts until the next; the last one epoch
        durations = np.diff(onsets, append=onsets[-1] + (epoch_seconds or 30.0))
    else:
        durations = np.full(onsets.size, np.nan)
    if recording_start is not None and not any(
        _CLOCK.match(v) or _iso(v) for v in columns[roles["onset"]][:1]
    ):
        warnings.append(NO_START)
    hyp = hypnogram_from_annotations(
        onsets, durations, labels, source=str(path), codes=codes, start_offset_s=offset, fmt="csv"
    )
    hyp.warnings[:0] = warnings
    return hyp


def _column_roles(
    path: Path, header: list[str] | None, columns: list[tuple[str, ...]]
) -> dict[str, int]:
    width = len(columns)
    if header is not None:
        roles: dict[str, int] = {}
        for index, name in enumerate(header):
            role = _role(name)
            if role and role not in roles:
                roles[role] = index
        if "label" not in roles:
            free = [i for i in range(width) if i not in roles.values()]
            if len(free) != 1:
                raise HypnogramError(
                    path,
                    f"cannot tell which column holds the stages (columns: {excerpts(header, 8)}); "
                    "name it 'stage' or 'label'",
                )
            roles["label"] = free[0]
        return roles
    if width == 1:
        return {"label": 0}
    if _consecutive_integers(columns[0]):
        return {"epoch": 0, "label": 1}
    if not all(_is_time(v) for v in columns[0]):
        raise HypnogramError(
            path,
            "cannot tell which column holds the stages; add a header row (e.g. onset,duration,stage)",
        )
    if width == 2:
        return {"onset": 0, "label": 1}
    return {"onset": 0, "duration": 1, "label": 2}


def _consecutive_integers(values: tuple[str, ...]) -> bool:
    if not all(re.fullmatch(r"\d{1,15}", v) for v in values):
        return False
    numbers = np.array([int(v) for v in values])
    return numbers.size > 1 and bool(np.all(np.diff(numbers) == 1))


def _per_epoch(
    path: Path,
    labels: np.ndarray,
    columns: list[tuple[str, ...]],
    roles: dict[str, int],
    epoch_seconds: float | None,
    codes: str,
    recording_start: datetime | None,
) -> Hypnogram:
    stage, warnings = stage_codes(labels, codes, source=str(path))
    bad = np.flatnonzero((stage == UNKNOWN) | (stage == NOT_STAGE))
    if bad.size:
        uniq = list(dict.fromkeys(labels[bad].tolist()))
        raise HypnogramError(
            path,
            f"{len(uniq)} unknown stage labels in {bad.size} rows (first at row {bad[0] + 1}): "
            f"{excerpts(uniq)}; use W/N1/N2/N3/R (or REM, 'Sleep stage 1', ...) "
            "or integer codes",
        )
    if "epoch" in roles:
        numbers = np.array([_int_cell(path, v, i) for i, v in enumerate(columns[roles["epoch"]])])
        position = numbers - numbers[0]
        if np.any(np.diff(position) <= 0):
            raise HypnogramError(path, "epoch numbers must increase from row to row")
        if position[-1] >= MAX_EPOCHS:  # check before allocating an array that long
            raise HypnogramError(
                path,
                f"epoch numbers span {int(position[-1]) + 1} epochs, more than 7 days of 30-s epochs",
            )
        placed = np.full(int(position[-1]) + 1, UNSCORED, dtype=np.int64)
        placed[position] = stage
        if placed.size > stage.size:
            warnings.append(f"{placed.size - stage.size} epoch numbers are missing; left unscored")
        stage = placed
    epoch_s = float(epoch_seconds or 30.0)
    if epoch_s != 30.0:
        warnings.append(f"scored in {epoch_s:g}-s epochs; re-gridded to 30-s epochs by majority")
    if recording_start is not None:
        warnings.append(NO_START)
    return hypnogram_from_epochs(stage, epoch_s, source=str(path), fmt="csv", warnings=warnings)


def _int_cell(path: Path, value: str, row: int) -> int:
    if not re.fullmatch(r"[+-]?\d{1,15}", value):  # 15 digits: no int64 overflow below
        raise HypnogramError(
            path, f"row {row + 1}: epoch number {value[:40]!r} is not an integer of up to 15 digits"
        )
    return int(value)


def _duration(path: Path, value: str, row: int) -> float:
    if value == "":
        return float("nan")
    if _CLOCK.match(value):
        return _clock_seconds(value)
    if not _NUMBER.match(value):
        raise HypnogramError(
            path, f"row {row + 1}: duration {excerpt(value)} is not a number of seconds"
        )
    return float(value)


def _clock_seconds(value: str) -> float:
    hours, minutes, seconds = _CLOCK.match(value).groups()
    return int(hours) * 3600.0 + int(minutes) * 60.0 + float(seconds)


def _parse_onsets(
    path: Path, values: tuple[str, ...], recording_start: datetime | None
) -> tuple[np.ndarray, float]:
    """Onsets in seconds from the first row (or as given), and the offset to the recording start.

    Numeric onsets are seconds from the recording start (offset 0). Clock times are taken
    relative to the first row; with ``recording_start`` the offset is the first row's time
    of day minus the recording's, wrapped into [-12 h, 12 h).
    """
    if all(_NUMBER.match(v) for v in values):
        return np.array([float(v) for v in values]), 0.0
    if all(_CLOCK.match(v) for v in values):
        clock = np.array([_clock_seconds(v) for v in values])
        wraps = np.concatenate([[0], np.cumsum(np.diff(clock) < -DAY_S / 2)])  # past midnight
        onsets = clock + wraps * DAY_S - clock[0]
        if recording_start is None:
            return onsets, 0.0
        start_of_day = (
            recording_start.hour * 3600.0
            + recording_start.minute * 60.0
            + recording_start.second
            + recording_start.microsecond / 1e6
        )
        offset = (clock[0] - start_of_day + DAY_S / 2) % DAY_S - DAY_S / 2
        return onsets, offset
    stamps = [_iso(v) for v in values]
    if all(s is not None for s in stamps):
        if len({s.tzinfo is None for s in stamps}) > 1:
            raise HypnogramError(path, "onsets mix date-times with and without a time zone")
        onsets = np.array([(s - stamps[0]).total_seconds() for s in stamps])
        if recording_start is None:
            return onsets, 0.0
        first = stamps[0]
        if (first.tzinfo is None) != (recording_start.tzinfo is None):
            first = first.replace(tzinfo=recording_start.tzinfo)
        return onsets, (first - recording_start).total_seconds()
    bad = next((v for v in values if not _is_time(v)), None)
    if bad is None:
        raise HypnogramError(path, "onsets mix seconds and clock times; use one kind")
    raise HypnogramError(
        path, f"onset {excerpt(bad)} is neither seconds nor a clock time (hh:mm:ss)"
    )
