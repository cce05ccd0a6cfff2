"""Sleep-staging agreement metrics for one night and for a cohort of nights.

Every metric compares a reference hypnogram (the scorer) with a predicted one, epoch by
epoch, in project stage codes (W=0 N1=1 N2=2 N3=3 REM=4, unscored=-1; see
:mod:`s2v_core.stages`). Epochs where either side is unscored are left out and counted.

Conventions for the corner cases that ``sklearn`` leaves undefined:

* A class absent from both the reference and the prediction has F1 = NaN and does not
  count towards macro-F1 (the mean of the F1 of the classes that occur on either side).
* When both sides put every epoch into the same single class, Cohen's kappa and MCC are
  0/0; we define both as 1.0 (perfect agreement). When only one side is constant, the
  usual formulas apply (kappa is then 0 or less, MCC is 0).

Why not ``yasa.EpochByEpochAgreement``
--------------------------------------
On 32 real hypnograms (20 Sleep-EDF, 12 slpdb) against copies shifted by one epoch with 15 % of
epochs relabelled, yasa 0.8.1's ``EpochByEpochAgreement`` (given our metrics as scorers) gives
exactly our accuracy, kappa, MCC, macro-F1 and confusion matrices, with the same exclusion of
unscored epochs (tests/test_library_review.py). It is kept out because:

* it adds no number we lack and changes conventions: its default ``f1`` is the support-weighted
  F1 in percent (77.5 where our macro-F1 is 65.6 on those nights), and it leaves kappa NaN when
  both sides score one and the same class (we define 1.0, above);
* it needs a ``yasa.Hypnogram`` per night and per scorer (stage names, scorer names), took
  0.29 s for the 32 nights against 0.15 s here, and importing yasa takes 1.7 s;
* it has no interval for a metric pooled over the epochs of resampled nights (its bootstrap is
  of per-night means and of confusion-matrix proportions), which :func:`cohort_metrics` reports.

Why not ``scipy.stats.bootstrap``
---------------------------------
:func:`bootstrap_ci` is scipy's percentile bootstrap: the same draws
(``rng.integers(0, n, (n_boot, n))``) and the same linear quantiles, so with the same generator
the intervals are equal to the last bit, for per-night means and for pooled metrics (scipy given
a vectorised statistic of night indices; tests/test_library_review.py). The resampling itself is
two lines here; the rest (nights as the unit, pooled confusion matrices in one ``einsum``) scipy
would only call back into. Calling scipy would lose two guarantees: it refuses a cohort of one
night (``bootstrap_ci`` returns the degenerate interval), and one NaN replicate makes its whole
interval NaN (``bootstrap_ci`` uses the finite replicates and is NaN only when none is). Its
BCa interval, which we do not offer, would be the reason to switch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from s2v_core.stages import UNSCORED, class_names, merge_stages

__all__ = [
    "METRIC_NAMES",
    "StagingMetrics",
    "agreement_by_classes",
    "bootstrap_ci",
    "check_stages",
    "cohort_metrics",
    "confusion_counts",
    "metrics_from_confusion",
    "staging_metrics",
]

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = ("accuracy", "kappa", "macro_f1", "mcc")
"""Scalar metrics that :func:`bootstrap_ci` and :func:`cohort_metrics` can summarise."""


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@dataclass
class StagingMetrics:
    """Agreement between a reference and a predicted hypnogram (one night or pooled)."""

    n_epochs: int  # epochs scored on both sides (the ones the metrics use)
    n_excluded: int  # epochs left out because reference or prediction is unscored
    accuracy: float  # fraction of epochs where the stages agree, in [0, 1]
    kappa: float  # Cohen's kappa, in [-1, 1]
    macro_f1: float  # mean F1 over classes present on either side, in [0, 1]
    mcc: float  # Matthews correlation coefficient (multi-class), in [-1, 1]
    per_stage_f1: dict[str, float]  # class name -> F1 (NaN when absent from both sides)
    confusion: np.ndarray  # (k, k) int64 counts; rows = reference, columns = predicted
    class_names: tuple[str, ...] = field(default_factory=tuple)  # names of the k classes
    n_classes: int = 5  # 5, 4 (W, N1+N2, N3, REM) or 3 (W, NREM, REM)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: plain ints/floats/lists, NaN written as ``None``."""
        return {
            "n_epochs": int(self.n_epochs),
            "n_excluded": int(self.n_excluded),
            "accuracy": _nan_to_none(float(self.accuracy)),
            "kappa": _nan_to_none(float(self.kappa)),
            "macro_f1": _nan_to_none(float(self.macro_f1)),
            "mcc": _nan_to_none(float(self.mcc)),
            "per_stage_f1": {k: _nan_to_none(float(v)) for k, v in self.per_stage_f1.items()},
            "confusion": np.asarray(self.confusion, dtype=np.int64).tolist(),
            "class_names": list(self.class_names),
            "n_classes": int(self.n_classes),
        }


def check_stages(name: str, stages: Any) -> np.ndarray:
    """Validate a hypnogram: 1-D integer codes in -1..4, returned as int64.

    Parameters
    ----------
    name : str
        How the array is called in error messages (``"reference"``, ``"predicted"``).
    stages : array_like, shape (n_epochs,)
        Project stage codes; whole-valued floats are accepted.

    Returns
    -------
    numpy.ndarray of int64, shape (n_epochs,)

    Raises
    ------
    ValueError
        Naming ``name`` and the invalid values, with the allowed codes.
    """
    arr = np.asarray(stages)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of stage codes, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold integer stage codes -1..4")
    arr = arr.astype(np.int64)
    bad = (arr < UNSCORED) | (arr > 4)
    if np.any(bad):
        raise ValueError(
            f"{name} holds invalid stage codes {sorted(set(arr[bad].tolist()))[:5]}; "
            "allowed: 0=W 1=N1 2=N2 3=N3 4=REM -1=unscored"
        )
    return arr


def _scored_pair(reference: Any, predicted: Any, n_classes: int) -> tuple[np.ndarray, ...]:
    """Validate, merge to ``n_classes`` and keep epochs scored on both sides."""
    ref = check_stages("reference", reference)
    pred = check_stages("predicted", predicted)
    if ref.shape != pred.shape:
        raise ValueError(
            f"reference and predicted must have the same number of epochs, "
            f"got {ref.size} and {pred.size}"
        )
    ref = merge_stages(ref, n_classes).astype(np.int64)
    pred = merge_stages(pred, n_classes).astype(np.int64)
    keep = (ref != UNSCORED) & (pred != UNSCORED)
    return ref[keep], pred[keep], int(ref.size - keep.sum())


def confusion_counts(reference: Any, predicted: Any, *, n_classes: int = 5) -> np.ndarray:
    """Confusion matrix of one night, unscored epochs left out.

    Parameters
    ----------
    reference, predicted : array_like of int, shape (n_epochs,)
        Project stage codes (-1..4).
    n_classes : {5, 4, 3}
        Merge to this many classes first (:func:`s2v_core.stages.merge_stages`).

    Returns
    -------
    numpy.ndarray of int64, shape (n_classes, n_classes)
        Counts; rows = reference, columns = predicted. All zero when nothing overlaps.
    """
    ref, pred, _ = _scored_pair(reference, predicted, n_classes)
    return _count_pairs(ref, pred, n_classes)


def _count_pairs(ref: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts of already merged, scored class indices."""
    flat = np.bincount(ref * k + pred, minlength=k * k)
    return flat.reshape(k, k).astype(np.int64)


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, kappa, macro-F1 and MCC from confusion matrices, vectorised.

    Parameters
    ----------
    confusion : numpy.ndarray, shape (..., k, k)
        Counts, rows = reference, columns = predicted; any leading batch shape.

    Returns
    -------
    dict of str -> numpy.ndarray, each of shape (...)
        ``accuracy``, ``kappa``, ``macro_f1``, ``mcc`` (same conventions as the module
        docstring) and ``per_class_f1`` of shape (..., k). NaN where a matrix is all zero.
    """
    c = np.asarray(confusion, dtype=np.float64)
    total = c.sum(axis=(-2, -1))
    diag = np.trace(c, axis1=-2, axis2=-1)
    rows = c.sum(axis=-1)  # (..., k) reference counts
    cols = c.sum(axis=-2)  # (..., k) predicted counts
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = diag / total
        chance = (rows * cols).sum(axis=-1) / total**2
        degenerate = np.isclose(chance, 1.0)  # both sides one and the same single class
        kappa = np.where(degenerate, 1.0, (accuracy - chance) / (1.0 - chance))
        tp = np.diagonal(c, axis1=-2, axis2=-1)
        f1_den = rows + cols  # = 2TP + FP + FN
        per_class = np.where(f1_den > 0, 2.0 * tp / f1_den, np.nan)
        present = f1_den > 0
        macro = np.where(
            present.any(axis=-1),
            np.nansum(per_class, axis=-1) / present.sum(axis=-1),
            np.nan,
        )
        cov_tp = diag * total - (rows * cols).sum(axis=-1)
        cov_pp = total**2 - (cols**2).sum(axis=-1)
        cov_tt = total**2 - (rows**2).sum(axis=-1)
        den = np.sqrt(cov_pp * cov_tt)
        mcc = np.where(den > 0, cov_tp / den, np.where(accuracy == 1.0, 1.0, 0.0))
    empty = total == 0
    return {
        "accuracy": np.where(empty, np.nan, accuracy),
        "kappa": np.where(empty, np.nan, kappa),
        "macro_f1": np.where(empty, np.nan, macro),
        "mcc": np.where(empty, np.nan, mcc),
        "per_class_f1": per_class,
    }


def staging_metrics(reference: Any, predicted: Any, *, n_classes: int = 5) -> StagingMetrics:
    """Compare a predicted hypnogram with the reference, epoch by epoch.

    Parameters
    ----------
    reference, predicted : array_like of int, shape (n_epochs,)
        Project stage codes: 0=W 1=N1 2=N2 3=N3 4=REM, -1=unscored. Epochs unscored on
        either side are excluded and counted in ``n_excluded``.
    n_classes : {5, 4, 3}
        5 stages, or merged to 4 (W, N1+N2, N3, REM) or 3 (W, NREM, REM).

    Returns
    -------
    StagingMetrics

    Raises
    ------
    ValueError
        If the arrays differ in length, hold codes outside -1..4, or share no epoch that
        is scored on both sides.

    Examples
    --------
    >>> m = staging_metrics([0, 2, 2, 4], [0, 2, 1, 4])
    >>> round(m.accuracy, 2), m.n_epochs
    (0.75, 4)
    """
    ref, pred, n_excluded = _scored_pair(reference, predicted, n_classes)
    if ref.size == 0:
        raise ValueError(
            f"no epoch is scored in both the reference and the prediction "
            f"({n_excluded} epochs, all unscored on at least one side); nothing to compare"
        )
    # imported here: scikit-learn's metrics take ~0.5 s to import, which a prediction without a
    # reference hypnogram (and every cold start before it is needed) should not pay
    from sklearn.metrics import cohen_kappa_score, f1_score, matthews_corrcoef

    labels = list(range(n_classes))
    names = class_names(n_classes)
    confusion = _count_pairs(ref, pred, n_classes)
    per_class = f1_score(ref, pred, labels=labels, average=None, zero_division=np.nan)
    per_class = np.asarray(per_class, dtype=np.float64)
    absent = confusion.sum(axis=0) + confusion.sum(axis=1) == 0
    per_class[absent] = np.nan
    if np.array_equal(ref, pred) and np.unique(ref).size == 1:
        kappa, mcc = 1.0, 1.0  # 0/0 in sklearn; both sides agree perfectly on one class
    else:
        kappa = float(cohen_kappa_score(ref, pred, labels=labels))
        mcc = float(matthews_corrcoef(ref, pred))
    return StagingMetrics(
        n_epochs=int(ref.size),
        n_excluded=n_excluded,
        accuracy=float(np.mean(ref == pred)),
        kappa=kappa,
        macro_f1=float(np.nanmean(per_class)),
        mcc=mcc,
        per_stage_f1={n: float(v) for n, v in zip(names, per_class, strict=True)},
        confusion=confusion,
        class_names=names,
        n_classes=n_classes,
    )


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    per_night: Sequence[Any],
    metric: str | Callable[[list[Any]], float] = "mean",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_classes: int = 5,
) -> tuple[float, float]:
    """Percentile bootstrap interval that resamples nights (never single epochs).

    Epochs of one night are strongly correlated, so the night is the unit of resampling.

    Parameters
    ----------
    per_night : sequence, length n_nights
        One item per night: a number when ``metric="mean"``, a ``(reference, predicted)``
        pair of stage arrays when ``metric`` names a staging metric, anything for a callable.
    metric : {"mean", "accuracy", "kappa", "macro_f1", "mcc"} or callable
        ``"mean"``: mean of the per-night numbers. A staging metric name: that metric on
        the epochs pooled over the resampled nights (computed from summed confusion
        matrices, vectorised). A callable receives the resampled list and returns a float.
    n_boot : int
        Number of bootstrap resamples.
    seed : int
        Seed of the resampling generator.
    level : float
        Coverage, in (0, 1).
    n_classes : {5, 4, 3}
        Class merging for staging metrics.

    Returns
    -------
    (low, high) : tuple of float
        NaN, NaN when every resample gives NaN.
    """
    n = len(per_night)
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one night")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (n_boot, n_nights)
    if callable(metric):
        samples = np.array([metric([per_night[i] for i in row]) for row in idx], dtype=float)
    elif metric == "mean":
        values = np.asarray(per_night, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError("metric='mean' needs one number per night")
        samples = values[idx].mean(axis=1)
    elif metric in METRIC_NAMES:
        conf = np.stack([confusion_counts(r, p, n_classes=n_classes) for r, p in per_night])
        counts = np.zeros((n_boot, n), dtype=np.float64)  # times each night is drawn
        np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
        pooled = np.einsum("bn,nij->bij", counts, conf)  # (n_boot, k, k)
        samples = metrics_from_confusion(pooled)[metric]
    else:
        raise ValueError(f"unknown metric {metric!r}; allowed: 'mean', {', '.join(METRIC_NAMES)}")
    return _percentile_interval(np.asarray(samples, dtype=np.float64), level)


def cohort_metrics(
    per_night: Sequence[tuple[Any, Any]],
    n_classes: int = 5,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Pooled and per-night staging metrics of a cohort, with night-bootstrap intervals.

    Parameters
    ----------
    per_night : sequence of (reference, predicted), length n_nights
        Stage arrays of each night, each pair of shape (n_epochs_i,).
    n_classes : {5, 4, 3}
        Class merging.
    n_boot, seed, level
        Bootstrap settings (see :func:`bootstrap_ci`).

    Returns
    -------
    dict
        JSON-ready: ``n_nights``, ``n_nights_skipped`` (no epoch scored on both sides),
        ``pooled`` (:meth:`StagingMetrics.to_dict` on all epochs together), ``pooled_ci``
        (metric -> [low, high]), ``mean`` (metric -> mean over nights), ``mean_ci`` and
        ``per_night`` (list of metric dicts, ``None`` for skipped nights).
    """
    if len(per_night) == 0:
        raise ValueError("cohort_metrics needs at least one night")
    nights: list[tuple[np.ndarray, np.ndarray]] = []
    per_night_rows: list[dict[str, float] | None] = []
    for i, (ref, pred) in enumerate(per_night):
        try:
            m = staging_metrics(ref, pred, n_classes=n_classes)
        except ValueError as err:
            if "no epoch is scored" not in str(err):
                raise
            log.warning("night %d skipped: %s", i, err)
            per_night_rows.append(None)
            continue
        nights.append((np.asarray(ref), np.asarray(pred)))
        per_night_rows.append({k: float(getattr(m, k)) for k in METRIC_NAMES})
    if not nights:
        raise ValueError("no night has an epoch scored in both the reference and the prediction")
    pooled = staging_metrics(
        np.concatenate([r for r, _ in nights]),
        np.concatenate([p for _, p in nights]),
        n_classes=n_classes,
    )
    valid = [row for row in per_night_rows if row is not None]
    boot = {"n_boot": n_boot, "seed": seed, "level": level}
    pooled_ci = {
        k: list(bootstrap_ci(nights, k, n_classes=n_classes, **boot)) for k in METRIC_NAMES
    }
    means = {k: float(np.mean([row[k] for row in valid])) for k in METRIC_NAMES}
    mean_ci = {
        k: list(bootstrap_ci([row[k] for row in valid], "mean", **boot)) for k in METRIC_NAMES
    }
    return {
        "n_nights": len(nights),
        "n_nights_skipped": len(per_night) - len(nights),
        "pooled": pooled.to_dict(),
        "pooled_ci": {k: [_nan_to_none(v) for v in ci] for k, ci in pooled_ci.items()},
        "mean": {k: _nan_to_none(v) for k, v in means.items()},
        "mean_ci": {k: [_nan_to_none(v) for v in ci] for k, ci in mean_ci.items()},
        "per_night": per_night_rows,
    }


def agreement_by_classes(reference: np.ndarray, pred: Any) -> dict[str, dict]:
    """Agreement of a night's prediction with the expert, as 5-, 4- and 3-class problems.

    ``pred`` is a :class:`~s2v_core.inference.predict.Prediction`; its 4- and 3-class stages sum
    the probabilities of merged stages (``Prediction.merged_as_five``).

    Returns
    -------
    dict
        Keys ``"5-class"``, ``"4-class"``, ``"3-class"``: :meth:`StagingMetrics.to_dict`, or
        ``{"error": ...}`` when no epoch is scored on both sides.
    """
    out = {}
    for k in (5, 4, 3):
        try:
            metrics = staging_metrics(reference, pred.merged_as_five(k), n_classes=k).to_dict()
        except ValueError as exc:
            metrics = {"error": str(exc)}
        out[f"{k}-class"] = metrics
    return out
