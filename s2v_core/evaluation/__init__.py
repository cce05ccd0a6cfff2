"""Evaluation suite shared by the CLI, the app and the benchmarks.

* :mod:`~s2v_core.evaluation.staging`: accuracy, kappa, macro-F1, MCC, confusion, bootstrap.
* :mod:`~s2v_core.evaluation.sleep_stats`: TIB, TST, SE, SOL, WASO, REM latency, stage minutes.
* :mod:`~s2v_core.evaluation.robustness`: metrics for every subset of modalities.
* :mod:`~s2v_core.evaluation.shortcut`: site probe, leave-one-site-out, intervals over seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s2v_core.errors import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they load on first use
    from s2v_core.evaluation.robustness import (
        all_subsets,
        canonical_modalities,
        modality_importance,
        subset_label,
        subset_metrics,
    )
    from s2v_core.evaluation.shortcut import (
        leave_one_site_out,
        mean_ci_over_seeds,
        probe_folds,
        site_probe,
        summarise_over_seeds,
    )
    from s2v_core.evaluation.sleep_stats import (
        STAT_DEFINITIONS,
        compare_sleep_statistics,
        sleep_statistics,
    )
    from s2v_core.evaluation.staging import (
        StagingMetrics,
        bootstrap_ci,
        cohort_metrics,
        confusion_counts,
        metrics_from_confusion,
        staging_metrics,
    )

_WHERE = {
    "all_subsets": "s2v_core.evaluation.robustness",
    "canonical_modalities": "s2v_core.evaluation.robustness",
    "modality_importance": "s2v_core.evaluation.robustness",
    "subset_label": "s2v_core.evaluation.robustness",
    "subset_metrics": "s2v_core.evaluation.robustness",
    "leave_one_site_out": "s2v_core.evaluation.shortcut",
    "mean_ci_over_seeds": "s2v_core.evaluation.shortcut",
    "probe_folds": "s2v_core.evaluation.shortcut",
    "site_probe": "s2v_core.evaluation.shortcut",
    "summarise_over_seeds": "s2v_core.evaluation.shortcut",
    "STAT_DEFINITIONS": "s2v_core.evaluation.sleep_stats",
    "compare_sleep_statistics": "s2v_core.evaluation.sleep_stats",
    "sleep_statistics": "s2v_core.evaluation.sleep_stats",
    "StagingMetrics": "s2v_core.evaluation.staging",
    "bootstrap_ci": "s2v_core.evaluation.staging",
    "cohort_metrics": "s2v_core.evaluation.staging",
    "confusion_counts": "s2v_core.evaluation.staging",
    "metrics_from_confusion": "s2v_core.evaluation.staging",
    "staging_metrics": "s2v_core.evaluation.staging",
}
"""Where each public name is defined. Loaded on first use, so that one module (e.g. ``staging``
for the agreement of ``s2v predict``) does not import the site probe's scikit-learn models."""

__all__ = [
    "STAT_DEFINITIONS",
    "StagingMetrics",
    "all_subsets",
    "bootstrap_ci",
    "canonical_modalities",
    "cohort_metrics",
    "compare_sleep_statistics",
    "confusion_counts",
    "leave_one_site_out",
    "mean_ci_over_seeds",
    "metrics_from_confusion",
    "modality_importance",
    "probe_folds",
    "site_probe",
    "sleep_statistics",
    "staging_metrics",
    "subset_label",
    "subset_metrics",
    "summarise_over_seeds",
]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
