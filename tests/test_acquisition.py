"""Domain randomisation of training nights (s2v_core.synth.acquisition, s2v prepare --augment)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from s2v_core.cli.main import main
from s2v_core.recording.loading import load_night
from s2v_core.shipped import shipped_night
from s2v_core.signals.features import base_feature_names, night_features
from s2v_core.synth.acquisition import EOG_LEAK, randomise_night
from s2v_core.synth.cohort import generate_cohort


@pytest.fixture(scope="module")
def night():
    psg, hyp = shipped_night()
    return load_night(psg, hyp)


def test_randomising_keeps_stages_and_shapes_and_changes_signals(night):
    r = randomise_night(night, np.random.default_rng(0))
    assert r.n_epochs == night.n_epochs and (r.stages == night.stages).all() and r.meta == night.meta
    for m in night.signals:
        assert r.signals[m].shape == night.signals[m].shape and r.signals[m].dtype == np.float32
        assert "randomised" in r.provenance[m].method
        assert not np.array_equal(np.nan_to_num(r.signals[m]), np.nan_to_num(night.signals[m])), m
    assert np.array_equal(night.signals["eeg"], load_night(*shipped_night()).signals["eeg"])  # input untouched


def test_randomising_is_reproducible_and_seed_dependent(night):
    a = randomise_night(night, np.random.default_rng(5))
    b = randomise_night(night, np.random.default_rng(5))
    c = randomise_night(night, np.random.default_rng(6))
    assert all(np.array_equal(a.signals[m], b.signals[m], equal_nan=True) for m in a.signals)
    assert not np.array_equal(a.signals["eeg"], c.signals["eeg"], equal_nan=True)


def test_the_features_the_model_reads_mostly_survive_randomisation(night):
    r = randomise_night(night, np.random.default_rng(1))
    ok = night.epoch_valid["eeg"] & r.epoch_valid["eeg"]
    a, b = night_features("eeg", night.signals["eeg"], ok), night_features("eeg", r.signals["eeg"], ok)
    k = len(base_feature_names("eeg"))
    corr = [np.corrcoef(a[ok, j], b[ok, j])[0, 1] for j in range(k) if a[ok, j].std() > 0]
    assert np.median(corr) > 0.8


def test_eog_leaks_into_the_eeg_by_a_share_within_its_range(night):
    """Half the copies get 'another reference': EEG + u * EOG, u in EOG_LEAK (a larger share taught
    models that strong slow EEG activity may be eye movements: bench/augment_ablation.py)."""
    mods, n = ("eeg", "eog"), 120  # one hour of the two channels is enough (and fast)
    short = dataclasses.replace(night, signals={m: night.signals[m][:n] for m in mods}, stages=night.stages[:n],
                                epoch_valid={m: night.epoch_valid[m][:n] for m in mods},
                                provenance={m: p for m, p in night.provenance.items() if m in mods})  # fmt: skip
    shares = []
    for seed in range(6):
        with_leak = randomise_night(short, np.random.default_rng(seed))
        without = randomise_night(short, np.random.default_rng(seed), eog_leak=(0.0, 0.0))
        eog = np.nan_to_num(with_leak.signals["eog"]).ravel().astype(np.float64)
        diff = (np.nan_to_num(with_leak.signals["eeg"]) - np.nan_to_num(without.signals["eeg"])).ravel()
        assert np.array_equal(with_leak.signals["eog"], without.signals["eog"], equal_nan=True)
        shares.append(float(diff @ eog / (eog @ eog)))
        np.testing.assert_allclose(diff, shares[-1] * eog, atol=1e-3 * np.abs(eog).max())  # nothing else differs
    leaked = [u for u in shares if u != 0.0]
    assert 0 < len(leaked) < len(shares), shares  # about half the copies
    assert all(EOG_LEAK[0] - 1e-4 <= u <= EOG_LEAK[1] + 1e-4 for u in leaked), shares


def test_prepare_augment_writes_copies_of_train_nights_only(tmp_path):
    generate_cohort(4, tmp_path / "c", seed=3, hours=0.5, progress=False)
    assert main(["prepare", str(tmp_path / "c"), "--out", str(tmp_path / "s"), "--augment", "2", "--quiet"]) == 0
    m = pd.read_csv(tmp_path / "s" / "manifest.csv")
    copies = m[m["night"].str.contains("~aug")]
    originals = m[~m["night"].str.contains("~aug")]
    assert (copies["split"] == "train").all()
    train = originals[originals["split"] == "train"]
    assert len(copies) == 2 * len(train) > 0
    for _, row in copies.iterrows():
        base = row["night"].split("~aug")[0]
        assert row["subject"] == originals.set_index("night").loc[base, "subject"]
