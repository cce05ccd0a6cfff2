"""``s2v prepare``: turn a folder of recordings into a cohort store (serially or on Dask)."""

from __future__ import annotations

import argparse
from pathlib import Path

from s2v_core.cli.options import (
    add_cluster_options,
    add_quiet_option,
    add_seed_option,
    cluster_from_args,
)
from s2v_core.cli.output import field
from s2v_core.errors import S2VError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``prepare SOURCE --out STORE [--metadata CSV] [--seed N]``."""
    p = subparsers.add_parser(
        "prepare",
        help="turn a folder of recordings (or a synthetic cohort) into a cohort store",
        description="Load every night of SOURCE (metadata.csv with psg_file, recordings of any "
        "kind s2v info reads with hypnograms next to them, an NSRR download or a BIDS dataset), "
        "resample, scale and write a "
        "memory-mapped store with a subject-level train/val/test split. Finished nights are "
        "skipped when run again; a night that fails is listed in STORE/failures.csv. With "
        "--workers/--scheduler/--slurm the nights are prepared on a Dask cluster.",
    )
    p.add_argument("source", help="folder of recordings (EDF/BDF, WFDB, DREAMS text, FIF, BrainVision, EEGLAB...), "
                   "with metadata.csv, an NSRR download or a BIDS dataset")
    p.add_argument("--out", required=True, help="store folder (created if needed)")
    p.add_argument("--metadata", help="metadata CSV to use instead of SOURCE/metadata.csv")
    add_seed_option(p, help="seed of the subject split (default 0)")
    p.add_argument("--overwrite", action="store_true", help="redo nights already prepared")
    add_quiet_option(p)
    p.add_argument(
        "--layout",
        choices=("auto", "flat", "nsrr", "bids"),
        default="auto",
        help="source layout: flat (metadata.csv or recordings in one folder), nsrr (SHHS/MESA/MrOS/"
        "CFS/WSC downloads: polysomnography/ + datasets/), bids (sub-*/[ses-*/]eeg/ with "
        "*_events.tsv), auto (default: nsrr when SOURCE has polysomnography/, bids when it has "
        "sub-* folders or dataset_description.json, and no metadata.csv)",
    )
    p.add_argument("--augment", type=int, default=0, metavar="K",
                   help="also write K randomised copies of every train night (random sampling rate, filters, "
                        "gain, polarity, mains, artefacts, beat errors, gaps: domain randomisation for training)")
    p.add_argument("--augment-seed", type=int, default=0, help="seed of the randomised copies")
    add_cluster_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``s2v prepare``; prints the split counts and any failed nights."""
    from s2v_core.cohort.prepare import prepare_store
    from s2v_core.cohort.store import CohortStore

    cluster = cluster_from_args(args)
    layout = getattr(args, "layout", "auto")
    run = prepare_store(
        args.source,
        args.out,
        metadata_csv=args.metadata,
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
        layout=layout,
        cluster=cluster,
        augment=args.augment,
        augment_seed=args.augment_seed,
    )
    failed = run[run["status"] == "failed"]
    for _, row in failed.head(10).iterrows():
        print(f"failed: {field(row['night'])}: {field(row['error'])}")
    if len(failed) > 10:
        print(f"... and {len(failed) - 10} more (see {Path(args.out) / 'failures.csv'})")
    if len(failed) == len(run):
        raise S2VError(f"{args.source}: no night could be prepared")
    store = CohortStore(args.out)
    counts = store.manifest["split"].value_counts()
    print("store:", ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "val", "test")))
    _warn_unlabelled(run, store)
    return 0


def _warn_unlabelled(run, store) -> None:
    """``warning:`` lines for nights without a labelled epoch, and for a train split without any."""
    from s2v_core.cohort.prepare import LABELLED
    from s2v_core.train.finetune import labelled_epochs

    prepared = run[run["status"].isin(("done", "skipped"))]
    if LABELLED in prepared:
        none = prepared.loc[prepared[LABELLED].fillna(0) == 0, "night"].astype(str).tolist()
        if none:
            shown = ", ".join(field(n) for n in none[:5]) + (f" and {len(none) - 5} more" if len(none) > 5 else "")
            print(f"warning: {len(none)} night(s) have no labelled epoch ({shown}): no hypnogram was paired "
                  "with them (hypnogram_file in metadata.csv, or NAME-Hypnogram.edf/NAME.xml/NAME.csv next to "
                  "the recording), or it scores none of their epochs")  # fmt: skip
    if store.nights("train") and labelled_epochs(store, "train") == 0:
        print("warning: the train split has no labelled epoch: s2v finetune cannot learn from this store")
