"""Every real-data figure of the shipped model, next to YASA and sleepecg run in the same process.

    pip install -e ".[bench]"                     # yasa 0.8.1, keras (sleepecg's model)
    bash scripts/train_shipped_model.sh           # the recipe's stores and synthetic-only model
    python bench/bench_real.py [--work .cache/recipe] [--out bench/results/real] [--subjects N]

Data (../shared/data, read in place; skipped when absent): the DREAMS EEG excerpts 1-4 (30 min
each; 3 is 50 Hz) and ``excerpt3.edf`` (the 50-Hz PSG of excerpt 3), and PhysioNet slpdb
(12 records of 10 OSA subjects, expert beat annotations).

What is scored, on the same epochs for every method:

* **leave one subject out (LOSO)**: the real data are part of the shipped model's training (the
  adaptation stage, :mod:`s2v_core.train.adapt`), so the shipped model is never scored on them.
  For each real subject the adaptation stage is re-run from the synthetic-only classifier with
  that subject left out, and only the held-out subject is scored;
* **zero-shot**: the synthetic-only classifier (no real data in training);
* **peers**: YASA (EEG only, DREAMS; it refuses recordings at or below 80 Hz) and sleepecg's
  ``wrn-gru-mesa`` (3-class from the beats, slpdb);
* **the excerpt-3 PSG** three ways: all its modalities, EEG alone, and as ``s2v predict`` stages
  it by default, leaving out the modalities whose features are outside the model's training
  ranges (:func:`s2v_core.inference.familiarity.familiar_subset`; which ones is printed);
* **held-out synthetic subjects**: the shipped model vs the previous shipped model (taken from git
  history) on the test split of the recipe's synthetic store, FULL and each single modality.

Intervals are 95 % percentile bootstraps over subjects (epochs of a resampled subject stay together).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_dreams import yasa_stage  # noqa: E402
from bench_slpdb import load_sleepecg, sleepecg_stages  # noqa: E402
from real_data import SHARED, prepare_real  # noqa: E402

from s2v_core.evaluation.cohort import evaluate_cohort  # noqa: E402
from s2v_core.inference.predict import load_classifier, predict_night  # noqa: E402
from s2v_core.io.dreams import read_dreams_signal  # noqa: E402
from s2v_core.recording.registry import load_recording  # noqa: E402
from s2v_core.shipped import MODEL_DIR  # noqa: E402
from s2v_core.stages import merge_stages  # noqa: E402
from s2v_core.train.adapt import adapt_to_real  # noqa: E402

PREVIOUS_COMMIT = "e5a7fa1"
"""The last commit whose shipped classifier was trained before the real-recordings work."""
N_BOOT = 2000
GOALS = {"dreams_loso_pooled": 0.55, "slpdb_loso": 0.40, "slpdb_zero_shot": 0.30}


# --- data ------------------------------------------------------------------------------------
def real_nights(shared: Path) -> dict[str, dict]:
    """``{name: {"night", "subject", "kind", "path"}}`` of every real recording scored."""
    out = {}
    d = shared / "dreams"
    for k in (1, 2, 3, 4):
        if (d / f"excerpt{k}.txt").exists():
            out[f"excerpt{k}"] = {"night": load_recording(d / f"excerpt{k}.txt", d / f"Hypnogram_excerpt{k}.txt"),
                                  "subject": f"excerpt{k}", "kind": "dreams", "path": d / f"excerpt{k}.txt"}  # fmt: skip
    if (d / "excerpt3.edf").exists():
        out["excerpt3_psg"] = {"night": load_recording(d / "excerpt3.edf", d / "Hypnogram_excerpt3.txt"),
                               "subject": "excerpt3", "kind": "dreams_psg", "path": d / "excerpt3.edf"}  # fmt: skip
    for p in sorted((shared / "slpdb").glob("*.ecg")):
        out[p.stem] = {"night": load_recording(p), "subject": p.stem.rstrip("abx"), "kind": "slpdb", "path": p}
    return out


# --- scoring ---------------------------------------------------------------------------------
def kappa(ref: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    ok = ref >= 0
    return float(cohen_kappa_score(ref[ok], pred[ok])) if ok.sum() else float("nan")


def pooled(items: list[tuple[str, np.ndarray, np.ndarray]], seed: int = 0) -> dict:
    """Pooled kappa over ``(subject, reference, prediction)`` with a bootstrap over subjects."""
    if not items:
        return {}
    ref = np.concatenate([r for _, r, _ in items])
    pred = np.concatenate([p for _, _, p in items])
    subjects = sorted({s for s, _, _ in items})
    by = {s: [(r, p) for t, r, p in items if t == s] for s in subjects}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(N_BOOT):
        pick = rng.choice(subjects, len(subjects), replace=True)
        parts = [rp for s in pick for rp in by[s]]
        boots.append(kappa(np.concatenate([r for r, _ in parts]), np.concatenate([p for _, p in parts])))
    lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if len(subjects) > 1 else (np.nan, np.nan)
    return {"kappa": kappa(ref, pred), "lo": float(lo), "hi": float(hi), "n_subjects": len(subjects),
            "n_epochs": int((ref >= 0).sum())}  # fmt: skip


def ours(model, night, modalities, three_class: bool, keep: dict | None = None, key: str = "",
         ranges: dict | None = None) -> np.ndarray:  # fmt: skip
    """Our stages; with ``ranges``, modalities unlike the training data are left out (``s2v predict``'s default)."""
    pred = predict_night(model, night, modalities, ranges=ranges, leave_out_unfamiliar=ranges is not None)
    if ranges is not None:
        print(f"    {key}: staged from {', '.join(pred.modalities)}; left out: {', '.join(pred.left_out) or 'none'}")
    if keep is not None:  # per-epoch probabilities, written to probabilities.npz for later analysis
        keep[key] = pred.probabilities
    return merge_stages(pred.merged_as_five(3), 3) if three_class else pred.stages.astype(np.int64)


def reference(night, three_class: bool) -> np.ndarray:
    s = night.stages.astype(np.int64)
    return merge_stages(s, 3).astype(np.int64) if three_class else s


SCORED = {  # kind -> (modalities, 3-class?)
    "dreams": (("eeg",), False),
    "dreams_psg": (None, False),
    "slpdb": (("ibi",), True),
}


def score_model(model, nights: dict[str, dict], keep: dict | None = None, ranges: dict | None = None) -> dict[str, np.ndarray]:
    """Every night staged as SCORED says; the PSG also from EEG alone, and, with the model's training
    feature ranges, as ``s2v predict`` stages it by default (unfamiliar modalities left out)."""
    out = {}
    for name, r in nights.items():
        mods, three = SCORED[r["kind"]]
        out[name] = ours(model, r["night"], mods, three, keep, name)
        if r["kind"] == "dreams_psg":
            out[name + ":eeg"] = ours(model, r["night"], ("eeg",), False, keep, name + ":eeg")
            if ranges:
                out[name + ":familiar"] = ours(model, r["night"], None, False, keep, name + ":familiar", ranges)
    return out


# --- peers -----------------------------------------------------------------------------------
def yasa_predictions(nights: dict[str, dict]) -> dict[str, np.ndarray | str]:
    import mne

    warnings.filterwarnings("ignore", message=".*unpickle estimator.*")
    mne.set_log_level("ERROR")
    out = {}
    for name, r in nights.items():
        if r["kind"] != "dreams":
            continue
        sig = read_dreams_signal(r["path"])
        fs = r["night"].provenance["eeg"].original_sfreq
        raw = mne.io.RawArray(sig.data[None, :] * 1e-6, mne.create_info([sig.label], fs, ch_types="eeg"), verbose="error")
        res = yasa_stage(raw, sig.label)
        out[name] = res["stages"].astype(np.int64) if "stages" in res else f"refused: {res['refused']}"
    return out


def sleepecg_predictions(nights: dict[str, dict]) -> dict[str, np.ndarray]:
    clf = load_sleepecg()
    out = {}
    for name, r in nights.items():
        if r["kind"] == "slpdb":
            stages, _ = sleepecg_stages(r["path"], r["night"].n_epochs, clf)
            out[name] = merge_stages(stages, 3).astype(np.int64)
    return out


# --- leave one subject out -------------------------------------------------------------------
def loso(nights: dict[str, dict], synthetic_store: Path, real_store: Path, synthetic_model: Path,
         subjects: list[str] | None, work: Path, keep: dict | None = None) -> tuple[dict[str, np.ndarray], list[dict]]:  # fmt: skip
    all_subjects = sorted({r["subject"] for r in nights.values()})
    preds, folds = {}, []
    for k, subject in enumerate(subjects or all_subjects):
        t = time.perf_counter()
        res = adapt_to_real(synthetic_store, real_store, work / f"fold{k}", synthetic_model, drop_subjects=[subject])
        model, _, extra = load_classifier(res.checkpoint)
        mine = {n: r for n, r in nights.items() if r["subject"] == subject}
        preds.update(score_model(model, mine, keep, extra.get("feature_ranges")))
        folds.append({"subject": subject, "nights": ",".join(mine), "seconds": round(time.perf_counter() - t, 1)})
        print(f"  fold {k + 1}/{len(subjects or all_subjects)}: {subject} held out ({folds[-1]['seconds']:.0f} s)", flush=True)
    return preds, folds


# --- synthetic held-out subjects ---------------------------------------------------------------
def previous_model(commit: str, out: Path) -> Path | None:
    """The shipped classifier as it was at ``commit`` (from git history), or None outside a clone."""
    out.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        r = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:models/sleep2vec-small/classifier/{f}"],
                           capture_output=True)  # fmt: skip
        if r.returncode:
            return None
        (out / f).write_bytes(r.stdout)
    return out


def synthetic_table(models: dict[str, Path], store: Path) -> pd.DataFrame:
    rows = []
    for name, folder in models.items():
        # the night's main subset and each single modality (subsets come smallest first): not all 511
        res = evaluate_cohort(store, folder, split="test", every_subset=True, max_subsets=9, n_boot=200)
        pooled_ = res.pooled.set_index("subset")
        for subset in ["all"] + [s for s in pooled_.index if "+" not in s and s != "all"]:
            if subset in pooled_.index:
                rows.append({"model": name, "subset": "FULL (all each night has)" if subset == "all" else subset,
                             "kappa": float(pooled_.loc[subset, "kappa"]), "n_nights": int(pooled_.loc[subset, "n_nights"])})  # fmt: skip
    return pd.DataFrame(rows).pivot(index="subset", columns="model", values="kappa")


# --- report ----------------------------------------------------------------------------------
def collect(nights, preds: dict[str, dict[str, np.ndarray]]) -> dict:
    """Pooled kappas with intervals for every (method, data set) pair."""
    groups = {
        "dreams_1-4 EEG 5-class": [n for n, r in nights.items() if r["kind"] == "dreams"],
        "dreams_1,2,4 EEG 5-class": [n for n in ("excerpt1", "excerpt2", "excerpt4") if n in nights],
        "dreams_3 (50 Hz) EEG 5-class": [n for n in ("excerpt3",) if n in nights],
        "dreams_3 PSG (50 Hz) all modalities": [n for n in ("excerpt3_psg",) if n in nights],
        "dreams_3 PSG (50 Hz) EEG 5-class": [n + ":eeg" for n in ("excerpt3_psg",) if n in nights],
        "dreams_3 PSG (50 Hz) unfamiliar left out": [n + ":familiar" for n in ("excerpt3_psg",) if n in nights],
        "slpdb IBI 3-class": [n for n, r in nights.items() if r["kind"] == "slpdb"],
    }
    out = {}
    for gname, names in groups.items():
        three = gname.startswith("slpdb")
        for method, p in preds.items():
            items = [(nights[n.split(":")[0]]["subject"], reference(nights[n.split(":")[0]]["night"], three), p[n])
                     for n in names if isinstance(p.get(n), np.ndarray)]  # fmt: skip
            if len(items) == len(names) and items:
                out[f"{gname} | {method}"] = pooled(items)
    return out


def per_recording(nights, preds) -> pd.DataFrame:
    rows = []
    for n, r in nights.items():
        three = r["kind"] == "slpdb"
        row = {"recording": n, "subject": r["subject"], "epochs": int((r["night"].stages >= 0).sum())}
        for method, p in preds.items():
            v = p.get(n)
            row[method] = kappa(reference(r["night"], three), v) if isinstance(v, np.ndarray) else v
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "recipe", help="the recipe's work folder")
    ap.add_argument("--model", type=Path, default=MODEL_DIR / "classifier", help="the shipped (adapted) classifier")
    ap.add_argument("--synthetic-model", type=Path, default=MODEL_DIR / "classifier_synthetic",
                    help="the synthetic-only classifier the adaptation starts from")
    ap.add_argument("--subjects", type=int, default=None, help="only the first N LOSO folds (quick runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "real")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (SHARED / "slpdb").is_dir() or not (SHARED / "dreams").is_dir():
        print(f"skipped: the real data are not in {SHARED}")
        return 0
    synthetic_store = args.work / "store"
    if not (synthetic_store / "manifest.csv").is_file():
        raise SystemExit(f"{synthetic_store}: no synthetic store; run bash scripts/train_shipped_model.sh first")
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    nights = real_nights(SHARED)
    real_store = args.work / "real"
    if not (real_store / "manifest.csv").is_file():
        prepare_real(real_store)
    print(f"{len(nights)} real recordings of {len({r['subject'] for r in nights.values()})} subjects; "
          f"torch {torch.__version__}, {args.threads} thread(s)")
    preds: dict[str, dict] = {}
    t = time.perf_counter()
    preds["YASA"] = yasa_predictions(nights)
    preds["sleepecg"] = sleepecg_predictions(nights)
    peer_s = time.perf_counter() - t
    synthetic_model, _, synthetic_extra = load_classifier(args.synthetic_model)
    probabilities: dict[str, dict[str, np.ndarray]] = {"ours zero-shot": {}, "ours LOSO": {}}
    preds["ours zero-shot"] = score_model(synthetic_model, nights, probabilities["ours zero-shot"],
                                          synthetic_extra.get("feature_ranges"))  # fmt: skip
    print("leave-one-subject-out adaptation:")
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        preds["ours LOSO"], folds = loso(nights, synthetic_store, real_store, args.synthetic_model,
                                         None if args.subjects is None else sorted({r['subject'] for r in nights.values()})[: args.subjects],
                                         Path(tmp), probabilities["ours LOSO"])  # fmt: skip
    results = collect(nights, preds)
    table = per_recording(nights, preds)
    print("\npooled kappa [95% CI over subjects]:")
    for key, v in results.items():
        print(f"  {key:60s} {v['kappa']:6.3f} [{v['lo']:.3f}, {v['hi']:.3f}]  ({v['n_subjects']} subjects, {v['n_epochs']} epochs)")
    print("\nper recording (kappa):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    prev = previous_model(PREVIOUS_COMMIT, Path(tempfile.mkdtemp()) / "previous")
    synth = synthetic_table({"shipped": args.model, **({"previous": prev} if prev else {})}, synthetic_store)
    print("\nheld-out synthetic subjects (test split of the recipe store), 5-class kappa:")
    print(synth.to_string(float_format=lambda v: f"{v:.3f}"))
    goals = {
        "DREAMS 1-4 LOSO pooled >= 0.55": results.get("dreams_1-4 EEG 5-class | ours LOSO", {}).get("kappa"),
        "DREAMS 1,2,4 LOSO >= YASA": (results.get("dreams_1,2,4 EEG 5-class | ours LOSO", {}).get("kappa"),
                                      results.get("dreams_1,2,4 EEG 5-class | YASA", {}).get("kappa")),
        "slpdb LOSO >= 0.40": results.get("slpdb IBI 3-class | ours LOSO", {}).get("kappa"),
        "slpdb zero-shot >= 0.30": results.get("slpdb IBI 3-class | ours zero-shot", {}).get("kappa"),
    }
    print("\ngoals:", json.dumps(goals, default=lambda v: round(v, 3) if isinstance(v, float) else v))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(
        {"pooled": results, "folds": folds, "goals": goals, "previous_commit": PREVIOUS_COMMIT, "peer_seconds": round(peer_s, 1),
         "seconds": round(time.perf_counter() - t0, 1), "synthetic_held_out": synth.reset_index().to_dict("records")},
        indent=1, default=float) + "\n")  # fmt: skip
    table.to_csv(args.out / "per_recording.csv", index=False)
    synth.to_csv(args.out / "synthetic_held_out.csv")
    np.savez_compressed(args.out / "probabilities.npz",
                        **{f"{method}|{name}": p for method, d in probabilities.items() for name, p in d.items()})  # fmt: skip
    print(f"\nwrote {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
