"""DDP pretraining: two CPU processes (gloo) launched by torchrun end with identical weights.

The ranks draw different modality pairs, so different tokenizers get gradients on each; this
run fails outright if the model is wrapped without ``find_unused_parameters=True``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from s2v_core.cohort.prepare import prepare_store
from s2v_core.model import Sleep2Vec, get_preset
from s2v_core.model.checkpoint import load_checkpoint
from s2v_core.synth.cohort import generate_cohort
from s2v_core.train.distributed import state_sha256
from s2v_core.train.pretrain import HASH_DIR_ENV

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_cohort")
    meta = generate_cohort(6, root / "source", seed=0, hours=0.5)
    meta["split"] = ["train", "train", "val", "train", "train", "val"]
    meta.to_csv(root / "source" / "metadata.csv", index=False)
    prepare_store(root / "source", root / "store", progress=False)
    return root / "store"


def test_two_gloo_ranks_end_identical(store, tmp_path):
    out, hashes = tmp_path / "run", tmp_path / "hashes"
    env = {
        **os.environ,
        HASH_DIR_ENV: str(hashes),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "CUDA_VISIBLE_DEVICES": "",
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "s2v_core.cli", "pretrain", "--data", str(store), "--out", str(out),
        "--preset", "tiny", "--epochs", "1", "--batches-per-epoch", "3", "--batch-size", "3",
        "--window-epochs", "20", "--val-batches", "1", "--lr", "1e-3", "--device", "cpu",
        "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    docs = [json.loads((hashes / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [d["world_size"] for d in docs] == [2, 2]
    assert [d["step"] for d in docs] == [3, 3]  # each rank took its 3 of the 6 global batches
    assert docs[0]["raw"] == docs[1]["raw"]
    assert docs[0]["ema"] == docs[1]["ema"]
    init = state_sha256(Sleep2Vec(get_preset("tiny"), seed=0))
    assert docs[0]["raw"] != init  # the weights did move
    # rank 0 wrote the run folder from those weights, and printed the table once
    raw, _, _ = load_checkpoint(out / "last" / "resume")
    ema, _, _ = load_checkpoint(out / "last")
    assert (state_sha256(raw), state_sha256(ema)) == (docs[0]["raw"], docs[0]["ema"])
    assert (out / "best" / "model.safetensors").is_file()
    assert list(pd.read_csv(out / "history.csv")["step"]) == [3]
    assert proc.stdout.count("per-pair validation retrieval") == 1
