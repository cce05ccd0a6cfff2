"""What averaging the stage probabilities of several recipe runs (seeds) would score on the real data.

    python bench/ensemble_real.py bench/results/real bench/results/real_mixed_seed1 [--json F]

Each folder is the output of one ``python bench/bench_real.py`` run (its ``probabilities.npz`` holds
the per-epoch probabilities of every scored recording, zero-shot and leave-one-subject-out). For
each method, the probabilities of the runs are averaged epoch by epoch and the stage is the most
probable one, exactly as ``predict_night`` decides (3-class slpdb: merged probabilities summed
first). Scoring is ``bench_real``'s: pooled kappa over the same epochs, 95 % bootstrap intervals
over subjects; every run alone is printed beside the average, and the peers' figures (YASA,
sleepecg, run by bench_real in the same process as the first folder's run, on the same epochs)
are quoted from the ``summary.json`` of ``--peers`` (default: the first folder).

This evaluates an ensemble without training anything: LOSO stays leave-one-subject-out, because
each run's fold for a subject never saw that subject. It needs ../shared/data for the reference
hypnograms (skipped cleanly without it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_real import SCORED, collect, real_nights  # noqa: E402
from real_data import SHARED  # noqa: E402

from s2v_core.inference.predict import Prediction  # noqa: E402
from s2v_core.stages import merge_stages  # noqa: E402

METHODS = ("ours zero-shot", "ours LOSO")


def stages_from(probabilities: np.ndarray, three_class: bool) -> np.ndarray:
    """Stage codes of these probabilities as ``predict_night``'s :class:`Prediction` decides them
    (5-class, or bench_real's 3-class codes from the merged probabilities)."""
    n = len(probabilities)
    pred = Prediction(stages=probabilities.argmax(axis=1).astype(np.int8), probabilities=probabilities,
                      modalities=(), global_gates={}, epoch_gates=np.zeros((n, 0), np.float32))  # fmt: skip
    return (merge_stages(pred.merged_as_five(3), 3) if three_class else pred.stages).astype(np.int64)


def load_runs(folders: list[Path]) -> list[dict[str, np.ndarray]]:
    runs = []
    for folder in folders:
        path = folder / "probabilities.npz"
        if not path.is_file():
            raise SystemExit(f"{path}: not found (write it with python bench/bench_real.py --out {folder})")
        with np.load(path, allow_pickle=False) as z:
            runs.append({k: z[k] for k in z.files})
    keys = set(runs[0])
    for folder, run in zip(folders[1:], runs[1:], strict=True):
        if set(run) != keys:
            raise SystemExit(f"{folder}: scored other recordings than {folders[0]}; rerun bench_real on both")
    return runs


def predictions(nights: dict, runs: list[dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    labels = [f"run {i + 1}" for i in range(len(runs))] + ["average"]
    for method in METHODS:
        for label in labels:
            out[f"{method} ({label})"] = {}
    for key in runs[0]:
        method, name = key.split("|", 1)
        if method not in METHODS:
            continue
        three = SCORED[nights[name.split(":")[0]]["kind"]][1]
        shapes = {run[key].shape for run in runs}
        if len(shapes) != 1:
            raise SystemExit(f"{key}: the runs have different epoch counts {sorted(shapes)}")
        for i, run in enumerate(runs):
            out[f"{method} (run {i + 1})"][name] = stages_from(run[key], three)
        mean = np.mean([run[key] for run in runs], axis=0)
        out[f"{method} (average)"][name] = stages_from(mean, three)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="bench_real output folders (one per run)")
    ap.add_argument("--json", type=Path, help="also write the pooled figures here")
    ap.add_argument("--peers", type=Path, help="bench_real folder whose summary.json has the peers' figures")
    args = ap.parse_args()
    if not (SHARED / "slpdb").is_dir() or not (SHARED / "dreams").is_dir():
        print(f"skipped: the real data are not in {SHARED}")
        return 0
    runs = load_runs(args.folders)
    nights = real_nights(SHARED)
    preds = predictions(nights, runs)
    results = collect(nights, preds)
    summary = (args.peers or args.folders[0]) / "summary.json"
    if summary.is_file():
        for key, v in json.loads(summary.read_text())["pooled"].items():
            if key.endswith(("| YASA", "| sleepecg")):
                results[key] = v
    results = dict(sorted(results.items(), key=lambda kv: kv[0].split(" | ")[0]))  # group by data set
    print(f"runs: {', '.join(str(f) for f in args.folders)}")
    print("pooled kappa [95% CI over subjects]:")
    for key, v in results.items():
        print(f"  {key:66s} {v['kappa']:6.3f} [{v['lo']:.3f}, {v['hi']:.3f}]  ({v['n_subjects']} subjects)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
