"""Sleep statistics on hand-built hypnograms, plus invariants checked with hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2v_core.evaluation.sleep_stats import (
    STAT_DEFINITIONS,
    compare_sleep_statistics,
    sleep_statistics,
)
from tests.conftest import shared_path

# index:      0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16
NIGHT = [-1, 0, 0, 0, 1, 2, 2, 0, 0, 2, 3, 3, 4, 4, 2, 0, 0]


def test_hand_built_night():
    s = sleep_statistics(NIGHT)
    assert s["TIB_min"] == 8.5  # 17 epochs of 30 s, the unscored one included
    assert s["TST_min"] == 4.5  # 9 sleep epochs
    assert s["SE_pct"] == pytest.approx(100 * 4.5 / 8.5)
    assert s["SOL_min"] == 2.0  # first sleep epoch is index 4
    assert s["SPT_min"] == 5.5  # indices 4..14
    assert s["WASO_min"] == 1.0  # indices 7, 8; the final wake (15, 16) is after the period
    # AASM: from sleep onset (index 4) to first REM (index 12) = 8 epochs; from lights off it would be 6.0
    assert s["REM_latency_min"] == 4.0
    assert (s["N1_min"], s["N2_min"], s["N3_min"], s["REM_min"]) == (0.5, 2.0, 1.0, 1.0)
    assert s["N2_pct"] == pytest.approx(100 * 2.0 / 4.5)
    assert s["REM_pct"] == pytest.approx(100 * 1.0 / 4.5)
    assert s["W_min"] == 3.5 and s["unscored_min"] == 0.5
    assert s["n_awakenings"] == 1  # N2 -> W at index 6 -> 7
    assert s["n_stage_shifts"] == 8
    assert list(s) == list(STAT_DEFINITIONS)


def test_epoch_length_scales_durations_only():
    s30 = sleep_statistics(NIGHT)
    s20 = sleep_statistics(NIGHT, epoch_seconds=20.0)
    for key in s30:
        if key.endswith("_min"):
            assert s20[key] == pytest.approx(s30[key] * 2 / 3)
        else:
            assert s20[key] == pytest.approx(s30[key])


def test_night_without_sleep():
    s = sleep_statistics([0, 0, -1, 0])
    assert s["TST_min"] == 0.0 and s["SE_pct"] == 0.0 and s["SPT_min"] == 0.0
    for key in ("SOL_min", "WASO_min", "REM_latency_min", "N1_pct", "REM_pct"):
        assert math.isnan(s[key]), key
    assert s["n_awakenings"] == 0 and s["W_min"] == 1.5


def test_night_without_rem():
    s = sleep_statistics([0, 1, 2, 2, 3, 0])
    assert math.isnan(s["REM_latency_min"])
    assert s["SOL_min"] == 0.5 and s["TST_min"] == 2.0 and s["WASO_min"] == 0.0
    assert s["REM_pct"] == 0.0 and s["N2_pct"] == 50.0


def test_unscored_inside_sleep_period_is_not_wake():
    s = sleep_statistics([0, 2, -1, 0, 2])
    assert s["WASO_min"] == 0.5 and s["SPT_min"] == 2.0 and s["TST_min"] == 1.0
    assert s["n_awakenings"] == 1  # 2, (unscored), 0, 2 -> one sleep-to-wake transition
    assert s["n_stage_shifts"] == 3  # 0,2,0,2 once the unscored epoch is skipped


def test_invalid_hypnograms_raise():
    with pytest.raises(ValueError, match="no epochs"):
        sleep_statistics([])
    with pytest.raises(ValueError, match="invalid codes"):
        sleep_statistics([0, 5, 2])
    with pytest.raises(ValueError, match="1-D"):
        sleep_statistics([[0, 1]])


def test_definitions_cover_every_statistic_and_say_aasm():
    assert set(STAT_DEFINITIONS) == set(sleep_statistics([0, 2, 4]))
    assert "sleep onset" in STAT_DEFINITIONS["REM_latency_min"]
    assert "AASM" in STAT_DEFINITIONS["REM_latency_min"]


def test_compare_sleep_statistics_frame():
    pred = np.array(NIGHT)
    pred[12:14] = 2  # the prediction misses REM
    frame = compare_sleep_statistics(NIGHT, pred)
    assert list(frame.columns) == ["reference", "predicted", "difference"]
    assert list(frame.index) == list(STAT_DEFINITIONS)
    assert frame.loc["REM_min", "difference"] == -1.0
    assert frame.loc["N2_min", "difference"] == 1.0
    assert frame.loc["TST_min", "difference"] == 0.0
    assert math.isnan(frame.loc["REM_latency_min", "predicted"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=4), min_size=1, max_size=300))
def test_invariants(stages):
    s = sleep_statistics(stages)
    assert s["TST_min"] + s["W_min"] == pytest.approx(s["TIB_min"] - s["unscored_min"])
    stage_sum = s["N1_min"] + s["N2_min"] + s["N3_min"] + s["REM_min"]
    assert stage_sum == pytest.approx(s["TST_min"])
    assert 0.0 <= s["SE_pct"] <= 100.0
    assert s["SPT_min"] <= s["TIB_min"] and s["TST_min"] <= s["SPT_min"]
    if s["TST_min"] > 0:
        assert s["SOL_min"] + s["SPT_min"] <= s["TIB_min"]
        assert s["WASO_min"] <= s["SPT_min"] - s["TST_min"] + 1e-9
        pct = s["N1_pct"] + s["N2_pct"] + s["N3_pct"] + s["REM_pct"]
        assert pct == pytest.approx(100.0)
        assert s["n_awakenings"] <= s["n_stage_shifts"]
    if not math.isnan(s["REM_latency_min"]):
        assert 0.0 <= s["REM_latency_min"] <= s["SPT_min"]


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:The inplace keyword")  # wfdb on pandas 3
@pytest.mark.parametrize("record", ["slp01a", "slp02a", "slp04"])
def test_real_slpdb_nights_match_an_independent_count(record):
    import wfdb

    from s2v_core.io.hypnogram import read_hypnogram

    stem = shared_path("slpdb", f"{record}.st").with_suffix("")
    # independent count straight from the WFDB aux notes: "STAGE [EVENTS...]" per 30-s epoch
    notes = wfdb.rdann(str(stem), "st").aux_note
    tokens = [n.split()[0] if n.strip() else "" for n in notes]
    s = sleep_statistics(read_hypnogram(f"{stem}.st").stages)
    assert s["TIB_min"] == len(tokens) * 0.5
    assert s["TST_min"] == sum(t in {"1", "2", "3", "4", "R"} for t in tokens) * 0.5
    assert s["REM_min"] == tokens.count("R") * 0.5
    assert s["W_min"] == tokens.count("W") * 0.5
    first_sleep = next(i for i, t in enumerate(tokens) if t in {"1", "2", "3", "4", "R"})
    assert s["SOL_min"] == first_sleep * 0.5
    assert s["REM_latency_min"] == (tokens.index("R") - first_sleep) * 0.5
    assert 50.0 < s["SE_pct"] <= 100.0
