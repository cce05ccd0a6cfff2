"""Night-level heads on pooled embeddings of a frozen sleep2vec model, and AHI from scored events.

Modules: :mod:`.tasks` (what to predict), :mod:`.ahi` (AHI from scored events), :mod:`.embeddings`
(pooled night embeddings), :mod:`.linear` (the heads), :mod:`.cv` (subject-level evaluation).

Tasks (:func:`parse_task`):

``age``
    Regression in years; metrics MAE (years) and Pearson r.
``sex``
    Binary (M = 1, F = 0); metrics AUROC and balanced accuracy.
``ahi``
    Regression on ``log1p(AHI)``, reported in events per hour: MAE, Pearson r, Spearman rho,
    and the severity classes < 5, 5-15, 15-30, >= 30 (accuracy, Cohen's kappa).
``outcome:COLUMN``
    Binary outcome from any metadata column holding 0/1, yes/no, true/false (y/n, t/f);
    blanks are unknown and left out.

Model choice. Each night is one mean-pooled embedding (the masked mean over epochs of the fused
per-epoch states, :func:`s2v_core.inference.embed.pool_epochs`; optionally with the standard
deviation appended), and the head is a regularised linear model on standardised features: ridge
regression for ``age``/``ahi``, L2 logistic regression with balanced class weights for binary
tasks. Cohorts for night-level labels are small (tens to hundreds of nights for a 128-d or
larger embedding), where an MLP overfits and varies from seed to seed; a linear probe is convex,
deterministic, the usual way to read out frozen embeddings, and its strength is chosen by an
inner subject-level cross-validation inside each training fold.

Evaluation is subject-level: folds come from :class:`~sklearn.model_selection.GroupKFold`
(regression) or :class:`~sklearn.model_selection.StratifiedGroupKFold` (binary), grouped by
subject, so no subject has nights on both sides. Every metric is reported as the mean over
folds with a t-based 95% confidence interval, and on the pooled out-of-fold predictions,
next to a trivial baseline (training-fold mean, or training-fold prevalence) and, when the
nights come from several sites, a site-only linear model (the shortcut a head could learn).

A trained head is a folder ``head.json`` (task, settings, backbone id, CV metrics) plus
``head.safetensors`` (scaler mean and scale, coefficients, intercept); no pickle.

AHI from scored events (:func:`ahi_from_events`): apneas plus hypopneas that start in a sleep
epoch (N1, N2, N3, REM), divided by the hours of sleep. Events starting in wake or unscored
epochs are counted separately and left out, as in AASM scoring.
"""

from s2v_core.night_heads.ahi import (
    AHIResult,
    ahi_from_events,
    ahi_from_files,
    cohort_ahi,
    severity_class,
)
from s2v_core.night_heads.cv import (
    CVReport,
    cross_validate,
    predictions_frame,
    task_metrics,
    train_night_head,
)
from s2v_core.night_heads.embeddings import recording_embedding, store_embeddings
from s2v_core.night_heads.linear import NightHead, choose_alpha, fit_head
from s2v_core.night_heads.tasks import (
    NightHeadError,
    TaskSpec,
    binary_values,
    join_metadata,
    labelled_rows,
    parse_task,
    task_targets,
)

__all__ = [
    "AHIResult",
    "CVReport",
    "NightHead",
    "NightHeadError",
    "TaskSpec",
    "ahi_from_events",
    "ahi_from_files",
    "binary_values",
    "choose_alpha",
    "cohort_ahi",
    "cross_validate",
    "fit_head",
    "join_metadata",
    "labelled_rows",
    "parse_task",
    "predictions_frame",
    "recording_embedding",
    "severity_class",
    "store_embeddings",
    "task_metrics",
    "task_targets",
    "train_night_head",
]
