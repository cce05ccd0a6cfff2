"""Whole-night staging speed with the shipped model: 8-h, nine-modality synthetic PSG.

    python bench/bench_inference.py [--hours 8]

Prints file-to-canonical-night time, warm inference time (best of 3) with 1 and 2 torch threads,
and file-to-hypnogram total. Goals (speed issue): warm inference <= 2 s, file-to-hypnogram <= 6 s.
The YASA peer comparison (EEG+EOG+EMG) is still to be added.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from s2v_core.inference.predict import load_classifier, predict_night
from s2v_core.recording.loading import load_night
from s2v_core.synth.cohort import full_sample_night

MODEL = Path(__file__).resolve().parents[1] / "models" / "sleep2vec-small" / "classifier"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=8.0)
    args = ap.parse_args()
    psg, hyp = full_sample_night(hours=args.hours)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads by default")
    t = time.perf_counter()
    night = load_night(psg, hyp)
    t_load = time.perf_counter() - t
    model, _, _ = load_classifier(MODEL)
    predict_night(model, night)  # warm-up
    best = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            predict_night(model, night)
            times.append(time.perf_counter() - t)
        best[threads] = min(times)
    print(f"night: {night.n_epochs} epochs, modalities {', '.join(night.modalities)}")
    print(f"read + preprocess (file -> canonical night): {t_load:6.2f} s")
    for th, s in best.items():
        print(f"warm inference, {th} thread(s):               {s:6.2f} s  (goal <= 2 s: {'met' if s <= 2 else 'NOT met'})")
    total = t_load + best[2]
    print(f"file -> hypnogram (2 threads):               {total:6.2f} s  (goal <= 6 s: {'met' if total <= 6 else 'NOT met'})")


if __name__ == "__main__":
    main()
