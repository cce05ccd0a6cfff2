"""No silent wrong answers (issue 16): each class of input that used to give a plausible but wrong
result with exit status 0 is now refused in one line, or shown as an error in the app.

1. Non-finite weights: refused at load time (model, classifier, optimizer state, night heads), and
   non-finite outputs at inference are an error instead of "every epoch W".
2. A hypnogram of another recording: start dates more than 24 h apart, or a scored span that does
   not fit the recording, is refused naming both dates (``--allow-mismatch`` scores anyway), and the
   app's Hypnogram page shows it as an error, not as the expert's scoring.
3. A store without labels: ``s2v prepare`` counts labelled epochs per night; ``s2v finetune`` and the
   adaptation stage refuse a train split without any, before building anything.
4. ``--device`` that this machine cannot use: one line, for every command that takes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyedflib
import pytest
import torch
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np
from safetensors.torch import load_file, save_file

from s2v_core.cli.main import main
from s2v_core.errors import HypnogramError, S2VError
from s2v_core.model import HeadConfig, Sleep2Vec, Sleep2VecClassifier, get_preset
from s2v_core.model.checkpoint import (
    OPTIMIZER_TENSORS_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    load_optimizer_state,
    save_checkpoint,
)
from s2v_core.model.device import DeviceError, resolve_device
from tests.conftest import write_tiny_classifier
from tests.edf_factory import psg_channels, write_edf

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = get_preset("tiny", modalities=("eeg", "ibi", "spo2"))
REC_START = datetime(2015, 10, 20, 23, 0, 0)
REC_MINUTES = 20  # 40 epochs


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, command: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"s2v {command}: error: "), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rec")
    return write_edf(d / "night.edf", psg_channels(minutes=REC_MINUTES), start=REC_START)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier")


# --- 1. non-finite weights and outputs --------------------------------------------------------
def _poison(folder: Path, file: str, name: str | None, value: float) -> str:
    """Put ``value`` into one element of tensor ``name`` (default: the first float tensor)."""
    tensors = load_file(str(folder / file))
    name = name or next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    t = tensors[name].clone()
    t.view(-1)[t.numel() // 2] = value
    tensors[name] = t
    save_file(tensors, str(folder / file))
    return name


@pytest.mark.parametrize("kind", ["pretrain", "classifier"])
@pytest.mark.parametrize(("value", "said"), [(float("nan"), "1 NaN value"), (float("inf"), "1 infinite value"),
                                             (float("-inf"), "1 infinite value")])
@pytest.mark.parametrize("tensor", [None, "encoder.final_norm.weight"])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, kind, value, said, tensor):
    model = Sleep2Vec(TINY, seed=0) if kind == "pretrain" else Sleep2VecClassifier(TINY, HeadConfig(), seed=0)
    save_checkpoint(tmp_path / "ckpt", model, TINY)
    name = _poison(tmp_path / "ckpt", WEIGHTS_FILE, None if tensor is None else
                   (tensor if kind == "pretrain" else f"backbone.{tensor}"), value)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "ckpt")
    message = str(info.value)
    assert f"ckpt/model.safetensors: tensor {name!r} holds {said}" in message
    assert "refusing to load" in message and "\n" not in message and str(tmp_path) not in message


def test_several_bad_tensors_are_counted(tmp_path):
    save_checkpoint(tmp_path, Sleep2Vec(TINY, seed=0), TINY)
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    for k in list(tensors)[:3]:
        tensors[k] = torch.full_like(tensors[k], float("nan"))
    save_file(tensors, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=r"NaN values of \d+ \(and 2 more tensors\)"):
        load_checkpoint(tmp_path)


def test_non_finite_optimizer_state_is_refused(tmp_path):
    model = Sleep2Vec(TINY, seed=0)
    opt = torch.optim.AdamW(model.parameters())
    model.project(model.encode(*_inputs())["eeg"]).pow(2).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, model, TINY, optimizer=opt, step=1)
    name = _poison(tmp_path, OPTIMIZER_TENSORS_FILE, None, float("nan"))
    with pytest.raises(CheckpointError, match=rf"optimizer\.safetensors: tensor '{re.escape(name)}' holds 1 NaN"):
        load_optimizer_state(tmp_path, opt)


def _inputs(B=2, T=6):
    from s2v_core.modalities import samples_per_epoch

    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(B, T, samples_per_epoch(m), generator=g) for m in TINY.modalities}, \
        torch.ones(B, T, dtype=torch.bool)


def test_cli_predict_with_nan_weights_exits_2_and_writes_nothing(tmp_path, recording, tiny_model):
    import shutil

    folder = Path(shutil.copytree(tiny_model, tmp_path / "broken"))
    name = _poison(folder, WEIGHTS_FILE, "fusion.logits", float("nan"))
    out = tmp_path / "stages.csv"
    code, stdout, err = run_cli(["predict", str(recording), "--model", str(folder), "--out", str(out)])
    assert_one_line_error(code, err, "predict")
    assert f"tensor {name!r} holds 1 NaN value" in err and not out.exists() and stdout == ""
    code, _, err = run_cli(["embed", str(recording), "--model", str(folder), "--out", str(tmp_path / "e.parquet")])
    assert_one_line_error(code, err, "embed")
    assert "fusion.logits" in err


@pytest.mark.parametrize(("tensor", "value", "message"), [
    ("coef", np.nan, "tensor 'coef' holds 1 NaN"), ("intercept", np.inf, "tensor 'intercept' holds 0 NaN and 1 infinite"),
    ("mean", -np.inf, "tensor 'mean' holds 0 NaN and 1 infinite"), ("scale", 0.0, "'scale' holds zero or negative"),
])
def test_night_head_with_non_finite_values_is_refused(tmp_path, tensor, value, message):
    from s2v_core.night_heads.linear import HEAD_WEIGHTS_FILE, NightHead
    from s2v_core.night_heads.tasks import NightHeadError, parse_task

    head = NightHead(parse_task("age"), np.zeros(4), np.ones(4), np.arange(4.0), 1.0, 10.0)
    head.save(tmp_path / "head")
    NightHead.load(tmp_path / "head")  # a good head loads
    t = load_np(str(tmp_path / "head" / HEAD_WEIGHTS_FILE))
    t[tensor] = t[tensor].copy()
    t[tensor][0] = value
    save_np(t, str(tmp_path / "head" / HEAD_WEIGHTS_FILE))
    with pytest.raises(NightHeadError, match=re.escape(message)) as info:
        NightHead.load(tmp_path / "head")
    assert str(tmp_path) not in str(info.value)


@pytest.fixture(scope="module")
def night(recording):
    from s2v_core.recording.loading import load_night

    return load_night(recording)


@pytest.mark.parametrize(("where", "value"), [("fusion.logits", float("nan")), ("staging.mlp.4.bias", float("inf")),
                                              ("backbone.encoder.final_norm.weight", float("nan"))])
def test_non_finite_outputs_at_inference_are_an_error_not_w(night, where, value):
    """A model broken in memory (the loader refuses such files): predict_night refuses to give stages."""
    from s2v_core.inference.predict import NonFiniteOutputError, predict_night

    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).eval()
    with torch.no_grad():
        params = dict(model.named_parameters())
        key = where if where in params else next(k for k in params if k.startswith(where))
        params[key].fill_(value)
    with pytest.raises(NonFiniteOutputError, match=r"non-finite (stage scores|gate weights) \(NaN or infinite\) "
                                                   r"at 40 of 40 epochs.*no stages are given"):
        predict_night(model, night)


def test_a_window_without_any_valid_signal_is_still_finite(night):
    """Epochs with no valid modality are predicted from nothing, but finite: not an error."""
    from s2v_core.inference.predict import predict_night

    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).eval()
    valid = {m: v.copy() for m, v in night.epoch_valid.items()}
    for v in valid.values():
        v[20:] = False
    pred = predict_night(model, dataclasses.replace(night, epoch_valid=valid), window_epochs=20,
                         with_embeddings=True)
    assert np.isfinite(pred.probabilities).all() and (pred.coverage[20:] == 0).all()


def test_backbone_embeddings_with_nan_weights_are_an_error(night):
    from s2v_core.inference.embed import backbone_epoch_embeddings
    from s2v_core.inference.predict import NonFiniteOutputError

    model = Sleep2Vec(get_preset("tiny"), seed=0).eval()
    with torch.no_grad():
        model.encoder.final_norm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match="non-finite backbone embeddings"):
        backbone_epoch_embeddings(model, night)


# --- 2. hypnograms of another recording -------------------------------------------------------
_LABELS = ("Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage R")


def sleep_edf_hypnogram(path: Path, start: datetime, hours: float, *, wake_hours: float = 0.0) -> Path:
    """A Sleep-EDF-style annotation-only EDF+: ``wake_hours`` of W, then cycling stages."""
    w = pyedflib.EdfWriter(str(path), 0, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setStartdatetime(start)
    n_wake = int(wake_hours * 120)
    if n_wake:
        w.writeAnnotation(0, n_wake * 30, "Sleep stage W")
    for i in range(int(hours * 120)):
        w.writeAnnotation((n_wake + i) * 30, 30, _LABELS[(i // 4) % 5])
    w.close()
    return path


def _iso_csv(path: Path, start: datetime, epochs: int) -> Path:
    rows = [f"{(start + timedelta(seconds=30 * i)).isoformat()},30,{'W N1 N2 N3 R'.split()[(i // 4) % 5]}"
            for i in range(epochs)]
    path.write_text("onset,duration,stage\n" + "\n".join(rows) + "\n")
    return path


MISMATCHES = {
    # id: (builder(folder) -> hypnogram, regex of the one-line refusal)
    "years_apart": (lambda d: sleep_edf_hypnogram(d / "years.edf", datetime(2001, 3, 4, 22, 10), 1 / 3),
                    r"years\.edf: hypnogram starts 2001-03-04 22:10, recording 2015-10-20 23:00: 14\.6 years "
                    r"apart; is it from another recording\? --allow-mismatch to score anyway"),
    "years_later": (lambda d: sleep_edf_hypnogram(d / "later.edf", datetime(2030, 1, 2, 22, 0), 1 / 3),
                    r"later\.edf: hypnogram starts 2030-01-02 22:00, recording 2015-10-20 23:00: 14\.2 years apart"),
    "days_apart": (lambda d: sleep_edf_hypnogram(d / "days.edf", REC_START + timedelta(days=3, minutes=5), 1 / 3),
                   r"days\.edf: hypnogram starts 2015-10-23 23:05, recording 2015-10-20 23:00: 3\.0 days apart"),
    "csv_iso_years_apart": (lambda d: _iso_csv(d / "iso.csv", datetime(2009, 6, 1, 23, 0), 40),
                            r"iso\.csv: hypnogram starts 2009-06-01 23:00, recording 2015-10-20 23:00: 6\.4 years"),
    "longer_by_hours": (lambda d: sleep_edf_hypnogram(d / "longer.edf", REC_START, 3),
                        r"longer\.edf: hypnogram starts 2015-10-20 23:00, recording 2015-10-20 23:00; the hypnogram "
                        r"has 360 epochs \(180\.0 min\) but the signal has 40 epochs"),
    "sleep_edf_24h_wrong_window": (
        lambda d: sleep_edf_hypnogram(d / "SC4011EH-Hypnogram.edf", REC_START - timedelta(hours=23), 3, wake_hours=18),
        r"SC4011EH-Hypnogram\.edf: none of its 2520 scored epochs \(21\.0 h\) falls within the recording: the "
        r"hypnogram scores 2015-10-20 00:00 to 21:00, the recording runs 2015-10-20 23:00 to 23:20; is it from "
        r"another recording or night\? --allow-mismatch"),
    "scoring_after_the_night": (
        lambda d: sleep_edf_hypnogram(d / "after.edf", REC_START + timedelta(hours=9), 1),
        r"after\.edf: none of its 120 scored epochs \(1\.0 h\) falls within the recording: the hypnogram scores "
        r"2015-10-21 08:00 to 09:00, the recording runs 2015-10-20 23:00 to 23:20"),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
@pytest.mark.parametrize("command", ["info", "predict"])
def test_hypnogram_of_another_recording_is_refused_naming_both_dates(tmp_path, recording, tiny_model, case,
                                                                     command):
    make, pattern = MISMATCHES[case]
    hyp = make(tmp_path)
    extra = ["--model", str(tiny_model), "--out", str(tmp_path / "o.csv")] if command == "predict" else []
    code, out, err = run_cli([command, str(recording), "--hypnogram", str(hyp), *extra])
    assert_one_line_error(code, err, command)
    assert re.search(pattern, err), err
    assert "are the onsets in seconds" not in err and str(tmp_path) not in err
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("case", ["years_apart", "sleep_edf_24h_wrong_window", "longer_by_hours"])
def test_allow_mismatch_scores_anyway_with_a_warning(tmp_path, recording, case):
    hyp = MISMATCHES[case][0](tmp_path)
    code, out, err = run_cli(["info", str(recording), "--hypnogram", str(hyp), "--allow-mismatch"])
    assert code == 0 and err == "", err
    assert any(ln.startswith("warning: hypnogram: does not match the recording: ") for ln in out.splitlines()), out


@pytest.mark.parametrize("hypnogram", ["same_start", "start_within_a_minute", "csv_without_dates", "csv_iso_same_night",
                                       "sleep_edf_with_unscored_tail"])
def test_the_right_hypnogram_still_pairs(tmp_path, recording, hypnogram):
    from s2v_core.recording.loading import load_night

    if hypnogram == "same_start":
        hyp = sleep_edf_hypnogram(tmp_path / "h.edf", REC_START, REC_MINUTES / 60)
    elif hypnogram == "start_within_a_minute":  # a scorer's clock 30 s off: shifted, one epoch padded
        hyp = sleep_edf_hypnogram(tmp_path / "h.edf", REC_START + timedelta(seconds=30), REC_MINUTES / 60 - 1 / 120)
    elif hypnogram == "csv_without_dates":
        hyp = tmp_path / "h.csv"
        hyp.write_text("stage\n" + "\n".join(["W", "N1", "N2", "N3", "R"] * 8) + "\n")
    elif hypnogram == "csv_iso_same_night":
        hyp = _iso_csv(tmp_path / "h.csv", REC_START, 40)
    else:  # Sleep-EDF: scoring, then "Sleep stage ?" to the end of a longer file
        hyp = sleep_edf_hypnogram(tmp_path / "h.edf", REC_START, REC_MINUTES / 60)
        w = pyedflib.EdfWriter(str(tmp_path / "tail.edf"), 0, file_type=pyedflib.FILETYPE_EDFPLUS)
        w.setStartdatetime(REC_START)
        for i in range(40):
            w.writeAnnotation(i * 30, 30, _LABELS[(i // 4) % 5])
        w.writeAnnotation(40 * 30, 6 * 3600, "Sleep stage ?")
        w.close()
        hyp = tmp_path / "tail.edf"
    code, out, err = run_cli(["info", str(recording), "--hypnogram", str(hyp)])
    assert code == 0 and err == "", err
    assert "does not match" not in out
    night = load_night(recording, hyp)
    assert (night.stages >= 0).sum() >= 38


def test_evaluate_skips_a_mismatched_night_naming_the_dates(tmp_path, tiny_model):
    src = tmp_path / "cohort"
    src.mkdir()
    write_edf(src / "a.edf", psg_channels(minutes=REC_MINUTES), start=REC_START)
    sleep_edf_hypnogram(src / "a-Hypnogram.edf", datetime(2001, 3, 4, 22, 10), REC_MINUTES / 60)
    code, out, err = run_cli(["evaluate", str(src), "--model", str(tiny_model), "--out", str(tmp_path / "ev"),
                              "--quiet", "--n-boot", "10"])
    assert_one_line_error(code, err, "evaluate")
    assert "hypnogram starts 2001-03-04 22:10, recording 2015-10-20 23:00: 14.6 years apart" in err


def test_pairing_library_errors_are_hypnogram_errors(tmp_path):
    from s2v_core.recording.pairing import HypnogramMismatchError, pair_hypnogram

    hyp = sleep_edf_hypnogram(tmp_path / "h.edf", datetime(2001, 3, 4, 22, 10), 1 / 3)
    with pytest.raises(HypnogramMismatchError) as info:
        pair_hypnogram(hyp, 40, REC_START)
    assert isinstance(info.value, HypnogramError)
    aligned = pair_hypnogram(hyp, 40, REC_START, allow_mismatch=True)
    assert aligned.n_epochs == 40 and (aligned.stages >= 0).all()  # dates ignored: scored from the start
    assert pair_hypnogram(hyp, 40, None).n_epochs == 40  # no recording date: nothing to compare


def test_real_sleep_edf_hypnograms_pair_only_with_their_own_night():
    """Real Sleep-EDF hypnograms (24 h each): a PSG starting at SC4001's start, 2650 epochs long."""
    from s2v_core.recording.pairing import HypnogramMismatchError, pair_hypnogram
    from tests.conftest import shared_path

    folder = shared_path("sleep-edf")
    start, n = datetime(1989, 4, 24, 16, 13), 2650
    own = pair_hypnogram(folder / "SC4001EC-Hypnogram.edf", n, start)
    assert (own.stages >= 0).sum() == n
    with pytest.raises(HypnogramMismatchError, match=r"SC4002EC-Hypnogram\.edf: none of its \d+ scored epochs .* "
                                                     r"the hypnogram scores 1989-04-25 14:50 to"):
        pair_hypnogram(folder / "SC4002EC-Hypnogram.edf", n, start)  # the next night of the same subject
    with pytest.raises(HypnogramMismatchError, match=r"hypnogram starts 1989-03-29 16:49, recording 1989-04-24 "
                                                     r"16:13: 26\.0 days apart"):
        pair_hypnogram(folder / "SC4011EH-Hypnogram.edf", n, start)  # another subject


# --- 2b. the Hypnogram page -----------------------------------------------------------------
def _app_with_upload(model: Path, psg: Path, hyp: Path):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["night_source"] = "Upload a recording"
    at.session_state["model_dir"] = str(model)
    at.run(timeout=120)
    uploaders = {u.label.split(" ")[0]: u for u in at.file_uploader}
    uploaders["EDF"].set_value((psg.name, psg.read_bytes(), "application/octet-stream"))
    uploaders["Hypnogram"].set_value((hyp.name, hyp.read_bytes(), "application/octet-stream"))
    at.run(timeout=120)
    at.switch_page("pages/hypnogram.py")
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.parametrize(("case", "dates", "agreement"), [
    ("years_apart", ("2001-03-04 22:10", "2015-10-20 23:00", "14.6 years apart"), True),
    ("days_apart", ("2015-10-23 23:05", "2015-10-20 23:00", "3.0 days apart"), True),
    ("longer_by_hours", ("2015-10-20 23:00 to 2015-10-21 02:00", "2015-10-20 23:00 to 23:20"), True),
    ("sleep_edf_24h_wrong_window", ("2015-10-20 00:00 to 21:00", "2015-10-20 23:00 to 23:20"), False),
])
def test_hypnogram_page_shows_a_mismatch_as_an_error_with_the_dates(tmp_path, recording, tiny_model, case, dates,
                                                                   agreement):
    at = _app_with_upload(tiny_model, recording, MISMATCHES[case][0](tmp_path))
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "does not match this recording" in errors[0], errors
    assert all(d in errors[0] for d in dates), errors[0]
    heads = [h.value for h in at.subheader]
    assert "Agreement with the expert" not in heads
    captions = " ".join(c.value for c in at.caption)
    assert "no expert hypnogram loaded" not in captions
    if agreement:  # scored anyway, and labelled as what it is
        assert any(h.startswith("Agreement with the uploaded hypnogram") for h in heads), heads
    else:
        assert "has no scored epoch within this recording" in captions


def test_hypnogram_page_with_the_right_hypnogram_has_no_error(tmp_path, recording, tiny_model):
    at = _app_with_upload(tiny_model, recording, sleep_edf_hypnogram(tmp_path / "h.edf", REC_START, REC_MINUTES / 60))
    assert not at.error, [e.value for e in at.error]
    assert "Agreement with the expert" in [h.value for h in at.subheader]


# --- 3. stores without labels ---------------------------------------------------------------
@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """Three synthetic nights: ``unpaired`` has no hypnogram column, ``mixed`` one hypnogram of three."""
    from s2v_core.synth.cohort import generate_cohort

    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(3, root / "src", seed=3, hours=0.25, progress=False)
    meta = pd.read_csv(root / "src" / "metadata.csv")
    meta["split"] = "train"
    unpaired = meta.drop(columns=["hypnogram_file"])
    unpaired.to_csv(root / "unpaired.csv", index=False)
    mixed = meta.copy()
    mixed.loc[1:, "hypnogram_file"] = None
    mixed.to_csv(root / "mixed.csv", index=False)
    return root


def test_prepare_counts_labelled_epochs_and_says_which_nights_have_none(cohorts, tmp_path):
    code, out, err = run_cli(["prepare", str(cohorts / "src"), "--out", str(tmp_path / "s"), "--metadata",
                              str(cohorts / "mixed.csv")])
    assert code == 0, err
    assert re.search(r"3 done, 0 skipped, 0 failed; nights: 1 with labels \([\d,]+ labelled epochs\), 2 without a "
                     r"hypnogram \(no labelled epoch\)", out), out
    assert re.search(r"warning: 2 night\(s\) have no labelled epoch \(.*\): no hypnogram was paired", out), out
    manifest = pd.read_csv(tmp_path / "s" / "manifest.csv")
    assert sorted(manifest["labelled_epochs"]) == [0, 0, 30]
    # run again: the finished nights are read back, with the same counts
    code, out, _ = run_cli(["prepare", str(cohorts / "src"), "--out", str(tmp_path / "s"), "--metadata",
                            str(cohorts / "mixed.csv")])
    assert "0 done, 3 skipped, 0 failed; nights: 1 with labels (30 labelled epochs), 2 without" in out


@pytest.fixture(scope="module")
def unlabelled_store(cohorts, tmp_path_factory):
    from s2v_core.cohort.prepare import prepare_store

    store = tmp_path_factory.mktemp("store") / "s"
    run = prepare_store(cohorts / "src", store, metadata_csv=cohorts / "unpaired.csv", progress=False)
    assert run.attrs["labels"] == {"with_labels": 0, "without_labels": 3, "labelled_epochs": 0}
    return store


def test_prepare_cli_warns_that_finetune_cannot_learn(cohorts, tmp_path):
    code, out, _ = run_cli(["prepare", str(cohorts / "src"), "--out", str(tmp_path / "s"), "--metadata",
                            str(cohorts / "unpaired.csv")])
    assert code == 0 and "nights: 3 without a hypnogram (no labelled epoch)" in out
    assert "warning: the train split has no labelled epoch: s2v finetune cannot learn from this store" in out


def test_finetune_refuses_a_store_without_labels_before_building(unlabelled_store, tmp_path, monkeypatch):
    from s2v_core.train import finetune as ft

    def forbidden(*args, **kwargs):
        raise AssertionError("nothing may be built for a store without labels")

    monkeypatch.setattr(ft, "build_model", forbidden)
    with pytest.raises(S2VError, match=r"s: nothing to fine-tune on: the train split has no labelled epoch "
                                       r"\(3 night\(s\), every epoch unscored\); prepare the store with"):
        ft.finetune(unlabelled_store, tmp_path / "run", ft.FinetuneConfig(epochs=1, preset="tiny"))
    code, out, err = run_cli(["finetune", "--data", str(unlabelled_store), "--out", str(tmp_path / "run"),
                              "--preset", "tiny", "--epochs", "1"])
    assert_one_line_error(code, err, "finetune")
    assert "no labelled epoch" in err and out == "" and not (tmp_path / "run").exists()


def test_a_labelled_store_passes_the_check(cohorts, tmp_path):
    from s2v_core.cohort.prepare import prepare_store
    from s2v_core.cohort.store import CohortStore
    from s2v_core.train.finetune import labelled_epochs, refuse_unlabelled

    prepare_store(cohorts / "src", tmp_path / "s", metadata_csv=cohorts / "mixed.csv", progress=False)
    store = CohortStore(tmp_path / "s")
    refuse_unlabelled(store, "train", "x")
    assert labelled_epochs(store, "train") == 30


def test_adaptation_refuses_a_real_store_without_labels(unlabelled_store, tmp_path, monkeypatch):
    from s2v_core.cohort.prepare import prepare_store
    from s2v_core.synth.cohort import generate_cohort
    from s2v_core.train import adapt

    generate_cohort(2, tmp_path / "synth", seed=8, hours=0.25, progress=False)
    meta = pd.read_csv(tmp_path / "synth" / "metadata.csv")
    meta["site"] = "synthsite"
    meta["night"] = "syn-" + meta["night"]
    meta.to_csv(tmp_path / "synth" / "metadata.csv", index=False)
    prepare_store(tmp_path / "synth", tmp_path / "sy", progress=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("finetune must not start")

    monkeypatch.setattr(adapt, "finetune", forbidden)
    with pytest.raises(S2VError, match=r"s: nothing to adapt on: the store has no labelled epoch \(3 night"):
        adapt.adapt_to_real(tmp_path / "sy", unlabelled_store, tmp_path / "out", tmp_path / "no-model")


# --- 4. devices ---------------------------------------------------------------------------
BAD_DEVICES = {
    "cuda": "device 'cuda' asked for, but CUDA is not available on this machine",
    "cuda:7": "device 'cuda:7' asked for, but CUDA is not available on this machine",
    "mps": "device 'mps' asked for, but MPS (Apple GPU) is not available on this machine",
    "gpu": "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'; for an NVIDIA GPU use 'cuda'",
    "tpu": "got 'tpu'; TPUs are not supported",
    "meta": "got 'meta'",
    "cuda:x": "got 'cuda:x'",
}


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


COMMANDS = {
    "predict": ["predict", "night.edf", "--out", "o.csv"],
    "embed": ["embed", "night.edf", "--out", "o.parquet"],
    "evaluate": ["evaluate", "store", "--out", "ev"],
    "finetune": ["finetune", "--data", "store", "--out", "run"],
    "pretrain": ["pretrain", "--data", "store", "--out", "run"],
    "night-heads": ["night-heads", "train", "--data", "store", "--task", "age", "--out", "head"],
}


@pytest.mark.usefixtures("no_accelerator")
@pytest.mark.parametrize("device", list(BAD_DEVICES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unusable_device_is_one_line_for_every_command(tmp_path, monkeypatch, command, device):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli([*COMMANDS[command], "--device", device])
    assert_one_line_error(code, err, command)
    assert BAD_DEVICES[device] in err, err


@pytest.mark.usefixtures("no_accelerator")
def test_predict_with_cuda_on_a_cpu_machine_names_the_fix(recording, tmp_path):
    code, out, err = run_cli(["predict", str(recording), "--out", str(tmp_path / "o.csv"), "--device", "cuda"])
    assert_one_line_error(code, err, "predict")
    assert "use --device cpu (or auto)" in err and not (tmp_path / "o.csv").exists()


def test_device_index_beyond_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"'cuda:7' asked for, but this machine has 1 CUDA device \(cuda:0\.\.cuda:0\)"):
        resolve_device("cuda:7")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.usefixtures("no_accelerator")
@pytest.mark.parametrize("device", ["cuda", "mps", "meta", "gpu"])
def test_library_loaders_check_the_device_too(tmp_path, tiny_model, device):
    from s2v_core.inference.embed import load_backbone
    from s2v_core.inference.predict import load_classifier

    save_checkpoint(tmp_path / "bb", Sleep2Vec(TINY, seed=0), TINY)
    for load, folder in ((load_checkpoint, tiny_model), (load_classifier, tiny_model), (load_backbone, tmp_path / "bb")):
        with pytest.raises(DeviceError):
            load(folder, device=device)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    assert json.loads(json.dumps(str(resolve_device("CPU")))) == "cpu"
