"""Training and scoring the runs of an experiment, resumably."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.experiments.grid import RunSpec
from s2v_core.experiments.probes import EVAL_VERSION, evaluate_backbone, retrieval_scores
from s2v_core.experiments.report import paired_losses, summarise, summary_markdown, write_figure
from s2v_core.inference.embed import load_backbone
from s2v_core.io.atomic import write_text_atomic
from s2v_core.model.sleep2vec import count_parameters
from s2v_core.sanitize.cells import to_csv
from s2v_core.train.pretrain import pretrain
from s2v_core.train.runfiles import run_checkpoints

__all__ = [
    "run_experiment",
]

log = logging.getLogger(__name__)


# --- running a grid -------------------------------------------------------------------------
def _train_config(base, spec: RunSpec):
    settings = dict(spec.settings)
    overrides = dict(base.model_overrides)
    overrides.update(settings.pop("model_overrides", {}))
    return dataclasses.replace(base, seed=spec.seed, model_overrides=overrides, **settings)


_FREE_SETTINGS = ("device", "num_workers", "log_every", "bf16")
"""Settings that may change between the call that trained a run and one that reuses it."""


def _check_same_settings(name: str, saved: dict, cfg) -> None:
    now = cfg.to_dict()
    changed = sorted(k for k in now if k not in _FREE_SETTINGS and saved.get(k) != now[k])
    if changed:
        details = ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise S2VError(f"run {name} in this folder was trained with other settings ({details}); "
                       "give the same options to continue it, or another --out for a new experiment")


def _run_one(store_path: Path, store, out: Path, spec: RunSpec, base, anchor, per_night,
             train: bool = True) -> dict | None:  # fmt: skip
    import torch

    run_dir = out / "runs" / spec.name
    cfg = _train_config(base, spec)
    done = run_dir / "done.json"
    if done.is_file():
        _check_same_settings(spec.name, json.loads(done.read_text(encoding="utf-8"))["train_config"], cfg)
    elif not train:
        return None
    else:
        started = time.perf_counter()
        # any copy of last/ (one a killed run left mid-replacement included) is resumed
        resume = run_dir if any(n.endswith("last/") or ".last." in n for n in run_checkpoints(run_dir)) else None
        if resume is not None:
            log.info("%s: resuming", spec.name)
        pretrain(store_path, run_dir, cfg, resume_from=resume)
        write_text_atomic(done, json.dumps({"seconds": time.perf_counter() - started,
                                            "train_config": cfg.to_dict()}, indent=1))  # fmt: skip
    eval_path = run_dir / "eval.json"
    scores = json.loads(eval_path.read_text(encoding="utf-8")) if eval_path.is_file() else {}
    if scores.get("eval_version") != EVAL_VERSION:  # scored by an older version: score again
        with torch.inference_mode():
            model = load_backbone(run_dir / "best")
            scores = evaluate_backbone(model, store, anchor=anchor, per_night=per_night, seed=spec.seed)
        scores.update(retrieval_scores(run_dir))
        scores["eval_version"] = EVAL_VERSION
        write_text_atomic(eval_path, json.dumps(scores, indent=1))  # whole or absent
    info = json.loads(done.read_text(encoding="utf-8"))
    model_cfg = cfg.model_config()
    row = {"run": spec.name, "group": spec.group, "order": spec.order, "seed": spec.seed,
           "loss": cfg.loss, "preset": cfg.preset, "n_modalities": len(model_cfg.modalities),
           "modalities": ",".join(model_cfg.modalities),
           "n_parameters": count_parameters(model_cfg), "train_seconds": info.get("seconds", math.nan),
           "lr": cfg.lr, "epochs": cfg.epochs, "age_bandwidth": cfg.age_bandwidth, "sex_diff_factor": cfg.sex_diff_factor,
           "site_same": cfg.site_same, "site_diff": cfg.site_diff}  # fmt: skip
    row.update({k: v for k, v in scores.items() if not isinstance(v, (list, dict))})
    return row


def run_experiment(
    kind: str,
    store_path: str | Path,
    out_dir: str | Path,
    specs: Sequence[RunSpec],
    base,
    *,
    per_night: int = 60,
    anchor: str | None = None,
    progress: Callable[[str], None] | None = None,
    train: bool = True,
) -> pd.DataFrame:
    """Train (or reuse) and score every run, then write the tables and the figure.

    Parameters
    ----------
    kind : str
        One of :data:`EXPERIMENTS` (decides the summary and the figure).
    store_path : path
        Cohort store with train and val splits (val + test nights score the staging probe).
    out_dir : path
        Experiment folder; runs go to ``out_dir/runs/<name>``.
    specs : sequence of RunSpec
        From :func:`make_grid`.
    base : TrainConfig
        Settings shared by every run (epochs, batch size, preset...); each spec overrides some.
    per_night : int
        Epochs sampled per night for the probes' training set and the site probe.
    anchor : str, optional
        Modality scored alone (``kappa_anchor``), for the scaling grid.
    progress : callable, optional
        Receives one line per finished run.
    train : bool
        False: summarise only the runs already finished (those missing are listed by
        ``progress`` and left out), e.g. while another process is still training.

    Returns
    -------
    pandas.DataFrame
        ``results.csv``: one row per run.
    """
    store_path, out = Path(store_path), Path(out_dir)
    store = CohortStore(store_path)
    if not store.nights("train") or not store.nights("val"):
        raise S2VError(f"{store_path}: experiments need nights in both the train and val splits")
    out.mkdir(parents=True, exist_ok=True)
    manifest = store.manifest
    cohort = {"nights": int(len(manifest)), "subjects": int(manifest["subject"].nunique()),
              "sites": sorted(map(str, manifest["site"].unique())),
              "splits": {str(k): int(v) for k, v in manifest["split"].value_counts().items()}}  # fmt: skip
    meta = {"kind": kind, "store": str(store_path), "cohort": cohort, "base": base.to_dict(),
            "per_night": per_night, "anchor": anchor, "runs": [dataclasses.asdict(s) for s in specs]}  # fmt: skip
    (out / "experiment.json").write_text(json.dumps(meta, indent=1, default=list), encoding="utf-8")
    rows = []
    for i, spec in enumerate(specs):
        row = _run_one(store_path, store, out, spec, base, anchor, per_night, train)
        if row is None:
            if progress is not None:
                progress(f"[{i + 1}/{len(specs)}] {spec.name}: not finished, left out")
            continue
        rows.append(row)
        results = pd.DataFrame(rows)
        to_csv(results, out / "results.csv", index=False)
        if progress is not None:
            progress(
                f"[{i + 1}/{len(specs)}] {spec.name}: kappa_all {row['kappa_all']:.3f}, "
                f"site_shortcut {row['site_shortcut']:.3f}, retrieval lift {row['retrieval_lift']:.2f}"
            )
    if not rows:
        raise S2VError(f"{out}: no finished run to summarise")
    results = pd.DataFrame(rows)
    summary = summarise(results)
    to_csv(summary, out / "summary.csv", index=False)
    paired = paired_losses(results) if kind == "losses" else None
    if paired is not None:
        to_csv(paired, out / "paired.csv", index=False)
    (out / "summary.md").write_text(summary_markdown(kind, summary, paired), encoding="utf-8")
    write_figure(kind, summary, out)
    return results
