"""Safe checkpoints: round trips, pickle refusal, clear errors on version and shape mismatches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from s2v_core.errors import S2VError
from s2v_core.modalities import samples_per_epoch
from s2v_core.model import HeadConfig, Sleep2Vec, Sleep2VecClassifier, get_preset
from s2v_core.model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    WRITER,
    CheckpointError,
    flatten_state,
    load_checkpoint,
    load_optimizer_state,
    read_checkpoint_config,
    save_checkpoint,
    unflatten_state,
)
from s2v_core.shipped import package_version

TINY = get_preset("tiny", modalities=("eeg", "ibi", "spo2"))


def inputs(B=2, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(B, T, samples_per_epoch(m), generator=g) for m in TINY.modalities}
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 4:] = False
    return x, valid


def edit_config(directory, **changes):
    path = directory / CONFIG_FILE
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if key.startswith("model."):
            meta["model"][key[6:]] = value
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def test_pretrain_round_trip_gives_identical_outputs(tmp_path):
    model = Sleep2Vec(TINY, seed=3)
    save_checkpoint(tmp_path, model, TINY, extra={"ema": True, "data": ["shhs"]}, step=12)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (meta["format_version"], meta["kind"], meta["step"]) == (1, "pretrain", 12)
    loaded, config, extra = load_checkpoint(tmp_path)
    assert isinstance(loaded, Sleep2Vec) and not loaded.training
    assert config == TINY and extra == {"ema": True, "data": ["shhs"]}
    x, valid = inputs()
    a, b = model.encode(x, valid), loaded.encode(x, valid)
    for m in TINY.modalities:
        assert torch.equal(a[m], b[m])
    assert torch.equal(model.project(a["eeg"]), loaded.project(b["eeg"]))


def test_classifier_round_trip_keeps_heads_and_frozen_tokenizers(tmp_path):
    head = HeadConfig(night_outputs=2, per_epoch_gate=True, head_hidden=16)
    model = Sleep2VecClassifier(TINY, head, seed=1).eval()
    with torch.no_grad():
        model.fusion.logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    save_checkpoint(tmp_path, model, TINY)
    loaded, config, extra = load_checkpoint(tmp_path)
    assert isinstance(loaded, Sleep2VecClassifier) and loaded.head_config == head
    assert extra == {} and read_checkpoint_config(tmp_path)["kind"] == "classifier"
    assert not any(p.requires_grad for p in loaded.backbone.tokenizers.parameters())
    x, valid = inputs()
    present = {"spo2": torch.tensor([True, False])}
    a, b = model(x, valid, present), loaded(x, valid, present)
    for got, want in zip(b, a, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "last.ckpt", "pytorch_model.bin"])
def test_pickled_files_are_refused_without_reading_them(tmp_path, monkeypatch, name):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    (tmp_path / name).write_bytes(b"\x80\x04not really a pickle")

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(CheckpointError, match=f"refusing to read pickled file.*{name}"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refusing to read pickled"):
        load_checkpoint(tmp_path / name)


def test_checkpoints_record_the_software_that_wrote_them(tmp_path):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["written_by"] == WRITER == f"sleep2vec-studio {package_version()}"
    del meta["written_by"]  # optional: checkpoints written before it was recorded still load
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (7, r"checkpoint format 7 \(written by sleep2vec-studio 9\.0\) is newer than this "
            r"sleep2vec-studio .* reads \(format 1\); upgrade sleep2vec-studio \(pip install -U"),
        (0, r"checkpoint format 0 \(written by sleep2vec-studio 9\.0\) is older than this .* "
            r"load it with the release that wrote it and save it again"),
        (None, r"format_version None is missing or not an integer.*Re-export it"),
        ("1", r"format_version '1' is missing or not an integer"),
        (True, r"format_version True is missing or not an integer"),
    ],
)
def test_incompatible_format_says_what_to_do(tmp_path, version, message):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    edit_config(tmp_path, format_version=version, written_by="sleep2vec-studio 9.0")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)


def test_incompatible_checkpoint_is_one_line_in_the_cli(tmp_path, capsys):
    from s2v_core.cli.main import main

    clf = Sleep2VecClassifier(TINY, HeadConfig(), seed=0)
    save_checkpoint(tmp_path / "clf", clf, TINY)
    edit_config(tmp_path / "clf", format_version=2)
    night = tmp_path / "night.edf"
    from tests.edf_factory import psg_channels, write_edf

    write_edf(night, psg_channels(minutes=1))
    assert main(["predict", str(night), "--model", str(tmp_path / "clf"), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "checkpoint format 2" in err and "upgrade sleep2vec-studio" in err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model.n_layers": 10**6}, "n_layers = 1000000, but model.safetensors holds 2 encoder layers"),
        ({"model.hidden": 2**40}, "hidden = 1099511627776, hidden \\* mlp_ratio = 2199023255552 are larger"),
        ({"model.d_token": 10**30}, f"d_token = {10**30} is larger than any tensor"),
        ({"model.mlp_ratio": 10**9}, "hidden \\* mlp_ratio = 32000000000 is larger than any tensor"),
        ({"model.proj_dim": 10**7}, "proj_dim = 10000000 is larger than any tensor"),
        ({"model.modalities": ["eeg", "eog", "ibi", "spo2"]},
         "modalities eeg, eog, ibi, spo2, but model.safetensors has tokenizers for eeg, ibi, spo2"),
    ],
)
def test_config_is_checked_against_the_weights_before_building(tmp_path, changes, message):
    import time

    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    edit_config(tmp_path, **changes)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(tmp_path)
    assert time.perf_counter() - start < 5  # refused before a huge model is constructed
    assert "config.json" in str(info.value) and "does not belong to these weights" in str(info.value)


def test_head_config_is_checked_against_the_weights(tmp_path):
    save_checkpoint(tmp_path, Sleep2VecClassifier(TINY, HeadConfig(), seed=0), TINY)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    meta["head"]["n_stage_classes"] = 10**12
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="n_stage_classes = 1000000000000 is larger than any tensor"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("n_heads", 3, "must split into n_heads"), ("dropout", 1.5, "dropout must be a number in"),
     ("use_cls", "yes", "use_cls must be true or false"),
     ("modalities", ["eeg", "brainwaves"], "unknown modality 'brainwaves'; allowed: eeg"),
     ("d_token", -4, "d_token must be a positive integer"), ("d_token", None, "d_token must be a positive"),
     ("rope_base", 0.5, "rope_base must be > 1")],
)
def test_invalid_config_values_are_named(tmp_path, key, value, expected):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    edit_config(tmp_path, **{f"model.{key}": value})
    with pytest.raises(CheckpointError, match=rf"config\.json: .*{expected}"):
        load_checkpoint(tmp_path)


def test_unknown_config_keys_are_rejected(tmp_path):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    edit_config(tmp_path, **{"model.n_experts": 8})
    with pytest.raises(CheckpointError, match="config.json: unknown ModelConfig key.*n_experts"):
        load_checkpoint(tmp_path)
    edit_config(tmp_path, trainer="x")
    with pytest.raises(CheckpointError, match="unknown key.*trainer"):
        load_checkpoint(tmp_path)


def test_shape_mismatch_lists_the_first_tensors(tmp_path):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    edit_config(tmp_path, **{"model.d_token": 8})  # config now describes a narrower model
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    assert "weights do not fit the model in config.json" in message
    assert (
        "shape mismatch: tokenizers.eeg.mlp.0.weight: file (32, 3840), model (16, 3840)" in message
    )
    assert "more)" in message  # long lists are cut, with a count of the rest


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    del tensors["encoder.final_norm.bias"]
    tensors["encoder.adapter.weight"] = torch.zeros(2)
    save_file(tensors, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(
        CheckpointError,
        match=r"missing: encoder\.final_norm\.bias.*unexpected: encoder\.adapter\.weight",
    ):
        load_checkpoint(tmp_path)


def test_unreadable_or_absent_files_give_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a sleep2vec checkpoint"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)
    assert issubclass(CheckpointError, S2VError)


def test_save_validates_config_and_extra(tmp_path):
    model = Sleep2Vec(TINY, seed=0)
    with pytest.raises(CheckpointError, match="differs from the model"):
        save_checkpoint(tmp_path, model, get_preset("tiny"))
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path, model, TINY, extra={"when": object()})
    assert not (tmp_path / WEIGHTS_FILE).exists()  # nothing half-written


def test_flatten_unflatten_round_trip():
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}, 5: {}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0, 5], "foreach": None}],
    }
    structure, tensors = flatten_state(state, "opt")
    json.dumps(structure)  # plain JSON
    back = unflatten_state(json.loads(json.dumps(structure)), tensors)
    assert back["param_groups"] == state["param_groups"]
    assert set(back["state"]) == {0, 5} and back["state"][5] == {}
    assert torch.equal(back["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    assert isinstance(back["param_groups"][0]["betas"], tuple)
    with pytest.raises(CheckpointError, match="cannot store set at opt.x without pickle"):
        flatten_state({"x": {1, 2}}, "opt")


def test_adamw_state_round_trip_resumes_identically(tmp_path):
    def train_steps(model, opt, n, seed):
        x, valid = inputs(seed=seed)
        for _ in range(n):
            opt.zero_grad()
            z = model.project(model(x, valid)["ibi"])
            z.pow(2).sum().backward()
            opt.step()

    model = Sleep2Vec(TINY, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
    train_steps(model, opt, 2, seed=1)
    save_checkpoint(tmp_path, model, TINY, optimizer=opt, step=2)
    loaded, _, _ = load_checkpoint(tmp_path)
    loaded.train()
    model.train()
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=5.0)
    assert load_optimizer_state(tmp_path, opt2) == 2
    assert opt2.param_groups[0]["lr"] == 1e-3 and opt2.param_groups[0]["betas"] == (0.9, 0.95)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        for name in s1[k]:
            assert torch.equal(s1[k][name], s2[k][name])
    # TINY has dropout 0 in the encoder but 0.1 in the tokenizers: fix the RNG for both runs
    torch.manual_seed(9)
    train_steps(model, opt, 1, seed=2)
    torch.manual_seed(9)
    train_steps(loaded, opt2, 1, seed=2)
    for (name, p), q in zip(model.named_parameters(), loaded.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_optimizer_state_that_does_not_fit_is_reported(tmp_path):
    model = Sleep2Vec(TINY, seed=0)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path, model, TINY, optimizer=opt)
    other = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(CheckpointError, match="does not fit this optimizer"):
        load_optimizer_state(tmp_path, other)
    save_checkpoint(tmp_path / "no_opt", model, TINY)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_optimizer_state(tmp_path / "no_opt", opt)


def test_any_config_value_gives_a_model_or_a_checkpoint_error(tmp_path):
    """Each config field set to hostile values: a model or a CheckpointError, quickly (fuzz-found:
    huge widths raised TypeError inside PyTorch, a million layers took minutes to build)."""
    import time

    clf = Sleep2VecClassifier(TINY, HeadConfig(), seed=0)
    save_checkpoint(tmp_path, clf, TINY)
    original = json.loads((tmp_path / CONFIG_FILE).read_text())
    hostile = [None, "x", -1, 0, 10**6, 10**30, float("nan"), [], {}, True, ["eeg", 2]]
    outcomes = {"loaded": 0, "refused": 0}
    for section in ("model", "head"):
        for key in original[section]:
            for value in hostile:
                meta = json.loads(json.dumps(original))
                meta[section][key] = value
                (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
                start = time.perf_counter()
                try:
                    load_checkpoint(tmp_path)
                    outcomes["loaded"] += 1
                except CheckpointError:
                    outcomes["refused"] += 1
                assert time.perf_counter() - start < 2, (section, key, value)
    assert outcomes["refused"] > outcomes["loaded"] > 0
