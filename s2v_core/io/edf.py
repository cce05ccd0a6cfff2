"""Reading EDF, EDF+ and BDF recordings channel by channel.

pyedflib is the primary reader. Files whose headers it refuses (the DREAMS excerpts, whose digital
range exceeds int16; truncated files; unknown record counts) are read with MNE instead, and the
recording says which reader was used. Before either library sees a file, :func:`check_header`
validates the fixed header so that common defects give a message that names the problem instead
of a library traceback.

Only the requested channels are read, one at a time, so memory stays at one channel's samples
(plus the output) whatever the file size.

Identifying header fields (patient name, birth date, patient code) are kept out of logs, warnings
and summaries; :meth:`EdfRecording.identifying_fields` returns them only when asked.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import InputFileError

log = logging.getLogger(__name__)

ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")


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

    @property
    def duration_s(self) -> float:
        return self.n_records * self.record_duration

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.channels]

    def channel(self, label: str) -> ChannelInfo:
        for c in self.channels:
            if c.label == label:
                return c
        raise KeyError(label)


def _field(raw: bytes, start: int, width: int) -> str:
    return raw[start : start + width].decode("latin-1").strip()


def check_header(path: str | Path) -> RecordingHeader:
    """Validate the fixed EDF/BDF header and return what it declares.

    This reads only the header bytes. It raises :class:`InputFileError` with a specific message
    for: an empty or tiny file, a file that is not EDF/BDF, unreadable numeric fields, a channel
    count or record count that does not fit the file, physical min == max, digital min >= max.
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
            raise InputFileError(p, f"corrupt EDF header: a numeric field is unreadable ({exc})") from None
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
    for i in range(ns):
        try:
            pmin, pmax = float(pmin_s[i]), float(pmax_s[i])
            dmin, dmax = int(float(dmin_s[i])), int(float(dmax_s[i]))
            nsamp = int(nsamp_s[i])
        except ValueError:
            raise InputFileError(
                p, f"corrupt EDF header: channel {labels[i]!r} has an unreadable min/max or sample count"
            ) from None
        samples_per_record += nsamp
        if labels[i] in ANNOTATION_LABELS:
            continue
        if nsamp <= 0:
            raise InputFileError(p, f"channel {labels[i]!r} declares {nsamp} samples per record")
        if pmin == pmax:
            raise InputFileError(
                p,
                f"channel {labels[i]!r}: physical minimum equals physical maximum ({pmin}); "
                "the signal cannot be scaled",
            )
        if dmin >= dmax:
            raise InputFileError(
                p, f"channel {labels[i]!r}: digital minimum {dmin} is not below digital maximum {dmax}"
            )
        if dmin < dig_lo or dmax > dig_hi:
            warnings.append(
                f"channel {labels[i]!r}: digital range {dmin}..{dmax} is outside the {kind[:3]} "
                f"range {dig_lo}..{dig_hi} (non-compliant header)"
            )
        sfreq = nsamp / record_duration if record_duration > 0 else float("nan")
        channels.append(
            ChannelInfo(i, labels[i], sfreq, dims[i], pmin, pmax, dmin, dmax, prefilters[i], transducers[i])
        )
    if record_duration <= 0 and n_records != 0:
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
    if not channels:
        raise InputFileError(p, "the file has no signal channels (only annotations)")
    return RecordingHeader(
        path=str(p),
        file_type=kind,
        start_time=_parse_start(head),
        n_records=n_records,
        record_duration=record_duration,
        channels=channels,
        file_size=size,
        warnings=warnings,
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

    Use :func:`open_recording`. ``reader`` is ``"pyedflib"`` or ``"mne"``.
    """

    def __init__(self, header: RecordingHeader, reader: str, handle, warnings: list[str]):
        self.header = header
        self.reader = reader
        self._handle = handle
        self.warnings = warnings

    # --- context management -------------------------------------------------------------
    def close(self) -> None:
        if self.reader == "pyedflib" and self._handle is not None:
            self._handle.close()
        self._handle = None

    def __enter__(self) -> EdfRecording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------
    def read_channel(self, label: str) -> tuple[np.ndarray, float]:
        """Physical samples of one channel (float32, the file's dimension) and its rate in Hz."""
        info = self.header.channel(label)
        # Both readers list the signal channels in file order without the annotation channel.
        idx = self.header.channels.index(info)
        n_expected = int(round(info.sfreq * self.header.duration_s))
        if self.reader == "pyedflib":
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
        """EDF+ annotations as (onsets_s, durations_s, texts) relative to the recording start."""
        if self.reader == "pyedflib":
            onsets, durations, texts = self._handle.readAnnotations()
            return np.asarray(onsets, float), np.asarray(durations, float), [str(t) for t in texts]
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
    needs_lenient = any("truncated" in w or "-1" in w or "more data records" in w for w in warnings)
    if not needs_lenient:
        try:
            import pyedflib

            handle = pyedflib.EdfReader(os.fspath(path))
            return EdfRecording(header, "pyedflib", handle, warnings)
        except OSError as exc:
            reason = str(exc).split(":", 1)[-1].strip()
            warnings.append(f"pyedflib refused the file ({reason}); read with MNE instead")
    else:
        warnings.append("read with MNE, which tolerates an inconsistent record count")
    try:
        import mne

        raw = mne.io.read_raw_edf(
            os.fspath(path), preload=False, verbose="error", infer_types=False
        ) if not header.file_type.startswith("BDF") else mne.io.read_raw_bdf(
            os.fspath(path), preload=False, verbose="error", infer_types=False
        )
    except Exception as exc:  # MNE raises many types for bad files
        raise InputFileError(path, f"could not be read as EDF/BDF by pyedflib or MNE: {exc}") from None
    return EdfRecording(header, "mne", raw, warnings)
