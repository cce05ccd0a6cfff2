"""Tiny recordings in every format the reader registry takes, written offline in a test folder.

MNE's own exporters need packages that are not installed (``pybv`` for BrainVision, ``eeglabio``
for EEGLAB, ``edfio`` for EDF), so BrainVision and EEGLAB files are written here by hand (the
BrainVision 1.0 text header + float32 samples; the EEGLAB ``EEG`` struct through
``scipy.io.savemat``), FIF with ``mne.io.RawArray.save`` and WFDB with ``wfdb.wrsamp`` /
``wfdb.wrann``. Each writer returns the file to give the reader.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

START = datetime(2024, 3, 1, 23, 15, 0)
CHANNELS = (("C3-A2", "eeg", 30e-6), ("EOG-L", "eog", 60e-6), ("EMG chin", "emg", 10e-6), ("ECG", "ecg", 400e-6))
"""(label, MNE channel type, amplitude in V) of the montage every writer uses."""
STAGES = ("W", "N1", "N2", "N2", "N3", "R")


def montage(minutes: float = 3.0, sfreq: float = 128.0, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """(data in volts, shape (4, n), labels, MNE types): EEG with alpha, EOG, EMG and an ECG with beats."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * sfreq)
    t = np.arange(n) / sfreq
    rows = []
    for label, _, amp in CHANNELS:
        if label == "ECG":
            beat = (np.sin(2 * np.pi * 1.1 * t) > 0.995).astype(float)
            x = amp * (beat + 0.05 * rng.normal(size=n))
        else:
            x = amp * (np.sin(2 * np.pi * 10 * t) + rng.normal(size=n))
        rows.append(x)
    return np.array(rows), [c[0] for c in CHANNELS], [c[1] for c in CHANNELS]


def stage_descriptions(minutes: float) -> list[str]:
    """One ``Sleep stage X`` label per 30-s epoch."""
    return [f"Sleep stage {STAGES[i % len(STAGES)]}" for i in range(int(minutes * 2))]


def write_fif(path: Path, minutes: float = 3.0, *, stages: bool = False, sfreq: float = 128.0) -> Path:
    """A FIF file (``.fif`` or ``.fif.gz``) with a measurement date; optionally stage annotations."""
    import mne

    data, labels, types = montage(minutes, sfreq)
    raw = mne.io.RawArray(data, mne.create_info(labels, sfreq, types), verbose="error")
    raw.set_meas_date(START.replace(tzinfo=UTC))  # MNE keeps an EDF's clock digits as UTC; so do we
    if stages:
        desc = stage_descriptions(minutes)
        raw.set_annotations(mne.Annotations(np.arange(len(desc)) * 30.0, 30.0, desc, orig_time=raw.info["meas_date"]))
    raw.save(path, overwrite=True, verbose="error")
    return path


def write_brainvision(base: Path, minutes: float = 3.0, sfreq: float = 128.0) -> Path:
    """``base.vhdr`` + ``.vmrk`` + ``.eeg`` (float32 µV, multiplexed), start in the New Segment marker."""
    data, labels, _ = montage(minutes, sfreq)
    base.with_suffix(".eeg").write_bytes((data * 1e6).T.astype("<f4").tobytes())
    channels = "\n".join(f"Ch{i + 1}={label},,1,µV" for i, label in enumerate(labels))
    base.with_suffix(".vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={base.name}.eeg\nMarkerFile={base.name}.vmrk\nDataFormat=BINARY\n"
        f"DataOrientation=MULTIPLEXED\nNumberOfChannels={len(labels)}\nSamplingInterval={1e6 / sfreq:g}\n\n"
        f"[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n\n[Channel Infos]\n{channels}\n",
        encoding="utf-8",
    )
    base.with_suffix(".vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={base.name}.eeg\n\n[Marker Infos]\n"
        f"Mk1=New Segment,,1,1,0,{START.strftime('%Y%m%d%H%M%S')}000000\n",
        encoding="utf-8",
    )
    return base.with_suffix(".vhdr")


def write_eeglab(path: Path, minutes: float = 3.0, sfreq: float = 128.0) -> Path:
    """An EEGLAB ``.set`` holding its data (µV), written as MATLAB 5 through scipy."""
    import scipy.io

    data, labels, _ = montage(minutes, sfreq)
    chanlocs = np.zeros((len(labels),), dtype=[("labels", object)])
    for i, label in enumerate(labels):
        chanlocs[i]["labels"] = label
    n = data.shape[1]
    eeg = {"setname": "night", "nbchan": float(len(labels)), "trials": 1.0, "pnts": float(n), "srate": sfreq,
           "xmin": 0.0, "xmax": (n - 1) / sfreq, "data": (data * 1e6).astype(np.float32), "chanlocs": chanlocs,
           "event": np.array([]), "epoch": np.array([]), "times": np.arange(n) / sfreq * 1000.0,
           "icawinv": np.array([]), "icasphere": np.array([]), "icaweights": np.array([])}  # fmt: skip
    scipy.io.savemat(path, {"EEG": eeg}, appendmat=False)
    return path


def write_wfdb_record(folder: Path, name: str = "rec", *, minutes: float = 3.0, fs: int = 128, fmt: str = "212",
                      beats: bool = False, stages: bool = False, spf: int = 1) -> Path:  # fmt: skip
    """A WFDB signal record (``.hea`` + ``.dat``; EEG, ECG, a breathing belt), optionally with
    ``.ecg`` beat annotations and ``.st`` stages (slpdb style); returns the ``.hea``.

    ``spf`` > 1 writes the EEG at ``spf`` samples per frame (a multi-frequency record).
    """
    import wfdb

    data, _, _ = montage(minutes, fs * spf)
    n = int(minutes * 60 * fs)
    eeg = data[0, : n * spf] * 1e3  # mV
    ecg = data[3, : n * spf : spf] * 1e3
    belt = 0.5 * np.sin(2 * np.pi * 0.25 * np.arange(n) / fs)
    names, units = ["EEG (C4-A1)", "ECG", "Resp (sum)"], ["mV", "mV", "l"]
    if spf == 1:
        wfdb.wrsamp(name, fs=fs, units=units, sig_name=names, p_signal=np.c_[eeg, ecg, belt], fmt=[fmt] * 3,
                    base_datetime=START, comments=["44 M 89"], write_dir=str(folder))  # fmt: skip
    else:
        wfdb.wrsamp(name, fs=fs, units=units, sig_name=names, e_p_signal=[eeg, ecg, belt], samps_per_frame=[spf, 1, 1],
                    fmt=[fmt] * 3, base_datetime=START, comments=["44 M 89"], write_dir=str(folder))  # fmt: skip
    if beats:
        rr = 0.9 + 0.05 * np.sin(np.arange(int(minutes * 80)) / 4.0)  # seconds, breathing with the heart
        samples = (fs // 2 + np.cumsum(rr) * fs).astype(np.int64)
        samples = samples[samples < n - fs // 2]
        wfdb.wrann(name, "ecg", samples, symbol=["N"] * samples.size, fs=fs, write_dir=str(folder))
    if stages:
        notes = ["W", "1", "2", "2", "3", "R"] * int(minutes * 2 // 6 + 1)
        notes = notes[: int(minutes * 2)]
        wfdb.wrann(name, "st", 1 + np.arange(len(notes), dtype=np.int64) * 30 * fs, symbol=['"'] * len(notes),
                   aux_note=notes, fs=fs, write_dir=str(folder))  # fmt: skip
    return folder / f"{name}.hea"
