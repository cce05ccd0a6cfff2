"""Evaluation suite shared by the CLI, the app and the benchmarks.

* :mod:`~s2v_core.evaluation.staging`: accuracy, kappa, macro-F1, MCC, confusion, bootstrap.
* :mod:`~s2v_core.evaluation.sleep_stats`: TIB, TST, SE, SOL, WASO, REM latency, stage minutes.
* :mod:`~s2v_core.evaluation.robustness`: metrics for every subset of modalities.
* :mod:`~s2v_core.evaluation.shortcut`: site probe, leave-one-site-out, intervals over seeds.
"""

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
