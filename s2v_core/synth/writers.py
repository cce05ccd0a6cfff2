"""Write a synthetic night in real file formats: EDF+ signals and the site's hypnogram format.

Hypnogram formats (see :data:`s2v_core.synth.sites.HYPNOGRAM_FORMATS`):

``nsrr_xml``
    NSRR ``<PSGAnnotation>``: one ``Stages|Stages`` ScoredEvent per run of identical stages
    (``Wake|0``, ``Stage 1 sleep|1``, ``Stage 2 sleep|2``, ``Stage 3 sleep|3``, ``REM sleep|5``),
    ``Respiratory|Respiratory`` events (apneas, hypopneas, SpO2 desaturations) and the
    ``Recording Start Time`` event NSRR files begin with.
``profusion_xml``
    Compumedics Profusion ``<CMPStudyConfig>``: ScoredEvents by ``<Name>`` and one
    ``<SleepStage>`` per epoch (0 W, 1 N1, 2 N2, 3 N3, 5 REM).
``csv_events``
    ``onset,duration,label`` (seconds; labels W N1 N2 N3 R), one row per run of stages.
``csv_labels``
    header ``stage`` and one label per 30-s epoch (W N1 N2 N3 REM).
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.synth.cardioresp import RESP_SFREQ
from s2v_core.synth.physiology import SynthNight

__all__ = [
    "physical_range",
    "write_edf",
    "write_hypnogram",
]

log = logging.getLogger(__name__)

_DIGITAL_MIN, _DIGITAL_MAX = -32768, 32767
_TRANSDUCER = {
    "eeg": "AgAgCl cup electrode",
    "eog": "AgAgCl cup electrode",
    "emg": "AgAgCl electrode",
    "ecg": "ECG electrode",
    "effort": "RIP belt",
    "airflow": "nasal cannula / thermistor",
    "spo2": "pulse oximeter",
}
_NSRR_STAGE = {
    0: "Wake|0",
    1: "Stage 1 sleep|1",
    2: "Stage 2 sleep|2",
    3: "Stage 3 sleep|3",
    4: "REM sleep|5",
}
_NSRR_EVENT = {
    "Obstructive Apnea": "Obstructive apnea|Obstructive Apnea",
    "Hypopnea": "Hypopnea|Hypopnea",
    "Central Apnea": "Central apnea|Central Apnea",
}
_PROFUSION_STAGE = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5}
_CSV_EVENT_LABEL = ("W", "N1", "N2", "N3", "R")
_CSV_EPOCH_LABEL = ("W", "N1", "N2", "N3", "REM")


def _edf_number(value: float, outward: int) -> float:
    """Round ``value`` away from the data (``outward`` = -1 down, +1 up) to fit 8 EDF characters."""
    if value == 0:
        return 0.0
    for digits in (5, 4, 3, 2):
        step = 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1)
        rounded = (math.ceil(value / step) if outward > 0 else math.floor(value / step)) * step
        text = np.format_float_positional(rounded, precision=10, trim="-")
        if len(text) <= 8:
            return float(text)
    raise ValueError(f"cannot write {value} in 8 characters")


def physical_range(x: np.ndarray, headroom: float = 0.1) -> tuple[float, float]:
    """EDF physical min/max around the data with ``headroom`` of the span on each side."""
    lo, hi = float(np.min(x)), float(np.max(x))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return _edf_number(lo - headroom * span, -1), _edf_number(hi + headroom * span, +1)


def _to_digital(x: np.ndarray, pmin: float, pmax: float) -> np.ndarray:
    scale = (_DIGITAL_MAX - _DIGITAL_MIN) / (pmax - pmin)
    d = np.rint((x.astype(np.float64) - pmin) * scale + _DIGITAL_MIN)
    return np.clip(d, _DIGITAL_MIN, _DIGITAL_MAX).astype(np.int32)


def write_edf(night: SynthNight, path: str | Path, start: datetime) -> Path:
    """Write the night's channels as EDF+C with 1-s data records.

    Physical minimum and maximum come from each channel's data with 10 % headroom; the
    patient code is the subject id (no names), the equipment field is the site's device, the
    prefilter field holds the filters that were applied. At sites with ``annotate_events`` the
    respiratory events are written as EDF+ annotations.

    Parameters
    ----------
    night : SynthNight
    path : path
        Output ``.edf`` file.
    start : datetime
        Recording start (lights off); fixed by the caller so that files are reproducible.

    Returns
    -------
    Path
    """
    path = Path(path)
    chans = night.channels
    headers, digital = [], []
    for ch in chans:
        x = night.signals[ch.label]
        pmin, pmax = physical_range(x)
        headers.append(
            {
                "label": ch.label,
                "dimension": ch.unit,
                "sample_frequency": ch.sfreq,
                "physical_min": pmin,
                "physical_max": pmax,
                "digital_min": _DIGITAL_MIN,
                "digital_max": _DIGITAL_MAX,
                "prefilter": ch.prefilter,
                "transducer": _TRANSDUCER[ch.modality],
            }
        )
        digital.append(_to_digital(x, pmin, pmax).reshape(-1, ch.sfreq))  # (n_seconds, sfreq)
    records = np.ascontiguousarray(np.hstack(digital))  # (n_seconds, sum of rates)
    writer = pyedflib.EdfWriter(str(path), len(chans), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setPatientCode(night.spec.subject_id)
        writer.setSex(1 if night.spec.sex == "M" else 0)
        writer.setEquipment(night.site.device)
        writer.setRecordingAdditional(f"synthetic_{night.site.name}")
        writer.setStartdatetime(start)
        writer.setSignalHeaders(headers)
        for record in records:  # one call per 1-s data record; the data are already digital
            writer.blockWriteDigitalSamples(record)
        if night.site.annotate_events:
            for ev in night.events.itertuples(index=False):
                writer.writeAnnotation(float(ev.onset), float(ev.duration), str(ev.type))
    finally:
        writer.close()
    return path


def _runs(stages: np.ndarray) -> list[tuple[int, int, int]]:
    """(first epoch, n epochs, stage) for each run of identical stages."""
    s = np.asarray(stages)
    cuts = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(s)]])
    return [(int(a), int(b - a), int(s[a])) for a, b in zip(starts, ends, strict=True)]


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _desaturations(night: SynthNight) -> list[tuple[float, float, float, float]]:
    """(start, duration, baseline %, nadir %) of the desaturation following each event."""
    out = []
    sat = night.spo2_true
    for ev in night.events.itertuples(index=False):
        start = ev.nadir - ev.duration
        a, b = int(start * RESP_SFREQ), int((ev.nadir + 1.0) * RESP_SFREQ)
        out.append((start, float(ev.duration), float(sat[a]), float(sat[a:b].min())))
    return out


def _label_of(night: SynthNight, modality: str) -> str:
    ch = night.channel(modality)
    return ch.label if ch is not None else ""


def _write_nsrr(night: SynthNight, path: Path, start: datetime) -> None:
    root = ET.Element("PSGAnnotation")
    _sub(root, "SoftwareVersion", "Compumedics")
    _sub(root, "EpochLength", str(EPOCH_SECONDS))
    events = _sub(root, "ScoredEvents")
    first = _sub(events, "ScoredEvent")
    _sub(first, "EventType")
    _sub(first, "EventConcept", "Recording Start Time")
    _sub(first, "Start", "0")
    _sub(first, "Duration", f"{night.duration_s:.1f}")
    _sub(first, "ClockTime", f"00.00.00 {start:%H.%M.%S}")
    for a, n, stage in _runs(night.stages):
        ev = _sub(events, "ScoredEvent")
        _sub(ev, "EventType", "Stages|Stages")
        _sub(ev, "EventConcept", _NSRR_STAGE[stage])
        _sub(ev, "Start", f"{a * EPOCH_SECONDS:.1f}")
        _sub(ev, "Duration", f"{n * EPOCH_SECONDS:.1f}")
    flow, sat = _label_of(night, "airflow") or _label_of(night, "effort"), _label_of(night, "spo2")
    desats = _desaturations(night)
    for ev_row, (d_start, d_dur, base, nadir) in zip(
        night.events.itertuples(index=False), desats, strict=True
    ):
        ev = _sub(events, "ScoredEvent")
        _sub(ev, "EventType", "Respiratory|Respiratory")
        _sub(ev, "EventConcept", _NSRR_EVENT[ev_row.type])
        _sub(ev, "Start", f"{ev_row.onset:.1f}")
        _sub(ev, "Duration", f"{ev_row.duration:.1f}")
        _sub(ev, "SignalLocation", flow)
        if sat:
            ev = _sub(events, "ScoredEvent")
            _sub(ev, "EventType", "Respiratory|Respiratory")
            _sub(ev, "EventConcept", "SpO2 desaturation|SpO2 desaturation")
            _sub(ev, "Start", f"{d_start:.1f}")
            _sub(ev, "Duration", f"{d_dur:.1f}")
            _sub(ev, "SignalLocation", sat)
            _sub(ev, "SpO2Nadir", f"{nadir:.0f}")
            _sub(ev, "SpO2Baseline", f"{base:.0f}")
    _write_xml(root, path)


def _write_profusion(night: SynthNight, path: Path) -> None:
    root = ET.Element("CMPStudyConfig")
    _sub(root, "EpochLength", str(EPOCH_SECONDS))
    events = _sub(root, "ScoredEvents")
    flow, sat = _label_of(night, "airflow") or _label_of(night, "effort"), _label_of(night, "spo2")
    desats = _desaturations(night)
    for ev_row, (d_start, d_dur, base, nadir) in zip(
        night.events.itertuples(index=False), desats, strict=True
    ):
        ev = _sub(events, "ScoredEvent")
        _sub(ev, "Name", ev_row.type)
        _sub(ev, "Start", f"{ev_row.onset:.1f}")
        _sub(ev, "Duration", f"{ev_row.duration:.1f}")
        _sub(ev, "Input", flow)
        if sat:
            ev = _sub(events, "ScoredEvent")
            _sub(ev, "Name", "SpO2 desaturation")
            _sub(ev, "Start", f"{d_start:.1f}")
            _sub(ev, "Duration", f"{d_dur:.1f}")
            _sub(ev, "Input", sat)
            _sub(ev, "LowestSpO2", f"{nadir:.0f}")
            _sub(ev, "Desaturation", f"{base - nadir:.0f}")
    stages_el = _sub(root, "SleepStages")
    for s in night.stages:
        _sub(stages_el, "SleepStage", str(_PROFUSION_STAGE[int(s)]))
    _write_xml(root, path)


def _write_xml(root: ET.Element, path: Path) -> None:
    ET.indent(root, space="  ")
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_hypnogram(night: SynthNight, path: str | Path, start: datetime) -> Path:
    """Write the night's stages (and events where the format holds them) in the site's format.

    Parameters
    ----------
    night : SynthNight
    path : path
        Output file; its extension should match the site's format (``.xml`` or ``.csv``).
    start : datetime
        Recording start, written where the format has a clock time (NSRR).

    Returns
    -------
    Path
    """
    path = Path(path)
    fmt = night.site.hypnogram_format
    if fmt == "nsrr_xml":
        _write_nsrr(night, path, start)
    elif fmt == "profusion_xml":
        _write_profusion(night, path)
    elif fmt == "csv_events":
        rows = [
            f"{a * EPOCH_SECONDS:.1f},{n * EPOCH_SECONDS:.1f},{_CSV_EVENT_LABEL[s]}"
            for a, n, s in _runs(night.stages)
        ]
        path.write_text("onset,duration,label\n" + "\n".join(rows) + "\n")
    elif fmt == "csv_labels":
        path.write_text(
            "stage\n" + "\n".join(_CSV_EPOCH_LABEL[int(s)] for s in night.stages) + "\n"
        )
    else:
        raise ValueError(f"unknown hypnogram format {fmt!r}")
    return path
