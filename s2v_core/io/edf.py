"""Reading EDF, EDF+ and BDF recordings channel by channel.

pyedflib is the primary reader. Files whose headers it refuses (the DREAMS excerpts, whose digital
range exceeds int16; truncated files; unknown record counts) are read with MNE instead, and the
recording says which reader was used. Before either library sees a file, :func:`check_header`
validates the fixed header so that common defects give a message that names the problem instead
of a library traceback.

Discontinuous EDF+D/BDF+D files are read by this module itself (reader ``"native"``): pyedflib
0.1.x refuses every EDF+D file ("The file is discontinuous and cannot be read"), even one whose
records happen to be contiguous, and MNE 1.x reads one as if it were contiguous (the records are
concatenated, so everything after a gap is shifted earlier; lower-rate channels are upsampled
across the joins; annotations past the shortened end are dropped). Each data record's start comes
from the time-keeping TAL ``+<onset>\\x14\\x14\\x00`` that opens its annotation signal; the
samples are placed on the continuous timeline from the first record to the end of the last one,
with NaN in the gaps (:attr:`RecordingHeader.gaps`).

Only the requested channels are read, one at a time, so memory stays at one channel's samples
(plus the output) whatever the file size. When labels repeat, the first channel with the label is
read (``header.labels`` keeps the file's labels; MNE would rename them ``A-0``, ``A-1``).

Identifying header fields (patient name, birth date, patient code) are kept out of logs, warnings
and summaries; :meth:`EdfRecording.identifying_fields` returns them only when asked.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from s2v_core.errors import InputFileError

log = logging.getLogger(__name__)

ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")

# Record onsets that differ from back-to-back by less than this are taken as contiguous (writers
# round onsets, e.g. to the millisecond); a larger step backwards is an overlap and an error.
ONSET_TOLERANCE_S = 1e-3
# EDF+D gaps may stretch a channel to at most this many samples (or 4x its recorded samples):
# 2**26 is 24 h at 776 Hz, and 256 MiB of float32.
MAX_TIMELINE_SAMPLES = 2**26
# Fastest sampling rate accepted, Hz: far above any biosignal; a faster one means a corrupt record
# duration (a subnormal 1e-309 s is positive yet makes samples / duration infinite).
MAX_SFREQ_HZ = 1e6


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


def _field(raw: bytes, start: int, width: int) -> str:
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
    are missing, go backwards or overlap.
    Problems that leave the file usable (truncated data records, a digital range outside the
    16-bit EDF range) are returned as warnings.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file not found")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(p, "the file is empty (0 bytes)")
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
            header_bytes = int(_field(head, 184, 8))
            n_records = int(_field(head, 236, 8))
            record_duration = float(_field(head, 244, 8))
            n_signals = int(_field(head, 252, 4))
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
        sig = fh.read(256 * n_signals)
        if len(sig) < 256 * n_signals:
            raise InputFileError(p, "truncated EDF: the file ends inside the signal headers")
    reserved = _field(head, 192, 44)
    kind = "BDF" if is_bdf else "EDF"
    if reserved.startswith("EDF+C") or reserved.startswith("BDF+C"):
        kind += "+C"
    elif reserved.startswith("EDF+D") or reserved.startswith("BDF+D"):
        kind += "+D"
    ns = n_signals

    def col(offset: int, width: int) -> list[str]:
        base = offset * ns
        return [_field(sig, base + i * width, width) for i in range(ns)]

    labels = col(0, 16)
    transducers = col(16, 80)
    dims = col(96, 8)
    offsets_after_dim = 104
    pmin_s = col(offsets_after_dim, 8)
    pmax_s = col(offsets_after_dim + 8, 8)
    dmin_s = col(offsets_after_dim + 16, 8)
    dmax_s = col(offsets_after_dim + 24, 8)
    prefilters = col(offsets_after_dim + 32, 80)
    nsamp_s = col(offsets_after_dim + 112, 8)
    warnings: list[str] = []
    channels: list[ChannelInfo] = []
    bytes_per_sample = 3 if is_bdf else 2
    dig_lo, dig_hi = (-(2**23), 2**23 - 1) if is_bdf else (-32768, 32767)
    samples_per_record = 0
    annotation_span = None
    for i in range(ns):
        try:
            pmin, pmax = float(pmin_s[i]), float(pmax_s[i])
            dmin, dmax = int(float(dmin_s[i])), int(float(dmax_s[i]))
            nsamp = int(nsamp_s[i])
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
        ch = ChannelInfo(i, labels[i], sfreq, dims[i], pmin, pmax, dmin, dmax)
        ch.prefilter, ch.transducer, ch.samples_per_record = prefilters[i], transducers[i], nsamp
        ch.record_offset = offset
        channels.append(ch)
    if not channels:  # before the record checks: annotation-only files may declare 0-s records
        raise InputFileError(
            p,
            "the file has no signal channels (only annotations); "
            "if it is a hypnogram, give it as the hypnogram of a recording",
        )
    if not np.isfinite(record_duration) or (record_duration <= 0 and n_records != 0):
        raise InputFileError(p, f"corrupt EDF header: record duration {record_duration} s")
    record_bytes = samples_per_record * bytes_per_sample
    data_bytes = size - header_bytes
    available_records = data_bytes // record_bytes if record_bytes else 0
    if n_records == -1:
        warnings.append(
            f"header record count is -1 (recording not closed); {available_records} records in the file"
        )
        n_records = available_records
    elif available_records < n_records:
        warnings.append(
            f"truncated file: the header declares {n_records} data records but only "
            f"{available_records} are complete; the last "
            f"{(n_records - available_records) * record_duration:.0f} s are missing and were dropped"
        )
        n_records = available_records
    elif available_records > n_records:
        warnings.append(
            f"the file holds {available_records - n_records} more data records than its header "
            "declares; they were ignored"
        )
    if n_records <= 0:
        raise InputFileError(p, "the file contains no complete data record")
    fastest = max(channels, key=lambda c: c.samples_per_record)
    if not fastest.samples_per_record / record_duration <= MAX_SFREQ_HZ:  # also catches inf
        raise InputFileError(
            p,
            f"corrupt EDF header: record duration {record_duration:g} s gives channel "
            f"{fastest.label!r} {fastest.samples_per_record / record_duration:.3g} Hz "
            f"(over {MAX_SFREQ_HZ:.0e} Hz)",
        )
    onsets, gaps = None, []
    if kind.endswith("+D"):
        if annotation_span is None:
            warnings.append(
                f"{kind} file without an annotation signal: the record start times are unknown; "
                "the records were read as contiguous"
            )
        else:
            onsets = _record_onsets(p, header_bytes, record_bytes, n_records, annotation_span)
            onsets, gaps, gap_warnings = _find_gaps(p, onsets, record_duration, kind)
            warnings.extend(gap_warnings)
            _check_span(p, onsets, n_records, record_duration, channels, kind)
    return RecordingHeader(
        path=str(p),
        file_type=kind,
        start_time=_parse_start(head),
        n_records=n_records,
        record_duration=record_duration,
        channels=channels,
        file_size=size,
        warnings=warnings,
        gaps=gaps,
        record_onsets=onsets,
        header_bytes=header_bytes,
        record_bytes=record_bytes,
        annotation_span=annotation_span,
    )


def _parse_start(head: bytes) -> datetime | None:
    date_s, time_s = _field(head, 168, 8), _field(head, 176, 8)
    try:
        dd, mm, yy = (int(x) for x in date_s.split("."))
        hh, mi, ss = (int(x) for x in time_s.split("."))
        year = 1900 + yy if yy >= 85 else 2000 + yy  # EDF spec: 85-99 -> 19xx
        return datetime(year, mm, dd, hh, mi, ss)
    except (ValueError, TypeError):
        return None


class EdfRecording:
    """An open EDF/EDF+/BDF file from which channels are read one at a time.

    Use :func:`open_recording`. ``reader`` is ``"pyedflib"``, ``"mne"`` or ``"native"`` (this
    module's own record reader, used for EDF+D/BDF+D). A file pyedflib accepts is also mapped
    into memory: its signals are read by the native record reader (the same values as
    pyedflib's ``readSignal``, several times faster), its annotations by pyedflib.
    """

    def __init__(
        self,
        header: RecordingHeader,
        reader: str,
        handle,
        warnings: list[str],
        records: np.ndarray | None = None,
    ):
        self.header = header
        self.reader = reader
        self._handle = handle
        self.warnings = warnings
        self._records = records  # (n_records, record_bytes) uint8 memmap, for fast signal reads
        self._lock = threading.Lock()  # pyedflib's reader seeks a shared file: one read at a time

    # --- context management -------------------------------------------------------------
    def close(self) -> None:
        if self.reader == "pyedflib" and self._handle is not None:
            self._handle.close()
        self._handle = None
        self._records = None

    def __enter__(self) -> EdfRecording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------
    def read_channel(self, label: str) -> tuple[np.ndarray, float]:
        """Physical samples of one channel and its rate.

        Parameters
        ----------
        label : str
            Channel label as in ``header.labels``; when labels repeat, the first such channel.

        Returns
        -------
        x : np.ndarray, shape (round(header.duration_s * sfreq),), float32
            Samples in the file's physical dimension. For EDF+D, on the continuous timeline from
            the first record's start, NaN inside :attr:`RecordingHeader.gaps`.
        sfreq : float
            Sampling rate in Hz (MNE reports the file's highest rate for every channel).
        """
        info = self.header.channel(label)
        if self.reader == "native":
            x = _place_on_timeline(_read_records(self._handle, self.header, info), self.header)
            return x, info.sfreq
        # Both readers list the signal channels in file order without the annotation channel.
        idx = self.header.channels.index(info)
        n_expected = int(round(info.sfreq * self.header.n_records * self.header.record_duration))
        if self.reader == "pyedflib":
            if self._records is not None:  # continuous file pyedflib accepted: same values, faster
                x = _read_records(self._records, self.header, info).ravel()
                if x.size == n_expected:
                    return x, info.sfreq
            with self._lock:
                x = self._handle.readSignal(idx, 0, n_expected).astype(np.float32)
            return x, info.sfreq
        raw = self._handle
        data = raw.get_data(picks=[idx])[0]
        # MNE converts to SI units where it recognises the dimension; undo that so every reader
        # returns values in the file's own physical dimension (converted later, explicitly).
        scale = float(raw._raw_extras[0]["units"][idx])  # private but stable since MNE 0.2x
        x = (data / scale).astype(np.float32)
        sfreq = float(raw.info["sfreq"])
        return x, sfreq

    def read_annotations(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """EDF+ annotations relative to the recording start.

        Returns
        -------
        onsets_s : np.ndarray, shape (K,), float64
            Seconds from the first data record's start.
        durations_s : np.ndarray, shape (K,), float64
            Seconds; NaN where the annotation has none (MNE reports 0 there).
        texts : list of str
            ``K`` annotation texts; the time-keeping TALs are left out.
        """
        if self.reader == "native":
            return _tal_annotations(self._handle, self.header)
        if self.reader == "pyedflib":
            onsets, durations, texts = self._handle.readAnnotations()
            durations = np.asarray(durations, float)
            durations[durations < 0] = np.nan  # pyedflib: -1 = no duration given
            return np.asarray(onsets, float), durations, [str(t) for t in texts]
        ann = self._handle.annotations
        return np.asarray(ann.onset, float), np.asarray(ann.duration, float), list(ann.description)

    def identifying_fields(self) -> dict[str, str]:
        """Patient and recording identification fields. Only call this when the user asks."""
        with open(self.header.path, "rb") as fh:
            head = fh.read(256)
        return {"patient": _field(head, 8, 80), "recording": _field(head, 88, 80)}


def open_recording(path: str | Path) -> EdfRecording:
    """Open an EDF/EDF+/BDF file for channel-by-channel reading.

    Raises
    ------
    InputFileError
        With a message naming the file and the problem when neither reader can use it.
    """
    header = check_header(path)
    warnings = list(header.warnings)
    if header.file_type.endswith("+D"):  # pyedflib refuses EDF+D; MNE would close the gaps
        mm = _records(path, header.header_bytes, header.record_bytes, header.n_records)
        return EdfRecording(header, "native", mm, warnings)
    needs_lenient = any("truncated" in w or "-1" in w or "more data records" in w for w in warnings)
    if not needs_lenient:
        try:
            import pyedflib

            handle = pyedflib.EdfReader(os.fspath(path))
            try:
                records = _records(path, header.header_bytes, header.record_bytes, header.n_records)
            except (OSError, ValueError):  # cannot map: pyedflib reads the signals itself
                records = None
            return EdfRecording(header, "pyedflib", handle, warnings, records)
        except OSError as exc:
            reason = str(exc).split(":", 1)[-1].strip()
            warnings.append(f"pyedflib refused the file ({reason}); read with MNE instead")
    else:
        warnings.append("read with MNE, which tolerates an inconsistent record count")
    try:
        import mne

        raw = (
            mne.io.read_raw_edf(os.fspath(path), preload=False, verbose="error", infer_types=False)
            if not header.file_type.startswith("BDF")
            else mne.io.read_raw_bdf(
                os.fspath(path), preload=False, verbose="error", infer_types=False
            )
        )
    except Exception as exc:  # MNE raises many types for bad files
        raise InputFileError(
            path, f"could not be read as EDF/BDF by pyedflib or MNE: {exc}"
        ) from None
    return EdfRecording(header, "mne", raw, warnings)


# --- EDF+D: record onsets, gaps, and the native record reader ------------------------------


def _records(path: str | Path, header_bytes: int, record_bytes: int, n_records: int) -> np.memmap:
    """The data records as a read-only byte matrix, shape (n_records, record_bytes), uint8."""
    return np.memmap(path, np.uint8, "r", offset=header_bytes, shape=(n_records, record_bytes))


def _record_onsets(
    path: Path, header_bytes: int, record_bytes: int, n_records: int, span: tuple[int, int]
) -> np.ndarray:
    """Start of each data record in seconds, from its time-keeping TAL; shape (n_records,)."""
    width = min(span[1], 48)  # "+<onset>\x14\x14" fits easily
    mm = _records(path, header_bytes, record_bytes, n_records)
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
            [_float_or_nan(t) if k else np.nan for t, k in zip(text, ok, strict=True)]
        )
    bad = np.flatnonzero(~np.isfinite(onsets))
    if bad.size:
        raise InputFileError(
            path,
            f"EDF+D data record {bad[0] + 1} of {n_records} does not begin with a time-keeping "
            "annotation ('+<seconds>' then bytes 0x14 0x14), so its start time is unknown",
        )
    return onsets


def _float_or_nan(text: bytes) -> float:
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


def _read_records(mm: np.ndarray, h: RecordingHeader, info: ChannelInfo) -> np.ndarray:
    """Physical samples of one channel, record by record.

    Parameters
    ----------
    mm : np.ndarray, shape (n_records, record_bytes), uint8
        The data records (see :func:`_records`).

    Returns
    -------
    np.ndarray, shape (n_records, samples_per_record), float32
    """
    width = 3 if h.file_type.startswith("BDF") else 2
    n, a = info.samples_per_record, info.record_offset
    raw = np.ascontiguousarray(mm[:, a : a + n * width])  # (n_records, n * width)
    if width == 2:
        digital = raw.view("<i2")
    else:  # 24-bit little-endian two's complement
        b = raw.reshape(h.n_records, n, 3).astype(np.int32)
        digital = ((b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16) ^ 0x800000) - 0x800000
    gain = (info.physical_max - info.physical_min) / (info.digital_max - info.digital_min)
    x = digital * gain  # float64, as pyedflib computes, then float32 like every reader here
    x += info.physical_min - info.digital_min * gain
    return x.astype(np.float32)


def _place_on_timeline(per_record: np.ndarray, h: RecordingHeader) -> np.ndarray:
    """Put records on the continuous timeline from the first record's start, NaN in the gaps.

    Parameters
    ----------
    per_record : np.ndarray, shape (n_records, n), float32
        One channel's samples, ``n`` per data record.

    Returns
    -------
    np.ndarray, shape (round(duration_s * sfreq),), float32
        ``sfreq = n / record_duration``; a record starts at ``round(onset * sfreq)``.
    """
    n_rec, n = per_record.shape
    if h.record_onsets is None:
        return per_record.ravel()
    sfreq = n / h.record_duration
    shift = h.record_onsets - h.record_onsets[0] - np.arange(n_rec) * h.record_duration
    starts = np.arange(n_rec) * n + np.round(shift * sfreq).astype(np.int64)  # (n_rec,)
    out = np.full(max(int(round(h.duration_s * sfreq)), int(starts[-1]) + n), np.nan, np.float32)
    cuts = np.flatnonzero(np.diff(starts) != n) + 1  # first record after each gap
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, n_rec], strict=True):  # one pass per segment
        out[starts[a] : starts[a] + (b - a) * n] = per_record[a:b].ravel()
    return out


def _tal_annotations(
    mm: np.ndarray, h: RecordingHeader
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every TAL of the first annotation signal, as :meth:`EdfRecording.read_annotations`."""
    if h.annotation_span is None:
        return np.zeros(0), np.zeros(0), []
    a, n = h.annotation_span
    origin = 0.0 if h.record_onsets is None else float(h.record_onsets[0])
    onsets, durations, texts, skipped = [], [], [], 0
    blob = np.ascontiguousarray(mm[:, a : a + n]).tobytes()
    for tal in blob.split(b"\x00"):  # each TAL ends with 0x14 0x00; padding is 0x00
        stamp, _, rest = tal.partition(b"\x14")
        notes = [t.decode("utf-8", "replace") for t in rest.split(b"\x14") if t]
        if not notes:  # time-keeping TAL or padding
            continue
        onset, _, duration = stamp.partition(b"\x15")
        start, length = _float_or_nan(onset), _float_or_nan(duration) if duration else np.nan
        if not np.isfinite(start):
            skipped += 1
            continue
        onsets += [start - origin] * len(notes)
        durations += [length] * len(notes)
        texts += notes
    if skipped:
        log.warning("%s: %d annotations with unreadable onsets skipped", Path(h.path).name, skipped)
    return np.asarray(onsets, float), np.asarray(durations, float), texts
