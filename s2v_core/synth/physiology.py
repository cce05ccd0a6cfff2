"""One synthetic night: stages, events and every channel of a site, in physical units.

:func:`generate_night` draws the hypnogram, places respiratory events, generates the physiological
sources (:mod:`.neuro`, :mod:`.cardioresp`) and renders each channel of the night's site the way
that site's hardware would record it: resampled to its rate, with amplifier noise, mains pick-up,
its high-/low-pass filters and its physical unit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import signal as sps

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.synth._signal import apply_filters, event_onsets, resample_to
from s2v_core.synth.cardioresp import (
    RESP_SFREQ,
    Breathing,
    breathing,
    ecg_waveform,
    heart_beats,
    respiratory_events,
    spo2,
)
from s2v_core.synth.hypnogram import sleep_hours, synth_hypnogram
from s2v_core.synth.neuro import NEURAL_SFREQ, eeg_eog_sources, emg_chin
from s2v_core.synth.sites import ChannelSpec, SiteSpec, get_site

__all__ = [
    "BIOPOTENTIAL_MODALITIES",
    "NightSpec",
    "SubjectTraits",
    "SynthNight",
    "draw_traits",
    "generate_night",
]

log = logging.getLogger(__name__)

BIOPOTENTIAL_MODALITIES = ("eeg", "eog", "emg", "ecg")

# Physical size of one unit of the normalised breathing signals, per EDF dimension.
_RESP_UNIT_SCALE = {"mV": 0.5, "uV": 500.0, "cmH2O": 1.5, "a.u.": 100.0, "V": 0.0005}


@dataclass(frozen=True)
class SubjectTraits:
    """Stable physiology of one subject (shared by that subject's nights)."""

    hr_bpm: float = 62.0  # resting heart rate in N2, beats/min
    resp_rate: float = 14.5  # resting breathing rate in N2, breaths/min
    spo2_baseline: float = 96.5  # awake-like baseline SpO2, %
    eeg_gain: float = 1.0  # EEG amplitude factor
    alpha_hz: float = 10.0  # posterior dominant rhythm, Hz
    r_amplitude_uv: float = 1000.0  # ECG R-wave amplitude, uV
    emg_gain: float = 1.0  # chin EMG amplitude factor


def draw_traits(age: float, sex: str, rng: np.random.Generator) -> SubjectTraits:
    """Draw a subject's traits; age slows alpha, lowers EEG amplitude and SpO2."""
    older = age - 30.0
    return SubjectTraits(
        hr_bpm=float(np.clip(61.0 + (3.0 if sex == "F" else 0.0) + rng.normal(0, 5), 50, 80)),
        resp_rate=float(np.clip(rng.normal(14.5, 1.2), 12.0, 17.0)),
        spo2_baseline=float(np.clip(97.2 - 0.03 * older + rng.normal(0, 0.7), 94.0, 98.0)),
        eeg_gain=float(rng.lognormal(0, 0.15) * max(1.0 - 0.004 * older, 0.7)),
        alpha_hz=float(np.clip(rng.normal(10.0 - 0.01 * older, 0.6), 8.5, 11.5)),
        r_amplitude_uv=float(rng.lognormal(np.log(1000.0), 0.25)),
        emg_gain=float(rng.lognormal(0, 0.25)),
    )


@dataclass(frozen=True)
class NightSpec:
    """What to generate for one night."""

    night_id: str  # e.g. "sub-003_night2"; also the file stem
    subject_id: str  # e.g. "sub-003"; written as the EDF+ patient code
    site: str  # key of SITES
    age: float  # years
    sex: str  # "M" or "F"
    ahi_target: float  # intended apnea-hypopnea index, events per hour of sleep
    hours: float  # recording length, lights off to lights on (rounded to whole 30-s epochs)
    traits: SubjectTraits = field(default_factory=SubjectTraits)

    @property
    def n_epochs(self) -> int:
        """Number of 30-s epochs (at least one)."""
        return max(int(round(self.hours * 3600 / EPOCH_SECONDS)), 1)


@dataclass
class SynthNight:
    """A generated night in memory."""

    spec: NightSpec
    site: SiteSpec
    stages: np.ndarray  # (n_epochs,) int8 project codes
    signals: dict[
        str, np.ndarray
    ]  # channel label -> (n_epochs * 30 * sfreq,) float32, physical units
    events: (
        pd.DataFrame
    )  # respiratory events: onset, duration (s), type, desat_depth (%), nadir (s)
    beats: np.ndarray  # R-peak times (s)
    resp_rate: np.ndarray  # (n_epochs,) mean breathing rate per epoch, breaths/min
    spo2_true: np.ndarray  # SpO2 (%) on the internal grid, before the site's sampling
    arousals: np.ndarray = field(default_factory=lambda: np.zeros(0))  # arousal onsets (s)

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        """The site's channels, in file order."""
        return self.site.channels

    @property
    def duration_s(self) -> float:
        """Recording length in seconds."""
        return float(len(self.stages) * EPOCH_SECONDS)

    @property
    def sleep_hours(self) -> float:
        """Total sleep time (h) from the hypnogram."""
        return sleep_hours(self.stages)

    @property
    def ahi(self) -> float:
        """Events actually inserted per hour of sleep."""
        tst = self.sleep_hours
        return float(len(self.events) / tst) if tst > 0 else 0.0

    def channel(self, source_or_modality: str) -> ChannelSpec | None:
        """First channel carrying a source (``"eeg_c4"``) or a modality (``"eeg"``), or None."""
        for c in self.site.channels:
            if source_or_modality in (c.source, c.modality):
                return c
        return None


def generate_night(spec: NightSpec, rng: np.random.Generator) -> SynthNight:
    """Generate every channel of ``spec.site`` for one night.

    Parameters
    ----------
    spec : NightSpec
        Subject, site, length and apnea severity.
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same night.

    Returns
    -------
    SynthNight
        Signals in the site's physical units at the site's rates, stages, events, beat times.

    Examples
    --------
    >>> spec = NightSpec("sub-001_night1", "sub-001", "wearable", 40.0, "F", 5.0, 0.25)
    >>> night = generate_night(spec, np.random.default_rng(0))
    >>> night.signals["EKG"].shape, night.stages.shape
    ((115200,), (30,))
    """
    site = get_site(spec.site)
    hyp_rng, ev_rng, resp_rng, card_rng, neuro_rng, render_rng = rng.spawn(6)
    stages = synth_hypnogram(spec.n_epochs, spec.age, hyp_rng)
    n_ep = len(stages)
    events = respiratory_events(stages, spec.ahi_target, ev_rng)
    asleep = (stages >= 1).astype(float)
    spontaneous = event_onsets(asleep * 8.0 / 60.0, 1.0, ev_rng).astype(float)
    arousals = np.sort(np.concatenate([(events.onset + events.duration).to_numpy(), spontaneous]))
    tr = spec.traits
    resp = breathing(stages, tr.resp_rate, events, resp_rng)
    sat = spo2(stages, tr.spo2_baseline, events, resp_rng)
    beats = heart_beats(stages, tr.hr_bpm, spec.age, resp, events, card_rng)
    wanted = {c.source for c in site.channels}
    neural = eeg_eog_sources(
        stages, wanted, spec.age, tr.eeg_gain, tr.alpha_hz, arousals, neuro_rng
    )
    signals: dict[str, np.ndarray] = {}
    for ch, ch_rng in zip(site.channels, render_rng.spawn(len(site.channels)), strict=True):
        n = n_ep * EPOCH_SECONDS * ch.sfreq
        if ch.source in neural:
            raw = resample_to(neural[ch.source], NEURAL_SFREQ, ch.sfreq)[:n]
        elif ch.source == "emg_chin":
            raw = emg_chin(stages, ch.sfreq, tr.emg_gain, arousals, ch_rng)
        elif ch.source == "ecg":
            raw = ecg_waveform(beats, ch.sfreq, n, tr.r_amplitude_uv, resp, ch_rng)
        elif ch.source == "spo2":
            raw = _to_rate(sat, ch.sfreq, n)
        else:
            raw = _breathing_channel(ch.source, resp, ch.sfreq, n)
        signals[ch.label] = _render(raw, ch, site, ch_rng)
    rate_epoch = resp.rate.reshape(n_ep, -1).mean(axis=1)
    log.debug("night %s: %d epochs, %d events", spec.night_id, n_ep, len(events))
    return SynthNight(
        spec, site, stages, signals, events, beats, rate_epoch, sat.astype(np.float32), arousals
    )


def _to_rate(x: np.ndarray, sfreq: int, n: int) -> np.ndarray:
    """Linear interpolation from the internal breathing grid to ``sfreq`` (slow signals only)."""
    t_out = (np.arange(n) + 0.5) / sfreq
    return np.interp(t_out, np.arange(len(x)) / RESP_SFREQ, x).astype(np.float32)


def _breathing_channel(source: str, resp: Breathing, sfreq: int, n: int) -> np.ndarray:
    """Normalised effort or airflow (about +-0.5 per breath) for one channel."""
    if source == "effort_thor":
        x = resp.amplitude * resp.effort_factor * resp.volume()
    elif source == "effort_abdo":
        x = 0.8 * resp.amplitude * resp.effort_factor * resp.volume(0.03 + resp.paradox)
    elif source == "airflow_pressure":
        x = 0.5 * resp.amplitude * resp.flow_factor * resp.flow()
    elif source == "airflow_thermistor":  # the thermistor's thermal lag smooths the flow
        flow = 0.5 * resp.amplitude * resp.flow_factor * resp.flow()
        x = sps.sosfilt(sps.butter(1, 0.6, fs=RESP_SFREQ, output="sos"), flow)
    else:
        raise ValueError(f"unknown source {source!r}")
    return _to_rate(x, sfreq, n)


def _render(
    raw: np.ndarray, ch: ChannelSpec, site: SiteSpec, rng: np.random.Generator
) -> np.ndarray:
    """Apply the site's sensor noise, mains pick-up, amplifier filters and unit to one channel."""
    n = len(raw)
    if ch.modality in BIOPOTENTIAL_MODALITIES:
        x = raw + rng.standard_normal(n, dtype=np.float32) * np.float32(site.noise_uv)
        if site.mains_hz < 0.45 * ch.sfreq:  # else the anti-aliasing filter removed it
            x += _mains(n, ch.sfreq, site.mains_hz, site.mains_uv, rng)
        x = apply_filters(x, ch.sfreq, ch.highpass, ch.lowpass)
        scale = {"uV": 1.0, "mV": 1e-3, "V": 1e-6}[ch.unit]
        return (x * np.float32(scale)).astype(np.float32)
    if ch.modality == "spo2":
        return raw.astype(np.float32)
    x = raw + 0.01 * rng.standard_normal(n, dtype=np.float32)
    x = apply_filters(x, ch.sfreq, ch.highpass, ch.lowpass)
    return (x * np.float32(_RESP_UNIT_SCALE[ch.unit])).astype(np.float32)


def _mains(
    n: int, sfreq: int, mains_hz: int, amplitude_uv: float, rng: np.random.Generator
) -> np.ndarray:
    """Mains pick-up (uV): a sinusoid whose amplitude drifts slowly (electrode impedance)."""
    period = sfreq // int(np.gcd(sfreq, mains_hz))  # samples after which the sinusoid repeats
    one = np.sin(2 * np.pi * mains_hz * np.arange(period) / sfreq + rng.uniform(0, 2 * np.pi))
    wave = np.tile(one.astype(np.float32), n // period + 1)[:n]
    seconds = np.arange(n // sfreq + 1)
    drift = 1.0 + 0.3 * np.sin(
        2 * np.pi * seconds / rng.uniform(600, 1800) + rng.uniform(0, 2 * np.pi)
    )
    return wave * np.repeat((amplitude_uv * drift).astype(np.float32), sfreq)[:n]
