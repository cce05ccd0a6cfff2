"""Night-level tasks (age, sex, AHI, binary outcomes) and their targets from metadata tables."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import InputFileError, S2VError
from s2v_core.io.text_limits import (
    MAX_TABLE_BYTES,
    check_file_size,
    check_table_cells,
    clip_message,
)
from s2v_core.sanitize.cells import read_csv

__all__ = [
    "NightHeadError",
    "TaskSpec",
    "binary_values",
    "join_metadata",
    "labelled_rows",
    "parse_task",
    "task_targets",
]

log = logging.getLogger(__name__)
_TRUE = frozenset({"1", "1.0", "yes", "y", "true", "t"})
_FALSE = frozenset({"0", "0.0", "no", "n", "false", "f"})
_ID_COLUMNS = ("night", "night_id", "record", "recording", "file")
_SUBJECT_COLUMNS = ("subject", "subject_id", "participant", "patient", "nsrrid", "pptid")
_META_COLUMNS = ("night", "subject", "site", "age", "sex", "ahi", "split")


class NightHeadError(S2VError):
    """A night-level task cannot be set up, trained or applied; the message says why."""


# --- tasks and targets ----------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSpec:
    """A night-level task.

    Attributes
    ----------
    name : str
        ``age``, ``sex``, ``ahi`` or ``outcome:COLUMN``.
    kind : str
        ``"regression"`` or ``"binary"``.
    column : str
        Metadata column holding the target.
    """

    name: str
    kind: str
    column: str

    @property
    def log_target(self) -> bool:
        """The head is fitted on ``log1p`` of the target (AHI)."""
        return self.name == "ahi"

    @property
    def label(self) -> str:
        """Short name used in output columns (``age``, ``sex``, ``ahi`` or the column)."""
        return self.column if self.name.startswith("outcome:") else self.name


def parse_task(text: str) -> TaskSpec:
    """``"age"``, ``"sex"``, ``"ahi"`` or ``"outcome:COLUMN"`` -> :class:`TaskSpec`."""
    t = (text or "").strip()
    low = t.lower()
    if low in ("age", "ahi"):
        return TaskSpec(low, "regression", low)
    if low == "sex":
        return TaskSpec("sex", "binary", "sex")
    if low.startswith("outcome:"):
        col = t.split(":", 1)[1].strip()
        if not col:
            raise NightHeadError("outcome:COLUMN needs a column name, e.g. outcome:hypertension")
        return TaskSpec(f"outcome:{col}", "binary", col)
    raise NightHeadError(f"unknown task {text!r}; allowed: age, sex, ahi, outcome:COLUMN")


def binary_values(values: Iterable[Any], column: str) -> np.ndarray:
    """A column of 0/1, yes/no, true/false (y/n, t/f; any case) -> float 1/0, NaN if blank.

    Raises
    ------
    NightHeadError
        Any other value: the message lists what the column holds.
    """
    out, bad = [], []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(math.nan)
            continue
        if isinstance(v, bool | np.bool_):
            out.append(float(v))
            continue
        text = str(v).strip().lower()
        if text in ("", "nan", "na", "none"):
            out.append(math.nan)
        elif text in _TRUE:
            out.append(1.0)
        elif text in _FALSE:
            out.append(0.0)
        else:
            out.append(math.nan)
            bad.append(str(v))
    if bad:
        shown = ", ".join(repr(b) for b in sorted(set(bad))[:6])
        raise NightHeadError(
            f"column {column!r} is not binary: it holds {shown}"
            f"{' ...' if len(set(bad)) > 6 else ''}; allowed values: 0/1, yes/no, true/false"
        )
    return np.asarray(out, dtype=float)


def task_targets(frame: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Target per row of ``frame`` (NaN where unknown): years, events/h, or 1/0.

    Raises
    ------
    NightHeadError
        A missing column, non-numeric or negative values, or a non-binary outcome column.
    """
    if task.column not in frame.columns:
        have = [c for c in frame.columns if not c.startswith("emb_")]
        raise NightHeadError(
            f"no {task.column!r} column in the night metadata (columns: {', '.join(have)}); "
            "give a table with it through --metadata"
        )
    col = frame[task.column]
    if task.name == "sex":
        sex = col.astype(object).map(lambda v: str(v).strip().upper() if isinstance(v, str) else v)
        bad = sorted({str(v) for v in sex if isinstance(v, str) and v not in ("M", "F", "")})
        if bad:
            raise NightHeadError(f"sex must be M or F (blank: unknown), found {', '.join(bad[:5])}")
        return np.array([1.0 if v == "M" else 0.0 if v == "F" else math.nan for v in sex])
    if task.kind == "binary":
        return binary_values(col.tolist(), task.column)
    y = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad = col[np.isnan(y) & col.notna() & (col.astype(str).str.strip() != "")]
    if len(bad):
        raise NightHeadError(
            f"column {task.column!r} must be numeric, found {', '.join(map(repr, bad[:5]))}"
        )
    if np.nanmin(y, initial=0.0) < 0:
        raise NightHeadError(f"column {task.column!r} has negative values")
    return y


def join_metadata(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Add (or overwrite) columns from a CSV, joined by night id or, failing that, by subject.

    The id column is the first of night, night_id, record, recording, file (case-insensitive);
    without one, the first of subject, subject_id, participant, patient, nsrrid, pptid. Blank
    cells do not overwrite known values.
    """
    p = Path(path)
    try:
        check_file_size(p, MAX_TABLE_BYTES, "tables", hypnogram=False)
        table = read_csv(p, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(p, f"cannot read the metadata table: {clip_message(exc)}") from None
    check_table_cells(p, table)  # s2v_core.io.text_limits
    lower = {c.strip().lower(): c for c in table.columns}
    key = next((lower[c] for c in _ID_COLUMNS if c in lower), None)
    on = "night"
    if key is None:
        key, on = next((lower[c] for c in _SUBJECT_COLUMNS if c in lower), None), "subject"
    if key is None:
        raise InputFileError(
            p, "no id column: expected one of " + ", ".join(_ID_COLUMNS + _SUBJECT_COLUMNS)
        )
    table[key] = table[key].astype(str).str.strip()
    if table[key].duplicated().any():
        dup = table.loc[table[key].duplicated(), key].iloc[0]
        raise InputFileError(p, f"id {dup!r} appears more than once in column {key!r}")
    table = table.set_index(key)
    out = frame.copy()
    ids = out[on].astype(str)
    matched = ids.isin(table.index)
    if not matched.any():
        raise InputFileError(p, f"no row matches a {on} of the nights (column {key!r})")
    for col in table.columns:
        name = col.strip()
        canon = name.lower() if name.lower() in _META_COLUMNS else name
        vals = ids.map(table[col]).where(matched)
        vals = vals.where(vals.astype(str).str.strip() != "")
        if canon in ("age", "ahi"):
            vals = pd.to_numeric(vals, errors="coerce")
        if canon in out.columns:
            out[canon] = vals.where(vals.notna(), out[canon])
        else:
            out[canon] = vals
    return out


def labelled_rows(frame: pd.DataFrame, task: TaskSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with a known target, and the targets; checks there is something to learn."""
    y = task_targets(frame, task)
    keep = np.isfinite(y)
    rows, y = frame.loc[keep].reset_index(drop=True), y[keep]
    rows["subject"] = rows["subject"].where(rows["subject"].notna(), rows["night"]).astype(str)
    if len(rows) < 4:
        raise NightHeadError(
            f"task {task.name}: only {len(rows)} night(s) with a known {task.column}; need >= 4"
        )
    subjects = rows["subject"].to_numpy()
    if task.kind == "binary":
        names = ("M", "F") if task.name == "sex" else ("positive (1)", "negative (0)")
        for c, name in zip((1.0, 0.0), names, strict=True):
            n = len(np.unique(subjects[y == c]))
            if n < 2:
                raise NightHeadError(
                    f"task {task.name}: {n} subject(s) with {task.column} {name}; both classes "
                    "need >= 2 subjects for a subject-level evaluation"
                )
    elif np.std(y) == 0:
        raise NightHeadError(f"task {task.name}: every night has the same {task.column}")
    return rows, y
