"""WFDB sleep-stage annotations (MIT-BIH Polysomnographic Database ``.st`` files).

Each annotation sits at the first sample of a 30-s epoch and carries an aux note
``"STAGE [EVENTS...]"``: STAGE in W 1 2 3 4 R MT M, events such as OA (obstructive apnea)
or LA (leg movement with arousal). Read with ``wfdb.rdann(record, "st")``; the header with
:func:`s2v_core.io.wfdb_header.read_wfdb_header`. ``sleepecg.read_slpdb`` maps the stages the same
way (equal epoch for epoch on eleven slpdb records) but cannot be used instead: see
:mod:`s2v_core.io.wfdb_beats`.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from s2v_core.errors import HypnogramError, InputFileError
from s2v_core.io.hypnogram.core import Hypnogram, check_length, empty_events, hypnogram_from_epochs
from s2v_core.io.hypnogram.formats import offset_s
from s2v_core.io.hypnogram.grid import EPOCH_S
from s2v_core.io.text_limits import (
    MAX_ANNOTATIONS,
    MAX_WFDB_BYTES,
    check_count,
    check_file_size,
    check_labels,
    clip_message,
    excerpts,
)
from s2v_core.io.wfdb_header import read_wfdb_header
from s2v_core.stages import UNSCORED

__all__ = [
    "WFDB_EVENT_TOKENS",
    "read_wfdb_stages",
]

log = logging.getLogger(__name__)

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


# wfdb 4.3.1's patterns for the definition notes (wfdb.io.annotation.rx_fs, rx_custom_label)
_RX_FS = re.compile(r"## time resolution: (?P<fs>\d+\.?\d*)")
_RX_CUSTOM_LABEL = re.compile(r"(?P<label_store>\d+) (?P<symbol>\S+) (?P<description>.+)")
_BLOCK_START, _BLOCK_END = "## annotation type definitions", "## end of definitions"


def _definition_walk_stalls(n_definitions: int, aux_notes: list) -> bool:
    """Whether wfdb's walk over the definition notes would never end.

    Mirrors ``wfdb.io.annotation.interpret_defintion_annotations`` (wfdb 4.3.1): it walks
    ``aux_notes[0:n_definitions]`` and steps past a note that does not start with ``"## "``,
    the first ``"## time resolution: <fs>"`` note, and a whole ``"## annotation type
    definitions"`` ... ``"## end of definitions"`` block; on any other ``"## "`` note (a second
    time resolution, one without a number, a stray end marker, ...) it stays on that note
    forever. Where wfdb would raise instead, this returns False (rdann then raises the same).
    """
    fs = None
    i = 0
    try:
        while i < n_definitions:
            note = aux_notes[i]
            if not note.startswith("## "):
                i += 1
                continue
            if not fs:
                found = _RX_FS.findall(note)
                if found:
                    fs = float(found[0])
                    int(fs)  # wfdb's int(fs) raises OverflowError on "1e999"-sized numbers
                    i += 1
                    continue
            if note != _BLOCK_START:
                return True
            i += 1
            while aux_notes[i] != _BLOCK_END:
                if not _RX_CUSTOM_LABEL.findall(aux_notes[i]):
                    return False  # wfdb: IndexError
                i += 1
            i += 1
    except (AttributeError, IndexError, OverflowError, TypeError):
        return False
    return False


def _guard_definition_notes(path: Path) -> None:
    """Refuse an annotation file whose ``"## "`` definition notes would hang ``wfdb.rdann``.

    wfdb 4.3.1 loops forever on some malformed definition notes (see
    :func:`_definition_walk_stalls`), which files written by WFDB tools never hold. Files
    without the bytes ``"## "`` pass at once; the others (slpdb files open with a ``"## time
    resolution: 250"`` note) are decoded with wfdb's own byte parser and the definition walk
    is replayed, bounded, before rdann (about 5 ms for a night of slpdb stages).
    """
    raw = path.read_bytes()
    if b"## " not in raw:  # wfdb decodes aux bytes one char per byte: no "## " note possible
        return
    from wfdb.io import annotation as wfdb_annotation

    try:
        pairs = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2)
        sample, label_store, _, _, _, aux_notes = wfdb_annotation.proc_ann_bytes(pairs, None)
        candidates, _ = wfdb_annotation.get_special_inds(sample, label_store, aux_notes)
    except Exception:  # rdann fails on this file the same way; that error is reported below
        return
    if _definition_walk_stalls(len(candidates), aux_notes):
        raise HypnogramError(path, "corrupt WFDB annotation file: malformed '## ' definition notes")


def read_wfdb_stages(path: Path, *, recording_start: datetime | None = None) -> Hypnogram:
    """WFDB ``.st`` stage annotations (MIT-BIH slpdb): aux note ``"STAGE [EVENTS...]"``."""
    import wfdb

    record = str(path.with_suffix(""))
    extension = path.suffix.lstrip(".") or "st"
    check_file_size(path, MAX_WFDB_BYTES, "WFDB annotation files")  # s2v_core.io.text_limits
    _guard_definition_notes(path)
    try:
        ann = wfdb.rdann(record, extension)
    except Exception as err:  # wfdb raises bare ValueError/IndexError on corrupt files
        raise HypnogramError(
            path, f"cannot read the WFDB annotations: {clip_message(err)}"
        ) from err
    check_count(path, len(ann.sample), MAX_ANNOTATIONS, "annotations")
    header_fs, start = _wfdb_header(Path(record + ".hea"))
    fs = ann.fs or header_fs
    if not fs:
        raise HypnogramError(
            path, f"unknown sampling rate: neither the file nor {Path(record).name}.hea gives it"
        )
    if len(ann.sample) == 0:
        raise HypnogramError(path, "the annotation file holds no annotations")
    check_labels(path, [note or "" for note in ann.aux_note], what="aux note", unit="annotation")
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
            f"{len(unknown)} unknown stage codes in the aux notes: {excerpts(unknown)}; "
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
    """Sampling rate and start date-time from a WFDB header; (None, None) when it cannot be read.

    Parsed with :func:`s2v_core.io.wfdb_header.read_wfdb_header` (bounded, reads slpdb's
    two-digit years, refuses a malformed rate; that module says why not ``wfdb.rdheader``).
    A missing or unreadable header is not an error here: the rate usually comes from the
    annotation file itself, and without a start the stages are simply not shifted.
    """
    if not path.exists():
        return None, None
    try:
        header = read_wfdb_header(path)
    except InputFileError as err:
        log.info("cannot read %s: %s", path, err)
        return None, None
    return header.fs, header.start


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
