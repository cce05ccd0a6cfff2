"""Readers for binary and XML hypnogram formats: EDF+ annotations, NSRR XML, Profusion XML, WFDB.

Each reader returns a :class:`~s2v_core.io.hypnogram.core.Hypnogram` on the 30-s grid of the
recording; text formats (CSV/TSV/TXT, DREAMS) are in :mod:`s2v_core.io.hypnogram.text`.
EDF+ annotations are read with pyedflib (``EdfReader.readAnnotations``); EDF+D files that
hold signals (which pyedflib refuses) through :func:`s2v_core.io.edf.open_recording`, the same
reader the recording loader uses; when pyedflib refuses any other header (for instance an
annotation-only file, which ``open_recording`` refuses), MNE (``mne.read_annotations``).

Every reader first checks the limits of :mod:`s2v_core.io.text_limits` (file size, number of
annotations, label and field length, XML element count and depth); XML is parsed by
``defusedxml``, which refuses entity and document type declarations anywhere in the file.
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
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from defusedxml.ElementTree import iterparse as defused_iterparse

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
from s2v_core.io.text_limits import (
    MAX_ANNOTATIONS,
    MAX_EDF_ANNOTATION_BYTES,
    MAX_FIELD_CHARS,
    MAX_LABEL_CHARS,
    MAX_XML_DEPTH,
    MAX_XML_ELEMENTS,
    check_count,
    check_labels,
    clip_message,
    excerpt,
    excerpts,
)
from s2v_core.stages import RK_CODES

log = logging.getLogger(__name__)

MAX_XML_BYTES = 200 * 1024 * 1024
"""Largest hypnogram XML: :data:`~s2v_core.io.text_limits.MAX_ANNOTATIONS` events of about 2 kB."""


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
    check_edf_annotation_limits(path)
    onsets, durations, texts = _edf_annotation_arrays(path, header)
    if onsets.size == 0:
        raise HypnogramError(path, "the EDF+ file holds no annotations")
    offset, warnings = offset_s(header.start, recording_start)
    hyp = hypnogram_from_annotations(
        onsets, durations, texts, source=str(path), codes=codes, start_offset_s=offset, fmt=fmt
    )
    hyp.warnings[:0] = warnings
    return hyp


def _annotation_signal_bytes(path: Path) -> np.ndarray | None:
    """The bytes of every "EDF Annotations" signal, record after record (``None``: unknown layout).

    Read from the header's samples per record and the records the file really holds (not the
    header's record count), refusing more than :data:`MAX_EDF_ANNOTATION_BYTES` before reading.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(256)
        try:
            n_signals = int(head[252:256].decode("ascii"))
        except ValueError:
            return None
        if not 0 < n_signals <= 4096:
            return None
        fields = fh.read(256 * n_signals)
    if len(fields) < 256 * n_signals:
        return None
    offset = 216 * n_signals  # label 16, transducer 80, dimension 8, 4 x 8 min/max, prefilter 80
    try:
        samples = [int(fields[offset + 8 * i : offset + 8 * i + 8].decode("ascii")) for i in range(n_signals)]
    except ValueError:
        return None
    if min(samples) < 0 or sum(samples) == 0:
        return None
    is_annotation = [
        fields[16 * i : 16 * i + 16].replace(b"\x00", b" ").strip() == b"EDF Annotations"
        for i in range(n_signals)
    ]
    header_bytes, record_bytes = 256 * (n_signals + 1), 2 * sum(samples)
    n_records = max(0, size - header_bytes) // record_bytes
    columns, start = [], 0
    for n, annotation in zip(samples, is_annotation, strict=True):
        if annotation and n:
            columns.append((start, start + 2 * n))
        start += 2 * n
    total = n_records * sum(b - a for a, b in columns)
    if total > MAX_EDF_ANNOTATION_BYTES:
        raise HypnogramError(
            path,
            f"the 'EDF Annotations' signal holds {total / 2**20:.0f} MiB; over "
            f"{MAX_EDF_ANNOTATION_BYTES // 2**20} MiB of annotations are refused",
        )
    if n_records == 0 or not columns:
        return np.zeros(0, np.uint8)
    records = np.memmap(path, np.uint8, "r", header_bytes, (n_records, record_bytes))
    return np.concatenate([np.asarray(records[:, a:b]).ravel() for a, b in columns])


def check_edf_annotation_limits(path: Path) -> None:
    """Refuse EDF+ annotations over the limits before any reader parses them.

    Scans the raw annotation bytes (numpy, no parsing): every field between the TAL separators
    (0x00, 0x14, 0x15) must be at most :data:`MAX_LABEL_CHARS` bytes, and the texts at most
    :data:`MAX_ANNOTATIONS` (counted from the separators; the time-keeping TAL of each record is
    not counted). pyedflib and MNE hold each text in a numpy array as wide as the longest one.
    """
    blob = _annotation_signal_bytes(path)
    if blob is None or blob.size == 0:
        return
    cuts = np.flatnonzero((blob == 0) | (blob == 0x14) | (blob == 0x15))
    bounds = np.concatenate([[-1], cuts, [blob.size]])
    lengths = np.diff(bounds) - 1
    longest = int(np.argmax(lengths))
    if lengths[longest] > MAX_LABEL_CHARS:
        text = blob[bounds[longest] + 1 : bounds[longest + 1]].tobytes().decode("utf-8", "replace")
        raise HypnogramError(
            path,
            f"an annotation text of {int(lengths[longest]):,} bytes ({excerpt(text, length=False)}); "
            f"annotation texts over {MAX_LABEL_CHARS} bytes are refused",
        )
    # a TAL "+onset[0x15 duration] 0x14 text 0x14 [text 0x14 ...] 0x00" holds one text per 0x14
    # but its last; the time-keeping TAL of each record ("+onset 0x14 0x14") holds an empty one
    separator, following = blob[:-1] == 0x14, blob[1:]
    tal_ends = int(np.count_nonzero(separator & (following == 0)))
    time_keeping = int(np.count_nonzero(separator & (following == 0x14)))
    texts = int(np.count_nonzero(blob == 0x14)) - tal_ends - time_keeping
    check_count(path, texts, MAX_ANNOTATIONS, "annotations")


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
        raise HypnogramError(
            path, f"cannot read the EDF+ annotations: {clip_message(err)}"
        ) from err
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


_NO_ENTITIES = "XML files that declare entities are not accepted (nor any <!DOCTYPE> declaration)"


def _guard_xml(path: Path, expat) -> None:
    """Wrap the expat handlers of an ``iterparse`` parser with the XML limits.

    Counted as expat goes, before an element is built: at most :data:`MAX_XML_ELEMENTS`
    elements, :data:`MAX_XML_DEPTH` levels, and :data:`MAX_FIELD_CHARS` characters in a tag,
    an attribute value or a run of text (an element's text or a tail).
    """
    state = {"elements": 0, "depth": 0, "text": 0}
    start, end, data = expat.StartElementHandler, expat.EndElementHandler, expat.CharacterDataHandler

    def too_long(what: str, text: str) -> HypnogramError:
        return HypnogramError(
            path,
            f"line {expat.CurrentLineNumber}: {what} of over {MAX_FIELD_CHARS:,} characters "
            f"({excerpt(text, length=False)}); XML fields over {MAX_FIELD_CHARS:,} characters "
            "are refused",
        )

    def on_start(tag, attributes):
        state["elements"] += 1
        state["depth"] += 1
        state["text"] = 0
        if state["elements"] > MAX_XML_ELEMENTS:
            check_count(path, state["elements"], MAX_XML_ELEMENTS, "XML elements", exact=False)
        if state["depth"] > MAX_XML_DEPTH:
            raise HypnogramError(
                path,
                f"line {expat.CurrentLineNumber}: XML nested over {MAX_XML_DEPTH} levels deep; "
                "hypnogram XML is 4 or 5 levels deep",
            )
        for text in (tag, *attributes):  # ordered attributes: name, value, name, value...
            if len(text) > MAX_FIELD_CHARS:
                raise too_long("a tag or attribute", text)
        return start(tag, attributes)

    def on_end(tag):
        state["depth"] -= 1
        state["text"] = 0
        return end(tag)

    def on_data(text):
        state["text"] += len(text)
        if state["text"] > MAX_FIELD_CHARS:
            raise too_long("a text", text)
        return data(text)

    expat.StartElementHandler, expat.EndElementHandler = on_start, on_end
    expat.CharacterDataHandler = on_data


def _iter_xml(path: Path) -> Iterator[tuple[str, ET.Element]]:
    """``iterparse`` start/end events, within the XML limits, with readable errors.

    The parser is ``defusedxml``'s: a document that declares entities or a document type
    anywhere is refused, so no entity can be expanded or fetched. The element count, depth and
    field lengths are checked as the parser goes (:func:`_guard_xml`).
    """
    size = path.stat().st_size
    if size > MAX_XML_BYTES:
        raise HypnogramError(
            path, f"the XML file is {size / 2**20:.0f} MB; hypnogram XML over 200 MB is refused"
        )
    try:
        with open(path, "rb") as fh:
            parser = DefusedXMLParser(target=ET.TreeBuilder(), forbid_dtd=True)
            events = defused_iterparse(fh, events=("start", "end"), parser=parser)
            _guard_xml(path, parser.parser)  # after iterparse set its own handlers
            yield from events
    except DefusedXmlException:
        raise HypnogramError(path, _NO_ENTITIES) from None
    except ET.ParseError as err:
        line, column = getattr(err, "position", (0, 0))
        raise HypnogramError(path, f"malformed XML at line {line}, column {column}: {err}") from err
    except (LookupError, ValueError) as err:  # unknown or unsupported encoding declaration
        raise HypnogramError(
            path, f"unreadable XML (encoding or content): {clip_message(err)}"
        ) from None


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
            path, f"scored event #{index + 1}: {what} {excerpt(text)} is not a number"
        ) from None
    if not math.isfinite(value):
        raise HypnogramError(
            path, f"scored event #{index + 1}: {what} {excerpt(text)} is not finite"
        )
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
        check_count(path, index + 1, MAX_ANNOTATIONS, "scored events", exact=False)
        etype = _child_text(elem, "EventType")
        concept = _child_text(elem, "EventConcept")
        for text in (etype, concept):
            check_labels(path, [text], first=index + 1, unit="scored event")
        start = _number(path, _child_text(elem, "Start"), "Start", index)
        duration = _number(path, _child_text(elem, "Duration") or "0", "Duration", index)
        if duration < 0:
            raise HypnogramError(
                path, f"scored event #{index + 1} ({excerpt(concept)}) has a negative duration"
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
            check_count(path, len(stage_texts), MAX_ANNOTATIONS, "<SleepStage> entries", exact=False)
            check_labels(path, stage_texts[-1:], first=len(stage_texts), unit="<SleepStage>")
            elem.clear()
        elif tag == "ScoredEvent":
            check_count(path, len(event_rows) + 1, MAX_ANNOTATIONS, "scored events", exact=False)
            name = _child_text(elem, "Name")
            check_labels(path, [name], first=len(event_rows) + 1, unit="scored event")
            start = _number(path, _child_text(elem, "Start"), "Start", len(event_rows))
            duration = _number(
                path, _child_text(elem, "Duration") or "0", "Duration", len(event_rows)
            )
            if duration < 0:
                raise HypnogramError(
                    path, f"scored event {excerpt(name)} has a negative duration"
                )
            event_rows.append((start, duration, name, classify_event(name)))
            elem.clear()
    if not stage_texts:
        raise HypnogramError(path, "no <SleepStage> entries in this Profusion XML")
    warnings: list[str] = []
    try:
        epoch_s = float(epoch_text) if epoch_text else EPOCH_S
    except ValueError:
        raise HypnogramError(
            path, f"<EpochLength> {excerpt(epoch_text)} is not a number"
        ) from None
    if not (math.isfinite(epoch_s) and 0 < epoch_s <= 600):
        raise HypnogramError(
            path, f"<EpochLength> must be a number of seconds in (0, 600], got {excerpt(epoch_text)}"
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
            f"{len(uniq)} unknown {what} in {len(bad)} epochs: {excerpts(uniq)}; "
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
    "check_edf_annotation_limits",
    "offset_s",
    "read_edf_annotations",
    "read_edf_header",
    "read_nsrr_xml",
    "read_profusion_xml",
    "root_tag",
]
