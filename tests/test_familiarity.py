"""Confidence and 'unlike the training data' warnings (s2v_core.inference.familiarity)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from s2v_core.inference.familiarity import night_medians, training_ranges, unfamiliar_modalities
from s2v_core.inference.predict import load_classifier, predict_night
from s2v_core.recording.loading import load_night
from s2v_core.shipped import shipped_night
from s2v_core.signals.features import FEATURE_VERSION, base_feature_names
from s2v_core.train.finetune import FinetuneConfig, finetune
from tests.conftest import synthetic_store

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def night():
    return load_night(*shipped_night())


def _ranges_around(night, modalities, spread=0.05):
    """Ranges from copies of the night itself with small gain changes (features ignore gain)."""
    medians = {m: [night_medians(m, night.signals[m] * g, night.epoch_valid[m]) * (1 + d)
                   for g, d in ((1, -spread), (2, 0), (0.5, spread))] for m in modalities}  # fmt: skip
    return training_ranges(medians)


def test_a_night_like_the_training_nights_is_familiar(night):
    ranges = _ranges_around(night, ("eeg", "ibi"))
    assert ranges["version"] == FEATURE_VERSION and set(ranges["modalities"]) == {"eeg", "ibi"}
    assert len(ranges["modalities"]["eeg"]["lo"]) == len(base_feature_names("eeg"))
    assert unfamiliar_modalities(night, ranges, ("eeg", "ibi")) == {}


def test_white_noise_in_place_of_eeg_is_reported(night):
    ranges = _ranges_around(night, ("eeg",))
    rng = np.random.default_rng(0)
    noise = dataclasses.replace(night, signals={**night.signals, "eeg": rng.normal(0, 20, night.signals["eeg"].shape).astype(np.float32)})
    out = unfamiliar_modalities(noise, ranges, ("eeg",))
    assert set(out) == {"eeg"} and len(out["eeg"]) >= 3


def test_no_ranges_or_another_feature_version_gives_no_warning(night):
    assert unfamiliar_modalities(night, None, ("eeg",)) == {}
    assert unfamiliar_modalities(night, {"version": 999, "modalities": {}}, ("eeg",)) == {}


def test_a_feature_model_keeps_its_training_ranges_and_predictions_carry_confidence(tmp_path, night):
    _, store = synthetic_store(tmp_path, 5, hours=0.5)
    cfg = FinetuneConfig(epochs=1, batch_size=4, window_epochs=20, model_overrides={"raw_branch": False, "features": FEATURE_VERSION},
                         preset="tiny", freeze_tokenizers=False)  # fmt: skip
    res = finetune(store, tmp_path / "run", cfg)
    model, _, extra = load_classifier(res.checkpoint)
    ranges = extra["feature_ranges"]
    assert ranges["version"] == FEATURE_VERSION and "ecg" in ranges["modalities"]  # modalities of >= 3 train nights
    pred = predict_night(model, night, ("eeg", "ibi"), ranges=ranges)
    assert pred.confidence.shape == (night.n_epochs,) and (pred.confidence >= 0.2).all() and (pred.confidence <= 1).all()
    assert "confidence" in pred.to_frame().columns
    assert any("low confidence" in w for w in pred.warnings) == (float(pred.confidence.mean()) < 0.55)


def _counting(monkeypatch):
    """Count calls of ``epoch_features`` per modality, wherever the library calls it from."""
    from s2v_core import night as night_module
    from s2v_core.inference import familiarity
    from s2v_core.signals import features

    calls: dict[str, int] = {}
    real = features.epoch_features

    def counted(modality, *args, **kwargs):
        calls[modality] = calls.get(modality, 0) + 1
        return real(modality, *args, **kwargs)

    for module in (features, night_module, familiarity):
        monkeypatch.setattr(module, "epoch_features", counted)
    return calls


def test_a_prediction_with_ranges_computes_each_modalitys_features_once(monkeypatch, night):
    """The model's engineered inputs and the familiarity check share one feature pass per modality,
    and the result is what both computed on their own give."""
    from s2v_core.shipped import default_model_dir

    model, _, extra = load_classifier(default_model_dir())
    ranges = extra["feature_ranges"]
    mods = ("eeg", "eog", "ibi")
    # the reference, computed the long way: inputs and warnings each from their own feature pass
    expected_unfamiliar = unfamiliar_modalities(night, ranges, mods)
    noisy = dataclasses.replace(night, signals={**night.signals, "eeg": np.random.default_rng(1).normal(
        0, 20, night.signals["eeg"].shape).astype(np.float32)})  # fmt: skip
    expected_noisy = unfamiliar_modalities(noisy, ranges, mods)
    assert "eeg" in expected_noisy  # the check can fire, so the comparison below means something
    ref = predict_night(model, night, mods)  # no ranges: no familiarity pass

    calls = _counting(monkeypatch)
    pred = predict_night(model, night, mods, ranges=ranges)
    assert calls == {m: 1 for m in mods}
    np.testing.assert_array_equal(pred.probabilities, ref.probabilities)
    assert not any("looks unlike" in w for w in pred.warnings) and expected_unfamiliar == {}
    calls.clear()
    noisy_pred = predict_night(model, noisy, mods, ranges=ranges)
    assert calls == {m: 1 for m in mods}
    assert any(w.startswith("eeg looks unlike") for w in noisy_pred.warnings)
    base = noisy.base_features(mods)
    assert unfamiliar_modalities(noisy, ranges, mods, base=base) == expected_noisy


def test_night_inputs_from_given_base_features_equal_computed_ones(night):
    mods = ("eeg", "emg", "spo2")
    base = night.base_features(mods + ("not-a-modality",))
    assert set(base) == set(mods)
    fresh, valid = night.model_inputs(mods, features=FEATURE_VERSION)
    reused, valid2 = night.model_inputs(mods, features=FEATURE_VERSION, base=base)
    for m in mods:
        np.testing.assert_array_equal(reused[m], fresh[m])
        np.testing.assert_array_equal(valid2[m], valid[m])
    partial, _ = night.model_inputs(mods, features=FEATURE_VERSION, base={"eeg": base["eeg"]})
    for m in mods:  # a modality missing from base is computed
        np.testing.assert_array_equal(partial[m], fresh[m])


def test_familiar_subset_leaves_out_unfamiliar_modalities_but_never_all():
    from s2v_core.inference.familiarity import familiar_subset

    assert familiar_subset(("eeg", "eog", "ibi"), {"eog": ["rel_delta"]}) == (("eeg", "ibi"), ("eog",))
    assert familiar_subset(("eeg", "eog"), {}) == (("eeg", "eog"), ())
    assert familiar_subset(("eog",), {"eog": ["x"], "emg": ["y"]}) == (("eog",), ())  # nothing better to use
    assert familiar_subset(("eeg", "eog"), {"eeg": ["x"], "eog": ["y"]}) == (("eeg", "eog"), ())


def _noisy_eeg(night):
    rng = np.random.default_rng(1)
    return dataclasses.replace(night, signals={**night.signals, "eeg": rng.normal(
        0, 20, night.signals["eeg"].shape).astype(np.float32)})  # fmt: skip


def test_an_unfamiliar_modality_is_left_out_when_asked(night):
    from s2v_core.shipped import default_model_dir

    model, _, extra = load_classifier(default_model_dir())
    ranges = extra["feature_ranges"]
    noisy = _noisy_eeg(night)
    asked = ("eeg", "eog", "ibi")
    pred = predict_night(model, noisy, asked, ranges=ranges, leave_out_unfamiliar=True)
    assert pred.modalities == ("eog", "ibi") and pred.left_out == ("eeg",)
    same = predict_night(model, noisy, ("eog", "ibi"), ranges=ranges)
    np.testing.assert_array_equal(pred.probabilities, same.probabilities)
    assert any(w.startswith("eeg left out: its signals look unlike") and "staged from eog, ibi" in w
               for w in pred.warnings), pred.warnings  # fmt: skip
    kept = predict_night(model, noisy, asked, ranges=ranges)  # not asked: every modality is used
    assert kept.modalities == asked and kept.left_out == ()
    assert any(w.startswith("eeg looks unlike") for w in kept.warnings)
    # without ranges nothing can be judged, and a familiar night loses nothing
    assert predict_night(model, noisy, asked, leave_out_unfamiliar=True).modalities == asked
    assert predict_night(model, night, asked, ranges=ranges, leave_out_unfamiliar=True).left_out == ()
    # only unfamiliar modalities asked for: all are used, with the warning
    alone = predict_night(model, noisy, ("eeg",), ranges=ranges, leave_out_unfamiliar=True)
    assert alone.modalities == ("eeg",) and alone.left_out == ()
    assert any(w.startswith("eeg looks unlike") for w in alone.warnings)


def test_predict_cli_leaves_out_an_unfamiliar_channel_unless_told(tmp_path, capsys):
    """``s2v predict`` on a PSG whose EEG channel holds white noise: staged from the others, said
    in the JSON and the warnings; ``--keep-unfamiliar`` and ``--modalities`` use what they name."""
    import json

    from s2v_core.cli.main import main
    from tests.edf_factory import with_noise_channel

    psg, _ = shipped_night()
    path = with_noise_channel(psg, tmp_path / "noisy-eeg.edf")

    def run(*extra):
        assert main(["predict", str(path), "--out", str(tmp_path / "p.csv"), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    default = run()
    assert default["left_out"] == ["eeg"] and "eeg" not in default["modalities"]
    assert any(w.startswith("eeg left out") for w in default["model_warnings"])
    kept = run("--keep-unfamiliar")
    assert kept["left_out"] == [] and "eeg" in kept["modalities"]
    assert any(w.startswith("eeg looks unlike") for w in kept["model_warnings"])
    named = run("--modalities", "eeg,eog")
    assert named["left_out"] == [] and named["modalities"] == ["eeg", "eog"]


@pytest.mark.realdata
def test_the_shipped_model_says_when_a_public_recording_was_in_its_training(tmp_path, capsys):
    """The DREAMS excerpts and slpdb records are in the shipped model's adaptation stage: staging
    one of them says so (its agreement is not a fair test); a copy with one byte changed does not."""
    import json

    import s2v_core
    from s2v_core.cli.main import main
    from tests.conftest import shared_path

    excerpt = shared_path("dreams", "excerpt1.txt")
    hyp = shared_path("dreams", "Hypnogram_excerpt1.txt")
    if not excerpt.exists():
        pytest.skip("no DREAMS data in ../shared/data")
    assert main(["predict", str(excerpt), "--hypnogram", str(hyp), "--out", str(tmp_path / "p.csv"), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["model_warnings"]
    assert any(w.startswith("this recording was part of this model's training data (excerpt1, subject excerpt1)")
               for w in warnings), warnings  # fmt: skip
    assert any("training data (slp01a" in w for w in s2v_core.stage(shared_path("slpdb", "slp01a.ecg")).warnings)
    copy = tmp_path / "excerpt1.txt"
    data = excerpt.read_bytes()
    copy.write_bytes(data[:-2] + (b"0\n" if data[-2:] != b"0\n" else b"1\n"))
    assert main(["predict", str(copy), "--hypnogram", str(hyp), "--out", str(tmp_path / "q.csv"), "--json"]) == 0
    assert not any("training data" in w for w in json.loads(capsys.readouterr().out)["model_warnings"])
