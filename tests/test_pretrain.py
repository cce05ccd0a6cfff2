"""Pretraining loop, schedule, EMA, retrieval metric, run folder and the prepare/pretrain CLI.

A six-night synthetic cohort (half an hour each) is generated and prepared once per module; runs
use the tiny preset with 20-epoch windows so that each takes a second or two on a CPU.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from s2v_core.cli import pretrain as train_cli
from s2v_core.cli.main import main
from s2v_core.errors import S2VError
from s2v_core.model import Sleep2Vec, get_preset
from s2v_core.model.checkpoint import load_checkpoint
from s2v_core.model.config import ConfigError
from s2v_core.synth.cohort import generate_cohort
from s2v_core.train import pretrain as train_module
from s2v_core.train.config import TrainConfig
from s2v_core.train.pretrain import (
    PairEncoder,
    make_loss_fn,
    make_optimizer,
    pretrain,
    train_step,
)
from s2v_core.train.retrieval import retrieval_accuracy
from s2v_core.train.runfiles import TrainCallback
from s2v_core.train.schedule import EMA, lr_at, warmup_steps
from s2v_core.train.windows import PairFirstBatchSampler, WindowDataset, collate_pair

# two val nights (one full PSG, one without cardiac channels), four wearable train nights
SPLITS = ["train", "train", "val", "train", "train", "val"]
WINDOW = 20  # tokens per window: 3 windows per half-hour night


def run_cli(argv: list[str]) -> int:
    """The real ``s2v`` entry point."""
    return main(argv)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    meta = generate_cohort(6, root / "source", seed=0, hours=0.5)
    meta["split"] = SPLITS  # prepare_store honours a split column
    meta.to_csv(root / "source" / "metadata.csv", index=False)
    assert run_cli(["prepare", str(root / "source"), "--out", str(root / "store"), "--quiet"]) == 0
    return root / "store"


def tiny_config(**changes) -> TrainConfig:
    base = dict(preset="tiny", epochs=1, batch_size=3, window_epochs=WINDOW, batches_per_epoch=3,
                val_batches=2, lr=1e-3, device="cpu", log_every=1)  # fmt: skip
    return TrainConfig(**(base | changes))


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=atol), k


# --- schedule and EMA ----------------------------------------------------------------------------


def test_lr_schedule_warmup_then_cosine_to_ten_percent():
    total, base = 100, 2.0
    lrs = np.array([lr_at(s, total, base, warmup_fraction=0.03) for s in range(total)])
    assert warmup_steps(total, 0.03) == 3
    np.testing.assert_allclose(lrs[:3], [base / 3, 2 * base / 3, base])
    assert lrs[3] == pytest.approx(base)
    assert lrs[-1] == pytest.approx(0.1 * base)
    mid = 3 + (total - 1 - 3) // 2  # halfway through the cosine: halfway between peak and floor
    assert lrs[mid] == pytest.approx(0.1 * base + 0.9 * base * 0.5)
    assert np.all(np.diff(lrs[3:]) <= 1e-12)
    assert lr_at(500, total, base) == pytest.approx(0.1 * base)  # past the end: stays at floor
    assert lr_at(0, 10, 1.0, warmup_fraction=0.0) == pytest.approx(1.0)


def test_ema_follows_warmed_up_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    expected = 0.0
    for value in (1.0, 1.0, -2.0, 4.0):
        with torch.no_grad():
            model.weight.fill_(value)
        d = min(0.9, (1 + ema.updates) / (10 + ema.updates))
        assert ema.current_decay() == pytest.approx(d)
        expected = d * expected + (1 - d) * value
        ema.update(model)
        assert ema.module.weight.item() == pytest.approx(expected, abs=1e-6)
    assert not ema.module.weight.requires_grad
    ema.updates = 10_000  # long run: the decay saturates at its nominal value
    assert ema.current_decay() == pytest.approx(0.9)


# --- retrieval metric ----------------------------------------------------------------------------


def test_retrieval_identical_embeddings_is_perfect():
    z = torch.nn.functional.normalize(
        torch.randn(6, 5, 16, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    score = retrieval_accuracy(z, z, torch.ones(6, 5, dtype=torch.bool))
    assert score.accuracy == 1.0
    assert score.chance == pytest.approx(1 / 6)
    assert score.n == 30


def test_retrieval_hand_made_confuser_and_masking():
    e = torch.eye(3)
    za = e[:, None, :]  # (3 windows, T = 1, D = 3): window i -> e_i
    zb = torch.stack([e[1], 0.8 * e[1] + 0.6 * e[0], e[2]])[:, None, :]  # b row 0 confuses
    score = retrieval_accuracy(za, zb, torch.ones(3, 1, dtype=torch.bool))
    # a -> b: only window 2 finds itself; b -> a: windows 1 and 2 do -> (1 + 2) / 2 of 3
    assert (score.accuracy, score.chance, score.n) == (pytest.approx(0.5), pytest.approx(1 / 3), 3)
    # with window 0 invalid at t the confuser is no candidate: everyone finds itself
    score = retrieval_accuracy(za, zb, torch.tensor([[False], [True], [True]]))
    assert (score.accuracy, score.chance, score.n) == (1.0, pytest.approx(0.5), 2)
    # a time step with a single valid window is not scored
    lonely = retrieval_accuracy(za, zb, torch.tensor([[True], [False], [False]]))
    assert lonely.n == 0 and math.isnan(lonely.accuracy)


def test_retrieval_of_random_embeddings_is_about_chance():
    g = torch.Generator().manual_seed(1)
    za = torch.nn.functional.normalize(torch.randn(8, 400, 32, generator=g), dim=-1)
    zb = torch.nn.functional.normalize(torch.randn(8, 400, 32, generator=g), dim=-1)
    score = retrieval_accuracy(za, zb, torch.ones(8, 400, dtype=torch.bool))
    assert score.chance == pytest.approx(1 / 8)
    assert abs(score.accuracy - 1 / 8) < 0.03  # 6400 draws: sd ~0.004 per direction


# --- config --------------------------------------------------------------------------------------


def test_train_config_json_round_trip_and_errors(tmp_path):
    cfg = TrainConfig(
        preset="tiny", model_overrides={"modalities": ["ibi", "resp"]}, loss="infonce"
    )
    again = TrainConfig.load_json(cfg.save_json(tmp_path / "train.json"))
    assert again == cfg
    assert again.model_config().modalities == ("ibi", "resp")
    with pytest.raises(ConfigError, match="loss must be one of dash, infonce"):
        TrainConfig(loss="triplet")
    with pytest.raises(ConfigError, match="lr must be a number > 0"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="unknown model preset"):
        TrainConfig(preset="huge")
    with pytest.raises(ConfigError, match="unknown TrainConfig key"):
        TrainConfig.from_dict({"epochz": 3})


# --- the loop ------------------------------------------------------------------------------------


def test_loss_decreases_when_overfitting_one_batch(store):
    cfg = tiny_config(loss="infonce", lr=3e-3, warmup_fraction=0.0)
    ds = WindowDataset(store, "train", window_epochs=WINDOW)
    sampler = PairFirstBatchSampler(ds, 4, pairs=[("ibi", "resp")], seed=0)
    batch = collate_pair([ds[key] for key in next(iter(sampler))])
    model = Sleep2Vec(cfg.model_config(), seed=0)
    net, opt, loss_fn = PairEncoder(model).train(), make_optimizer(model, cfg), make_loss_fn(cfg)
    losses = []
    for step in range(30):
        torch.manual_seed(step)
        loss, grad_norm = train_step(net, batch, opt, loss_fn, lr=cfg.lr, grad_clip=1.0,
                                     device=torch.device("cpu"), bf16=False)  # fmt: skip
        assert loss.shape == () and grad_norm.shape == ()  # device tensors: nothing waited
        losses.append(float(loss))
        assert math.isfinite(float(grad_norm))
    assert losses[0] > 1.0  # about log(4) + margin-free InfoNCE at init
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    # only the batch's tokenizers got gradients (the other seven stay without .grad)
    grads = {m: model.tokenizers[m].residual.weight.grad is not None for m in model.tokenizers}
    assert grads == {m: m in ("ibi", "resp") for m in model.tokenizers}


class Recorder(TrainCallback):
    def __init__(self, stop_after: int | None = None):
        self.steps, self.epochs, self.stop_after = [], [], stop_after

    def on_step(self, info):
        self.steps.append(info)

    def on_epoch_end(self, info):
        self.epochs.append(info)
        return self.stop_after is not None and info.epoch + 1 >= self.stop_after


@pytest.fixture(scope="module")
def straight(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    rec = Recorder()
    result = pretrain(store, out, tiny_config(epochs=2), callbacks=[rec])
    return out, result, rec


def test_two_epochs_run_folder_history_and_callbacks(straight):
    out, result, rec = straight
    assert result.step == 6 and not result.stopped_early
    assert [i.step for i in rec.steps] == [1, 2, 3, 4, 5, 6]
    assert all(i.total_steps == 6 for i in rec.steps)
    assert [i.epoch for i in rec.epochs] == [0, 1]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [0, 1] and list(history["step"]) == [3, 6]
    assert history["lr"].iloc[-1] == pytest.approx(0.1 * 1e-3)  # cosine ends at 10 %
    steps = pd.read_csv(out / "steps.csv")
    assert list(steps["step"]) == [1, 2, 3, 4, 5, 6]
    assert steps["lr"].iloc[0] == pytest.approx(1e-3)  # ceil(3 % of 6) = 1 warm-up step
    for name in ("best", "last"):
        model, config, extra = load_checkpoint(out / name)
        assert config == get_preset("tiny")
        assert extra["weights"] == "ema"
        assert extra["data_summary"]["nights_per_split"] == {"train": 4, "val": 2, "test": 0}
        assert TrainConfig.from_dict(extra["train_config"]) == tiny_config(epochs=2)
    table = pd.read_csv(out / "last" / "retrieval.csv")
    # 9 modalities in the val full-PSG night, 6 in the other: every pair has >= 3 windows
    assert len(table) == 36
    assert table["accuracy"].between(0, 1).all()
    np.testing.assert_allclose(table["chance"], 1 / 3, atol=0.02)  # 3 candidates per chunk
    assert history["val_retrieval_mean"].iloc[-1] == pytest.approx(table["accuracy"].mean())
    best_epoch = int(history["val_retrieval_mean"].idxmax())
    assert result.best_metrics["epoch"] == best_epoch
    assert (
        json.loads((out / "best" / "config.json").read_text())["extra"]["epoch"] == best_epoch + 1
    )
    assert not (out / "best" / "resume").exists() and (out / "last" / "resume").is_dir()


def test_same_seed_same_weights_other_seed_differs(store, straight, tmp_path):
    out, _, _ = straight
    again = tmp_path / "again"
    pretrain(store, again, tiny_config(epochs=2))
    assert_same_weights(weights(again / "last" / "resume"), weights(out / "last" / "resume"))
    assert_same_weights(weights(again / "last"), weights(out / "last"))
    other = tmp_path / "other"
    pretrain(store, other, tiny_config(epochs=1, seed=1))
    a, b = weights(other / "last" / "resume"), weights(out / "last" / "resume")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_resume_after_one_epoch_equals_two_straight(store, straight, tmp_path):
    out, result, _ = straight
    run = tmp_path / "resumed"
    first = pretrain(store, run, tiny_config(epochs=2), callbacks=[Recorder(stop_after=1)])
    assert first.stopped_early and first.step == 3
    rec = Recorder()
    second = pretrain(store, run, tiny_config(epochs=2), callbacks=[rec], resume_from=run)
    assert [i.step for i in rec.steps] == [4, 5, 6]
    assert second.step == 6 and not second.stopped_early
    assert_same_weights(weights(run / "last" / "resume"), weights(out / "last" / "resume"), 1e-6)
    assert_same_weights(weights(run / "last"), weights(out / "last"), 1e-6)
    h_resumed, h_straight = pd.read_csv(run / "history.csv"), pd.read_csv(out / "history.csv")
    cols = ["epoch", "step", "lr", "train_loss", "val_retrieval_mean"]
    pd.testing.assert_frame_equal(h_resumed[cols], h_straight[cols], atol=1e-6)
    assert len(pd.read_csv(run / "steps.csv")) == 6


def test_resume_and_overwrite_errors(store, straight, tmp_path):
    with pytest.raises(S2VError, match="no resumable checkpoint"):
        pretrain(store, tmp_path / "x", tiny_config(), resume_from=tmp_path)
    with pytest.raises(S2VError, match="already holds a run"):
        pretrain(store, straight[0], tiny_config())
    with pytest.raises(S2VError, match="its model differs"):
        pretrain(store, tmp_path / "y", tiny_config(preset="small"), resume_from=straight[0])


def test_without_val_split_selects_on_train_loss(store, tmp_path):
    source = store.parent / "source"
    meta = pd.read_csv(source / "metadata.csv").assign(split="train")
    meta.to_csv(tmp_path / "all_train.csv", index=False)
    no_val = tmp_path / "store"
    assert run_cli(["prepare", str(source), "--metadata", str(tmp_path / "all_train.csv"),
                    "--out", str(no_val), "--quiet"]) == 0  # fmt: skip
    result = pretrain(no_val, tmp_path / "run", tiny_config(epochs=2, batches_per_epoch=1))
    history = result.history
    assert history["val_retrieval_mean"].isna().all() and history["val_loss"].isna().all()
    assert result.best_metrics["epoch"] == int(history["train_loss"].idxmin())
    assert len(pd.read_csv(tmp_path / "run" / "last" / "retrieval.csv")) == 0
    assert "val split" in train_cli.format_retrieval_table(result.retrieval)


def test_nan_loss_stops_with_its_step_and_saves_nothing_of_that_epoch(store, tmp_path, monkeypatch):
    real = train_module.make_loss_fn
    calls = []

    def poisoned(cfg):
        loss_fn = real(cfg)

        def wrapped(*args):
            calls.append(1)
            loss = loss_fn(*args)
            return loss * float("nan") if len(calls) == 2 else loss  # the 2nd training step

        return wrapped

    monkeypatch.setattr(train_module, "make_loss_fn", poisoned)
    # log_every larger than the epoch: the loss is read only at the epoch's end, and the step of
    # the first NaN is still reported, not the step where it was noticed
    with pytest.raises(S2VError, match=r"NaN or infinite at step 2 \(pair \w+-\w+\); lower the"):
        pretrain(store, tmp_path / "run", tiny_config(log_every=100))
    assert not (tmp_path / "run" / "last").exists() and not (tmp_path / "run" / "best").exists()


def test_loop_reads_the_loss_from_the_device_only_when_logging(store, tmp_path, monkeypatch):
    """Each host read of a device number makes a GPU wait: unlogged steps must not read any.

    Counted: reads made by this project's code (the model, the loss, the loop). PyTorch's own
    (AdamW's step counts, kept on the host unless fused, which it is on a GPU) are its business.
    """
    reads = []

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args):
            caller = sys._getframe(1).f_code.co_filename
            # the encoder reads its key mask on a CPU only (free there; see its forward)
            cpu_only = caller.endswith(f"model{os.sep}encoder.py")
            if f"s2v_core{os.sep}" in caller and not cpu_only:
                reads.append((name, caller, sys._getframe(1).f_lineno))
            return real(self, *args)

        return read

    def run(log_every, batches):
        reads.clear()
        with monkeypatch.context() as m:
            for name in ("__float__", "__int__", "__bool__", "item", "tolist"):
                m.setattr(torch.Tensor, name, counting(name))
            pretrain(store, tmp_path / f"run{log_every}-{batches}",
                     tiny_config(epochs=2, log_every=log_every, batches_per_epoch=batches))  # fmt: skip
        return len(reads)

    # twice the steps, none logged: not one read more (the NaN check and the loss, once an epoch)
    assert run(100, 2) == run(100, 4)
    sparse = len(reads)
    # a row of steps.csv on every step reads its loss, grad norm and NaN flag: 3 reads x 8 steps
    assert run(1, 4) - sparse == 3 * 8


def test_compiled_encoder_trains_like_the_eager_one(store, straight, tmp_path):
    # aot_eager traces the encoder through dynamo and AOTAutograd as inductor does, without a C
    # compiler; what a GPU run gains is measured by bench/bench_gpu.sh, not here
    from torch._dynamo.utils import counters

    out, _, _ = straight
    run = tmp_path / "compiled"
    counters.clear()
    pretrain(store, run, tiny_config(epochs=2, compile="aot_eager"))
    assert counters["stats"]["unique_graphs"] >= 1  # the encoder did go through dynamo
    assert_same_weights(weights(run / "last" / "resume"), weights(out / "last" / "resume"), 1e-5)
    assert_same_weights(weights(run / "last"), weights(out / "last"), 1e-5)  # names unchanged
    history = pd.read_csv(run / "history.csv")
    pd.testing.assert_series_equal(history["train_loss"], pd.read_csv(out / "history.csv")["train_loss"], atol=1e-5)
    with pytest.raises(S2VError, match="unknown torch.compile backend 'nope'"):
        pretrain(store, tmp_path / "nope", tiny_config(compile="nope"))


def test_too_few_windows_is_a_clear_error(store, tmp_path):
    with pytest.raises(S2VError, match="fewer than batch_size=64"):
        pretrain(store, tmp_path / "x", tiny_config(batch_size=64))


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_pretrain_one_epoch(store, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["pretrain", "--data", str(store), "--preset", "tiny", "--loss", "infonce",
            "--out", str(out), "--epochs", "1", "--batch-size", "3", "--lr", "1e-3",
            "--device", "cpu", "--seed", "0", "--batches-per-epoch", "2",
            "--window-epochs", str(WINDOW), "--val-batches", "1", "--quiet"]  # fmt: skip
    assert run_cli(argv) == 0
    text = capsys.readouterr().out
    assert "epoch 1/1" in text and "per-pair validation retrieval" in text
    assert "eeg-eog" in text
    for path in ("best/model.safetensors", "last/resume/optimizer.safetensors",
                 "history.csv", "retrieval.csv", "last/retrieval.csv"):  # fmt: skip
        assert (out / path).is_file(), path
    _, _, extra = load_checkpoint(out / "last")
    assert extra["train_config"]["loss"] == "infonce"
    assert extra["train_config"]["batches_per_epoch"] == 2
    # --resume takes the settings from the checkpoint; --epochs extends the run
    assert run_cli(["pretrain", "--data", str(store), "--resume", str(out), "--epochs", "2",
                    "--quiet"]) == 0  # fmt: skip
    history = pd.read_csv(out / "history.csv")
    assert list(history["step"]) == [2, 4]


def test_cli_errors_are_one_line(store, tmp_path, capsys):
    code = run_cli(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "not a cohort store" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    code = run_cli(["prepare", str(tmp_path / "empty"), "--out", str(tmp_path / "s"), "--quiet"])
    assert code == 2
    assert "no recording found" in capsys.readouterr().err


def test_cli_choices_match_library_and_import_is_light():
    import subprocess
    import sys

    from s2v_core.model import PRESETS
    from s2v_core.train.config import LOSSES

    assert train_cli.PRESET_CHOICES == tuple(PRESETS)
    assert train_cli.LOSS_CHOICES == LOSSES
    code = "import sys, s2v_core.cli.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # hooking into `s2v` must not import torch
