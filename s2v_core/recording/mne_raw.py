"""An ``mne.io.BaseRaw`` read like a recording file, for :func:`s2v_core.recording.loading.load_night`.

:class:`RawRecording` gives a Raw object the interface of an open EDF file
(:class:`s2v_core.io.edf.EdfRecording`: a header, ``read_channel``), so that a night loaded from
MNE goes through exactly the same channel mapping, unit checks, resampling, epoching and
derivations as one loaded from a path.

* **Channels**: the labels go through the same alias table (:mod:`s2v_core.recording.channels`);
  MNE's channel types ``eog``, ``emg``, ``ecg`` and ``resp`` are respected (see
  :data:`~s2v_core.recording.channels.TYPE_MODALITIES`), ``stim`` channels are left out.
* **Units**: MNE stores voltages in volts; file readers return each channel in its file's own
  physical dimension and the loader converts (biopotentials to µV, with its plausibility check).
  :meth:`RawRecording.read_channel` undoes MNE's scaling so that both paths see the same values:
  with the unit MNE read from the file (``raw._orig_units``, kept by MNE's file readers) the
  samples come back in that unit; without it (``mne.io.RawArray``) a channel in volts is read as
  ``"V"``.
* **Start time**: ``raw.info["meas_date"]`` plus ``raw.first_time`` (a cropped Raw starts later),
  as a naive clock time. MNE stores an EDF header's local clock time as if it were UTC, so the
  UTC clock digits are the file's: a Raw of an EDF file starts when the file does.
* **Annotations** are not read for stages unless they are given as the hypnogram
  (:func:`annotation_stages`): a Raw's annotations are often events, not a scoring.

Examples
--------
>>> raw = mne.io.read_raw_edf("night.edf")  # doctest: +SKIP
>>> night = load_night(raw, "night-hypnogram.csv")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from s2v_core.io.edf_header import ChannelInfo, RecordingHeader
from s2v_core.io.hypnogram.core import hypnogram_from_annotations
from s2v_core.limits.bounds import check_duration, check_rate
from s2v_core.signals.units import unit_scale_to_uV

__all__ = [
    "FILE_TYPE",
    "RawRecording",
    "annotation_stages",
    "is_mne_annotations",
    "is_mne_raw",
    "raw_name",
    "raw_start_time",
    "recording_type_error",
]

log = logging.getLogger(__name__)

FILE_TYPE = "MNE Raw"
""":attr:`RecordingHeader.file_type` of a :class:`RawRecording` (no EDF+ annotations are read)."""

_FIFF_UNIT_V = 107  # mne.io.constants.FIFF.FIFF_UNIT_V: the channel's data are volts
# What MNE's EDF/BDF reader multiplies a file's values by, per physical dimension: only these
# spellings are scaled (to volts); every other dimension, "V" included, is kept as written.
_MNE_EDF_GAIN = {"uV": 1e-6, "µV": 1e-6, "μV": 1e-6, "\x83\xcaV": 1e-6, "mV": 1e-3}
_MNE_EDF_CLASSES = ("RawEDF", "RawBDF")


def _mne() -> Any | None:
    """The MNE module when it has been imported (an MNE object cannot exist otherwise), else None."""
    return sys.modules.get("mne")


def is_mne_raw(obj: Any) -> bool:
    """``obj`` is an ``mne.io.BaseRaw`` (checked without importing MNE)."""
    mne = _mne()
    return mne is not None and isinstance(obj, mne.io.BaseRaw)


def is_mne_annotations(obj: Any) -> bool:
    """``obj`` is an ``mne.Annotations`` (checked without importing MNE)."""
    mne = _mne()
    return mne is not None and isinstance(obj, mne.Annotations)


def recording_type_error(obj: Any) -> TypeError:
    """The error for something :func:`load_night` cannot read, saying what it takes instead."""
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    hint = ""
    mne = _mne()
    if mne is not None and isinstance(obj, mne.BaseEpochs):
        hint = " (epochs have lost the continuous night: pass the Raw they were cut from)"
    elif isinstance(obj, np.ndarray):
        hint = (
            " (wrap an array in mne.io.RawArray(data_in_volts, mne.create_info(ch_names, "
            "sfreq, ch_types)) first)"
        )
    return TypeError(
        f"load_night takes a path to a recording (str or os.PathLike: EDF/BDF, WFDB, DREAMS text, "
        f"FIF, BrainVision, EEGLAB...) or an "
        f"mne.io.BaseRaw (e.g. mne.io.read_raw_edf(path)), not {kind}{hint}"
    )


def raw_name(raw: Any) -> str:
    """The Raw's file name when it was read from a file, else ``"mne_raw"``."""
    files = [f for f in (getattr(raw, "filenames", None) or ()) if f]
    return Path(files[0]).name if files else "mne_raw"


def raw_start_time(raw: Any) -> datetime | None:
    """Clock time of the Raw's first sample, naive (UTC digits), or None without a ``meas_date``."""
    meas = raw.info["meas_date"]
    if meas is None:
        return None
    if meas.tzinfo is not None:
        meas = meas.astimezone(UTC).replace(tzinfo=None)
    return meas + timedelta(seconds=float(raw.first_time))


def _gain(raw: Any, unit: int, orig: str | None) -> tuple[float, str]:
    """(what MNE multiplied the channel's values by, the dimension they are read back in)."""
    if orig is None:  # made in memory: MNE's own unit is all there is
        return 1.0, "V" if unit == _FIFF_UNIT_V else ""
    if unit != _FIFF_UNIT_V:
        return 1.0, orig
    if type(raw).__name__ in _MNE_EDF_CLASSES:
        return _MNE_EDF_GAIN.get(orig.strip(), 1.0), orig
    to_uv = unit_scale_to_uV(orig)  # other readers bring every voltage to volts
    return (1.0, orig) if to_uv is None else (to_uv * 1e-6, orig)


class RawRecording:
    """An ``mne.io.BaseRaw`` with the reading interface of :class:`s2v_core.io.edf.EdfRecording`.

    ``header`` is a :class:`RecordingHeader` of file type :data:`FILE_TYPE` whose channels carry
    the Raw's labels, its sampling rate and, as ``dimension``, the unit :meth:`read_channel`
    returns; ``types`` maps each label to its MNE channel type. Nothing is copied until a channel
    is read (a Raw that is not preloaded is read from its file then, one channel at a time).

    Raises
    ------
    InputFileError
        The Raw lasts over 72 h or has a sampling rate outside the accepted range
        (:mod:`s2v_core.limits.bounds`), as a file would be refused.
    """

    reader = "mne"

    def __init__(self, raw: Any):
        self.raw = raw
        name = raw_name(raw)
        sfreq = float(raw.info["sfreq"])
        check_rate(name, sfreq, "the Raw")
        duration = raw.n_times / sfreq
        check_duration(name, duration, f"the Raw ({raw.n_times} samples at {sfreq:g} Hz)")
        orig_units = getattr(raw, "_orig_units", None) or {}
        self._gains: dict[str, float] = {}
        channels = []
        for k, ch in enumerate(raw.info["chs"]):
            label = ch["ch_name"]
            gain, dimension = _gain(raw, int(ch["unit"]), orig_units.get(label))
            self._gains[label] = gain
            channels.append(ChannelInfo(k, label, sfreq, dimension, math.nan, math.nan, 0, 0))
        self.types: dict[str, str] = dict(zip(raw.ch_names, raw.get_channel_types(), strict=True))
        self.header = RecordingHeader(
            path=name,
            file_type=FILE_TYPE,
            start_time=raw_start_time(raw),
            n_records=1,
            record_duration=duration,
            channels=channels,
            file_size=0,
        )
        self.warnings: list[str] = []
        if self.header.start_time is None:
            self.warnings.append(
                "the Raw has no measurement date (info['meas_date']): start time unknown"
            )

    def __enter__(self) -> RawRecording:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def read_channel(self, label: str) -> tuple[np.ndarray, float]:
        """Samples of one channel in ``header.channel(label).dimension``, float32, and the rate."""
        info = self.header.channel(label)
        data = self.raw.get_data(picks=[info.index])[0]
        return (data / self._gains[label]).astype(np.float32), info.sfreq


def annotation_stages(
    raw: Any, annotations: Any, n_epochs: int, *, allow_mismatch: bool = False
) -> tuple[np.ndarray, list[str]]:
    """Stages of the night of ``raw`` from ``mne.Annotations`` that hold a scoring.

    Onsets are placed on the Raw's timeline: annotations with an ``orig_time`` count from it (as
    ``raw.annotations`` and ``mne.read_annotations`` of a hypnogram file do), others from the
    Raw's first sample. Labels that are not stages (apnoeas, arousals, ``BAD_`` spans) are left
    out, as in a hypnogram file.

    Returns
    -------
    stages : np.ndarray, shape (n_epochs,), int8
    warnings : list of str

    Raises
    ------
    HypnogramError
        No stage label, or a scoring longer or shorter than the night beyond one epoch (unless
        ``allow_mismatch``).
    """
    onsets = np.asarray(annotations.onset, dtype=float)
    offset = 0.0
    warnings: list[str] = []
    orig, meas = annotations.orig_time, raw.info["meas_date"]
    if orig is not None and meas is not None:
        offset = (orig - meas).total_seconds() - float(raw.first_time)
    elif orig is not None:
        warnings.append(
            "the Raw has no measurement date: annotation onsets taken from its first sample"
        )
    hyp = hypnogram_from_annotations(
        onsets, np.asarray(annotations.duration, dtype=float), list(annotations.description),
        source="mne.Annotations", start_offset_s=offset, fmt="mne-annotations",
    )  # fmt: skip
    hyp = hyp.aligned(n_epochs, allow_mismatch=allow_mismatch)
    return hyp.stages.astype(np.int8), warnings + list(hyp.warnings)
