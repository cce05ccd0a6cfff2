"""From a recording file or an MNE Raw (plus optional hypnogram and metadata) to a canonical :class:`Night`.

The flow reads top to bottom: open the file -> map channels to modalities -> read each mapped
channel -> convert units -> resample -> cut into 30-s epochs -> derive ``ibi`` and ``resp`` ->
attach stages and metadata. Every decision (channel chosen, unit assumed, reader used, signal
derived) is recorded in the night's provenance and warnings. An ``mne.io.BaseRaw`` takes the same
path through :class:`s2v_core.recording.mne_raw.RawRecording`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from s2v_core import signals as sig
from s2v_core.errors import ChannelMappingError, InputFileError
from s2v_core.io.edf import EdfRecording, open_recording
from s2v_core.io.hypnogram.core import hypnogram_from_annotations
from s2v_core.io.hypnogram.reader import read_hypnogram
from s2v_core.io.wfdb_beats import beats_to_ibi, read_wfdb_beats
from s2v_core.limits.bounds import check_allocation, describe_seconds
from s2v_core.modalities import EPOCH_SECONDS, MODALITIES, SFREQ
from s2v_core.night import Night, NightMeta, Provenance, n_epochs_for
from s2v_core.recording.channels import ChannelMapping, map_channels
from s2v_core.recording.mne_raw import (
    RawRecording,
    annotation_stages,
    is_mne_annotations,
    is_mne_raw,
    recording_type_error,
)
from s2v_core.recording.pairing import pair_hypnogram
from s2v_core.stages import UNSCORED, label_to_stage

__all__ = [
    "BIOPOTENTIALS",
    "MIN_PLAUSIBLE_SFREQ",
    "READ_THREADS",
    "load_night",
    "load_open_recording",
    "load_wfdb_night",
    "resolve_biopotential_unit",
    "set_read_threads",
    "with_hypnogram",
]

log = logging.getLogger(__name__)

BIOPOTENTIALS = ("eeg", "eog", "emg", "ecg")
READ_THREADS = 2
"""Channels read and preprocessed at once (1: one after the other); see :func:`set_read_threads`."""
# Below these rates a channel cannot carry what the modality needs (sleep spindles and alpha for
# EEG, muscle tone for EMG, R peaks for ECG, breaths for the belts and flow); a lower declared
# rate usually means a wrong record duration or a mis-mapped channel. Reading goes on, with a warning.
MIN_PLAUSIBLE_SFREQ = {"eeg": 32.0, "eog": 32.0, "emg": 32.0, "ecg": 32.0, "ibi": 0.0, "resp": 0.0,
                       "effort": 1.0, "airflow": 1.0, "spo2": 0.1}

# Plausible amplitude, in µV, per biopotential: the median absolute deviation for EEG/EOG/EMG and
# the 99.5th percentile of the absolute deviation (about the R-wave height) for ECG. Used only to
# catch unit mistakes (V vs µV, mV vs µV), not to judge signal quality.
_PLAUSIBLE_UV = {"eeg": (1.0, 300.0), "eog": (1.0, 1000.0), "emg": (0.2, 500.0), "ecg": (50.0, 10000.0)}


def set_read_threads(n: int) -> None:
    """Read and preprocess up to ``n`` channels of a recording at once (for this process).

    Raises
    ------
    ValueError
        ``n`` is below 1.
    """
    global READ_THREADS
    if n < 1:
        raise ValueError(f"reading threads must be >= 1, got {n}")
    READ_THREADS = int(n)


def _amplitude(x: np.ndarray, modality: str) -> float:
    ok = np.isfinite(x)
    finite = x if ok.all() else x[ok]  # no copy of a complete channel
    if finite.size == 0:
        return float("nan")
    step = max(1, finite.size // 200_000)  # a subsample is plenty for a unit check
    dev = np.abs(finite[::step] - np.median(finite[::step]))
    return float(np.percentile(dev, 99.5) if modality == "ecg" else np.median(dev))


def resolve_biopotential_unit(
    modality: str, x: np.ndarray, dimension: str
) -> tuple[float, list[str]]:
    """Choose the multiplier to µV for a biopotential channel.

    The declared dimension wins when the resulting amplitude is plausible. When it is not (the
    classic V-vs-µV mistake, or an upper-case "MV" that really holds µV), and exactly one of µV,
    mV or V gives a plausible amplitude, that one is used and a warning says so.
    """
    warnings: list[str] = []
    declared = sig.unit_scale_to_uV(dimension)
    if declared is None:
        warnings.append(f"unknown dimension {dimension!r}; assumed µV")
        declared = 1.0
    lo, hi = _PLAUSIBLE_UV[modality]
    mad = _amplitude(x, modality)
    if not np.isfinite(mad) or mad == 0:
        return declared, warnings

    def plausible(scale: float) -> bool:
        return lo <= mad * scale <= hi

    if plausible(declared):
        return declared, warnings
    options = [s for s in (1.0, 1e3, 1e6) if s != declared and plausible(s)]
    names = {1.0: "µV", 1e3: "mV", 1e6: "V"}
    if len(options) == 1:
        warnings.append(
            f"amplitude implausible in the declared unit {dimension!r} (typical deviation "
            f"{mad * declared:.3g} µV); values were read as {names[options[0]]} instead"
        )
        return options[0], warnings
    warnings.append(
        f"amplitude implausible for {modality} (typical deviation {mad * declared:.3g} µV "
        f"with the declared unit {dimension!r}); check the units"
    )
    return declared, warnings


def load_night(
    path: str | os.PathLike | Any,
    hypnogram: str | os.PathLike | Any | None = None,
    *,
    mapping: Mapping[str, str | None] | None = None,
    modalities: tuple[str, ...] | None = None,
    meta: NightMeta | None = None,
    allow_mismatch: bool = False,
    hypnogram_format: str = "auto",
) -> Night:
    """Read a recording into a canonical night.

    Parameters
    ----------
    path : path or mne.io.BaseRaw
        EDF, EDF+ or BDF file, or a WFDB beat-annotation file (``.ecg``) / record base name whose
        ``.ecg`` beats give ``ibi`` and whose ``.st`` gives the stages. Or an MNE Raw object
        (e.g. from ``mne.io.read_raw_edf``), mapped like a file: the same alias table, MNE's
        channel types ``eog``/``emg``/``ecg``/``resp`` respected, volts converted like the file's
        units, the start time from ``raw.info["meas_date"]`` (see
        :mod:`s2v_core.recording.mne_raw`).
    hypnogram : path or mne.Annotations, optional
        Any format :func:`s2v_core.io.hypnogram.read_hypnogram` reads. Without it, stage
        annotations inside an EDF+ file are used when present, else every epoch is unscored.
        A Raw's own annotations are never read for stages unless they are passed here
        (``hypnogram=raw.annotations``, or ``mne.read_annotations("night-hypnogram.edf")``).
    mapping : mapping, optional
        Channel overrides ``{modality: label or None}`` (see :func:`map_channels`).
    modalities : tuple of str, optional
        Only build these modalities (default: every one that can be mapped or derived).
    meta : NightMeta, optional
        Metadata; ``night_id`` defaults to the file stem.
    allow_mismatch : bool
        Pad or trim a hypnogram that is longer or shorter than the signal instead of refusing it.

    Raises
    ------
    TypeError
        ``path`` is neither a path nor an ``mne.io.BaseRaw``.
    InputFileError, ChannelMappingError, HypnogramError
        The recording or the hypnogram cannot be used (the message says why).

    Examples
    --------
    >>> night = load_night("night.edf", "night.xml")  # doctest: +SKIP
    >>> night.modalities, night.signals["eeg"].shape  # doctest: +SKIP
    (('eeg', 'eog', 'emg', 'ecg', 'ibi', 'resp'), (960, 3840))
    >>> night = load_night(mne.io.read_raw_edf("night.edf"), "night.xml")  # doctest: +SKIP
    """
    options = {"mapping": mapping, "modalities": modalities, "meta": meta,
               "allow_mismatch": allow_mismatch, "hypnogram_format": hypnogram_format}  # fmt: skip
    if is_mne_raw(path):
        return _load_from(RawRecording(path), hypnogram, **options)
    if not isinstance(path, str | os.PathLike):
        raise recording_type_error(path)
    if is_mne_annotations(hypnogram):
        raise TypeError("mne.Annotations are a hypnogram of an mne.io.Raw: load the Raw, or give "
                        "a recording file its hypnogram file")
    p = Path(path)
    if p.suffix.lower() in (".ecg", ".hea", ".st") or (
        not p.exists() and p.with_suffix(".ecg").exists()
    ):
        return load_wfdb_night(p, meta=meta)
    with open_recording(p) as rec:
        return _load_from(rec, hypnogram, **options)


def load_open_recording(
    rec: Any,
    hypnogram: str | os.PathLike | None = None,
    *,
    mapping: Mapping[str, str | None] | None = None,
    modalities: tuple[str, ...] | None = None,
    meta: NightMeta | None = None,
    allow_mismatch: bool = False,
    hypnogram_format: str = "auto",
) -> Night:
    """:func:`load_night` of a recording another reader has opened.

    ``rec`` has the reading interface of :class:`s2v_core.io.edf.EdfRecording`: ``header`` (a
    :class:`~s2v_core.io.edf_header.RecordingHeader`), ``read_channel(label)`` returning the
    samples in the channel's ``dimension`` and its rate, ``warnings`` and ``reader`` (e.g.
    :class:`s2v_core.io.wfdb_signals.WfdbSignals`). The channels then take exactly the path of
    an EDF file's; the options are :func:`load_night`'s.
    """
    return _load_from(rec, hypnogram, mapping=mapping, modalities=modalities, meta=meta,
                      allow_mismatch=allow_mismatch, hypnogram_format=hypnogram_format)  # fmt: skip


def _load_from(
    rec: EdfRecording | RawRecording,
    hypnogram: str | os.PathLike | Any | None,
    *,
    mapping: Mapping[str, str | None] | None,
    modalities: tuple[str, ...] | None,
    meta: NightMeta | None,
    allow_mismatch: bool,
    hypnogram_format: str,
) -> Night:
    """:func:`load_night` of an open recording file or an MNE Raw."""
    raw_annotations = isinstance(rec, RawRecording) and is_mne_annotations(hypnogram)
    if not (hypnogram is None or raw_annotations or isinstance(hypnogram, str | os.PathLike)):
        raise TypeError(
            "hypnogram must be a path to a hypnogram file"
            + (" or, with an mne.io.Raw, mne.Annotations" if isinstance(rec, RawRecording) else "")
            + f", not {type(hypnogram).__module__}.{type(hypnogram).__qualname__}"
        )
    header = rec.header
    p = Path(header.path)
    wanted = set(MODALITIES if modalities is None else modalities)
    n_epochs = n_epochs_for(header.duration_s)
    if n_epochs == 0:
        raise InputFileError(p, f"recording is {header.duration_s:.0f} s long, shorter than one 30-s epoch")
    cmap = map_channels(header.labels, mapping, types=getattr(rec, "types", None))
    if not cmap.choices:
        raise ChannelMappingError(
            f"{p.name}: no channel could be mapped to any modality; channels: "
            + ", ".join(repr(x) for x in header.labels)
            + ". Map them explicitly (e.g. --map eeg=LABEL)."
        )
    warnings = list(rec.warnings) + list(cmap.notes)
    signals, valid, prov = _read_mapped(rec, cmap, wanted, n_epochs, warnings)
    stages, hyp_source = _stages_for(rec, p, hypnogram, n_epochs, allow_mismatch, warnings, hypnogram_format)
    if not signals:
        raise ChannelMappingError(
            f"{p.name}: none of the mapped channels holds a usable signal ({cmap.as_dict()})"
        )
    meta = meta or NightMeta(night_id=p.stem)
    night = Night(
        meta=meta,
        signals=signals,
        epoch_valid=valid,
        stages=stages,
        provenance=prov,
        start_time=header.start_time,
        source_file=p.name,
        warnings=warnings,
        hypnogram_source=hyp_source,
    )
    for m in night.signals:
        if not night.epoch_valid[m].any():
            warnings.append(f"{m}: no usable epoch (flat, NaN or clipped); treated as absent")
    return night


def with_hypnogram(
    night: Night,
    hypnogram: str | Path,
    *,
    allow_mismatch: bool = False,
    hypnogram_format: str = "auto",
) -> Night:
    """A copy of ``night`` scored by another hypnogram file (the signals are not read again).

    Gives the stages :func:`load_night` gives with ``hypnogram``: the file is read against the
    recording's start time and aligned to its epochs. Warnings about an earlier hypnogram are
    replaced by this one's; the signal arrays are shared with ``night``, not copied.

    Raises
    ------
    HypnogramError
        The file cannot be read, or its length differs from the signal's beyond the tolerance
        (unless ``allow_mismatch``).
    """

    hyp = pair_hypnogram(hypnogram, night.n_epochs, night.start_time, fmt=hypnogram_format,
                         allow_mismatch=allow_mismatch)  # fmt: skip
    warnings = [w for w in night.warnings if not w.startswith("hypnogram: ")]
    warnings += [f"hypnogram: {w}" for w in hyp.warnings]
    return dataclasses.replace(
        night,
        signals=dict(night.signals),
        epoch_valid=dict(night.epoch_valid),
        stages=hyp.stages.astype(np.int8),
        hypnogram_source=Path(hypnogram).name,
        warnings=warnings,
    )


_Assessed = tuple[np.ndarray, np.ndarray, Provenance]
"""A channel at the canonical rate, assessed: (epochs, epoch validity, provenance)."""


def _read_mapped(
    rec: EdfRecording | RawRecording,
    cmap: ChannelMapping,
    wanted: set[str],
    n_epochs: int,
    warnings: list[str],
) -> tuple[dict, dict, dict]:
    signals: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    prov: dict[str, Provenance] = {}
    duration_s = n_epochs * 30.0
    ecg_native: tuple[np.ndarray, float] | None = None
    breathing_native: dict[str, tuple[np.ndarray, float, str]] = {}

    def store(m: str, epochs: np.ndarray, ok: np.ndarray, provenance: Provenance) -> None:
        signals[m], valid[m], prov[m] = epochs, ok, provenance
        warnings.extend(f"{m}: {w}" for w in provenance.warnings)

    jobs = _read_jobs(cmap, wanted)
    if isinstance(rec, EdfRecording):  # a Raw is in memory already, or read by MNE from its file
        _check_read_budget(rec, jobs, wanted, n_epochs)
    results = _read_channels(rec, jobs, wanted, n_epochs)
    for (m, label), (x, fs, assessed) in zip(jobs, results, strict=True):
        if m == "ecg":
            ecg_native = (x, fs)
        if m in ("effort", "airflow"):
            breathing_native[m] = (x, fs, label)
        if assessed is not None:
            store(m, *assessed)
    del results

    peaks = None
    if ecg_native is not None and (("ibi" in wanted and "ibi" not in signals) or "resp" in wanted):
        peaks = sig.detect_rpeaks(*ecg_native)
    if "ibi" in wanted and "ibi" not in signals and ecg_native is not None:
        store("ibi", *_derived_ibi(ecg_native, peaks, cmap.channel_for("ecg"), n_epochs))
    if "resp" in wanted and "resp" not in signals:
        src = _resp_source(breathing_native, ecg_native, peaks, cmap.channel_for("ecg"), duration_s)
        if src is not None:
            resp_prov = Provenance("resp", src[1], None, "", 1.0, "derived", src[2])
            store("resp", *_assess("resp", src[0], resp_prov, n_epochs))
    return signals, valid, prov


def _assess(m: str, x_canon: np.ndarray, provenance: Provenance, n_epochs: int) -> _Assessed:
    """Cut a canonical-rate signal into epochs, judge each, and add plausibility warnings."""
    epochs = sig.epoch_matrix(x_canon, SFREQ[m], n_epochs, copy=False)  # x_canon is ours alone
    ok = sig.epoch_quality(epochs, m)
    provenance.warnings.extend(sig.plausibility_warnings(m, epochs[ok] if ok.any() and not ok.all() else epochs))
    return epochs, ok, provenance


def _read_jobs(cmap: ChannelMapping, wanted: set[str]) -> list[tuple[str, str]]:
    """(modality, label) of each mapped channel that is wanted or needed to derive one, in modality order."""
    jobs = []
    for m in MODALITIES:
        label = cmap.channel_for(m)
        need_for_derivation = (m == "ecg" and ("ibi" in wanted or "resp" in wanted)) or (
            m in ("effort", "airflow") and "resp" in wanted
        )
        if label is None or (m not in wanted and not need_for_derivation):
            continue
        jobs.append((m, label))
    return jobs


def _check_read_budget(
    rec: EdfRecording, jobs: list[tuple[str, str]], wanted: set[str], n_epochs: int
) -> None:
    """Refuse, before any channel is read, to produce more samples than the file can justify.

    Counts, in float32 bytes, every mapped channel at the rate its reader returns it (the EDF+D
    timeline with its NaN gaps; MNE's highest rate, in float64) and at its modality's canonical
    rate, plus the derived ``ibi``/``resp``; see :func:`s2v_core.limits.bounds.check_allocation`.

    Raises
    ------
    InputFileError
        Over ``max(16 MiB, 32 x the file size)``.
    """
    h = rec.header
    fastest = max(c.sfreq for c in h.channels)
    need = 0.0
    for m, label in jobs:
        info = h.channel(label)
        if rec.reader == "mne":  # every channel at the highest rate, over every record in the file
            in_file = (h.file_size - h.header_bytes) // h.record_bytes
            need += 8.0 * max(h.n_records, in_file) * h.record_duration * fastest
        elif rec.reader == "native":
            need += 4.0 * max(h.duration_s * info.sfreq, h.n_records * info.samples_per_record)
        else:
            need += 4.0 * h.n_records * info.samples_per_record
        if m in wanted:
            need += 4.0 * n_epochs * EPOCH_SECONDS * SFREQ[m]
    read = {m for m, _ in jobs}
    derived = {"ibi": {"ecg"}, "resp": {"ecg", "effort", "airflow"}}
    need += 4.0 * n_epochs * EPOCH_SECONDS * sum(
        SFREQ[m] for m, sources in derived.items() if m in wanted and m not in read and read & sources
    )
    check_allocation(
        h.path, need, h.file_size,
        f"{len(jobs)} channel{'s' if len(jobs) != 1 else ''} over "
        f"{describe_seconds(h.duration_s)} at their own and the model's rates",
    )


def _read_channels(
    rec: EdfRecording | RawRecording, jobs: list[tuple[str, str]], wanted: set[str], n_epochs: int
) -> list[tuple[np.ndarray | None, float, _Assessed | None]]:
    """:func:`_read_one` for every job, in the order of ``jobs`` (read by up to :data:`READ_THREADS`)."""
    # Channels are independent: two threads overlap their reading, resampling and checks (numpy
    # and scipy release the GIL); results are applied in modality order, so nothing depends on timing.
    if READ_THREADS > 1 and len(jobs) > 1 and rec.reader != "mne":  # MNE's raw object is not known to be thread-safe;
        # the native and pyedflib readers are (memory-mapped records; pyedflib reads under a lock)

        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="s2v-read") as pool:
            return list(pool.map(lambda job: _read_one(rec, *job, wanted, n_epochs), jobs))
    return [_read_one(rec, *job, wanted, n_epochs) for job in jobs]


def _read_one(
    rec: EdfRecording | RawRecording, m: str, label: str, wanted: set[str], n_epochs: int
) -> tuple[np.ndarray | None, float, _Assessed | None]:
    """Read, scale, resample and assess one mapped channel (independent of the others).

    Returns the scaled native-rate signal when a derivation may need it (ECG, effort, airflow;
    else None), its native rate, and the assessed channel when ``m`` is wanted (else None).
    """
    info = rec.header.channel(label)
    x, fs = rec.read_channel(label)
    method = f"polyphase resampling {fs:g} -> {SFREQ[m]} Hz" if fs != SFREQ[m] else "none"
    reader = rec.reader
    if m in BIOPOTENTIALS:
        scale, unit_warn = resolve_biopotential_unit(m, x, info.dimension)
        x = x * np.float32(scale)
    elif m == "spo2":
        x, note = sig.to_percent(x, info.dimension)
        scale, unit_warn = 1.0, [note] if note else []
    else:
        scale, unit_warn = 1.0, []
    assessed = None
    if m in wanted:
        x_c = sig.resample(x, fs, SFREQ[m])
        orig = info.sfreq
        if reader == "mne" and abs(fs - info.sfreq) > 1e-6:
            method = f"MNE upsampled {info.sfreq:g} -> {fs:g} Hz on read; " + method
        if orig < MIN_PLAUSIBLE_SFREQ[m]:
            unit_warn = [*unit_warn, f"channel {label!r} is sampled at {orig:g} Hz, below the "
                         f"{MIN_PLAUSIBLE_SFREQ[m]:g} Hz this modality needs (the model sees {SFREQ[m]} Hz): "
                         "check the header's record duration and samples per record, or the mapping"]
        provenance = Provenance(m, label, orig, info.dimension, scale, reader, method, unit_warn)
        assessed = _assess(m, x_c, provenance, n_epochs)
    keep = m == "ecg" or m in ("effort", "airflow")
    return (x if keep else None), fs, assessed


def _derived_ibi(
    ecg_native: tuple[np.ndarray, float], peaks: np.ndarray, ecg_label: str | None, n_epochs: int
) -> _Assessed:
    """``ibi`` from the R peaks of the native-rate ECG, assessed."""
    x, fs = ecg_native
    ibi, _ = sig.ibi_from_beats(peaks / fs, n_epochs * 30.0)
    return _assess(
        "ibi",
        ibi,
        Provenance("ibi", f"derived from ECG {ecg_label!r}", None, "", 1.0, "derived",
                   f"R-peaks (sleepecg, {len(peaks)} beats) -> intervals at 4 Hz"),
        n_epochs,
    )


def _resp_source(
    breathing_native: dict[str, tuple[np.ndarray, float, str]],
    ecg_native: tuple[np.ndarray, float] | None,
    peaks: np.ndarray | None,
    ecg_label: str | None,
    duration_s: float,
) -> tuple[np.ndarray, str, str] | None:
    """(``resp`` signal, its source, its method): from effort, else airflow, else the ECG; or None."""
    for m in ("effort", "airflow"):
        if m in breathing_native:
            x, fs, label = breathing_native[m]
            return sig.resp_from_effort(x, fs), f"derived from {m} {label!r}", "band-pass of the breathing channel"
    if ecg_native is not None:
        x, fs = ecg_native
        return (
            sig.resp_from_ecg(x, fs, peaks, duration_s),
            f"derived from ECG {ecg_label!r}",
            "ECG-derived respiration (R-peak amplitude)",
        )
    return None


def _stages_for(
    rec: EdfRecording | RawRecording,
    path: Path,
    hypnogram: str | os.PathLike | Any | None,
    n_epochs: int,
    allow_mismatch: bool,
    warnings: list[str],
    fmt: str,
) -> tuple[np.ndarray, str]:

    if isinstance(rec, RawRecording) and is_mne_annotations(hypnogram):
        stages, hyp_warnings = annotation_stages(rec.raw, hypnogram, n_epochs, allow_mismatch=allow_mismatch)
        warnings.extend(f"hypnogram: {w}" for w in hyp_warnings)
        return stages, f"{path.name} (mne.Annotations)"
    if hypnogram is not None:
        hyp = pair_hypnogram(hypnogram, n_epochs, rec.header.start_time, fmt=fmt, allow_mismatch=allow_mismatch)
        warnings.extend(f"hypnogram: {w}" for w in hyp.warnings)
        return hyp.stages.astype(np.int8), Path(hypnogram).name
    if rec.header.file_type.endswith(("+C", "+D")):
        try:
            onsets, durations, texts = rec.read_annotations()
        except Exception as exc:  # annotations are optional; a broken channel must not block signals
            warnings.append(f"EDF+ annotations could not be read: {exc}")
            return np.full(n_epochs, UNSCORED, np.int8), ""
        stage_like = [t for t in texts if _is_stage_label(t)]
        if stage_like:  # annotations that are only events (apneas, lights) are not a hypnogram
            try:
                hyp = hypnogram_from_annotations(onsets, durations, texts, source=str(path))
            except Exception as exc:
                warnings.append(f"EDF+ stage annotations could not be used ({exc})")
                return np.full(n_epochs, UNSCORED, np.int8), ""
            if (hyp.stages >= 0).any():
                hyp = hyp.aligned(n_epochs, allow_mismatch=True)
                warnings.extend(f"hypnogram: {w}" for w in hyp.warnings)
                return hyp.stages.astype(np.int8), f"{path.name} (EDF+ annotations)"
    return np.full(n_epochs, UNSCORED, np.int8), ""


def _is_stage_label(text: str) -> bool:

    try:
        return label_to_stage(text) >= 0
    except KeyError:
        return False


def load_wfdb_night(path: str | Path, *, meta: NightMeta | None = None) -> Night:
    """A night from PhysioNet WFDB annotations: ``ibi`` from ``.ecg`` beats, stages from ``.st``.

    Age and sex come from the ``.hea`` header comment when present.
    """

    p = Path(path)
    base = p.with_suffix("") if p.suffix.lower() in (".ecg", ".hea", ".st") else p
    beats = read_wfdb_beats(base.with_suffix(".ecg"))
    n_epochs = n_epochs_for(beats.duration_s)
    ibi, ok = beats_to_ibi(beats, n_epochs)
    warnings: list[str] = []
    st = base.with_suffix(".st")
    if st.exists():
        hyp = read_hypnogram(st, "wfdb").aligned(n_epochs, allow_mismatch=True)
        stages, hyp_src = hyp.stages.astype(np.int8), st.name
        warnings.extend(f"hypnogram: {w}" for w in hyp.warnings)
    else:
        stages, hyp_src = np.full(n_epochs, UNSCORED, np.int8), ""
    ibi = np.where(ok, ibi, np.nan).astype(np.float32)
    epoch_ok = sig.epoch_quality(ibi, "ibi")
    prov = Provenance(
        "ibi", f"beat annotations {base.name}.ecg", beats.fs, "samples", 1.0, "wfdb",
        "normal-beat intervals resampled to 4 Hz",
    )
    prov.warnings.extend(sig.plausibility_warnings("ibi", ibi[epoch_ok] if epoch_ok.any() else ibi))
    header = NightMeta(night_id=base.name, subject=base.name.rstrip("abx"), site="slpdb",
                       age=beats.age, sex=beats.sex)  # fmt: skip
    # what the caller knows wins; the header fills the rest (slpdb: slp01a and slp01b are one subject)
    meta = header if meta is None else NightMeta(
        night_id=meta.night_id,
        subject=meta.subject or header.subject,
        site=meta.site or header.site,
        age=header.age if meta.age is None else meta.age,
        sex=meta.sex or header.sex,
    )
    return Night(
        meta=meta,
        signals={"ibi": ibi},
        epoch_valid={"ibi": epoch_ok},
        stages=stages,
        provenance={"ibi": prov},
        start_time=beats.start_time,
        source_file=f"{base.name}.ecg",
        warnings=warnings + [f"ibi: {w}" for w in prov.warnings],
        hypnogram_source=hyp_src,
    )
