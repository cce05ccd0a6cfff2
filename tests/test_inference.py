"""Whole-night inference (any modality subset), embeddings, and ``s2v predict`` / ``s2v embed``."""

import dataclasses
import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared_path

from s2v_core import shipped
from s2v_core.cli.main import main
from s2v_core.errors import S2VError
from s2v_core.evaluation import staging_metrics
from s2v_core.inference.embed import embed_night
from s2v_core.inference.predict import load_classifier, model_id, night_windows, predict_night
from s2v_core.model import Sleep2Vec, Sleep2VecClassifier, get_preset
from s2v_core.model.checkpoint import save_checkpoint
from s2v_core.recording.loading import load_night, load_wfdb_night
from s2v_core.shipped import shipped_night
from s2v_core.stages import merge_stages
from tests.conftest import write_tiny_classifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def night():
    psg, hyp = shipped_night()
    return load_night(psg, hyp)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_classifier(tmp_path_factory.mktemp("clf") / "best", vary_epoch_gates=True,
                                 extra={"class_names": ["W", "N1", "N2", "N3", "REM"]})


@pytest.fixture(scope="module")
def model(model_dir):
    m, _, extra = load_classifier(model_dir)
    assert not m.training and extra["class_names"][-1] == "REM"
    return m


def run_cli(argv):
    """Run an ``s2v`` command as the console script does, but let errors raise."""
    return main(["--debug", *map(str, argv)])


# --- predict_night -------------------------------------------------------------------------
def test_full_night_prediction_shapes_and_normalisation(night, model):
    pred = predict_night(model, night, name="m1")
    n = night.n_epochs
    assert n == 120 and pred.model_id == "m1"
    assert pred.stages.shape == (n,) and pred.stages.dtype == np.int8
    assert pred.probabilities.shape == (n, 5) and pred.probabilities.dtype == np.float32
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(pred.stages, pred.probabilities.argmax(axis=1))
    assert pred.modalities == night.modalities and len(pred.modalities) == 9
    assert pred.epoch_gates.shape == (n, 9) and pred.epoch_gates.dtype == np.float32
    np.testing.assert_allclose(pred.epoch_gates.sum(axis=1), 1, atol=1e-5)
    assert pred.epoch_gates.std(axis=0).max() > 1e-3  # the per-epoch gate varies over the night
    # global gates: softmax of the learned logits linspace(-1, 1, 9)
    expected = torch.softmax(torch.linspace(-1, 1, 9), 0).numpy()
    np.testing.assert_allclose(list(pred.global_gates.values()), expected, rtol=1e-5)
    np.testing.assert_array_equal(pred.coverage, 9)


def test_to_frame_columns_and_clock_time(night, model):
    pred = predict_night(model, night, ("eeg", "ecg"))
    frame = pred.to_frame(night.start_time)
    assert list(frame.columns) == [
        "epoch",
        "onset_s",
        "clock_time",
        "stage",
        "label",
        "confidence",
        "p_W",
        "p_N1",
        "p_N2",
        "p_N3",
        "p_REM",
        "gate_eeg",
        "gate_ecg",
        "n_valid_modalities",
    ]
    assert len(frame) == night.n_epochs and frame["onset_s"].iloc[3] == 90.0
    assert frame["clock_time"].iloc[2] == (night.start_time + timedelta(seconds=60)).isoformat()
    assert set(frame["label"]) <= {"W", "N1", "N2", "N3", "REM"}
    assert "clock_time" not in pred.to_frame().columns


def test_subsets_change_prediction_and_gates(night, model):
    full = predict_night(model, night)
    eeg = predict_night(model, night, ("eeg",))
    assert eeg.modalities == ("eeg",) and eeg.global_gates == {"eeg": 1.0}
    np.testing.assert_allclose(eeg.epoch_gates, 1.0)
    assert np.abs(full.probabilities - eeg.probabilities).max() > 1e-3
    for subset in [("ibi",), ("ibi", "resp"), ("ecg", "effort"), ("eog", "airflow", "spo2")]:
        p = predict_night(model, night, subset)
        assert p.modalities == subset and p.epoch_gates.shape == (night.n_epochs, len(subset))
        np.testing.assert_allclose(p.probabilities.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(p.epoch_gates.sum(axis=1), 1, atol=1e-5)
        assert abs(sum(p.global_gates.values()) - 1) < 1e-6
    assert predict_night(model, night, ("spo2", "eog")).modalities == ("eog", "spo2")  # canonical


def test_modality_invalid_for_a_whole_window_gets_zero_gate(night, model):
    """EEG flat for the first 40 epochs: with 40-epoch windows it is absent from window 0."""
    valid = {m: v.copy() for m, v in night.epoch_valid.items()}
    valid["eeg"][:40] = False
    holed = dataclasses.replace(night, epoch_valid=valid)
    pred = predict_night(model, holed, window_epochs=40)
    eeg = pred.epoch_gates[:, pred.modalities.index("eeg")]
    np.testing.assert_array_equal(eeg[:40], 0.0)
    assert (eeg[40:] > 0).all()
    np.testing.assert_allclose(pred.epoch_gates.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(pred.coverage[:40], 8)
    np.testing.assert_array_equal(pred.coverage[40:], 9)


def test_all_windows_batched_equals_one_window_at_a_time(night, model):
    """One batched forward over every window equals running each window alone."""
    whole = predict_night(model, night, window_epochs=40)
    assert np.array_equal(
        whole.probabilities, predict_night(model, night, window_epochs=40).probabilities
    )
    inputs, valid = night.model_inputs()
    for w in range(3):
        sl = slice(40 * w, 40 * (w + 1))
        x = {m: torch.from_numpy(inputs[m][sl][None]) for m in inputs}
        present = {m: torch.tensor([bool(valid[m][sl].any())]) for m in inputs}
        with torch.inference_mode():
            out = model(x, torch.ones(1, 40, dtype=torch.bool), present)
        probs = torch.softmax(out.stage_logits[0], -1).numpy()
        np.testing.assert_allclose(whole.probabilities[sl], probs, atol=1e-5)
    chunked = predict_night(model, night, window_epochs=40, max_windows=1)
    np.testing.assert_allclose(chunked.probabilities, whole.probabilities, atol=1e-5)
    np.testing.assert_allclose(chunked.epoch_gates, whole.epoch_gates, atol=1e-5)


def test_last_window_is_padded_and_masked(night, model):
    """50-epoch windows over 120 epochs: 3 windows, the last one 20 real + 30 padding."""
    inputs, pad_valid, present, _ = night_windows(night, ("eeg", "ibi"), 50)
    assert inputs["eeg"].shape == (3, 50, 3840) and inputs["ibi"].shape == (3, 50, 120)
    assert pad_valid.sum(axis=1).tolist() == [50, 50, 20]
    np.testing.assert_array_equal(inputs["eeg"][2, 20:], 0.0)
    assert present["eeg"].tolist() == [True, True, True]
    pred = predict_night(model, night, window_epochs=50)
    assert pred.stages.shape == (120,)
    # padding is masked out of attention: the 20 real epochs of the last window come out as if
    # they had been a 20-epoch window of their own
    scaled, valid = night.model_inputs()
    x = {m: torch.from_numpy(v[100:][None]) for m, v in scaled.items()}
    present = {m: torch.tensor([bool(v[100:].any())]) for m, v in valid.items()}
    with torch.inference_mode():
        out = model(x, torch.ones(1, 20, dtype=torch.bool), present)
    probs = torch.softmax(out.stage_logits[0], -1).numpy()
    np.testing.assert_allclose(pred.probabilities[100:], probs, atol=1e-5)


def test_bad_subsets(night, model):
    with pytest.raises(S2VError, match="cannot use ppg"):
        predict_night(model, night, ("eeg", "ppg"))
    with pytest.raises(S2VError, match="no modality"):
        predict_night(model, night, ())
    no_eeg = dataclasses.replace(
        night, signals={m: x for m, x in night.signals.items() if m != "eeg"}
    )
    with pytest.raises(S2VError, match=r"cannot use eeg: this night and model have eog, emg"):
        predict_night(model, no_eeg, ("eeg", "eog"))


def test_model_with_fewer_modalities_uses_only_its_own(night, tmp_path):
    cfg = get_preset("tiny", modalities=("ibi", "spo2"))
    save_checkpoint(tmp_path, Sleep2VecClassifier(cfg, seed=1), cfg)
    small, _, _ = load_classifier(tmp_path)
    assert predict_night(small, night).modalities == ("ibi", "spo2")
    with pytest.raises(S2VError, match="have ibi, spo2"):
        predict_night(small, night, ("eeg",))


def test_load_classifier_refuses_encoders_and_missing_folders(tmp_path):
    cfg = get_preset("tiny", modalities=("ibi",))
    save_checkpoint(tmp_path / "pre", Sleep2Vec(cfg, seed=0), cfg)
    with pytest.raises(S2VError, match="pretrained encoder, not a staging model"):
        load_classifier(tmp_path / "pre")
    with pytest.raises(S2VError, match="no such model folder"):
        load_classifier(tmp_path / "nowhere")


def test_model_id_changes_with_the_checkpoint(model_dir, tmp_path):
    cfg = get_preset("tiny", modalities=("ibi",))
    save_checkpoint(tmp_path / "best", Sleep2VecClassifier(cfg, seed=0), cfg)
    a, b = model_id(model_dir), model_id(tmp_path / "best")
    assert a.startswith("best-") and b.startswith("best-") and a != b
    assert model_id(model_dir) == a


def test_merged_predictions_sum_probabilities(night, model):
    pred = predict_night(model, night)
    p = pred.probabilities
    s3, p3 = pred.merged(3)
    np.testing.assert_allclose(p3[:, 1], p[:, 1] + p[:, 2] + p[:, 3], rtol=1e-6)
    np.testing.assert_allclose(p3.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(s3, p3.argmax(axis=1))
    s4, p4 = pred.merged(4)
    np.testing.assert_allclose(p4[:, 1], p[:, 1] + p[:, 2], rtol=1e-6)
    np.testing.assert_array_equal(merge_stages(pred.merged_as_five(4), 4), s4)
    s5, _ = pred.merged(5)
    np.testing.assert_array_equal(s5, pred.stages)
    ok = night.stages >= 0
    m3 = staging_metrics(night.stages, pred.merged_as_five(3), n_classes=3)
    assert m3.accuracy == pytest.approx(np.mean(merge_stages(night.stages, 3)[ok] == s3[ok]))
    with pytest.raises(ValueError, match="5, 4 or 3"):
        pred.merged(2)


# --- embeddings ----------------------------------------------------------------------------
def test_embeddings_are_the_staging_heads_input(night, model):
    epochs, pooled = embed_night(model, night)
    assert epochs.shape == (night.n_epochs, 32) and epochs.dtype == np.float32
    assert pooled.shape == (32,)
    np.testing.assert_allclose(pooled, epochs.mean(axis=0), rtol=1e-5, atol=1e-6)
    pred = predict_night(model, night, with_embeddings=True)
    np.testing.assert_allclose(pred.embeddings, epochs, atol=1e-6)
    with torch.no_grad():
        probs = torch.softmax(model.staging(torch.from_numpy(epochs)), -1).numpy()
    np.testing.assert_allclose(probs, pred.probabilities, atol=1e-5)
    eeg_only, _ = embed_night(model, night, ("eeg",))
    assert np.abs(eeg_only - epochs).max() > 1e-3


# --- CLI -----------------------------------------------------------------------------------
def test_predict_cli_writes_csv_and_json_summary(night, model_dir, tmp_path, capsys):
    psg, hyp = shipped_night()
    out = tmp_path / "sub" / "pred.csv"
    argv = ["predict", psg, "--hypnogram", hyp, "--model", model_dir, "--out", out, "--json"]
    assert run_cli(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    frame = pd.read_csv(out)
    assert len(frame) == night.n_epochs == summary["n_epochs"]
    assert {"epoch", "stage", "label", "reference", "reference_label", "p_W", "p_REM"} <= set(
        frame.columns
    )
    assert [c for c in frame.columns if c.startswith("gate_")] == [
        f"gate_{m}" for m in night.modalities
    ]
    np.testing.assert_array_equal(frame["reference"], night.stages)
    assert summary["modalities"] == list(night.modalities)
    assert sum(summary["predicted_counts"].values()) == night.n_epochs
    for k in ("5-class", "4-class", "3-class"):
        m = summary["agreement"][k]
        assert -1 <= m["kappa"] <= 1 and 0 <= m["accuracy"] <= 1 and "macro_f1" in m
    acc = np.mean(frame["stage"] == frame["reference"])
    assert summary["agreement"]["5-class"]["accuracy"] == pytest.approx(acc)


def test_predict_cli_subset_without_labels(model_dir, tmp_path, capsys):
    psg, _ = shipped_night()
    out = tmp_path / "p.csv"
    assert (
        run_cli(["predict", psg, "--model", model_dir, "--modalities", "eog,eeg", "--out", out])
        == 0
    )
    text = capsys.readouterr().out
    assert "staged from eeg, eog" in text and "kappa" not in text
    frame = pd.read_csv(out)
    assert (
        "reference" not in frame.columns
        and "gate_eeg" in frame.columns
        and "gate_ecg" not in frame.columns
    )


def test_predict_cli_without_a_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "CLASSIFIER_DIRS", (tmp_path / "a", tmp_path / "b"))
    psg, _ = shipped_night()
    with pytest.raises(S2VError, match="pass --model DIR"):
        run_cli(["predict", psg, "--out", tmp_path / "x.csv"])
    with pytest.raises(S2VError, match="--threads must be >= 1"):
        run_cli(["predict", psg, "--out", tmp_path / "x.csv", "--threads", "0"])


def test_embed_cli_one_recording(night, model_dir, tmp_path, capsys):
    psg, hyp = shipped_night()
    out = tmp_path / "emb.parquet"
    assert run_cli(["embed", psg, "--hypnogram", hyp, "--model", model_dir, "--out", out]) == 0
    assert "1 night(s), 120 epochs, 32-d" in capsys.readouterr().out
    epochs = pd.read_parquet(out)
    nights = pd.read_parquet(tmp_path / "emb_nights.parquet")
    emb_cols = [f"emb_{i}" for i in range(32)]
    assert list(epochs.columns[:11]) == [
        "night",
        "epoch",
        "onset_s",
        "stage",
        "predicted",
        "subject",
        "site",
        "age",
        "sex",
        "split",
        "modalities",
    ]
    assert list(epochs.columns[11:]) == emb_cols and len(epochs) == night.n_epochs
    np.testing.assert_array_equal(epochs["stage"], night.stages)
    assert len(nights) == 1 and nights["n_epochs"].iloc[0] == 120
    np.testing.assert_allclose(
        nights[emb_cols].to_numpy()[0],
        epochs[emb_cols].to_numpy().mean(axis=0),
        rtol=1e-4,
        atol=1e-6,
    )


# --- real data -----------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_wfdb_beats_night_predicts_from_ibi(model, model_dir, tmp_path, capsys):
    """slpdb: ECG beat annotations only -> an IBI-only night, staged against its expert stages."""
    path = shared_path("slpdb", "slp01a.ecg")
    real = load_wfdb_night(path)
    assert real.modalities == ("ibi",)
    pred = predict_night(model, real)
    assert pred.modalities == ("ibi",) and pred.stages.shape == (real.n_epochs,)
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(S2VError, match="cannot use eeg: this night and model have ibi"):
        predict_night(model, real, ("eeg",))
    assert (
        run_cli(["predict", path, "--model", model_dir, "--out", tmp_path / "r.csv", "--json"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["agreement"]["5-class"]["n_epochs"] > 100


def test_concurrent_predictions_share_one_model_without_mixing(night, model):
    """The app and Dask workers share one model object across threads: no state may leak."""
    from concurrent.futures import ThreadPoolExecutor

    subsets = [("eeg", "ecg"), ("ibi", "resp"), tuple(night.modalities)]
    subsets = [tuple(m for m in s if m in night.modalities) for s in subsets]
    serial = [predict_night(model, night, s, with_embeddings=True) for s in subsets]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_hooks = sum(len(m._forward_hooks) for m in model.modules())
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(predict_night, model, night, s, with_embeddings=True)
                   for s in subsets * 3]
        results = [f.result() for f in futures]
    for i, r in enumerate(results):
        ref = serial[i % len(subsets)]
        np.testing.assert_allclose(r.embeddings, ref.embeddings, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(r.stages, ref.stages)
    assert sum(len(m._forward_hooks) for m in model.modules()) == n_hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_embeddings_parquet_export_matches_the_prediction(night, model):
    import io

    from s2v_core.views.exports import embeddings_parquet, figure_html
    from s2v_core.views.plots import hypnodensity_figure

    subset = tuple(m for m in ("eeg", "ibi") if m in night.modalities)
    frame = pd.read_parquet(io.BytesIO(embeddings_parquet(model, night, subset)))
    pred = predict_night(model, night, subset, with_embeddings=True)
    emb = frame[[c for c in frame.columns if c.startswith("emb_")]].to_numpy()
    np.testing.assert_allclose(emb, pred.embeddings, atol=1e-6)
    assert list(frame["epoch"]) == list(range(night.n_epochs))
    assert (frame["predicted"].to_numpy() == pred.stages).all()
    assert set(frame["modalities"]) == {",".join(pred.modalities)}
    html = figure_html(hypnodensity_figure(pred.probabilities))
    assert html.lower().startswith("<!doctype html>") and "plotly" in html and len(html) > 1_000_000  # plotly.js inlined
