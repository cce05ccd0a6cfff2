"""Reproducible pretraining experiments: DASH vs InfoNCE over seeds, a DASH sensitivity sweep,
and the scaling law (modality count and model size vs downstream quality).

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

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import S2VError
from s2v_core.modalities import MODALITIES

logger = logging.getLogger(__name__)

EXPERIMENTS: tuple[str, ...] = ("losses", "sweep", "scaling")
"""Experiment kinds of :func:`make_grid` and ``s2v experiment``."""

SWEEP_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "age_bandwidth": (5.0, 80.0),
    "sex_diff_factor": (0.5, 1.0),
    "site": ((1.0, 1.0), (2.0, 0.5)),
}
"""Values tried one at a time around the paper's setting (20 years, 0.8, 1.3/0.8)."""

SCALING_ORDER: tuple[str, ...] = ("eeg", "eog", "emg", "ecg", "resp", "spo2", "airflow", "effort", "ibi")
"""Order in which the scaling grid adds modalities; its first is the anchor modality."""

EVAL_VERSION = 2
"""Version of the per-run scores (``eval.json``); runs scored by another version are rescored."""

METRICS: tuple[str, ...] = (
    "kappa_all", "kappa_common", "kappa_anchor", "kappa_loso", "kappa_loso_worst",
    "site_shortcut", "site_balanced_accuracy",
    "retrieval_mean", "retrieval_lift", "retrieval_min_lift",
)  # fmt: skip
"""Per-run scores summarised over seeds (missing ones are NaN)."""


@dataclass(frozen=True)
class RunSpec:
    """One pretraining run of a grid.

    ``settings`` are :class:`~s2v_core.train.config.TrainConfig` fields that differ from the
    experiment's base configuration (``loss``, ``age_bandwidth``, ``preset``,
    ``model_overrides``...); ``group`` is what seeds are pooled over.
    """

    name: str
    group: str
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)
    order: int = 0  # plotting position of the group (sweep value, modality count...)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(_fmt(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_sweep(items: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``["age_bandwidth=5,80", "site=1/1,2/0.5"]`` -> ``{"age_bandwidth": (5.0, 80.0), ...}``.

    Raises
    ------
    S2VError
        An unknown parameter or a value that is not a positive number (``site``: two).
    """
    out: dict[str, tuple[Any, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or name not in SWEEP_DEFAULTS:
            raise S2VError(
                f"--sweep {item!r}: expected NAME=V1,V2 with NAME one of {', '.join(SWEEP_DEFAULTS)}"
            )
        parsed = []
        for text in values.split(","):
            parts = text.strip().split("/")
            try:
                numbers = tuple(float(p) for p in parts)
            except ValueError:
                raise S2VError(f"--sweep {item!r}: {text!r} is not a number") from None
            if name == "site" and len(numbers) != 2:
                raise S2VError(f"--sweep {item!r}: site values are SAME/DIFFERENT, e.g. 1.3/0.8")
            if name != "site" and len(numbers) != 1:
                raise S2VError(f"--sweep {item!r}: {text!r} is not a single number")
            if not all(math.isfinite(v) and v > 0 for v in numbers):
                raise S2VError(f"--sweep {item!r}: values must be positive numbers")
            parsed.append(numbers if name == "site" else numbers[0])
        if not parsed:
            raise S2VError(f"--sweep {item!r}: no values")
        out[name] = tuple(parsed)
    return out


def make_grid(
    kind: str,
    seeds: Sequence[int],
    *,
    sweep: dict[str, tuple[Any, ...]] | None = None,
    presets: Sequence[str] = ("tiny", "small"),
    counts: Sequence[int] = (2, 3, 5, 9),
    order: Sequence[str] = SCALING_ORDER,
    preset_lr: dict[str, float] | None = None,
) -> list[RunSpec]:
    """The runs of an experiment.

    Parameters
    ----------
    kind : {"losses", "sweep", "scaling"}
        ``losses``: DASH-InfoNCE and plain InfoNCE per seed. ``sweep``: DASH with the paper's
        setting (group ``default``) and each ``sweep`` value changed one at a time.
        ``scaling``: DASH for every preset and every modality count (the first ``k`` of
        ``order``).
    seeds : sequence of int
        Training seeds; every group is run once per seed.
    sweep : dict, optional
        Parameter -> values (default :data:`SWEEP_DEFAULTS`); ``site`` values are
        ``(same, different)``.
    presets, counts, order
        Scaling grid: model presets, modality counts (2..9) and the order modalities are added.
    preset_lr : dict, optional
        Scaling grid: peak learning rate per preset (others keep the base configuration's);
        a small model often wants a larger rate than a big one.
    """
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds or min(seeds) < 0:
        raise S2VError("give at least one seed >= 0")
    specs: list[RunSpec] = []
    if kind == "losses":
        for seed in seeds:
            for i, loss in enumerate(("dash", "infonce")):
                specs.append(RunSpec(f"{loss}_s{seed}", loss, seed, {"loss": loss}, i))
    elif kind == "sweep":
        values = SWEEP_DEFAULTS if sweep is None else sweep
        for seed in seeds:
            specs.append(RunSpec(f"default_s{seed}", "default", seed, {"loss": "dash"}, 0))
            for name, vals in values.items():
                for j, v in enumerate(vals):
                    settings: dict[str, Any] = {"loss": "dash"}
                    if name == "site":
                        settings["site_same"], settings["site_diff"] = float(v[0]), float(v[1])
                    else:
                        settings[name] = float(v)
                    label = f"{name}={_fmt(v)}"
                    specs.append(RunSpec(f"{label.replace('/', '-')}_s{seed}", label, seed, settings, j + 1))
    elif kind == "scaling":
        order = tuple(order)
        unknown = [m for m in order if m not in MODALITIES]
        if unknown or len(set(order)) != len(order):
            raise S2VError(f"modality order must list distinct modalities of {', '.join(MODALITIES)}")
        bad = [k for k in counts if not 2 <= int(k) <= len(order)]
        if bad:
            raise S2VError(f"modality counts must be between 2 and {len(order)}, got {bad}")
        rates = dict(preset_lr or {})
        stray = sorted(set(rates) - set(presets))
        if stray:
            raise S2VError(f"learning rate given for preset(s) not in the grid: {', '.join(stray)}")
        for seed in seeds:
            for preset in presets:
                for k in sorted(set(int(c) for c in counts)):
                    mods = tuple(m for m in MODALITIES if m in order[:k])  # canonical order
                    settings = {"loss": "dash", "preset": preset, "model_overrides": {"modalities": mods}}
                    if preset in rates:
                        settings["lr"] = float(rates[preset])
                    specs.append(RunSpec(f"{preset}_m{k}_s{seed}", f"{preset}/{k}", seed, settings, k))
    else:
        raise S2VError(f"unknown experiment {kind!r}; choose one of {', '.join(EXPERIMENTS)}")
    return specs


# --- scoring a backbone ---------------------------------------------------------------------
def common_modalities(store) -> tuple[str, ...]:
    """Modalities every night of the store has (canonical order)."""
    shared = set(MODALITIES)
    for mods in store.manifest["modalities"]:
        shared &= set(mods)
    return tuple(m for m in MODALITIES if m in shared)


def store_embeddings(
    model, store, wanted: tuple[str, ...] | None, *, per_night: int = 60, seed: int = 0
) -> pd.DataFrame:
    """Per-epoch backbone embeddings of every night (``wanted`` modalities, or all shared).

    Train-split nights contribute a stage-stratified sample of ``per_night`` epochs (the probe's
    training set and the site probe); val/test nights contribute every scored epoch, with the
    same sample flagged in ``sampled``. Nights with none of ``wanted`` are left out.

    Returns
    -------
    pandas.DataFrame
        ``night, subject, site, split, epoch, stage, sampled`` and ``vector`` (float32 array).
    """
    from s2v_core.views.embedding_map import backbone_epoch_embeddings, sample_epochs

    known = set(model.config.modalities)
    rows = []
    for i, night_id in enumerate(store.nights()):
        entry = store.entry(night_id)
        night = store.night(night_id)
        pool = wanted if wanted is not None else tuple(model.config.modalities)
        mods = tuple(m for m in pool if m in night.modalities and m in known)
        if not mods:
            continue
        emb, cov, _ = backbone_epoch_embeddings(model, night, mods)
        stages = np.asarray(night.stages)
        ok = (cov > 0) & np.isfinite(emb).all(axis=1) & (stages >= 0)
        picked = sample_epochs(stages, ok, per_night, seed=seed + i)
        sampled = np.zeros(night.n_epochs, dtype=bool)
        sampled[picked] = True
        keep = picked if entry.split == "train" else np.flatnonzero(ok)
        for j in keep:
            rows.append((night_id, entry.subject, entry.site, entry.split, int(j), int(stages[j]),
                         bool(sampled[j]), emb[j]))  # fmt: skip
    return pd.DataFrame(
        rows, columns=["night", "subject", "site", "split", "epoch", "stage", "sampled", "vector"]
    )


def _linear_probe(seed: int):
    """Standardised features, then multinomial logistic regression (scaler fitted on training rows)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def probe_staging(frame: pd.DataFrame, *, seed: int = 0) -> dict[str, float]:
    """Linear staging probe: fit on train-split rows, score on val + test rows (5 classes)."""
    from s2v_core.evaluation.staging import staging_metrics

    train = frame[frame["split"] == "train"]
    test = frame[frame["split"] != "train"]
    if len(train) == 0 or len(test) == 0 or train["stage"].nunique() < 2:
        return {"kappa": math.nan, "macro_f1": math.nan, "n_test_epochs": int(len(test))}
    probe = _linear_probe(seed)
    probe.fit(np.stack(train["vector"]), train["stage"].to_numpy())
    pred = probe.predict(np.stack(test["vector"]))
    m = staging_metrics(test["stage"].to_numpy(), pred, n_classes=5)
    return {"kappa": float(m.kappa), "macro_f1": float(m.macro_f1), "n_test_epochs": int(len(test))}


def probe_leave_one_site_out(frame: pd.DataFrame, *, seed: int = 0) -> dict[str, float]:
    """Linear staging probe fitted on all other sites' nights, scored on each site in turn.

    Uses the stage-sampled rows (``sampled``) of every split. Returns the mean and the lowest
    per-site 5-class kappa (NaN with fewer than two sites).
    """
    from s2v_core.evaluation.staging import staging_metrics

    rows = frame[frame["sampled"]] if "sampled" in frame else frame
    sites = sorted(rows["site"].unique())
    kappas = []
    for site in sites if len(sites) >= 2 else []:
        train, test = rows[rows["site"] != site], rows[rows["site"] == site]
        if train["stage"].nunique() < 2:
            continue
        probe = _linear_probe(seed)
        probe.fit(np.stack(train["vector"]), train["stage"].to_numpy())
        pred = probe.predict(np.stack(test["vector"]))
        kappas.append(float(staging_metrics(test["stage"].to_numpy(), pred, n_classes=5).kappa))
    kappas = [k for k in kappas if math.isfinite(k)]
    if not kappas:
        return {"kappa_loso": math.nan, "kappa_loso_worst": math.nan}
    return {"kappa_loso": float(np.mean(kappas)), "kappa_loso_worst": float(np.min(kappas))}


def _retrieval_scores(run_dir: Path) -> dict[str, float]:
    path = run_dir / "best" / "retrieval.csv"
    if not path.is_file():
        return {"retrieval_mean": math.nan, "retrieval_lift": math.nan, "retrieval_min_lift": math.nan}
    table = pd.read_csv(path)
    lift = table["accuracy"] / table["chance"]
    return {
        "retrieval_mean": float(table["accuracy"].mean()),
        "retrieval_lift": float(lift.mean()),
        "retrieval_min_lift": float(lift.min()),
    }


def evaluate_backbone(
    model, store, *, anchor: str | None = None, per_night: int = 60, seed: int = 0,
    site_seeds: tuple[int, ...] = (0, 1, 2),
) -> dict[str, Any]:  # fmt: skip
    """Staging-probe kappas and the site-shortcut score of a pretrained backbone (see module)."""
    from s2v_core.views.embedding_map import site_score

    out: dict[str, Any] = {}
    common = tuple(m for m in common_modalities(store) if m in model.config.modalities)
    views: dict[str, tuple[str, ...] | None] = {"all": None}
    if common:
        views["common"] = common
    if anchor is not None and anchor in model.config.modalities:
        views["anchor"] = (anchor,)
    frames = {}
    for view, wanted in views.items():
        frame = store_embeddings(model, store, wanted, per_night=per_night, seed=seed)
        frames[view] = frame
        probe = probe_staging(frame, seed=seed)
        out[f"kappa_{view}"] = probe["kappa"]
        out[f"macro_f1_{view}"] = probe["macro_f1"]
    for view in ("all", "common", "anchor"):
        out.setdefault(f"kappa_{view}", math.nan)
    out.update(probe_leave_one_site_out(frames["all"], seed=seed))
    out["site_modalities"] = ",".join(common) if common else ",".join(model.config.modalities)
    site_frame = frames["common"] if common else frames["all"]
    site_frame = site_frame[site_frame["sampled"]]
    out.update(site_shortcut=math.nan, site_balanced_accuracy=math.nan, site_chance=math.nan)
    if site_frame["site"].nunique() >= 2:
        try:
            score = site_score(np.stack(site_frame["vector"]), site_frame["site"].to_numpy(),
                               groups=site_frame["subject"].to_numpy(), seeds=site_seeds)  # fmt: skip
            out.update(site_shortcut=score["shortcut_score"],
                       site_balanced_accuracy=score["balanced_accuracy"], site_chance=score["chance"])  # fmt: skip
        except S2VError as exc:
            logger.warning("site probe skipped: %s", exc)
    return out


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

    from s2v_core.model import count_parameters
    from s2v_core.train.pretrain import pretrain
    from s2v_core.views.embedding_map import load_backbone

    run_dir = out / "runs" / spec.name
    cfg = _train_config(base, spec)
    done = run_dir / "done.json"
    if done.is_file():
        _check_same_settings(spec.name, json.loads(done.read_text(encoding="utf-8"))["train_config"], cfg)
    elif not train:
        return None
    else:
        started = time.perf_counter()
        resume = run_dir if (run_dir / "last" / "config.json").is_file() else None
        if resume is not None:
            logger.info("%s: resuming", spec.name)
        pretrain(store_path, run_dir, cfg, resume_from=resume)
        done.write_text(json.dumps({"seconds": time.perf_counter() - started,
                                    "train_config": cfg.to_dict()}, indent=1), encoding="utf-8")  # fmt: skip
    eval_path = run_dir / "eval.json"
    scores = json.loads(eval_path.read_text(encoding="utf-8")) if eval_path.is_file() else {}
    if scores.get("eval_version") != EVAL_VERSION:  # scored by an older version: score again
        with torch.inference_mode():
            model = load_backbone(run_dir / "best")
            scores = evaluate_backbone(model, store, anchor=anchor, per_night=per_night, seed=spec.seed)
        scores.update(_retrieval_scores(run_dir))
        scores["eval_version"] = EVAL_VERSION
        eval_path.write_text(json.dumps(scores, indent=1), encoding="utf-8")
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
    from s2v_core.cohort.store import CohortStore

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
        results.to_csv(out / "results.csv", index=False)
        if progress is not None:
            progress(
                f"[{i + 1}/{len(specs)}] {spec.name}: kappa_all {row['kappa_all']:.3f}, "
                f"site_shortcut {row['site_shortcut']:.3f}, retrieval lift {row['retrieval_lift']:.2f}"
            )
    if not rows:
        raise S2VError(f"{out}: no finished run to summarise")
    results = pd.DataFrame(rows)
    summary = summarise(results)
    summary.to_csv(out / "summary.csv", index=False)
    paired = paired_losses(results) if kind == "losses" else None
    if paired is not None:
        paired.to_csv(out / "paired.csv", index=False)
    (out / "summary.md").write_text(summary_markdown(kind, summary, paired), encoding="utf-8")
    write_figure(kind, summary, out)
    return results


def summarise(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t interval over seeds of every metric, per group.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``group, order, n_seeds, preset, n_modalities, n_parameters`` and
        ``<metric>``, ``<metric>_low``, ``<metric>_high`` (bounds NaN with one seed).
    """
    from s2v_core.evaluation.shortcut import mean_ci_over_seeds

    rows = []
    for group, part in results.groupby("group", sort=False):
        row = {"group": group, "order": int(part["order"].iloc[0]), "n_seeds": int(len(part)),
               "preset": part["preset"].iloc[0], "n_modalities": int(part["n_modalities"].iloc[0]),
               "n_parameters": int(part["n_parameters"].iloc[0])}  # fmt: skip
        for metric in METRICS:
            values = part[metric].to_numpy(float) if metric in part else np.array([np.nan])
            values = values[np.isfinite(values)]
            if values.size:
                mean, low, high = mean_ci_over_seeds(values, level)
            else:
                mean = low = high = math.nan
            row.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


_TABLE_METRICS = {
    "losses": ("kappa_all", "kappa_common", "kappa_loso", "site_shortcut", "retrieval_lift"),
    "sweep": ("kappa_all", "kappa_common", "kappa_loso", "site_shortcut", "retrieval_lift"),
    "scaling": ("kappa_all", "kappa_anchor", "kappa_loso", "retrieval_lift"),
}


def summary_markdown(kind: str, summary: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    """``summary.md``: the summary as a Markdown table, "mean [low, high]" per metric."""

    def cell(row, metric):
        v, lo, hi = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
        if not np.isfinite(v):
            return "-"
        return f"{v:.3f}" if not np.isfinite(lo) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"

    metrics = _TABLE_METRICS[kind]
    lines = [f"# {_title(kind, summary)}", "",
             "| group | seeds | parameters | " + " | ".join(metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]  # fmt: skip
    for _, row in summary.iterrows():
        cells = [cell(row, m) for m in metrics]
        lines.append(f"| {row['group']} | {int(row['n_seeds'])} | {int(row['n_parameters']):,} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    if paired is not None and len(paired):
        lines += ["", "DASH minus InfoNCE, paired by seed:", "",
                  "| metric | difference [95% CI] | seeds | DASH lower in |", "|---|---|---|---|"]  # fmt: skip
        for _, r in paired.iterrows():
            ci = "" if not np.isfinite(r["low"]) else f" [{r['low']:+.3f}, {r['high']:+.3f}]"
            lines.append(f"| {r['metric']} | {r['dash_minus_infonce']:+.3f}{ci} | {int(r['n_seeds'])} | "
                         f"{int(r['dash_lower_in'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def paired_losses(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """DASH minus InfoNCE, seed by seed, per metric: mean, t-interval and the seeds compared."""
    from s2v_core.evaluation.shortcut import mean_ci_over_seeds

    dash = results[results["loss"] == "dash"].set_index("seed")
    info = results[results["loss"] == "infonce"].set_index("seed")
    seeds = sorted(set(dash.index) & set(info.index))
    rows = []
    for metric in METRICS:
        if metric not in results:
            continue
        diff = np.array([dash.loc[s, metric] - info.loc[s, metric] for s in seeds], dtype=float)
        diff = diff[np.isfinite(diff)]
        if not diff.size:
            continue
        mean, low, high = mean_ci_over_seeds(diff, level)
        rows.append({"metric": metric, "dash_minus_infonce": mean, "low": low, "high": high,
                     "n_seeds": int(diff.size), "dash_lower_in": int((diff < 0).sum())})  # fmt: skip
    return pd.DataFrame(rows)


# --- figure ---------------------------------------------------------------------------------
_PANELS = {
    "losses": ("kappa_all", "kappa_loso", "site_shortcut", "retrieval_lift"),
    "sweep": ("kappa_all", "kappa_loso", "site_shortcut", "retrieval_lift"),
    # site shortcut left out: with fewer modalities it is scored on other sensors, not comparable
    "scaling": ("kappa_all", "kappa_anchor", "kappa_loso", "retrieval_lift"),
}
_LABELS = {
    "kappa_all": "staging kappa, all modalities (probe)",
    "kappa_common": "staging kappa, common modalities (probe)",
    "kappa_anchor": "staging kappa, anchor modality alone (probe)",
    "kappa_loso": "staging kappa on an unseen site (probe, mean)",
    "site_shortcut": "site shortcut score (lower is better)",
    "retrieval_lift": "validation retrieval / chance",
}


def _series(kind: str, summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """(legend name, rows in x order, x column) per line of the figure."""
    if kind == "scaling":
        lines = []
        for preset, part in summary.groupby("preset", sort=False):
            part = part.sort_values("n_modalities")
            size = int(part["n_parameters"].iloc[-1]) / 1e6
            lines.append((f"{preset} ({size:.2f} M parameters)", part, "n_modalities"))
        return lines
    return [("", summary.sort_values("order"), "group")]


def _title(kind: str, summary: pd.DataFrame) -> str:
    seeds = int(summary["n_seeds"].max()) if len(summary) else 0
    title = {"losses": "DASH-InfoNCE vs plain InfoNCE", "sweep": "DASH-InfoNCE sensitivity",
             "scaling": "Scaling: modality count and model size"}[kind]  # fmt: skip
    return title + f" (mean and 95% CI over {seeds} seed{'s' if seeds != 1 else ''})"


def _errors(part: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = part[metric].to_numpy(float)
    lo, hi = part[f"{metric}_low"].to_numpy(float), part[f"{metric}_high"].to_numpy(float)
    return y, np.nan_to_num(y - lo), np.nan_to_num(hi - y)


def summary_figure(kind: str, summary: pd.DataFrame):
    """Plotly figure of a :func:`summarise` table: one panel per headline metric, CI error bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if kind not in _PANELS:
        raise S2VError(f"unknown experiment {kind!r}; choose one of {', '.join(EXPERIMENTS)}")
    panels = _PANELS[kind]
    titles = [_LABELS[p].replace(", ", ",<br>").replace(" (", "<br>(") for p in panels]  # narrow panels
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles)
    for col, metric in enumerate(panels, start=1):
        for name, part, xcol in _series(kind, summary):
            y, err_lo, err_hi = _errors(part, metric)
            x = part[xcol].astype(str if xcol == "group" else float).to_list()
            fig.add_trace(go.Scatter(
                x=x, y=y, name=name or metric, mode="markers+lines" if kind == "scaling" else "markers",
                error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True),
                legendgroup=name, showlegend=bool(name) and col == 1,
            ), row=1, col=col)  # fmt: skip
        if kind == "scaling":
            fig.update_xaxes(title_text="modalities in pretraining", row=1, col=col)
    fig.update_layout(title=_title(kind, summary), height=460, template="plotly_white",
                      margin=dict(t=120), showlegend=kind == "scaling")
    fig.update_annotations(font_size=12)
    return fig


def write_figure(kind: str, summary: pd.DataFrame, out: Path) -> None:
    """``figure.html`` (plotly, offline) and ``figure.png`` (matplotlib, static) of the summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = summary_figure(kind, summary)
    fig.update_layout(width=360 * len(_PANELS[kind]))
    (out / "figure.html").write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
    panels = _PANELS[kind]
    mfig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for name, part, xcol in _series(kind, summary):
            y, err_lo, err_hi = _errors(part, metric)
            x = part[xcol].astype(str if xcol == "group" else float).to_list()
            ax.errorbar(range(len(x)) if xcol == "group" else x, y, yerr=[err_lo, err_hi],
                        fmt="o-" if kind == "scaling" else "o", capsize=3, label=name or None)  # fmt: skip
            if xcol == "group":
                ax.set_xticks(range(len(x)), x, rotation=35, ha="right", fontsize=8)
        ax.set_title(_LABELS[metric], fontsize=9)
        if kind == "scaling":
            ax.set_xlabel("modalities in pretraining")
            if ax is axes[0, 0]:
                ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    mfig.suptitle(_title(kind, summary), fontsize=10)
    mfig.tight_layout()
    mfig.savefig(out / "figure.png", dpi=110)
    plt.close(mfig)


def load_experiment(folder: str | Path) -> dict[str, Any]:
    """An experiment folder's tables: ``kind``, ``summary``, ``results`` and (losses) ``paired``.

    Raises
    ------
    S2VError
        The folder has no ``experiment.json`` or ``summary.csv`` (not a finished experiment).
    """
    folder = Path(folder)
    meta_path, summary_path = folder / "experiment.json", folder / "summary.csv"
    if not meta_path.is_file() or not summary_path.is_file():
        raise S2VError(f"{folder}: not a finished experiment (experiment.json and summary.csv are missing)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    out = {"kind": meta.get("kind"), "meta": meta, "summary": pd.read_csv(summary_path)}
    for name in ("results", "paired"):
        path = folder / f"{name}.csv"
        out[name] = pd.read_csv(path) if path.is_file() else None
    return out
