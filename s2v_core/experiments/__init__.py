"""Reproducible pretraining experiments: DASH vs InfoNCE over seeds, a DASH sensitivity sweep,
and the scaling law (modality count and model size vs downstream quality).

Modules: :mod:`.grid` (the runs), :mod:`.probes` (the scores), :mod:`.run` (training them,
resumably), :mod:`.report` (summaries, tables, figures).

Every experiment is a grid of pretraining runs on one cohort store. Each run is scored the same
way, on frozen backbone embeddings, so the numbers compare across losses, settings and sizes:

* ``retrieval_mean`` / ``retrieval_lift`` / ``retrieval_min_lift``: validation cross-modal
  retrieval of the best checkpoint (mean accuracy; mean and worst ratio to chance over pairs);
* ``kappa_all``: 5-class staging of a linear probe (standardised features, logistic regression)
  fitted on the train split's epoch embeddings and scored on the val + test nights, with every
  modality a night and the model share (encoder states averaged over modalities);
* ``kappa_common``: the same with only the modalities every night of the store has, and the
  model too (no site has more sensors than another);
* ``kappa_anchor`` (scaling only): the same with the anchor modality alone (the first of the
  modality order), the modality every run of the scaling grid shares;
* ``kappa_loso`` / ``kappa_loso_worst``: leave-one-site-out staging: the probe is fitted on the
  sampled epochs of every other site's nights and scored on each site in turn (all shared
  modalities); mean and lowest kappa over sites;
* ``site_shortcut``: site-probe score of per-epoch embeddings of the common modalities over all
  nights (subject-grouped folds; 0 = chance, 1 = site fully decodable; lower is better), with
  ``site_balanced_accuracy`` and ``site_chance``.

Runs are resumable: a finished run (``RUN/done.json``) is not trained again and its scores
(``RUN/eval.json``) are reused, an interrupted one continues from its last epoch. The
experiment folder gets ``results.csv`` (one row per run), ``summary.csv`` (mean and Student-t
interval over seeds per group), ``paired.csv`` (losses: DASH minus InfoNCE seed by seed),
``summary.md`` (the same as a Markdown table), ``experiment.json`` (settings) and a figure (``figure.html`` interactive, ``figure.png``).
"""

from s2v_core.experiments.grid import (
    EXPERIMENTS,
    SCALING_ORDER,
    SWEEP_DEFAULTS,
    RunSpec,
    make_grid,
    parse_sweep,
)
from s2v_core.experiments.probes import (
    METRICS,
    common_modalities,
    evaluate_backbone,
    probe_embeddings,
    probe_leave_one_site_out,
    probe_staging,
)
from s2v_core.experiments.report import (
    load_experiment,
    paired_losses,
    summarise,
    summary_figure,
    summary_markdown,
    write_figure,
)
from s2v_core.experiments.run import run_experiment

__all__ = [
    "EXPERIMENTS",
    "METRICS",
    "SCALING_ORDER",
    "SWEEP_DEFAULTS",
    "RunSpec",
    "common_modalities",
    "evaluate_backbone",
    "load_experiment",
    "make_grid",
    "paired_losses",
    "parse_sweep",
    "probe_leave_one_site_out",
    "probe_staging",
    "run_experiment",
    "probe_embeddings",
    "summarise",
    "summary_figure",
    "summary_markdown",
    "write_figure",
]
