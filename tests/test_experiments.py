"""s2v experiment: grids, scoring of a backbone, resumable runs, summaries and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2v_core.cli.main import main
from s2v_core.errors import S2VError
from s2v_core.experiments import (
    SCALING_ORDER,
    load_experiment,
    make_grid,
    paired_losses,
    parse_sweep,
    probe_leave_one_site_out,
    probe_staging,
    summarise,
    summary_figure,
    summary_markdown,
)

from .conftest import synthetic_store

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_losses_grid_pairs_every_seed():
    specs = make_grid("losses", [0, 1, 1])
    assert [s.name for s in specs] == ["dash_s0", "infonce_s0", "dash_s1", "infonce_s1"]
    assert {s.settings["loss"] for s in specs} == {"dash", "infonce"}


def test_sweep_grid_changes_one_parameter_at_a_time():
    specs = make_grid("sweep", [3], sweep=parse_sweep(["age_bandwidth=5,80", "site=1/1"]))
    assert [s.group for s in specs] == ["default", "age_bandwidth=5", "age_bandwidth=80", "site=1/1"]
    assert specs[0].settings == {"loss": "dash"}
    assert specs[1].settings == {"loss": "dash", "age_bandwidth": 5.0}
    assert specs[3].settings == {"loss": "dash", "site_same": 1.0, "site_diff": 1.0}
    assert len({s.name for s in specs}) == len(specs) and "/" not in specs[3].name


def test_scaling_grid_adds_modalities_in_order():
    specs = make_grid("scaling", [0], presets=["tiny"], counts=[2, 3], order=SCALING_ORDER)
    mods = [s.settings["model_overrides"]["modalities"] for s in specs]
    assert mods == [("eeg", "eog"), ("eeg", "eog", "emg")]
    assert [s.order for s in specs] == [2, 3]
    assert "lr" not in specs[0].settings
    fast = make_grid("scaling", [0], presets=["tiny", "small"], counts=[2], preset_lr={"tiny": 1e-3})
    assert [s.settings.get("lr") for s in fast] == [1e-3, None]
    with pytest.raises(S2VError):
        make_grid("scaling", [0], presets=["small"], preset_lr={"tiny": 1e-3})


@pytest.mark.parametrize(
    "bad",
    [["age=5"], ["age_bandwidth"], ["age_bandwidth=x"], ["site=1.3"], ["sex_diff_factor=-1"],
     ["age_bandwidth=nan"]],
)  # fmt: skip
def test_parse_sweep_refuses_bad_values(bad):
    with pytest.raises(S2VError):
        parse_sweep(bad)


def test_bad_grids_are_refused():
    with pytest.raises(S2VError):
        make_grid("scaling", [0], counts=[1])
    with pytest.raises(S2VError):
        make_grid("scaling", [0], order=("eeg", "eeg", "eog"))
    with pytest.raises(S2VError):
        make_grid("losses", [])
    with pytest.raises(S2VError):
        make_grid("other", [0])


def test_probe_staging_separates_informative_embeddings():
    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("train", 400), ("test", 200)):
        stages = rng.integers(0, 5, n)
        for s in stages:
            vec = np.eye(5)[s] * 3 + rng.normal(size=5)
            rows.append({"split": split, "stage": int(s), "vector": vec.astype(np.float32)})
    good = probe_staging(pd.DataFrame(rows))
    assert good["kappa"] > 0.8
    noise = pd.DataFrame(rows).assign(vector=[rng.normal(size=5).astype(np.float32) for _ in rows])
    assert abs(probe_staging(noise)["kappa"]) < 0.15


def test_leave_one_site_out_probe_sees_a_site_shift():
    rng = np.random.default_rng(1)

    def rows(site, shift):
        stages = rng.integers(0, 5, 300)
        return [{"site": site, "sampled": True, "stage": int(s),
                 "vector": (np.eye(5)[s] * 3 + shift + rng.normal(size=5)).astype(np.float32)}
                for s in stages]  # fmt: skip

    same = pd.DataFrame(rows("a", 0) + rows("b", 0) + rows("c", 0))
    shifted = pd.DataFrame(rows("a", 0) + rows("b", 0) + rows("c", np.array([0, 0, 0, 0, 9.0])))
    ok, hurt = probe_leave_one_site_out(same), probe_leave_one_site_out(shifted)
    assert ok["kappa_loso"] > 0.8 and ok["kappa_loso_worst"] > 0.75
    assert hurt["kappa_loso_worst"] < ok["kappa_loso_worst"] - 0.2  # the shifted site suffers
    assert math.isnan(probe_leave_one_site_out(pd.DataFrame(rows("a", 0)))["kappa_loso"])


def test_summary_and_paired_differences():
    results = pd.DataFrame({
        "group": ["dash", "infonce"] * 3, "order": [0, 1] * 3, "seed": [0, 0, 1, 1, 2, 2],
        "loss": ["dash", "infonce"] * 3, "preset": "tiny", "n_modalities": 9, "n_parameters": 10,
        "site_shortcut": [0.1, 0.3, 0.2, 0.3, 0.15, 0.35], "kappa_all": [0.5, 0.4, 0.6, 0.5, 0.55, 0.45],
    })  # fmt: skip
    summary = summarise(results).set_index("group")
    assert summary.loc["dash", "site_shortcut"] == pytest.approx(0.15)
    assert summary.loc["dash", "site_shortcut_low"] < 0.15 < summary.loc["dash", "site_shortcut_high"]
    assert math.isnan(summary.loc["dash", "kappa_common"])
    paired = paired_losses(results).set_index("metric")
    assert paired.loc["site_shortcut", "dash_minus_infonce"] == pytest.approx(-0.1667, abs=1e-3)
    assert paired.loc["site_shortcut", "dash_lower_in"] == 3
    assert paired.loc["kappa_all", "high"] > paired.loc["kappa_all", "dash_minus_infonce"] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def exp_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    return synthetic_store(root, 8, seed=5, hours=2.0, split_seed=1)[1]


def test_losses_experiment_end_to_end_and_resume(exp_store, tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "losses", "--data", str(exp_store), "--out", str(out), "--seeds", "0",
            "--preset", "tiny", "--epochs", "1", "--batches-per-epoch", "2", "--batch-size", "4",
            "--per-night", "20", "--spectral-bands", "0"]  # fmt: skip
    assert main(args) == 0
    results = pd.read_csv(out / "results.csv")
    assert list(results["run"]) == ["dash_s0", "infonce_s0"]
    for col in ("kappa_all", "kappa_common", "kappa_loso", "site_shortcut", "retrieval_lift"):
        assert results[col].notna().all(), col
    assert results["kappa_all"].between(-1, 1).all()
    assert (results["retrieval_lift"] > 0).all()
    assert (out / "figure.html").stat().st_size > 10_000
    md = (out / "summary.md").read_text()
    assert "| dash | 1 |" in md and "DASH minus InfoNCE, paired by seed" in md
    assert (out / "figure.png").read_bytes()[:4] == b"\x89PNG"
    assert set(pd.read_csv(out / "paired.csv")["metric"]) >= {"site_shortcut", "kappa_all"}
    loaded = load_experiment(out)
    assert loaded["kind"] == "losses" and list(loaded["summary"]["group"]) == ["dash", "infonce"]
    assert loaded["meta"]["cohort"]["nights"] == 8 and len(loaded["meta"]["cohort"]["sites"]) >= 2
    assert len(summary_figure("losses", loaded["summary"]).data) == 4  # one trace per panel
    with pytest.raises(S2VError, match="not a finished experiment"):
        load_experiment(out / "runs")
    cfg = json.loads((out / "runs" / "infonce_s0" / "done.json").read_text())["train_config"]
    assert cfg["loss"] == "infonce" and cfg["seed"] == 0 and cfg["pair_weighting"] == "balanced"
    # a second call reuses finished runs: nothing is retrained, the scores are the same
    stamp = (out / "runs" / "dash_s0" / "best" / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert (out / "runs" / "dash_s0" / "best" / "model.safetensors").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)
    # scores from an older evaluation version are recomputed, without retraining
    eval_path = out / "runs" / "dash_s0" / "eval.json"
    old = json.loads(eval_path.read_text())
    eval_path.write_text(json.dumps({k: v for k, v in old.items() if k not in ("eval_version", "kappa_loso")}))
    assert main(args) == 0
    assert json.loads(eval_path.read_text())["kappa_loso"] == pytest.approx(old["kappa_loso"])
    assert (out / "runs" / "dash_s0" / "best" / "model.safetensors").stat().st_mtime_ns == stamp
    # --no-train summarises what is finished and trains nothing
    more = args + ["--seeds", "0,1", "--no-train"]  # the last --seeds wins
    assert main(more) == 0
    assert "infonce_s1: not finished, left out" in capsys.readouterr().out
    assert not (out / "runs" / "dash_s1").exists()
    assert list(pd.read_csv(out / "results.csv")["run"]) == ["dash_s0", "infonce_s0"]
    # other settings in the same folder are refused rather than mixed with the finished runs
    capsys.readouterr()
    assert main([a if a != "2" else "3" for a in args]) == 2  # --batches-per-epoch 3
    assert "trained with other settings (batches_per_epoch 2 -> 3)" in capsys.readouterr().err


def test_scaling_experiment_scores_the_anchor(exp_store, tmp_path):
    out = tmp_path / "scal"
    args = ["experiment", "scaling", "--data", str(exp_store), "--out", str(out), "--seeds", "0",
            "--presets", "tiny", "--counts", "2", "--order", "resp,ecg,eeg", "--epochs", "1",
            "--batches-per-epoch", "1", "--batch-size", "4", "--per-night", "20",
            "--spectral-bands", "0"]  # fmt: skip
    assert main(args) == 0
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["modalities"] == "ecg,resp" and row["n_modalities"] == 2  # canonical order
    for col in ("kappa_all", "kappa_anchor", "kappa_common"):  # resp: the one modality all nights have
        assert -1 <= row[col] <= 1, col
    assert row["site_modalities"] == "resp"
    assert (out / "figure.png").is_file()


def test_experiment_cli_refuses_bad_options(exp_store, tmp_path, capsys):
    base = ["experiment", "sweep", "--data", str(exp_store), "--out", str(tmp_path / "x")]
    assert main(base + ["--sweep", "tau=1"]) == 2
    assert "expected NAME=V1,V2" in capsys.readouterr().err
    assert main(base + ["--epochs", "0"]) == 2
    assert main(base + ["--preset-lr", "tiny=fast"]) == 2
    assert main(["experiment", "losses", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "y")]) == 2


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "sleep2vec-small" / "experiments"


@pytest.mark.parametrize("kind", ["losses", "sweep", "scaling"])
def test_shipped_experiment_tables_are_consistent(kind):
    """The shipped summaries are what summarise() gives from the shipped per-run results."""
    exp = load_experiment(SHIPPED / kind)
    assert exp["kind"] == kind and exp["results"] is not None
    again = summarise(exp["results"])
    pd.testing.assert_frame_equal(again, exp["summary"], check_dtype=False, atol=1e-9)
    assert (exp["summary"]["n_seeds"] >= 2).all()  # every group has an interval over seeds
    if kind == "losses":
        pd.testing.assert_frame_equal(paired_losses(exp["results"]), exp["paired"], check_dtype=False, atol=1e-9)
    assert (SHIPPED / kind / "summary.md").read_text() == summary_markdown(kind, exp["summary"], exp["paired"])
