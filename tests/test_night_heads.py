"""Night-level heads (age, sex, AHI, binary outcomes), AHI from scored events, ``s2v night-heads``."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from s2v_core.cli.main import main
from s2v_core.cohort.prepare import prepare_store
from s2v_core.errors import S2VError
from s2v_core.model import HeadConfig, Sleep2VecClassifier, get_preset
from s2v_core.model.checkpoint import save_checkpoint
from s2v_core.night_heads import (
    AHIResult,
    NightHead,
    NightHeadError,
    ahi_from_events,
    ahi_from_files,
    binary_values,
    cohort_ahi,
    cross_validate,
    fit_head,
    join_metadata,
    parse_task,
    severity_class,
    task_targets,
)
from s2v_core.synth.cohort import generate_cohort
from tests.conftest import write_tiny_classifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """10 quarter-hour nights of 6 subjects (3 M, 3 F) from all five synthetic sites."""
    root = tmp_path_factory.mktemp("nh")
    meta = generate_cohort(10, root / "cohort", seed=3, hours=0.25)
    prepare_store(root / "cohort", root / "store", progress=False)
    return root, meta


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_classifier(tmp_path_factory.mktemp("clf") / "best", spread_gates=False)


def _frame(n_subjects=30, nights_per=2, dim=8, seed=0, signal=True, binary=False):
    """Embedding frame whose first feature carries the subject's target (plus noise)."""
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    for s in range(n_subjects):
        target = float(rng.integers(0, 2)) if binary else float(rng.uniform(20, 80))
        for k in range(nights_per):
            x = rng.normal(size=dim)
            if signal:
                x[0] = (target - (0.5 if binary else 50.0)) * (4.0 if binary else 0.1)
                x[0] += rng.normal(scale=0.3)
            rows.append(
                {
                    "night": f"s{s}_n{k}",
                    "subject": f"s{s}",
                    "site": "A" if s % 2 else "B",
                    "age": target,
                    "flag": int(target) if binary else None,
                }
            )
            emb.append(x)
    frame = pd.DataFrame(rows)
    e = pd.DataFrame(np.array(emb), columns=[f"emb_{i}" for i in range(dim)])
    return pd.concat([frame, e], axis=1)


# --- tasks and targets ----------------------------------------------------------------------
def test_parse_task():
    assert parse_task("AGE").kind == "regression" and parse_task("sex").kind == "binary"
    ahi = parse_task("ahi")
    assert ahi.log_target and not parse_task("age").log_target
    out = parse_task("outcome:Hypertension")
    assert (out.kind, out.column, out.label) == ("binary", "Hypertension", "Hypertension")
    with pytest.raises(NightHeadError, match="allowed: age, sex, ahi, outcome:COLUMN"):
        parse_task("bmi")
    with pytest.raises(NightHeadError, match="needs a column name"):
        parse_task("outcome:")


def test_binary_values_accepts_common_codings_and_refuses_others():
    got = binary_values(["1", "0", "Yes", "no", "TRUE", "false", "y", "N", "", None, True], "c")
    np.testing.assert_array_equal(got[:8], [1, 0, 1, 0, 1, 0, 1, 0])
    assert np.isnan(got[8]) and np.isnan(got[9]) and got[10] == 1
    with pytest.raises(NightHeadError, match=r"column 'bmi' is not binary: it holds '2', '31.5'"):
        binary_values(["1", "2", "31.5", "0"], "bmi")


def test_task_targets():
    frame = pd.DataFrame({"sex": ["M", "F", None, "m"], "age": [40, None, "", 51.5]})
    np.testing.assert_array_equal(task_targets(frame, parse_task("sex"))[[0, 1, 3]], [1, 0, 1])
    assert np.isnan(task_targets(frame, parse_task("sex"))[2])
    age = task_targets(frame, parse_task("age"))
    assert age[0] == 40 and np.isnan(age[1]) and np.isnan(age[2]) and age[3] == 51.5
    with pytest.raises(NightHeadError, match="no 'ahi' column.*--metadata"):
        task_targets(frame, parse_task("ahi"))
    with pytest.raises(NightHeadError, match="sex must be M or F"):
        task_targets(pd.DataFrame({"sex": ["M", "other"]}), parse_task("sex"))
    with pytest.raises(NightHeadError, match="must be numeric, found 'old'"):
        task_targets(pd.DataFrame({"age": ["40", "old"]}), parse_task("age"))


def test_join_metadata_by_night_and_by_subject(tmp_path):
    frame = pd.DataFrame({"night": ["a1", "a2", "b1"], "subject": ["a", "a", "b"], "age": [1.0, 2.0, 3.0]})
    p = tmp_path / "m.csv"
    p.write_text("record,htn,age\na1,yes,10\nb1,no,\n")
    out = join_metadata(frame, p)
    assert list(out["htn"].fillna("?")) == ["yes", "?", "no"]
    assert list(out["age"]) == [10.0, 2.0, 3.0]  # a blank cell keeps the known value
    p.write_text("participant,htn\na,1\nb,0\n")
    assert list(join_metadata(frame, p)["htn"]) == ["1", "1", "0"]
    p.write_text("x,htn\na,1\n")
    with pytest.raises(S2VError, match="no id column"):
        join_metadata(frame, p)


# --- cross-validation -----------------------------------------------------------------------
def test_cross_validation_is_subject_level_and_beats_the_baseline_when_there_is_signal():
    rep = cross_validate(_frame(), parse_task("age"), n_splits=5)
    folds = rep.predictions.groupby("subject")["fold"].nunique()
    assert (folds == 1).all()  # every subject's nights sit in one fold
    assert rep.n_nights == 60 and rep.n_subjects == 30 and rep.n_folds == 5
    mae = rep.metrics["mae"]
    assert mae["head"]["mean"] < 0.3 * mae["baseline"]["mean"]
    assert rep.metrics["pearson_r"]["head"]["pooled"] > 0.9
    assert rep.metrics["pearson_r"]["baseline"]["mean"] is None  # a constant has no correlation
    lo, hi = mae["head"]["ci95"]
    assert lo <= mae["head"]["mean"] <= hi
    assert "site_only" in mae  # two sites: the shortcut baseline is reported


def test_cross_validation_without_signal_stays_near_chance():
    rep = cross_validate(_frame(signal=False, binary=True, seed=4), parse_task("outcome:flag"))
    assert abs(rep.metrics["auroc"]["head"]["pooled"] - 0.5) < 0.2
    assert rep.metrics["balanced_accuracy"]["baseline"]["mean"] == 0.5


def test_binary_cross_validation_with_signal():
    rep = cross_validate(_frame(binary=True, seed=2), parse_task("outcome:flag"), n_splits=4)
    assert rep.metrics["auroc"]["head"]["pooled"] > 0.95
    assert rep.metrics["balanced_accuracy"]["head"]["mean"] > 0.85
    per_fold = rep.predictions.groupby("fold")["target"].nunique()
    assert (per_fold == 2).all()  # stratified: both classes in each fold


def test_ahi_task_reports_events_per_hour_and_severity():
    frame = _frame(seed=5)
    frame["ahi"] = np.expm1(frame["age"] / 15.0)  # 2.8 .. 206 events/h, tied to emb_0
    rep = cross_validate(frame, parse_task("ahi"))
    m = rep.metrics
    assert set(m) == {"mae", "pearson_r", "spearman_rho", "severity_accuracy", "severity_kappa"}
    assert m["spearman_rho"]["head"]["pooled"] > 0.9 and m["severity_kappa"]["head"]["pooled"] > 0.6
    assert (rep.predictions["head"] >= 0).all()


def test_cross_validation_refuses_what_cannot_be_evaluated():
    frame = _frame(binary=True)
    frame["flag"] = 1
    with pytest.raises(NightHeadError, match="0 subject.*negative"):
        cross_validate(frame, parse_task("outcome:flag"))
    with pytest.raises(NightHeadError, match="not binary"):
        cross_validate(_frame(), parse_task("outcome:age"))


def test_head_save_load_round_trip(tmp_path):
    frame = _frame()
    x = frame[[c for c in frame if c.startswith("emb_")]].to_numpy()
    head = fit_head(x, frame["age"].to_numpy(), frame["subject"].to_numpy(), parse_task("age"))
    head.info = {"pooling": "mean", "backbone": {"model_id": "m-1"}}
    head.save(tmp_path / "h")
    again = NightHead.load(tmp_path / "h")
    np.testing.assert_allclose(again.predict(x), head.predict(x))
    assert again.task == head.task and again.info["backbone"]["model_id"] == "m-1"
    with pytest.raises(NightHeadError, match="expects 8 features"):
        again.predict(x[:, :3])
    (tmp_path / "h" / "evil.pkl").write_bytes(b"x")
    with pytest.raises(NightHeadError, match="refusing pickled"):
        NightHead.load(tmp_path / "h")
    with pytest.raises(NightHeadError, match="not a night head"):
        NightHead.load(tmp_path)


# --- AHI from scored events -----------------------------------------------------------------
def test_ahi_from_events_counts_sleep_events_only():
    stages = np.array([0, 2, 2, 2, 4, 4, 0, -1] * 15)  # 120 epochs, 75 asleep = 0.625 h
    events = pd.DataFrame(
        {
            "onset_s": [31.0, 65.0, 125.0, 10.0, 190.0, 215.0, 3700.0],
            "kind": ["apnea", "hypopnea", "apnea", "apnea", "desaturation", "hypopnea", "apnea"],
        }
    )  # epochs 1, 2, 4 asleep; 0 and 7 not; the desaturation is ignored; 3700 s is past the end
    r = ahi_from_events(stages, events)
    assert (r.n_apneas, r.n_hypopneas, r.n_outside_sleep) == (2, 1, 3)
    assert r.sleep_hours == pytest.approx(0.625) and r.ahi == pytest.approx(3 / 0.625)
    assert r.severity == "normal"  # 4.8 events/h
    assert ahi_from_events(np.zeros(10), events).ahi is None


def test_severity_classes():
    np.testing.assert_array_equal(severity_class([0, 4.99, 5, 14.9, 15, 29.9, 30, 120]), [0, 0, 1, 1, 2, 2, 3, 3])
    assert AHIResult(30.0, 1, 0, 0, 1.0).severity == "severe"


@pytest.mark.realdata
def test_ahi_of_slpdb_record_matches_a_hand_count():
    """slp01a.st: 240 epochs; 4:66 3:47 2:105 1:1 R:13 (232 asleep), W:7, MT:1.

    Its event tokens are H x23 and HA x15 (plus leg movements L/LA, not counted); one HA sits
    in an epoch scored W, so 37 hypopneas in 232 epochs = 1.933 h -> AHI 19.14.
    """
    st = shared_path("slpdb", "slp01a.st")
    r = ahi_from_files(st)
    assert (r.n_apneas, r.n_hypopneas, r.n_outside_sleep) == (0, 37, 1)
    assert r.sleep_hours == pytest.approx(232 * 30 / 3600)
    assert r.ahi == pytest.approx(37 / (232 * 30 / 3600)) and r.severity == "moderate"
    import wfdb  # an independent count straight from the aux notes

    ann = wfdb.rdann(str(st.with_suffix("")), "st")
    notes = [(n or "").replace("\x00", "").split() for n in ann.aux_note]
    resp = sum(t in ("H", "HA", "OA", "X", "CA", "CAA") for n in notes if n and n[0] in "1234R" for t in n[1:])
    assert resp == 37
    assert ahi_from_files(st.with_suffix(".ecg")).ahi == r.ahi  # the record's other files work


def test_cohort_ahi_matches_the_synthetic_ground_truth(cohort):
    root, meta = cohort
    table = cohort_ahi(root / "cohort")
    known = table[table["ahi"].notna()]
    sites = dict(zip(meta["night"], meta["site"], strict=True))
    assert {sites[n] for n in known["night"]} >= {"us_hospital", "home_test", "eu_clinic"}
    np.testing.assert_allclose(known["ahi"], known["ahi_table"], atol=0.006)
    unknown = table[table["ahi"].isna()]
    assert "wearable" in {sites[n] for n in unknown["night"]}
    assert unknown["error"].str.contains("no scored events").all()


def test_ahi_from_csv_hypnogram_needs_an_event_file(cohort):
    root, meta = cohort
    row = meta[meta["site"] == "eu_clinic"].iloc[0]
    with pytest.raises(NightHeadError, match="holds no scored events"):
        ahi_from_files(root / "cohort" / row["hypnogram_file"])
    r = ahi_from_files(root / "cohort" / row["hypnogram_file"], root / "cohort" / row["psg_file"])
    assert r.ahi == pytest.approx(row["ahi"], abs=0.006)


# --- command line ---------------------------------------------------------------------------
def test_cli_train_predict_and_outcome(cohort, model_dir, tmp_path, capsys):
    root, meta = cohort
    store = root / "store"
    cache = tmp_path / "emb.parquet"
    argv = ["night-heads", "train", "--data", str(store), "--model", str(model_dir)]
    assert main([*argv, "--task", "age", "--out", str(tmp_path / "age"), "--embeddings", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "task age: 10 nights, 6 subjects" in out and "trivial baseline" in out
    assert "mae (years)" in out and "site only" in out
    cfg = json.loads((tmp_path / "age" / "head.json").read_text())
    assert cfg["kind"] == "night_head" and cfg["cv"]["metrics"]["mae"]["head"]["mean"] > 0
    assert cache.is_file() and len(pd.read_csv(tmp_path / "age" / "cv_predictions.csv")) == 10

    assert main([*argv, "--task", "sex", "--out", str(tmp_path / "sex"), "--embeddings", str(cache), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after the "reusing" line
    assert doc["task"] == "sex" and doc["n_folds"] == 3 and "auroc" in doc["metrics"]

    pred_csv = tmp_path / "pred.csv"
    assert main(["night-heads", "predict", "--head", str(tmp_path / "age"), str(store), "--out", str(pred_csv)]) == 0
    pred = pd.read_csv(pred_csv)
    assert len(pred) == 10 and pred["age_pred"].notna().all()
    one = root / "cohort" / meta["psg_file"].iloc[0]
    assert main(["night-heads", "predict", "--head", str(tmp_path / "sex"), str(one), "--out", str(pred_csv)]) == 0
    pred = pd.read_csv(pred_csv)
    assert len(pred) == 1 and pred["sex_pred"].iloc[0] in ("M", "F") and 0 <= pred["p_male"].iloc[0] <= 1

    table = tmp_path / "outcome.csv"
    flags = {"sub-001": "yes", "sub-002": "no", "sub-003": "yes", "sub-004": "no", "sub-005": "no", "sub-006": "yes"}
    table.write_text("subject,htn,bmi\n" + "".join(f"{s},{v},2{i}.5\n" for i, (s, v) in enumerate(flags.items())))
    common = [*argv, "--embeddings", str(cache), "--metadata", str(table)]
    assert main([*common, "--task", "outcome:htn", "--out", str(tmp_path / "htn")]) == 0
    assert "task outcome:htn: 10 nights, 6 subjects" in capsys.readouterr().out
    assert main([*common, "--task", "outcome:bmi", "--out", str(tmp_path / "bmi")]) == 2
    assert "column 'bmi' is not binary" in capsys.readouterr().err


def test_cli_errors_are_one_line(cohort, model_dir, tmp_path, capsys):
    root, _ = cohort
    assert main(["night-heads", "train", "--data", str(tmp_path), "--task", "age", "--out", str(tmp_path / "o")]) == 2
    assert "not a cohort store" in capsys.readouterr().err
    assert main(["night-heads", "train", "--data", str(root / "store"), "--task", "bmi", "--out", str(tmp_path)]) == 2
    assert "unknown task 'bmi'" in capsys.readouterr().err
    assert main(["night-heads", "predict", "--head", str(tmp_path), str(root / "store"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "not a night head" in capsys.readouterr().err


def test_cli_predict_refuses_another_backbone(cohort, model_dir, tmp_path, capsys):
    root, _ = cohort
    store = root / "store"
    base = ["night-heads", "train", "--data", str(store), "--model", str(model_dir), "--task", "age"]
    assert main([*base, "--out", str(tmp_path / "h"), "--quiet"]) == 0
    other = tmp_path / "other"
    cfg = get_preset("tiny")
    save_checkpoint(other, Sleep2VecClassifier(cfg, HeadConfig(), seed=9), cfg, extra={"note": "x"})
    capsys.readouterr()
    argv = ["night-heads", "predict", "--head", str(tmp_path / "h"), str(store), "--out", str(tmp_path / "p.csv")]
    assert main([*argv, "--model", str(other)]) == 2
    assert "trained on embeddings of" in capsys.readouterr().err


def test_cli_ahi(cohort, tmp_path, capsys):
    root, _ = cohort
    out = tmp_path / "ahi.csv"
    assert main(["night-heads", "ahi", str(root / "cohort"), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 10 and "ahi_table" in table
    assert main(["night-heads", "ahi", str(tmp_path / "missing.xml")]) == 2
    assert "no such hypnogram file" in capsys.readouterr().err
    assert not math.isnan(table["ahi"].max())
