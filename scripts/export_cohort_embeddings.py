"""Export the recipe cohort's embeddings for the app's Embedding map page.

    python scripts/export_cohort_embeddings.py --work .cache/recipe \
        --out models/sleep2vec-small/embeddings

Reads the recipe's cohort store and three models: the DASH-InfoNCE and plain-InfoNCE
pretrained backbones (``WORK/pretrain/best``, ``WORK/pretrain_infonce/best``, same store, seed
and schedule) and the shipped classifier. Writes into ``--out``:

* ``nights.parquet``: one row per (model, night): metadata, precomputed UMAP / t-SNE / PCA
  coordinates (fitted per model) and the night embedding ``emb_*`` (float16).
* ``epochs.parquet``: per night at most ``--epochs-per-night`` scored epochs, stratified by
  stage (the same epochs for every model), with the same columns plus ``epoch`` and ``stage``.
* ``site_scores.json``: site-probe balanced accuracy with confidence intervals for every
  model and level, on all the modalities of each night (what the map shows) and on the
  modalities every site shares (the fair comparison: in this cohort the sensor set itself
  differs between sites), plus how everything was made.

Backbone embeddings are the encoder's output states (before the projection head) averaged
over the modalities valid at each epoch; classifier embeddings are the gated fusion (the
staging head's input); night embeddings average the covered epochs
(see :mod:`s2v_core.views.embedding_map`).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from s2v_core.cohort.prepare import AUGMENT_MARK
from s2v_core.cohort.store import CohortStore
from s2v_core.evaluation import shortcut
from s2v_core.experiments import common_modalities
from s2v_core.inference import embed as inference_embed
from s2v_core.inference.predict import load_classifier, model_id
from s2v_core.views import embedding_map as em

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("export_cohort_embeddings")


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _backbone_info(folder: Path) -> dict:
    doc = json.loads((folder / "config.json").read_text())
    extra = doc.get("extra", {})
    tc = extra.get("train_config", {})
    metrics = extra.get("metrics", {})
    return {
        "checkpoint": _rel(folder),
        "model_id": model_id(folder),
        "loss": tc.get("loss"),
        "preset": tc.get("preset"),
        "seed": tc.get("seed"),
        "epochs": tc.get("epochs"),
        "best_epoch": extra.get("epoch"),
        "step": doc.get("step"),
        "weights": extra.get("weights"),
        "val_retrieval_mean": metrics.get("val_retrieval_mean"),
        "val_chance_mean": metrics.get("val_chance_mean"),
        "manifest_sha256": extra.get("data_summary", {}).get("manifest_sha256"),
    }


def embed_cohort(store: CohortStore, models: dict, common: tuple[str, ...], per_night: int,
                 seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:  # fmt: skip
    """Night and sampled-epoch tables for every model, and the common-subset embeddings."""
    night_rows, epoch_rows, common_emb = [], [], {k: {"nights": [], "epochs": []} for k in models}
    originals = [n for n in store.nights() if AUGMENT_MARK not in n]  # randomised training copies left out
    for i, night_id in enumerate(originals):
        e = store.entry(night_id)
        night = store.night(night_id)
        per_model = {k: inference_embed.epoch_embeddings(m, night) for k, m in models.items()}
        eligible = np.ones(night.n_epochs, dtype=bool)
        for emb, cov, _ in per_model.values():
            eligible &= (cov > 0) & np.isfinite(emb).all(axis=1)
        picked = inference_embed.sample_epochs(night.stages, eligible, per_night, seed=seed + i)
        meta = {"night": night_id, "subject": e.subject, "site": e.site,
                "age": np.nan if e.age is None else float(e.age), "sex": e.sex, "split": e.split}  # fmt: skip
        for key, (emb, cov, used) in per_model.items():
            night_rows.append({"model": key, **meta, "n_epochs": night.n_epochs,
                               "modalities": ",".join(used), "vector": inference_embed.pool_epochs(emb, cov)})  # fmt: skip
            for j in picked:
                epoch_rows.append({"model": key, **meta, "epoch": int(j),
                                   "stage": int(night.stages[j]), "modalities": ",".join(used),
                                   "vector": emb[j]})  # fmt: skip
            c_emb, c_cov, _ = inference_embed.epoch_embeddings(models[key], night, common)
            common_emb[key]["nights"].append(inference_embed.pool_epochs(c_emb, c_cov))
            ok = picked[(c_cov[picked] > 0) & np.isfinite(c_emb[picked]).all(axis=1)]
            common_emb[key]["epochs"].append((ok, c_emb[ok]))
        log.info("%d/%d %s: %d epochs sampled", i + 1, len(originals), night_id, len(picked))
    return pd.DataFrame(night_rows), pd.DataFrame(epoch_rows), common_emb


def _with_maps(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Add ``<method>_x/_y`` (fitted per model) and expand ``vector`` into ``emb_*`` (float16)."""
    parts = []
    for key, part in frame.groupby("model", sort=False):
        part = part.reset_index(drop=True)
        x = np.stack(part["vector"].to_numpy())
        for method in em.METHODS:
            t0 = time.perf_counter()
            coords = em.project(x, method, seed).coords
            part[f"{method}_x"], part[f"{method}_y"] = coords[:, 0], coords[:, 1]
            log.info("%s %s on %d points: %.1f s", key, method, len(x), time.perf_counter() - t0)
        emb = pd.DataFrame(x.astype(np.float16), columns=[f"emb_{i}" for i in range(x.shape[1])])
        parts.append(pd.concat([part.drop(columns="vector"), emb], axis=1))
    out = pd.concat(parts, ignore_index=True)
    if "stage" in out:
        out["stage"] = out["stage"].astype(np.int8)
    return out


def _scores(nights: pd.DataFrame, epochs: pd.DataFrame, common_emb: dict, seeds) -> dict:
    out: dict = {}
    for key in nights["model"].unique():
        n = nights[nights["model"] == key]
        ep = epochs[epochs["model"] == key]
        res = {
            "nights": shortcut.site_score(np.stack(n["vector"]), n["site"], groups=n["subject"],
                                    seeds=seeds),
            "epochs": shortcut.site_score(np.stack(ep["vector"]), ep["site"], groups=ep["subject"],
                                    seeds=seeds),
        }  # fmt: skip
        c_n = np.stack(common_emb[key]["nights"])
        c_idx = [(night, ok) for night, (ok, _) in zip(n["night"], common_emb[key]["epochs"],
                                                        strict=True)]  # fmt: skip
        c_ep = np.concatenate([e for _, e in common_emb[key]["epochs"]])
        meta = n.set_index("night")
        sites = np.concatenate([[meta.loc[night, "site"]] * len(ok) for night, ok in c_idx])
        subjects = np.concatenate([[meta.loc[night, "subject"]] * len(ok) for night, ok in c_idx])
        res["common_nights"] = shortcut.site_score(c_n, n["site"], groups=n["subject"], seeds=seeds)
        res["common_epochs"] = shortcut.site_score(c_ep, sites, groups=subjects, seeds=seeds)
        out[key] = res
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=".cache/recipe", help="recipe work folder")
    p.add_argument("--out", default="models/sleep2vec-small/embeddings")
    p.add_argument("--classifier", default="models/sleep2vec-small/classifier")
    p.add_argument("--dash", help="DASH backbone (default WORK/pretrain/best)")
    p.add_argument("--infonce", help="InfoNCE backbone (default WORK/pretrain_infonce/best)")
    p.add_argument("--epochs-per-night", type=int, default=60)
    p.add_argument("--seed", type=int, default=0, help="epoch sampling and projection seed")
    p.add_argument("--probe-repeats", type=int, default=5, help="repeated CV splits per score")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    t0 = time.time()
    work = Path(args.work)
    store = CohortStore(work / "store")
    folders = {
        "dash": Path(args.dash or work / "pretrain" / "best"),
        "infonce": Path(args.infonce or work / "pretrain_infonce" / "best"),
        "classifier": Path(args.classifier),
    }
    models = {k: inference_embed.load_backbone(folders[k]) for k in ("dash", "infonce")}
    models["classifier"] = load_classifier(folders["classifier"])[0]
    common = common_modalities(store)
    if not common:
        print("no modality is shared by every night; the common-subset score is skipped",
              file=sys.stderr)  # fmt: skip
        return 2
    nights, epochs, common_emb = embed_cohort(store, models, common, args.epochs_per_night,
                                              args.seed)  # fmt: skip
    seeds = tuple(range(args.probe_repeats))
    scores = _scores(nights, epochs, common_emb, seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _with_maps(nights, args.seed).to_parquet(out / "nights.parquet", index=False,
                                             compression="zstd", use_dictionary=False)  # fmt: skip
    _with_maps(epochs, args.seed).to_parquet(out / "epochs.parquet", index=False,
                                             compression="zstd", use_dictionary=False)  # fmt: skip
    import sklearn
    import umap

    doc = {
        "what": "site-probe balanced accuracy of the cohort embeddings (lower is better); "
        "chance = 1 / n_sites; shortcut_score = (bacc - chance) / (1 - chance)",
        "probe": "standardised features -> logistic regression, subject-grouped stratified "
        f"{scores['dash']['nights']['n_splits']}-fold CV repeated with {len(seeds)} fold seeds "
        f"({list(seeds)}); balanced_accuracy = mean over folds and repeats; ci_folds = 95% "
        "t-interval over the folds (bounds averaged over repeats); dash_minus_infonce compares "
        "the two backbones on identical folds",
        "pretraining_seeds": 1,
        "caveat": "one pretraining seed per loss: the intervals cover probe folds and splits, "
        "not training runs",
        "scores": scores,
        "dash_minus_infonce": {
            level: shortcut.paired_difference(scores["dash"][level], scores["infonce"][level])
            for level in scores["dash"]
        },
        "levels": {
            "nights": "all nights of the store (train, val and test splits)",
            "epochs": f"<= {args.epochs_per_night} scored epochs per night, stratified by "
            "stage, the same epochs for every model",
            "common_nights": f"night embeddings from the modalities every night has ({', '.join(common)})",
            "common_epochs": f"epoch embeddings from {', '.join(common)} only, same epochs",
        },
        "embedding": {
            "dash": "mean over valid modalities of the pretrained encoder's output states "
            "(before the projection head), per 30-s epoch",
            "infonce": "same as dash, for the plain-InfoNCE backbone",
            "classifier": "gated fusion of the modalities' states (the staging head's input)",
            "night": "mean of the night's epoch embeddings over epochs with a valid modality",
        },
        "models": {
            "dash": _backbone_info(folders["dash"]),
            "infonce": _backbone_info(folders["infonce"]),
            "classifier": {"checkpoint": _rel(folders["classifier"]),
                           "model_id": model_id(folders["classifier"])},  # fmt: skip
        },
        "common_modalities": list(common),
        "store": {"path": _rel(work / "store"), "nights": sum(AUGMENT_MARK not in n for n in store.nights()),
                  "splits": store.manifest["split"].value_counts().to_dict()},  # fmt: skip
        "maps": {"methods": list(em.METHODS), "seed": args.seed,
                 "fitted": "per model and level, on that model's rows; features standardised"},  # fmt: skip
        "commands": [
            "bash scripts/train_shipped_model.sh "
            f"{_rel(work)}  # cohort, store, DASH and InfoNCE pretraining, classifier",
            "python scripts/export_cohort_embeddings.py --work "
            f"{_rel(work)} --out {_rel(out)} --epochs-per-night {args.epochs_per_night} "
            f"--seed {args.seed} --probe-repeats {args.probe_repeats}",
        ],
        "versions": {"torch": torch.__version__, "scikit-learn": sklearn.__version__,
                     "umap-learn": umap.__version__},  # fmt: skip
        "git_commit": _git_commit(),
        "minutes": round((time.time() - t0) / 60, 2),
    }
    (out / "site_scores.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.2f} MB) in {doc['minutes']} min")
    for key, res in scores.items():
        for level, s in res.items():
            lo, hi = s["ci_folds"]
            print(f"  {key:<10} {level:<14} site balanced accuracy {s['balanced_accuracy']:.3f} "
                  f"[{lo:.3f}, {hi:.3f}] pooled {s['pooled_balanced_accuracy']:.3f} "
                  f"(chance {s['chance']:.3f}, n={s['n_samples']})")  # fmt: skip
    for level, d in doc["dash_minus_infonce"].items():
        lo, hi = d["ci_folds"]
        print(f"  DASH - InfoNCE {level:<14} {d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}], "
              f"DASH lower in {d['folds_lower']:.0%} of {d['n_folds']} folds, tied in "
              f"{d['folds_tied']:.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
