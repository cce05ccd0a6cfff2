import numpy as np
import pytest
import torch

from s2v_core.checkpoint import save_checkpoint
from s2v_core.errors import S2VError
from s2v_core.inference import load_classifier, predict_night
from s2v_core.loading import load_night
from s2v_core.model import HeadConfig, Sleep2VecClassifier, get_preset
from s2v_core.sample import shipped_night


@pytest.fixture(scope="module")
def night():
    psg, hyp = shipped_night()
    return load_night(psg, hyp)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    cfg = get_preset("tiny")
    clf = Sleep2VecClassifier(cfg, HeadConfig(), seed=0)
    # make the gates non-uniform so subsets change the output in a checkable way
    with torch.no_grad():  # non-uniform gates, so subsets change the output in a checkable way
        clf.fusion.logits.copy_(torch.linspace(-1, 1, len(cfg.modalities)))
    d = tmp_path_factory.mktemp("clf")
    save_checkpoint(d, clf, cfg)
    m, _, _ = load_classifier(d)
    return m


def test_full_night_prediction_shapes(night, model):
    pred = predict_night(model, night)
    n = night.n_epochs
    assert pred.stages.shape == (n,) and pred.probabilities.shape == (n, 5)
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1, atol=1e-5)
    assert pred.modalities == night.modalities
    assert pred.epoch_gates.shape == (n, 9)
    np.testing.assert_allclose(pred.epoch_gates.sum(axis=1), 1, atol=1e-5)
    assert abs(sum(pred.global_gates.values()) - 1) < 1e-5
    frame = pred.to_frame(night.start_time)
    assert len(frame) == n and {"clock_time", "label", "p_REM", "gate_eeg"} <= set(frame.columns)


def test_subsets_change_prediction_and_gates(night, model):
    full = predict_night(model, night)
    eeg = predict_night(model, night, ("eeg",))
    assert eeg.modalities == ("eeg",) and eeg.global_gates == {"eeg": 1.0}
    assert not np.allclose(full.probabilities, eeg.probabilities)
    for subset in [("ibi",), ("ibi", "resp"), ("ecg", "effort"), ("eog", "airflow", "spo2")]:
        p = predict_night(model, night, subset)
        assert p.modalities == subset and np.isfinite(p.probabilities).all()
    assert predict_night(model, night, ("spo2", "eog")).modalities == ("eog", "spo2")  # canonical order


def test_all_windows_batched_equals_one_window_at_a_time(night, model):
    """One batched forward over every window equals running each window alone."""
    whole = predict_night(model, night, window_epochs=40)
    inputs, valid = night.model_inputs()
    for w in range(3):
        sl = slice(40 * w, 40 * (w + 1))
        x = {m: torch.from_numpy(inputs[m][sl][None]) for m in inputs}
        present = {m: torch.tensor([bool(valid[m][sl].any())]) for m in inputs}
        with torch.inference_mode():
            out = model(x, torch.ones(1, 40, dtype=torch.bool), present)
        probs = torch.softmax(out.stage_logits[0], -1).numpy()
        np.testing.assert_allclose(whole.probabilities[sl], probs, atol=1e-5)


def test_bad_subsets(night, model):
    with pytest.raises(S2VError, match="cannot use"):
        predict_night(model, night, ("eeg", "ppg"))
    with pytest.raises(S2VError, match="no modality"):
        predict_night(model, night, ())
