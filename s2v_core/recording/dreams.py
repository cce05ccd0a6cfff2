"""A canonical night from a DREAMS single-channel text excerpt (``excerptN.txt``).

Examples
--------
>>> night = load_dreams_night("excerpt1.txt", "Hypnogram_excerpt1.txt")  # doctest: +SKIP
>>> night.modalities, night.n_epochs  # doctest: +SKIP
(('eeg',), 60)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from s2v_core import signals as sig
from s2v_core.errors import ChannelMappingError, InputFileError
from s2v_core.io.dreams import DreamsSignal, infer_sfreq, read_dreams_signal
from s2v_core.io.hypnogram.core import Hypnogram
from s2v_core.io.hypnogram.reader import read_hypnogram
from s2v_core.limits.bounds import check_allocation, check_duration, check_rate, describe_seconds
from s2v_core.modalities import MODALITIES, SFREQ
from s2v_core.night import Night, NightMeta, Provenance, n_epochs_for
from s2v_core.recording.channels import map_channels
from s2v_core.recording.loading import BIOPOTENTIALS, resolve_biopotential_unit
from s2v_core.stages import UNSCORED

__all__ = ["load_dreams_night"]


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
    rec = read_dreams_signal(path)
    p = rec.path
    modality = _channel_modality(p, rec.label, modality)
    hyp = None
    if hypnogram is not None:
        hyp = read_hypnogram(hypnogram)
    sfreq = _sampling_rate(p, rec.n_samples, sfreq, hyp)
    duration_s = rec.n_samples / float(sfreq)
    _check_limits(p, rec, modality, sfreq, duration_s)
    n_epochs = n_epochs_for(duration_s)
    if n_epochs == 0:
        raise InputFileError(
            p, f"recording is {duration_s:.0f} s long, shorter than one 30-s epoch"
        )
    warnings: list[str] = []
    epochs, ok, prov = _canonical_channel(rec, modality, sfreq, n_epochs)
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


def _channel_modality(p: Path, label: str, modality: str | None) -> str:
    """The channel's modality: ``modality`` if given, else from ``label``; a biopotential.

    Raises
    ------
    ChannelMappingError
        The label maps to no modality, ``modality`` is unknown, or it is not a biopotential.
    """
    if modality is None:
        chosen = map_channels([label]).as_dict()
        if not chosen:
            raise ChannelMappingError(
                f"{p.name}: channel {label!r} maps to no modality; say which it is "
                f"(modality=..., one of {', '.join(MODALITIES)})"
            )
        modality = next(iter(chosen))
    elif modality not in MODALITIES:
        raise ChannelMappingError(
            f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}"
        )
    if modality not in BIOPOTENTIALS:
        raise ChannelMappingError(
            f"{p.name}: DREAMS text excerpts hold biopotentials in µV; {modality!r} is not one "
            f"({', '.join(BIOPOTENTIALS)})"
        )
    return modality


def _sampling_rate(p: Path, n_samples: int, sfreq: float | None, hyp: Hypnogram | None) -> float:
    """``sfreq``, or the rate that makes the signal span the hypnogram; checked to be positive.

    Raises
    ------
    InputFileError
        Neither ``sfreq`` nor a hypnogram, or a rate that is not a positive number.
    """
    if sfreq is None:
        if hyp is None:
            raise InputFileError(
                p, "the file has no sampling rate: give sfreq=..., or a hypnogram to derive it"
            )
        sfreq = infer_sfreq(n_samples, hyp.n_epochs * hyp.epoch_seconds, path=p)
    if not (math.isfinite(sfreq) and sfreq > 0):
        raise InputFileError(p, f"sampling rate must be a positive number of Hz, got {sfreq!r}")
    return sfreq


def _check_limits(p: Path, rec: DreamsSignal, modality: str, sfreq: float, duration_s: float) -> None:
    """The rate, the length it gives, and the canonical channel's size, against :mod:`s2v_core.limits.bounds`.

    Raises
    ------
    InputFileError
        A rate outside [1/300 Hz, 1 MHz], over 72 h, or a canonical channel far larger than the
        file (an explicit ``sfreq`` far too low for the samples).
    """
    check_rate(p, sfreq, f"channel {rec.label!r}")
    check_duration(p, duration_s, f"{rec.n_samples} samples at {sfreq:g} Hz: the recording")
    need = 8.0 * rec.n_samples + 4.0 * duration_s * SFREQ[modality]  # samples read + canonical
    check_allocation(
        p, need, p.stat().st_size, f"channel {rec.label!r} over {describe_seconds(duration_s)}"
    )


def _canonical_channel(
    rec: DreamsSignal, modality: str, sfreq: float, n_epochs: int
) -> tuple[np.ndarray, np.ndarray, Provenance]:
    """The channel in µV at the modality's rate, in epochs: (epochs, epoch validity, provenance).

    The provenance carries the unit and plausibility warnings.
    """
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
    return epochs, ok, prov
