"""Subject-level cross-validation of night heads, metrics with intervals, and training a head.

Folds come from :class:`~sklearn.model_selection.GroupKFold` (regression) or
:class:`~sklearn.model_selection.StratifiedGroupKFold` (binary), grouped by subject, so no subject
has nights on both sides. Every metric is reported as the mean over folds with a t-based 95%
confidence interval, and on the pooled out-of-fold predictions, next to a trivial baseline
(training-fold mean, or training-fold prevalence) and, when the nights come from several sites, a
site-only linear model (the shortcut a head could learn).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from scipy.stats import t as student

from s2v_core.inference.embed import embedding_columns
from s2v_core.night_heads.ahi import SEVERITY_NAMES, severity_class
from s2v_core.night_heads.linear import (
    NightHead,
    choose_alpha,
    fit_head,
    fit_linear,
    group_splitter,
    linear_score,
    n_splits_for,
    sigmoid,
    standardise,
)
from s2v_core.night_heads.tasks import NightHeadError, TaskSpec, labelled_rows
from s2v_core.sanitize.cells import to_csv

__all__ = [
    "CVReport",
    "cross_validate",
    "predictions_frame",
    "summarise",
    "task_metrics",
    "train_night_head",
]

log = logging.getLogger(__name__)


# --- metrics and cross-validation -----------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return _pearson(rankdata(a), rankdata(b))


def task_metrics(task: TaskSpec, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Metrics of one set of predictions (years, events/h, or probabilities).

    Regression: ``mae``, ``pearson_r``; AHI adds ``spearman_rho``, ``severity_accuracy`` and
    ``severity_kappa``. Binary: ``auroc`` (NaN with one class) and ``balanced_accuracy``
    (threshold 0.5). Undefined values (a constant prediction has no correlation) are NaN.
    """
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    if task.kind == "binary":
        from sklearn.metrics import balanced_accuracy_score, roc_auc_score

        both = len(np.unique(y)) == 2
        return {
            "auroc": float(roc_auc_score(y, pred)) if both else math.nan,
            "balanced_accuracy": float(balanced_accuracy_score(y, pred >= 0.5)) if both else math.nan,
        }
    out = {"mae": float(np.mean(np.abs(pred - y))), "pearson_r": _pearson(y, pred)}
    if task.log_target:
        from sklearn.metrics import cohen_kappa_score

        ct, cp = severity_class(y), severity_class(pred)
        out["spearman_rho"] = _spearman(y, pred)
        out["severity_accuracy"] = float(np.mean(ct == cp))
        agree = len(np.unique(np.concatenate([ct, cp]))) > 1
        out["severity_kappa"] = float(cohen_kappa_score(ct, cp)) if agree else math.nan
    return out


_BOUNDS = {
    "pearson_r": (-1.0, 1.0),
    "spearman_rho": (-1.0, 1.0),
    "severity_kappa": (-1.0, 1.0),
    "auroc": (0.0, 1.0),
    "balanced_accuracy": (0.0, 1.0),
    "severity_accuracy": (0.0, 1.0),
    "mae": (0.0, math.inf),
}
_RANKING = ("pearson_r", "spearman_rho", "auroc")
"""Metrics a constant prediction cannot have: left out for the trivial baseline."""


def summarise(
    values: Iterable[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> dict[str, Any]:
    """Mean over folds with a t-based 95% interval (finite values only), clipped to ``bounds``."""
    values = [float(x) for x in values]
    v = np.array([x for x in values if np.isfinite(x)], dtype=float)
    out: dict[str, Any] = {
        "per_fold": [round(float(x), 4) if np.isfinite(x) else None for x in values]
    }
    if v.size == 0:
        return {**out, "mean": None, "ci95": None}
    mean = float(v.mean())
    if v.size < 2:
        return {**out, "mean": round(mean, 4), "ci95": None}
    half = float(student.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    lo, hi = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return {**out, "mean": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def _site_features(sites: np.ndarray) -> np.ndarray:
    names = sorted({str(s) for s in sites})
    return np.array([[1.0 if str(s) == n else 0.0 for n in names] for s in sites])


@dataclass
class CVReport:
    """Subject-level cross-validation of a night-level head.

    Attributes
    ----------
    task : TaskSpec
    n_nights, n_subjects, n_folds : int
    metrics : dict
        ``{metric: {"head": summary, "baseline": summary, "site_only": summary?}}``; a summary
        is :func:`summarise` plus ``pooled`` (the metric on all out-of-fold predictions).
    predictions : pandas.DataFrame
        Out-of-fold predictions: night, subject, site, fold, target, head, baseline
        (and site_only).
    alphas : list of float
        Strength chosen in each fold.
    """

    task: TaskSpec
    n_nights: int
    n_subjects: int
    n_folds: int
    metrics: dict[str, dict[str, dict[str, Any]]]
    predictions: pd.DataFrame
    alphas: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "n_nights": self.n_nights,
            "n_subjects": self.n_subjects,
            "n_folds": self.n_folds,
            "splitter": "StratifiedGroupKFold" if self.task.kind == "binary" else "GroupKFold",
            "alphas": self.alphas,
            "metrics": self.metrics,
        }


def cross_validate(
    frame: pd.DataFrame, task: TaskSpec, *, n_splits: int = 5, seed: int = 0
) -> CVReport:
    """Subject-level cross-validation of the head against a trivial and a site-only baseline.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`store_embeddings` (optionally :func:`join_metadata`): ``night``,
        ``subject``, ``site``, the target column and ``emb_*``.
    task : TaskSpec
    n_splits : int
        Folds (capped at the number of subjects, or of subjects per class).
    seed : int
        Fold assignment and inner CV.
    """
    rows, y = labelled_rows(frame, task)
    x = rows[embedding_columns(rows)].to_numpy(dtype=float)
    groups = rows["subject"].astype(str).to_numpy()
    k = n_splits_for(task.kind, y, groups, n_splits)
    if k < 2:
        raise NightHeadError(f"task {task.name}: need >= 2 subjects for subject-level folds")
    sites = rows["site"].fillna("?").astype(str).to_numpy()
    with_site = len(np.unique(sites)) > 1
    xs = _site_features(sites) if with_site else None
    preds, fold_of, per_fold, alphas = _out_of_fold(task, x, y, groups, xs, k, seed)
    metrics = _metric_summaries(task, y, preds, per_fold)
    table = pd.DataFrame(
        {
            "night": rows["night"].astype(str),
            "subject": groups,
            "site": sites,
            "fold": fold_of,
            "target": y,
            **{m: v for m, v in preds.items()},
        }
    )
    return CVReport(task, len(y), len(np.unique(groups)), k, metrics, table, alphas)


def _from_score(task: TaskSpec, s: np.ndarray) -> np.ndarray:
    """A linear score back on the target's scale (probability, or events/h from log1p)."""
    if task.kind == "binary":
        return sigmoid(s)
    return np.maximum(np.expm1(s), 0.0) if task.log_target else s


def _out_of_fold(
    task: TaskSpec,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    xs: np.ndarray | None,
    k: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, list[dict[str, float]]], list[float]]:
    """Fit the head and the baselines fold by fold and predict each held-out fold.

    Returns
    -------
    preds : dict of str to ndarray
        Out-of-fold predictions of ``head``, ``baseline`` and, with site features ``xs``,
        ``site_only``.
    fold_of : ndarray
        The fold that held out each night.
    per_fold : dict of str to list of dict
        Per prediction kind, :func:`task_metrics` of each fold.
    alphas : list of float
        Strength chosen in each fold.
    """
    target = np.log1p(y) if task.log_target else y
    preds = {"head": np.full(len(y), np.nan), "baseline": np.full(len(y), np.nan)}
    if xs is not None:
        preds["site_only"] = np.full(len(y), np.nan)
    fold_of = np.full(len(y), -1)
    per_fold: dict[str, list[dict[str, float]]] = {m: [] for m in preds}
    alphas = []
    strat = y.astype(int) if task.kind == "binary" else y
    for f, (tr, te) in enumerate(group_splitter(task.kind, k, seed).split(x, strat, groups)):
        fold_of[te] = f
        alpha = choose_alpha(x[tr], target[tr], groups[tr], task.kind, seed)
        alphas.append(alpha)
        mean, scale = standardise(x[tr])
        coef, b = fit_linear((x[tr] - mean) / scale, target[tr], task.kind, alpha)
        preds["head"][te] = _from_score(task, linear_score((x[te] - mean) / scale, coef, b))
        if task.kind == "binary":
            prev = float(np.mean(y[tr]))
            preds["baseline"][te] = prev
        else:
            preds["baseline"][te] = _from_score(task, np.full(len(te), float(np.mean(target[tr]))))
        if xs is not None:
            a_site = choose_alpha(xs[tr], target[tr], groups[tr], task.kind, seed)
            sc, sb = fit_linear(xs[tr], target[tr], task.kind, a_site)
            preds["site_only"][te] = _from_score(task, linear_score(xs[te], sc, sb))
        for m in preds:
            per_fold[m].append(task_metrics(task, y[te], preds[m][te]))
    return preds, fold_of, per_fold, alphas


def _metric_summaries(
    task: TaskSpec,
    y: np.ndarray,
    preds: dict[str, np.ndarray],
    per_fold: dict[str, list[dict[str, float]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{metric: {kind: summary}}``: :func:`summarise` over folds plus the pooled value.

    The baseline has no ranking metric (its prediction is constant within a fold).
    """
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for name in per_fold["head"][0]:
        metrics[name] = {}
        for m in preds:
            s = summarise([fm[name] for fm in per_fold[m]], _BOUNDS.get(name, (-math.inf, math.inf)))
            pooled = task_metrics(task, y, preds[m])[name]
            if m == "baseline" and name in _RANKING:  # constant within folds: no ranking
                s, pooled = {"per_fold": [], "mean": None, "ci95": None}, math.nan
            s["pooled"] = None if not np.isfinite(pooled) else round(float(pooled), 4)
            metrics[name][m] = s
    return metrics


def predictions_frame(head: NightHead, frame: pd.DataFrame) -> pd.DataFrame:
    """Night id, metadata and the head's prediction for each row of an embedding frame."""
    cols = embedding_columns(frame)
    if not cols:
        raise NightHeadError("no emb_* columns: these are not night embeddings")
    pooling = head.info.get("pooling", "mean")
    if "pooling" in frame.columns and set(frame["pooling"].dropna()) - {pooling}:
        raise NightHeadError(
            f"the head was trained on {pooling!r} pooling, these embeddings use "
            f"{', '.join(sorted(set(frame['pooling'].dropna())))}"
        )
    p = head.predict(frame[cols].to_numpy(dtype=float))
    keep = [c for c in ("night", "subject", "site", "modalities") if c in frame.columns]
    out = frame[keep].copy().reset_index(drop=True)
    lab = head.task.label
    if head.task.kind == "binary":
        if head.task.name == "sex":
            out["p_male"] = np.round(p, 5)
            out["sex_pred"] = np.where(p >= 0.5, "M", "F")
        else:
            out[f"p_{lab}"] = np.round(p, 5)
            out[f"{lab}_pred"] = (p >= 0.5).astype(int)
    else:
        out[f"{lab}_pred"] = np.round(p, 3)
        if head.task.log_target:
            out["severity_pred"] = np.asarray(SEVERITY_NAMES, dtype=object)[severity_class(p)]
    return out


def train_night_head(
    frame: pd.DataFrame,
    task: TaskSpec,
    out: str | Path,
    *,
    n_splits: int = 5,
    seed: int = 0,
    backbone: dict[str, Any] | None = None,
    data: str = "",
) -> tuple[NightHead, CVReport]:
    """Cross-validate, then fit the head on every labelled night and save it to ``out``.

    ``out`` receives ``head.json`` (with the CV metrics), ``head.safetensors`` and
    ``cv_predictions.csv`` (out-of-fold predictions of the head and the baselines).
    """
    report = cross_validate(frame, task, n_splits=n_splits, seed=seed)
    rows, y = labelled_rows(frame, task)
    x = rows[embedding_columns(rows)].to_numpy(dtype=float)
    head = fit_head(x, y, rows["subject"].to_numpy(), task, seed=seed)
    mods = sorted(set(rows["modalities"].dropna())) if "modalities" in rows else []
    head.info = {
        "pooling": str(rows["pooling"].iloc[0]) if "pooling" in rows else "mean",
        "backbone": backbone or {},
        "modalities_seen": mods,
        "training": {
            "data": data,
            "n_nights": int(len(rows)),
            "n_subjects": int(rows["subject"].nunique()),
            "target_mean": round(float(np.mean(y)), 4),
            "seed": seed,
        },
        "cv": report.to_dict(),
    }
    head.save(out)
    to_csv(report.predictions, Path(out) / "cv_predictions.csv", index=False)
    return head, report
