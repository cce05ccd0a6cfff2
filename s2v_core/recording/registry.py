"""The one entry point from any supported recording file to a canonical night.

Every front end (``s2v info``, ``predict``, ``embed``, ``evaluate``, ``prepare``, the Python API)
reads recordings through :func:`load_recording`, so they all accept the same files:

* EDF, EDF+ (continuous or discontinuous) and BDF;
* WFDB beat annotations (``record.ecg``, with the stages of ``record.st`` and age/sex from
  ``record.hea``), as in PhysioNet slpdb;
* DREAMS single-channel text excerpts (``excerptN.txt``: a ``[LABEL]`` line, then one sample per
  line), whose sampling rate comes from ``sfreq`` or from the span of the hypnogram.

Examples
--------
>>> night = load_recording("excerpt1.txt", "Hypnogram_excerpt1.txt")  # doctest: +SKIP
>>> recording_kind("slp01a.ecg")  # doctest: +SKIP
'wfdb'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from s2v_core.errors import InputFileError
from s2v_core.night import Night, NightMeta
from s2v_core.recording.dreams import load_dreams_night
from s2v_core.recording.loading import load_night, load_wfdb_night

__all__ = ["KINDS", "is_dreams_text", "load_recording", "recording_kind"]

KINDS: dict[str, str] = {
    "edf": "EDF, EDF+ or BDF recording",
    "wfdb": "WFDB beat annotations (.ecg, with .st stages and .hea header)",
    "dreams-text": "DREAMS text excerpt ('[LABEL]' line, then one sample per line)",
}
"""Recording kinds :func:`load_recording` reads: key -> description."""

_WFDB_SUFFIXES = (".ecg", ".hea", ".st")


def is_dreams_text(path: str | Path) -> bool:
    """True for a text file whose first line is a bracketed channel label (not ``[Hypnogram]``)."""
    p = Path(path)
    if p.suffix.lower() != ".txt" or not p.is_file():
        return False
    try:
        with open(p, encoding="latin-1") as fh:
            first = fh.readline(256).strip()
    except OSError:
        return False
    return first.startswith("[") and first.endswith("]") and first[1:-1].strip().lower() != "hypnogram"


def recording_kind(path: str | Path) -> str:
    """Which reader a recording needs: a key of :data:`KINDS`.

    Raises
    ------
    InputFileError
        Not a recording this tool reads (the message lists what it reads).
    """
    p = Path(path)
    if p.suffix.lower() in _WFDB_SUFFIXES or (not p.exists() and p.with_suffix(".ecg").exists()):
        return "wfdb"
    if not p.exists():
        raise InputFileError(p, "file not found")
    if p.is_dir():
        raise InputFileError(p, "is a folder; give a recording file (a folder of nights is a cohort)")
    if p.suffix.lower() == ".txt":
        if is_dreams_text(p):
            return "dreams-text"
        raise InputFileError(p, "a text file that is not a DREAMS excerpt ('[LABEL]' then one sample "
                                "per line); if it is a hypnogram, give it as the hypnogram")  # fmt: skip
    return "edf"


def load_recording(
    path: str | Path,
    hypnogram: str | Path | None = None,
    *,
    mapping: Mapping[str, str | None] | None = None,
    modalities: tuple[str, ...] | None = None,
    meta: NightMeta | None = None,
    allow_mismatch: bool = False,
    sfreq: float | None = None,
) -> Night:
    """Read any supported recording (see :data:`KINDS`) into a canonical night.

    Parameters
    ----------
    path : path
        The recording.
    hypnogram : path, optional
        Any hypnogram :func:`s2v_core.io.hypnogram.read_hypnogram` reads. A WFDB record uses its
        own ``.st`` stages and refuses another hypnogram.
    mapping, modalities
        Channel overrides and the modalities to build (EDF/BDF only; a DREAMS excerpt's single
        channel can be named with ``mapping={"eeg": LABEL}`` or ``{"eog": LABEL}``).
    meta : NightMeta, optional
        Metadata; ``night_id`` defaults to the file stem.
    allow_mismatch : bool
        Pad or trim a hypnogram whose length differs from the signal.
    sfreq : float, optional
        Sampling rate of a DREAMS text excerpt (which does not store one); other kinds refuse it.
    """
    kind = recording_kind(path)
    if sfreq is not None and kind != "dreams-text":
        raise InputFileError(path, f"sfreq applies to DREAMS text excerpts only; this is a {KINDS[kind]}")
    if kind == "wfdb":
        if hypnogram is not None:
            raise InputFileError(path, "a WFDB record uses its own .st stage annotations; give no hypnogram")
        return load_wfdb_night(path, meta=meta)
    if kind == "dreams-text":
        chosen = [m for m, label in (mapping or {}).items() if label]
        return load_dreams_night(path, hypnogram, sfreq=sfreq, modality=chosen[0] if len(chosen) == 1 else None,
                                 meta=meta, allow_mismatch=allow_mismatch)  # fmt: skip
    return load_night(path, hypnogram, mapping=mapping, modalities=modalities, meta=meta,
                      allow_mismatch=allow_mismatch)  # fmt: skip
