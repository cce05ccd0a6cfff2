"""WFDB header files (``record.hea``): the record line, the signal lines and the comments.

One bounded parser for every reader of a WFDB record (:mod:`s2v_core.io.wfdb_beats` for beat
annotations, :mod:`s2v_core.io.hypnogram.wfdb_stages` for slpdb stages). It reads at most
:data:`MAX_HEADER_BYTES` and nothing else of the record.

Record line (PhysioNet WFDB header format)::

    name[/n_segments] n_signals [fs[/counter_freq[(base_counter)]] [n_samples [hh:mm:ss [dd/mm/yyyy]]]]

Why not ``wfdb.rdheader``
-------------------------
wfdb 4.3.1's ``rdheader`` was measured on the same inputs (tests/test_library_review.py):

* it refuses one of the twelve slpdb headers: ``slp32.hea`` writes its date as ``20/7/89`` and
  rdheader raises ``ValueError: time data '20/7/89' does not match format '%d/%m/%Y'``; this
  parser reads the two-digit year (``%y``: 1989);
* when the rate field is malformed (``nan``, ``-250``) it silently returns the WFDB default of
  250 Hz, and it reads ``1e-06`` as 1 Hz; a wrong rate moves every beat in time, so this
  parser refuses a malformed rate (:class:`~s2v_core.errors.InputFileError`) and uses 250 Hz
  only where the field is absent, as the format says;
* it reads the whole file: a 100-MB header (a comment line) took 290 ms and 300 MiB; this parser
  refuses a header over 1 MiB after reading 1 MiB;
* it is slower (about 2 ms vs 0.06 ms per slpdb header; immaterial) and its module import costs
  0.36 s, which is why wfdb stays a lazy import here.

The twelve slpdb headers give the same rate, length, start and comments with both parsers,
except slp32 (rdheader fails) and slp67x (no date: both give the time of day, no date).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from s2v_core.errors import InputFileError

__all__ = [
    "DEFAULT_FS",
    "MAX_HEADER_BYTES",
    "WfdbHeader",
    "read_wfdb_header",
]

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 2**20
"""Largest header accepted (1 MiB): a 256-channel header with comments is under 40 kB."""
DEFAULT_FS = 250.0
"""Rate the WFDB format assumes when the record line gives none, Hz."""


@dataclass(frozen=True)
class WfdbHeader:
    """What a WFDB header declares; nothing is checked against limits here (callers do)."""

    path: Path
    """The ``.hea`` file."""
    record_name: str
    """Record name from the record line (without ``/n_segments``)."""
    n_signals: int
    """Number of signals the record line declares."""
    fs: float
    """Frame rate in Hz: finite and positive (:data:`DEFAULT_FS` when the header omits it)."""
    sig_len: int | None
    """Samples per signal; None when the header omits it (or writes 0)."""
    base_time: time | None
    """Time of day of the first sample, when the header gives a valid one."""
    base_date: date | None
    """Date of the first sample, when the header gives a valid one."""
    comments: tuple[str, ...]
    """Comment lines without the leading ``#``, stripped."""
    signal_lines: tuple[tuple[str, ...], ...]
    """Tokens of each non-comment line after the record line (signal or segment lines)."""
    time_problem: str | None = None
    """Why a start time or date present in the header could not be read (None when fine)."""

    @property
    def start(self) -> datetime | None:
        """Date and time of the first sample; None without a valid date."""
        if self.base_date is None:
            return None
        return datetime.combine(self.base_date, self.base_time or time(0))


def _parse_clock(text: str) -> time:
    """``hh:mm:ss[.sss]``, ``mm:ss`` or ``ss`` -> time; ValueError when out of range."""
    parts = [float(p) for p in text.split(":")]
    if len(parts) > 3 or not all(math.isfinite(p) and p >= 0 for p in parts):
        raise ValueError(f"unrecognised time {text!r} (expected hh:mm:ss)")
    while len(parts) < 3:
        parts.insert(0, 0.0)
    hours, minutes, seconds = parts
    micro = int(round((seconds % 1) * 1e6))
    return time(int(hours), int(minutes), int(seconds), min(micro, 999_999))


def _parse_date(text: str) -> date:
    """``dd/mm/yyyy`` or ``dd/mm/yy`` (slpdb's ``20/7/89``: 1989) -> date."""
    for fmt in ("%d/%m/%Y", "%d/%m/%y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"unrecognised date {text!r} (expected dd/mm/yyyy)")


def _parse_fs(path: Path, token: str) -> float:
    """Frame rate from ``fs[/counter_freq[(base_counter)]]``; refuses anything but a positive number."""
    text = re.split(r"[/(]", token, maxsplit=1)[0]
    try:
        fs = float(text)
    except ValueError:
        fs = math.nan
    if not (math.isfinite(fs) and fs > 0):
        raise InputFileError(path, f"WFDB header has no valid sampling rate ({token[:40]!r})")
    return fs


def read_wfdb_header(path: str | Path) -> WfdbHeader:
    """Parse a WFDB ``.hea`` file.

    Parameters
    ----------
    path : str or Path
        The header file.

    Returns
    -------
    WfdbHeader
        A start time or date that cannot be read leaves ``base_time``/``base_date`` None and
        says why in ``time_problem``: each caller decides whether that is an error.

    Raises
    ------
    InputFileError
        The file cannot be read, is over :data:`MAX_HEADER_BYTES`, has no record line, or its
        record line has a malformed signal count, rate or length.

    Examples
    --------
    >>> h = read_wfdb_header("../shared/data/slpdb/slp32.hea")  # doctest: +SKIP
    >>> h.fs, h.sig_len, h.start  # doctest: +SKIP
    (250.0, 4800000, datetime.datetime(1989, 7, 20, 1, 5, 30))
    """
    path = Path(path)
    problem = "cannot read the WFDB header"
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_HEADER_BYTES + 1)
    except OSError as err:
        raise InputFileError(path, f"{problem}: {err}") from err
    if len(raw) > MAX_HEADER_BYTES:
        raise InputFileError(
            path, f"{problem}: the file is over {MAX_HEADER_BYTES // 2**20} MiB, far larger than any WFDB header"
        )
    lines = raw.decode("latin-1").splitlines()
    comments = tuple(ln.strip()[1:].strip() for ln in lines if ln.strip().startswith("#"))
    records = [ln.split() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not records or len(records[0]) < 2:
        raise InputFileError(path, f"{problem}: no record line ('name n_signals [fs [n_samples ...]]')")
    tokens = records[0]
    try:
        n_signals = int(tokens[1])
        sig_len = int(tokens[3]) if len(tokens) > 3 else None
    except ValueError as err:
        raise InputFileError(path, f"{problem}: malformed record line: {err}") from None
    if n_signals < 0 or (sig_len is not None and sig_len < 0):
        raise InputFileError(path, f"{problem}: negative signal count or length in the record line")
    fs = _parse_fs(path, tokens[2]) if len(tokens) > 2 else DEFAULT_FS
    base_time = base_date = None
    time_problem = None
    try:
        base_time = _parse_clock(tokens[4]) if len(tokens) > 4 else None
        base_date = _parse_date(tokens[5]) if len(tokens) > 5 else None
    except ValueError as err:
        base_time = base_date = None
        time_problem = f"unreadable start {' '.join(tokens[4:6])!r} ({err})"
        log.info("%s: start not read (%s)", path, err)
    return WfdbHeader(
        path=path,
        record_name=tokens[0].split("/")[0],
        n_signals=n_signals,
        fs=fs,
        sig_len=sig_len or None,
        base_time=base_time,
        base_date=base_date,
        comments=comments,
        signal_lines=tuple(tuple(r) for r in records[1:]),
        time_problem=time_problem,
    )
