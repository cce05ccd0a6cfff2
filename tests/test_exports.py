from datetime import datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from s2v_core.io.hypnogram import read_hypnogram
from s2v_core.views.exports import hypnogram_csv, hypnogram_edf_annotations, stage_runs

stage_arrays = st.lists(st.integers(min_value=-1, max_value=4), min_size=1, max_size=200).map(
    lambda v: np.array(v, dtype=np.int8))


def test_runs():
    assert stage_runs(np.array([0, 0, 2, 2, 2, 4])) == [(0.0, 60.0, 0), (60.0, 90.0, 2), (150.0, 30.0, 4)]


@settings(max_examples=40, deadline=None)
@given(stage_arrays)
def test_csv_round_trip(tmp_path_factory, stages):
    p = tmp_path_factory.mktemp("csv") / "hyp.csv"
    p.write_text(hypnogram_csv(stages))
    back = read_hypnogram(p).aligned(len(stages), allow_mismatch=True).stages
    np.testing.assert_array_equal(back, stages)


@settings(max_examples=15, deadline=None)
@given(stage_arrays)
def test_edf_annotations_round_trip(tmp_path_factory, stages):
    p = tmp_path_factory.mktemp("edf") / "hyp.edf"
    p.write_bytes(hypnogram_edf_annotations(stages, datetime(2024, 5, 1, 23, 0)))
    back = read_hypnogram(p).aligned(len(stages), allow_mismatch=True).stages
    np.testing.assert_array_equal(back, stages)
