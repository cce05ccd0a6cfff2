"""Stage-dependent EEG, EOG and chin EMG (before any site-specific amplifier effects).

EEG and EOG are built at an internal rate (:data:`NEURAL_SFREQ`) over the whole night from
band-limited noise components whose per-epoch RMS follows the stage, plus discrete graphoelements
placed as short waveforms: sleep spindles (11-16 Hz, 0.5-2 s) and K-complexes in N2, sawtooth
bursts in REM, alpha in relaxed (eyes-closed) wake, and arousal bursts after respiratory events.
EMG is built at the channel's own rate because most of its power lies above 20 Hz.
All amplitudes are in microvolts.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.stages import N1, REM, W
from s2v_core.synth._signal import (
    band_noise,
    epoch_envelope,
    event_onsets,
    pink_noise,
    place_waveforms,
)

__all__ = [
    "EEG_SOURCES",
    "EOG_SOURCES",
    "NEURAL_SFREQ",
    "arousal_envelope",
    "eeg_eog_sources",
    "emg_chin",
]

NEURAL_SFREQ = 128
"""Internal rate (Hz) at which EEG and EOG sources are generated before resampling."""

# RMS amplitude (uV) of each EEG component at a central derivation, by stage W N1 N2 N3 REM.
_EEG_RMS = {
    "background": np.array([8.0, 10.0, 11.0, 13.0, 8.0]),  # 1/f
    "delta": np.array([7.0, 8.0, 14.0, 20.0, 8.0]),  # 0.4-2.2 Hz
    "theta": np.array([2.0, 3.5, 4.5, 3.0, 4.0]),  # 4-7 Hz
    "alpha": np.array([2.5, 4.5, 3.8, 3.0, 3.0]),  # 8-12 Hz; eyes-closed wake set separately
    "beta": np.array([2.0, 0.8, 0.3, 0.08, 1.0]),  # 15-30 Hz
}
_ALPHA_EYES_CLOSED_UV = 4.5
_BACKGROUND_EXPONENT = 1.2  # aperiodic 1/f^1.5 background: real sleep EEG spectra fall steeply

# Relative gain of each component per derivation (bipolar frontal/occipital see different mixes).
_DERIVATION_GAIN = {
    "eeg_c4": dict(background=1.0, delta=1.0, theta=1.0, alpha=0.7, beta=1.0, spindle=1.0, kcomplex=1.0, sawtooth=1.0, blink=0.02),
    "eeg_c3": dict(background=1.0, delta=1.0, theta=1.0, alpha=0.7, beta=1.0, spindle=1.0, kcomplex=1.0, sawtooth=1.0, blink=0.02),
    "eeg_fpz": dict(background=0.8, delta=0.85, theta=0.8, alpha=0.45, beta=0.8, spindle=0.6, kcomplex=1.1, sawtooth=0.7, blink=0.25),
    "eeg_pz": dict(background=0.7, delta=0.5, theta=0.6, alpha=1.6, beta=0.6, spindle=0.5, kcomplex=0.4, sawtooth=0.6, blink=0.01),
}  # fmt: skip

EEG_SOURCES = tuple(_DERIVATION_GAIN)
EOG_SOURCES = ("eog_left", "eog_right", "eog_horizontal")


def _by_stage(table: np.ndarray, stages: np.ndarray) -> np.ndarray:
    """Per-epoch value from a per-stage table (W N1 N2 N3 REM); unscored epochs count as W."""
    return table[np.clip(stages, W, REM)]


def _spindles(
    stages: np.ndarray, fs: int, n: int, age: float, rng: np.random.Generator
) -> np.ndarray:
    """Sleep spindles: waxing-waning 11-16 Hz bursts of 0.5-2 s, mostly in N2."""
    density = _by_stage(np.array([0.0, 1.5, 4.0, 0.5, 0.0]), stages)  # per minute
    density = density * max(1.0 - 0.007 * (age - 30.0), 0.35)
    onsets = event_onsets(density, fs, rng)
    k, length = len(onsets), 2 * fs
    dur = rng.uniform(0.5, 2.0, k)[:, None]
    freq = rng.uniform(11.5, 15.0, k)[:, None]
    amp = rng.uniform(14.0, 36.0, k)[:, None]
    t = np.arange(length)[None, :] / fs
    window = np.where(t < dur, np.sin(np.pi * np.clip(t / dur, 0, 1)) ** 2, 0.0)
    waves = amp * window * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, (k, 1)))
    return place_waveforms(n, onsets, waves)


def _kcomplexes(stages: np.ndarray, fs: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """K-complexes: a sharp negative wave followed by a slower positive one (about 1 s)."""
    density = _by_stage(np.array([0.0, 0.1, 1.2, 0.5, 0.0]), stages)
    onsets = event_onsets(density, fs, rng)
    k = len(onsets)
    t = np.arange(int(1.5 * fs))[None, :] / fs
    amp = rng.uniform(80.0, 180.0, k)[:, None]
    waves = amp * (
        -np.exp(-0.5 * ((t - 0.3) / 0.08) ** 2) + 0.55 * np.exp(-0.5 * ((t - 0.75) / 0.16) ** 2)
    )
    return place_waveforms(n, onsets, waves)


def _sawtooth(stages: np.ndarray, fs: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """REM sawtooth waves: 2-3.5 Hz triangular bursts of 1.5-4 s."""
    onsets = event_onsets(_by_stage(np.array([0.0, 0.0, 0.0, 0.0, 2.0]), stages), fs, rng)
    k, length = len(onsets), 4 * fs
    dur = rng.uniform(1.5, 4.0, k)[:, None]
    freq = rng.uniform(2.0, 3.5, k)[:, None]
    amp = rng.uniform(15.0, 30.0, k)[:, None]
    t = np.arange(length)[None, :] / fs
    window = np.where(t < dur, np.sin(np.pi * np.clip(t / dur, 0, 1)) ** 0.5, 0.0)
    return place_waveforms(n, onsets, amp * window * sps.sawtooth(2 * np.pi * freq * t, 0.75))


def arousal_envelope(
    arousal_s: np.ndarray, fs: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """0..1 envelope of 3-10-s arousals starting at ``arousal_s`` (seconds), shape (n,)."""
    if len(arousal_s) == 0:
        return np.zeros(n, dtype=np.float32)
    length = int(10 * fs)
    dur = rng.uniform(3.0, 10.0, len(arousal_s))[:, None]
    t = np.arange(length)[None, :] / fs
    box = np.clip(np.minimum(t / 0.5, (dur - t) / 1.0), 0.0, 1.0)
    return np.minimum(place_waveforms(n, (np.asarray(arousal_s) * fs).astype(np.int64), box), 1.0)


def eeg_eog_sources(
    stages: np.ndarray,
    wanted: set[str],
    age: float,
    eeg_gain: float,
    alpha_hz: float,
    arousal_s: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """EEG derivations and EOG channels at :data:`NEURAL_SFREQ`, in uV.

    Parameters
    ----------
    stages : ndarray, shape (n_epochs,)
        Project stage codes.
    wanted : set of str
        Source names to return (keys of ``EEG_SOURCES`` and ``EOG_SOURCES``).
    age : float
        Years; delta amplitude and spindle density fall with age.
    eeg_gain : float
        Subject-specific amplitude factor (skull thickness, electrode impedance).
    alpha_hz : float
        Subject's posterior dominant rhythm (Hz).
    arousal_s : ndarray, shape (k,)
        Arousal onsets (s): bursts of alpha and beta.
    rng : numpy.random.Generator

    Returns
    -------
    dict of str -> ndarray, shape (n_epochs * 30 * 128,), float32
    """
    fs = NEURAL_SFREQ
    n_ep = len(stages)
    n = n_ep * EPOCH_SECONDS * fs
    stages = np.asarray(stages)
    eyes_closed = (stages == W) & (rng.random(n_ep) < 0.6)
    out: dict[str, np.ndarray] = {}
    need_eeg = any(s in wanted for s in EEG_SOURCES) or any(s in wanted for s in EOG_SOURCES)
    if not need_eeg:
        return out
    # Component RMS per epoch, with epoch-to-epoch jitter and the age effect on delta.
    rms = {
        name: _by_stage(tab, stages) * rng.lognormal(0, 0.15, n_ep)
        for name, tab in _EEG_RMS.items()
    }
    rms["alpha"] = np.where(eyes_closed, _ALPHA_EYES_CLOSED_UV, rms["alpha"])
    rms["delta"] = rms["delta"] * max(1.0 - 0.008 * (age - 30.0), 0.45)
    bands = [(0.4, 2.2), (4.0, 7.0), (alpha_hz - 1.5, alpha_hz + 1.5), (15.0, 30.0)]
    comps = dict(
        zip(("delta", "theta", "alpha", "beta"), band_noise(n, fs, bands, rng), strict=True)
    )
    arousal = arousal_envelope(arousal_s, fs, n, rng)
    for name in comps:
        comps[name] *= epoch_envelope(rms[name], fs, n)
    # Arousals: alpha rises to wake-like levels, beta grows with the muscle tone.
    comps["alpha"] += arousal * band_noise(n, fs, [bands[2]], rng)[0] * 10.0
    comps["beta"] *= 1.0 + 1.5 * arousal
    comps["spindle"] = _spindles(stages, fs, n, age, rng)
    comps["kcomplex"] = _kcomplexes(stages, fs, n, rng)
    comps["sawtooth"] = _sawtooth(stages, fs, n, rng)
    bg_env = epoch_envelope(rms["background"], fs, n)
    shared_bg = pink_noise(n, fs, rng, exponent=_BACKGROUND_EXPONENT) * bg_env
    eye_h, eye_v = _eye_movements(stages, eyes_closed, fs, n, rng)
    comps["blink"] = eye_v

    for src in EEG_SOURCES:
        # eeg_fpz is also the source of EEG leakage into the EOG channels.
        if src not in wanted and not (src == "eeg_fpz" and any(s in wanted for s in EOG_SOURCES)):
            continue
        g = _DERIVATION_GAIN[src]
        own_bg = pink_noise(n, fs, rng, exponent=_BACKGROUND_EXPONENT) * bg_env
        x = g["background"] * (0.7 * shared_bg + 0.7 * own_bg)
        for name in ("delta", "theta", "alpha", "beta", "spindle", "kcomplex", "sawtooth", "blink"):
            x += g[name] * comps[name]
        out[src] = (x * eeg_gain).astype(np.float32)
    if any(s in wanted for s in EOG_SOURCES):
        leak = 0.3 * (out["eeg_fpz"] - _DERIVATION_GAIN["eeg_fpz"]["blink"] * eye_v)
        left = eye_h - 0.5 * eye_v + leak
        right = -0.9 * eye_h + 0.6 * eye_v + leak
        out["eog_left"], out["eog_right"] = left, right
        out["eog_horizontal"] = right - left
        if "eeg_fpz" not in wanted:
            del out["eeg_fpz"]
    return {k: v.astype(np.float32) for k, v in out.items() if k in wanted}


def _eye_movements(
    stages: np.ndarray, eyes_closed: np.ndarray, fs: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal eye position and vertical (blink) signals in uV at the corneo-retinal dipole.

    Horizontal: slow rolling movements (0.1-0.6 Hz) in drowsy wake and N1, saccades in open-eyed
    wake, and rapid eye movements in phasic REM bursts. Vertical: blinks in wake.
    """
    n_ep = len(stages)
    sem_rms = _by_stage(np.array([8.0, 55.0, 10.0, 3.0, 6.0]), stages)
    sem_rms = np.where(eyes_closed, 30.0, sem_rms)
    sem = band_noise(n, fs, [(0.1, 0.6)], rng)[0] * epoch_envelope(sem_rms, fs, n, ramp_s=8.0)
    phasic = (stages == REM) & (rng.random(n_ep) < 0.55)
    sacc_rate = np.where(phasic, 28.0, np.where(stages == REM, 3.0, 0.0))
    sacc_rate = np.where((stages == W) & ~eyes_closed, 25.0, sacc_rate)
    onsets = event_onsets(sacc_rate, fs, rng)
    steps = np.bincount(
        onsets,
        weights=rng.choice([-1.0, 1.0], len(onsets)) * rng.uniform(40, 220, len(onsets)),
        minlength=n,
    )[:n]
    rise = np.ones(max(int(0.06 * fs), 1)) / max(int(0.06 * fs), 1)
    steps = np.convolve(steps, rise, mode="same")
    decay = np.exp(-1.0 / (1.2 * fs))  # the eye drifts back toward the centre over ~1 s
    saccades = sps.lfilter([1.0], [1.0, -decay], steps)
    blink_rate = np.where(
        stages == W, np.where(eyes_closed, 2.0, 15.0), np.where(stages == N1, 1.0, 0.0)
    )
    b_on = event_onsets(blink_rate, fs, rng)
    t = np.arange(int(0.6 * fs))[None, :] / fs
    width = rng.uniform(0.06, 0.1, (len(b_on), 1))
    blinks = rng.uniform(120, 300, (len(b_on), 1)) * np.exp(-0.5 * ((t - 0.25) / width) ** 2)
    eye_v = place_waveforms(n, b_on, blinks)
    return (sem + saccades).astype(np.float32), eye_v


def emg_chin(
    stages: np.ndarray,
    fs: int,
    emg_gain: float,
    arousal_s: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Submental EMG in uV at ``fs``: tone high in W, lower in NREM, atonia with twitches in REM.

    Returns
    -------
    ndarray, shape (n_epochs * 30 * fs,), float32
    """
    n_ep = len(stages)
    n = n_ep * EPOCH_SECONDS * fs
    tone = _by_stage(np.array([16.0, 9.0, 6.5, 5.5, 1.6]), np.asarray(stages)) * rng.lognormal(
        0, 0.2, n_ep
    )
    env = epoch_envelope(tone * emg_gain, fs, n, ramp_s=4.0)
    # Phasic bursts: REM twitches (0.1-0.3 s) and wake movements (1-3 s).
    tw_on = event_onsets(np.where(stages == REM, 4.0, 0.0), fs, rng)
    t = np.arange(int(0.3 * fs))[None, :] / fs
    tw = rng.uniform(5, 20, (len(tw_on), 1)) * (t < rng.uniform(0.1, 0.3, (len(tw_on), 1)))
    mv_on = event_onsets(np.where(stages == W, 1.0, 0.0), fs, rng)
    t = np.arange(3 * fs)[None, :] / fs
    mv = rng.uniform(20, 60, (len(mv_on), 1)) * (t < rng.uniform(1.0, 3.0, (len(mv_on), 1)))
    env = env + (place_waveforms(n, tw_on, tw) + place_waveforms(n, mv_on, mv)) * emg_gain
    env *= 1.0 + 1.2 * arousal_envelope(arousal_s, fs, n, rng)
    white = rng.standard_normal(n + 1, dtype=np.float32)
    # First difference whitens away the low frequencies (muscle power sits above ~20 Hz).
    return (np.diff(white) / np.sqrt(2.0) * env).astype(np.float32)
