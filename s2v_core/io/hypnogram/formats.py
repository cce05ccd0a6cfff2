"""Readers for binary and XML hypnogram formats: EDF+ annotations, NSRR XML, Profusion XML, WFDB.

Each reader returns a :class:`~s2v_core.io.hypnogram.core.Hypnogram` on the 30-s grid of the
recording; text formats (CSV/TSV/TXT, DREAMS) are in :mod:`s2v_core.io.hypnogram.text`.
EDF+ annotations are read with pyedflib (``EdfReader.readAnnotations``); EDF+D files that
hold signals (which pyedflib refuses) through :func:`s2v_core.io.edf.open_recording`, the same
reader the recording loader uses; when pyedflib refuses any other header (for instance an
annotation-only file, which ``open_recording`` refuses), MNE (``mne.read_annotations``).
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyedflib

from s2v_core.errors import HypnogramError, InputFileError
from s2v_core.io.edf import open_recording
from s2v_core.io.hypnogram.core import (
    NO_START,
    Hypnogram,
    hypnogram_from_annotations,
    hypnogram_from_epochs,
)
from s2v_core.io.hypnogram.grid import EPOCH_S
from s2v_core.io.hypnogram.labels import classify_event
from s2v_core.stages import RK_CODES

log = logging.getLogger(__name__)

MAX_XML_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class EdfHeader:
    """The parts of an EDF/EDF+ header that tell whether and how it holds annotations."""

    labels: tuple[str, ...]  # signal labels, including "EDF Annotations"
    start: datetime | None  # header start date and time (None if unreadable)
    is_edf_plus: bool
    is_discontinuous: bool = False  # EDF+D

    @property
    def has_annotations(self) -> bool:
        return "EDF Annotations" in self.labels

    @property
    def annotations_only(self) -> bool:
        return self.has_annotations and all(lb == "EDF Annotations" for lb in self.labels)


def read_edf_header(path: Path) -> EdfHeader | None:
    """Parse the fixed EDF header; ``None`` when the file is not EDF."""
    with open(path, "rb") as fh:
        head = fh.read(256)
        if len(head) < 256 or head[:8] != b"0       ":
            return None
        try:
            n_signals = int(head[252:256].decode("ascii"))
        except ValueError:
            return None
        if not 0 <= n_signals <= 4096:  # a corrupt count is "not an EDF we can read"
            return None
        labels_raw = fh.read(16 * n_signals)
    # NUL padding read as spaces, as in s2v_core.io.edf and MNE: "EDF Annotations\x00" counts
    labels = tuple(
        labels_raw[16 * i : 16 * i + 16].decode("latin-1").replace("\x00", " ").strip()
        for i in range(n_signals)
    )
    kind = head[192:197]
    return EdfHeader(labels, _edf_start(head), kind in (b"EDF+C", b"EDF+D"), kind == b"EDF+D")


def _edf_start(head: bytes) -> datetime | None:
    try:
        day, month, yy = (int(x) for x in head[168:176].decode("ascii").split("."))
        hour, minute, second = (int(x) for x in head[176:184].decode("ascii").split("."))
    except ValueError:
        return None
    year = 1900 + yy if yy >= 85 else 2000 + yy  # EDF spec's clipping date rule
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def offset_s(
    file_start: datetime | None, recording_start: datetime | None
) -> tuple[float, list[str]]:
    """Seconds from ``recording_start`` to ``file_start`` (0 when either is unknown)."""
    if recording_start is None:
        return 0.0, []
    if file_start is None:
        return 0.0, [NO_START]
    if (file_start.tzinfo is None) != (recording_start.tzinfo is None):
        file_start = file_start.replace(tzinfo=recording_start.tzinfo)
    return (file_start - recording_start).total_seconds(), []


def read_edf_annotations(
    path: Path, fmt: str, *, recording_start: datetime | None = None, codes: str = "auto"
) -> Hypnogram:
    """Sleep-EDF ``*-Hypnogram.edf`` or the annotations of an EDF+ PSG file."""
    header = read_edf_header(path)
    if header is None or not header.has_annotations:
        raise HypnogramError(path, "not an EDF+ file with an 'EDF Annotations' signal")
    onsets, durations, texts = _edf_annotation_arrays(path, header)
    if onsets.size == 0:
        raise HypnogramError(path, "the EDF+ file holds no annotations")
    offset, warnings = offset_s(header.start, recording_start)
    hyp = hypnogram_from_annotations(
        onsets, durations, texts, source=str(path), codes=codes, start_offset_s=offset, fmt=fmt
    )
    hyp.warnings[:0] = warnings
    return hyp


def _edf_annotation_arrays(
    path: Path, header: EdfHeader
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onsets (s), durations (s, NaN = none given) and texts, each of shape (K,)."""
    if header.is_discontinuous and not header.annotations_only:
        return _recording_annotation_arrays(path)
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as err:
        log.info("pyedflib refused %s (%s); reading annotations with MNE", path, err)
        return _mne_annotation_arrays(path)
    try:
        onsets, durations, texts = reader.readAnnotations()
    finally:
        reader.close()
    durations = np.asarray(durations, dtype=float)
    durations[durations < 0] = np.nan  # pyedflib reports a missing duration as -1
    return np.asarray(onsets, dtype=float), durations, np.asarray(texts, dtype=str)


def _mne_annotation_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import mne

    try:
        ann = mne.read_annotations(str(path))
    except Exception as err:  # MNE raises many types for broken headers
        raise HypnogramError(path, f"cannot read the EDF+ annotations: {err}") from err
    return (
        np.asarray(ann.onset, float),
        np.asarray(ann.duration, float),
        np.array([str(d) for d in ann.description], dtype=str),  # MNE may use a StringDType
    )


def _recording_annotation_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EDF+ annotations through :func:`s2v_core.io.edf.open_recording` (EDF+D with signals)."""

    try:
        with open_recording(path) as rec:
            onsets, durations, texts = rec.read_annotations()
    except InputFileError as err:
        raise HypnogramError(path, f"cannot read the EDF+ annotations: {err.problem}") from err
    return onsets, durations, np.array(texts, dtype=str)


def _iter_xml(path: Path) -> Iterator[tuple[str, ET.Element]]:
    """``iterparse`` start/end events with a size guard and readable errors.

    ElementTree never fetches external entities; documents declaring entities are
    refused outright so that no entity expansion can happen.
    """
    size = path.stat().st_size
    if size > MAX_XML_BYTES:
        raise HypnogramError(
            path, f"the XML file is {size / 2**20:.0f} MB; hypnogram XML over 200 MB is refused"
        )
    with open(path, "rb") as fh:
        if b"<!ENTITY" in fh.read(65536):
            raise HypnogramError(path, "XML files that declare entities are not accepted")
    try:
        with open(path, "rb") as fh:
            yield from ET.iterparse(fh, events=("start", "end"))
    except ET.ParseError as err:
        line, column = getattr(err, "position", (0, 0))
        raise HypnogramError(path, f"malformed XML at line {line}, column {column}: {err}") from err
    except (LookupError, ValueError) as err:  # unknown or unsupported encoding declaration
        raise HypnogramError(path, f"unreadable XML (encoding or content): {err}") from None


def _tag(elem: ET.Element) -> str:
    return elem.tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str:
    for child in elem:
        if _tag(child) == name:
            return (child.text or "").strip()
    return ""


def _number(path: Path, text: str, what: str, index: int) -> float:
    if not text:
        raise HypnogramError(path, f"scored event #{index + 1} has no <{what}>")
    try:
        value = float(text)
    except ValueError:
        raise HypnogramError(
            path, f"scored event #{index + 1}: {what} {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise HypnogramError(path, f"scored event #{index + 1}: {what} {text!r} is not finite")
    return value


def root_tag(path: Path) -> str:
    """Tag of the XML root element (raises :class:`HypnogramError` if not well-formed)."""
    for _event, elem in _iter_xml(path):
        return _tag(elem)
    raise HypnogramError(path, "empty XML document")


def read_nsrr_xml(path: Path, *, codes: str = "auto") -> Hypnogram:
    """NSRR ``<PSGAnnotation>`` XML: ``Stages|Stages`` events give stages, the rest events."""
    stage_rows: list[tuple[float, float, str]] = []
    event_rows: list[tuple[float, float, str, str]] = []
    index = 0
    for event, elem in _iter_xml(path):
        if event != "end" or _tag(elem) != "ScoredEvent":
            continue
        etype = _child_text(elem, "EventType")
        concept = _child_text(elem, "EventConcept")
        start = _number(path, _child_text(elem, "Start"), "Start", index)
        duration = _number(path, _child_text(elem, "Duration") or "0", "Duration", index)
        if duration < 0:
            raise HypnogramError(
                path, f"scored event #{index + 1} ({concept!r}) has a negative duration"
            )
        if etype.lower().startswith("stages"):
            stage_rows.append((start, duration, concept))
        elif etype:  # empty EventType = "Recording Start Time" and similar markers
            name = concept.split("|", 1)[0]
            kind = classify_event(f"{etype} {concept}")
            event_rows.append((start, duration, name, kind))
        index += 1
        elem.clear()
    if not stage_rows:
        raise HypnogramError(path, "no 'Stages|Stages' scored events in this NSRR XML")
    on, du, labels = (np.array(col) for col in zip(*stage_rows, strict=True))
    events = pd.DataFrame(event_rows, columns=["onset_s", "duration_s", "label", "kind"])
    return hypnogram_from_annotations(
        on, du, labels, source=str(path), codes=codes, strict=True, events=events, fmt="nsrr-xml"
    )


def read_profusion_xml(path: Path) -> Hypnogram:
    """Compumedics Profusion ``<CMPStudyConfig>`` XML: one ``<SleepStage>`` code per epoch."""
    epoch_text = ""
    stage_texts: list[str] = []
    event_rows: list[tuple[float, float, str, str]] = []
    for event, elem in _iter_xml(path):
        if event != "end":
            continue
        tag = _tag(elem)
        if tag == "EpochLength" and not epoch_text:
            epoch_text = (elem.text or "").strip()
        elif tag == "SleepStage":
            stage_texts.append((elem.text or "").strip())
        elif tag == "ScoredEvent":
            name = _child_text(elem, "Name")
            start = _number(path, _child_text(elem, "Start"), "Start", len(event_rows))
            duration = _number(
                path, _child_text(elem, "Duration") or "0", "Duration", len(event_rows)
            )
            if duration < 0:
                raise HypnogramError(path, f"scored event {name!r} has a negative duration")
            event_rows.append((start, duration, name, classify_event(name)))
            elem.clear()
    if not stage_texts:
        raise HypnogramError(path, "no <SleepStage> entries in this Profusion XML")
    warnings: list[str] = []
    try:
        epoch_s = float(epoch_text) if epoch_text else EPOCH_S
    except ValueError:
        raise HypnogramError(path, f"<EpochLength> {epoch_text!r} is not a number") from None
    if not (math.isfinite(epoch_s) and 0 < epoch_s <= 600):
        raise HypnogramError(
            path, f"<EpochLength> must be a number of seconds in (0, 600], got {epoch_text!r}"
        )
    if not epoch_text:
        warnings.append("no <EpochLength> in the file; assuming 30-s epochs")
    elif epoch_s != EPOCH_S:
        warnings.append(f"scored in {epoch_s:g}-s epochs; re-gridded to 30-s epochs by majority")
    stages = _codes_to_stages(path, stage_texts, RK_CODES, "Profusion sleep-stage codes")
    events = pd.DataFrame(event_rows, columns=["onset_s", "duration_s", "label", "kind"])
    return hypnogram_from_epochs(
        stages, epoch_s, source=str(path), fmt="profusion-xml", warnings=warnings, events=events
    )


def _codes_to_stages(path: Path, texts: list[str], table: dict[int, int], what: str) -> np.ndarray:
    values = np.array([_int_or_none(t) for t in texts], dtype=object)
    bad = [t for t, v in zip(texts, values, strict=True) if v is None or v not in table]
    if bad:
        uniq = sorted(set(bad))
        raise HypnogramError(
            path,
            f"{len(uniq)} unknown {what} in {len(bad)} epochs: {', '.join(map(repr, uniq[:5]))}; "
            f"allowed: {', '.join(map(str, sorted(table)))}",
        )
    return np.array([table[v] for v in values], dtype=np.int8)


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


__all__ = [
    "MAX_XML_BYTES",
    "EdfHeader",
    "offset_s",
    "read_edf_annotations",
    "read_edf_header",
    "read_nsrr_xml",
    "read_profusion_xml",
    "root_tag",
]
