"""CPU cost of the training data path, before and after issue 15, measured in the same run.

*Before* is the frozen old path (``tests/windows_reference.py``): one ``np.load`` memory map per
file and item, ``apply_scaling`` (whose ``nan_to_num`` makes 5 passes), items stacked by the
collate function, workers restarted every epoch. *After* is :mod:`s2v_core.train.windows`.

1. per window, ``dataset[PairIndex(i, a, b)]`` (before collation) for a 128-Hz pair (eeg-eog)
   and a 4-Hz pair (ibi-spo2); and, after, the batched fetch (``__getitems__`` + collate) per
   window; median over rounds, old and new alternating within each round;
2. loader throughput (windows/s) over a few epochs, with 0 and 2 workers; after: workers
   persistent or not. Each figure is the median over rounds of ``windows / seconds`` of all
   epochs (worker start-up included), and of the epochs after the first.

The machine is shared and noisy: compare the ratios, which come from the same rounds.

    python bench/bench_dataloader.py                    # build/gpu_store, grown x8
    python bench/bench_dataloader.py --features         # engineered features + crops too
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

import torch  # noqa: E402
from bench_store import grow_store  # noqa: E402

from s2v_core.train.windows import (  # noqa: E402
    PairFirstBatchSampler,
    PairIndex,
    WindowDataset,
    collate_pair,
    make_loader,
)
from tests.windows_reference import ReferenceWindowDataset, reference_make_loader  # noqa: E402

PAIRS = (("eeg", "eog"), ("ibi", "spo2"))


def per_window(store: Path, spec: dict, rounds: int, batch: int) -> None:
    old, new = ReferenceWindowDataset(store, "train", **spec), WindowDataset(store, "train", **spec)
    print(f"\nper window ({rounds} rounds; ms, median)   {'before':>8} {'after':>8} {'ratio':>6}   "
          f"{'after, batched':>14} {'ratio':>6}")  # fmt: skip
    for a, b in PAIRS:
        idx = sorted(set(new.windows_with(a)) & set(new.windows_with(b)))
        keys = [PairIndex(int(i), a, b) for i in idx]
        groups = [keys[j : j + batch] for j in range(0, len(keys) - batch + 1, batch)] or [keys]
        t_old, t_new, t_batch = [], [], []
        for r in range(rounds):
            for ds, out in ((old, t_old), (new, t_new)) if r % 2 == 0 else ((new, t_new), (old, t_old)):
                start = time.perf_counter()
                for k in keys:
                    ds[k]
                out.append((time.perf_counter() - start) / len(keys))
            start = time.perf_counter()
            for g in groups:
                collate_pair(new.__getitems__(g))
            t_batch.append((time.perf_counter() - start) / sum(len(g) for g in groups))
        mo, mn, mb = (1e3 * statistics.median(t) for t in (t_old, t_new, t_batch))
        print(f"  {a}-{b} ({len(keys)} windows)".ljust(40) + f"{mo:8.3f} {mn:8.3f} {mo / mn:5.1f}x   {mb:14.3f} {mo / mb:5.1f}x")


def loader_rate(ds, sampler, loader, epochs: int, batch: int) -> tuple[float, float]:
    times = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        start, n = time.perf_counter(), 0
        for b in loader:
            n += len(b["index"])
        times.append((time.perf_counter() - start, n))
    total = sum(n for _, n in times) / sum(t for t, _ in times)
    later = sum(n for _, n in times[1:]) / max(sum(t for t, _ in times[1:]), 1e-9)
    return total, later


def loaders(store: Path, spec: dict, rounds: int, batch: int, epochs: int, batches: int, workers: list[int]) -> None:
    configs = []
    for w in workers:
        configs.append((f"{w} workers, before", w, True, False))
        if w:
            configs.append((f"{w} workers, after, not persistent", w, False, False))
        configs.append((f"{w} workers, after{', persistent' if w else ''}", w, False, True))
    results = {c[0]: [] for c in configs}
    for r in range(rounds):
        for name, w, old, persistent in configs if r % 2 == 0 else configs[::-1]:
            ds = (ReferenceWindowDataset if old else WindowDataset)(store, "train", **spec)
            sampler = PairFirstBatchSampler(ds, batch, seed=r, n_batches=batches)
            loader = (reference_make_loader(ds, sampler, w) if old
                      else make_loader(ds, sampler, w, persistent_workers=persistent))  # fmt: skip
            results[name].append(loader_rate(ds, sampler, loader, epochs, batch))
            del loader
    print(f"\nloader, batch {batch}, {batches} batches x {epochs} epochs ({rounds} rounds; windows/s, median)")
    print(f"  {'':<38} {'all epochs':>10} {'epochs 2+':>10}   vs before (all / 2+)")
    for w in workers:
        base = results[f"{w} workers, before"]
        b_all, b_later = (statistics.median(x[i] for x in base) for i in (0, 1))
        for name, *_ in (c for c in configs if c[1] == w):
            v_all, v_later = (statistics.median(x[i] for x in results[name]) for i in (0, 1))
            print(f"  {name:<38} {v_all:10.1f} {v_later:10.1f}   {v_all / b_all:4.1f}x / {v_later / b_later:4.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=ROOT / "build" / "gpu_store", help="a store (bench_store.py build)")
    ap.add_argument("--copies", type=int, default=8, help="grow the store to this many copies of its nights")
    ap.add_argument("--features", action="store_true", help="raw samples + engineered features, with crops")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batches", type=int, default=6, help="batches per epoch")
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    ap.add_argument("--skip-loader", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = {"features": 2, "feature_crops": True} if args.features else {}
    print(f"torch {torch.__version__}; store {args.store} x{args.copies}; "
          f"{'raw + features (crops)' if args.features else 'raw samples'}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        store = grow_store(args.store, Path(tmp) / "store", args.copies)
        per_window(store, spec, args.rounds, args.batch_size)
        if not args.skip_loader:
            loaders(store, spec, args.rounds, args.batch_size, args.epochs, args.batches, args.workers)


if __name__ == "__main__":
    main()
