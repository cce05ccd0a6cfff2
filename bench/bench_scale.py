"""Cohort throughput (nights/min), serial vs a local Dask cluster, for prepare and embed.

    python bench/bench_scale.py [--nights 8] [--hours 2] [--workers 2] [--model DIR]

Generates a synthetic cohort (not timed), then times on the same nights:

* ``prepare``: serial ``prepare_store`` vs ``prepare_store(cluster=...)``;
* ``embed``: the serial ``s2v embed`` path (model loaded once, torch 1 thread) vs
  ``embed_store`` on N single-threaded worker processes (each loads the model once).

Two cluster figures: *cold* is ``--workers N`` as a user runs it (the call starts the cluster,
the worker processes import numpy/scipy/torch, and it stops the cluster); *warm* runs on a
cluster started and warmed (modules imported) beforehand and reached with ``--scheduler``, the
steady state of a long cohort run. The serial process is warm too (modules imported by the
generator). Outputs of all paths are checked to be equal. With N workers on N free cores the
ideal ratio is N; a small cohort or a busy machine gives less.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import distributed
import pandas as pd
import torch

from s2v_core.cohort.cluster import ClusterSpec
from s2v_core.cohort.embed import embed_sources, embed_store
from s2v_core.cohort.prepare import prepare_store
from s2v_core.cohort.sources import store_sources
from s2v_core.inference.predict import load_classifier
from s2v_core.synth.cohort import generate_cohort

MODEL = Path(__file__).resolve().parents[1] / "models" / "sleep2vec-small" / "classifier"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def _warm_up() -> None:
    """Import what the tasks import, on a worker."""
    import s2v_core.cohort.embed
    import s2v_core.cohort.prepare  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nights", type=int, default=8)
    ap.add_argument("--hours", type=float, default=2.0, help="hours per synthetic night")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=str(MODEL), help="classifier folder for embed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep files here (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="s2v-bench-scale-"))
    cohort = work / "cohort"
    try:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}")  # fmt: skip
        generate_cohort(args.nights, cohort, seed=args.seed, hours=args.hours)
        n = args.nights
        print(f"cohort: {n} synthetic nights of {args.hours:g} h; workers: {args.workers}")
        spec = ClusterSpec(workers=args.workers)
        _, t_ps = timed(prepare_store, cohort, work / "serial", progress=False)
        _, t_pc = timed(prepare_store, cohort, work / "cold", progress=False, cluster=spec)

        def serial_embed():
            model = load_classifier(args.model)[0]
            return embed_sources(store_sources(work / "serial"), model)

        (ep_s, ni_s), t_es = timed(serial_embed)
        cold, t_ec = timed(embed_store, work / "serial", work / "cold.parquet",
                           model_dir=args.model, cluster=spec, progress=False)  # fmt: skip

        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      dashboard_address=":0") as cluster:  # fmt: skip
            client = distributed.Client(cluster)
            client.run(_warm_up)
            warm_spec = ClusterSpec(scheduler=cluster.scheduler_address)
            _, t_pw = timed(prepare_store, cohort, work / "warm", progress=False, cluster=warm_spec)
            warm, t_ew = timed(embed_store, work / "serial", work / "warm.parquet",
                               model_dir=args.model, cluster=warm_spec, progress=False)  # fmt: skip
            client.close()

        ref = pd.read_csv(work / "serial" / "manifest.csv")
        for other in ("cold", "warm"):
            pd.testing.assert_frame_equal(ref, pd.read_csv(work / other / "manifest.csv"))
        for run in (cold, warm):
            pd.testing.assert_frame_equal(run.epochs, ep_s)
            pd.testing.assert_frame_equal(run.nights, ni_s)

        w = f"{args.workers}w"
        print(f"{'step':<8} {'serial':>12} {f'{w} cold':>12} {f'{w} warm':>12}  "
              "ratio cold / warm (seconds serial, cold, warm)")  # fmt: skip
        for step, ts, tc, tw in (("prepare", t_ps, t_pc, t_pw), ("embed", t_es, t_ec, t_ew)):
            print(f"{step:<8} {n / ts * 60:>6.1f} n/min {n / tc * 60:>6.1f} n/min "
                  f"{n / tw * 60:>6.1f} n/min  {ts / tc:.2f}x / {ts / tw:.2f}x "
                  f"({ts:.1f}, {tc:.1f}, {tw:.1f} s)")  # fmt: skip
        print("outputs equal: manifest, per-epoch and per-night embeddings")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
