"""Staging quality for every subset of the available modalities.

After pretraining, any subset of modalities maps into the same embedding space, so the
same classifier can stage a night from EEG alone, from a wearable's IBI and respiration,
or from everything. :func:`subset_metrics` scores each non-empty subset (511 for all nine
modalities) and :func:`modality_importance` summarises which modality matters most.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.evaluation.staging import check_stages, confusion_counts, metrics_from_confusion
from s2v_core.modalities import MODALITIES, check_modality

__all__ = [
    "SUBSET_METRICS",
    "all_subsets",
    "canonical_modalities",
    "modality_importance",
    "subset_label",
    "subset_metrics",
]

log = logging.getLogger(__name__)

Subset = tuple[str, ...]
SUBSET_METRICS: tuple[str, ...] = ("accuracy", "kappa", "macro_f1", "mcc")


def canonical_modalities(modalities: Iterable[str]) -> Subset:
    """Deduplicate and order modality names as in :data:`s2v_core.modalities.MODALITIES`.

    Raises
    ------
    ValueError
        If a name is not a canonical modality (the message lists the allowed ones).
    """
    names = {check_modality(m) for m in modalities}
    return tuple(m for m in MODALITIES if m in names)


def subset_label(subset: Iterable[str]) -> str:
    """``("eeg", "eog")`` -> ``"eeg+eog"`` (canonical order)."""
    return "+".join(canonical_modalities(subset))


def all_subsets(modalities: Iterable[str]) -> list[Subset]:
    """Every non-empty subset of ``modalities``, smallest first.

    Parameters
    ----------
    modalities : iterable of str
        Canonical modality names, any order, duplicates ignored.

    Returns
    -------
    list of tuple of str
        ``2**n - 1`` subsets; sorted by size, then lexicographically by the canonical
        modality order; each subset itself in canonical order.

    Examples
    --------
    >>> all_subsets(["eog", "eeg"])
    [('eeg',), ('eog',), ('eeg', 'eog')]
    >>> len(all_subsets(MODALITIES))
    511
    """
    mods = canonical_modalities(modalities)
    return [s for r in range(1, len(mods) + 1) for s in itertools.combinations(mods, r)]


def subset_metrics(
    predict_fn: Callable[[Subset], Any],
    modalities: Iterable[str],
    reference: Any,
    *,
    n_classes: int = 5,
    cache: dict[Subset, np.ndarray] | None = None,
    max_subsets: int | None = None,
    progress: Callable[[int, int, Subset], None] | None = None,
) -> pd.DataFrame:
    """Staging metrics of one night for every non-empty subset of ``modalities``.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(subset)`` -> predicted stage codes, shape (n_epochs,), using only
        the modalities in ``subset`` (a tuple in canonical order).
    modalities : iterable of str
        Modalities available in this night.
    reference : array_like of int, shape (n_epochs,)
        Reference stage codes (-1..4).
    n_classes : {5, 4, 3}
        Class merging for the metrics.
    cache : dict, optional
        Predictions keyed by subset tuple. Subsets already in it are not predicted again,
        new predictions are stored, so a second call (say with another ``n_classes``) does
        not call ``predict_fn`` at all. Use one cache per night and model.
    max_subsets : int, optional
        Evaluate only the first ``max_subsets`` subsets in :func:`all_subsets` order
        (smallest first); the full set is always evaluated as well.
    progress : callable, optional
        ``progress(done, total, subset)`` after each subset.

    Returns
    -------
    pandas.DataFrame
        One row per subset, in :func:`all_subsets` order: ``subset`` (``"eeg+eog"``),
        ``n_modalities``, ``n_epochs``, ``accuracy``, ``kappa``, ``macro_f1``, ``mcc``.
        Metrics are NaN when a prediction shares no scored epoch with the reference.

    Raises
    ------
    ValueError
        If the reference has no scored epoch, or a prediction has the wrong length.
    """
    ref = check_stages("reference", reference)
    if not np.any(ref >= 0):
        raise ValueError("the reference hypnogram has no scored epoch; nothing to evaluate")
    subsets = all_subsets(modalities)
    if not subsets:
        raise ValueError("no modality given; subset_metrics needs at least one")
    if max_subsets is not None and max_subsets < len(subsets):
        if max_subsets < 1:
            raise ValueError(f"max_subsets must be positive, got {max_subsets}")
        subsets = subsets[:max_subsets] + [subsets[-1]]
    store: dict[Subset, np.ndarray] = {} if cache is None else cache
    confusions = np.zeros((len(subsets), n_classes, n_classes), dtype=np.int64)
    for i, subset in enumerate(subsets):
        if subset not in store:
            pred = np.asarray(predict_fn(subset))
            if pred.shape != ref.shape:
                raise ValueError(
                    f"predict_fn({subset_label(subset)!r}) returned shape {pred.shape}; "
                    f"the reference has shape {ref.shape}"
                )
            store[subset] = pred
        confusions[i] = confusion_counts(ref, store[subset], n_classes=n_classes)
        if progress is not None:
            progress(i + 1, len(subsets), subset)
    metrics = metrics_from_confusion(confusions)  # each (n_subsets,)
    frame = pd.DataFrame(
        {
            "subset": ["+".join(s) for s in subsets],
            "n_modalities": [len(s) for s in subsets],
            "n_epochs": confusions.sum(axis=(1, 2)),
            **{k: metrics[k] for k in SUBSET_METRICS},
        }
    )
    unscored = frame["n_epochs"] == 0
    if unscored.any():
        log.warning(
            "%d subset(s) share no scored epoch with the reference: %s",
            int(unscored.sum()),
            ", ".join(frame.loc[unscored, "subset"][:5]),
        )
    return frame


def modality_importance(subset_frame: pd.DataFrame, *, metric: str = "kappa") -> pd.DataFrame:
    """How much each modality adds, averaged over the subsets with and without it.

    Parameters
    ----------
    subset_frame : pandas.DataFrame
        Output of :func:`subset_metrics` (columns ``subset`` and ``metric``).
    metric : str
        Column to average (default ``"kappa"``).

    Returns
    -------
    pandas.DataFrame
        Index: modality; columns ``mean_with``, ``mean_without``, ``delta`` (with minus
        without), ``n_with``, ``n_without``. Sorted by ``delta``, largest first. NaN
        metrics are ignored; a mean over no subset is NaN.
    """
    if "subset" not in subset_frame or metric not in subset_frame:
        raise ValueError(f"subset_frame needs columns 'subset' and {metric!r}")
    members = [set(s.split("+")) for s in subset_frame["subset"]]
    mods = canonical_modalities(set().union(*members)) if members else ()
    values = subset_frame[metric].to_numpy(dtype=np.float64)  # (n_subsets,)
    has = np.array([[m in s for m in mods] for s in members], dtype=bool).reshape(
        len(members), len(mods)
    )
    ok = np.isfinite(values)[:, None]
    v = np.where(np.isfinite(values), values, 0.0)[:, None]
    n_with = (has & ok).sum(axis=0)
    n_without = (~has & ok).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_with = np.where(n_with > 0, (v * has).sum(axis=0) / n_with, np.nan)
        mean_without = np.where(n_without > 0, (v * ~has).sum(axis=0) / n_without, np.nan)
    frame = pd.DataFrame(
        {
            "mean_with": mean_with,
            "mean_without": mean_without,
            "delta": mean_with - mean_without,
            "n_with": n_with,
            "n_without": n_without,
        },
        index=pd.Index(mods, name="modality"),
    )
    return frame.sort_values("delta", ascending=False, kind="stable")
