"""DREAMS single-channel text excerpts (``excerptN.txt``): reading the signal and its rate.

The DREAMS databases (Univ. Mons / CHU Brugmann) publish each excerpt's EEG as a text file: a
first line holding the channel label in brackets (``[C3-A1]``), then one sample per line in µV.
The file carries no sampling rate and no start time. The rate is either given by the caller or
derived from the hypnogram that covers the same excerpt (samples / scored seconds), which must
then come out as a whole number of Hz (the DREAMS excerpts: 50, 100 or 200 Hz over 30 min).

The canonical night of an excerpt is built by :func:`s2v_core.recording.dreams.load_dreams_night`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2v_core.errors import InputFileError

__all__ = [
    "MAX_BYTES",
    "DreamsSignal",
    "infer_sfreq",
    "is_dreams_text",
    "read_dreams_signal",
]

MAX_BYTES = 2_000_000_000
"""Larger text files are refused (a 24-h 500-Hz channel is about 450 MB of text)."""


def is_dreams_text(path: str | Path) -> bool:
    """True for a ``.txt`` file whose first line is a bracketed channel label (not ``[Hypnogram]``)."""
    p = Path(path)
    if p.suffix.lower() != ".txt" or not p.is_file():
        return False
    try:
        with open(p, encoding="latin-1") as fh:
            first = fh.readline(256).strip()
    except OSError:
        return False
    return first.startswith("[") and first.endswith("]") and first[1:-1].strip().lower() != "hypnogram"



@dataclass(frozen=True)
class DreamsSignal:
    """One channel read from a DREAMS text excerpt.

    Attributes
    ----------
    label : str
        Channel label from the first line, without brackets (e.g. ``"C3-A1"``).
    data : np.ndarray, shape (n_samples,), float64
        Samples in µV (NaN where the file writes ``nan``).
    path : Path
        The file read.
    """

    label: str
    data: np.ndarray
    path: Path

    @property
    def n_samples(self) -> int:
        return int(self.data.size)


def read_dreams_signal(path: str | Path) -> DreamsSignal:
    """Read a DREAMS ``[LABEL]`` text excerpt: a bracketed label line, then one number per line.

    Parameters
    ----------
    path : str or Path
        The ``excerptN.txt`` file.

    Returns
    -------
    DreamsSignal

    Raises
    ------
    InputFileError
        Missing or unreadable file, no ``[LABEL]`` first line, a line that is not one number,
        an infinite value, or no sample at all. The message names the file (and the line).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputFileError(p, f"cannot read the file ({exc.strerror or exc})") from None
    if not p.is_file():
        raise InputFileError(p, "not a regular file")
    if size > MAX_BYTES:
        raise InputFileError(p, f"{size / 1e9:.1f} GB is too large for a DREAMS text excerpt")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(p, "not a text file (not UTF-8/ASCII)") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputFileError(p, "empty file; a DREAMS excerpt starts with a '[LABEL]' line")
    head = lines[first].strip()
    if not (head.startswith("[") and head.endswith("]") and len(head) > 2):
        raise InputFileError(
            p, f"line {first + 1}: {head[:40]!r} is not a '[LABEL]' line such as '[C3-A1]'"
        )
    label = head[1:-1].strip()
    body = [(n, line.strip()) for n, line in enumerate(lines[first + 1 :], start=first + 2)]
    body = [(n, s) for n, s in body if s]
    if not body:
        raise InputFileError(p, f"no sample after the label line '[{label}]'")
    tokens = [s for _, s in body]
    try:
        data = np.array(tokens, dtype=np.float64)
    except ValueError:  # find the first bad line for the message
        for n, s in body:
            try:
                float(s)
            except ValueError:
                raise InputFileError(
                    p, f"line {n}: {s[:40]!r} is not one number (one sample per line, in µV)"
                ) from None
        raise InputFileError(p, "the samples are not numbers") from None  # pragma: no cover
    if np.isinf(data).any():
        n = body[int(np.flatnonzero(np.isinf(data))[0])][0]
        raise InputFileError(p, f"line {n}: infinite sample value")
    return DreamsSignal(label=label, data=data, path=p)


def infer_sfreq(n_samples: int, duration_s: float, *, path: str | Path | None = None) -> int:
    """The whole-Hz sampling rate that puts ``n_samples`` in ``duration_s`` seconds.

    Raises
    ------
    InputFileError
        When the rate is not within 0.5 % of a whole number of Hz (the hypnogram does not cover
        the same span as the signal, or the rate is fractional): give ``sfreq`` explicitly.
    """
    if duration_s <= 0 or n_samples <= 0:
        raise InputFileError(path, "cannot derive a sampling rate from an empty signal or hypnogram")
    rate = n_samples / duration_s
    whole = round(rate)
    if whole < 1 or abs(rate - whole) > 0.005 * whole:
        raise InputFileError(
            path,
            f"{n_samples} samples over the hypnogram's {duration_s:g} s give {rate:.3f} Hz, not a "
            "whole number of Hz; give the sampling rate explicitly (sfreq=...)",
        )
    return int(whole)
