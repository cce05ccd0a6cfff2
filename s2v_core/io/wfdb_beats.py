"""PhysioNet WFDB beat annotations (e.g. MIT-BIH slpdb ``.ecg``) -> canonical IBI epochs.

The annotations are read with ``wfdb.rdann``; the header with this package's bounded parser
(:func:`s2v_core.io.wfdb_header.read_wfdb_header`, which says why not ``wfdb.rdheader``).

Why not ``sleepecg.read_slpdb``
-------------------------------
sleepecg 0.6.0's slpdb reader was run on the same records (tests/test_library_review.py):

* it needs the signal files: it reads the whole record (``wfdb.rdrecord``, every channel in
  float64: 320 MB for slp48) and *detects* beats in the ECG with its own detector, where this
  module reads the database's reference beat annotations (``.ecg``) and needs no ``.dat``;
* it fetches ``SHA256SUMS.txt`` and ``RECORDS`` from PhysioNet even with ``offline=True`` (a
  ``ConnectionError`` without network), and takes a folder and a name pattern, not a file;
* it fails on ``slp32`` (its ``wfdb.rdheader`` refuses the date ``20/7/89``);
* it sets every subject male and reads no start date.

On the eleven records it reads (given a ``.dat`` and the PhysioNet index files), its stages equal
ours epoch for epoch (:func:`s2v_core.io.hypnogram.wfdb_stages.read_wfdb_stages`, 5,474 epochs),
with its start times and ages; it took 0.2-1.9 s a record (beat detection included), ours 5-70 ms.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path

import numpy as np

from s2v_core.errors import InputFileError
from s2v_core.io.wfdb_header import WfdbHeader, read_wfdb_header
from s2v_core.limits.bounds import check_duration, check_rate, describe_bytes, describe_seconds
from s2v_core.modalities import EPOCH_SECONDS, SFREQ
from s2v_core.signals.cardio import ibi_from_beats
from s2v_core.signals.resampling import epoch_matrix

__all__ = [
    "BEAT_SYMBOLS",
    "NORMAL_BEATS",
    "WfdbBeats",
    "beats_to_ibi",
    "read_wfdb_beats",
]

log = logging.getLogger(__name__)

BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
"""WFDB annotation codes that mark a heartbeat; everything else (rhythm, noise...) is dropped."""

NORMAL_BEATS = frozenset("NLRej")
"""Normally conducted beats: normal, bundle-branch block, atrial/nodal escape."""

_FILE_SUFFIXES = {".hea", ".dat", ".ecg", ".atr", ".qrs", ".st", ".ann"}
_DEMOGRAPHICS = re.compile(r"^\s*(?P<age>\d+(?:\.\d+)?|x|\?)\s+(?P<sex>[MFmfx?])(?:\s|$)")


@dataclass
class WfdbBeats:
    """Beat annotations of one WFDB record, with the header's demographics."""

    record: str
    """Record name, e.g. ``"slp01a"``."""
    fs: float
    """Sampling rate of the annotated signal in Hz."""
    beat_times_s: np.ndarray
    """(n_beats,) float64 beat times in seconds from the record start."""
    symbols: np.ndarray
    """(n_beats,) str beat codes (``"N"``, ``"V"``, ``"S"``...)."""
    duration_s: float
    """Record length in seconds (signal length / fs)."""
    age: float | None
    """Age in years from the header comment; None when unknown (``"x"``)."""
    sex: str | None
    """``"M"`` or ``"F"``; None when unknown."""
    start_time: datetime | None
    """Record start (date and time) when the header has both, else None."""
    start_clock: time | None = None
    """Time of day of the record start, also when the header has no date."""

    @property
    def normal(self) -> np.ndarray:
        """(n_beats,) bool: True for normally conducted beats (N, L, R, e, j)."""
        return np.isin(self.symbols, list(NORMAL_BEATS))

    @property
    def mean_heart_rate_bpm(self) -> float:
        """Beats per minute between the first and the last beat (NaN with < 2 beats)."""
        if self.beat_times_s.size < 2:
            return float("nan")
        span = float(self.beat_times_s[-1] - self.beat_times_s[0])
        return 60.0 * (self.beat_times_s.size - 1) / span if span > 0 else float("nan")


def _record_base(path: str | Path) -> tuple[Path, str]:
    """Record base path (no suffix) and the annotator extension to read."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in _FILE_SUFFIXES:
        extension = "ecg" if suffix in {".hea", ".dat", ".st"} else suffix[1:]
        return p.with_suffix(""), extension
    return p, "ecg"


def _parse_demographics(comments: list[str]) -> tuple[float | None, str | None]:
    """Age and sex from the last header comment shaped like ``"44 M 89 32-01-89"``."""
    for line in reversed(comments):
        m = _DEMOGRAPHICS.match(line)
        if m:
            age_text, sex_text = m.group("age"), m.group("sex").upper()
            age = float(age_text) if age_text not in {"x", "?"} else None
            sex = sex_text if sex_text in {"M", "F"} else None
            return age, sex
    return None, None


def _read_header(header_path: Path) -> WfdbHeader:
    """The record's header (:func:`~s2v_core.io.wfdb_header.read_wfdb_header`), start time required valid.

    A start time or date that is present but unreadable is an error here, as it was with
    ``wfdb.rdheader``: beats placed against a wrong clock would pair with the wrong hypnogram.
    """
    header = read_wfdb_header(header_path)
    if header.time_problem:
        raise InputFileError(header_path, f"cannot read the WFDB header: {header.time_problem}")
    return header


# Bits per sample of the WFDB signal file formats (format 310/311: 3 samples in 4 bytes).
_FORMAT_BITS = {8: 8, 16: 16, 24: 24, 32: 32, 61: 16, 80: 8, 160: 16, 212: 12, 310: 32 / 3, 311: 32 / 3}


def _check_declared_length(header_path: Path, header: WfdbHeader) -> None:
    """The header's rate and signal length against :mod:`s2v_core.limits.bounds`, before anything is read.

    The length must be at most 72 h, and when the record's signal files (``.dat``) are beside the
    header, they must hold the samples it declares (1 % and 1 KB of slack): a header that declares
    far more than its signal files hold is corrupt.

    Raises
    ------
    InputFileError
        A rate outside [1/300 Hz, 1 MHz], a length over 72 h, or signal files too small.
    """
    check_rate(header_path, header.fs, "the WFDB header: the signal")
    if not header.sig_len:
        return
    check_duration(
        header_path, header.sig_len / header.fs,
        f"the WFDB header declares {header.sig_len} samples at {header.fs:g} Hz: the record",
    )
    specs = header.signal_lines
    bits: dict[str, float] = {}
    for tokens in specs:  # "<file> <format>[x<skew>][:<skew>][+<offset>] ..."
        fmt = re.match(r"\d+", tokens[1]) if len(tokens) > 1 else None
        if fmt is None or int(fmt.group()) not in _FORMAT_BITS or "+" in tokens[1]:
            return  # an unknown format or a byte offset: the size cannot be checked
        bits[tokens[0]] = bits.get(tokens[0], 0.0) + _FORMAT_BITS[int(fmt.group())]
    for name, per_frame in bits.items():
        dat = header_path.with_name(Path(name).name)
        if name == "-" or not dat.is_file():
            continue
        declared, size = header.sig_len * per_frame / 8, dat.stat().st_size
        if size < 0.99 * declared - 1024:
            raise InputFileError(
                header_path,
                f"the WFDB header declares {header.sig_len} samples "
                f"({describe_seconds(header.sig_len / header.fs)}) but {dat.name} holds "
                f"{describe_bytes(size)}, not the {describe_bytes(declared)} they take; "
                "the header does not belong to its signal file",
            )


def read_wfdb_beats(path: str | Path) -> WfdbBeats:
    """Read beat annotations and header of a WFDB record.

    Parameters
    ----------
    path : str or Path
        The annotation file (``slp01a.ecg``; ``.atr``/``.qrs`` are read with that annotator)
        or the record base name (``slp01a``) or its ``.hea``.

    Returns
    -------
    WfdbBeats
        Only beat annotations are kept (rhythm, noise and comment annotations are dropped).

    Raises
    ------
    InputFileError
        If the header or the annotation file is missing or cannot be parsed, or the file
        holds no beat annotation.

    Examples
    --------
    >>> beats = read_wfdb_beats("../shared/data/slpdb/slp01a.ecg")  # doctest: +SKIP
    >>> beats.age, beats.sex, round(beats.mean_heart_rate_bpm)  # doctest: +SKIP
    (44.0, 'M', 65)
    """
    import wfdb  # imported here: keeps package import light

    base, extension = _record_base(path)
    header_path = base.with_name(f"{base.name}.hea")
    ann_path = base.with_name(f"{base.name}.{extension}")
    for needed, what in ((header_path, "WFDB header"), (ann_path, "beat annotation file")):
        if not needed.is_file():
            raise InputFileError(needed, f"{what} not found (looked for {needed})")
    header = _read_header(header_path)
    _check_declared_length(header_path, header)
    try:
        ann = wfdb.rdann(str(base), extension)
    except Exception as err:
        raise InputFileError(ann_path, f"cannot read the WFDB annotations: {err}") from err

    fs = float(ann.fs) if ann.fs else float(header.fs)
    check_rate(ann_path, fs, "the annotated signal")
    symbols = np.asarray(ann.symbol if ann.symbol is not None else [], dtype=str)
    samples = np.asarray(ann.sample, dtype=np.int64)
    is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
    order = np.argsort(samples[is_beat], kind="stable")
    beat_times = samples[is_beat][order] / fs
    beat_symbols = symbols[is_beat][order]
    if beat_times.size == 0:
        raise InputFileError(
            ann_path,
            f"no beat annotations in the file (expected codes such as N, V, S; "
            f"found {sorted(set(symbols.tolist()))})",
        )
    if header.sig_len:
        duration = header.sig_len / header.fs
    else:
        duration = float(beat_times[-1]) + 1.0
        check_duration(ann_path, duration, "without a signal length in the header, the last beat says the record")
        log.warning("%s: header has no signal length; using the last beat time", header_path)
    if beat_times[-1] > duration + 1.0:
        log.warning(
            "%s: beats run past the record end (%.0f s > %.0f s)",
            ann_path,
            beat_times[-1],
            duration,
        )
    age, sex = _parse_demographics(header.comments)
    start_time = header.start
    log.debug("%s: %d beats over %.0f s", base.name, beat_times.size, duration)
    return WfdbBeats(
        record=header.record_name,
        fs=fs,
        beat_times_s=beat_times,
        symbols=beat_symbols,
        duration_s=float(duration),
        age=age,
        sex=sex,
        start_time=start_time,
        start_clock=header.base_time,
    )


def beats_to_ibi(beats: WfdbBeats, n_epochs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Canonical IBI epochs from beat annotations.

    Intervals touching a non-normal beat (anything but N, L, R, e, j) are invalid and are
    interpolated over when short (see :func:`s2v_core.signals.ibi_from_beats`).

    Parameters
    ----------
    beats : WfdbBeats
        From :func:`read_wfdb_beats`.
    n_epochs : int, optional
        Number of 30-s epochs; default ``floor(duration_s / 30)``.

    Returns
    -------
    ibi : np.ndarray, shape (n_epochs, 120), float32
        Inter-beat interval in seconds at 4 Hz; NaN where invalid.
    valid : np.ndarray, shape (n_epochs, 120), bool
    """
    if n_epochs is None:
        n_epochs = int(np.floor(beats.duration_s / EPOCH_SECONDS + 1e-9))
    sfreq = SFREQ["ibi"]
    series, ok = ibi_from_beats(
        beats.beat_times_s, n_epochs * EPOCH_SECONDS, out_sfreq=sfreq, beat_ok=beats.normal
    )
    ibi = epoch_matrix(series, sfreq, n_epochs)
    valid = np.zeros(ibi.size, dtype=bool)
    valid[: ok.size] = ok[: ibi.size]
    return ibi, valid.reshape(ibi.shape)
