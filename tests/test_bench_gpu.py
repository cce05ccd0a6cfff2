"""``bench/bench_gpu.sh --device cpu --smoke`` runs end to end as on a bare GPU machine (~10 s).

The project's other dependencies are hidden (``S2V_BENCH_BARE=1``), so a new module-level import
of one of them on the training or inference path fails here before it fails on the GPU machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_store import build_store, random_night

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    full = ("eeg", "eog", "emg", "ecg", "ibi", "resp", "effort", "airflow", "spo2")
    nights = {
        "full": (random_night("full", 120, full, seed=1), {"subject": "a", "split": "train"}),
        "home": (random_night("home", 120, ("ecg", "ibi", "resp", "spo2"), seed=2), {"subject": "b", "split": "test"}),
    }
    path = build_store(tmp_path_factory.mktemp("gpu"), nights, mp)
    mp.undo()
    return path


def test_smoke_run_on_a_rehearsed_bare_machine(small_store, tmp_path):
    env = {**os.environ, "S2V_BENCH_BARE": "1", "OUT": str(tmp_path), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    run = subprocess.run(
        ["bash", str(ROOT / "bench" / "bench_gpu.sh"), "--device", "cpu", "--smoke", "--store", str(small_store)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "stand-ins for missing tqdm, pyedflib, defusedxml" in run.stdout
    (doc,) = [json.loads(p.read_text()) for p in tmp_path.glob("gpu-*.json")]
    assert doc["smoke"] and doc["stubs"] == ["tqdm", "pyedflib", "defusedxml"]
    whats = [r["what"] for r in doc["rows"]]
    assert any(w.startswith("tiny (") for w in whats)
    for workers in (0, 2):
        for when in ("before", "after"):
            assert f"tiny: pretrain, {workers} workers, {when}" in whats
    assert sum(r["section"] == "inference" for r in doc["rows"]) == 2
    assert "tiny: train step alone, encoder compiled (aot_eager)" in whats
    assert all(r["value"] > 0 for r in doc["rows"])
    assert list(tmp_path.glob("gpu-*.txt"))
