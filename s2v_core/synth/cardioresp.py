"""Breathing, respiratory events, SpO2, heart rate and ECG for one synthetic night.

Everything slow is built on one internal grid (:data:`RESP_SFREQ`, 32 Hz) and interpolated to
each channel's rate: the breathing phase (integrated breathing rate, regular in N3 and irregular
in REM) drives the effort belts, the airflow and the respiratory sinus arrhythmia; apneas and
hypopneas scale airflow and effort; SpO2 falls after each event with a 20-30-s circulatory lag;
the heart rate (lower and steadier in N3, variable in REM, surging after events) is integrated into
beat times, at which a PQRST template is placed to give the ECG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.stages import N1, REM, W
from s2v_core.synth._signal import band_noise, epoch_envelope, lowpass_noise

__all__ = [
    "EVENT_TYPES",
    "RESP_SFREQ",
    "Breathing",
    "breathing",
    "ecg_waveform",
    "heart_beats",
    "respiratory_events",
    "spo2",
]

RESP_SFREQ = 32
"""Internal rate (Hz) of the breathing, heart-rate and SpO2 grid."""

EVENT_TYPES = ("Obstructive Apnea", "Hypopnea", "Central Apnea")
"""Respiratory event names (NSRR/Profusion spelling)."""

_EVENT_PROBS = (0.4, 0.5, 0.1)
_EVENT_STAGE_WEIGHT = np.array([0.0, 1.2, 1.0, 0.3, 2.2])  # REM-predominant, rare in N3
_INSPIRATION = 0.4  # fraction of the breathing cycle spent inhaling


def _stage(table: list[float], stages: np.ndarray) -> np.ndarray:
    return np.asarray(table, dtype=float)[np.clip(stages, W, REM)]


def respiratory_events(
    stages: np.ndarray, ahi_target: float, rng: np.random.Generator
) -> pd.DataFrame:
    """Place apneas and hypopneas in sleep epochs at a rate set by ``ahi_target``.

    Parameters
    ----------
    stages : ndarray, shape (n_epochs,)
        Project stage codes.
    ahi_target : float
        Intended events per hour of sleep; the realised count is Poisson around it and may be
        lower when events do not fit.
    rng : numpy.random.Generator

    Returns
    -------
    pandas.DataFrame
        One row per event, sorted by onset: ``onset`` and ``duration`` (s), ``type`` (one of
        :data:`EVENT_TYPES`), ``desat_depth`` (% SpO2 drop), ``nadir`` (s, time of the lowest
        SpO2, 20-30 s after the event end).
    """
    stages = np.asarray(stages)
    total_s = len(stages) * EPOCH_SECONDS
    tst_h = np.count_nonzero((stages >= N1) & (stages <= REM)) * EPOCH_SECONDS / 3600
    n_target = int(rng.poisson(max(ahi_target, 0.0) * tst_h))
    weights = _EVENT_STAGE_WEIGHT[np.clip(stages, W, REM)]
    cols = {"onset": [], "duration": [], "type": [], "desat_depth": [], "nadir": []}
    if n_target > 0 and weights.sum() > 0:
        n_cand = 4 * n_target
        epoch = rng.choice(len(stages), n_cand, p=weights / weights.sum())
        onset = (epoch + rng.random(n_cand)) * EPOCH_SECONDS
        kind = rng.choice(len(EVENT_TYPES), n_cand, p=_EVENT_PROBS)
        duration = np.clip(rng.lognormal(np.log(np.where(kind == 1, 22.0, 19.0)), 0.35), 10.0, 40.0)
        lag = rng.uniform(20.0, 30.0, n_cand)
        depth = np.where(
            kind == 1,
            rng.uniform(3.0, 5.0, n_cand),
            np.clip(3.5 + 0.15 * (duration - 10.0) + rng.uniform(0, 2.5, n_cand), 3.0, 10.0),
        )
        busy = np.zeros(int(total_s) + 1, dtype=bool)  # 1-s occupancy, events keep 12 s apart
        for i in range(n_cand):  # a few hundred scalar checks
            if len(cols["onset"]) == n_target:
                break
            lo, hi = int(onset[i]) - 12, int(onset[i] + duration[i]) + 12
            if onset[i] + duration[i] + lag[i] + 15 > total_s or busy[max(lo, 0) : hi].any():
                continue
            busy[max(lo, 0) : hi] = True
            cols["onset"].append(round(float(onset[i]), 1))
            cols["duration"].append(round(float(duration[i]), 1))
            cols["type"].append(EVENT_TYPES[kind[i]])
            cols["desat_depth"].append(round(float(depth[i]), 1))
            cols["nadir"].append(round(float(onset[i] + duration[i] + lag[i]), 1))
    events = pd.DataFrame(cols).astype(
        {"onset": float, "duration": float, "desat_depth": float, "nadir": float}
    )
    return events.sort_values("onset", ignore_index=True)


@dataclass
class Breathing:
    """Breathing on the :data:`RESP_SFREQ` grid; all arrays have shape (n,)."""

    phase: np.ndarray  # breathing cycles since lights off (float64, increasing)
    rate: np.ndarray  # instantaneous breathing rate, breaths/min
    amplitude: np.ndarray  # relative tidal volume (1 = typical)
    flow_factor: np.ndarray  # airflow scale from events (~0 in apnea, 0.5-0.7 in hypopnea)
    effort_factor: np.ndarray  # effort scale from events (~0 in central apnea)
    paradox: np.ndarray  # abdominal phase lag (cycles) during obstructive events

    def volume(self, lag_cycles: np.ndarray | float = 0.0) -> np.ndarray:
        """Lung-volume shape in [-0.5, 0.5]: faster inspiration, slower expiration."""
        return _volume_shape((self.phase - lag_cycles) % 1.0)

    def flow(self) -> np.ndarray:
        """Airflow shape (time derivative of volume, normalised to ~unit peak at 15/min)."""
        p = self.phase % 1.0
        d = np.where(
            p < _INSPIRATION,
            np.sin(np.pi * p / _INSPIRATION),
            -(_INSPIRATION / (1 - _INSPIRATION))
            * np.sin(np.pi * (p - _INSPIRATION) / (1 - _INSPIRATION)),
        )
        return d * self.rate / 15.0


def _volume_shape(p: np.ndarray) -> np.ndarray:
    return np.where(
        p < _INSPIRATION,
        -0.5 * np.cos(np.pi * p / _INSPIRATION),
        0.5 * np.cos(np.pi * (p - _INSPIRATION) / (1 - _INSPIRATION)),
    )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def breathing(
    stages: np.ndarray, base_rate: float, events: pd.DataFrame, rng: np.random.Generator
) -> Breathing:
    """Breathing phase, rate and amplitude with event modulation.

    Parameters
    ----------
    stages : ndarray, shape (n_epochs,)
    base_rate : float
        Subject's resting breathing rate (breaths/min), about 12-17.
    events : pandas.DataFrame
        From :func:`respiratory_events`.
    rng : numpy.random.Generator
    """
    fs = RESP_SFREQ
    stages = np.asarray(stages)
    n_ep = len(stages)
    n = n_ep * EPOCH_SECONDS * fs
    target = base_rate + _stage([0.0, 0.1, 0.2, 0.6, 0.6], stages) + rng.normal(0, 0.3, n_ep)
    rate = epoch_envelope(target, fs, n, ramp_s=10.0).astype(np.float64)
    rate += lowpass_noise(n, fs, 0.05, rng) * epoch_envelope(
        _stage([1.2, 0.9, 0.5, 0.2, 1.2], stages), fs, n
    )
    rate += lowpass_noise(n, fs, 0.25, rng) * epoch_envelope(
        _stage([0.5, 0.3, 0.15, 0.05, 1.3], stages), fs, n
    )
    amp = epoch_envelope(_stage([1.1, 0.95, 1.0, 1.05, 0.85], stages), fs, n).astype(np.float64)
    amp *= 1.0 + lowpass_noise(n, fs, 0.1, rng) * epoch_envelope(
        _stage([0.15, 0.1, 0.06, 0.03, 0.25], stages), fs, n
    )
    flow_f, effort_f, paradox = np.ones(n), np.ones(n), np.zeros(n)
    for ev in events.itertuples(index=False):  # one vectorised slice per event
        a, b = int(ev.onset * fs), int((ev.onset + ev.duration) * fs)
        t = np.arange(b - a) / fs
        edge = _smoothstep(t / 2.0) * _smoothstep((ev.duration - t) / 2.0)  # 2-s ramps
        if ev.type == "Hypopnea":
            residual, effort_in = rng.uniform(0.5, 0.7), 0.85
        elif ev.type == "Central Apnea":
            residual, effort_in = rng.uniform(0.02, 0.06), 0.04
        else:
            residual, effort_in = rng.uniform(0.02, 0.08), 1.0
        flow_f[a:b] = 1.0 - (1.0 - residual) * edge
        if ev.type == "Obstructive Apnea":  # effort continues, rises, and goes paradoxical
            effort_f[a:b] = 1.0 + 0.35 * edge * t / ev.duration
            paradox[a:b] = 0.4 * edge * np.minimum(t / 8.0, 1.0)
        else:
            effort_f[a:b] = 1.0 - (1.0 - effort_in) * edge
        r = np.arange(int(10 * fs)) / fs  # recovery breaths: deeper and faster for ~10 s
        rec = 0.6 * (1 - _smoothstep(r / 10.0)) * _smoothstep(r / 1.0)
        c = min(b + len(r), n)
        flow_f[b:c] += rec[: c - b]
        effort_f[b:c] += rec[: c - b]
        rate[b:c] += 3.0 * rec[: c - b]
    rate = np.clip(rate, 8.0, 24.0)
    phase = np.cumsum(rate / 60.0 / fs) + rng.random()
    return Breathing(phase, rate, np.clip(amp, 0.2, None), flow_f, effort_f, paradox)


def spo2(
    stages: np.ndarray, baseline: float, events: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """SpO2 (%) on the :data:`RESP_SFREQ` grid: baseline with desaturations after events.

    Each event's desaturation (``desat_depth``) falls over the event's duration, reaching its
    nadir at ``nadir`` (event end + 20-30 s), then recovers within ~12 s.
    """
    fs = RESP_SFREQ
    stages = np.asarray(stages)
    n = len(stages) * EPOCH_SECONDS * fs
    x = baseline + epoch_envelope(_stage([0.3, 0.1, 0.0, 0.1, -0.5], stages), fs, n, ramp_s=20.0)
    x = x.astype(np.float64) + 0.3 * lowpass_noise(n, fs, 0.02, rng)
    for ev in events.itertuples(index=False):
        fall_start = ev.nadir - ev.duration
        a, b = max(int(fall_start * fs), 0), min(int((ev.nadir + 12.0) * fs), n)
        t = np.arange(a, b) / fs
        shape = np.where(
            t < ev.nadir,
            _smoothstep((t - fall_start) / ev.duration),
            1 - _smoothstep((t - ev.nadir) / 12.0),
        )
        x[a:b] -= ev.desat_depth * shape
    return np.clip(x, 60.0, 100.0)


_SLOW_HR_DRIFT_BPM = 7.5
"""SD of the slow (< 0.03 Hz) heart-rate drift; 1.5 bpm made stages far easier than in real nights."""


def heart_beats(
    stages: np.ndarray,
    base_hr: float,
    age: float,
    resp: Breathing,
    events: pd.DataFrame,
    rng: np.random.Generator,
) -> np.ndarray:
    """R-peak times (s) from a stage-dependent heart rate with RSA, LF variability and surges.

    Heart rate is lower and steadier in N3, higher and more variable in REM and W; respiratory
    sinus arrhythmia follows the breathing phase (weaker with age); each event ends with a
    10-15-s surge of 6-14 bpm.

    Returns
    -------
    ndarray, shape (n_beats,), float64, increasing
    """
    fs = RESP_SFREQ
    stages = np.asarray(stages)
    n = len(resp.phase)
    hr = epoch_envelope(
        base_hr + _stage([2.0, 0.0, -1.0, -0.5, 1.0], stages), fs, n, ramp_s=20.0
    ).astype(np.float64)
    # narrow band edges: a 0.5-Hz taper would leak this LF noise into the respiratory band and
    # give REM the highest RMSSD/HF, where real REM has the lowest (calibrated against slpdb)
    lf = band_noise(n, fs, [(0.04, 0.15)], rng, relative_taper=0.25)[0]
    hr += lf * epoch_envelope(_stage([1.4, 1.3, 1.0, 0.8, 1.2], stages), fs, n)
    # slow drifts as large as the stage differences: real heart rate wanders over minutes
    drift = epoch_envelope(_stage([0.7, 1.0, 0.8, 0.4, 0.8], stages), fs, n, ramp_s=60.0)  # N3 is steady
    hr += _SLOW_HR_DRIFT_BPM * drift * lowpass_noise(n, fs, 0.03, rng, relative_taper=0.25)
    rsa = epoch_envelope(_stage([2.1, 2.4, 2.4, 2.3, 2.0], stages), fs, n) * max(
        1 - 0.012 * (age - 30), 0.3
    )
    hr += 2.0 * rsa * resp.volume(0.1)
    for ev in events.itertuples(index=False):
        end = ev.onset + ev.duration
        a, b = int(ev.onset * fs), min(int((end + 15.0) * fs), n)
        t = np.arange(a, b) / fs
        surge = (
            rng.uniform(6.0, 14.0)
            * _smoothstep((t - end) / 3.0)
            * (1 - _smoothstep((t - end - 3.0) / 12.0))
        )
        hr[a:b] += surge - 3.0 * ((t >= ev.onset) & (t < end))
    hr = np.clip(hr, 38.0, 130.0)
    beat_phase = np.cumsum(hr / 60.0 / fs) + rng.random()
    k = np.arange(np.ceil(beat_phase[0]), np.floor(beat_phase[-1]) + 1)
    beats = np.interp(k, beat_phase, np.arange(n) / fs)
    beats += rng.normal(0.0, 0.003, len(beats))  # beat-to-beat jitter (ms scale)
    return np.sort(beats)


# PQRST template: (amplitude relative to R, centre s relative to R, width s).
_PQRST = (
    (0.12, -0.20, 0.025),
    (-0.12, -0.035, 0.010),
    (1.0, 0.0, 0.011),
    (-0.28, 0.03, 0.012),
    (0.30, 0.26, 0.045),
)
_TABLE_FS = 2048
_POST_S, _PRE_S = 0.60, 0.35


def _template(offsets: np.ndarray) -> np.ndarray:
    return sum(a * np.exp(-0.5 * ((offsets - mu) / s) ** 2) for a, mu, s in _PQRST)


def ecg_waveform(
    beats: np.ndarray,
    fs: int,
    n: int,
    r_amplitude_uv: float,
    resp: Breathing,
    rng: np.random.Generator,
) -> np.ndarray:
    """ECG lead II in uV at ``fs``: a PQRST template at each beat, with respiratory modulation.

    The R amplitude swings +-10 % with breathing (what ECG-derived respiration relies on) and the
    baseline wanders with breathing and slowly over the night.

    Returns
    -------
    ndarray, shape (n,), float32
    """
    post = _template(np.arange(int(_POST_S * _TABLE_FS) + 1) / _TABLE_FS).astype(np.float32)
    pre = _template(-np.arange(int(_PRE_S * _TABLE_FS) + 1) / _TABLE_FS).astype(np.float32)
    post[-1] = pre[-1] = 0.0  # offsets beyond the table read this zero
    # Beat k starts at sample start[k] = ceil(beat_k * fs); frac[k] = start[k] - beat_k * fs.
    exact = beats * fs
    start = np.ceil(exact).astype(np.int64)
    frac = (start - exact).astype(np.float32)
    # Index of the last beat at or before each sample, O(n) through a cumulative count.
    prev = np.cumsum(np.bincount(np.clip(start, 0, n), minlength=n + 1)[:n]) - 1
    far = np.int64(10 * n)
    start_p = np.concatenate([[-far], start, [far]])
    frac_p = np.concatenate([[0.0], frac, [0.0]]).astype(np.float32)
    beat_resp = np.interp(beats, np.arange(len(resp.phase)) / RESP_SFREQ, resp.volume())
    amp = np.concatenate([[0.0], 1.0 + 0.2 * beat_resp, [0.0]]).astype(np.float32)
    i = np.arange(n, dtype=np.int64)
    per_sample = np.float32(_TABLE_FS / fs)
    after = (np.minimum(i - start_p[prev + 1], n) + frac_p[prev + 1]) * per_sample
    before = (np.minimum(start_p[prev + 2] - i, n) - frac_p[prev + 2]) * per_sample
    x = amp[prev + 1] * post[np.minimum(after.astype(np.int64), len(post) - 1)]
    x += amp[prev + 2] * pre[np.minimum(before.astype(np.int64), len(pre) - 1)]
    grid_t = np.arange(len(resp.phase)) / RESP_SFREQ
    wander = 0.04 * resp.volume() + 0.03 * lowpass_noise(len(resp.phase), RESP_SFREQ, 0.05, rng)
    x += np.interp(np.arange(n) / fs, grid_t, wander).astype(np.float32)
    return (x * r_amplitude_uv).astype(np.float32)
