"""How every backbone is scored: linear staging probes, leave-one-site-out, site shortcut, retrieval."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.cohort.sources import store_sources
from s2v_core.errors import S2VError
from s2v_core.evaluation.shortcut import site_score
from s2v_core.evaluation.staging import staging_metrics
from s2v_core.inference.embed import backbone_epoch_embeddings, sample_epochs
from s2v_core.modalities import MODALITIES

__all__ = [
    "EVAL_VERSION",
    "METRICS",
    "common_modalities",
    "evaluate_backbone",
    "probe_embeddings",
    "probe_leave_one_site_out",
    "probe_staging",
    "retrieval_scores",
]

log = logging.getLogger(__name__)

EVAL_VERSION = 2
"""Version of the per-run scores (``eval.json``); runs scored by another version are rescored."""

METRICS: tuple[str, ...] = (
    "kappa_all", "kappa_common", "kappa_anchor", "kappa_loso", "kappa_loso_worst",
    "site_shortcut", "site_balanced_accuracy",
    "retrieval_mean", "retrieval_lift", "retrieval_min_lift",
)  # fmt: skip
"""Per-run scores summarised over seeds (missing ones are NaN)."""


# --- scoring a backbone ---------------------------------------------------------------------
def common_modalities(store) -> tuple[str, ...]:
    """Modalities every night of the store has (canonical order)."""
    shared = set(MODALITIES)
    for mods in store.manifest["modalities"]:
        shared &= set(mods)
    return tuple(m for m in MODALITIES if m in shared)


def probe_embeddings(
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
    known = set(model.config.modalities)
    rows = []
    for i, src in enumerate(store_sources(store)):
        night = src.load()
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
        keep = picked if src.split == "train" else np.flatnonzero(ok)
        for j in keep:
            rows.append((src.night_id, src.subject, src.site, src.split, int(j), int(stages[j]),
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


def retrieval_scores(run_dir: Path) -> dict[str, float]:
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
    out: dict[str, Any] = {}
    common = tuple(m for m in common_modalities(store) if m in model.config.modalities)
    views: dict[str, tuple[str, ...] | None] = {"all": None}
    if common:
        views["common"] = common
    if anchor is not None and anchor in model.config.modalities:
        views["anchor"] = (anchor,)
    frames = {}
    for view, wanted in views.items():
        frame = probe_embeddings(model, store, wanted, per_night=per_night, seed=seed)
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
            log.warning("site probe skipped: %s", exc)
    return out
