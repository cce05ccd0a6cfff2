"""What a user-supplied text table may hold: hypnograms and metadata CSVs (issue 16).

A hypnogram is small: a 72-h night has 8,640 30-s epochs. Before these limits a single 2 MB
label in a CSV hypnogram took 44 s and 4.3 GB (every label was copied into a fixed-width numpy
string array as wide as the longest one) and was quoted whole in the error message; a CSV
field over 128 KB ended in ``_csv.Error``; and the XML check for entity declarations looked at
the first 64 KB only. So every reader of a hypnogram or a metadata table checks, before the
expensive work, the file's size, its number of rows or annotations, the length of each label
and field, and (XML) its element count and depth, and refuses with one line
(:class:`~s2v_core.errors.HypnogramError` for hypnograms, :class:`~s2v_core.errors.InputFileError`
for tables) that quotes at most :data:`EXCERPT_CHARS` characters of the file, escaped.

The limits, and why these values
--------------------------------
All derive from the longest night any reader accepts, :data:`s2v_core.limits.bounds.MAX_RECORDING_HOURS`
(72 h): 8,640 epochs of 30 s, 259,200 seconds.

:data:`MAX_TEXT_ROWS` = 259,200
    Rows of a CSV/TSV/TXT or DREAMS hypnogram: one row per second of a 72-h night, the finest
    scoring any format uses (DREAMS: one code per 5 s), 30 times a per-epoch file. Reading
    that many rows takes about 3 s.
:data:`MAX_ANNOTATIONS` = 100,000
    Annotations of an EDF+ file, scored events or stages of an XML file, WFDB annotations: the
    8,640 epochs of a 72-h night plus over 20 events per minute of it (a heavy night has a few
    thousand). pyedflib and wfdb build per-annotation Python objects (about 25 us and 1.5 kB
    each), so this also bounds their time and memory.
:data:`MAX_LABEL_CHARS` = 512
    One stage or event label: the longest annotation text edflib (EDFbrowser, pyedflib) reads
    or writes. Real labels are under 40 characters ("Sleep stage W", "Obstructive
    apnea|Obstructive Apnea"); technician notes in EDF+ files rarely pass 100. In EDF+
    annotations it is counted in UTF-8 bytes (the file's own unit).
:data:`MAX_FIELD_CHARS` = 8,192
    Any other field: a line of a text hypnogram, a CSV cell, the text or an attribute of an XML
    element. Room for a comment column or a fuzzer's 5,000-digit number (which the readers
    handle); far below ``csv``'s own 128 KB field limit, which is therefore never what stops
    a file.
:data:`MAX_TEXT_BYTES` = 33.2 MB
    A text hypnogram file: :data:`MAX_TEXT_ROWS` rows of 128 bytes (a per-second row with an
    ISO date-time, a duration and a label is about 60).
:data:`MAX_WFDB_BYTES` = 16 MB
    A WFDB annotation file: :data:`MAX_ANNOTATIONS` annotations of 160 bytes (sample and code
    bytes plus an aux note; slpdb files use about 10 bytes per 30-s epoch).
:data:`MAX_EDF_ANNOTATION_BYTES` = 64 MiB
    The bytes of the "EDF Annotations" signal of an EDF+ file (counted from its header): 72 h
    of 1-s data records with 256 bytes of annotations each (edflib writes 120). pyedflib and
    MNE hold each text in a numpy array as wide as the longest, so the count and the label
    limits are checked on the raw bytes first.
:data:`MAX_XML_ELEMENTS` = 1,000,000 and :data:`MAX_XML_DEPTH` = 32
    :data:`MAX_ANNOTATIONS` scored events of up to 8 elements, plus one ``<SleepStage>`` per
    epoch, with room to spare; NSRR and Profusion files are 4 to 5 levels deep. The XML file size
    limit stays at 200 MB (:data:`s2v_core.io.hypnogram.formats.MAX_XML_BYTES`, about 2 kB per
    event). Entities and document type declarations are refused anywhere in the file (the XML
    parser is ``defusedxml``'s).
:data:`MAX_TABLE_BYTES` = 64 MiB
    A metadata table (demographics, one row per night): 100,000 nights of 670 bytes each.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import HypnogramError, InputFileError
from s2v_core.limits.bounds import MAX_RECORDING_HOURS, describe_bytes

__all__ = [
    "EXCERPT_CHARS",
    "MAX_ANNOTATIONS",
    "MAX_EDF_ANNOTATION_BYTES",
    "MAX_FIELD_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_TABLE_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_TEXT_ROWS",
    "MAX_WFDB_BYTES",
    "MAX_XML_DEPTH",
    "MAX_XML_ELEMENTS",
    "check_count",
    "check_file_size",
    "check_labels",
    "check_table_cells",
    "clip_message",
    "excerpt",
    "excerpts",
    "read_user_csv",
]

MAX_TEXT_ROWS = MAX_RECORDING_HOURS * 3600
"""Most rows in a text hypnogram: one per second of the longest night (see the module docstring)."""
MAX_ANNOTATIONS = 100_000
"""Most annotations/events in an EDF+, XML or WFDB hypnogram: every epoch of 72 h plus 20 events a minute."""
MAX_LABEL_CHARS = 512
"""Longest stage or event label (edflib's limit); real ones are under 40 characters."""
MAX_FIELD_CHARS = 8192
"""Longest other field: a text-hypnogram line, a CSV cell, an XML element's text or attribute."""
MAX_TEXT_BYTES = MAX_TEXT_ROWS * 128
"""Largest text hypnogram (CSV/TSV/TXT, DREAMS): the most rows at 128 bytes each."""
MAX_WFDB_BYTES = MAX_ANNOTATIONS * 160
"""Largest WFDB annotation file: the most annotations at 160 bytes each."""
MAX_EDF_ANNOTATION_BYTES = 64 * 2**20
"""Largest "EDF Annotations" signal: 72 h of 1-s records with 256 bytes of annotations each."""
MAX_XML_ELEMENTS = 1_000_000
"""Most elements in a hypnogram XML: the most events of 8 elements each, one per epoch, slack."""
MAX_XML_DEPTH = 32
"""Deepest element nesting in a hypnogram XML (NSRR and Profusion files are 4-5 levels deep)."""
MAX_TABLE_BYTES = 64 * 2**20
"""Largest metadata table: 100,000 nights of 670 bytes each."""
EXCERPT_CHARS = 40
"""Most characters of a file's content quoted in a message."""


def excerpt(text: Any, limit: int = EXCERPT_CHARS, *, length: bool = True) -> str:
    """``repr`` of at most ``limit`` characters of ``text`` (control characters escaped).

    Short texts come back as ``repr(text)``; longer ones cut, with their length unless
    ``length`` is false: ``'xxxx...'... (2,000,000 characters)``.
    """
    text = text if isinstance(text, str) else str(text)
    head = text[:limit]
    shown = repr(head)
    while len(shown) > 2 * limit + 2 and len(head) > 1:  # many characters written as escapes
        head = head[: len(head) // 2]
        shown = repr(head)
    if len(head) < len(text):
        shown += f"... ({len(text):,} characters)" if length else "..."
    return shown


def excerpts(texts: Iterable[Any], most: int = 5, limit: int = 24) -> str:
    """``', '``-joined :func:`excerpt` of the first ``most`` texts, each cut at ``limit``."""
    return ", ".join(excerpt(t, limit) for t, _ in zip(texts, range(most), strict=False))


def clip_message(text: Any, limit: int = 120) -> str:
    """A library's error message for ours: one line of at most ``limit`` characters, escaped."""
    text = " ".join(str(text).split())
    shown = repr(text[:limit])[1:-1]
    return shown + ("..." if len(text) > limit else "")


def _error(path: str | Path | None, problem: str, hypnogram: bool) -> InputFileError:
    return HypnogramError(path, problem) if hypnogram else InputFileError(path, problem)


def check_file_size(
    path: str | Path, limit: int, what: str, *, hypnogram: bool = True, size: int | None = None
) -> int:
    """Refuse a file over ``limit`` bytes; returns its size. ``what``: e.g. ``"text hypnograms"``."""
    size = Path(path).stat().st_size if size is None else size
    if size > limit:
        raise _error(
            path,
            f"the file is {describe_bytes(size)}; {what} over {describe_bytes(limit)} are refused",
            hypnogram,
        )
    return size


def check_count(
    path: str | Path | None,
    count: int,
    limit: int,
    what: str,
    *,
    hypnogram: bool = True,
    exact: bool = True,
) -> None:
    """Refuse more than ``limit`` items; ``what`` names them, e.g. ``"rows"``.

    ``exact=False`` when counting stopped at the first item over the limit.
    """
    if count > limit:
        has = f"{count:,}" if exact else f"more than {limit:,}"
        raise _error(
            path,
            f"the file has {has} {what}; more than {limit:,} are refused "
            f"(far more than a {MAX_RECORDING_HOURS}-h night holds)",
            hypnogram,
        )


def check_labels(
    path: str | Path,
    labels: Iterable[Any],
    *,
    limit: int | None = None,
    what: str = "label",
    first: int = 1,
    unit: str = "row",
    hypnogram: bool = True,
) -> None:
    """Refuse a label longer than ``limit`` (default :data:`MAX_LABEL_CHARS`) characters.

    Raises :class:`HypnogramError` (``hypnogram=False``: :class:`InputFileError`); the message
    names the first such label by ``unit`` and number (counted from ``first``) and quotes an
    :func:`excerpt` of it.
    """
    limit = MAX_LABEL_CHARS if limit is None else limit
    for number, label in enumerate(labels, start=first):
        if len(label) > limit:
            raise _error(
                path,
                f"{unit} {number}: a {what} of {len(label):,} characters "
                f"({excerpt(label, length=False)}); {what}s over {limit:,} characters are refused",
                hypnogram,
            )


def check_table_cells(path: str | Path, frame: pd.DataFrame, limit: int | None = None) -> None:
    """Refuse a table with a column name or a cell over ``limit`` (:data:`MAX_FIELD_CHARS`)."""
    limit = MAX_FIELD_CHARS if limit is None else limit
    check_labels(path, [str(c) for c in frame.columns], limit=limit, what="column name",
                 unit="column", hypnogram=False)  # fmt: skip
    if frame.size == 0:
        return
    cells = frame.to_numpy(dtype=object)  # (rows, columns); one pass, not one per column
    lengths = np.fromiter(
        (len(v) if isinstance(v, str) else 0 for v in cells.ravel()), np.int64, cells.size
    )
    if int(lengths.max()) > limit:
        row, col = divmod(int(lengths.argmax()), cells.shape[1])
        raise InputFileError(
            path,
            f"row {row + 1}, column {excerpt(frame.columns[col], 24)}: a field of "
            f"{len(cells[row, col]):,} characters ({excerpt(cells[row, col], length=False)}); "
            f"fields over {limit:,} characters are refused",
        )


_DELIMITERS = ",;\t|"
"""Delimiters a table may use when its reader lets the first line tell (``sep=None``)."""


def _sniff_delimiter(path: Path) -> str:
    """The delimiter of the first line, as pandas' ``sep=None`` sniffs it, but among
    :data:`_DELIMITERS` only (the sniffer would otherwise take any character common on the
    line: ``c`` in a header of ``c``s made a table of 7,000 columns). A comma when the line
    tells nothing (one column)."""
    with open(path, "rb") as fh:
        first = fh.readline(4 * MAX_FIELD_CHARS).decode("utf-8", "replace").lstrip("\ufeff")
    try:
        return csv.Sniffer().sniff(first, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_user_csv(
    path: str | Path, what: str = "CSV", *, limit: int | None = None, **kwargs: Any
) -> pd.DataFrame:
    """``pandas.read_csv`` of a table a user gave, within the limits above.

    Refuses, with one :class:`InputFileError` line, a file over ``limit`` bytes (default
    :data:`MAX_TABLE_BYTES`), a file pandas
    cannot parse (its message clipped, never the file's content) and a cell or column name
    over :data:`MAX_FIELD_CHARS` characters. With ``sep=None`` the delimiter is sniffed from the
    first line among ``, ; tab |``. ``what`` starts the parse-error message:
    ``"cannot read {what}: ..."``.
    """
    path = Path(path)
    try:
        check_file_size(path, MAX_TABLE_BYTES if limit is None else limit, "tables", hypnogram=False)
        if "sep" in kwargs and kwargs["sep"] is None:
            kwargs["sep"] = _sniff_delimiter(path)
        frame = pd.read_csv(path, **kwargs)
    except InputFileError:
        raise
    except (csv.Error, pd.errors.ParserError) as exc:
        problem = clip_message(exc)
        if "field larger than field limit" in problem:
            problem = (
                f"a field is over {csv.field_size_limit():,} characters; fields over "
                f"{MAX_FIELD_CHARS:,} characters are refused"
            )
        raise InputFileError(path, f"cannot read {what}: {problem}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # EmptyDataError is a ValueError
        raise InputFileError(path, f"cannot read {what}: {clip_message(exc)}") from None
    check_table_cells(path, frame)
    return frame
