"""A tiny hand-rolled EDF/EDF+/BDF writer, for tests only.

pyedflib cannot write discontinuous EDF+D files with gaps, odd record durations, duplicate labels
or deliberately broken record onsets; this writer can. It writes the bytes the EDF+ specification
describes (https://www.edfplus.info/specs/edfplus.html) and nothing more clever: every signal in
digital units, one ``EDF Annotations`` signal whose first TAL in each data record is the
time-keeping TAL ``+<onset>\\x14\\x14\\x00``, and user annotations in the record they fall into.

By default a signal's physical range equals its digital range (gain 1, offset 0), so integer
physical values are read back exactly, which lets tests compare with ``==``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np


@dataclass
class Signal:
    """One signal channel to write."""

    label: str
    samples: np.ndarray  # physical values, shape (n_records * samples_per_record,)
    samples_per_record: int
    dimension: str = "uV"
    physical_min: float | None = None  # None: equal to digital_min (gain 1)
    physical_max: float | None = None  # None: equal to digital_max
    digital_min: int = -32768
    digital_max: int = 32767

    def digital(self) -> np.ndarray:
        """The samples in digital units (rounded, clipped), shape (n_samples,) int64."""
        pmin = self.digital_min if self.physical_min is None else self.physical_min
        pmax = self.digital_max if self.physical_max is None else self.physical_max
        gain = (self.digital_max - self.digital_min) / (pmax - pmin)
        d = np.round((np.asarray(self.samples, np.float64) - pmin) * gain + self.digital_min)
        return np.clip(d, self.digital_min, self.digital_max).astype(np.int64)


def _ascii(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:
        raise ValueError(f"{text!r} does not fit an EDF field of {width} characters")
    return text.ljust(width).encode("latin-1")


def _number(value: float, width: int = 8) -> bytes:
    for digits in range(12, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= width and "e" not in text:
            return _ascii(text, width)
    raise ValueError(f"{value} does not fit an EDF field of {width} characters")


def _seconds(value: float) -> str:
    """Shortest exact decimal without an exponent, as TALs require ("12.5", "3")."""
    return np.format_float_positional(value, trim="-")


def _tal(onset: float, duration: float | None, text: str) -> bytes:
    """One TAL: ``+onset[\\x15duration]\\x14text\\x14\\x00``; empty text = time-keeping TAL."""
    sign = "+" if onset >= 0 else ""
    head = sign + _seconds(onset) + ("" if duration is None else "\x15" + _seconds(duration))
    return (head + "\x14" + text + "\x14\x00").encode("utf-8")


def write_edf_bytes(
    path: Path,
    signals: list[Signal],
    *,
    record_duration: float = 1.0,
    record_onsets: np.ndarray | list[float] | None = None,
    file_type: str = "EDF+C",
    annotations: list[tuple[float, float | None, str]] | None = None,
    start: datetime = datetime(2024, 3, 1, 22, 30, 0),
    header_n_records: int | None = None,
    annotation_bytes: int | None = None,
) -> Path:
    """Write an EDF, EDF+C, EDF+D, BDF, BDF+C or BDF+D file byte by byte.

    Parameters
    ----------
    path : Path
        Output file.
    signals : list of Signal
        Every signal must hold ``n_records * samples_per_record`` samples; labels may repeat.
        May be empty (an annotation-only EDF+) when ``record_onsets`` gives the record count.
    record_duration : float
        Data record duration in seconds (any value that fits 8 characters, e.g. 0.5 or 30).
    record_onsets : array-like of float, optional
        Start of each data record in seconds from the file start, written as the time-keeping
        TAL (EDF+/BDF+ only). Default: contiguous, ``arange(n_records) * record_duration``.
        Nothing is checked, so gaps, overlaps and backwards steps can all be written.
    file_type : str
        ``"EDF"``, ``"EDF+C"``, ``"EDF+D"``, ``"BDF"``, ``"BDF+C"`` or ``"BDF+D"``. Plain EDF/BDF
        files have no annotation signal.
    annotations : list of (onset_s, duration_s or None, text), optional
        Each goes into the last data record starting at or before its onset.
    header_n_records : int, optional
        Record count written in the header (default: the true count), to fake broken headers.
    annotation_bytes : int, optional
        Bytes of the annotation signal per record (default: just enough, rounded up to even).

    Returns
    -------
    Path
        ``path``.
    """
    bdf = file_type.startswith("BDF")
    plus = "+" in file_type
    width = 3 if bdf else 2
    counts = {len(s.samples) // s.samples_per_record for s in signals}
    if record_onsets is not None:
        counts.add(len(record_onsets))
    if len(counts) != 1 or any(len(s.samples) % s.samples_per_record for s in signals):
        raise ValueError("every signal must hold n_records * samples_per_record samples")
    n_rec = counts.pop()
    onsets = (
        np.arange(n_rec) * record_duration
        if record_onsets is None
        else np.asarray(record_onsets, np.float64)
    )
    chans = list(signals)
    ann_blocks: list[bytes] = []
    if plus:
        per_record = [bytearray(_tal(float(t), None, "")) for t in onsets]
        for onset, dur, text in annotations or []:
            r = max(int(np.searchsorted(onsets, onset, side="right")) - 1, 0)
            per_record[r] += _tal(onset, dur, text)
        need = max(len(b) for b in per_record)
        n_bytes = annotation_bytes or need + (-need) % width
        if n_bytes < need or n_bytes % width:
            raise ValueError(f"annotation_bytes must be >= {need} and a multiple of {width}")
        ann_blocks = [bytes(b).ljust(n_bytes, b"\x00") for b in per_record]
        ann_label = "BDF Annotations" if bdf else "EDF Annotations"
        dig = (-(2**23), 2**23 - 1) if bdf else (-32768, 32767)
        chans.append(Signal(ann_label, np.zeros(0), n_bytes // width, "", -1, 1, dig[0], dig[1]))
    ns = len(chans)
    head = b"".join(
        [
            b"\xffBIOSEMI" if bdf else _ascii("0", 8),
            _ascii("X X X X" if plus else "test", 80),
            _ascii(
                "Startdate " + start.strftime("%d-%b-%Y").upper() + " X X X" if plus else "test", 80
            ),
            _ascii(start.strftime("%d.%m.%y"), 8),
            _ascii(start.strftime("%H.%M.%S"), 8),
            _ascii(256 * (ns + 1), 8),
            _ascii(file_type if plus else "24BIT" if bdf else "", 44),
            _ascii(n_rec if header_n_records is None else header_n_records, 8),
            _number(record_duration),
            _ascii(ns, 4),
        ]
    )

    def column(values: list, w: int, fmt=_ascii) -> bytes:
        return b"".join(fmt(v, w) for v in values)

    def phys(s: Signal, lo: bool) -> float:
        v = s.physical_min if lo else s.physical_max
        return (s.digital_min if lo else s.digital_max) if v is None else v

    head += b"".join(
        [
            column([c.label for c in chans], 16),
            column(["" for _ in chans], 80),
            column([c.dimension for c in chans], 8),
            column([phys(c, True) for c in chans], 8, _number),
            column([phys(c, False) for c in chans], 8, _number),
            column([c.digital_min for c in chans], 8),
            column([c.digital_max for c in chans], 8),
            column(["" for _ in chans], 80),
            column([c.samples_per_record for c in chans], 8),
            column(["" for _ in chans], 32),
        ]
    )
    parts: list[np.ndarray] = []
    for c in signals:
        d = c.digital().reshape(n_rec, c.samples_per_record)
        raw = (d[..., None] >> (8 * np.arange(width))) & 0xFF  # little-endian two's complement
        parts.append(raw.astype(np.uint8).reshape(n_rec, -1))
    if plus:
        parts.append(np.frombuffer(b"".join(ann_blocks), np.uint8).reshape(n_rec, -1))
    body = np.concatenate(parts, axis=1) if parts else np.zeros((n_rec, 0), np.uint8)
    Path(path).write_bytes(head + body.tobytes())
    return Path(path)


def contiguous_onsets(n_records: int, record_duration: float, gaps: dict[int, float]) -> np.ndarray:
    """Record onsets in seconds, with ``gaps[r]`` seconds missing just before record ``r``.

    Returns
    -------
    np.ndarray, shape (n_records,), float64
    """
    extra = np.zeros(n_records)
    for r, g in gaps.items():
        extra[r:] += g
    return np.arange(n_records) * record_duration + extra
