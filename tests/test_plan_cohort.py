"""``bench/plan_cohort.py``: the smoke run prints the plan table, and the plan's arithmetic."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "plan_cohort.py"


def _module():
    spec = importlib.util.spec_from_file_location("plan_cohort", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_smoke_run_prints_the_table(tmp_path):
    out = tmp_path / "plan.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]
    settings = [
        (re.sub(r" \([\d.]+ M params\)$", "", step), setting) for step, setting, *_ in cells
    ]  # "(99.4 M params)" off
    assert settings == [
        ("prepare", "1 Dask worker"), ("prepare", "8 Dask workers"), ("prepare", "32 Dask workers"),
        ("pretrain dense", "1 GPU, train step"),
        ("pretrain dense", "1 GPU, end to end"),
        ("pretrain dense", "8 GPUs, train step"),
        ("pretrain dense", "8 GPUs, end to end"),
        ("embed (CPU)", "1 worker x 1 thread"), ("embed (CPU)", "8 workers x 1 thread"),
        ("embed (CPU)", "32 workers x 1 thread"), ("embed (GPU)", "1 GPU"),
    ]  # fmt: skip
    for row in rows[1:]:
        hours = row.strip("|").split("|")[2].strip()
        assert re.fullmatch(r"[\d,.]+ (h|min)", hours), row
    assert "Measured here" in run.stdout and "From options" in run.stdout
    doc = json.loads(out.read_text())
    numbers = [v for v in doc["measured"].values() if isinstance(v, float | int)]
    plan = doc["plan"]
    numbers += [*plan["prepare_hours"].values(), *plan["embed_cpu_hours"].values(), plan["embed_gpu_hours"],
                plan["disk_bytes_total"], plan["train_windows"]]  # fmt: skip
    numbers += [h for g in plan["pretrain"].values() for h in g["hours"].values()]
    assert numbers and all(math.isfinite(v) and v > 0 for v in numbers)
    assert doc["measured"]["windows_per_night"] == 1  # 0.5 h = 60 epochs: one padded window


def test_plan_arithmetic():
    mod = _module()
    per_night = {"prepare_s": 36.0, "prepare_peak_mb": 500.0, "disk_bytes": 1e6, "embed_s": 7.2,
                 "embed_peak_mb": 600.0, "windows_per_night": 8, "train_fraction": 0.8, "params": 1000}  # fmt: skip
    options = mod.Options(cohort=100, workers=(1, 4), gpus=(1, 8), gpu_train_windows_per_s=10.0,
                          gpu_e2e_windows_per_s=5.0, gpu_embed_s_per_night=0.36, ddp_efficiency=0.5,
                          pretrain_epochs=2, batch_size=32)  # fmt: skip
    p = mod.plan(per_night, options)
    assert p["prepare_hours"] == pytest.approx({1: 1.0, 4: 0.25})  # 100 x 36 s = 1 h
    assert p["embed_cpu_hours"] == pytest.approx({1: 0.2, 4: 0.05})  # 100 x 7.2 s = 720 s
    assert p["embed_gpu_hours"] == pytest.approx(0.01)  # 100 x 0.36 s = 36 s
    assert p["disk_bytes_total"] == 1e8
    assert p["model_state_bytes_per_gpu"] == 20_000
    # 100 nights x 0.8 train x 8 windows = 640 windows = 20 batches of 32
    assert p["train_windows"] == 640
    one, eight = p["pretrain"][1], p["pretrain"][8]
    assert (one["steps_per_rank"], one["windows_per_epoch"]) == (20, 640)
    # 1 GPU: 2 epochs x 640 windows / 10 per s = 128 s; end to end at 5 per s: 256 s
    assert one["hours"] == pytest.approx({"train_step": 128 / 3600, "end_to_end": 256 / 3600})
    # 8 GPUs: floor(20 / 8) = 2 steps per rank, 512 windows an epoch; 2 x 2 x 32 / (10 x 0.5) = 25.6 s
    assert (eight["steps_per_rank"], eight["windows_per_epoch"]) == (2, 512)
    assert eight["hours"] == pytest.approx({"train_step": 25.6 / 3600, "end_to_end": 51.2 / 3600})
