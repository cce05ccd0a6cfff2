"""What a file may cost: limits checked before a reader reads or allocates anything (issue 16).

Every reader sizes its arrays from numbers the file *declares*: an EDF header's record duration,
record count and samples per record, a WFDB header's rate and signal length, a DREAMS excerpt's
rate. A header of a few hundred bytes can declare a recording of three years or a rate of a
gigahertz; if such numbers reached numpy unchecked, a 1-KB upload could ask for tens of GiB
(issue 16: ``s2v info`` on a 712-byte EDF whose record lasts 99,999,999 s tried to allocate
477 GiB). So each reader checks what a file declares against the limits below, and against the
file's real size on disk, and refuses with one line (:class:`~s2v_core.errors.InputFileError`)
before it reads samples or allocates arrays.

The limits, and why these values
--------------------------------
:data:`MAX_RECORDING_HOURS` = 72 h
    The longest recording any reader accepts, first sample to last (EDF+D gaps included). A
    clinical PSG is one night (8-12 h), multi-night ambulatory recordings run 24-48 h (the 48-h
    file is one of the tested inputs); 72 h leaves room for a three-night home study. It bounds
    every canonical array: one modality at 128 Hz for 72 h is 33 M float32 samples (133 MB), a
    night with all nine modalities 552 MB, and 8,640 epochs for the model.
:data:`MAX_SFREQ_HZ` = 1 MHz and :data:`MIN_SFREQ_HZ` = 1/300 Hz
    The fastest and slowest channel accepted. 1 MHz is far above any biosignal; a faster rate
    means a corrupt record duration. One sample per 5 minutes is far below any channel a sleep
    study stores (SpO2 and position are 1 Hz, a hypnogram channel 1/30 Hz); a slower rate means
    a corrupt record duration or sample count, and it would make resampling to the canonical
    128 Hz build an anti-aliasing filter of 20 x 128 / rate taps (at one sample per 72 h:
    660 M taps, 5 GB). Between the two, resampling costs at most a 0.8 M-tap filter (6 MB).
:data:`MAX_EXPANSION` = 32 and :data:`EXPANSION_FLOOR_BYTES` = 16 MiB
    The samples a reader produces for the channels it reads (each at its native rate, EDF+D gaps
    filled with NaN, and again at the canonical rate, all float32) may take at most
    ``max(16 MiB, 32 x the file's size)``. Real recordings stay near 10x (a 16-bit channel at
    32 Hz becomes 128 B/s native + 512 B/s canonical for 64 B/s of file; SpO2 at 1 Hz 4 + 16 for
    2), so 32x leaves room, and any file may produce 16 MiB (an 8-h night of one EEG channel).
    A file whose declared length is far beyond its bytes (a few KB that claim a day of EEG at
    one sample per minute) is refused here, not after the allocation.
:data:`MAX_JSON_BYTES` = 4 MiB and :data:`MAX_JSON_DEPTH` = 64
    For every JSON file read from a user-supplied place (see :mod:`s2v_core.limits.jsonfile`). The
    shipped checkpoint's ``config.json`` is 10 KB and 4 levels deep; Python's ``json`` recurses
    once per level, so a file of nested brackets ends in a ``RecursionError`` without a limit.

The EDF record count and samples per record are bounded by the file itself: a data record must
fit in the bytes after the header (else refused), and records the header declares beyond the
end of the file are dropped with a warning (:func:`s2v_core.io.edf_header.check_header`).
"""

from __future__ import annotations

import math
from pathlib import Path

from s2v_core.errors import InputFileError

__all__ = [
    "EXPANSION_FLOOR_BYTES",
    "MAX_EXPANSION",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_RECORDING_HOURS",
    "MAX_RECORDING_S",
    "MAX_SFREQ_HZ",
    "MIN_SFREQ_HZ",
    "allocation_budget",
    "check_allocation",
    "check_duration",
    "check_rate",
    "describe_bytes",
    "describe_seconds",
]

MAX_RECORDING_HOURS = 72
"""Longest recording accepted, in hours (see the module docstring)."""
MAX_RECORDING_S = MAX_RECORDING_HOURS * 3600.0
"""Longest recording accepted, in seconds."""
MAX_SFREQ_HZ = 1e6
"""Fastest channel accepted, Hz: far above any biosignal (a faster one means a corrupt header)."""
MIN_SFREQ_HZ = 1 / 300
"""Slowest channel accepted, Hz: one sample per 5 minutes (a slower one means a corrupt header)."""
MAX_EXPANSION = 32
"""Most bytes of samples a reader may produce per byte of the file (beyond the floor)."""
EXPANSION_FLOOR_BYTES = 16 * 2**20
"""Bytes of samples any file may produce, whatever its size."""
MAX_JSON_BYTES = 4 * 2**20
"""Largest JSON file read from a user-supplied place."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in such a JSON file."""


def describe_seconds(seconds: float) -> str:
    """A duration for a message: ``'20 s'``, ``'1.5 h'``, ``'2.78e+04 h'``, ``'inf h'``."""
    if not math.isfinite(seconds):
        return f"{seconds} s"
    if abs(seconds) < 120:
        return f"{seconds:.3g} s"
    hours = seconds / 3600
    return f"{hours:.3g} h" if abs(hours) >= 1e5 else f"{hours:,.1f} h"


def describe_bytes(n: float) -> str:
    """A size for a message: ``'712 bytes'``, ``'3.2 MB'``, ``'14.9 GB'``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def check_duration(path: str | Path | None, duration_s: float, what: str = "the recording") -> None:
    """Refuse a recording longer than :data:`MAX_RECORDING_S` (or not a finite length).

    ``what`` says where the length comes from, e.g. ``"the header declares 1 data record of
    99999999 s, so the recording"``.
    """
    if not duration_s <= MAX_RECORDING_S:  # also NaN
        raise InputFileError(
            path,
            f"{what} lasts {describe_seconds(duration_s)}; recordings over "
            f"{MAX_RECORDING_HOURS} h are refused",
        )


def check_rate(path: str | Path | None, sfreq: float, what: str) -> None:
    """Refuse a sampling rate outside [:data:`MIN_SFREQ_HZ`, :data:`MAX_SFREQ_HZ`].

    ``what`` names the channel, e.g. ``"channel 'EEG C4-M1'"``.
    """
    if MIN_SFREQ_HZ <= sfreq <= MAX_SFREQ_HZ:
        return
    if sfreq > MAX_SFREQ_HZ or not math.isfinite(sfreq):
        bound = f"over {MAX_SFREQ_HZ:.0e} Hz"
    else:
        bound = f"below one sample per {1 / MIN_SFREQ_HZ:.0f} s ({MIN_SFREQ_HZ:.3g} Hz)"
    raise InputFileError(path, f"{what} is sampled at {sfreq:.3g} Hz, {bound}")


def allocation_budget(file_bytes: int) -> int:
    """Bytes of samples a file of ``file_bytes`` bytes may produce: max(floor, 32 x its size)."""
    return max(EXPANSION_FLOOR_BYTES, MAX_EXPANSION * int(file_bytes))


def check_allocation(path: str | Path | None, need_bytes: float, file_bytes: int, what: str) -> None:
    """Refuse to produce ``need_bytes`` of samples from a file of ``file_bytes`` bytes.

    ``what`` says what would be produced, e.g. ``"2 channels over 24.0 h at the model's rates"``.
    """
    budget = allocation_budget(file_bytes)
    if not need_bytes <= budget:
        raise InputFileError(
            path,
            f"{what} would take {describe_bytes(need_bytes)} of memory for a file of "
            f"{describe_bytes(file_bytes)} (the most allowed is {describe_bytes(budget)}: "
            f"{MAX_EXPANSION}x the file size, at least {describe_bytes(EXPANSION_FLOOR_BYTES)}); the "
            "header's record duration or sampling rates are implausible for the data it holds",
        )
