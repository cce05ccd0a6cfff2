"""bench/ensemble_real.py: averaged probabilities decide stages exactly as ``predict_night`` does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from s2v_core.stages import merge_stages

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
ensemble_real = pytest.importorskip("ensemble_real")


@pytest.mark.parametrize("three_class", [False, True])
def test_stages_are_the_most_probable_class_merged_as_bench_real_scores_them(three_class):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5) * 0.7, size=400).astype(np.float32)
    got = ensemble_real.stages_from(probs, three_class)
    if three_class:  # W, NREM (N1+N2+N3 summed), REM -> bench_real's codes 0, 1, 2
        merged = np.stack([probs[:, 0], probs[:, 1:4].sum(axis=1), probs[:, 4]], axis=1)
        want = merged.argmax(axis=1)
        assert (want != merge_stages(probs.argmax(axis=1).astype(np.int8), 3)).any()  # summing matters
    else:
        want = probs.argmax(axis=1)
    np.testing.assert_array_equal(got, want)


def test_average_of_runs_and_mismatched_runs(tmp_path):
    nights = {"slp01a": {"kind": "slpdb"}, "excerpt1": {"kind": "dreams"}}
    a = {"ours LOSO|slp01a": np.eye(5, dtype=np.float32)[[0, 1, 4]], "ours LOSO|excerpt1": np.eye(5, dtype=np.float32)[[2]]}
    b = {"ours LOSO|slp01a": np.eye(5, dtype=np.float32)[[0, 4, 4]], "ours LOSO|excerpt1": np.eye(5, dtype=np.float32)[[3]]}
    b["ours LOSO|excerpt1"] = 0.4 * b["ours LOSO|excerpt1"] + 0.6 * a["ours LOSO|excerpt1"]
    out = ensemble_real.predictions(nights, [a, b])
    assert out["ours LOSO (run 1)"]["excerpt1"].tolist() == [2]
    assert out["ours LOSO (run 2)"]["excerpt1"].tolist() == [2]  # 0.6 on N3 beats 0.4 on REM
    assert out["ours LOSO (average)"]["excerpt1"].tolist() == [2]
    # 3-class codes: W 0, NREM 1, REM 2; the second epoch averages N1 and REM to a tie (NREM first)
    assert out["ours LOSO (run 2)"]["slp01a"].tolist() == [0, 2, 2]
    assert out["ours LOSO (average)"]["slp01a"].tolist() == [0, 1, 2]
    for i, run in enumerate((a, b)):
        np.savez(tmp_path / f"r{i}.npz", **run)
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}.npz").rename(tmp_path / f"r{i}" / "probabilities.npz")
    assert len(ensemble_real.load_runs([tmp_path / "r0", tmp_path / "r1"])) == 2
    np.savez(tmp_path / "r1" / "probabilities.npz", **{"ours LOSO|slp01a": a["ours LOSO|slp01a"]})
    with pytest.raises(SystemExit, match="scored other recordings"):
        ensemble_real.load_runs([tmp_path / "r0", tmp_path / "r1"])
