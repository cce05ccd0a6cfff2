"""The one entry point from any supported recording to a canonical night, and what counts as one.

Every front end (``s2v info``, ``predict``, ``embed``, ``evaluate``, ``prepare``, the app's
upload, the Python API's ``s2v_core.load_night``) reads recordings through
:func:`load_recording`, and folders are walked by :func:`find_recordings`, so they all accept the
same inputs (:data:`KINDS`):

* ``edf``: EDF, EDF+ (continuous or discontinuous) and BDF (also without their suffix: the header
  tells);
* ``wfdb``: a PhysioNet WFDB record, named by any of its files: ``record.hea`` with ``.dat``
  signals (read with the ``wfdb`` package) and/or ``.ecg`` beat annotations (which give ``ibi``;
  with signals they replace the ``ibi`` derived from the ECG), stages from ``record.st``, age and
  sex from the header's comment (as in PhysioNet slpdb);
* ``dreams-text``: DREAMS single-channel text excerpts (``excerptN.txt``: a ``[LABEL]`` line,
  then one sample per line), whose sampling rate comes from ``sfreq`` or from the span of the
  hypnogram;
* ``mne``: what MNE reads (:data:`MNE_FORMATS`: FIF, BrainVision, EEGLAB, GDF, Neuroscan CNT),
  read by ``mne.io.read_raw`` and then loaded as an ``mne.io.Raw`` is
  (:mod:`s2v_core.recording.mne_raw`). Stage annotations inside the file are used when no
  hypnogram is given, as an EDF+ file's are.

A file that belongs to a record but is not its entry point (a BrainVision ``.eeg``/``.vmrk``, an
EEGLAB ``.fdt``) is refused naming the file to give instead. Which hypnogram goes with a
recording in a folder is :func:`s2v_core.recording.pairing.hypnogram_for`.

Examples
--------
>>> night = load_recording("excerpt1.txt", "Hypnogram_excerpt1.txt")  # doctest: +SKIP
>>> recording_kind("slp01a.hea")  # doctest: +SKIP
'wfdb'
>>> [p.name for p, kind in find_recordings("slpdb/")][:2]  # doctest: +SKIP
['slp01a.hea', 'slp01b.hea']
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from s2v_core.errors import InputFileError
from s2v_core.io.dreams import is_dreams_text
from s2v_core.io.edf_header import check_header
from s2v_core.io.wfdb_signals import has_wfdb_signals, open_wfdb_signals, record_base, signal_files
from s2v_core.night import Night, NightMeta
from s2v_core.recording.dreams import load_dreams_night
from s2v_core.recording.loading import load_night, load_open_recording, load_wfdb_night
from s2v_core.recording.mne_raw import is_mne_raw, recording_type_error
from s2v_core.recording.pairing import is_hypnogram_name, recording_stem
from s2v_core.stages import label_to_stage

__all__ = [
    "COMPANIONS",
    "KINDS",
    "MNE_FORMATS",
    "READS",
    "UPLOAD_SUFFIXES",
    "find_recordings",
    "is_dreams_text",
    "load_recording",
    "recording_kind",
    "recording_labels",
    "single_recording",
]

log = logging.getLogger(__name__)

KINDS: dict[str, str] = {
    "edf": "EDF, EDF+ or BDF recording",
    "wfdb": "WFDB record (.hea with .dat signals and/or .ecg beats, .st stages)",
    "dreams-text": "DREAMS text excerpt ('[LABEL]' line, then one sample per line)",
    "mne": "recording read by MNE (FIF, BrainVision, EEGLAB, GDF, CNT)",
}
"""Recording kinds :func:`load_recording` reads: key -> description."""

MNE_FORMATS: dict[str, str] = {
    ".fif": "FIF",
    ".fif.gz": "FIF",
    ".vhdr": "BrainVision",
    ".ahdr": "BrainVision",
    ".set": "EEGLAB",
    ".gdf": "GDF",
    ".cnt": "Neuroscan CNT",
}
"""Suffixes read through ``mne.io.read_raw`` -> format name (EDF/BDF have their own reader)."""

COMPANIONS: dict[str, str] = {
    ".eeg": ".vhdr",
    ".vmrk": ".vhdr",
    ".amrk": ".ahdr",
    ".fdt": ".set",
}
"""Files read with a header file, not on their own: suffix -> the header's suffix."""

_EDF_SUFFIXES = (".edf", ".bdf", ".rec")
_WFDB_SUFFIXES = (".hea", ".dat", ".ecg", ".st")
_HYPNOGRAM_SUFFIXES = (".txt", ".st", ".xml", ".csv", ".tsv")

UPLOAD_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(
    [s.lstrip(".") for s in (*_EDF_SUFFIXES, *_WFDB_SUFFIXES, *MNE_FORMATS, *COMPANIONS, *_HYPNOGRAM_SUFFIXES)]
))  # fmt: skip
"""Every suffix (without the dot) a recording upload may hold: recordings, the companions of
multi-file records, and hypnograms uploaded with them."""

READS = ("EDF, EDF+ and BDF, WFDB records (.hea with .dat signals and/or .ecg beats), DREAMS text excerpts, "
         "and through MNE FIF, BrainVision (.vhdr), EEGLAB (.set), GDF and CNT")  # fmt: skip
"""What this tool reads, in one line (for messages)."""


def _suffix(p: Path) -> str:
    name = p.name.lower()
    for compound in (".fif.gz",):
        if name.endswith(compound):
            return compound
    return p.suffix.lower()


def _looks_like_edf(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head == b"0       " or head == b"\xffBIOSEMI"


def recording_kind(path: str | Path) -> str:
    """Which reader a recording needs: a key of :data:`KINDS`.

    Raises
    ------
    InputFileError
        Not a recording this tool reads (the message says what it reads), a companion file
        given instead of its header, a folder, or a missing file.
    """
    p = Path(path)
    suffix = _suffix(p)
    base = record_base(p)
    if suffix in _WFDB_SUFFIXES or (not p.exists() and (base.with_suffix(".ecg").exists()
                                                        or base.with_suffix(".hea").exists())):  # fmt: skip
        if suffix == ".dat" and not base.with_suffix(".hea").is_file():
            raise InputFileError(p, "a .dat file without its WFDB header (.hea) beside it; give the record's "
                                    ".hea with its .dat (other .dat formats are not read)")  # fmt: skip
        return "wfdb"
    if not p.exists():
        raise InputFileError(p, "file not found")
    if p.is_dir():
        raise InputFileError(p, "is a folder; give a recording file (a folder of nights is a cohort)")
    if suffix in MNE_FORMATS:
        return "mne"
    if suffix in COMPANIONS:
        header = p.with_suffix(COMPANIONS[suffix])
        raise InputFileError(p, f"is read with its header file: give {header.name} (with this file beside it)")
    if suffix == ".txt":
        if is_dreams_text(p):
            return "dreams-text"
        raise InputFileError(p, "a text file that is not a DREAMS excerpt ('[LABEL]' then one sample "
                                "per line); if it is a hypnogram, give it as the hypnogram")  # fmt: skip
    if suffix in _EDF_SUFFIXES or _looks_like_edf(p):
        return "edf"
    raise InputFileError(p, f"not a recording this tool reads; it reads {READS}")


def load_recording(
    path: str | os.PathLike | Any,
    hypnogram: str | os.PathLike | Any | None = None,
    *,
    mapping: Mapping[str, str | None] | None = None,
    modalities: tuple[str, ...] | None = None,
    meta: NightMeta | None = None,
    allow_mismatch: bool = False,
    sfreq: float | None = None,
    hypnogram_format: str = "auto",
) -> Night:
    """Read any supported recording (see :data:`KINDS`), or an ``mne.io.Raw``, into a canonical night.

    This is ``s2v_core.load_night`` of the Python API.

    Parameters
    ----------
    path : path or mne.io.BaseRaw
        The recording (for a WFDB record any of its files or its base name; for BrainVision the
        ``.vhdr``; for EEGLAB the ``.set``), or a Raw object (see
        :func:`s2v_core.recording.loading.load_night`).
    hypnogram : path or mne.Annotations, optional
        Any hypnogram :func:`s2v_core.io.hypnogram.read_hypnogram` reads (``mne.Annotations``
        with a Raw only). A WFDB record with its own ``.st`` refuses another one. Without it,
        stage annotations inside an EDF+ or MNE-read file are used when present.
    mapping, modalities
        Channel overrides and the modalities to build (a DREAMS excerpt's single channel can be
        named with ``mapping={"eeg": LABEL}`` or ``{"eog": LABEL}``).
    meta : NightMeta, optional
        Metadata; ``night_id`` defaults to the file stem (the record name for WFDB).
    allow_mismatch : bool
        Pad or trim a hypnogram whose length differs from the signal.
    sfreq : float, optional
        Sampling rate of a DREAMS text excerpt (which does not store one); other kinds refuse it.
    hypnogram_format : str
        The hypnogram's format key, ``"auto"`` to detect it.

    Raises
    ------
    InputFileError, ChannelMappingError, HypnogramError
        The recording or the hypnogram cannot be used (one line saying why).
    TypeError
        ``path`` is neither a path nor an ``mne.io.BaseRaw``.
    """
    options = {"mapping": mapping, "modalities": modalities, "meta": meta, "allow_mismatch": allow_mismatch,
               "hypnogram_format": hypnogram_format}  # fmt: skip
    if is_mne_raw(path):
        if sfreq is not None:
            raise TypeError("sfreq applies to DREAMS text excerpts only; a Raw has its own sampling rate")
        return load_night(path, hypnogram, **options)
    if not isinstance(path, str | os.PathLike):
        raise recording_type_error(path)
    kind = recording_kind(path)
    if sfreq is not None and kind != "dreams-text":
        raise InputFileError(path, f"sfreq applies to DREAMS text excerpts only; this is a {KINDS[kind]}")
    if kind == "wfdb":
        return _load_wfdb(Path(path), hypnogram, **options)
    if kind == "dreams-text":
        chosen = [m for m, label in (mapping or {}).items() if label]
        return load_dreams_night(path, hypnogram, sfreq=sfreq, modality=chosen[0] if len(chosen) == 1 else None,
                                 meta=meta, allow_mismatch=allow_mismatch)  # fmt: skip
    if kind == "mne":
        return _load_mne(Path(path), hypnogram, **options)
    return load_night(path, hypnogram, **options)


def _load_wfdb(p: Path, hypnogram: Any, *, meta: NightMeta | None, allow_mismatch: bool, **options: Any) -> Night:
    """A WFDB record: its signals when the ``.dat`` files are there (``ibi`` from ``.ecg`` beats when
    present), else its beats alone; stages from its ``.st``."""
    base = record_base(p)
    st, beats = base.with_suffix(".st"), base.with_suffix(".ecg")
    if hypnogram is not None and (st.is_file() or not has_wfdb_signals(base)):
        raise InputFileError(p, "a WFDB record uses its own .st stage annotations; give no hypnogram")
    if not has_wfdb_signals(base):
        night = load_wfdb_night(p, meta=meta)
        missing = [n for n in signal_files(base.with_suffix(".hea")) if not (base.parent / Path(n).name).is_file()]
        if missing and _suffix(p) in (".hea", ".dat"):  # named .ecg: the beats were asked for
            night.warnings.append(f"the header names the signal file(s) {', '.join(missing)}, not beside it: "
                                  "only the .ecg beat annotations were read")  # fmt: skip
        return night
    own = hypnogram is None and st.is_file()
    if own:
        options["hypnogram_format"] = "wfdb"
    with open_wfdb_signals(base) as rec:
        night = load_open_recording(rec, st if own else hypnogram, meta=meta or NightMeta(night_id=base.name),
                                    allow_mismatch=allow_mismatch or own, **options)  # fmt: skip
    night = dataclasses.replace(night, source_file=f"{base.name}.hea")
    wanted = options.get("modalities")
    if beats.is_file() and (wanted is None or "ibi" in wanted):
        night = _with_annotated_beats(night, load_wfdb_night(base, meta=meta))
    return night


def _with_annotated_beats(night: Night, beats: Night) -> Night:
    """``night`` with the ``ibi`` of the record's beat annotations (and the header's demographics)."""
    if beats.n_epochs != night.n_epochs:
        night.warnings.append(f"ibi: the .ecg beats span {beats.n_epochs} epochs, the signals "
                              f"{night.n_epochs}; ibi is derived from the ECG signal instead")  # fmt: skip
        return night
    kept = [w for w in night.warnings if not w.startswith("ibi: ")]
    return dataclasses.replace(
        night,
        meta=beats.meta if night.meta.night_id == beats.meta.night_id else night.meta,
        signals={**night.signals, "ibi": beats.signals["ibi"]},
        epoch_valid={**night.epoch_valid, "ibi": beats.epoch_valid["ibi"]},
        provenance={**night.provenance, "ibi": beats.provenance["ibi"]},
        warnings=kept + [w for w in beats.warnings if w.startswith("ibi: ")],
    )


def _read_raw(p: Path) -> Any:
    """``mne.io.read_raw`` of ``p``, not preloaded, quiet; a file MNE refuses is one line."""
    import mne

    fmt = MNE_FORMATS.get(_suffix(p), "MNE")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MNE's notes on unknown units or channel types
            return mne.io.read_raw(p, preload=False, verbose="error")
    except Exception as exc:  # noqa: BLE001 - MNE's readers raise many types for a damaged file
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputFileError(p, f"MNE cannot read it as {fmt}: {text}") from None


def _stage_annotations(raw: Any) -> Any | None:
    """The Raw's own annotations when some of them are sleep stages, else None."""
    for text in set(raw.annotations.description):
        try:
            if label_to_stage(str(text)) >= 0:
                return raw.annotations
        except KeyError:
            continue
    return None


def _load_mne(p: Path, hypnogram: Any, *, meta: NightMeta | None, allow_mismatch: bool, **options: Any) -> Night:
    """A file MNE reads: loaded as its Raw; its own stage annotations when no hypnogram is given."""
    raw = _read_raw(p)
    own = _stage_annotations(raw) if hypnogram is None else None
    night = load_night(raw, own if own is not None else hypnogram, meta=meta or NightMeta(night_id=recording_stem(p)),
                       allow_mismatch=allow_mismatch or own is not None, **options)  # fmt: skip
    fmt = MNE_FORMATS.get(_suffix(p), "MNE")
    said = [f"the {fmt} file gives no start date: start time unknown" if w.startswith("the Raw has no measurement date")
            else w for w in night.warnings]  # fmt: skip
    changes: dict[str, Any] = {"source_file": p.name, "warnings": said}
    if own is not None:
        changes["hypnogram_source"] = f"{p.name} (annotations)"
    return dataclasses.replace(night, **changes)


def recording_labels(path: str | Path) -> tuple[str, ...]:
    """The channel labels of a recording (what a channel override may name); () when unknown.

    Reads headers only (EDF, WFDB, MNE) or the first line (DREAMS text). Never raises: a file
    that cannot be read has no labels to offer.
    """
    try:
        kind = recording_kind(path)
        if kind == "edf":
            return tuple(check_header(path).labels)
        if kind == "wfdb":
            if not has_wfdb_signals(path):
                return ()
            with open_wfdb_signals(path) as rec:
                return tuple(rec.header.labels)
        if kind == "mne":
            return tuple(_read_raw(Path(path)).ch_names)
        with open(path, encoding="latin-1") as fh:
            return (fh.readline(256).strip()[1:-1].strip(),)
    except Exception as exc:  # noqa: BLE001 - labels are a convenience; loading reports the problem
        log.info("%s: no channel labels (%s)", Path(str(path)).name, exc)
        return ()


def _fif_continuation(p: Path) -> bool:
    """``night_raw-1.fif``: the second part of a FIF file MNE split (read with the first)."""
    stem = recording_stem(p)
    head, _, part = stem.rpartition("-")
    return _suffix(p) in (".fif", ".fif.gz") and part.isdigit() and bool(head) and any(
        (p.parent / f"{head}{s}").is_file() for s in (".fif", ".fif.gz")
    )


def _kind_in_folder(p: Path) -> str | None:
    """The kind of ``p`` when it is the entry point of a recording, else None (no error)."""
    suffix = _suffix(p)
    if not p.is_file() or is_hypnogram_name(p):
        return None
    if suffix in (".edf", ".bdf", ".rec"):
        return "edf"
    if suffix in MNE_FORMATS:
        return None if _fif_continuation(p) else "mne"
    if suffix == ".hea":
        return "wfdb" if has_wfdb_signals(p) or p.with_suffix(".ecg").is_file() else None
    if suffix == ".ecg":
        return "wfdb" if not p.with_suffix(".hea").is_file() else None  # the .hea names the record
    if suffix == ".txt" and is_dreams_text(p):
        return "dreams-text"
    return None


def find_recordings(folder: str | Path) -> list[tuple[Path, str]]:
    """Every recording in ``folder`` (not its subfolders), sorted by name, with its kind.

    One entry per recording: a WFDB record once, by its ``.hea`` (by its ``.ecg`` without one);
    a BrainVision recording by its ``.vhdr``, an EEGLAB one by its ``.set``, a split FIF file by
    its first part. Hypnograms (``*Hypnogram*``, ``*_events.tsv``) and DREAMS hypnogram texts are
    not recordings; files of unknown kinds are left out.
    """
    src = Path(folder)
    found = []
    for p in sorted(src.iterdir()):
        kind = _kind_in_folder(p)
        if kind is not None:
            found.append((p, kind))
    return found


def single_recording(folder: str | Path) -> tuple[Path, str]:
    """The one recording among the files of ``folder`` (an upload: a recording with its companion
    files and perhaps its hypnogram), with its kind. A single file is taken as the recording
    whatever its name (so that reading it says what is wrong with it, as ``s2v info`` would).

    Raises
    ------
    InputFileError
        No recording among the files (a companion without its header is named), or several.
    """
    src = Path(folder)
    found = find_recordings(src)
    if len(found) == 1:
        return found[0]
    names = sorted(p.name for p in src.iterdir() if p.is_file())
    if not found and len(names) == 1:  # one file: read as `s2v info FILE` would, for its own message
        return src / names[0], recording_kind(src / names[0])
    if found:
        listed = ", ".join(p.name for p, _ in found[:6]) + (" ..." if len(found) > 6 else "")
        raise InputFileError(None, f"the files hold {len(found)} recordings ({listed}); give the files of one "
                                   "recording (remove the others)")  # fmt: skip
    for name in names:  # the most useful one-line reason: what the first unusable file lacks
        if _suffix(Path(name)) in (".hea", ".st", ".dat"):
            raise InputFileError(Path(name).with_suffix(".hea"), "a WFDB record needs its .hea header with its "
                                 ".dat signal file(s) and/or .ecg beat annotations: give all its files at once")  # fmt: skip
        try:
            recording_kind(src / name)
        except InputFileError as exc:
            if _suffix(Path(name)) in (*COMPANIONS, ".dat", ".ecg", ".st", ".hea", ".txt"):
                raise InputFileError(None, str(exc)) from None
    shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
    raise InputFileError(None, f"no recording among {shown or 'the files'}; this tool reads {READS}")
