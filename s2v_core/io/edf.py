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

Why not ``edfio`` for EDF+D: edfio 0.4.18 ("Read and write EDF/EDF+C/BDF/BDF+C files") reads an
EDF+D file as if it were contiguous, like MNE. On a file of 30 two-second records with gaps of
7.5 s and 12 s (tests/test_library_review.py) it returned 960 samples where the timeline holds
1,272, put record 10 at 20.0 s instead of 27.5 s, and reported a 60-s duration while keeping an
annotation at 70 s. It does tell that the file is discontinuous (``Edf.is_continuous``), but has
no public way to read the record onsets, so placing the records would stay our code. Where it
places samples they equal ours, and an 8-h channel with one gap took 6 ms (gap closed) against
10 ms here (gap placed), so speed is no reason either.

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
from pathlib import Path

import numpy as np
import pyedflib

from s2v_core.errors import InputFileError
from s2v_core.io.edf_header import (
    ChannelInfo,
    RecordingHeader,
    check_header,
    data_records,
    float_or_nan,
    header_field,
)

__all__ = [
    "EdfRecording",
    "open_recording",
]

log = logging.getLogger(__name__)

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
        return {"patient": header_field(head, 8, 80), "recording": header_field(head, 88, 80)}


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
        mm = data_records(path, header.header_bytes, header.record_bytes, header.n_records)
        return EdfRecording(header, "native", mm, warnings)
    # decided by the header check's structured outcome, never by the text of a warning
    needs_lenient = header.record_count != "ok"
    if not needs_lenient:
        try:
            handle = pyedflib.EdfReader(os.fspath(path))
            try:
                records = data_records(path, header.header_bytes, header.record_bytes, header.n_records)
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
    # MNE sizes its reads from its own reading of the header (and of the file size); it must not go
    # past what the file holds: every channel at the highest rate, over the complete records.
    width = 3 if header.file_type.startswith("BDF") else 2
    in_file = (header.file_size - header.header_bytes) // header.record_bytes
    if raw.n_times > in_file * (header.record_bytes // width):
        raise InputFileError(
            path,
            f"MNE would read {raw.n_times} samples per channel, more than the "
            f"{in_file} complete data records in the file hold; the header is inconsistent",
        )
    return EdfRecording(header, "mne", raw, warnings)


# --- EDF+D: record onsets, gaps, and the native record reader ------------------------------


def _read_records(mm: np.ndarray, h: RecordingHeader, info: ChannelInfo) -> np.ndarray:
    """Physical samples of one channel, record by record.

    Parameters
    ----------
    mm : np.ndarray, shape (n_records, record_bytes), uint8
        The data records (see :func:`~s2v_core.io.edf_header.data_records`).

    Returns
    -------
    np.ndarray, shape (n_records, samples_per_record), float32

    The records are converted a block at a time (about :data:`_BLOCK_SAMPLES` samples), so the
    float64 intermediate stays small: a whole night's would be hundreds of MB of fresh memory.
    """
    width = 3 if h.file_type.startswith("BDF") else 2
    n, a = info.samples_per_record, info.record_offset
    gain = (info.physical_max - info.physical_min) / (info.digital_max - info.digital_min)
    offset = info.physical_min - info.digital_min * gain
    out = np.empty((h.n_records, n), np.float32)
    step = max(1, _BLOCK_SAMPLES // max(1, n))
    for s in range(0, h.n_records, step):
        raw = np.ascontiguousarray(mm[s : s + step, a : a + n * width])  # (records, n * width)
        if width == 2:
            digital = raw.view("<i2")
        else:  # 24-bit little-endian two's complement
            b = raw.reshape(len(raw), n, 3).astype(np.int32)
            digital = ((b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16) ^ 0x800000) - 0x800000
        x = digital * gain  # float64, as pyedflib computes, then float32 like every reader here
        x += offset
        out[s : s + step] = x
    return out


_BLOCK_SAMPLES = 1 << 15
"""Samples per block converted at once by :func:`_read_records` (256 KiB of float64)."""


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
        start, length = float_or_nan(onset), float_or_nan(duration) if duration else np.nan
        if not np.isfinite(start):
            skipped += 1
            continue
        onsets += [start - origin] * len(notes)
        durations += [length] * len(notes)
        texts += notes
    if skipped:
        log.warning("%s: %d annotations with unreadable onsets skipped", Path(h.path).name, skipped)
    return np.asarray(onsets, float), np.asarray(durations, float), texts
