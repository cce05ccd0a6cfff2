"""The synthetic generator stays within the calibration measured on real recordings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from s2v_core.recording.registry import load_recording
from s2v_core.synth.calibration import compare, load_reference, night_statistics
from s2v_core.synth.cohort import generate_cohort

KEY = ("contrast:alpha:W", "contrast:beta:W", "contrast:theta:N1", "contrast:sigma:N2", "contrast:sdelta:N3",
       "z:log_ibi:W", "z:log_ibi:N3", "z:log_ibi_rmssd:REM", "z:log_hf_2min:N2", "z:log_vlf_5min:N3")  # fmt: skip
"""Statistics that must each be within tolerance (wake alpha, N1 theta, N2 spindles, N3 slow waves,
heart rate in wake and N3, vagal tone in REM and N2, the steady heart of N3)."""


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
    assert all(v["tolerance"] >= (0.01 if k.startswith("share:") else 0.25) for k, v in ref.items())


def test_most_statistics_are_within_tolerance(table):
    assert table["synthetic"].notna().all(), table[table["synthetic"].isna()]
    assert table["ok"].mean() >= 0.85, table[~table["ok"]]


@pytest.mark.parametrize("statistic", KEY)
def test_key_statistics_are_within_tolerance(table, statistic):
    row = table.loc[statistic]
    assert row["ok"], f"{statistic}: synthetic {row['synthetic']:+.2f}, real {row['real']:+.2f} +- {row['tolerance']:.2f}"
