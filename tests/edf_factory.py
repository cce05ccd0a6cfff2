"""Write small EDF/EDF+/BDF files for tests, with pyedflib (an independent writer)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib


def _bound(v: float, *, down: bool) -> float:
    """A value beyond ``v`` (in the given direction) that fits the 8-character EDF field."""
    for digits in range(7, 0, -1):
        text = f"{v:.{digits}g}"
        if "e" in text:
            text = f"{v:.{digits}f}"
        if len(text) <= 8:
            b = float(text)
            step = 10 ** (np.floor(np.log10(abs(v) + 1e-30)) - digits + 1)
            b = b - step if (down and b > v) else b + step if (not down and b < v) else b
            if len(f"{b:.{digits}g}") <= 8 and "e" not in f"{b:.{digits}g}":
                return float(f"{b:.{digits}g}")
    return float(np.floor(v)) if down else float(np.ceil(v))


def write_edf(
    path: Path,
    channels: dict[str, tuple[np.ndarray, float, str]],
    *,
    start: datetime = datetime(2024, 3, 1, 22, 30, 0),
    annotations: list[tuple[float, float, str]] | None = None,
    file_type: int = pyedflib.FILETYPE_EDFPLUS,
    patient_name: str = "",
    birthdate=None,
) -> Path:
    """channels: label -> (physical samples, sfreq, dimension). Rates must give whole samples per 1-s record."""
    labels = list(channels)
    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=file_type)
    try:
        headers = []
        for lab in labels:
            x, fs, dim = channels[lab]
            lo, hi = float(np.min(x)), float(np.max(x))
            if hi - lo < 1e-6:
                hi = lo + 1.0
            pad = 0.05 * (hi - lo)
            headers.append({
                "label": lab, "dimension": dim, "sample_frequency": fs,
                "physical_min": _bound(lo - pad, down=True), "physical_max": _bound(hi + pad, down=False),
                "digital_min": -32768 if file_type != pyedflib.FILETYPE_BDFPLUS else -8388608,
                "digital_max": 32767 if file_type != pyedflib.FILETYPE_BDFPLUS else 8388607,
                "transducer": "", "prefilter": "",
            })
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(start)
        if patient_name:
            writer.setPatientName(patient_name)
        if birthdate:
            writer.setBirthdate(birthdate)
        for onset, dur, text in annotations or []:
            writer.writeAnnotation(onset, dur, text)
        writer.writeSamples([np.asarray(channels[lab][0], dtype=np.float64) for lab in labels])
    finally:
        writer.close()
    return path


def psg_channels(minutes: float = 10, seed: int = 0) -> dict[str, tuple[np.ndarray, float, str]]:
    """A plausible small PSG montage: EEG/EOG/EMG in µV at 256 Hz, ECG at 256 Hz, belts at 32 Hz, SpO2 1 Hz."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60)
    t256 = np.arange(n * 256) / 256
    eeg = 20 * np.sin(2 * np.pi * 10 * t256) + 10 * rng.standard_normal(t256.size)
    eog = 30 * np.sin(2 * np.pi * 0.3 * t256) + 5 * rng.standard_normal(t256.size)
    emg = 8 * rng.standard_normal(t256.size)
    beat = np.zeros_like(t256)
    beat_times = np.arange(0.5, n, 60 / 62)
    for bt in beat_times:
        i = int(bt * 256)
        beat[max(i - 3, 0): i + 3] += np.hanning(min(6, t256.size - max(i - 3, 0)))[: len(beat[max(i - 3, 0): i + 3])]
    ecg = 1000 * beat + 20 * rng.standard_normal(t256.size)
    t32 = np.arange(n * 32) / 32
    thor = 500 * np.sin(2 * np.pi * 0.25 * t32)
    flow = 100 * np.sin(2 * np.pi * 0.25 * t32 + 0.5)
    spo2 = 96 + 0.5 * np.sin(2 * np.pi * t32[::32] / 120)
    return {
        "EEG C4-M1": (eeg, 256, "uV"),
        "E1-M2": (eog, 256, "uV"),
        "Chin1-Chin2": (emg, 256, "uV"),
        "ECG II": (ecg, 256, "uV"),
        "THOR RES": (thor, 32, "uV"),
        "Flow": (flow, 32, "uV"),
        "SpO2": (spo2, 1, "%"),
    }


def with_noise_channel(source: Path, path: Path, prefix: str = "C4", seed: int = 2) -> Path:
    """A copy of the EDF ``source`` whose channel starting with ``prefix`` holds white noise (20 uV).

    White noise in place of the EEG is far outside the shipped model's training feature ranges:
    a recording with one unfamiliar modality.
    """
    reader = pyedflib.EdfReader(str(source))
    try:
        chans = {reader.getLabel(i): (reader.readSignal(i), reader.getSampleFrequency(i), reader.getPhysicalDimension(i))
                 for i in range(reader.signals_in_file)}  # fmt: skip
    finally:
        reader.close()
    label = next(k for k in chans if k.startswith(prefix))
    x, fs, dim = chans[label]
    chans[label] = (np.random.default_rng(seed).normal(0, 20, len(x)), fs, dim)
    return write_edf(path, chans)
