"""Metrics over every modality subset: enumeration, caching, importance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s2v_core.evaluation.robustness import (
    all_subsets,
    modality_importance,
    subset_label,
    subset_metrics,
)
from s2v_core.modalities import MODALITIES

REFERENCE = np.array([0, 0, 1, 2, 2, 2, 3, 3, 2, 4, 4, 0, -1, 2])


def test_all_subsets_counts_and_order():
    subsets = all_subsets(MODALITIES)
    assert len(subsets) == 511 and len(set(subsets)) == 511
    assert subsets[0] == ("eeg",) and subsets[-1] == MODALITIES
    sizes = [len(s) for s in subsets]
    assert sizes == sorted(sizes)
    order = {m: i for i, m in enumerate(MODALITIES)}
    assert all([order[m] for m in s] == sorted(order[m] for m in s) for s in subsets)
    # any input order and duplicates give the canonical result
    assert all_subsets(["spo2", "eeg", "ibi", "eeg"]) == [
        ("eeg",),
        ("ibi",),
        ("spo2",),
        ("eeg", "ibi"),
        ("eeg", "spo2"),
        ("ibi", "spo2"),
        ("eeg", "ibi", "spo2"),
    ]
    with pytest.raises(ValueError, match="unknown modality 'EEG'"):
        all_subsets(["eeg", "EEG"])


def test_subset_label():
    assert subset_label(["eog", "eeg"]) == "eeg+eog"


class CountingModel:
    """Perfect when EEG is in the subset, otherwise always N2."""

    def __init__(self, reference):
        self.reference = np.asarray(reference)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, subset):
        self.calls.append(subset)
        if "eeg" in subset:
            return np.where(self.reference < 0, 2, self.reference)
        return np.full(self.reference.shape, 2)


def test_subset_metrics_values_and_cache():
    model = CountingModel(REFERENCE)
    cache: dict = {}
    frame = subset_metrics(model, ["eeg", "eog", "emg"], REFERENCE, cache=cache)
    assert len(model.calls) == 7 and len(set(model.calls)) == 7
    assert list(frame["subset"]) == [
        "eeg",
        "eog",
        "emg",
        "eeg+eog",
        "eeg+emg",
        "eog+emg",
        "eeg+eog+emg",
    ]
    assert list(frame["n_modalities"]) == [1, 1, 1, 2, 2, 2, 3]
    assert (frame["n_epochs"] == 13).all()  # one unscored reference epoch excluded
    with_eeg = frame["subset"].str.contains("eeg")
    assert (frame.loc[with_eeg, ["accuracy", "kappa", "macro_f1", "mcc"]] == 1.0).all().all()
    n2_share = np.mean(REFERENCE[REFERENCE >= 0] == 2)
    np.testing.assert_allclose(frame.loc[~with_eeg, "accuracy"], n2_share)
    np.testing.assert_allclose(frame.loc[~with_eeg, "kappa"], 0.0, atol=1e-12)
    # the same cache: no new predictions, even with another class merging
    again = subset_metrics(model, ["emg", "eeg", "eog"], REFERENCE, cache=cache, n_classes=3)
    assert len(model.calls) == 7 and set(cache) == set(model.calls)
    assert (again.loc[again["subset"] == "eeg", "kappa"] == 1.0).all()


def test_nine_modalities_call_predict_once_per_subset():
    model = CountingModel(REFERENCE)
    done = []
    frame = subset_metrics(
        model, MODALITIES, REFERENCE, progress=lambda i, n, s: done.append((i, n))
    )
    assert len(frame) == 511 and len(model.calls) == 511
    assert done[0] == (1, 511) and done[-1] == (511, 511)
    assert frame["subset"].iloc[-1] == "+".join(MODALITIES)


def test_max_subsets_keeps_the_full_set():
    model = CountingModel(REFERENCE)
    frame = subset_metrics(model, ["eeg", "eog", "emg"], REFERENCE, max_subsets=2)
    assert list(frame["subset"]) == ["eeg", "eog", "eeg+eog+emg"]
    assert len(model.calls) == 3


def test_bad_predictions_and_references():
    with pytest.raises(ValueError, match="returned shape"):
        subset_metrics(lambda s: np.zeros(3), ["eeg"], REFERENCE)
    with pytest.raises(ValueError, match="no scored epoch"):
        subset_metrics(lambda s: np.zeros(3), ["eeg"], [-1, -1, -1])
    frame = subset_metrics(lambda s: np.full(REFERENCE.shape, -1), ["eeg"], REFERENCE)
    assert frame["n_epochs"].iloc[0] == 0 and math.isnan(frame["kappa"].iloc[0])


def test_modality_importance():
    frame = subset_metrics(CountingModel(REFERENCE), ["eeg", "eog", "emg"], REFERENCE)
    imp = modality_importance(frame)
    assert imp.index[0] == "eeg"
    assert imp.loc["eeg", "mean_with"] == pytest.approx(1.0)
    assert imp.loc["eeg", "mean_without"] == pytest.approx(0.0)
    assert imp.loc["eeg", "delta"] == pytest.approx(1.0)
    # eog: with = {eog, eeg+eog, eog+emg, all} -> [0, 1, 0, 1]; without = {eeg, emg, eeg+emg} -> [1, 0, 1]
    assert imp.loc["eog", "mean_with"] == pytest.approx(0.5)
    assert imp.loc["eog", "mean_without"] == pytest.approx(2 / 3)
    assert imp.loc["eog", "delta"] == pytest.approx(-1 / 6)
    assert list(imp.loc["eog", ["n_with", "n_without"]]) == [4, 3]
    # NaN metrics are ignored, not counted as zero
    frame.loc[frame["subset"] == "eog", "kappa"] = np.nan
    imp = modality_importance(frame)
    assert imp.loc["eog", "n_with"] == 3 and imp.loc["eog", "mean_with"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="needs columns"):
        modality_importance(frame, metric="auc")
