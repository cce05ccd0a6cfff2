"""PhysioNet WFDB signal records (``record.hea`` + ``record.dat``), read one channel at a time.

:func:`open_wfdb_signals` gives a record the reading interface of an open EDF file
(:class:`s2v_core.io.edf.EdfRecording`: a ``header`` and ``read_channel``), so that the loader
maps, scales, resamples and epochs its channels exactly as it does an EDF file's.

* **Header**: read by the bounded parser :func:`s2v_core.io.wfdb_header.read_wfdb_header` (which
  also reads slpdb's two-digit years, where ``wfdb.rdheader`` fails). Each signal line gives the
  file, format, samples per frame, gain, baseline, unit and description; the channel label is
  the description (``"EEG (C4-A1)"``), its rate the frame rate times its samples per frame.
* **Samples**: memory-mapped and decoded here for the formats PhysioNet's sleep databases use
  (:data:`FORMATS`: 16, 61, 80, 24, 32 and the packed 12-bit 212), only the samples of the
  channel read; physical value = (sample - baseline) / gain, in the header's unit (``mV`` for
  ECG and EEG in slpdb). WFDB's invalid-sample codes become NaN. The decoding was checked
  against ``wfdb.rdrecord`` for every format (tests/test_registry_formats.py).
* **Limits**: rate and length are checked against :mod:`s2v_core.limits.bounds`, and every
  signal file must hold the samples the header declares, before any sample is read.

Examples
--------
>>> with open_wfdb_signals("slp01a.hea") as rec:  # doctest: +SKIP
...     x, fs = rec.read_channel("EEG (C4-A1)")
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2v_core.errors import InputFileError
from s2v_core.io.edf_header import ChannelInfo, RecordingHeader
from s2v_core.io.wfdb_header import WfdbHeader, read_wfdb_header
from s2v_core.limits.bounds import check_duration, check_rate, describe_bytes, describe_seconds

__all__ = [
    "FILE_TYPE",
    "FORMATS",
    "WfdbSignals",
    "has_wfdb_signals",
    "open_wfdb_signals",
    "record_base",
    "signal_files",
]

log = logging.getLogger(__name__)

FILE_TYPE = "WFDB"
""":attr:`RecordingHeader.file_type` of a WFDB signal record (it holds no EDF+ annotations)."""

FORMATS: dict[int, str] = {
    16: "16-bit little-endian",
    61: "16-bit big-endian",
    80: "8-bit offset binary",
    24: "24-bit little-endian",
    32: "32-bit little-endian",
    212: "12-bit packed (two samples in three bytes)",
}
"""WFDB signal file formats read here: code -> description."""

_BITS = {16: 16, 61: 16, 80: 8, 24: 24, 32: 32, 212: 12}
_INVALID = {16: -(2**15), 61: -(2**15), 80: -128, 24: -(2**23), 32: -(2**31), 212: -2048}
_RECORD_SUFFIXES = (".hea", ".dat", ".ecg", ".st", ".atr", ".qrs")
_FORMAT = re.compile(r"^(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>\d+))?(?:\+(?P<offset>\d+))?$")
_GAIN = re.compile(r"^(?P<gain>[-+0-9.eE]+)(?:\((?P<baseline>-?\d+)\))?(?:/(?P<units>.+))?$")


def record_base(path: str | Path) -> Path:
    """The record's base path, without suffix: ``slp01a.hea``/``.dat``/``.ecg``/``.st`` -> ``slp01a``."""
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in _RECORD_SUFFIXES else p


def signal_files(header_path: str | Path) -> list[str]:
    """Names of the signal files the header's signal lines name (empty for an annotation-only header)."""
    try:
        header = read_wfdb_header(header_path)
    except InputFileError:
        return []
    return list(dict.fromkeys(t[0] for t in header.signal_lines if t))


def has_wfdb_signals(path: str | Path) -> bool:
    """True when the record's header names signal files and they are all beside it."""
    header = record_base(path).with_suffix(".hea")
    if not header.is_file():
        return False
    files = signal_files(header)
    return bool(files) and all(name != "-" and header.with_name(Path(name).name).is_file() for name in files)


@dataclass(frozen=True)
class _Signal:
    """One signal line: where its samples are and how to scale them."""

    label: str
    file: Path
    fmt: int
    spf: int  # samples per frame
    offset: int  # bytes before the first frame
    gain: float  # digital units per physical unit
    baseline: int
    units: str


def _signal(header_path: Path, tokens: tuple[str, ...], index: int) -> _Signal:
    """Parse ``file fmt[xspf][:skew][+offset] [gain[(baseline)][/units] [res [zero [init [sum [block [desc]]]]]]]``."""
    where = f"signal line {index + 1}"
    m = _FORMAT.match(tokens[1]) if len(tokens) > 1 else None
    if m is None:
        raise InputFileError(header_path, f"{where}: cannot read its format {tokens[1:2]!r}")
    fmt = int(m["fmt"])
    if fmt not in FORMATS:
        raise InputFileError(header_path, f"{where}: signal format {fmt} is not read here (formats read: "
                                          f"{', '.join(str(f) for f in FORMATS)})")  # fmt: skip
    gain, baseline, units = 200.0, None, "mV"  # the WFDB defaults
    if len(tokens) > 2:
        g = _GAIN.match(tokens[2])
        if g is None:
            raise InputFileError(header_path, f"{where}: cannot read its gain {tokens[2][:40]!r}")
        gain = float(g["gain"]) or 200.0  # 0: uncalibrated, WFDB reads it as the default
        baseline = int(g["baseline"]) if g["baseline"] is not None else None
        units = g["units"] or units
    if baseline is None:  # the ADC zero (token 5) when no baseline is written
        baseline = int(tokens[4]) if len(tokens) > 4 and re.fullmatch(r"-?\d+", tokens[4]) else 0
    label = " ".join(tokens[8:]).strip() or f"signal {index}"
    if not np.isfinite(gain):
        raise InputFileError(header_path, f"{where}: gain {tokens[2][:40]!r} is not a number")
    return _Signal(label, header_path.with_name(Path(tokens[0]).name), fmt, int(m["spf"] or 1),
                   int(m["offset"] or 0), gain, baseline, units)  # fmt: skip


class WfdbSignals:
    """A WFDB signal record with the reading interface of :class:`s2v_core.io.edf.EdfRecording`.

    Attributes
    ----------
    header : RecordingHeader
        File type :data:`FILE_TYPE`; each channel's ``dimension`` is the unit the header
        declares, the unit :meth:`read_channel` returns.
    warnings : list of str
        What reading the header noticed (no start date...).
    reader : str
        ``"wfdb"``.
    """

    reader = "wfdb"

    def __init__(self, wfdb_header: WfdbHeader, signals: list[_Signal], n_frames: int, warnings: list[str]):
        self._signals = signals
        self._n_frames = n_frames
        labels: list[str] = []
        channels = []
        for i, s in enumerate(signals):
            label = s.label
            while label in labels:  # two signals described alike: keep both, told apart
                label += "'"
            labels.append(label)
            channels.append(ChannelInfo(i, label, wfdb_header.fs * s.spf, s.units, np.nan, np.nan, 0, 0))
        self.warnings = list(warnings)
        self.header = RecordingHeader(
            path=str(wfdb_header.path),
            file_type=FILE_TYPE,
            start_time=wfdb_header.start,
            n_records=1,
            record_duration=n_frames / wfdb_header.fs,
            channels=channels,
            file_size=sum(f.stat().st_size for f in {s.file for s in signals}),
        )

    def __enter__(self) -> WfdbSignals:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def read_channel(self, label: str) -> tuple[np.ndarray, float]:
        """Samples of one channel in its declared unit (float32, NaN where invalid), and its rate."""
        info = self.header.channel(label)
        s = self._signals[info.index]
        same_file = [t for t in self._signals if t.file == s.file]
        frame = sum(t.spf for t in same_file)
        column = sum(t.spf for t in same_file[: same_file.index(s)])
        digital = _decode(s, frame, column, self._n_frames)
        x = (digital.astype(np.float64) - s.baseline) / s.gain
        x[digital == _INVALID[s.fmt]] = np.nan
        return x.astype(np.float32), info.sfreq


def _decode(s: _Signal, frame: int, column: int, n_frames: int) -> np.ndarray:
    """The digital samples of one signal (int32), from a memory map of its file."""
    raw = np.memmap(s.file, dtype=np.uint8, mode="r", offset=s.offset)
    if s.fmt in (16, 61, 32, 80):  # whole bytes per sample: a strided view of the frames
        dtype = {16: "<i2", 61: ">i2", 32: "<i4", 80: "u1"}[s.fmt]
        size = np.dtype(dtype).itemsize
        words = raw[: n_frames * frame * size].view(dtype).reshape(n_frames, frame)
        out = words[:, column : column + s.spf].reshape(-1).astype(np.int32)
        return out - 128 if s.fmt == 80 else out
    k = (np.arange(n_frames, dtype=np.int64)[:, None] * frame + column + np.arange(s.spf)).reshape(-1)
    if s.fmt == 212:
        p = (k // 2) * 3
        odd = (k % 2).astype(bool)
        b1 = raw[p + 1].astype(np.int32)
        lo = np.where(odd, raw[np.minimum(p + 2, raw.size - 1)].astype(np.int32), raw[p].astype(np.int32))
        v = lo | np.where(odd, (b1 & 0xF0) << 4, (b1 & 0x0F) << 8)
        return np.where(v >= 2048, v - 4096, v).astype(np.int32)
    b = [raw[3 * k + i].astype(np.int32) for i in range(3)]  # format 24
    v = b[0] | (b[1] << 8) | (b[2] << 16)
    return np.where(v >= 2**23, v - 2**24, v).astype(np.int32)


def open_wfdb_signals(path: str | Path) -> WfdbSignals:
    """Open the WFDB signal record ``path`` (its ``.hea``, ``.dat`` or base name).

    Raises
    ------
    InputFileError
        No header, a header without signals (an annotation-only record) or of a multi-segment
        record, a format not read here, a missing or too small signal file, or a rate or
        length outside the accepted limits.
    """
    header_path = record_base(path).with_suffix(".hea")
    if not header_path.is_file():
        raise InputFileError(header_path, "WFDB header not found; give the record's .hea with its .dat")
    h = read_wfdb_header(header_path)
    first = header_path.read_text(encoding="latin-1", errors="replace").lstrip().split(None, 1)
    if first and "/" in first[0]:
        raise InputFileError(header_path, "a multi-segment WFDB record: not read here (give one segment's record)")
    if not h.signal_lines:
        raise InputFileError(header_path, "the WFDB header lists no signals (an annotation-only record)")
    signals = [_signal(header_path, tokens, i) for i, tokens in enumerate(h.signal_lines)]
    check_rate(header_path, h.fs * max(s.spf for s in signals), "the WFDB header: the fastest signal")
    warnings: list[str] = []
    if h.start is None:
        warnings.append("the WFDB header gives no start date: start time unknown"
                        + (f" ({h.time_problem})" if h.time_problem else ""))  # fmt: skip
    files = list(dict.fromkeys(s.file for s in signals))
    frames, bits = [], {}
    for name in files:
        if not name.is_file():
            raise InputFileError(header_path, f"its signal file {name.name} is not beside it; give all files "
                                              "of the record (.hea, .dat and any annotations)")  # fmt: skip
        in_file = [s for s in signals if s.file == name]
        bits[name] = sum(_BITS[s.fmt] * s.spf for s in in_file)
        frames.append(int((name.stat().st_size - in_file[0].offset) * 8 // bits[name]))
    available = min(frames)
    n = h.sig_len if h.sig_len is not None else available
    check_duration(header_path, n / h.fs, f"the WFDB header declares {n} samples at {h.fs:g} Hz: the record")
    if available < n:
        short = files[frames.index(available)]
        declared, size = n * bits[short] / 8, short.stat().st_size
        if size < 0.99 * declared - 1024:
            raise InputFileError(
                header_path,
                f"the WFDB header declares {n} samples ({describe_seconds(n / h.fs)}) but {short.name} holds "
                f"{describe_bytes(size)}, not the {describe_bytes(declared)} they take; the header does not "
                "belong to its signal file",
            )
        warnings.append(f"the signal file ends {n - available} samples before the header's length; read to its end")
        n = available
    if n <= 0:
        raise InputFileError(header_path, "the WFDB record holds no samples")
    return WfdbSignals(h, signals, n, warnings)
