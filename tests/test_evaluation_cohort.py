"""``s2v evaluate``: cohort evaluation over a store, a folder of recordings and WFDB records."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import shared_path, synthetic_store

from s2v_core import cli
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.evaluation import cohort as ev
from s2v_core.evaluation import staging_metrics
from s2v_core.inference.predict import load_classifier, predict_night
from tests.conftest import write_tiny_classifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """4 synthetic half-hour nights (mixed sites) as files, and the same nights as a store."""
    return synthetic_store(tmp_path_factory.mktemp("ev"), 4, split_seed=5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_classifier(tmp_path_factory.mktemp("clf") / "best", seed=3, extra={"class_names": ["W", "N1", "N2", "N3", "REM"]})


@pytest.fixture(scope="module")
def model(model_dir):
    return load_classifier(model_dir)[0]


@pytest.fixture(scope="module")
def store_result(cohort, model_dir):
    return ev.evaluate_cohort(cohort[1], model_dir, n_boot=200)


def write_wfdb_record(folder, name, stages, *, fs=250, age=44):
    """A header-only WFDB record: ``.ecg`` beats (HR swinging with the stage) and ``.st`` stages."""
    n = len(stages)
    rng = np.random.default_rng(len(name))
    times, t = [], 0.5
    rr_of = {"W": 0.75, "1": 0.9, "2": 1.0, "3": 1.1, "R": 0.85, "MT": 0.8}
    while t < n * 30 - 0.5:
        times.append(t)
        t += rr_of[stages[min(int(t // 30), n - 1)]] + rng.normal(0, 0.02)
    samples = np.round(np.asarray(times) * fs).astype(np.int64)
    lines = [
        f"{name} 1 {fs} {n * 30 * fs} 23:07:00 19/01/1989",
        f"{name}.dat 212 200/mV 12 0 0 0 0 ECG",
    ]
    (folder / f"{name}.hea").write_text("\n".join(lines + [f"# {age} M 89 32-01-89"]) + "\n")
    wfdb.wrann(name, "ecg", samples, symbol=["N"] * len(samples), fs=fs, write_dir=str(folder))
    st = np.arange(n, dtype=np.int64) * 30 * fs
    st[0] = 1  # slpdb puts the first stage at sample 1
    wfdb.wrann(
        name, "st", st, symbol=['"'] * n, aux_note=list(stages), fs=fs, write_dir=str(folder)
    )


# --- store ------------------------------------------------------------------------------------
def test_store_metrics_match_an_independent_computation(store_result, cohort, model):
    res = store_result
    store = CohortStore(cohort[1])
    assert sorted(res.per_night["night"]) == sorted(store.nights())
    refs, preds = [], []
    for n in store.nights():
        night = store.night(n)
        refs.append(night.stages)
        preds.append(predict_night(model, night).stages)
        row = res.per_night.set_index("night").loc[n]
        assert row["kappa"] == pytest.approx(staging_metrics(night.stages, preds[-1]).kappa)
        assert row["modalities"] == "+".join(night.modalities)
    main = res.pooled.iloc[0]
    want = staging_metrics(np.concatenate(refs), np.concatenate(preds))
    assert main["subset"] == "all" and main["n_nights"] == len(refs)
    assert main["kappa"] == pytest.approx(want.kappa)
    assert main["accuracy"] == pytest.approx(want.accuracy)
    assert main["f1_N2"] == pytest.approx(want.per_stage_f1["N2"], nan_ok=True)
    assert main["kappa_lo"] <= main["kappa"] <= main["kappa_hi"]
    conf = res.confusion[res.confusion["subset"] == "all"]
    assert conf["count"].sum() == want.n_epochs and len(conf) == 25


def test_sleep_statistics_and_predictions_cover_every_night(store_result):
    res = store_result
    nights = set(res.per_night["night"])
    assert set(res.sleep_stats["night"]) == nights == set(res.predictions["night"])
    tst = res.sleep_stats[res.sleep_stats["statistic"] == "TST_min"]
    assert np.allclose(tst["difference"], tst["predicted"] - tst["reference"])
    probs = res.predictions[[f"p_{c}" for c in ("W", "N1", "N2", "N3", "REM")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    summary = res.sleep_stats_summary()
    assert summary.loc["TST_min", "n_nights"] == len(nights)


def test_three_classes_merge_probabilities_and_drop_undefined_statistics(cohort, model_dir, model):
    res = ev.evaluate_cohort(cohort[1], model_dir, n_classes=3, n_boot=50)
    assert res.info["class_names"] == ["W", "NREM", "REM"]
    assert {"f1_W", "f1_NREM", "f1_REM"} <= set(res.pooled.columns)
    assert "N1_min" not in set(res.sleep_stats["statistic"])
    assert "REM_min" in set(res.sleep_stats["statistic"])
    night_id = res.per_night["night"].iloc[0]
    night = CohortStore(cohort[1]).night(night_id)
    pred = predict_night(model, night)
    want = staging_metrics(night.stages, pred.merged_as_five(3), n_classes=3)
    assert res.per_night.set_index("night").loc[night_id, "kappa"] == pytest.approx(want.kappa)
    first = res.predictions[res.predictions["night"] == night_id]
    assert list(first["predicted"]) == list(np.array(["W", "NREM", "REM"])[pred.merged(3)[0]])


def test_a_subset_skips_nights_without_it(cohort, model_dir):
    store = CohortStore(cohort[1])
    with_eeg = [n for n in store.nights() if "eeg" in store.night(n).modalities]
    res = ev.evaluate_cohort(cohort[1], model_dir, modalities=("eeg",), n_boot=20)
    assert sorted(res.per_night["night"]) == sorted(with_eeg)
    assert set(res.per_night["subset"]) == {"eeg"}
    assert {s["night"] for s in res.skipped} == set(store.nights()) - set(with_eeg)
    assert all("lacks eeg" in s["reason"] for s in res.skipped)


def test_every_subset_is_predicted_once_per_night(cohort, model_dir, monkeypatch):
    calls = []
    real = ev.predict_subsets

    def counting(model, night, subsets, **kw):
        calls.append((night.meta.night_id, tuple(subsets)))
        return real(model, night, subsets, **kw)

    monkeypatch.setattr(ev, "predict_subsets", counting)
    mods = ("ibi", "resp", "effort")  # every synthetic night has these
    res = ev.evaluate_cohort(
        cohort[1], model_dir, modalities=mods, every_subset=True, n_classes=4, n_boot=20
    )
    nights = res.per_night["night"].unique()
    # one pass per night (each modality encoded once), asking for the 7 distinct subsets
    assert sorted(c[0] for c in calls) == sorted(nights)
    for _, subsets in calls:
        assert len(subsets) == len(set(subsets)) == 7
    assert len(res.per_night) == 7 * len(nights)
    assert list(res.pooled["subset"]) == [
        "ibi+resp+effort", "effort", "ibi", "resp", "ibi+effort", "ibi+resp", "resp+effort",
    ]  # fmt: skip
    assert (res.pooled["n_nights"] == len(nights)).all()
    assert res.importance is not None and set(res.importance.index) == set(mods)
    ibi = res.pooled.set_index("subset").loc["ibi"]
    effort = res.pooled.set_index("subset").loc["effort"]
    with_ibi = res.importance.loc["ibi", "mean_with"]
    assert with_ibi == pytest.approx(
        res.pooled[res.pooled["subset"].str.contains("ibi")]["kappa"].mean()
    )
    assert ibi["n_epochs"] == effort["n_epochs"]


def test_one_night_has_a_degenerate_interval(cohort, model_dir, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(cohort[1], copy)
    manifest = pd.read_csv(copy / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["split"] = ["test"] + ["train"] * (len(manifest) - 1)
    manifest.to_csv(copy / "manifest.csv", index=False)
    res = ev.evaluate_cohort(copy, model_dir, split="test", n_boot=50)
    row = res.pooled.iloc[0]
    assert (
        row["n_nights"] == 1 and row["kappa_lo"] == pytest.approx(row["kappa"]) == row["kappa_hi"]
    )


# --- folders -----------------------------------------------------------------------------------
def test_a_folder_of_recordings_gives_the_store_figures(cohort, store_result, model_dir):
    res = ev.evaluate_cohort(cohort[0], model_dir, n_boot=200)
    a = res.per_night.set_index("night").sort_index()
    b = store_result.per_night.set_index("night").sort_index()
    assert list(a.index) == list(b.index)
    assert np.allclose(a["kappa"], b["kappa"]) and (a["subject"] == b["subject"]).all()
    assert res.pooled.iloc[0]["kappa"] == pytest.approx(store_result.pooled.iloc[0]["kappa"])


def test_a_wfdb_folder_evaluates_ibi_by_record(tmp_path, model_dir):
    write_wfdb_record(tmp_path, "rec01a", ["W"] * 6 + ["1", "2", "2", "3", "3", "2", "R", "R"] * 3)
    write_wfdb_record(tmp_path, "rec01b", ["W"] * 4 + ["2", "2", "3", "R", "MT", "2"] * 4)
    res = ev.evaluate_cohort(tmp_path, model_dir, n_classes=3, n_boot=50)
    assert list(res.per_night["night"]) == ["rec01a", "rec01b"]
    assert set(res.per_night["modalities"]) == {"ibi"}
    assert set(res.per_night["subject"]) == {"rec01"}
    assert res.per_night["n_excluded"].iloc[1] >= 4  # the MT epochs are unscored
    assert res.per_night["n_epochs"].sum() == res.pooled.iloc[0]["n_epochs"]


def test_slpdb_folder_with_the_shipped_model(tmp_path):
    src = shared_path("slpdb")
    for rec in ("slp01a", "slp01b"):
        for ext in ("hea", "ecg", "st"):
            (tmp_path / f"{rec}.{ext}").symlink_to(src / f"{rec}.{ext}")
    res = ev.evaluate_cohort(tmp_path, None, n_classes=3, n_boot=100)
    assert res.info["model"].startswith("classifier-")
    assert list(res.per_night["subject"]) == ["slp01", "slp01"]
    assert res.pooled.iloc[0]["n_epochs"] == 599  # one of 600 epochs is unscored
    assert -1 <= res.pooled.iloc[0]["kappa"] <= 1


# --- command line ------------------------------------------------------------------------------
def test_cli_writes_tables_and_prints_the_pooled_row(cohort, model_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    code = cli.main(
        ["evaluate", str(cohort[1]), "--model", str(model_dir), "--classes", "3", "--out", str(out),
         "--n-boot", "50", "--quiet", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "all " in text and "F1 NREM" in text and "wrote" in text
    for name in ("per_night", "pooled", "confusion", "sleep_stats", "predictions"):
        assert (out / f"{name}.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_classes"] == 3 and summary["pooled"][0]["subset"] == "all"
    conf = np.array(summary["pooled"][0]["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == summary["pooled"][0]["n_epochs"]
    assert math.isfinite(summary["sleep_statistics"]["TST_min"]["bias"])


def test_cli_json_and_all_subsets(cohort, model_dir, tmp_path, capsys):
    code = cli.main(
        ["evaluate", str(cohort[1]), "--model", str(model_dir), "--modalities", "ibi,spo2",
         "--all-subsets", "--out", str(tmp_path / "o"), "--json", "--n-boot", "20"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p["subset"] for p in summary["pooled"]] == ["ibi+spo2", "ibi", "spo2"]
    assert set(summary["modality_importance"]) == {"ibi", "spo2"}
    assert (tmp_path / "o" / "importance.csv").is_file()
    wearable = [p for p in summary["pooled"] if p["subset"] == "ibi"][0]
    assert wearable["n_nights"] == summary["pooled"][0]["n_nights"] + 1  # it lacks spo2
    assert [s["reason"][:18] for s in summary["skipped"]] == ["main subset only: "]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "{tmp}/missing", "--out", "{tmp}/o"], "no such store, folder or recording"),
        (["evaluate", "{tmp}/file.edf", "--out", "{tmp}/o"], "use s2v predict"),
        (["evaluate", "{tmp}/empty", "--out", "{tmp}/o"], "no recording found"),
        (["evaluate", "{tmp}", "--out", "{tmp}/o"], "file.edf: not an EDF/BDF file"),
        (
            ["evaluate", "{tmp}", "--split", "test", "--out", "{tmp}/o"],
            "--split needs a cohort store",
        ),
        (
            ["evaluate", "{store}", "--modalities", "eeg,foo", "--out", "{tmp}/o"],
            "unknown modality 'foo'",
        ),
        (
            ["evaluate", "{store}", "--max-subsets", "0", "--out", "{tmp}/o"],
            "max_subsets must be >= 1",
        ),
    ],
)
def test_cli_errors_are_one_clear_line(argv, message, cohort, model_dir, tmp_path, capsys):
    (tmp_path / "file.edf").write_bytes(b"0" * 10)
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path, store=cohort[1]) for a in argv] + ["--model", str(model_dir)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar, when nights were read
    assert last.startswith("s2v evaluate: error: ") and message in last and "Traceback" not in err


def test_nights_without_a_hypnogram_are_reported(tmp_path, model_dir):
    write_wfdb_record(tmp_path, "rec02", ["W", "2", "2", "R"] * 3)
    (tmp_path / "rec02.st").unlink()
    with pytest.raises(S2VError, match="no night could be evaluated.*no scored epoch"):
        ev.evaluate_cohort(tmp_path, model_dir)
