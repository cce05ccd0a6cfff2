"""Engineered features (s2v_core.signals.features) and the tokenizers' feature branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2v_core.modalities import MODALITIES, SFREQ, samples_per_epoch
from s2v_core.model.config import ConfigError, get_preset
from s2v_core.model.fusion import Sleep2VecClassifier
from s2v_core.model.tokenizer import ModalityTokenizer
from s2v_core.recording.loading import load_night
from s2v_core.shipped import shipped_night
from s2v_core.signals.features import (
    ABSOLUTE_SCALE,
    FEATURE_VERSION,
    base_feature_names,
    epoch_features,
    feature_names,
    features_from_raw,
    n_features,
    night_features,
    normalise_within_night,
)
from s2v_core.signals.resampling import resample


@pytest.fixture(scope="module")
def night():
    psg, hyp = shipped_night()
    return load_night(psg, hyp)


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_modality_has_named_finite_features(night, modality):
    x, ok = night.signals[modality], night.epoch_valid[modality]
    f = night_features(modality, x, ok)
    assert f.shape == (night.n_epochs, n_features(modality)) == (night.n_epochs, len(feature_names(modality)))
    assert f.dtype == np.float32 and np.isfinite(f).all()
    assert np.abs(f).max() <= 5.0 + 1e-6
    assert len(set(feature_names(modality))) == len(feature_names(modality))
    raw = epoch_features(modality, x, ok)
    assert raw.shape == (night.n_epochs, len(base_feature_names(modality)))
    assert np.isfinite(raw[ok]).mean() > 0.95  # features exist where the signal does


@pytest.mark.parametrize("modality", ["eeg", "eog", "emg", "resp", "effort", "airflow"])
def test_features_ignore_gain_and_polarity(night, modality):
    x, ok = np.asarray(night.signals[modality], np.float32), night.epoch_valid[modality]
    a = night_features(modality, x, ok)
    b = night_features(modality, -3.7 * x + 11.0, ok)
    np.testing.assert_allclose(a, b, atol=1e-2)  # float32 rounding of the offset copy


def test_biopotential_features_are_nearly_the_same_from_a_50_hz_recording(night):
    """What a 50-Hz file keeps (up to 25 Hz) is all the features read: after 128 -> 50 -> 128 Hz
    resampling they barely move, unlike the raw samples above 25 Hz."""
    x, ok = np.asarray(night.signals["eeg"], np.float32), night.epoch_valid["eeg"]
    low = resample(resample(x.ravel(), 128, 50), 50, 128)[: x.size].reshape(x.shape)
    a, b = night_features("eeg", x, ok), night_features("eeg", low, ok)
    base = len(base_feature_names("eeg"))
    corr = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(base) if a[:, j].std() > 0]
    assert np.median(corr) > 0.97, corr


def test_invalid_epochs_are_zero_and_do_not_shift_the_normalisation(night):
    x, ok = night.signals["eeg"], night.epoch_valid["eeg"].copy()
    ok[:10] = False
    f = night_features("eeg", x, ok)
    assert (f[:10] == 0).all()
    full = night_features("eeg", x, night.epoch_valid["eeg"])
    base = len(base_feature_names("eeg"))
    assert np.abs(f[10:, :base] - full[10:, :base]).mean() < 0.25  # the medians move a little


def test_normalise_within_night_is_a_robust_z_score():
    rng = np.random.default_rng(0)
    v = np.column_stack([rng.normal(7, 2, 500), np.full(500, 3.0)])
    v[0, 0] = 1e6  # an outlier does not move the median or the IQR
    z = normalise_within_night(v, np.ones(500, bool))
    assert abs(np.median(z[:, 0])) < 0.05 and 0.95 < np.subtract(*np.percentile(z[:, 0], [75, 25])) < 1.05
    assert z[0, 0] == 5.0 and (z[:, 1] == 0).all()  # clipped; a constant column is all zeros


def test_eeg_features_separate_the_stages_of_a_synthetic_night(night):
    f = night_features("eeg", night.signals["eeg"], night.epoch_valid["eeg"])
    names = feature_names("eeg")
    rel_delta = f[:, names.index("rel_delta")]
    stages = night.stages
    assert rel_delta[stages == 3].mean() > rel_delta[stages == 0].mean() + 1.0  # N3 >> W


def test_tokenizer_feature_branch_and_config():
    tok = ModalityTokenizer(0, 8, raw_branch=False, n_features=12)
    assert tok.input_width == 12 and tok(torch.zeros(2, 3, 12)).shape == (2, 3, 8)
    both = ModalityTokenizer(120, 8, n_features=12)
    assert both.input_width == 132 and both(torch.zeros(2, 3, 132)).shape == (2, 3, 8)
    with pytest.raises(ValueError):
        ModalityTokenizer(0, 8, raw_branch=False)
    cfg = get_preset("tiny", raw_branch=False, features=FEATURE_VERSION)
    assert cfg.token_width("eeg") == n_features("eeg") and not cfg.reads_samples
    assert get_preset("tiny", features=FEATURE_VERSION).token_width("ibi") == samples_per_epoch("ibi") + n_features("ibi")
    with pytest.raises(ConfigError, match="features must be 0"):
        get_preset("tiny", features=99)
    with pytest.raises(ConfigError, match="needs raw samples"):
        get_preset("tiny", raw_branch=False)


def test_a_feature_model_predicts_a_night(night):
    from s2v_core.inference.predict import predict_night

    model = Sleep2VecClassifier(get_preset("tiny", raw_branch=False, features=FEATURE_VERSION), seed=0).eval()
    pred = predict_night(model, night, ("eeg", "ibi", "spo2"))
    assert pred.probabilities.shape == (night.n_epochs, 5)
    assert np.isfinite(pred.probabilities).all()


def test_canonical_rates_are_what_the_features_assume():
    assert SFREQ["eeg"] == 128 and SFREQ["ibi"] == 4  # the feature windows are sized for these


@pytest.mark.parametrize("modality", ["eeg", "eog"])
def test_absolute_columns_do_not_depend_on_the_stretch_they_are_computed_over(night, modality):
    """The within-night columns of a 30-min stretch differ from the whole night's; the absolute
    ones (scale-free features on fixed constants) are the same rows, whatever else was recorded."""
    x, ok = night.signals[modality], night.epoch_valid[modality]
    raw = epoch_features(modality, x, ok)
    full = features_from_raw(raw, ok, modality)
    part = features_from_raw(raw[40:100], ok[40:100], modality)
    names = feature_names(modality)
    absolute = [j for j, n in enumerate(names) if n.endswith("@abs")]
    relative = [j for j, n in enumerate(names) if "@" not in n]
    assert len(absolute) == len(ABSOLUTE_SCALE[modality]) > 20
    np.testing.assert_allclose(part[:, absolute], full[40:100, absolute], atol=1e-6)
    assert np.abs(part[:, relative] - full[40:100, relative]).mean() > 0.05
    # amplitudes are never absolute: a gain change must not reach the model
    assert not any(n.startswith(("log_power", "log_std", "log_iqr")) for n in ABSOLUTE_SCALE[modality])


@pytest.mark.parametrize("modality", ["eeg", "eog"])
def test_absolute_constants_put_generated_nights_near_the_unit_scale(night, modality):
    """The fixed centre/spread constants came from the generator's nights; if the generator or a
    feature definition moves, this says the constants must be re-measured."""
    x, ok = night.signals[modality], night.epoch_valid[modality]
    f = night_features(modality, x, ok)[ok]
    names = feature_names(modality)
    cols = f[:, [j for j, n in enumerate(names) if n.endswith("@abs")]]
    med = np.median(cols, axis=0)
    assert np.mean(np.abs(med) < 1.5) > 0.8, dict(zip(ABSOLUTE_SCALE[modality], med.round(2), strict=True))
    assert (np.abs(cols) < 5.0).mean() > 0.95  # hardly anything clipped


def test_features_from_raw_checks_the_width_against_the_modality(night):
    raw = epoch_features("ibi", night.signals["ibi"], night.epoch_valid["ibi"])
    with pytest.raises(ValueError, match="eeg: 10 raw features, expected 28"):
        features_from_raw(raw, night.epoch_valid["ibi"], "eeg")


def test_the_cli_tokenizer_choices_use_the_library_feature_version():
    from s2v_core.cli.options import TOKENIZERS

    assert TOKENIZERS["raw"].get("features", 0) == 0
    assert TOKENIZERS["features"]["features"] == TOKENIZERS["raw+features"]["features"] == FEATURE_VERSION
    for name in ("features-binned", "features-mixed"):
        assert TOKENIZERS[name]["features"] == FEATURE_VERSION and TOKENIZERS[name]["feature_bins"] > 0
