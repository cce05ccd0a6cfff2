"""Which hypnogram goes with a recording (by name, one rule per layout), and does it belong to it?

Pairing by name
---------------
A folder of recordings (``s2v prepare``, ``s2v evaluate``, ``s2v embed``) pairs each recording
with a hypnogram beside it by :func:`hypnogram_for`; the first rule of the table that finds a file
wins, and a file that is itself a recording (a DREAMS signal text) is never taken. A
``metadata.csv`` with ``psg_file`` and ``hypnogram_file`` columns overrides every rule.

=========  ==========================================  ============================================
layout     recording                                   its hypnogram (first one found)
=========  ==========================================  ============================================
WFDB       ``slp01a.hea`` with ``.dat``/``.ecg``       ``slp01a.st``, read with the record
Sleep-EDF  ``SC4001E0-PSG.edf``                        ``SC4001E?-Hypnogram.edf`` (same 7 first
                                                       characters, one file)
DREAMS     ``excerpt3.txt``, ``excerpt3.edf``          ``Hypnogram_excerpt3.txt``,
                                                       ``HypnogramAASM_<stem>.txt``,
                                                       ``HypnogramR&K_<stem>.txt``
BIDS       ``sub-01_task-sleep_eeg.edf`` (any format)  ``sub-01_task-sleep_events.tsv`` (the
                                                       entities, ``_events.tsv``)
NSRR       ``shhs1-200001.edf``                        ``shhs1-200001-nsrr.xml``,
                                                       ``shhs1-200001-profusion.xml``
any other  ``night.edf``, ``night.fif``, ...           ``night-Hypnogram.edf``, ``night.xml``,
                                                       ``night.csv``, ``night.tsv``,
                                                       ``night_hypnogram.csv``/``.tsv``/``.txt``,
                                                       ``night.txt``, ``night.st``
=========  ==========================================  ============================================

An NSRR download tree (``polysomnography/edfs`` + ``annotations-events-nsrr``) is paired by
:mod:`s2v_core.cohort.nsrr`, a BIDS tree (``sub-*/[ses-*/]eeg/``) by the same BIDS row.

Checking the pair
-----------------
Whether a hypnogram given with a recording (by name, or by the user) belongs to it: dates and
scored span, checked.

A hypnogram of another recording (another subject, another night of a Sleep-EDF series) used to
be shifted onto the recording by its header date and then padded or trimmed: the result was
either a refusal that asked whether "the onsets are in seconds", or, with ``allow_mismatch`` (as
in the app), a night whose epochs were all unscored or scored by another night. Here the
hypnogram is read on its own time base first and compared with the recording:

* **start dates**: both files state an absolute start and they are more than
  :data:`MAX_START_GAP_S` (24 h) apart. A recording and its own scoring start within minutes of
  each other; a Sleep-EDF hypnogram spans about a day, so a day is the most that can still be
  the same session (time-zone slips are hours). Anything further apart is another recording.
* **scored span**: none of the hypnogram's scored epochs falls inside the recording, or more of
  them fall outside it than inside (:data:`MAX_OUTSIDE_FRACTION`), or more than
  :data:`MAX_OUTSIDE_S` (1 h) of scoring falls outside it. A short recording with a long
  hypnogram is caught by the fraction, a long night whose hypnogram runs hours past its end by
  the hour.

A mismatch raises :class:`HypnogramMismatchError`, naming both dates, unless ``allow_mismatch``;
then the scoring is used anyway (dates too far apart are ignored: epoch 0 of the hypnogram is
put at the recording start) and the problem is kept as a warning starting with
:data:`MISMATCH_PREFIX`, which the app shows as an error (:func:`mismatch_problems`).

Examples
--------
>>> hyp = pair_hypnogram("SC4001EC-Hypnogram.edf", 2650, recording_start)  # doctest: +SKIP
>>> hypnogram_for(Path("dreams/excerpt3.edf"))  # doctest: +SKIP
PosixPath('dreams/Hypnogram_excerpt3.txt')
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from s2v_core.errors import HypnogramError
from s2v_core.io.dreams import is_dreams_text
from s2v_core.io.hypnogram import text
from s2v_core.io.hypnogram.core import Hypnogram
from s2v_core.io.hypnogram.formats import read_edf_header
from s2v_core.io.hypnogram.grid import EPOCH_S
from s2v_core.io.hypnogram.reader import read_hypnogram
from s2v_core.io.hypnogram.wfdb_stages import _wfdb_header
from s2v_core.io.wfdb_signals import record_base

__all__ = [
    "MAX_OUTSIDE_FRACTION",
    "MAX_OUTSIDE_S",
    "MAX_START_GAP_S",
    "MISMATCH_PREFIX",
    "HypnogramMismatchError",
    "hypnogram_for",
    "hypnogram_start",
    "is_hypnogram_name",
    "recording_stem",
    "mismatch_problems",
    "pair_hypnogram",
]

log = logging.getLogger(__name__)

MAX_START_GAP_S = 24 * 3600.0
"""Largest difference between the hypnogram's and the recording's start date-times."""
MAX_OUTSIDE_FRACTION = 0.5
"""Largest share of the hypnogram's scored epochs that may fall outside the recording."""
MAX_OUTSIDE_S = 3600.0
"""Largest amount of scoring (seconds) that may fall outside the recording."""
MISMATCH_PREFIX = "does not match the recording: "
"""Start of the warning kept when a mismatched hypnogram is used anyway (``allow_mismatch``)."""
_ALLOW = "--allow-mismatch to score anyway (Python: allow_mismatch=True)"
_DATED = ("sleep-edf", "edf-annotations", "wfdb", "csv")  # formats that can carry a start date


class HypnogramMismatchError(HypnogramError):
    """The hypnogram's dates or scored span do not fit the recording (another recording?)."""


def hypnogram_start(path: str | Path, fmt: str) -> datetime | None:
    """The absolute start date-time a hypnogram file states, or None (no date, or unreadable).

    ``fmt`` is the format key the file was read as (``Hypnogram.format``). EDF+: the header's
    start date and time; WFDB: the record line of the ``.hea`` beside it; CSV: the first onset
    when it is an ISO date-time (clock times without a date give None).
    """
    p = Path(path)
    try:
        if fmt in ("sleep-edf", "edf-annotations"):
            header = read_edf_header(p)
            return None if header is None else header.start
        if fmt == "wfdb":
            return _wfdb_header(Path(str(p.with_suffix("")) + ".hea"))[1]
        if fmt == "csv":
            return _table_start(p)
    except (OSError, ValueError, HypnogramError) as exc:  # the reader already accepted the file
        log.info("%s: no start date (%s)", p.name, exc)
    return None


def _table_start(path: Path) -> datetime | None:
    rows = text._sniff_rows(text.read_text_lines(path))
    header = rows[0] if rows and text._is_header(rows[0]) else None
    body = rows[1:] if header is not None else rows
    if not body:
        return None
    width = max(max(len(r) for r in body), len(header or []))
    columns = list(zip(*[r + [""] * (width - len(r)) for r in body], strict=True))
    roles = text._column_roles(path, header, columns)
    if "onset" not in roles:
        return None
    return text._iso(columns[roles["onset"]][0])


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def _until(start: datetime, end: datetime) -> str:
    """``2015-10-20 23:00 to 2015-10-21 07:10`` (the end's date only when it differs)."""
    return f"{_when(start)} to {end.strftime('%H:%M') if end.date() == start.date() else _when(end)}"


def _gap(seconds: float) -> str:
    s = abs(seconds)
    if s >= 365.25 * 86400:
        return f"{s / (365.25 * 86400):.1f} years"
    if s >= 2 * 86400:
        return f"{s / 86400:.1f} days"
    return f"{s / 3600:.1f} h"


def _hours(epochs: float) -> str:
    seconds = epochs * EPOCH_S
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _same_zone(a: datetime, b: datetime) -> datetime:
    """``a`` comparable with ``b`` (a missing time zone is taken as ``b``'s, as the readers do)."""
    return a.replace(tzinfo=b.tzinfo) if (a.tzinfo is None) != (b.tzinfo is None) else a


def pair_hypnogram(
    path: str | Path,
    n_epochs: int,
    recording_start: datetime | None,
    *,
    fmt: str = "auto",
    allow_mismatch: bool = False,
) -> Hypnogram:
    """Read ``path`` for a recording of ``n_epochs`` 30-s epochs starting at ``recording_start``.

    Returns the hypnogram aligned to the recording (exactly ``n_epochs`` epochs), as
    ``read_hypnogram(path, fmt, recording_start=...).aligned(n_epochs, ...)`` does, after the
    checks of the module docstring.

    Raises
    ------
    HypnogramMismatchError
        The start dates are more than 24 h apart, or the scored span does not fit the recording
        (see the module docstring), unless ``allow_mismatch``; the message names both dates when
        the files state them.
    HypnogramError
        The file cannot be read, or its length differs from the recording's by more than one
        epoch (unless ``allow_mismatch``).
    """
    own = read_hypnogram(path, fmt)  # on the file's own time base: epoch 0 = its own start
    name = Path(path)
    file_start = hypnogram_start(path, own.format) if own.format in _DATED else None
    rec_end = None if recording_start is None else recording_start + timedelta(seconds=n_epochs * EPOCH_S)
    dates = ""
    if file_start is not None and recording_start is not None:
        file_start = _same_zone(file_start, recording_start)
        gap = (file_start - recording_start).total_seconds()
        dates = f"hypnogram starts {_when(file_start)}, recording {_when(recording_start)}"
        if abs(gap) > MAX_START_GAP_S:
            problem = f"{dates}: {_gap(gap)} apart; is it from another recording?"
            if not allow_mismatch:
                raise HypnogramMismatchError(name, f"{problem} {_ALLOW}")
            note = f"{MISMATCH_PREFIX}{problem} The dates are ignored: its scoring starts at the recording start"
            hyp = own.aligned(n_epochs, allow_mismatch=True)
            hyp.warnings.insert(0, note)
            return hyp
    if recording_start is not None and own.format in _DATED:
        hyp = read_hypnogram(path, own.format, recording_start=recording_start)
    else:
        hyp = own
    total = int(np.count_nonzero(own.stages >= 0))
    inside = int(np.count_nonzero(hyp.stages[:n_epochs] >= 0))
    outside = max(0, total - inside)
    problem = None
    if total and not inside:
        problem = f"none of its {total} scored epochs ({_hours(total)}) falls within the recording"
    elif outside > MAX_OUTSIDE_FRACTION * total or outside * EPOCH_S > MAX_OUTSIDE_S:
        problem = (f"{outside} of its {total} scored epochs ({_hours(outside)}, {outside / total:.0%}) "
                   "fall outside the recording")
    if problem is not None:
        if file_start is not None and rec_end is not None:
            scored = np.flatnonzero(own.stages >= 0)
            first = file_start + timedelta(seconds=float(scored[0]) * EPOCH_S)
            last = file_start + timedelta(seconds=float(scored[-1] + 1) * EPOCH_S)
            problem += (f": the hypnogram scores {_until(first, last)}, the recording runs "
                        f"{_until(recording_start, rec_end)}")
        else:
            problem += (f" (the hypnogram scores {_hours(total)} from its start, the recording lasts "
                        f"{_hours(n_epochs)})")
        problem += "; is it from another recording or night?"
        if not allow_mismatch and not inside:
            raise HypnogramMismatchError(name, f"{problem} {_ALLOW}")
    try:
        aligned = hyp.aligned(n_epochs, allow_mismatch=allow_mismatch)
    except HypnogramError as exc:
        if not dates:
            raise
        raise HypnogramMismatchError(name, f"{dates}; {exc.problem}") from None
    if problem is not None:
        if not allow_mismatch:
            raise HypnogramMismatchError(name, f"{problem} {_ALLOW}")
        aligned.warnings.insert(0, MISMATCH_PREFIX + problem)
    return aligned


def mismatch_problems(warnings: Iterable[str]) -> list[str]:
    """The mismatch messages among a night's warnings (``"hypnogram: does not match ..."``)."""
    out = []
    for w in warnings:
        text = w.removeprefix("hypnogram: ")
        if text.startswith(MISMATCH_PREFIX):
            out.append(text[len(MISMATCH_PREFIX):])
    return out


# --- pairing by name --------------------------------------------------------------------------
_SLEEP_EDF = re.compile(r"^(?P<code>[A-Z]{2}\d{4}[A-Z])[0-9A-Z]-PSG$")
_BIDS = re.compile(r"^(?P<entities>sub-[A-Za-z0-9]+(?:_[A-Za-z]+-[A-Za-z0-9]+)*)_[A-Za-z0-9]+$")
_COMPOUND_SUFFIXES = (".fif.gz",)
_GENERIC = ("-Hypnogram.edf", ".xml", ".csv", ".tsv", "_hypnogram.csv", "_hypnogram.tsv", "_hypnogram.txt",
            ".txt", ".st")  # fmt: skip


def recording_stem(path: str | Path) -> str:
    """The file name without its format suffix (``night.fif.gz`` -> ``night``)."""
    name = Path(path).name
    for suffix in _COMPOUND_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def is_hypnogram_name(path: str | Path) -> bool:
    """Named as a hypnogram by a layout of the table above (never taken for a recording).

    ``*Hypnogram*`` (Sleep-EDF, DREAMS, ours) and BIDS ``*_events.tsv``.
    """
    name = Path(path).name.lower()
    return "hypnogram" in name or name.endswith("_events.tsv")


def _candidates(p: Path) -> list[Path]:
    """Every name the table of the module docstring allows, in the order of its rows."""
    folder, stem = p.parent, recording_stem(p)
    out: list[Path] = []
    sleep_edf = _SLEEP_EDF.match(stem)
    if sleep_edf:
        found = sorted(folder.glob(f"{sleep_edf['code']}?-Hypnogram.edf"))
        if len(found) == 1:
            out += found
        elif found:
            log.info("%s: %d Sleep-EDF hypnograms fit (%s); none taken by that rule", p.name, len(found),
                     ", ".join(f.name for f in found))  # fmt: skip
    out += [folder / f"{prefix}_{stem}.txt" for prefix in ("Hypnogram", "HypnogramAASM", "HypnogramR&K")]
    bids = _BIDS.match(stem)
    if bids:
        out.append(folder / f"{bids['entities']}_events.tsv")
    out += [folder / f"{stem}-nsrr.xml", folder / f"{stem}-profusion.xml"]
    out += [folder / f"{stem}{suffix}" for suffix in _GENERIC]
    return out


def hypnogram_for(recording: str | Path, kind: str = "edf") -> Path | None:
    """The hypnogram beside ``recording`` by the table of the module docstring, or None.

    Parameters
    ----------
    recording : path
        The recording file (for WFDB, any file of the record or its base name).
    kind : str
        Its kind (:data:`s2v_core.recording.registry.KINDS`): a WFDB record's hypnogram is its own
        ``.st``; every other kind follows the rows of the table in order.

    Returns
    -------
    Path or None
        The first file of the table that exists, is not the recording itself and is not a DREAMS
        signal text (``excerpt3.txt`` beside ``excerpt3.edf`` holds samples, not stages).
    """
    p = Path(recording)
    if kind == "wfdb":
        st = record_base(p).with_suffix(".st")
        return st if st.is_file() else None
    for candidate in _candidates(p):
        if candidate.is_file() and candidate != p and not is_dreams_text(candidate):
            return candidate
    return None
