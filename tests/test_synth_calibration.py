"""The synthetic generator stays within the calibration measured on real recordings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from s2v_core.modalities import SFREQ, samples_per_epoch
from s2v_core.night import Night, NightMeta
from s2v_core.recording.registry import load_recording
from s2v_core.stages import N1, N2, N3, REM, W
from s2v_core.synth.calibration import compare, eeg_amplitudes, load_reference, night_statistics
from s2v_core.synth.cohort import generate_cohort

KEY = ("contrast:alpha:W", "contrast:beta:W", "contrast:theta:N1", "contrast:sigma:N2", "contrast:sdelta:N3",
       "z:log_ibi:W", "z:log_ibi:N3", "z:log_ibi_rmssd:REM", "z:log_hf_2min:N2", "z:log_vlf_5min:N3")  # fmt: skip
"""Statistics that must each be within tolerance (wake alpha, N1 theta, N2 spindles, N3 slow waves,
heart rate in wake and N3, vagal tone in REM and N2, the steady heart of N3). Not the EEG
amplitudes against N2: the generator's wake is too small and its N3 too small for DREAMS, and
closing that gap was tried and not adopted (bench/RESULTS.md, "EEG size by stage")."""


@pytest.fixture(scope="module")
def table():
    with tempfile.TemporaryDirectory() as tmp:
        meta = generate_cohort(6, tmp, seed=11, hours=3.0, progress=False)
        nights = [load_recording(Path(tmp) / r.psg_file, Path(tmp) / r.hypnogram_file) for r in meta.itertuples()]
    return compare(night_statistics(nights), load_reference()).set_index("statistic")


def test_the_reference_covers_eeg_and_heart_rate():
    ref = load_reference()
    assert sum(k.startswith("contrast:") for k in ref) >= 6 and sum(k.startswith("z:") for k in ref) >= 20
    assert sum(k.startswith("share:") for k in ref) >= 20
    assert {"amplitude:W-N2", "amplitude:N1-N2", "amplitude:N3-N2"} <= set(ref)
    floor = {"share:": 0.01, "amplitude:": 0.08}
    assert all(v["tolerance"] >= floor.get(k[: k.index(":") + 1], 0.25) for k, v in ref.items())


def test_most_statistics_are_within_tolerance(table):
    assert table["synthetic"].notna().all(), table[table["synthetic"].isna()]
    assert table["ok"].mean() >= 0.85, table[~table["ok"]]


@pytest.mark.parametrize("statistic", KEY)
def test_key_statistics_are_within_tolerance(table, statistic):
    row = table.loc[statistic]
    assert row["ok"], f"{statistic}: synthetic {row['synthetic']:+.2f}, real {row['real']:+.2f} +- {row['tolerance']:.2f}"


def _eeg_night(stages: np.ndarray, level: dict[int, float], gain: float = 1.0) -> Night:
    rng = np.random.default_rng(3)
    spe = samples_per_epoch("eeg")
    x = rng.standard_normal((len(stages), spe)) * np.array([level.get(int(s), 1.0) for s in stages])[:, None]
    x = sps.sosfiltfilt(sps.butter(2, [1.0, 20.0], btype="band", fs=SFREQ["eeg"], output="sos"), x, axis=1)
    return Night(NightMeta("t"), {"eeg": (gain * 20.0 * x).astype(np.float32)}, {}, stages.astype(np.int8))


def test_amplitude_statistics_read_size_against_n2_and_not_the_gain():
    stages = np.repeat(np.array([W, N2, N3, N1, N2, REM]), 10)
    doubled = _eeg_night(stages, {N3: 2.0})
    amp = eeg_amplitudes([doubled])
    assert amp["amplitude:N3-N2"] == pytest.approx(np.log10(2.0), abs=0.03)
    assert abs(amp["amplitude:W-N2"]) < 0.03 and set(amp) == {"amplitude:W-N2", "amplitude:N1-N2",
                                                               "amplitude:N3-N2", "amplitude:REM-N2"}  # fmt: skip
    louder = eeg_amplitudes([_eeg_night(stages, {N3: 2.0}, gain=7.0)])
    assert louder == pytest.approx(amp, abs=1e-3)  # a ratio within the night: the amplifier gain drops out
    assert eeg_amplitudes([_eeg_night(np.repeat(np.array([W, N3]), 20), {})]) == {}  # no N2 to compare with
