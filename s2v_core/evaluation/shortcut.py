"""Does the embedding space encode *where* a night was recorded? And does that hurt?

* :func:`site_probe`: cross-validated classifier predicting the site from embeddings;
  the normalised shortcut score is 0 at chance and 1 when site is perfectly decodable
  (lower is better: DASH-InfoNCE aims to remove this cue).
* :func:`leave_one_site_out`: staging quality on a site never seen in training.
* :func:`mean_ci_over_seeds` / :func:`summarise_over_seeds`: report a number over seeds
  (for example DASH vs plain InfoNCE) with a t-interval.
* :func:`table_site_score`: :func:`site_score` of an embedding table (``s2v embed`` output, or a
  user's own cohort on the Embedding map page; ``s2v site-probe``).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from s2v_core.errors import S2VError
from s2v_core.evaluation.staging import cohort_metrics
from s2v_core.inference.embed import embedding_columns, sample_epochs
from s2v_core.modalities import MODALITIES, parse_modality_list

__all__ = [
    "MAX_PROBE_CLASSES",
    "PROBE_EPOCHS_PER_NIGHT",
    "PROBE_METHODS",
    "leave_one_site_out",
    "mean_ci_over_seeds",
    "modality_set",
    "paired_difference",
    "probe_columns",
    "probe_folds",
    "sample_table_epochs",
    "site_probe",
    "site_score",
    "summarise_over_seeds",
    "table_site_score",
]

log = logging.getLogger(__name__)

PROBE_METHODS: tuple[str, ...] = ("logistic", "knn")


def _probe_estimator(method: str, seed: int) -> BaseEstimator:
    # Standardising inside the pipeline fits the scaler on training folds only.
    if method == "logistic":
        clf: BaseEstimator = LogisticRegression(max_iter=2000, random_state=seed)
    elif method == "knn":
        clf = KNeighborsClassifier(n_neighbors=15)
    else:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(PROBE_METHODS)}")
    return make_pipeline(StandardScaler(), clf)


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-site recall over the sites present in ``y_true`` (sklearn's definition)."""
    _, true_idx = np.unique(y_true, return_inverse=True)
    hits = np.bincount(true_idx, weights=(y_pred == y_true).astype(np.float64))
    return float(np.mean(hits / np.bincount(true_idx)))


def probe_folds(
    sites: Any, *, groups: Any = None, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and, with ``groups``, grouped) cross-validation folds for the site probe.

    Parameters
    ----------
    sites : array_like, shape (n,)
        Site label of each sample.
    groups : array_like, shape (n,), optional
        Subject ids: all samples of one subject land in the same fold, so the probe can
        never recognise a subject instead of a site.
    n_splits : int
        Requested folds; lowered to the number of subjects (or of samples of the rarest
        site without groups) when there are fewer.
    seed : int
        Shuffling seed.

    Returns
    -------
    list of (train_idx, test_idx)
        Integer index arrays; every sample is in exactly one test fold.
    """
    y = np.asarray(sites)
    if groups is None:
        _, counts = np.unique(y, return_counts=True)
        k = min(n_splits, int(counts.min()))
        if k < 2:
            raise ValueError("every site needs at least 2 samples for cross-validation")
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in cv.split(np.zeros(y.size), y)]
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must have shape {y.shape}, got {g.shape}")
    k = min(n_splits, np.unique(g).size)
    if k < 2:
        raise ValueError("grouped cross-validation needs at least 2 distinct subjects")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folds = [(tr, te) for tr, te in cv.split(np.zeros(y.size), y, g)]
    for w in caught:  # e.g. a site with fewer subjects than folds: expected, not alarming
        log.info("site probe folds: %s", w.message)
    return folds


def site_probe(
    embeddings: Any,
    sites: Any,
    *,
    groups: Any = None,
    method: str = "logistic",
    n_splits: int = 5,
    seed: int = 0,
    estimator: BaseEstimator | None = None,
) -> dict[str, Any]:
    """How well the recording site can be decoded from embeddings (lower is better).

    Parameters
    ----------
    embeddings : array_like of float, shape (n, d)
        One embedding per night (or per epoch, then pass ``groups``).
    sites : array_like, shape (n,)
        Site label of each row; at least two sites.
    groups : array_like, shape (n,), optional
        Subject ids for grouped cross-validation (no subject in both train and test).
    method : {"logistic", "knn"}
        Probe: standardised features then logistic regression or 15-nearest-neighbours.
    n_splits : int
        Cross-validation folds (see :func:`probe_folds`).
    seed : int
        Seed of the fold shuffling and of the classifier.
    estimator : sklearn estimator, optional
        Replaces ``method`` (cloned per fold); for custom probes and tests.

    Returns
    -------
    dict
        ``balanced_accuracy`` (out-of-fold predictions of all folds together),
        ``chance`` (1 / n_sites), ``shortcut_score`` = (balanced_accuracy - chance) /
        (1 - chance) (about 0 at chance, 1 when perfect; slightly negative is possible),
        ``fold_balanced_accuracy`` (list), ``n_sites``, ``n_samples``, ``n_splits``,
        ``method``.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(sites)
    if x.ndim != 2:
        raise ValueError(f"embeddings must have shape (n, d), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"sites must have shape ({x.shape[0]},), got {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or infinite values")
    n_sites = np.unique(y).size
    if n_sites < 2:
        raise ValueError(f"the site probe needs at least 2 sites, got {n_sites}")
    model = estimator if estimator is not None else _probe_estimator(method, seed)
    folds = probe_folds(y, groups=groups, n_splits=n_splits, seed=seed)
    oof = np.empty(y.shape, dtype=y.dtype)
    fold_scores = []
    for train, test in folds:
        if test.size == 0:
            continue
        train_sites = np.unique(y[train])
        if train_sites.size < 2:  # nothing to learn: the probe can only answer that site
            oof[test] = train_sites[0]
        else:
            fold_model = clone(model)
            if estimator is None and method == "knn":  # small cohorts: k <= rarest site
                rarest = int(np.unique(y[train], return_counts=True)[1].min())
                fold_model.set_params(kneighborsclassifier__n_neighbors=min(15, rarest))
            oof[test] = fold_model.fit(x[train], y[train]).predict(x[test])
        fold_scores.append(_balanced_accuracy(y[test], oof[test]))
    bal = _balanced_accuracy(y, oof)
    chance = 1.0 / n_sites
    log.info("site probe (%s): balanced accuracy %.3f, chance %.3f", method, bal, chance)
    return {
        "balanced_accuracy": bal,
        "chance": chance,
        "shortcut_score": (bal - chance) / (1.0 - chance),
        "fold_balanced_accuracy": fold_scores,
        "n_sites": int(n_sites),
        "n_samples": int(y.size),
        "n_splits": len(folds),
        "method": "custom" if estimator is not None else method,
    }


def leave_one_site_out(
    fit_predict: Callable[[list[Any], list[Any]], Sequence[tuple[Any, Any]]],
    nights_by_site: dict[str, list[Any]],
    *,
    n_classes: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Train on all sites but one, test on the held-out site, for every site.

    Parameters
    ----------
    fit_predict : callable
        ``fit_predict(train_nights, test_nights)`` -> one ``(reference, predicted)`` pair
        of stage arrays per test night, in order. Nights are opaque to this driver.
    nights_by_site : dict of str -> list
        Nights of each site; at least two sites with nights.
    n_classes : {5, 4, 3}
        Class merging for the metrics.
    n_boot, seed, level
        Night-level bootstrap settings (see :func:`~s2v_core.evaluation.staging.bootstrap_ci`).

    Returns
    -------
    pandas.DataFrame
        One row per held-out site (sorted by name): ``site``, ``n_train_nights``,
        ``n_test_nights``, ``n_epochs``, and for ``accuracy``, ``kappa``, ``macro_f1`` the
        pooled value with ``*_low`` / ``*_high`` bootstrap bounds.
    """
    sites = sorted(s for s, nights in nights_by_site.items() if len(nights) > 0)
    if len(sites) < 2:
        raise ValueError(f"leave-one-site-out needs at least 2 sites with nights, got {sites}")
    rows = []
    for held_out in sites:
        train = [n for s in sites if s != held_out for n in nights_by_site[s]]
        test = list(nights_by_site[held_out])
        pairs = list(fit_predict(train, test))
        if len(pairs) != len(test):
            raise ValueError(
                f"fit_predict returned {len(pairs)} (reference, predicted) pairs for "
                f"{len(test)} test nights of site {held_out!r}"
            )
        res = cohort_metrics(pairs, n_classes, n_boot=n_boot, seed=seed, level=level)
        row: dict[str, Any] = {
            "site": held_out,
            "n_train_nights": len(train),
            "n_test_nights": len(test),
            "n_epochs": res["pooled"]["n_epochs"],
        }
        for k in ("accuracy", "kappa", "macro_f1"):
            low, high = res["pooled_ci"][k]
            row[k] = res["pooled"][k]
            row[f"{k}_low"] = np.nan if low is None else low
            row[f"{k}_high"] = np.nan if high is None else high
        rows.append(row)
        log.info("held-out site %s: kappa %.3f", held_out, row["kappa"])
    return pd.DataFrame(rows)


def mean_ci_over_seeds(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of a metric over training seeds.

    Parameters
    ----------
    values : sequence of float, length n_seeds
        One value per seed; must be finite.
    level : float
        Coverage, in (0, 1).

    Returns
    -------
    (mean, low, high) : tuple of float
        ``mean -/+ t_{(1+level)/2, n-1} * sd / sqrt(n)`` with ``sd`` the sample standard
        deviation (ddof=1). With a single seed the bounds are NaN.

    Examples
    --------
    >>> m, lo, hi = mean_ci_over_seeds([1.0, 2.0, 3.0])
    >>> round(m, 3), round(lo, 3), round(hi, 3)
    (2.0, -0.484, 4.484)
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError("mean_ci_over_seeds needs a non-empty list of numbers")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite, got {v.tolist()}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(v.mean())
    if v.size == 1:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2.0, df=v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


def summarise_over_seeds(
    values_by_method: dict[str, Sequence[float]], level: float = 0.95
) -> pd.DataFrame:
    """Mean and t-interval per method, e.g. ``{"DASH": [...], "InfoNCE": [...]}``.

    Returns
    -------
    pandas.DataFrame
        Index: method; columns ``n_seeds``, ``mean``, ``low``, ``high``.
    """
    rows = {}
    for name, values in values_by_method.items():
        mean, low, high = mean_ci_over_seeds(values, level)
        rows[name] = {"n_seeds": len(values), "mean": mean, "low": low, "high": high}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["n_seeds", "mean", "low", "high"])
    frame.index.name = "method"
    return frame


def _t_interval(values: list[float], level: float) -> tuple[float, float]:
    _, lo, hi = mean_ci_over_seeds(values, level)
    return lo, hi


def site_score(
    embeddings: Any,
    sites: Any,
    *,
    groups: Any = None,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    n_splits: int = 5,
    method: str = "logistic",
    level: float = 0.95,
) -> dict[str, Any]:
    """Site-probe balanced accuracy over repeated cross-validation, with confidence intervals.

    The probe (:func:`s2v_core.evaluation.shortcut.site_probe`: standardised features, then
    logistic regression, subject-grouped stratified folds when ``groups`` is given) runs once
    per seed of the fold shuffling. Lower is better: a site-invariant embedding scores at
    chance. Two embeddings scored on the same rows (same ``sites``, ``groups`` and seeds) get
    the same folds, so :func:`paired_difference` can compare them fold by fold.

    Returns
    -------
    dict
        ``balanced_accuracy``: mean over folds, averaged over the repeats;
        ``ci_folds``: Student-t interval over one repeat's folds (how much the score moves
        between held-out subjects), bounds averaged over the repeats and clipped to [0, 1];
        ``ci_repeats``: t-interval over the repeats' means (split-to-split variation only);
        ``pooled_balanced_accuracy``: all out-of-fold predictions scored together (mean over
        repeats; lower than the fold mean when a fold misses a rare site);
        ``chance`` (1 / n_sites); ``shortcut_score`` = (balanced_accuracy - chance) /
        (1 - chance) and ``shortcut_ci_folds``; ``fold_scores`` (per repeat, per fold);
        ``folds_id`` (identifies the folds); ``n_samples``, ``n_sites``, ``n_splits``,
        ``n_repeats``, ``method``, ``level``.
    """
    try:
        runs = [
            site_probe(embeddings, sites, groups=groups, method=method, n_splits=n_splits, seed=s)
            for s in seeds
        ]
    except ValueError as exc:
        raise S2VError(f"site score: {exc}") from None
    if not runs:
        raise S2VError("site score needs at least one seed")
    folds = [list(map(float, r["fold_balanced_accuracy"])) for r in runs]
    means = [float(np.mean(f)) for f in folds]
    cis = [_t_interval(f, level) for f in folds]
    lo = float(np.clip(np.mean([c[0] for c in cis]), 0.0, 1.0))
    hi = float(np.clip(np.mean([c[1] for c in cis]), 0.0, 1.0))
    mean = float(np.mean(means))
    chance = runs[0]["chance"]
    ident = hashlib.sha256(
        repr((np.asarray(sites).tolist(), None if groups is None else np.asarray(groups).tolist(),
              tuple(seeds), n_splits)).encode()  # fmt: skip
    ).hexdigest()[:16]

    def norm(v: float) -> float:
        return (v - chance) / (1.0 - chance)

    return {
        "balanced_accuracy": mean,
        "ci_folds": [lo, hi],
        "ci_repeats": list(_t_interval(means, level)) if len(means) > 1 else [mean, mean],
        "pooled_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in runs])),
        "chance": chance,
        "shortcut_score": norm(mean),
        "shortcut_ci_folds": [norm(lo), norm(hi)],
        "fold_scores": folds,
        "folds_id": ident,
        "n_samples": runs[0]["n_samples"],
        "n_sites": runs[0]["n_sites"],
        "n_splits": runs[0]["n_splits"],
        "n_repeats": len(runs),
        "method": runs[0]["method"],
        "level": level,
    }


def paired_difference(score_a: dict[str, Any], score_b: dict[str, Any]) -> dict[str, Any]:
    """Balanced accuracy of ``a`` minus ``b``, fold by fold (both from :func:`site_score`).

    Returns
    -------
    dict
        ``difference`` (mean over folds and repeats; negative: ``a`` is less site-decodable),
        ``ci_folds`` (t-interval over one repeat's fold differences, bounds averaged over the
        repeats), ``folds_lower`` / ``folds_tied`` (share of folds where ``a`` scored lower /
        the same), ``n_folds``.

    Raises
    ------
    S2VError
        The two scores were not computed on the same folds.
    """
    if score_a.get("folds_id") != score_b.get("folds_id"):
        raise S2VError("the two site scores were computed on different rows or folds; "
                       "score both embeddings on the same samples with the same seeds")  # fmt: skip
    level = float(score_a.get("level", 0.95))
    diffs = [np.subtract(a, b) for a, b in zip(score_a["fold_scores"], score_b["fold_scores"],
                                               strict=True)]  # fmt: skip
    cis = [_t_interval(list(d), level) for d in diffs]
    flat = np.concatenate(diffs)
    return {
        "difference": float(flat.mean()),
        "ci_folds": [float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis]))],
        "folds_lower": float(np.mean(flat < 0)),
        "folds_tied": float(np.mean(flat == 0)),
        "n_folds": int(flat.size),
        "level": level,
    }



# --- embedding tables (``s2v embed`` output) --------------------------------------------------
MAX_PROBE_CLASSES = 20
"""The most distinct values a probed column may have: the probe predicts categories."""

PROBE_EPOCHS_PER_NIGHT = 60
"""Epochs per night a per-epoch table gives the probe (stratified by stage, see
:func:`~s2v_core.inference.embed.sample_epochs`), so long nights do not outweigh short ones."""

_NOT_PROBED = ("night", "epoch", "onset_s", "subject")  # ids and positions, never a confound


def _missing(values: pd.Series) -> np.ndarray:
    text = values.astype("string").str.strip()
    return (values.isna() | text.isna() | (text == "")).to_numpy(dtype=bool)


def probe_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of an embedding table the probe can predict (2 to :data:`MAX_PROBE_CLASSES` values).

    Ids (night, subject), positions (epoch, onset_s) and the ``emb_*`` columns are left out.
    """
    emb = set(embedding_columns(frame))
    out = []
    for c in frame.columns:
        if c in emb or c in _NOT_PROBED or not isinstance(c, str):
            continue
        values = frame[c][~_missing(frame[c])]
        if 2 <= values.astype(str).nunique() <= MAX_PROBE_CLASSES:
            out.append(c)
    return out


def modality_set(text: Any) -> tuple[str, ...]:
    """The ``modalities`` cell of a table (``"eeg,eog"`` or ``"eeg;eog"``) as a tuple in canonical order.

    Names the package does not know are kept, sorted, after the known ones.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ()
    names = {t.strip().lower() for t in str(text).replace(";", ",").split(",") if t.strip()}
    return tuple(m for m in MODALITIES if m in names) + tuple(sorted(names - set(MODALITIES)))


def _describe_sets(sets: pd.Series, nights: pd.Series) -> str:
    counts = nights.groupby(sets.map(",".join)).nunique().sort_values(ascending=False)
    shown = [f"{k or '(none)'} ({v} night{'s' * (v != 1)})" for k, v in counts.head(6).items()]
    return "; ".join(shown) + (f"; and {len(counts) - 6} more" if len(counts) > 6 else "")


def sample_table_epochs(frame: pd.DataFrame, per_night: int, seed: int = 0) -> np.ndarray:
    """Row positions of at most ``per_night`` epochs of each night of a per-epoch table.

    Scored nights are sampled stratified by stage (:func:`~s2v_core.inference.embed.sample_epochs`),
    nights without enough scored epochs evenly over the night. Sorted positions.
    """
    keep = []
    stages = frame["stage"].to_numpy() if "stage" in frame.columns else None
    for _, rows in frame.groupby("night", sort=False).indices.items():
        rows = np.asarray(rows)
        if len(rows) <= per_night:
            keep.append(rows)
            continue
        stg = None if stages is None else np.asarray(stages[rows], dtype=float)
        if stg is not None and np.isfinite(stg).all() and (stg >= 0).sum() >= per_night:
            keep.append(rows[sample_epochs(stg.astype(int), np.ones(len(rows), bool), per_night, seed)])
        else:  # unscored nights: evenly spaced
            keep.append(rows[np.linspace(0, len(rows) - 1, per_night).round().astype(int)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)


def table_site_score(
    frame: pd.DataFrame,
    by: str = "site",
    *,
    modalities: Sequence[str] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    n_splits: int = 5,
    method: str = "logistic",
    level: float = 0.95,
    epochs_per_night: int = PROBE_EPOCHS_PER_NIGHT,
) -> dict[str, Any]:
    """:func:`site_score` of an embedding table such as ``s2v embed`` writes.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per night (per-night table) or per epoch (a table with an ``epoch`` column):
        ``night``, ``emb_0 .. emb_{H-1}``, the column ``by`` and optionally ``subject`` (grouped
        folds: all rows of a subject in one fold; the night id where it is missing), ``stage``
        and ``modalities``.
    by : str
        The column to predict (site, sex, scanner...): 2 to :data:`MAX_PROBE_CLASSES` values.
    modalities : sequence of str, optional
        Keep only rows embedded from exactly these modalities (the ``modalities`` column): when
        sites recorded different sensors, the probe otherwise also recognises the sensor set.
    seeds, n_splits, method, level
        As in :func:`site_score`; ``n_splits`` is lowered to the largest number of subjects of
        one value when that is smaller.
    epochs_per_night : int
        Per-epoch tables: at most this many epochs of each night, stratified by stage.

    Returns
    -------
    dict
        What :func:`site_score` returns, plus ``by``, ``rows`` ("nights" or "epochs"),
        ``n_nights``, ``classes`` (value -> rows), ``dim``, ``groups`` ("subject" or "night"),
        ``modalities`` (the filter, or None), ``modality_sets`` (set -> nights among the rows
        used), ``modality_confound`` (some modality set is missing from some class), and
        ``dropped``: rows without a value of ``by``, rows with non-finite embeddings, values
        seen in fewer than 2 subjects (never in training when their subject is tested).

    Raises
    ------
    S2VError
        No embedding columns, no column ``by`` or too many distinct values in it, no row left
        after the filters, fewer than two values with two rows each.
    """
    emb_cols = embedding_columns(frame)
    if not emb_cols:
        raise S2VError("the table has no embedding columns (emb_0, emb_1, ...); is it `s2v embed` output?")
    if "night" not in frame.columns:
        raise S2VError("the table has no 'night' column; is it `s2v embed` output?")
    if by not in frame.columns:
        usable = probe_columns(frame)
        raise S2VError(f"the table has no column {by!r}; columns the probe can predict: "
                       f"{', '.join(usable) if usable else 'none (add a metadata CSV)'}")  # fmt: skip
    if by in _NOT_PROBED or by in emb_cols:
        raise S2VError(f"{by!r} identifies rows; probe a property such as site or sex")
    rows_kind = "epochs" if "epoch" in frame.columns else "nights"
    work = frame.reset_index(drop=True)
    sets = work["modalities"].map(modality_set) if "modalities" in work.columns else None
    want = None
    if modalities:
        try:
            want = parse_modality_list(",".join(modalities))
        except ValueError as exc:
            raise S2VError(str(exc)) from None
        if sets is None:
            raise S2VError("the table has no 'modalities' column, so it cannot be filtered by modality")
        keep = (sets == want).to_numpy(dtype=bool)
        if not keep.any():
            raise S2VError(f"no night of the table was embedded from exactly {','.join(want)}; it holds "
                           f"{_describe_sets(sets, work['night'])}")  # fmt: skip
        work, sets = work[keep].reset_index(drop=True), sets[keep].reset_index(drop=True)
    missing = _missing(work[by])
    x = work[emb_cols].to_numpy(dtype=np.float64)
    finite = np.isfinite(x).all(axis=1)
    keep = ~missing & finite
    dropped: dict[str, Any] = {"missing_value": int(missing.sum()),
                               "non_finite": int((~finite & ~missing).sum()), "rare_values": []}  # fmt: skip
    work = work[keep].reset_index(drop=True)
    if sets is not None:
        sets = sets[keep].reset_index(drop=True)
    if work.empty:
        raise S2VError(f"no row has both a value of {by!r} and a finite embedding")
    if rows_kind == "epochs" and epochs_per_night:
        pick = sample_table_epochs(work, int(epochs_per_night), seeds[0] if seeds else 0)
        work = work.iloc[pick].reset_index(drop=True)
        if sets is not None:
            sets = sets.iloc[pick].reset_index(drop=True)
    raw = work[by]
    y = raw.astype(str).str.strip().to_numpy()
    values = np.unique(y)
    if len(values) > MAX_PROBE_CLASSES:
        kind = "numbers" if pd.api.types.is_numeric_dtype(raw) else "values"
        raise S2VError(f"{by!r} has {len(values)} distinct {kind}; the probe predicts categories (at most "
                       f"{MAX_PROBE_CLASSES}): bin it first, or probe site or sex")  # fmt: skip
    nights = work["night"].astype(str).to_numpy()
    if "subject" in work.columns:
        subj = work["subject"]
        groups, group_kind = np.where(_missing(subj), nights, subj.astype(str).to_numpy()), "subject"
    else:
        groups, group_kind = nights, "night"
    # a value seen in one subject only is never in a training fold when that subject is tested
    per_value = pd.Series(groups).groupby(y).nunique()
    rare = per_value.index[per_value < 2].to_numpy()
    if len(rare):
        dropped["rare_values"] = [str(v) for v in rare]
        ok = ~np.isin(y, rare)
        work, y, groups, nights = work[ok].reset_index(drop=True), y[ok], groups[ok], nights[ok]
        if sets is not None:
            sets = sets[ok].reset_index(drop=True)
    values, counts = np.unique(y, return_counts=True)
    if len(values) < 2:
        left = ", ".join(f"{v} ({int(n)} {group_kind}{'s' if n != 1 else ''})" for v, n in per_value.items())
        raise S2VError(f"the probe needs at least 2 values of {by!r} with 2 or more {group_kind}s each; found "
                       f"{left or 'none'}")  # fmt: skip
    # stratified folds cannot outnumber the subjects of every value: small cohorts get fewer folds
    folds = int(min(n_splits, pd.Series(groups).groupby(y).nunique().max()))
    score = site_score(work[emb_cols].to_numpy(dtype=np.float64), y, groups=groups, seeds=seeds,
                       n_splits=folds, method=method, level=level)  # fmt: skip
    confound = False
    set_counts: dict[str, int] = {}
    if sets is not None:
        keys = sets.map(",".join)
        set_counts = {k: int(v) for k, v in work["night"].groupby(keys).nunique().items()}
        per_class = pd.crosstab(y, keys.to_numpy()) > 0
        confound = bool(len(set_counts) > 1 and not per_class.all(axis=0).all())
    return {
        **score,
        "by": by,
        "rows": rows_kind,
        "n_nights": int(pd.unique(nights).size),
        "classes": {str(v): int(c) for v, c in zip(values, counts, strict=True)},
        "dim": len(emb_cols),
        "groups": group_kind,
        "modalities": None if want is None else list(want),
        "modality_sets": set_counts,
        "modality_confound": confound,
        "dropped": dropped,
    }
