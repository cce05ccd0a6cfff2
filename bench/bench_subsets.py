"""Staging one night from many modality subsets: one prediction per subset vs encode once, fuse per subset.

    python bench/bench_subsets.py [--hours 8] [--threads N] [--sample 10]

The 8-h, nine-modality synthetic sample night and the shipped model. The old way is what the
Modalities page did: ``predict_night`` for each subset (with the model's feature ranges, as the
app passes them). The new way is what it does now: ``SubsetStages`` (each modality read and
encoded once, then only the gated fusion and the staging head per subset, many subsets per
pass). Prints, for the quick set (single, named and leave-one-out subsets) and for all 511
subsets, old vs new wall time, and the largest probability difference between the two paths.

All 511 subsets the old way would take half an hour, so that figure is an ESTIMATE: the mean of
``--sample`` subsets spread over all sizes, times 511. The quick set is timed in full both ways.
Goals (issue 14, point 5): all subsets < 20 s, quick set < 5 s, probabilities equal to 1e-4.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from s2v_core.evaluation.robustness import all_subsets
from s2v_core.inference.predict import load_classifier, predict_night
from s2v_core.inference.subsets import predict_subsets
from s2v_core.recording.loading import load_night
from s2v_core.shipped import default_model_dir
from s2v_core.synth.cohort import full_sample_night
from s2v_core.views.subsets import SubsetStages, quick_subsets


def _old_way(model, night, subsets, ranges) -> tuple[float, dict]:
    """Seconds to stage each subset with its own ``predict_night``, and the predictions."""
    preds = {}
    t = time.perf_counter()
    for s in subsets:
        preds[s] = predict_night(model, night, s, ranges=ranges)
    return time.perf_counter() - t, preds


def _new_way(model, night, subsets) -> float:
    """Seconds for a fresh :class:`SubsetStages` (nothing cached) to stage ``subsets``."""
    t = time.perf_counter()
    SubsetStages(model, night).stages(subsets)
    return time.perf_counter() - t


def _compare(old: dict, new: dict) -> tuple[float, int, int]:
    """(max |p_old - p_new|, epochs whose stage differs, epochs compared)."""
    diff, changed, n = 0.0, 0, 0
    for s, p in old.items():
        q = new[s]
        diff = max(diff, float(np.abs(p.probabilities - q.probabilities).max()))
        changed += int((p.stages != q.stages).sum())
        n += len(p.stages)
    return diff, changed, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    ap.add_argument("--sample", type=int, default=10, help="subsets timed the old way for the 511 estimate")
    ap.add_argument("--repeats", type=int, default=2, help="new-way timings, best of")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    psg, hyp = full_sample_night(hours=args.hours)
    night = load_night(psg, hyp)
    model, _, extra = load_classifier(default_model_dir())
    ranges = extra.get("feature_ranges")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load:.2f} at start; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"night: {night.n_epochs} epochs ({night.n_epochs / 120:g} h), modalities {', '.join(night.modalities)}")

    everything = all_subsets(night.modalities)
    quick = quick_subsets(night.modalities)
    predict_night(model, night, quick[0])  # warm-up (first-call allocations)

    best_quick = min(_new_way(model, night, quick) for _ in range(args.repeats))
    best_all = min(_new_way(model, night, everything) for _ in range(args.repeats))

    t_quick_old, old_quick = _old_way(model, night, quick, ranges)
    step = max(1, len(everything) // args.sample)
    sample = everything[step // 2 :: step][: args.sample]
    t_sample_old, old_sample = _old_way(model, night, sample, ranges)
    est_all_old = t_sample_old / len(sample) * len(everything)

    # the same subsets through the new path with the feature ranges: every Prediction field
    old = {**old_quick, **old_sample}
    new = predict_subsets(model, night, list(old), ranges=ranges)
    diff, changed, n = _compare(old, new)
    same_warnings = all(old[s].warnings == new[s].warnings for s in old)

    print()
    print(f"{'':34s}{'old (per subset)':>22s}{'new (encode once)':>20s}{'speed-up':>10s}")
    print(f"{f'quick set ({len(quick)} subsets)':34s}{t_quick_old:19.2f} s {best_quick:17.2f} s "
          f"{t_quick_old / best_quick:8.1f}x")
    print(f"{f'all {len(everything)} subsets':34s}{est_all_old:19.1f} s*{best_all:17.2f} s "
          f"{est_all_old / best_all:8.1f}x")
    print(f"  * ESTIMATE, not measured: {t_sample_old:.2f} s for {len(sample)} subsets of sizes "
          f"{', '.join(str(len(s)) for s in sample)}, extrapolated to {len(everything)}")
    print(f"new way: best of {args.repeats}, a fresh cache each time (reading and encoding included)")
    print()
    print(f"old vs new on {len(old)} subsets ({n} epochs): max |probability difference| {diff:.2e}, "
          f"{changed} epoch(s) with another stage, warnings {'identical' if same_warnings else 'DIFFER'}")
    print(f"goals: all subsets < 20 s {'met' if best_all < 20 else 'NOT met'}; quick set < 5 s "
          f"{'met' if best_quick < 5 else 'NOT met'}; probabilities within 1e-4 {'met' if diff <= 1e-4 else 'NOT met'}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


if __name__ == "__main__":
    main()
