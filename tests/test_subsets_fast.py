"""Many modality subsets of one night at once (issue 14, point 5): each modality encoded once, only
the gated fusion and the staging head run per subset; the results equal ``predict_night`` per subset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from s2v_core.errors import S2VError
from s2v_core.evaluation.cohort import evaluate_cohort
from s2v_core.evaluation.robustness import all_subsets
from s2v_core.evaluation.staging import staging_metrics
from s2v_core.inference import subsets as fast
from s2v_core.inference.predict import NonFiniteOutputError, load_classifier, predict_night
from s2v_core.inference.subsets import encode_night, predict_subsets, work_units
from s2v_core.modalities import MODALITIES
from s2v_core.model import HeadConfig, Sleep2VecClassifier, get_preset
from s2v_core.recording.loading import load_night
from s2v_core.shipped import SAMPLE_DIR, default_model_dir, shipped_night
from s2v_core.views import subsets as views_subsets
from s2v_core.views.subsets import SubsetStages, progress_text, quick_subsets, time_left
from tests.conftest import write_tiny_classifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ATOL = 1e-4  # on probabilities and gate weights


@pytest.fixture(scope="module")
def night():
    psg, hyp = shipped_night()
    return load_night(psg, hyp)  # the 1-h nine-modality excerpt, 120 epochs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Raw-sample tokenizers, per-epoch gates that vary, spread global gates."""
    folder = write_tiny_classifier(tmp_path_factory.mktemp("clf") / "best", vary_epoch_gates=True)
    return load_classifier(folder)[0]


@pytest.fixture(scope="module")
def shipped():
    """The shipped model (engineered-feature tokenizers), with its training feature ranges."""
    model, _, extra = load_classifier(default_model_dir())
    return model, extra.get("feature_ranges")


SUBSETS = [
    ("eeg",), ("spo2",), ("ibi",),  # single modalities
    ("eeg", "eog"), ("ibi", "resp"), ("ecg", "effort"), ("emg", "airflow", "spo2"),
    tuple(m for m in MODALITIES if m != "eeg"),  # leave-one-out
    MODALITIES,  # the full set
]  # fmt: skip


def assert_same(fast_pred, ref, *, embeddings=False):
    """Everything a Prediction holds agrees (to float rounding; stages except exact ties)."""
    assert fast_pred.modalities == ref.modalities
    np.testing.assert_allclose(fast_pred.probabilities, ref.probabilities, atol=ATOL, rtol=0)
    differ = fast_pred.stages != ref.stages
    if differ.any():  # only where the two best stages are tied to float rounding
        top2 = np.sort(ref.probabilities[differ], axis=1)[:, -2:]
        np.testing.assert_allclose(top2[:, 0], top2[:, 1], atol=ATOL)
    np.testing.assert_allclose(fast_pred.epoch_gates, ref.epoch_gates, atol=ATOL, rtol=0)
    assert fast_pred.global_gates == pytest.approx(ref.global_gates, abs=1e-6)
    np.testing.assert_array_equal(fast_pred.coverage, ref.coverage)
    assert fast_pred.warnings == ref.warnings
    assert fast_pred.model_id == ref.model_id
    if embeddings:
        np.testing.assert_allclose(fast_pred.embeddings, ref.embeddings, atol=1e-4, rtol=0)


# --- the library path ------------------------------------------------------------------------------
@pytest.mark.parametrize("window_epochs", [120, 50])  # one window; three, the last one padded
def test_every_subset_equals_predict_night_tiny_model(night, tiny, window_epochs):
    preds = predict_subsets(tiny, night, SUBSETS, window_epochs=window_epochs, with_embeddings=True, name="t")
    assert list(preds) == SUBSETS
    for subset in SUBSETS:
        ref = predict_night(tiny, night, subset, window_epochs=window_epochs, with_embeddings=True, name="t")
        assert_same(preds[subset], ref, embeddings=True)
    # the subsets really differ (else the comparison above would prove little)
    assert not np.allclose(preds[("eeg",)].probabilities, preds[MODALITIES].probabilities, atol=1e-3)


def test_every_subset_equals_predict_night_shipped_model(night, shipped):
    model, ranges = shipped
    preds = predict_subsets(model, night, SUBSETS, ranges=ranges, name="s")
    for subset in SUBSETS:
        assert_same(preds[subset], predict_night(model, night, subset, ranges=ranges, name="s"))


def test_all_subsets_of_three_modalities(night, shipped):
    model, _ = shipped
    subsets = all_subsets(("ecg", "resp", "spo2"))
    preds = predict_subsets(model, night, subsets, batch_elements=1)  # one subset per fusion pass
    assert list(preds) == subsets
    for subset in subsets:
        assert_same(preds[subset], predict_night(model, night, subset))


def test_a_modality_missing_from_a_window(night, tiny):
    """EEG invalid for the first 40 epochs: absent from window 0, zero gate there, in every subset."""
    valid = {m: v.copy() for m, v in night.epoch_valid.items()}
    valid["eeg"][:40] = False
    holed = dataclasses.replace(night, epoch_valid=valid)
    subsets = [("eeg",), ("eeg", "ibi"), MODALITIES]
    preds = predict_subsets(tiny, holed, subsets, window_epochs=40)
    for subset in subsets:
        ref = predict_night(tiny, holed, subset, window_epochs=40)
        assert_same(preds[subset], ref)
    np.testing.assert_array_equal(preds[("eeg", "ibi")].epoch_gates[:40, 0], 0.0)
    np.testing.assert_array_equal(preds[("eeg",)].coverage[:40], 0)


def test_encoded_night_is_reused_and_checked(night, tiny):
    encoded = encode_night(tiny, night, window_epochs=40)
    assert encoded.modalities == MODALITIES and encoded.hidden["eeg"].shape == (3, 40, tiny.config.hidden)
    again = predict_subsets(tiny, night, SUBSETS[:4], encoded=encoded, window_epochs=40)
    for subset, pred in again.items():
        assert_same(pred, predict_night(tiny, night, subset, window_epochs=40))
    with pytest.raises(ValueError, match="windows of 120"):
        predict_subsets(tiny, night, [("eeg",)], encoded=encoded)  # other window length
    only_ibi = encode_night(tiny, night, ("ibi",), window_epochs=40)
    with pytest.raises(ValueError, match="lacks eeg"):
        predict_subsets(tiny, night, [("eeg", "ibi")], encoded=only_ibi, window_epochs=40)


def test_subsets_are_checked_canonicalised_and_deduplicated(night, tiny):
    preds = predict_subsets(tiny, night, [("eog", "eeg"), ("eeg", "eog"), ["spo2"]])
    assert list(preds) == [("eeg", "eog"), ("spo2",)]
    assert predict_subsets(tiny, night, []) == {}
    with pytest.raises(S2VError, match="no modality to predict from"):
        predict_subsets(tiny, night, [()])
    with pytest.raises(S2VError, match="cannot use ppg"):
        predict_subsets(tiny, night, [("eeg",), ("ppg",)])


def test_progress_is_monotone_and_ends_at_the_total(night, tiny):
    calls = []
    predict_subsets(tiny, night, all_subsets(MODALITIES), progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert len(calls) >= 3 and done == sorted(done)
    assert all(t == pytest.approx(work_units(night, 9, 511)) for _, t in calls)
    assert done[-1] == pytest.approx(calls[-1][1])


def test_non_finite_outputs_are_an_error(night):
    model = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).eval()
    with torch.no_grad():
        model.staging.mlp[4].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match="non-finite stage scores"):
        predict_subsets(model, night, [("eeg",), ("ibi",)])


class _PlainModel:
    """A classifier seen through an object without ``backbone`` / ``forward_subsets``."""

    def __init__(self, inner):
        self.inner, self.config, self.fusion = inner, inner.config, inner.fusion

    def __call__(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def test_models_that_cannot_fuse_subsets_are_run_one_subset_at_a_time(night, tiny):
    plain = _PlainModel(tiny)
    assert fast.fuses_subsets(tiny) and not fast.fuses_subsets(plain)
    calls = []
    preds = predict_subsets(plain, night, SUBSETS[:3], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]
    for subset in SUBSETS[:3]:
        assert_same(preds[subset], predict_night(tiny, night, subset))


# --- the model's batched fusion --------------------------------------------------------------------
@pytest.mark.parametrize("head", [HeadConfig(), HeadConfig(per_epoch_gate=False, night_outputs=3)])
def test_forward_subsets_equals_forward(head):
    cfg = get_preset("tiny")
    model = Sleep2VecClassifier(cfg, head, seed=1).eval()
    with torch.no_grad():
        model.fusion.logits.copy_(torch.linspace(-1, 1, len(cfg.modalities)))
        if model.fusion.epoch_gates is not None:
            for gate in model.fusion.epoch_gates.values():
                gate.weight.normal_(0, 0.3)
    g = torch.Generator().manual_seed(0)
    B, T = 3, 7
    names = ("eeg", "ecg", "ibi", "spo2")
    inputs = {m: torch.randn(B, T, cfg.token_width(m), generator=g) for m in names}
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[2, 5:] = False  # padding
    present = {m: torch.ones(B, dtype=torch.bool) for m in names}
    present["ecg"][1] = False  # absent from one sample
    subsets = [("eeg",), ("ecg",), ("eeg", "ibi"), ("ecg", "spo2"), names]
    masks = torch.tensor([[m in s for m in cfg.modalities] for s in subsets])
    with torch.inference_mode():
        hidden = model.backbone(inputs, valid, present)
        out = model.forward_subsets(hidden, valid, masks, present)
        assert out.stage_logits.shape == (len(subsets), B, T, 5)
        for k, s in enumerate(subsets):
            ref = model({m: inputs[m] for m in s}, valid, {m: present[m] for m in s})
            torch.testing.assert_close(out.stage_logits[k], ref.stage_logits, atol=1e-5, rtol=0)
            torch.testing.assert_close(out.epoch_weights[k], ref.epoch_weights, atol=1e-6, rtol=0)
            torch.testing.assert_close(out.global_weights[k], ref.global_weights, atol=1e-6, rtol=0)
            torch.testing.assert_close(out.fused[k], ref.fused, atol=1e-5, rtol=0)
            if head.night_outputs:
                torch.testing.assert_close(out.night[k], ref.night, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="not given"):
            model.forward_subsets({"eeg": hidden["eeg"]}, valid, masks, present)
        with pytest.raises(ValueError, match="at least one modality"):
            model.forward_subsets(hidden, valid, torch.zeros(1, len(cfg.modalities), dtype=torch.bool), present)


# --- where the library evaluates many subsets ------------------------------------------------------
def test_cohort_evaluation_of_every_subset_uses_one_pass_per_night(tiny, monkeypatch):
    import s2v_core.evaluation.cohort as ev

    calls = []
    real = ev.predict_subsets

    def counting(model, night, subsets, **kw):
        subsets = list(subsets)
        calls.append((night.meta.night_id, len(subsets)))
        return real(model, night, subsets, **kw)

    monkeypatch.setattr(ev, "predict_subsets", counting)
    mods = ("eeg", "ibi", "spo2")
    res = evaluate_cohort(SAMPLE_DIR, tiny, modalities=mods, every_subset=True, n_boot=5)
    nights = res.per_night["night"].unique()
    assert len(nights) == 1 and calls == [(nights[0], 7)]  # the main subset is the full one
    psg, hyp = shipped_night()
    sample = load_night(psg, hyp)
    for row in res.per_night.itertuples():
        subset = tuple(row.modalities.split("+"))
        want = staging_metrics(sample.stages, predict_night(tiny, sample, subset).stages)
        assert row.kappa == pytest.approx(want.kappa, abs=1e-9), row.subset
        assert row.accuracy == pytest.approx(want.accuracy, abs=1e-9), row.subset


# --- the Modalities page's helpers -----------------------------------------------------------------
def test_quick_subsets():
    quick = quick_subsets(MODALITIES)
    assert quick[:9] == [(m,) for m in MODALITIES]
    assert MODALITIES in quick and ("ibi", "resp") in quick and ("ecg", "effort") in quick
    assert all(tuple(m for m in MODALITIES if m != x) in quick for x in MODALITIES)
    assert len(quick) == len(set(quick)) == 21
    assert quick_subsets(("spo2", "ibi")) == [("ibi",), ("spo2",), ("ibi", "spo2")]


def test_time_estimate():
    assert time_left(0, 10, 3.0) is None
    assert time_left(2.5, 10, 5.0) == pytest.approx(15.0)
    assert time_left(10, 10, 5.0) == 0.0
    assert progress_text("Staging", 2.5, 10, 5.0) == "Staging: 25 % (about 15 s left, 5 s so far)"
    assert progress_text("Staging", 1, 10, 20.0) == "Staging: 10 % (about 3 min 00 s left, 20 s so far)"
    assert progress_text("Staging", 1, 10, 0.1) == "Staging: 10 %"  # too early to tell
    assert progress_text("Staging", 0, 10, 3.0) == "Staging: 0 %"


def test_subset_stages_encode_once_and_stage_each_subset_once(night, tiny, monkeypatch):
    encodes, fused = [], []
    real_encode, real_predict = views_subsets.encode_night, views_subsets.predict_subsets

    def encode(*args, **kwargs):
        encodes.append(1)
        return real_encode(*args, **kwargs)

    def predict(model, night_, subsets, **kwargs):
        fused.append(list(subsets))
        return real_predict(model, night_, subsets, **kwargs)

    monkeypatch.setattr(views_subsets, "encode_night", encode)
    monkeypatch.setattr(views_subsets, "predict_subsets", predict)
    store = SubsetStages(tiny, night, name="t")
    ticks = []
    quick = store.stages(quick_subsets(night.modalities), lambda d, t: ticks.append((d, t)))
    assert list(quick) == quick_subsets(night.modalities)
    for subset in [("eeg",), ("ibi", "resp"), MODALITIES]:
        np.testing.assert_array_equal(quick[subset], predict_night(tiny, night, subset).stages)
    assert ticks and ticks[-1][0] == pytest.approx(ticks[-1][1]) and [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    everything = store.stages(all_subsets(night.modalities))
    assert len(everything) == 511 and len(store.known()) == 511
    assert len(encodes) == 1  # the second call only fused
    assert len(fused[1]) == 511 - len(quick)  # and only the subsets not staged before
    store.stages([("eeg",)])
    assert len(fused) == 2


def test_modalities_page_ranks_all_511_subsets(tmp_path):
    pytest.importorskip("streamlit")
    import json
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    # a model of its own: the page's subset cache cannot already hold this night's stages
    model = write_tiny_classifier(tmp_path / "clf", extra={"nonce": tmp_path.name})
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    at.session_state["model_dir"] = str(model)
    at.switch_page("pages/modalities.py")
    at.run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.radio(key="subset_scope").set_value("all")
    at.run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    ranking = json.loads(at.get("plotly_chart")[0].proto.spec)
    labels = [y for trace in ranking["data"] for y in trace["y"]]
    assert len(labels) == len(set(labels)) == 511 and "+".join(MODALITIES) in labels
    importance = at.dataframe[0].value
    assert set(importance.index) == set(MODALITIES) and (importance["n_with"] == 256).all()


def test_subsets_reuse_the_encoded_base_features_for_the_familiarity_check(night, shipped, tiny, monkeypatch):
    from s2v_core.inference import familiarity
    from s2v_core.signals import features

    model, ranges = shipped
    assert ranges
    encoded = encode_night(model, night, ("eeg", "eog", "ibi"))
    assert set(encoded.base) == {"eeg", "eog", "ibi"}
    calls = []
    monkeypatch.setattr(familiarity, "epoch_features", lambda *a, **k: calls.append(a[0]) or features.epoch_features(*a, **k))
    preds = predict_subsets(model, night, [("eeg",), ("eog", "ibi")], encoded=encoded, ranges=ranges)
    assert calls == []  # every subset's check read the encoded night's features
    for subset, pred in preds.items():
        ref = predict_night(model, night, subset, ranges=ranges)
        assert pred.warnings == ref.warnings
        np.testing.assert_allclose(pred.probabilities, ref.probabilities, atol=ATOL)
    assert encode_night(tiny, night, ("eeg",)).base == {}  # a raw-sample model reads no features
