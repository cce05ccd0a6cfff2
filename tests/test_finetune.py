"""Fine-tuning with modality dropout, ``s2v finetune``, and ``s2v embed`` over a store."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import synthetic_store
from safetensors.torch import load_file

from s2v_core.cli.main import main
from s2v_core.cohort.prepare import prepare_store
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.evaluation import staging_metrics
from s2v_core.inference.predict import load_classifier, predict_night
from s2v_core.model import HeadConfig, Sleep2Vec, Sleep2VecClassifier, get_preset
from s2v_core.model.checkpoint import save_checkpoint
from s2v_core.synth.cohort import generate_cohort
from s2v_core.train.finetune import (
    FinetuneConfig,
    build_model,
    class_weights_from_counts,
    collate_windows,
    drop_modalities,
    evaluate_windows,
    finetune,
    merge_targets,
    single_modality_loss,
    staging_loss,
    train_step,
)
from s2v_core.train.windows import WindowDataset

QUICK = dict(preset="tiny", window_epochs=30, batch_size=4, lr=3e-3)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """4 half-hour nights; split seed 5 puts sub-001 (2 nights) in val, the other 2 in train."""
    root = tmp_path_factory.mktemp("ft")
    synthetic_store(root, 4, split_seed=5)
    s = CohortStore(root / "store")
    assert len(s.nights("train")) == 2 and len(s.nights("val")) == 2
    return root / "store"


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rows = []
    res = finetune(store, out, FinetuneConfig(epochs=2, **QUICK), on_epoch=rows.append)
    return res, rows


def cli(argv):
    """Run an ``s2v`` command as the console script does, but let errors raise."""
    return main(["--debug", *map(str, argv)])


# --- modality dropout ----------------------------------------------------------------------
def test_drop_modalities_never_empties_a_window():
    g = torch.Generator().manual_seed(0)
    present = torch.tensor([[True, True, False], [True, False, False], [False, True, True]] * 50)
    for _ in range(20):
        keep = drop_modalities(present, 0.9, g)
        assert keep.any(dim=1).all()
        assert not (keep & ~present).any()  # never switches on an absent modality
    assert torch.equal(drop_modalities(present, 0.0, g), present)
    nothing = torch.zeros(3, 4, dtype=torch.bool)
    assert not drop_modalities(nothing, 0.5, g).any()  # a window without data stays empty


def test_drop_modalities_rate_and_rescue_are_uniform():
    g = torch.Generator().manual_seed(1)
    present = torch.ones(20000, 4, dtype=torch.bool)
    keep = drop_modalities(present, 0.5, g)
    # kept fraction: 0.5 per entry, plus the rescue of the 1/16 all-dropped rows (1 of 4 each)
    assert keep.float().mean().item() == pytest.approx(0.5 + 1 / 64, abs=0.01)
    single = drop_modalities(present, 0.999, g)
    assert (single.sum(dim=1) >= 1).all()
    shares = single.float().mean(dim=0)  # the rescued modality is uniform over the present ones
    assert torch.allclose(shares, torch.full((4,), 0.25), atol=0.02)
    a = drop_modalities(present[:50], 0.5, torch.Generator().manual_seed(7))
    b = drop_modalities(present[:50], 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_drop_modalities_size_mode_draws_every_subset_size_equally():
    g = torch.Generator().manual_seed(2)
    present = torch.ones(30000, 6, dtype=torch.bool)
    present[:15000, 3:] = False  # half the windows have 3 modalities, half 6
    keep = drop_modalities(present, 0.999, g, "size")
    assert not (keep & ~present).any() and keep.any(dim=1).all()
    for rows, n in ((slice(0, 15000), 3), (slice(15000, None), 6)):
        sizes = torch.bincount(keep[rows].sum(dim=1), minlength=n + 1)[1:].float() / 15000
        assert torch.allclose(sizes, torch.full((n,), 1 / n), atol=0.015)  # 1..n kept, uniformly
        singles = keep[rows][keep[rows].sum(dim=1) == 1].float().mean(dim=0)[:n]
        assert torch.allclose(singles, torch.full((n,), 1 / n), atol=0.03)  # which one: uniform
    # p is the share of windows thinned at all; the others keep everything
    half = drop_modalities(present, 0.5, g, "size")
    full = (half == present).all(dim=1).float()
    assert full[15000:].mean().item() == pytest.approx(0.5 + 0.5 / 6, abs=0.015)
    assert torch.equal(drop_modalities(present, 0.0, g, "size"), present)
    nothing = torch.zeros(3, 4, dtype=torch.bool)
    assert not drop_modalities(nothing, 0.5, g, "size").any()
    with pytest.raises(S2VError, match="dropout mode"):
        drop_modalities(present, 0.5, g, "sizes")
    with pytest.raises(S2VError, match="dropout_mode"):
        FinetuneConfig(dropout_mode="uniform")


# --- loss and steps ------------------------------------------------------------------------
def test_staging_loss_ignores_unscored_epochs():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 5, requires_grad=True)
    stages = torch.tensor([[0, 1, -1, 2, -1, 4], [3, -1, -1, 2, 2, 0]])
    scored = stages >= 0
    expected = F.cross_entropy(logits[scored], stages[scored])
    assert staging_loss(logits, stages).item() == pytest.approx(expected.item(), rel=1e-6)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    expected_w = F.cross_entropy(logits[scored], stages[scored], weight=w)
    assert staging_loss(logits, stages, class_weights=w).item() == pytest.approx(expected_w.item())
    none = staging_loss(logits, torch.full((2, 6), -1))
    assert none.item() == 0.0
    none.backward()  # no NaN gradients from an unscored batch
    assert torch.isfinite(logits.grad).all()


def test_class_weights_favour_rare_stages():
    w = class_weights_from_counts(np.array([400, 40, 400, 100, 200]))
    assert w.mean() == pytest.approx(1.0, abs=1e-6)
    assert w.argmax() == 1 and w.argmin() in (0, 2)
    assert w[1] / w[0] == pytest.approx(10.0, rel=1e-5)  # inverse frequency
    clipped = class_weights_from_counts(np.array([1000, 1, 1000, 1000, 1000]))
    assert clipped.mean() == pytest.approx(1.0, abs=1e-6)
    assert clipped[1] / clipped[0] == pytest.approx(4.98 / 0.2, rel=1e-3)  # capped near 5 / 0.2
    assert np.isfinite(class_weights_from_counts(np.array([10, 0, 10, 0, 10]))).all()


def test_overfitting_a_fixed_batch_drives_the_loss_down(store):
    """4 windows (9 and 4 modalities), 15 steps: the tiny model memorises their stages."""
    ds = WindowDataset(store, "train", window_epochs=30)
    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0)
    batch = collate_windows([ds[i] for i in range(4)], model.config.modalities)
    assert batch["present"].sum(dim=1).tolist() == [9, 9, 4, 4]
    assert (batch["stages"] >= 0).sum() == 120
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = [train_step(model, batch, opt, batch["present"]) for _ in range(15)]
    assert losses[0] > 1.0  # about log(5) at the start
    assert losses[-1] < 0.25 * losses[0]
    assert max(losses[-3:]) < min(losses[:3])


def test_train_step_ignores_windows_with_every_modality_dropped(store):
    ds = WindowDataset(store, "train", window_epochs=30)
    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0)
    batch = collate_windows([ds[0], ds[1]], model.config.modalities)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    keep = batch["present"].clone()
    keep[1] = False  # window 1 has nothing left
    model.eval()  # no dropout: the loss must equal the one of window 0 alone
    both = train_step(model, batch, opt, keep)
    alone = collate_windows([ds[0]], model.config.modalities)
    assert both == pytest.approx(train_step(model, alone, opt, alone["present"]), rel=1e-5)


def test_a_single_modality_alone_is_the_head_on_its_own_states(store):
    """What single_modality_loss scores is what the classifier predicts from that modality alone."""
    ds = WindowDataset(store, "train", window_epochs=30)
    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).eval()
    batch = collate_windows([ds[0], ds[2]], model.config.modalities)
    inputs, valid = batch["inputs"], batch["valid"]
    with torch.no_grad():
        hidden = model.backbone(inputs, valid)
        for m in ("eeg", "ibi"):
            alone = model({m: inputs[m]}, valid).stage_logits
            torch.testing.assert_close(model.staging(hidden[m]), alone)
        torch.testing.assert_close(model.heads(hidden, valid).stage_logits, model(inputs, valid).stage_logits)


def test_single_modality_loss_averages_the_kept_modalities(store):
    ds = WindowDataset(store, "train", window_epochs=30)
    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).eval()
    batch = collate_windows([ds[0], ds[2]], model.config.modalities)  # 9 and 4 modalities
    names = batch["names"]
    keep = batch["present"].clone()
    keep[0] = False
    keep[0, names.index("eeg")] = True  # window 0 keeps eeg alone
    keep[1] = False
    keep[1, names.index("ibi")] = True  # window 1 keeps ibi alone
    present = {m: keep[:, j] for j, m in enumerate(names)}
    target = batch["stages"]
    with torch.no_grad():
        hidden = model.backbone(batch["inputs"], batch["valid"], present)
        got = single_modality_loss(model, hidden, present, target)
        eeg = staging_loss(model.staging(hidden["eeg"][:1]), target[:1])
        ibi = staging_loss(model.staging(hidden["ibi"][1:]), target[1:])
    assert float(got) == pytest.approx(float((eeg + ibi) / 2), rel=1e-5)
    # nothing scored: a zero that still carries a gradient
    none = single_modality_loss(model, model.backbone(batch["inputs"], batch["valid"], present), present,
                                torch.full_like(target, -1))  # fmt: skip
    assert float(none.detach()) == 0.0 and none.requires_grad


def _frozen_step(store):
    """A tiny classifier, a batch of a 9- and a 4-modality window, an optimiser that changes nothing,
    and the plain step's loss."""
    ds = WindowDataset(store, "train", window_epochs=30)
    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).eval()
    batch = collate_windows([ds[0], ds[2]], model.config.modalities)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    return model, batch, opt, train_step(model, batch, opt, batch["present"])


def test_train_step_with_the_single_modality_loss(store):
    """The single-modality loss is added on top: with weight 0 the step is the plain one."""
    model, batch, opt, plain = _frozen_step(store)
    assert train_step(model, batch, opt, batch["present"], single_loss=0.0) == plain
    present = {m: batch["present"][:, j] for j, m in enumerate(batch["names"])}
    with torch.no_grad():
        extra = single_modality_loss(model, model.backbone(batch["inputs"], batch["valid"], present), present,
                                     batch["stages"].masked_fill(~batch["valid"], -1))  # fmt: skip
    both = train_step(model, batch, opt, batch["present"], single_loss=0.5)
    assert both == pytest.approx(plain + 0.5 * float(extra), rel=1e-5)
    with pytest.raises(S2VError, match="single_loss"):
        FinetuneConfig(single_loss=-1.0)
    with pytest.raises(S2VError, match="single_loss"):
        FinetuneConfig(single_loss=True)


def test_the_single_modality_loss_can_count_chosen_modalities_only(store):
    """``single_loss_modalities`` restricts the extra loss to those modalities' states."""
    model, batch, opt, plain = _frozen_step(store)
    present = {m: batch["present"][:, j] for j, m in enumerate(batch["names"])}
    target = batch["stages"].masked_fill(~batch["valid"], -1)
    with torch.no_grad():
        hidden = model.backbone(batch["inputs"], batch["valid"], present)
        chosen = single_modality_loss(model, {m: hidden[m] for m in ("eeg", "ibi")}, present, target)
        every = single_modality_loss(model, hidden, present, target)
    assert float(chosen) != pytest.approx(float(every), rel=1e-3)  # the restriction changes the loss
    got = train_step(model, batch, opt, batch["present"], single_loss=1.0, single_loss_modalities=("eeg", "ibi"))
    assert got == pytest.approx(plain + float(chosen), rel=1e-5)
    # the chosen modality dropped from every window: nothing to add, the plain step with that subset
    keep = batch["present"].clone()
    keep[:, batch["names"].index("spo2")] = False
    without = train_step(model, batch, opt, keep)
    assert without != pytest.approx(plain, rel=1e-6)  # dropping spo2 changes the fused loss
    only = train_step(model, batch, opt, keep, single_loss=1.0, single_loss_modalities=("spo2",))
    assert only == pytest.approx(without, rel=1e-6)
    cfg = FinetuneConfig(single_loss=1.0, single_loss_modalities=["spo2", "ibi", "spo2"])
    assert cfg.single_loss_modalities == ("spo2", "ibi")
    with pytest.raises(S2VError, match="unknown modality eye"):
        FinetuneConfig(single_loss_modalities=("eye",))
    with pytest.raises(S2VError, match="list of modality names"):
        FinetuneConfig(single_loss_modalities="spo2")


# --- the fine-tuning run -------------------------------------------------------------------
def test_finetune_writes_history_and_best_checkpoint(run, store):
    res, rows = run
    out = res.out_dir
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [1, 2] and len(rows) == 2
    assert {"train_loss", "val_kappa", "val_accuracy", "val_macro_f1", "lr", "seconds"} <= set(
        hist.columns
    )
    assert np.isfinite(hist["train_loss"]).all() and np.isfinite(hist["val_kappa"]).all()
    assert hist["val_n_epochs"].iloc[0] == 120  # 2 val nights x 60 scored epochs
    best_row = hist.loc[hist["val_kappa"].idxmax()]
    assert res.best["epoch"] == best_row["epoch"]
    assert res.best["kappa"] == pytest.approx(best_row["val_kappa"])
    meta = json.loads((res.checkpoint / "config.json").read_text())
    assert meta["kind"] == "classifier" and meta["head"]["per_epoch_gate"] is True
    extra = meta["extra"]
    assert extra["finetune_config"]["preset"] == "tiny" and extra["class_names"][4] == "REM"
    assert extra["metrics"]["kappa"] == pytest.approx(res.best["kappa"])
    train = extra["data"]["splits"]["train"]
    assert train["nights"] == 2 and train["windows"] == 4
    assert sum(train["scored_epochs"].values()) == 120
    assert json.loads((out / "finetune_config.json").read_text())["window_epochs"] == 30


def test_finetuned_model_loads_and_stages_any_subset(run, store):
    res, _ = run
    model, config, extra = load_classifier(res.checkpoint)
    assert config == get_preset("tiny") and not model.training
    night = CohortStore(store).night(CohortStore(store).nights("train")[0])
    for subset in (None, ("ecg",), ("ibi", "resp")):
        if subset and not set(subset) <= set(night.modalities):
            continue
        pred = predict_night(model, night, subset)
        assert pred.stages.shape == (night.n_epochs,)
        np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1, atol=1e-5)


def test_tokenizers_stay_frozen_and_the_encoder_learns(run):
    res, _ = run
    trained = load_file(str(res.checkpoint / "model.safetensors"))
    start = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).state_dict()
    tok = [k for k in start if k.startswith("backbone.tokenizers.")]
    enc = [
        k for k in start if k.startswith("backbone.encoder.") and start[k].dtype.is_floating_point
    ]
    assert tok and enc
    assert all(torch.equal(trained[k], start[k]) for k in tok)
    assert sum(not torch.equal(trained[k], start[k]) for k in enc) > len(enc) // 2
    assert not torch.equal(trained["fusion.logits"], start["fusion.logits"])


def test_finetune_from_a_pretrained_backbone(store, tmp_path):
    cfg = get_preset("tiny")
    pre = Sleep2Vec(cfg, seed=11)
    save_checkpoint(tmp_path / "pre", pre, cfg)
    res = finetune(
        store,
        tmp_path / "ft",
        FinetuneConfig(epochs=1, max_batches_per_epoch=1, **QUICK),
        pretrained=tmp_path / "pre",
    )
    trained = load_file(str(res.checkpoint / "model.safetensors"))
    for k, v in pre.state_dict().items():
        if k.startswith("tokenizers."):
            assert torch.equal(trained[f"backbone.{k}"], v)  # copied, then frozen
    assert res.checkpoint.parent.joinpath("history.csv").exists()
    assert json.loads((res.checkpoint / "config.json").read_text())["extra"]["pretrained"].endswith(
        "pre"
    )
    with pytest.raises(S2VError, match="not a sleep2vec checkpoint"):
        finetune(store, tmp_path / "x", FinetuneConfig(epochs=1, **QUICK), pretrained=tmp_path)


def test_finetune_again_from_a_classifier_checkpoint(run, store, tmp_path):
    """A fine-tuned classifier can serve as the starting backbone of another run."""
    first, _ = run
    res = finetune(
        store,
        tmp_path / "again",
        FinetuneConfig(epochs=1, max_batches_per_epoch=1, **QUICK),
        pretrained=first.checkpoint,
    )
    before = load_file(str(first.checkpoint / "model.safetensors"))
    after = load_file(str(res.checkpoint / "model.safetensors"))
    tok = [k for k in before if k.startswith("backbone.tokenizers.")]
    assert tok and all(torch.equal(before[k], after[k]) for k in tok)


def test_finetune_is_deterministic_for_a_seed(store, tmp_path):
    def once(name, seed):
        cfg = FinetuneConfig(epochs=1, max_batches_per_epoch=2, seed=seed, **QUICK)
        res = finetune(store, tmp_path / name, cfg)
        return res.history["train_loss"].iloc[0], load_file(
            str(res.checkpoint / "model.safetensors")
        )

    state = torch.random.get_rng_state()
    loss_a, wa = once("a", 3)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    loss_b, wb = once("b", 3)
    loss_c, _ = once("c", 4)
    assert loss_a == loss_b and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert loss_c != loss_a


def test_finetune_config_errors_name_the_field(store, tmp_path):
    with pytest.raises(S2VError, match="modality_dropout must be in"):
        FinetuneConfig(modality_dropout=1.0)
    with pytest.raises(S2VError, match="unknown preset 'huge'; allowed: tiny"):
        FinetuneConfig(preset="huge")
    with pytest.raises(S2VError, match="batch_size must be a positive integer"):
        FinetuneConfig(batch_size=0)
    empty = tmp_path / "store"  # a store whose train split is empty
    generate_cohort(1, tmp_path / "c", seed=0, hours=0.25)
    prepare_store(tmp_path / "c", empty, seed=4, progress=False)  # sub-001 -> test under seed 4
    with pytest.raises(S2VError, match="train split has no windows"):
        finetune(empty, tmp_path / "o", FinetuneConfig(epochs=1, **QUICK))


def test_without_val_windows_the_last_pass_is_kept(store, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    manifest = pd.read_csv(copy / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["split"] = manifest["split"].replace("val", "test")
    manifest.to_csv(copy / "manifest.csv", index=False)
    res = finetune(copy, tmp_path / "o", FinetuneConfig(epochs=2, max_batches_per_epoch=1, **QUICK))
    assert res.best["epoch"] == 2 and math.isnan(res.best["kappa"])
    extra = json.loads((res.checkpoint / "config.json").read_text())["extra"]
    assert extra["epoch"] == 2 and extra["metrics"]["kappa"] is None


# --- CLI -----------------------------------------------------------------------------------
def test_finetune_cli(store, tmp_path, capsys):
    argv = [
        "finetune",
        "--data",
        store,
        "--preset",
        "tiny",
        "--out",
        tmp_path / "r",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--window-epochs",
        "30",
        "--batches-per-epoch",
        "1",
        "--seed",
        "2",
    ]
    assert cli(argv) == 0
    text = capsys.readouterr().out
    assert "pass 1/1: train loss" in text and "kept pass 1" in text
    meta = json.loads((tmp_path / "r" / "best" / "config.json").read_text())
    cfg = meta["extra"]["finetune_config"]
    assert cfg["seed"] == 2 and cfg["max_batches_per_epoch"] == 1 and cfg["freeze_tokenizers"]
    assert cfg["n_classes"] == 5 and not cfg["init_head"] and cfg["patience"] is None
    # adapt the classifier just trained: 3-class objective, its head reused, early stopping
    argv2 = ["finetune", "--data", store, "--pretrained", tmp_path / "r" / "best", "--out", tmp_path / "r2",
             "--epochs", "2", "--batch-size", "4", "--window-epochs", "30", "--batches-per-epoch", "1",
             "--classes", "3", "--init-head", "--patience", "1", "--train-tokenizers",
             "--dropout-mode", "size", "--modality-dropout", "0.9", "--single-loss", "0.5",
             "--single-loss-modalities", "spo2", "emg"]
    assert cli(argv2) == 0
    capsys.readouterr()
    cfg2 = json.loads((tmp_path / "r2" / "best" / "config.json").read_text())["extra"]["finetune_config"]
    assert cfg2["n_classes"] == 3 and cfg2["init_head"] and cfg2["patience"] == 1
    assert cfg2["dropout_mode"] == "size" and cfg2["modality_dropout"] == 0.9 and cfg["dropout_mode"] == "independent"
    assert cfg2["single_loss"] == 0.5 and cfg["single_loss"] == 0.0
    assert cfg2["single_loss_modalities"] == ["spo2", "emg"] and cfg["single_loss_modalities"] == []
    assert not cfg2["freeze_tokenizers"]
    with pytest.raises(SystemExit):  # --pretrained and --preset exclude each other
        cli(
            [
                "finetune",
                "--data",
                store,
                "--out",
                tmp_path,
                "--pretrained",
                "x",
                "--preset",
                "tiny",
            ]
        )


def test_embed_cli_over_a_store(run, store, tmp_path, capsys):
    res, _ = run
    out = tmp_path / "e.parquet"
    assert cli(["embed", store, "--model", res.checkpoint, "--out", out]) == 0
    capsys.readouterr()
    epochs, nights = pd.read_parquet(out), pd.read_parquet(tmp_path / "e_nights.parquet")
    s = CohortStore(store)
    assert len(nights) == 4 and len(epochs) == 4 * 60
    assert set(nights["split"]) == {"train", "val"} and nights["age"].notna().all()
    emb = [f"emb_{i}" for i in range(32)]
    first = nights["night"].iloc[0]
    np.testing.assert_allclose(
        nights.loc[0, emb].to_numpy(float),
        epochs.loc[epochs["night"] == first, emb].to_numpy().mean(axis=0),
        rtol=1e-4,
        atol=1e-6,
    )
    np.testing.assert_array_equal(
        epochs.loc[epochs["night"] == first, "stage"], s.night(first).stages
    )
    # only the nights that have EEG, and only the val split
    assert (
        cli(["embed", store, "--model", res.checkpoint, "--out", out, "--modalities", "eeg", "--overwrite"]) == 0
    )
    with_eeg = [n for n in s.nights() if "eeg" in s.entry(n).modalities]
    assert sorted(pd.read_parquet(out)["night"].unique()) == sorted(with_eeg)
    assert set(pd.read_parquet(out)["modalities"]) == {"eeg"}
    assert cli(["embed", store, "--model", res.checkpoint, "--out", out, "--split", "val", "--overwrite"]) == 0
    assert set(pd.read_parquet(out)["split"]) == {"val"}


# --- merged-class objective, starting from a classifier, early stopping ----------------------
def test_three_class_loss_is_the_cross_entropy_of_summed_probabilities():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 5)
    stages = torch.tensor([[0, 1, 2, 3, 4], [4, -1, 3, 0, 1]])
    assert merge_targets(stages, 3).tolist() == [[0, 1, 1, 1, 2], [2, -1, 1, 0, 1]]
    assert merge_targets(stages, 4).tolist() == [[0, 1, 1, 2, 3], [3, -1, 2, 0, 1]]
    p = logits.softmax(-1)
    merged = torch.stack([p[..., 0], p[..., 1:4].sum(-1), p[..., 4]], -1)  # W, NREM, REM
    target = merge_targets(stages, 3)
    ok = target >= 0
    w = torch.tensor([2.0, 0.5, 3.0])
    want = F.nll_loss(merged[ok].log(), target[ok], weight=w)
    got = staging_loss(logits, stages, class_weights=w, n_classes=3)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # moving probability between N1, N2 and N3 leaves the 3-class loss unchanged
    shuffled = logits[..., [0, 3, 1, 2, 4]]
    assert staging_loss(shuffled, stages, n_classes=3).item() == pytest.approx(
        staging_loss(logits, stages, n_classes=3).item(), rel=1e-6
    )
    assert staging_loss(shuffled, stages).item() != pytest.approx(
        staging_loss(logits, stages).item()
    )


def test_validation_kappa_on_merged_classes(run, store):
    res, _ = run
    model, _, _ = load_classifier(res.checkpoint)
    val = WindowDataset(store, "val", window_epochs=30)
    m3 = evaluate_windows(model, val, n_classes=3)
    refs, preds = [], []
    for n in CohortStore(store).nights("val"):
        night = CohortStore(store).night(n)
        refs.append(night.stages)
        preds.append(predict_night(model, night, window_epochs=30).merged_as_five(3))
    want = staging_metrics(np.concatenate(refs), np.concatenate(preds), n_classes=3)
    assert m3["kappa"] == pytest.approx(want.kappa) and m3["n_epochs"] == want.n_epochs


def test_init_head_starts_from_the_whole_classifier(run, store, tmp_path):
    first, _ = run
    cfg = FinetuneConfig(init_head=True, n_classes=3, **QUICK)
    model = build_model(cfg, first.checkpoint)
    saved = load_file(str(first.checkpoint / "model.safetensors"))
    state = model.state_dict()
    assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    assert not any(p.requires_grad for p in model.backbone.tokenizers.parameters())
    fresh = build_model(FinetuneConfig(**QUICK), first.checkpoint)  # backbone only: new head
    assert not torch.equal(
        fresh.state_dict()["staging.mlp.1.weight"], saved["staging.mlp.1.weight"]
    )
    res = finetune(store, tmp_path / "ft3", FinetuneConfig(epochs=1, init_head=True, n_classes=3, **QUICK),
                   pretrained=first.checkpoint)  # fmt: skip
    extra = json.loads((res.checkpoint / "config.json").read_text())["extra"]
    assert extra["finetune_config"]["n_classes"] == 3 and "3-class" in extra["selection"]
    with pytest.raises(S2VError, match="init_head needs a classifier checkpoint"):
        build_model(FinetuneConfig(init_head=True, **QUICK), None)
    pre = tmp_path / "pre"
    save_checkpoint(pre, Sleep2Vec(get_preset("tiny"), seed=1), get_preset("tiny"))
    with pytest.raises(S2VError, match="pretrained encoder without a staging head"):
        build_model(FinetuneConfig(init_head=True, **QUICK), pre)
    with pytest.raises(S2VError, match="per_epoch_gate"):
        build_model(FinetuneConfig(init_head=True, per_epoch_gate=False, **QUICK), first.checkpoint)


def test_patience_stops_when_validation_kappa_stalls(store, tmp_path):
    cfg = FinetuneConfig(epochs=5, patience=1, max_batches_per_epoch=1, **{**QUICK, "lr": 1e-12})
    res = finetune(store, tmp_path / "p", cfg)  # the weights barely move: kappa never improves
    assert list(res.history["epoch"]) == [1, 2] and res.best["epoch"] == 1
    with pytest.raises(S2VError, match="patience must be a positive integer"):
        FinetuneConfig(patience=0)
    with pytest.raises(S2VError, match="n_classes must be 5, 4 or 3"):
        FinetuneConfig(n_classes=2)
