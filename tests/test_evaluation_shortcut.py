"""Site probe, grouped folds, leave-one-site-out driver and intervals over seeds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.neighbors import KNeighborsClassifier

from s2v_core.evaluation.shortcut import (
    leave_one_site_out,
    mean_ci_over_seeds,
    probe_folds,
    site_probe,
    summarise_over_seeds,
)


def _cohort(n_subjects=60, per_subject=3, n_sites=3, d=16, site_shift=0.0, seed=0):
    """Embeddings of nights: subject-specific vector + optional site offset + noise."""
    rng = np.random.default_rng(seed)
    subject_site = rng.integers(0, n_sites, n_subjects)
    site_means = rng.normal(size=(n_sites, d)) * site_shift
    subject_vec = rng.normal(size=(n_subjects, d))
    groups = np.repeat(np.arange(n_subjects), per_subject)
    sites = np.array([f"site{s}" for s in subject_site[groups]])
    x = (
        subject_vec[groups]
        + site_means[subject_site[groups]]
        + 0.1 * rng.normal(size=(groups.size, d))
    )
    return x.astype(np.float32), sites, groups


@pytest.mark.parametrize("method", ["logistic", "knn"])
def test_strong_site_offset_gives_score_near_one(method):
    x, sites, groups = _cohort(site_shift=4.0)
    res = site_probe(x, sites, groups=groups, method=method)
    assert res["n_sites"] == 3 and res["chance"] == pytest.approx(1 / 3)
    assert res["balanced_accuracy"] > 0.95
    assert res["shortcut_score"] > 0.9
    assert res["n_splits"] == 5 and len(res["fold_balanced_accuracy"]) == 5


@pytest.mark.parametrize("method", ["logistic", "knn"])
def test_pure_noise_gives_score_near_zero(method):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 16))
    sites = rng.integers(0, 3, 600)
    res = site_probe(x, sites, method=method, seed=2)
    assert abs(res["shortcut_score"]) < 0.12
    assert res["shortcut_score"] == pytest.approx((res["balanced_accuracy"] - 1 / 3) / (2 / 3))


def test_grouped_folds_never_split_a_subject():
    _, sites, groups = _cohort(n_subjects=40, per_subject=4)
    folds = probe_folds(sites, groups=groups, n_splits=5, seed=3)
    assert len(folds) == 5
    seen = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(seen), np.arange(sites.size))  # each sample tested once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


def test_grouping_stops_a_subject_memorising_probe():
    # no site signal at all, but a 1-NN recognises each subject's own other nights:
    # without grouping it "decodes" the site perfectly; with grouping it is at chance
    x, sites, groups = _cohort(n_subjects=60, per_subject=3, site_shift=0.0)
    probe = KNeighborsClassifier(n_neighbors=1)
    leaky = site_probe(x, sites, estimator=probe)
    grouped = site_probe(x, sites, groups=groups, estimator=probe)
    assert leaky["shortcut_score"] > 0.95 and leaky["method"] == "custom"
    assert grouped["shortcut_score"] < 0.3


def test_constant_probe_scores_exactly_chance():
    x, sites, groups = _cohort(n_subjects=30, per_subject=2)
    res = site_probe(
        x, sites, groups=groups, estimator=DummyClassifier(strategy="constant", constant="site0")
    )
    assert res["balanced_accuracy"] == pytest.approx(1 / 3)
    assert res["shortcut_score"] == pytest.approx(0.0)


def test_tiny_cohort_with_a_single_subject_site_runs_quietly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4))
    groups = np.repeat(np.arange(4), 3)
    sites = np.array(["a"] * 3 + ["b"] * 9)  # site "a" is one subject: a fold trains without it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = site_probe(x, sites, groups=groups)
        knn = site_probe(x + 5 * (sites == "b")[:, None], sites, method="knn")
    assert res["n_splits"] == 4 and len(res["fold_balanced_accuracy"]) == 4
    assert knn["shortcut_score"] == pytest.approx(1.0)  # k is capped by the rarest site


def test_site_probe_rejects_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="at least 2 sites"):
        site_probe(x, np.zeros(10))
    with pytest.raises(ValueError, match="unknown method"):
        site_probe(x, np.arange(10) % 2, method="svm")
    with pytest.raises(ValueError, match="shape"):
        site_probe(x, np.arange(9) % 2)
    with pytest.raises(ValueError, match="2 distinct subjects"):
        probe_folds(np.arange(10) % 2, groups=np.zeros(10))


def test_leave_one_site_out_driver():
    night_ref = np.array([0, 1, 2, 2, 3, 4, 4, 0])
    nights = {
        "A": [{"site": "A", "id": i} for i in range(3)],
        "B": [{"site": "B", "id": i} for i in range(2)],
        "C": [{"site": "C", "id": 0}],
        "empty": [],
    }
    seen_train = {}

    def fit_predict(train, test):
        held_out = test[0]["site"]
        seen_train[held_out] = {n["site"] for n in train}
        pred = night_ref if held_out != "C" else np.zeros_like(night_ref)  # C: always W
        return [(night_ref, pred) for _ in test]

    frame = leave_one_site_out(fit_predict, nights, n_boot=100)
    assert list(frame["site"]) == ["A", "B", "C"]
    assert seen_train == {"A": {"B", "C"}, "B": {"A", "C"}, "C": {"A", "B"}}
    assert list(frame["n_train_nights"]) == [3, 4, 5]
    assert list(frame["n_test_nights"]) == [3, 2, 1]
    assert list(frame["n_epochs"]) == [24, 16, 8]
    a = frame.set_index("site")
    assert a.loc["A", "kappa"] == 1.0 and a.loc["A", "kappa_low"] == 1.0
    assert a.loc["C", "accuracy"] == pytest.approx(2 / 8)
    assert a.loc["C", "kappa"] == pytest.approx(0.0)
    assert a.loc["C", "accuracy_low"] <= a.loc["C", "accuracy"] <= a.loc["C", "accuracy_high"]

    with pytest.raises(ValueError, match="pairs for"):
        leave_one_site_out(lambda tr, te: [], nights)
    with pytest.raises(ValueError, match="at least 2 sites"):
        leave_one_site_out(fit_predict, {"A": nights["A"], "B": []})


def test_mean_ci_over_seeds_known_values():
    mean, low, high = mean_ci_over_seeds([1.0, 2.0, 3.0])
    t_975_df2 = 4.302652729749464  # Student t quantile, 2 degrees of freedom
    half = t_975_df2 * 1.0 / math.sqrt(3)  # sample sd of [1, 2, 3] is 1
    assert mean == 2.0
    assert low == pytest.approx(2.0 - half) and high == pytest.approx(2.0 + half)
    _, lo90, hi90 = mean_ci_over_seeds([1.0, 2.0, 3.0], level=0.90)
    assert low < lo90 < 2.0 < hi90 < high
    assert mean_ci_over_seeds([0.7, 0.7, 0.7]) == (pytest.approx(0.7),) * 3
    mean, low, high = mean_ci_over_seeds([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="finite"):
        mean_ci_over_seeds([0.5, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        mean_ci_over_seeds([])


def test_summarise_over_seeds():
    frame = summarise_over_seeds({"DASH": [0.69, 0.70, 0.71], "InfoNCE": [0.66, 0.67, 0.68]})
    assert list(frame.index) == ["DASH", "InfoNCE"]
    assert frame.loc["DASH", "mean"] == pytest.approx(0.70)
    assert frame.loc["InfoNCE", "n_seeds"] == 3
    assert frame.loc["DASH", "low"] < 0.70 < frame.loc["DASH", "high"]
