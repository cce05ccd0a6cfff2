"""The small cohort store the GPU benchmarks carry, and what they make of it on the GPU machine.

``build`` runs ``s2v synth`` + ``s2v prepare`` (needs the full install: pyedflib reads the EDF
files), into an ignored folder small enough to travel with the working tree::

    python bench/bench_store.py build --out build/gpu_store        # 6 one-hour nights, ~33 MB

``grow`` and :func:`eight_hour_night` need only numpy and pandas (a bare GPU machine):
``grow`` makes a training store of many nights from it by hard-linking every night folder
under new night and subject ids (no data copied; the copies are identical, which does not
change how fast windows load or train), and :func:`eight_hour_night` tiles the night that has
all nine modalities into an 8-h night for the inference figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["build_store", "eight_hour_night", "grow_store"]

MANIFEST = "manifest.csv"


def build_store(out: Path, *, nights: int = 6, hours: float = 1.0, seed: int = 1) -> Path:
    """``s2v synth --nights N --hours H --seed S`` then ``s2v prepare`` into ``out``."""
    from s2v_core.cohort.prepare import prepare_store
    from s2v_core.synth.cohort import generate_cohort

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(nights, Path(tmp) / "cohort", seed=seed, hours=hours)
        prepare_store(Path(tmp) / "cohort", out, progress=False)
    return out


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        try:
            os.link(f, dst / f.name)
        except OSError:  # another file system, or no hard links: copy
            shutil.copy2(f, dst / f.name)


def grow_store(src: Path, dst: Path, copies: int) -> Path:
    """A store of ``copies`` x every night of ``src``, all in the train split (hard links)."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    manifest = pd.read_csv(src / MANIFEST, dtype=str, keep_default_na=False)
    rows = []
    for c in range(copies):
        for _, row in manifest.iterrows():
            row = row.copy()
            row["night"], row["subject"] = f"{row['night']}-c{c:03d}", f"{row['subject']}-c{c:03d}"
            row["split"] = "train"
            _link_tree(src / "nights" / manifest.loc[_, "night"], dst / "nights" / row["night"])
            rows.append(row)
    pd.DataFrame(rows).to_csv(dst / MANIFEST, index=False)
    return dst


def eight_hour_night(store: Path, hours: float = 8.0):
    """The store's night with the most modalities, tiled to ``hours`` (a canonical Night)."""
    from s2v_core.cohort.store import CohortStore
    from s2v_core.night import Night, NightMeta

    st = CohortStore(store)
    best = max(st.nights(), key=lambda n: (len(st.entry(n).modalities), st.entry(n).n_epochs))
    night = st.night(best)
    n = int(round(hours * 120))
    reps = -(-n // night.n_epochs)

    def tile(x):
        return np.concatenate([np.asarray(x)] * reps)[:n]

    return Night(
        meta=NightMeta(night_id=f"{best}-x{reps}"),
        signals={m: tile(x) for m, x in night.signals.items()},
        epoch_valid={m: tile(v) for m, v in night.epoch_valid.items()},
        stages=tile(night.stages),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="synth + prepare a small store (full install)")
    b.add_argument("--out", type=Path, default=Path("build/gpu_store"))
    b.add_argument("--nights", type=int, default=6)
    b.add_argument("--hours", type=float, default=1.0)
    b.add_argument("--seed", type=int, default=1)
    g = sub.add_parser("grow", help="hard-link copies of every night into a train store")
    g.add_argument("src", type=Path)
    g.add_argument("dst", type=Path)
    g.add_argument("--copies", type=int, default=40)
    args = ap.parse_args()
    if args.cmd == "build":
        out = build_store(args.out, nights=args.nights, hours=args.hours, seed=args.seed)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        print(f"{out}: {len(pd.read_csv(out / MANIFEST))} nights, {size / 2**20:.1f} MiB")
    else:
        out = grow_store(args.src, args.dst, args.copies)
        print(f"{out}: {len(pd.read_csv(out / MANIFEST))} nights")


if __name__ == "__main__":
    main()
