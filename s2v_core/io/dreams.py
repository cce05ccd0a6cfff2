"""DREAMS single-channel text excerpts (``excerptN.txt``) as signals and canonical nights.

The DREAMS databases (Univ. Mons / CHU Brugmann) publish each excerpt's EEG as a text file: a
first line holding the channel label in brackets (``[C3-A1]``), then one sample per line in µV.
The file carries no sampling rate and no start time. The rate is either given by the caller or
derived from the hypnogram that covers the same excerpt (samples / scored seconds), which must
then come out as a whole number of Hz (the DREAMS excerpts: 50, 100 or 200 Hz over 30 min).

Examples
--------
>>> night = load_dreams_night("excerpt1.txt", "Hypnogram_excerpt1.txt")  # doctest: +SKIP
>>> night.modalities, night.n_epochs  # doctest: +SKIP
(('eeg',), 60)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2v_core.errors import ChannelMappingError, InputFileError
from s2v_core.modalities import MODALITIES, SFREQ
from s2v_core.night import Night, NightMeta, Provenance, n_epochs_for

MAX_BYTES = 2_000_000_000
"""Larger text files are refused (a 24-h 500-Hz channel is about 450 MB of text)."""

_BIOPOTENTIAL = ("eeg", "eog", "emg", "ecg")


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


def load_dreams_night(
    path: str | Path,
    hypnogram: str | Path | None = None,
    *,
    sfreq: float | None = None,
    modality: str | None = None,
    meta: NightMeta | None = None,
    allow_mismatch: bool = False,
) -> Night:
    """A canonical night from a DREAMS text excerpt (one channel), with optional hypnogram.

    The channel goes through the same steps as an EDF channel in
    :func:`s2v_core.recording.loading.load_night`: unit check (µV declared), polyphase resampling to the
    modality's canonical rate, 30-s epochs, epoch quality and plausibility warnings.

    Parameters
    ----------
    path : str or Path
        ``excerptN.txt``.
    hypnogram : str or Path, optional
        Any hypnogram :func:`s2v_core.io.hypnogram.read_hypnogram` reads, typically
        ``Hypnogram_excerptN.txt`` (5-s codes re-gridded to 30-s epochs by majority).
    sfreq : float, optional
        Sampling rate in Hz. Without it, it is derived from the hypnogram's span (see
        :func:`infer_sfreq`); one of the two is required.
    modality : str, optional
        Modality of the channel (default: from its label through the alias table, e.g. ``C3-A1``
        -> ``eeg``).
    meta : NightMeta, optional
        Metadata; ``night_id`` defaults to the file stem.
    allow_mismatch : bool
        Pad or trim a hypnogram longer or shorter than the signal instead of refusing it.

    Returns
    -------
    Night
        One modality, stages from the hypnogram (all unscored without one), no start time.

    Raises
    ------
    InputFileError
        Unreadable file, no sampling rate, a recording shorter than one epoch.
    ChannelMappingError
        The label maps to no modality and none was given.
    HypnogramError
        The hypnogram cannot be read or does not fit the signal.
    """
    from s2v_core import signals as sig
    from s2v_core.io import hypnogram as hyp_io
    from s2v_core.recording.channels import map_channels
    from s2v_core.recording.loading import resolve_biopotential_unit
    from s2v_core.stages import UNSCORED

    rec = read_dreams_signal(path)
    p = rec.path
    if modality is None:
        chosen = map_channels([rec.label]).as_dict()
        if not chosen:
            raise ChannelMappingError(
                f"{p.name}: channel {rec.label!r} maps to no modality; say which it is "
                f"(modality=..., one of {', '.join(MODALITIES)})"
            )
        modality = next(iter(chosen))
    elif modality not in MODALITIES:
        raise ChannelMappingError(
            f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}"
        )
    if modality not in _BIOPOTENTIAL:
        raise ChannelMappingError(
            f"{p.name}: DREAMS text excerpts hold biopotentials in µV; {modality!r} is not one "
            f"({', '.join(_BIOPOTENTIAL)})"
        )
    hyp = None
    if hypnogram is not None:
        hyp = hyp_io.read_hypnogram(hypnogram)
    if sfreq is None:
        if hyp is None:
            raise InputFileError(
                p, "the file has no sampling rate: give sfreq=..., or a hypnogram to derive it"
            )
        sfreq = infer_sfreq(rec.n_samples, hyp.n_epochs * hyp.epoch_seconds, path=p)
    if not (math.isfinite(sfreq) and sfreq > 0):
        raise InputFileError(p, f"sampling rate must be a positive number of Hz, got {sfreq!r}")
    duration_s = rec.n_samples / float(sfreq)
    n_epochs = n_epochs_for(duration_s)
    if n_epochs == 0:
        raise InputFileError(
            p, f"recording is {duration_s:.0f} s long, shorter than one 30-s epoch"
        )
    warnings: list[str] = []
    scale, unit_warn = resolve_biopotential_unit(modality, rec.data, "uV")
    x = sig.resample(rec.data * scale, float(sfreq), SFREQ[modality])
    epochs = sig.epoch_matrix(x, SFREQ[modality], n_epochs)
    ok = sig.epoch_quality(epochs, modality)
    method = (
        f"polyphase resampling {sfreq:g} -> {SFREQ[modality]} Hz"
        if sfreq != SFREQ[modality]
        else "none"
    )
    prov = Provenance(modality, rec.label, float(sfreq), "uV", scale, "dreams-text", method, unit_warn)
    prov.warnings.extend(sig.plausibility_warnings(modality, epochs[ok] if ok.any() else epochs))
    warnings.extend(f"{modality}: {w}" for w in prov.warnings)
    if not ok.any():
        warnings.append(f"{modality}: no usable epoch (flat, NaN or clipped); treated as absent")
    if hyp is not None:
        hyp = hyp.aligned(n_epochs, allow_mismatch=allow_mismatch)
        warnings.extend(f"hypnogram: {w}" for w in hyp.warnings)
        stages, hyp_source = hyp.stages.astype(np.int8), Path(hypnogram).name
    else:
        stages, hyp_source = np.full(n_epochs, UNSCORED, np.int8), ""
    return Night(
        meta=meta or NightMeta(night_id=p.stem),
        signals={modality: epochs},
        epoch_valid={modality: ok},
        stages=stages,
        provenance={modality: prov},
        start_time=None,
        source_file=p.name,
        warnings=warnings,
        hypnogram_source=hyp_source,
    )
