"""WFDB sleep-stage annotations (MIT-BIH Polysomnographic Database ``.st`` files).

Each annotation sits at the first sample of a 30-s epoch and carries an aux note
``"STAGE [EVENTS...]"``: STAGE in W 1 2 3 4 R MT M, events such as OA (obstructive apnea)
or LA (leg movement with arousal). Read with ``wfdb.rdann(record, "st")``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from s2v_core.errors import HypnogramError
from s2v_core.io.hypno_core import Hypnogram, check_length, empty_events, hypnogram_from_epochs
from s2v_core.io.hypno_formats import offset_s
from s2v_core.io.hypno_grid import EPOCH_S
from s2v_core.stages import UNSCORED

logger = logging.getLogger(__name__)

# slpdb event tokens (PhysioNet slpdb documentation); X = obstructive apnea with arousal.
WFDB_EVENT_TOKENS: dict[str, tuple[str, str]] = {
    "H": ("hypopnea", "hypopnea"),
    "HA": ("hypopnea", "hypopnea with arousal"),
    "OA": ("apnea", "obstructive apnea"),
    "X": ("apnea", "obstructive apnea with arousal"),
    "CA": ("apnea", "central apnea"),
    "CAA": ("apnea", "central apnea with arousal"),
    "L": ("limb", "leg movements"),
    "LA": ("limb", "leg movements with arousal"),
    "A": ("arousal", "arousal"),
}
_WFDB_STAGES = {"W": 0, "1": 1, "2": 2, "3": 3, "4": 3, "R": 4, "MT": UNSCORED, "M": UNSCORED}


_DEFINITION_NOTE = re.compile(rb"## ")
_TIME_NOTE = re.compile(rb"## time resolution: [0-9]")
_ALLOWED_DEFINITIONS = (b"## time resolution: ", b"## annotation type definitions", b"## end of definitions")


def _guard_definition_notes(path: Path) -> None:
    """Refuse files whose '## ' definition notes would hang wfdb.rdann.

    wfdb 4.3.1 loops forever on a '## ' note that is neither the (first) time resolution nor
    a definitions block marker; such notes never occur in files written by WFDB tools, so a
    file holding one is treated as corrupt.
    """
    raw = path.read_bytes()
    notes = [raw[m.start() : m.start() + 40] for m in _DEFINITION_NOTE.finditer(raw)]
    time_notes = sum(n.startswith(_ALLOWED_DEFINITIONS[0]) for n in notes)
    if any(n.startswith(_ALLOWED_DEFINITIONS[0]) and not _TIME_NOTE.match(n) for n in notes):
        raise HypnogramError(path, "corrupt WFDB annotation file: unreadable '## time resolution' note")
    starts = sum(n.startswith(_ALLOWED_DEFINITIONS[1]) for n in notes)
    ends = sum(n.startswith(_ALLOWED_DEFINITIONS[2]) for n in notes)
    if any(not n.startswith(_ALLOWED_DEFINITIONS) for n in notes) or time_notes > 1 or starts != ends:
        raise HypnogramError(path, "corrupt WFDB annotation file: malformed '## ' definition notes")


def read_wfdb_stages(path: Path, *, recording_start: datetime | None = None) -> Hypnogram:
    """WFDB ``.st`` stage annotations (MIT-BIH slpdb): aux note ``"STAGE [EVENTS...]"``."""
    import wfdb

    record = str(path.with_suffix(""))
    extension = path.suffix.lstrip(".") or "st"
    _guard_definition_notes(path)
    try:
        ann = wfdb.rdann(record, extension)
    except Exception as err:  # wfdb raises bare ValueError/IndexError on corrupt files
        raise HypnogramError(path, f"cannot read the WFDB annotations: {err}") from err
    header_fs, start = _wfdb_header(Path(record + ".hea"))
    fs = ann.fs or header_fs
    if not fs:
        raise HypnogramError(
            path, f"unknown sampling rate: neither the file nor {Path(record).name}.hea gives it"
        )
    if len(ann.sample) == 0:
        raise HypnogramError(path, "the annotation file holds no annotations")
    notes = [(note or "").replace("\x00", "").split() for note in ann.aux_note]
    epochs = np.floor(np.asarray(ann.sample, dtype=float) / fs / EPOCH_S + 1e-9).astype(np.int64)
    if epochs.min() < 0:
        raise HypnogramError(path, "annotation sample numbers are negative: the file is corrupt")
    check_length(int(epochs.max()) + 1, str(path))
    first_tokens = [tokens[0].upper() if tokens else "" for tokens in notes]
    unknown = sorted({t for t in first_tokens if t and t not in _WFDB_STAGES})
    if unknown:
        raise HypnogramError(
            path,
            f"{len(unknown)} unknown stage codes in the aux notes: {', '.join(map(repr, unknown[:5]))}; "
            f"allowed: {', '.join(_WFDB_STAGES)}",
        )
    codes = np.array([_WFDB_STAGES.get(t, UNSCORED) for t in first_tokens], dtype=np.int8)
    stages = np.full(int(epochs.max()) + 1, UNSCORED, dtype=np.int8)
    stages[epochs] = codes  # duplicates: the later annotation wins
    warnings = _wfdb_warnings(epochs, first_tokens)
    event_rows = [
        (
            float(epoch * EPOCH_S),
            EPOCH_S,
            token,
            WFDB_EVENT_TOKENS.get(token.upper(), ("other",))[0],
        )
        for epoch, tokens in zip(epochs, notes, strict=True)
        for token in tokens[1:]
    ]
    events = pd.DataFrame(event_rows, columns=["onset_s", "duration_s", "label", "kind"])
    offset, start_warnings = offset_s(start, recording_start)
    return hypnogram_from_epochs(
        stages,
        EPOCH_S,
        source=str(path),
        fmt="wfdb",
        warnings=start_warnings + warnings,
        events=events if len(events) else empty_events(),
        start_offset_s=offset,
    )


def _wfdb_header(path: Path) -> tuple[float | None, datetime | None]:
    """Sampling rate and start date-time from a WFDB header's record line.

    Record line: ``name n_signals fs[/counter_freq][(base)] n_samples [hh:mm:ss [dd/mm/yyyy]]``.
    Parsed here rather than with ``wfdb.rdheader``, which rejects slpdb's two-digit years.
    """
    if not path.exists():
        return None, None
    lines = path.read_text(encoding="latin-1").splitlines()
    record_line = next((ln.split() for ln in lines if ln.strip() and not ln.startswith("#")), [])
    fs_match = re.match(r"\d+(\.\d*)?", record_line[2]) if len(record_line) > 2 else None
    fs = float(fs_match.group()) if fs_match else None
    if len(record_line) < 6:
        return fs, None
    try:
        clock = datetime.strptime(record_line[4].split(".")[0], "%H:%M:%S").time()
        day, month, year = (int(x) for x in record_line[5].split("/"))
        year += 1900 if year < 100 else 0  # slpdb writes "89" for 1989
        return fs, datetime.combine(datetime(year, month, day).date(), clock)
    except ValueError:
        logger.info("cannot read the start time in %s", path)
        return fs, None


def _wfdb_warnings(epochs: np.ndarray, first_tokens: list[str]) -> list[str]:
    warnings = []
    n_dup = epochs.size - np.unique(epochs).size
    if n_dup:
        warnings.append(f"{n_dup} epochs carry more than one stage annotation; the later wins")
    n_gap = int(epochs.max()) + 1 - np.unique(epochs).size
    if n_gap:
        warnings.append(
            f"{n_gap} epochs (before the first annotation or between annotations) have no "
            "stage annotation; left unscored"
        )
    n_empty = sum(1 for t in first_tokens if not t)
    if n_empty:
        warnings.append(f"{n_empty} annotations have an empty aux note (left unscored)")
    return warnings
