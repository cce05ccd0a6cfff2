"""The EDF/EDF+/BDF header: what a file declares, validated before any library reads it.

:func:`check_header` reads the fixed header, the signal headers and, for discontinuous EDF+D/BDF+D
files, the time-keeping annotation of every data record; it refuses defects with a message that
names the problem and returns the rest as warnings. Identifying fields (patient name, birth date,
patient code) are not part of :class:`RecordingHeader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from s2v_core.errors import InputFileError
from s2v_core.limits.bounds import (
    MAX_RECORDING_S,
    MAX_SFREQ_HZ,
    check_duration,
    check_rate,
    describe_bytes,
    describe_seconds,
)

__all__ = [
    "ANNOTATION_LABELS",
    "MAX_SFREQ_HZ",
    "MAX_TIMELINE_SAMPLES",
    "ONSET_TOLERANCE_S",
    "RECORD_COUNT_STATES",
    "ChannelInfo",
    "RecordingHeader",
    "check_header",
    "data_records",
    "float_or_nan",
    "header_field",
]

ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")

# Record onsets that differ from back-to-back by less than this are taken as contiguous (writers
# round onsets, e.g. to the millisecond); a larger step backwards is an overlap and an error.
ONSET_TOLERANCE_S = 1e-3
# EDF+D gaps may stretch a channel to at most this many samples (or 4x its recorded samples):
# 2**26 is 24 h at 776 Hz, and 256 MiB of float32.
MAX_TIMELINE_SAMPLES = 2**26
# MAX_SFREQ_HZ (fastest channel accepted; a faster one means a corrupt record duration, e.g. a
# subnormal 1e-309 s that is positive yet makes samples / duration infinite) and the other limits
# on what a header may declare live in s2v_core.limits.
RECORD_COUNT_STATES = ("ok", "truncated", "unknown", "extra")
""":attr:`RecordingHeader.record_count`: the declared record count matches the file; it declares
more records than the file holds; it is -1 (recording not closed); the file holds more."""


@dataclass
class ChannelInfo:
    """Header of one signal channel."""

    index: int  # position in the file
    label: str
    sfreq: float  # Hz, samples per record / record duration
    dimension: str  # physical dimension as written ("uV", "mV", "%", ...)
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefilter: str = ""
    transducer: str = ""
    samples_per_record: int = 0
    record_offset: int = 0  # bytes from the start of a data record to this channel's samples


@dataclass
class RecordingHeader:
    """What the file header says, minus anything that identifies a person."""

    path: str
    file_type: str  # "EDF", "EDF+C", "EDF+D", "BDF", "BDF+C", "BDF+D"
    start_time: datetime | None
    n_records: int
    record_duration: float  # seconds
    channels: list[ChannelInfo]
    file_size: int
    warnings: list[str] = field(default_factory=list)
    # EDF+D: (onset_s, duration_s) of each run of missing data, onset from the first record's start
    gaps: list[tuple[float, float]] = field(default_factory=list)
    # EDF+D only: start of each data record in s from the header start time, shape (n_records,);
    # jitter below ONSET_TOLERANCE_S removed. None: the records are back to back.
    record_onsets: np.ndarray | None = field(default=None, repr=False, compare=False)
    header_bytes: int = 0
    record_bytes: int = 0  # bytes per data record, all signals
    annotation_span: tuple[int, int] | None = None  # (byte offset, bytes) of the first TAL signal
    # how the declared record count compares with the file (one of RECORD_COUNT_STATES); anything
    # but "ok" makes open_recording use a reader that tolerates it
    record_count: str = "ok"

    @property
    def duration_s(self) -> float:
        """Seconds from the first data record's start to the last one's end, gaps included."""
        if self.record_onsets is None:
            return self.n_records * self.record_duration
        return float(self.record_onsets[-1] - self.record_onsets[0]) + self.record_duration

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.channels]

    def channel(self, label: str) -> ChannelInfo:
        for c in self.channels:
            if c.label == label:
                return c
        raise KeyError(label)


def header_field(raw: bytes, start: int, width: int) -> str:
    # NUL padding is not EDF but occurs; treat it as the spaces the spec asks for (as MNE does)
    return raw[start : start + width].decode("latin-1").replace("\x00", " ").strip()


def check_header(path: str | Path) -> RecordingHeader:
    """Validate the fixed EDF/BDF header and return what it declares.

    This reads the header bytes and, for EDF+D/BDF+D, the time-keeping TAL of every data record
    (a few bytes each), from which :attr:`RecordingHeader.gaps` and ``duration_s`` follow. It
    raises :class:`InputFileError` with a specific message for: an empty or tiny file, a file
    that is not EDF/BDF, unreadable numeric fields, a channel count or record count that does not
    fit the file, physical min == max, digital min >= max, an annotation-only file, a record
    duration that makes a channel faster than :data:`MAX_SFREQ_HZ`, and EDF+D record onsets that
    are missing, go backwards or overlap. What the header declares is checked against
    :mod:`s2v_core.limits.bounds` before anything is read: a data record larger than the data in the file,
    a record or a recording (EDF+D gaps included) over 72 h, a channel slower than one sample per
    300 s. :attr:`RecordingHeader.record_count` says how the declared record count compares with
    the file.
    Problems that leave the file usable (truncated data records, a digital range outside the
    16-bit EDF range) are returned as warnings.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file not found")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(p, "the file is empty (0 bytes)")
    fixed = _read_fixed_header(p, size)
    channels, warnings, layout = _parse_channels(p, fixed)
    if not channels:  # before the record checks: annotation-only files may declare 0-s records
        raise InputFileError(
            p,
            "the file has no signal channels (only annotations); "
            "if it is a hypnogram, give it as the hypnogram of a recording",
        )
    _check_declared_sizes(p, fixed, channels, layout.record_bytes, size)
    n_records, record_count = _complete_records(p, fixed, layout.record_bytes, size, warnings)
    _check_fastest_rate(p, channels, fixed.record_duration)
    _check_slowest_rate(p, channels, fixed.record_duration)
    check_duration(
        p, n_records * fixed.record_duration,
        f"{n_records} data records of {fixed.record_duration:g} s: the recording",
    )
    onsets, gaps = None, []
    if fixed.kind.endswith("+D"):
        onsets, gaps = _discontinuous_timeline(p, fixed, layout, n_records, channels, warnings)
    return RecordingHeader(
        path=str(p),
        file_type=fixed.kind,
        start_time=_parse_start(fixed.head),
        n_records=n_records,
        record_duration=fixed.record_duration,
        channels=channels,
        file_size=size,
        warnings=warnings,
        gaps=gaps,
        record_onsets=onsets,
        header_bytes=fixed.header_bytes,
        record_bytes=layout.record_bytes,
        annotation_span=layout.annotation_span,
        record_count=record_count,
    )


@dataclass(frozen=True)
class _FixedHeader:
    """The first 256 bytes, decoded, plus the raw signal headers."""

    head: bytes
    signal_headers: bytes
    kind: str  # "EDF", "EDF+C", "EDF+D", "BDF", ...
    header_bytes: int
    n_records: int  # as declared (-1: recording not closed)
    record_duration: float
    n_signals: int

    @property
    def is_bdf(self) -> bool:
        return self.kind.startswith("BDF")


@dataclass(frozen=True)
class _RecordLayout:
    record_bytes: int  # bytes per data record, all signals
    annotation_span: tuple[int, int] | None  # (byte offset, bytes) of the first TAL signal


def _read_fixed_header(p: Path, size: int) -> _FixedHeader:
    """Read and check the fixed 256-byte header and the signal headers that follow it."""
    with open(p, "rb") as fh:
        head = fh.read(256)
        if len(head) < 256:
            raise InputFileError(p, f"not an EDF/BDF file: only {size} bytes, a header needs 256")
        is_bdf = head[:8] == b"\xffBIOSEMI"
        if not is_bdf and head[:8] != b"0       ":
            raise InputFileError(
                p, "not an EDF/BDF file: the first 8 bytes are not the EDF version field '0'"
            )
        try:
            header_bytes = int(header_field(head, 184, 8))
            n_records = int(header_field(head, 236, 8))
            record_duration = float(header_field(head, 244, 8))
            n_signals = int(header_field(head, 252, 4))
        except ValueError as exc:
            raise InputFileError(
                p, f"corrupt EDF header: a numeric field is unreadable ({exc})"
            ) from None
        if not 0 < n_signals <= 4096:
            raise InputFileError(p, f"corrupt EDF header: {n_signals} signals declared")
        if header_bytes != 256 * (n_signals + 1):
            raise InputFileError(
                p,
                f"corrupt EDF header: header size {header_bytes} bytes does not match "
                f"{n_signals} signals (expected {256 * (n_signals + 1)})",
            )
        signal_headers = fh.read(256 * n_signals)
        if len(signal_headers) < 256 * n_signals:
            raise InputFileError(p, "truncated EDF: the file ends inside the signal headers")
    reserved = header_field(head, 192, 44)
    kind = "BDF" if is_bdf else "EDF"
    if reserved.startswith(("EDF+C", "BDF+C")):
        kind += "+C"
    elif reserved.startswith(("EDF+D", "BDF+D")):
        kind += "+D"
    return _FixedHeader(head, signal_headers, kind, header_bytes, n_records, record_duration, n_signals)


def _signal_columns(fixed: _FixedHeader) -> dict[str, list[str]]:
    """The signal-header fields, one list of ``n_signals`` strings per field."""
    ns, raw = fixed.n_signals, fixed.signal_headers
    widths = (("label", 16), ("transducer", 80), ("dimension", 8), ("physical_min", 8),
              ("physical_max", 8), ("digital_min", 8), ("digital_max", 8), ("prefilter", 80),
              ("samples", 8))
    out, base = {}, 0
    for name, width in widths:
        out[name] = [header_field(raw, base + i * width, width) for i in range(ns)]
        base += width * ns
    return out


def _parse_channels(p: Path, fixed: _FixedHeader) -> tuple[list[ChannelInfo], list[str], _RecordLayout]:
    """Signal channels (annotation signals left out), header warnings and the record layout."""
    cols = _signal_columns(fixed)
    labels = cols["label"]
    warnings: list[str] = []
    channels: list[ChannelInfo] = []
    bytes_per_sample = 3 if fixed.is_bdf else 2
    dig_lo, dig_hi = (-(2**23), 2**23 - 1) if fixed.is_bdf else (-32768, 32767)
    kind, record_duration = fixed.kind, fixed.record_duration
    samples_per_record = 0
    annotation_span = None
    for i in range(fixed.n_signals):
        try:
            pmin, pmax = float(cols["physical_min"][i]), float(cols["physical_max"][i])
            dmin, dmax = int(float(cols["digital_min"][i])), int(float(cols["digital_max"][i]))
            nsamp = int(cols["samples"][i])
            if not np.isfinite([pmin, pmax]).all():
                raise ValueError("non-finite physical range")
        except (ValueError, OverflowError):  # int(float("1e999")) overflows
            raise InputFileError(
                p,
                f"corrupt EDF header: channel {labels[i]!r} has an unreadable min/max or sample count",
            ) from None
        offset = samples_per_record * bytes_per_sample
        samples_per_record += nsamp
        if nsamp <= 0:
            raise InputFileError(p, f"channel {labels[i]!r} declares {nsamp} samples per record")
        if labels[i] in ANNOTATION_LABELS:
            if annotation_span is None and kind != kind[:3]:
                annotation_span = (offset, nsamp * bytes_per_sample)
            continue
        if pmin == pmax:
            raise InputFileError(
                p,
                f"channel {labels[i]!r}: physical minimum equals physical maximum ({pmin}); "
                "the signal cannot be scaled",
            )
        if dmin >= dmax:
            raise InputFileError(
                p,
                f"channel {labels[i]!r}: digital minimum {dmin} is not below digital maximum {dmax}",
            )
        if dmin < dig_lo or dmax > dig_hi:
            warnings.append(
                f"channel {labels[i]!r}: digital range {dmin}..{dmax} is outside the {kind[:3]} "
                f"range {dig_lo}..{dig_hi} (non-compliant header)"
            )
        sfreq = nsamp / record_duration if record_duration > 0 else float("nan")
        ch = ChannelInfo(i, labels[i], sfreq, cols["dimension"][i], pmin, pmax, dmin, dmax)
        ch.prefilter, ch.transducer, ch.samples_per_record = cols["prefilter"][i], cols["transducer"][i], nsamp
        ch.record_offset = offset
        channels.append(ch)
    return channels, warnings, _RecordLayout(samples_per_record * bytes_per_sample, annotation_span)


def _check_declared_sizes(
    p: Path, fixed: _FixedHeader, channels: list[ChannelInfo], record_bytes: int, size: int
) -> None:
    """Refuse a record duration over the longest recording, or a record larger than the data.

    Before anything else uses the record layout: these two fields (with the record count, which
    :func:`_complete_records` bounds by the file) size every array a reader makes.
    """
    record_duration = fixed.record_duration
    if np.isfinite(record_duration) and record_duration > MAX_RECORDING_S:
        check_duration(p, record_duration, "corrupt EDF header: one data record")
    data_bytes = size - fixed.header_bytes
    if record_bytes > max(data_bytes, 0) and fixed.n_records != 0:
        widest = max(channels, key=lambda c: c.samples_per_record)
        raise InputFileError(
            p,
            f"the file contains no complete data record: one record takes "
            f"{describe_bytes(record_bytes)} (channel {widest.label!r} declares "
            f"{widest.samples_per_record} samples per record) but the file holds "
            f"{describe_bytes(max(data_bytes, 0))} of data",
        )


def _complete_records(
    p: Path, fixed: _FixedHeader, record_bytes: int, size: int, warnings: list[str]
) -> tuple[int, str]:
    """The number of data records to read (the declared count, checked against the file size),
    and how the declared count compares with the file (one of :data:`RECORD_COUNT_STATES`)."""
    record_duration, n_records = fixed.record_duration, fixed.n_records
    state = "ok"
    if not np.isfinite(record_duration) or (record_duration <= 0 and n_records != 0):
        raise InputFileError(p, f"corrupt EDF header: record duration {record_duration} s")
    data_bytes = size - fixed.header_bytes
    available_records = data_bytes // record_bytes if record_bytes else 0
    if n_records == -1:
        state = "unknown"
        warnings.append(
            f"header record count is -1 (recording not closed); {available_records} records in the file"
        )
        n_records = available_records
    elif available_records < n_records:
        state = "truncated"
        warnings.append(
            f"truncated file: the header declares {n_records} data records but only "
            f"{available_records} are complete; the last "
            f"{(n_records - available_records) * record_duration:.0f} s are missing and were dropped"
        )
        n_records = available_records
    elif available_records > n_records:
        state = "extra"
        warnings.append(
            f"the file holds {available_records - n_records} more data records than its header "
            "declares; they were ignored"
        )
    if n_records <= 0:
        raise InputFileError(p, "the file contains no complete data record")
    return n_records, state


def _check_fastest_rate(p: Path, channels: list[ChannelInfo], record_duration: float) -> None:
    fastest = max(channels, key=lambda c: c.samples_per_record)
    if not fastest.samples_per_record / record_duration <= MAX_SFREQ_HZ:  # also catches inf
        raise InputFileError(
            p,
            f"corrupt EDF header: record duration {record_duration:g} s gives channel "
            f"{fastest.label!r} {fastest.samples_per_record / record_duration:.3g} Hz "
            f"(over {MAX_SFREQ_HZ:.0e} Hz)",
        )


def _check_slowest_rate(p: Path, channels: list[ChannelInfo], record_duration: float) -> None:
    slowest = min(channels, key=lambda c: c.samples_per_record)
    check_rate(
        p, slowest.samples_per_record / record_duration,
        f"corrupt EDF header: channel {slowest.label!r} ({slowest.samples_per_record} samples per "
        f"{describe_seconds(record_duration)} record)",
    )


def _discontinuous_timeline(
    p: Path, fixed: _FixedHeader, layout: _RecordLayout, n_records: int,
    channels: list[ChannelInfo], warnings: list[str],
) -> tuple[np.ndarray | None, list[tuple[float, float]]]:
    """EDF+D/BDF+D: each record's onset (from its time-keeping TAL) and the gaps between them."""
    if layout.annotation_span is None:
        warnings.append(
            f"{fixed.kind} file without an annotation signal: the record start times are unknown; "
            "the records were read as contiguous"
        )
        return None, []
    onsets = _record_onsets(p, fixed.header_bytes, layout.record_bytes, n_records, layout.annotation_span)
    onsets, gaps, gap_warnings = _find_gaps(p, onsets, fixed.record_duration, fixed.kind)
    warnings.extend(gap_warnings)
    _check_span(p, onsets, n_records, fixed.record_duration, channels, fixed.kind)
    check_duration(
        p, float(onsets[-1] - onsets[0]) + fixed.record_duration,
        f"{fixed.kind}: from the first record's start to the last one's end, the recording",
    )
    return onsets, gaps


def _parse_start(head: bytes) -> datetime | None:
    date_s, time_s = header_field(head, 168, 8), header_field(head, 176, 8)
    try:
        dd, mm, yy = (int(x) for x in date_s.split("."))
        hh, mi, ss = (int(x) for x in time_s.split("."))
        year = 1900 + yy if yy >= 85 else 2000 + yy  # EDF spec: 85-99 -> 19xx
        return datetime(year, mm, dd, hh, mi, ss)
    except (ValueError, TypeError):
        return None



def data_records(path: str | Path, header_bytes: int, record_bytes: int, n_records: int) -> np.memmap:
    """The data records as a read-only byte matrix, shape (n_records, record_bytes), uint8."""
    return np.memmap(path, np.uint8, "r", offset=header_bytes, shape=(n_records, record_bytes))


def _record_onsets(
    path: Path, header_bytes: int, record_bytes: int, n_records: int, span: tuple[int, int]
) -> np.ndarray:
    """Start of each data record in seconds, from its time-keeping TAL; shape (n_records,)."""
    width = min(span[1], 48)  # "+<onset>\x14\x14" fits easily
    mm = data_records(path, header_bytes, record_bytes, n_records)
    head = np.ascontiguousarray(mm[:, span[0] : span[0] + width])  # (n_records, width)
    del mm
    parts = np.char.partition(head.view(f"S{width}").ravel(), b"\x14")  # (n_records, 3)
    text = parts[:, 0]
    ok = (parts[:, 1] == b"\x14") & (
        np.char.startswith(text, b"+") | np.char.startswith(text, b"-")
    )
    try:
        onsets = np.where(ok, text, b"nan").astype(np.float64)
    except ValueError:  # rare: garbage after the sign; find it record by record
        onsets = np.array(
            [float_or_nan(t) if k else np.nan for t, k in zip(text, ok, strict=True)]
        )
    bad = np.flatnonzero(~np.isfinite(onsets))
    if bad.size:
        raise InputFileError(
            path,
            f"EDF+D data record {bad[0] + 1} of {n_records} does not begin with a time-keeping "
            "annotation ('+<seconds>' then bytes 0x14 0x14), so its start time is unknown",
        )
    return onsets


def float_or_nan(text: bytes) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _find_gaps(
    path: Path, onsets: np.ndarray, record_duration: float, kind: str
) -> tuple[np.ndarray, list[tuple[float, float]], list[str]]:
    """Check record onsets and list the gaps between records.

    Returns the onsets with jitter below :data:`ONSET_TOLERANCE_S` removed (shape (n_records,),
    seconds from the header start time), the gaps as ``(onset_s, duration_s)`` measured from the
    first record's start, and warnings.
    """
    # (n_records - 1,) seconds from each record's end to the next record's start
    step = np.diff(onsets) - record_duration
    back = np.flatnonzero(step < -ONSET_TOLERANCE_S)
    if back.size:
        r = int(back[0])
        raise InputFileError(
            path,
            f"{kind} record start times go backwards or overlap: data record {r + 2} starts at "
            f"{onsets[r + 1]:.3f} s, before data record {r + 1} (from {onsets[r]:.3f} s) ends at "
            f"{onsets[r] + record_duration:.3f} s; record onsets must increase by at least the "
            f"record duration ({record_duration:g} s)",
        )
    # Each record starts where the previous one ends unless its onset is later by more than the
    # tolerance; comparing with the cleaned previous onset keeps sub-tolerance steps from adding
    # up to an unnoticed drift. A loop, but over a few bytes' worth of values per record.
    clean, gaps = onsets.tolist(), []
    for r in range(1, len(clean)):
        expected = clean[r - 1] + record_duration
        if clean[r] - expected > ONSET_TOLERANCE_S:
            gaps.append((expected - clean[0], clean[r] - expected))
        else:
            clean[r] = expected
    warnings = []
    if onsets[0] >= 1.0:
        warnings.append(
            f"{kind}: the first data record starts {onsets[0]:.3f} s after the header start time "
            "(the EDF+ specification allows under 1 s); time zero is the first record's start"
        )
    if gaps:
        total = sum(g for _, g in gaps)
        span = f"{total / 60:.1f} min" if total >= 60 else f"{total:.1f} s"
        warnings.append(
            f"{kind}: {len(gaps)} gap{'s' if len(gaps) > 1 else ''} totalling {span}; "
            "samples there are missing (NaN)"
        )
    return np.asarray(clean), gaps, warnings


def _check_span(
    path: Path,
    onsets: np.ndarray,
    n_records: int,
    record_duration: float,
    channels: list[ChannelInfo],
    kind: str,
) -> None:
    """Refuse record onsets whose gaps would blow one channel up past any plausible size."""
    span_s = float(onsets[-1] - onsets[0]) + record_duration
    recorded_s = n_records * record_duration
    most = max(c.sfreq for c in channels)
    if span_s * most > max(MAX_TIMELINE_SAMPLES, 4 * recorded_s * most):
        raise InputFileError(
            path,
            f"{kind} record start times span {span_s / 3600:.3g} h for {recorded_s / 3600:.3g} h "
            "of data; the gaps are implausibly long (corrupt time-keeping annotations?)",
        )
