"""Domain randomisation: the same night as another device, site or technician might have recorded it.

A model trained on one generator's nights learns whatever only that generator produces. Every
training night can therefore be seen again with random acquisition conditions
(:func:`randomise_night`), applied to its canonical signals the way a user's file would have
shaped them before loading:

* biopotentials (EEG, EOG, chin EMG, ECG): a random file sampling rate between 50 and 512 Hz
  (content above its Nyquist frequency is lost, as when a 50-Hz file is resampled to 128 Hz), a
  random low-pass (20-45 Hz) and high-pass (0.1-0.5 Hz), 50- or 60-Hz mains interference, gain
  and polarity, another reference (EOG leaking into the EEG), movement artefacts and electrode
  pops;
* inter-beat intervals: missed and extra beats (bridged, as the loader bridges them) and timing
  jitter;
* breathing signals and SpO2: gain, polarity (belts), low-pass, baseline wander, SpO2 offset,
  1 % quantisation and sensor delay;
* every modality: missing stretches (epochs marked invalid).

Stages, metadata and the night's length never change. Used by ``s2v prepare --augment K``, which
adds K randomised copies of every training night to a store.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal as sps

from s2v_core.modalities import SFREQ
from s2v_core.night import Night, Provenance
from s2v_core.signals.resampling import resample

__all__ = ["EOG_LEAK", "FILE_RATES", "randomise_night"]

FILE_RATES = (50, 100, 128, 200, 250, 256, 500, 512)
"""Sampling rates a randomised biopotential is 'recorded' at (Hz)."""

EOG_LEAK = (0.02, 0.10)
"""Range of the EOG's share added to the EEG when a copy gets 'another reference' (half the copies).
A central EEG lead against a mastoid picks up a few per cent of the eye movements. Until
2026-12-06 the range was 0.05-0.3, of a generated EOG about twice the EEG's amplitude: the copies
then taught models that strong slow EEG activity may be eye movements. A tree on the EEG features
(``python bench/augment_ablation.py``) staged the DREAMS excerpts at kappa 0.39 with those copies,
0.47 with this range (0.57 without copies); recipe runs (four before, three after; ``bench/RESULTS.md``):
DREAMS 1-4 leave-one-subject-out 0.51 -> 0.60 on average, slpdb unchanged."""

_BIOPOTENTIALS = ("eeg", "eog", "emg", "ecg")
_BREATHING = ("resp", "effort", "airflow")


def _butter(x: np.ndarray, sfreq: float, cutoff: float, kind: str) -> np.ndarray:
    if not 0 < cutoff < sfreq / 2:
        return x
    sos = sps.butter(2, cutoff, btype=kind, fs=sfreq, output="sos")
    return sps.sosfiltfilt(sos, x).astype(np.float32)


def _biopotential(x: np.ndarray, modality: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One continuous biopotential (canonical rate) through a random acquisition chain."""
    fs = SFREQ[modality]
    rate = int(rng.choice(FILE_RATES))
    if rate < fs:
        x = resample(resample(x, fs, rate), rate, fs)[: len(x)]
    lowpass = float(rng.uniform(20.0, 45.0)) if modality != "emg" else float(rng.uniform(30.0, 63.0))
    x = _butter(x, fs, min(lowpass, 0.45 * rate), "lowpass")
    x = _butter(x, fs, float(rng.uniform(0.1, 0.5)), "highpass")
    scale = float(np.nanstd(x)) or 1.0
    if rate > 100 and rng.random() < 0.5:
        mains = float(rng.choice([50.0, 60.0]))
        t = np.arange(len(x)) / fs
        x = x + scale * rng.uniform(0.02, 0.3) * np.sin(2 * np.pi * mains * t + rng.uniform(0, 2 * np.pi))
    x = _artefacts(x, fs, scale, rng)
    gain = float(rng.lognormal(0.0, 0.4)) * (-1.0 if rng.random() < 0.5 else 1.0)
    return (gain * x).astype(np.float32), f"file {rate} Hz, low-pass {lowpass:.0f} Hz, gain {gain:+.2f}"


def _artefacts(x: np.ndarray, fs: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Movement bursts (slow, large) and electrode pops (a step that decays), a few per hour."""
    x = x.copy()
    hours = len(x) / fs / 3600
    for _ in range(rng.poisson(3 * hours)):
        start, dur = int(rng.integers(0, max(1, len(x) - 5 * fs))), int(rng.uniform(1, 5) * fs)
        t = np.arange(dur) / fs
        burst = np.sin(np.pi * t / t[-1]) * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t) * rng.uniform(3, 10) * scale
        x[start : start + dur] += burst[: len(x) - start]
    for _ in range(rng.poisson(2 * hours)):
        start = int(rng.integers(0, len(x)))
        t = np.arange(len(x) - start) / fs
        x[start:] += rng.choice([-1, 1]) * rng.uniform(2, 8) * scale * np.exp(-t / rng.uniform(0.2, 2.0))
    return x


def _ibi(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Beat-detection errors on the 4-Hz interval series, as they look after loading.

    A missed or an extra beat makes one or two intervals implausible; the loader drops such
    intervals and bridges them by interpolation (:func:`~s2v_core.signals.cardio.ibi_from_beats`),
    so here the affected stretch is replaced by the straight line across it. Plus timing jitter.
    """
    x = x.copy()
    fs = SFREQ["ibi"]
    finite = np.flatnonzero(np.isfinite(x[fs:-fs])) + fs if len(x) > 2 * fs else np.zeros(0, int)
    if len(finite) < fs * 60:
        return x, "too short for beat errors"
    n_errors = rng.poisson(30 * len(x) / fs / 3600 * rng.uniform(0, 1))
    for start in rng.choice(finite, size=min(n_errors, len(finite)), replace=False):
        width = max(2, int(round(rng.uniform(1, 2) * x[start] * fs)))
        a, b = start - 1, min(start + width, len(x) - 1)
        if np.isfinite(x[a]) and np.isfinite(x[b]):
            x[a : b + 1] = np.linspace(x[a], x[b], b - a + 1)
    x = x + rng.normal(0.0, 0.003, len(x)).astype(np.float32)
    return x, f"{n_errors} bridged beat errors"


def _breathing(x: np.ndarray, modality: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    fs = SFREQ[modality]
    x = _butter(x, fs, float(rng.uniform(0.7, 1.8)), "lowpass")
    t = np.arange(len(x)) / fs
    wander = np.nanstd(x) * rng.uniform(0, 0.5) * np.sin(2 * np.pi * rng.uniform(0.002, 0.02) * t)
    gain = float(rng.lognormal(0.0, 0.5)) * (-1.0 if rng.random() < 0.3 else 1.0)
    return (gain * (x + wander)).astype(np.float32), f"gain {gain:+.2f}"


def _spo2(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    fs = SFREQ["spo2"]
    delay = int(rng.uniform(0, 30) * fs)
    y = np.concatenate([np.full(delay, x[0]), x[: len(x) - delay]]) if delay else x.copy()
    y = np.clip(np.round(y + rng.uniform(-2.0, 2.0)), 50.0, 100.0)
    return y.astype(np.float32), f"delay {delay / fs:.0f} s, offset, 1 % steps"


def _missing_stretch(valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mark a random run of 5-30 minutes invalid, with probability 0.3."""
    valid = valid.copy()
    if rng.random() < 0.3 and len(valid) > 60:
        length = int(rng.integers(10, 61))
        start = int(rng.integers(0, len(valid) - length))
        valid[start : start + length] = False
    return valid


def randomise_night(night: Night, rng: np.random.Generator, eog_leak: tuple[float, float] = EOG_LEAK) -> Night:
    """A copy of ``night`` with random acquisition conditions (see the module docstring).

    Parameters
    ----------
    night : Night
        A canonical night; its signals are not modified.
    rng : numpy.random.Generator
        Source of every random choice (seed it for reproducible stores).
    eog_leak : (float, float)
        Range of the EOG's share added to the EEG in the half of the copies given another
        reference (:data:`EOG_LEAK`; ``bench/augment_ablation.py`` compares ranges).

    Returns
    -------
    Night
        Same epochs, stages and metadata; changed signals and validity, and a provenance note per
        modality saying what was done.
    """
    signals, valid, provenance = {}, {}, {}
    for m, epochs in night.signals.items():
        ok = night.epoch_valid[m]
        shape = np.shape(epochs)
        flat = np.array(epochs, dtype=np.float32).ravel()
        gaps = ~np.isfinite(flat)
        flat[gaps] = np.nanmedian(flat) if (~gaps).any() else 0.0
        if m in _BIOPOTENTIALS and m != "ecg" or (m == "ecg" and rng.random() < 0.7):
            flat, note = _biopotential(flat, m, rng)
        elif m == "ibi":
            flat, note = _ibi(np.where(gaps, np.nan, flat).astype(np.float32), rng)
        elif m in _BREATHING:
            flat, note = _breathing(flat, m, rng)
        elif m == "spo2":
            flat, note = _spo2(flat, rng)
        else:
            note = "unchanged"
        flat = np.where(gaps, np.nan, flat).astype(np.float32)
        signals[m] = flat.reshape(shape)
        valid[m] = _missing_stretch(ok, rng) if ok.any() else ok.copy()
        old = night.provenance.get(m)
        provenance[m] = dataclasses.replace(old, method=f"{old.method}; randomised: {note}") if old else Provenance(
            m, "", None, "", 1.0, "derived", f"randomised: {note}")  # fmt: skip
    if "eeg" in signals and "eog" in signals and rng.random() < 0.5:  # another reference: EOG leaks in
        signals["eeg"] = (signals["eeg"] + rng.uniform(*eog_leak) * signals["eog"]).astype(np.float32)
    return dataclasses.replace(night, signals=signals, epoch_valid=valid, provenance=provenance,
                               warnings=[*night.warnings, "acquisition randomised (training copy)"])  # fmt: skip
