"""Reading a hypnogram file of any supported format: detection, parsing, trimming to the night."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from s2v_core.errors import HypnogramError
from s2v_core.io.hypnogram.core import NO_START, Hypnogram, hypnogram_from_annotations
from s2v_core.io.hypnogram.formats import (
    read_edf_annotations,
    read_edf_header,
    read_nsrr_xml,
    read_profusion_xml,
    root_tag,
)
from s2v_core.io.hypnogram.grid import EPOCH_S, regrid_stages
from s2v_core.io.hypnogram.labels import CODE_TABLES
from s2v_core.io.hypnogram.text import read_dreams, read_table
from s2v_core.io.hypnogram.wfdb_stages import read_wfdb_stages
from s2v_core.io.text_limits import excerpt, excerpts

__all__ = ["FORMATS", "detect_format", "read_hypnogram", "trim_to_sleep_period"]

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "sleep-edf": "EDF+ file holding only annotations (Sleep-EDF *-Hypnogram.edf: 'Sleep stage W/1/2/3/4/R/?')",
    "edf-annotations": "stage annotations inside an EDF+ recording (other annotations become events)",
    "nsrr-xml": "NSRR XML (<PSGAnnotation> with 'Stages|Stages' scored events)",
    "profusion-xml": "Compumedics Profusion XML (<CMPStudyConfig> with one <SleepStage> per epoch)",
    "csv": "CSV/TSV/TXT: one stage per row, or onset, duration, label columns",
    "dreams": "DREAMS text: '[Hypnogram]' then one code per 5 s (5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4)",
    "wfdb": "WFDB stage annotations (.st, MIT-BIH slpdb): aux note 'STAGE [EVENTS...]'",
}
"""Supported hypnogram formats: key -> short description."""

_XML_ROOTS = {"PSGAnnotation": "nsrr-xml", "CMPStudyConfig": "profusion-xml"}
_TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".tab", ".dat", ""}


def _supported() -> str:
    return "supported formats: " + ", ".join(FORMATS)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise HypnogramError(path, "file not found")
    if path.is_dir():
        raise HypnogramError(path, "is a folder, not a hypnogram file")
    if path.stat().st_size == 0:
        raise HypnogramError(path, "empty file")


def detect_format(path: str | Path) -> str:
    """Tell the hypnogram format of a file from its extension and content.

    Looks at the EDF header (annotation-only EDF+ -> "sleep-edf", EDF+ with signals ->
    "edf-annotations"), the XML root tag, a ``[Hypnogram]`` first line (DREAMS), the WFDB
    ``.st`` extension, and otherwise takes readable text for a CSV/TSV/TXT table.

    Parameters
    ----------
    path : str or Path
        The hypnogram file.

    Returns
    -------
    str
        A key of :data:`FORMATS`.

    Raises
    ------
    HypnogramError
        If the file is missing, empty, or not in a supported format.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".st":
        return "wfdb"
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"0       "):
        header = read_edf_header(path)
        if header is not None:
            if not header.has_annotations:
                raise HypnogramError(
                    path,
                    "EDF file without an 'EDF Annotations' signal: it holds no scored stages "
                    f"(signals: {excerpts(header.labels, 8, 16)})",
                )
            return "sleep-edf" if header.annotations_only else "edf-annotations"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<"):
        root = root_tag(path)
        if root in _XML_ROOTS:
            return _XML_ROOTS[root]
        raise HypnogramError(
            path,
            f"XML with root <{root if len(root) <= 24 else excerpt(root, 24, length=False)}> is not a known "
            "hypnogram (NSRR <PSGAnnotation> or "
            f"Compumedics <CMPStudyConfig>); {_supported()}",
        )
    if b"\x00" in head or suffix in {".edf", ".bdf", ".rec", ".xml"}:
        raise HypnogramError(path, f"not a hypnogram file (unrecognised content); {_supported()}")
    first_line = stripped.split(b"\n", 1)[0].strip().lower()
    if first_line == b"[hypnogram]":
        return "dreams"
    if suffix in _TEXT_SUFFIXES or _mostly_text(head):
        return "csv"
    raise HypnogramError(path, f"not a hypnogram file (unrecognised content); {_supported()}")


def _mostly_text(head: bytes) -> bool:
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable >= 0.95 * len(head)


def read_hypnogram(
    path: str | Path,
    fmt: str = "auto",
    *,
    epoch_seconds: float | None = None,
    recording_start: datetime | None = None,
    codes: str = "auto",
) -> Hypnogram:
    """Read a hypnogram file into 30-s project stage codes.

    Parameters
    ----------
    path : str or Path
        Hypnogram file (for WFDB, the ``.st`` file; its ``.hea`` must sit beside it).
    fmt : str
        A key of :data:`FORMATS`, or "auto" to call :func:`detect_format`.
    epoch_seconds : float, optional
        Epoch length of per-epoch CSV/TXT files scored in other than 30-s epochs (e.g. 20
        or 5 s legacy scoring) and of DREAMS files (default 5). Ignored, with a warning,
        by formats that state their own timing.
    recording_start : datetime, optional
        Start of the signal recording. When the file carries its own absolute start
        (EDF+ header, WFDB header with a date, CSV clock times), the stages are shifted so
        that epoch 0 starts at ``recording_start``; scoring before it is dropped (warned).
    codes : {"auto", "project", "rk"}
        How integer stage labels in CSV/EDF files are read: "project" (0..4 with REM = 4),
        "rk" (R&K/NSRR: 4 = S4 -> N3, 5 = REM, 9 = unscored), or "auto" = project codes
        when no code is above 4, otherwise R&K with a warning.

    Returns
    -------
    Hypnogram
        ``stages`` is ``(n_epochs,)`` int8 with epoch 0 at the recording start.

    Raises
    ------
    HypnogramError
        For any unreadable, unknown or inconsistent file; the message names the file.
    """
    path = Path(path)
    _check_file(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise HypnogramError(
            path, f"unknown format {fmt!r}; use 'auto' or one of: {', '.join(FORMATS)}"
        )
    if codes not in CODE_TABLES:
        raise HypnogramError(path, f"codes must be one of {', '.join(CODE_TABLES)}, got {codes!r}")
    if epoch_seconds is not None and not epoch_seconds > 0:
        raise HypnogramError(path, f"epoch_seconds must be positive, got {epoch_seconds!r}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    log.info("reading %s as %s", path, fmt)
    extra: list[str] = []
    if epoch_seconds is not None and fmt not in {"csv", "dreams"}:
        extra.append(
            f"epoch_seconds={epoch_seconds:g} is ignored: {fmt} files state their own timing"
        )
    if fmt in {"sleep-edf", "edf-annotations"}:
        hyp = read_edf_annotations(path, fmt, recording_start=recording_start, codes=codes)
    elif fmt == "nsrr-xml":
        hyp = read_nsrr_xml(path, codes=codes)
    elif fmt == "profusion-xml":
        hyp = read_profusion_xml(path)
    elif fmt == "dreams":
        hyp = read_dreams(path, epoch_seconds=epoch_seconds)
    elif fmt == "wfdb":
        hyp = read_wfdb_stages(path, recording_start=recording_start)
    else:
        hyp = read_table(
            path, epoch_seconds=epoch_seconds, codes=codes, recording_start=recording_start
        )
    hyp.warnings[:0] = extra
    # Files without an absolute start time are, by each format's convention, timed from the
    # recording start: that is expected, not worth a warning.
    if NO_START in hyp.warnings:
        log.debug("%s: %s", path.name, NO_START)
        hyp.warnings = [w for w in hyp.warnings if w != NO_START]
    for message in hyp.warnings:
        log.info("%s: %s", path.name, message)
    return hyp


def trim_to_sleep_period(hyp: Hypnogram, pad_minutes: float = 30.0) -> tuple[Hypnogram, int]:
    """Keep the night: from ``pad_minutes`` before the first sleep epoch to as long after the last.

    Sleep-EDF hypnograms span ~24 h, mostly wake; the usual practice keeps 30 min of wake
    on each side of the sleep period.

    Parameters
    ----------
    hyp : Hypnogram
        A hypnogram on the 30-s grid.
    pad_minutes : float
        Wake kept on each side, in minutes.

    Returns
    -------
    hypnogram : Hypnogram
        The trimmed hypnogram (event onsets shifted to its new epoch 0).
    first_epoch : int
        Index in ``hyp`` of the first epoch kept (the trimmed epoch 0 starts at
        ``first_epoch * 30`` s of the recording).
    """
    if pad_minutes < 0:
        raise ValueError(f"pad_minutes must be >= 0, got {pad_minutes}")
    asleep = np.flatnonzero(hyp.stages > 0)
    if asleep.size == 0:
        return replace(hyp, warnings=[*hyp.warnings, "no sleep epochs: nothing trimmed"]), 0
    pad = int(round(pad_minutes * 60.0 / EPOCH_S))
    first = max(0, int(asleep[0]) - pad)
    stop = min(hyp.n_epochs, int(asleep[-1]) + 1 + pad)
    events = hyp.events
    if events is not None and len(events):
        shifted = events.assign(onset_s=events["onset_s"] - first * EPOCH_S)
        inside = (shifted["onset_s"] + shifted["duration_s"].fillna(0) >= 0) & (
            shifted["onset_s"] < (stop - first) * EPOCH_S
        )
        events = shifted[inside].reset_index(drop=True)
    note = f"trimmed to the sleep period: kept epochs {first}..{stop - 1} of {hyp.n_epochs}"
    trimmed = replace(
        hyp, stages=hyp.stages[first:stop].copy(), warnings=[*hyp.warnings, note], events=events
    )
    return trimmed, first


__all__ = [
    "FORMATS",
    "Hypnogram",
    "HypnogramError",
    "detect_format",
    "hypnogram_from_annotations",
    "read_hypnogram",
    "regrid_stages",
    "trim_to_sleep_period",
]
