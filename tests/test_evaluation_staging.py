"""Staging metrics against hand-computed values, class merging, corner cases, bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, matthews_corrcoef

from s2v_core.evaluation.staging import (
    bootstrap_ci,
    cohort_metrics,
    confusion_counts,
    metrics_from_confusion,
    staging_metrics,
)

# 10 epochs; confusion worked out by hand (rows = reference, columns = predicted)
REF = np.array([0, 0, 0, 1, 2, 2, 2, 3, 4, 4])
PRED = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 2])
CONFUSION = np.array(
    [
        [2, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 2, 1, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 1, 0, 1],
    ]
)


def test_hand_computed_five_class():
    m = staging_metrics(REF, PRED)
    np.testing.assert_array_equal(m.confusion, CONFUSION)
    assert m.n_epochs == 10 and m.n_excluded == 0
    assert m.accuracy == pytest.approx(0.7)
    # kappa = (po - pe) / (1 - pe); pe = sum(row_k * col_k) / n^2
    rows, cols = CONFUSION.sum(1), CONFUSION.sum(0)  # [3,1,3,1,2], [2,2,3,2,1]
    pe = (rows * cols).sum() / 100  # 0.21
    assert pe == pytest.approx(0.21)
    assert m.kappa == pytest.approx((0.7 - 0.21) / (1 - 0.21))  # 0.6203
    assert m.per_stage_f1 == pytest.approx(
        {"W": 0.8, "N1": 2 / 3, "N2": 2 / 3, "N3": 2 / 3, "REM": 2 / 3}
    )
    assert m.macro_f1 == pytest.approx((0.8 + 4 * 2 / 3) / 5)
    # multi-class MCC: (c*s - sum p_k t_k) / sqrt((s^2 - sum p^2)(s^2 - sum t^2))
    assert m.mcc == pytest.approx((7 * 10 - 21) / math.sqrt((100 - 22) * (100 - 24)))
    assert m.class_names == ("W", "N1", "N2", "N3", "REM")


def test_unscored_epochs_are_excluded_and_counted():
    ref = np.concatenate([REF, [-1, 2, -1]])
    pred = np.concatenate([PRED, [2, -1, -1]])
    m = staging_metrics(ref, pred)
    assert m.n_epochs == 10 and m.n_excluded == 3
    np.testing.assert_array_equal(m.confusion, CONFUSION)
    assert m.kappa == pytest.approx(staging_metrics(REF, PRED).kappa)


def test_four_and_three_class_merging():
    m4 = staging_metrics(REF, PRED, n_classes=4)
    assert m4.class_names == ("W", "N1+N2", "N3", "REM")
    # REM (4) becomes class 3 in 4-class: the REM row is [0, 1 (N2), 0, 1]
    np.testing.assert_array_equal(m4.confusion[3], [0, 1, 0, 1])
    np.testing.assert_array_equal(m4.confusion.sum(), 10)
    # merged: ref [0,0,0,1,1,1,1,2,3,3], pred [0,0,1,1,1,1,2,2,3,1]: still 3 errors
    assert m4.accuracy == pytest.approx(0.7)
    m3 = staging_metrics(REF, PRED, n_classes=3)
    assert m3.class_names == ("W", "NREM", "REM")
    # REM is class 2 in 3-class; N2<->N3 confusion vanishes
    np.testing.assert_array_equal(m3.confusion, [[2, 1, 0], [0, 5, 0], [0, 1, 1]])
    assert m3.accuracy == pytest.approx(0.8)
    assert m3.per_stage_f1["REM"] == pytest.approx(2 * 1 / (2 + 1))


def test_perfect_prediction_gives_one_everywhere():
    m = staging_metrics(REF, REF)
    assert (m.accuracy, m.kappa, m.macro_f1, m.mcc) == (1.0, 1.0, 1.0, 1.0)
    assert all(v == 1.0 for v in m.per_stage_f1.values())
    np.testing.assert_array_equal(m.confusion, np.diag(np.bincount(REF)))


def test_absent_class_gets_nan_f1_and_is_left_out_of_macro():
    m = staging_metrics([0, 0, 2, 2], [0, 0, 2, 1])
    assert math.isnan(m.per_stage_f1["N3"]) and math.isnan(m.per_stage_f1["REM"])
    assert m.per_stage_f1["N1"] == 0.0  # predicted but never in the reference
    assert m.macro_f1 == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    d = m.to_dict()
    assert d["per_stage_f1"]["N3"] is None
    json.dumps(d, allow_nan=False)  # JSON-ready, no NaN tokens


def test_single_class_agreement_defines_kappa_and_mcc():
    m = staging_metrics([2, 2, 2], [2, 2, 2])
    assert (m.kappa, m.mcc, m.accuracy, m.macro_f1) == (1.0, 1.0, 1.0, 1.0)
    m = staging_metrics([2, 2, 2], [2, 2, 1])  # po = pe = 2/3
    assert m.kappa == pytest.approx(0.0) and m.mcc == 0.0


def test_errors_are_clear():
    with pytest.raises(ValueError, match="no epoch is scored"):
        staging_metrics([-1, 0, -1], [1, -1, -1])
    with pytest.raises(ValueError, match="same number of epochs"):
        staging_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="invalid stage codes"):
        staging_metrics([0, 5], [0, 1])
    with pytest.raises(ValueError, match="n_classes"):
        staging_metrics(REF, PRED, n_classes=2)


@pytest.mark.parametrize("n_classes", [5, 4, 3])
def test_vectorised_metrics_match_sklearn(n_classes):
    rng = np.random.default_rng(n_classes)
    confs, expected = [], []
    for _ in range(6):
        ref = rng.integers(0, 5, 200)
        pred = np.where(rng.random(200) < 0.6, ref, rng.integers(0, 5, 200))
        confs.append(confusion_counts(ref, pred, n_classes=n_classes))
        m = staging_metrics(ref, pred, n_classes=n_classes)
        expected.append((m.accuracy, m.kappa, m.macro_f1, m.mcc))
    out = metrics_from_confusion(np.stack(confs))
    got = np.stack([out["accuracy"], out["kappa"], out["macro_f1"], out["mcc"]], axis=1)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-12)


def test_staging_metrics_agree_with_sklearn_directly():
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.7, ref, rng.integers(0, 5, 300))
    m = staging_metrics(ref, pred)
    assert m.kappa == pytest.approx(cohen_kappa_score(ref, pred))
    assert m.mcc == pytest.approx(matthews_corrcoef(ref, pred))
    assert m.macro_f1 == pytest.approx(f1_score(ref, pred, average="macro"))


def test_bootstrap_resamples_nights_not_epochs():
    good = (np.full(100, 2), np.full(100, 2))
    bad = (np.full(100, 2), np.full(100, 0))
    low, high = bootstrap_ci([good, bad], "accuracy", n_boot=500, seed=1)
    # pooled accuracy of a night resample is 0, 0.5 or 1; an epoch bootstrap would be ~0.5 +- 0.07
    assert (low, high) == (0.0, 1.0)
    low, high = bootstrap_ci([good, good, good], "kappa", n_boot=200)
    assert (low, high) == (1.0, 1.0)


def test_bootstrap_mean_and_callable_agree_and_are_seeded():
    values = [0.5, 0.6, 0.7, 0.8, 0.9, 0.55, 0.65, 0.75]
    ci = bootstrap_ci(values, "mean", n_boot=400, seed=3)
    assert ci == bootstrap_ci(values, lambda xs: float(np.mean(xs)), n_boot=400, seed=3)
    assert ci == bootstrap_ci(values, "mean", n_boot=400, seed=3)
    assert ci != bootstrap_ci(values, "mean", n_boot=400, seed=4)
    assert min(values) < ci[0] < np.mean(values) < ci[1] < max(values)
    narrow = bootstrap_ci(values, "mean", n_boot=400, seed=3, level=0.5)
    assert ci[0] <= narrow[0] <= narrow[1] <= ci[1]
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci(values, "auc")
    with pytest.raises(ValueError, match="at least one night"):
        bootstrap_ci([], "mean")


def test_cohort_metrics_pooled_mean_and_skipped_nights():
    night_a = (REF, PRED)
    night_b = (REF, REF)
    night_empty = (np.full(5, -1), np.zeros(5, dtype=int))
    res = cohort_metrics([night_a, night_b, night_empty], n_boot=200)
    assert res["n_nights"] == 2 and res["n_nights_skipped"] == 1
    assert res["per_night"][2] is None
    pooled = staging_metrics(np.concatenate([REF, REF]), np.concatenate([PRED, REF]))
    assert res["pooled"]["kappa"] == pytest.approx(pooled.kappa)
    assert res["pooled"]["accuracy"] == pytest.approx(0.85)
    assert res["mean"]["accuracy"] == pytest.approx((0.7 + 1.0) / 2)
    assert res["mean"]["kappa"] == pytest.approx((staging_metrics(REF, PRED).kappa + 1.0) / 2)
    low, high = res["pooled_ci"]["accuracy"]
    assert 0.7 <= low <= 0.85 <= high <= 1.0
    json.dumps(res, allow_nan=False)
