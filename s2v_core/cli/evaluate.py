"""``s2v evaluate``: staging against expert hypnograms over a store or a folder of recordings."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from s2v_core.cli.options import (
    add_device_option,
    add_overwrite_option,
    add_quiet_option,
    add_seed_option,
    add_threads_option,
    apply_threads,
    modalities_from,
    refuse_overwrite,
)
from s2v_core.cli.output import field

if TYPE_CHECKING:  # `s2v --version` must not import the evaluation package
    from s2v_core.evaluation.cohort import CohortEvaluation

__all__ = ["add_parser", "run"]


def _signed(value: float) -> str:
    return f"{value:+.1f}" if math.isfinite(value) else "n/a"


OUTPUT_FILES = ("per_night.csv", "pooled.csv", "confusion.csv", "sleep_stats.csv", "predictions.csv",
                "importance.csv", "summary.json")  # fmt: skip
"""What ``s2v evaluate`` writes into ``--out`` (kept unless ``--overwrite``)."""


def run(args: argparse.Namespace) -> int:
    """``s2v evaluate`` holding the lock of ``--out`` (one writer); refuses earlier results."""
    from s2v_core.io.lock import FolderLock

    with FolderLock(args.out, "s2v evaluate"):
        refuse_overwrite(args, args.out, OUTPUT_FILES, "evaluation tables")
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    """``s2v evaluate``: evaluate, write the tables, print the pooled table (or JSON)."""
    from tqdm.auto import tqdm

    from s2v_core.evaluation.cohort import evaluate_cohort

    apply_threads(args.threads)
    mods = modalities_from(args.modalities)
    bars: list = []  # made at the first night, so an early error prints one clean line

    def progress(done: int, total: int, _night: str) -> None:
        if not bars:
            bars.append(
                tqdm(total=total, desc="evaluating", unit="night", disable=args.quiet or args.json)
            )
        bars[0].update(1)

    try:
        res = evaluate_cohort(
            args.source,
            args.model,
            split=args.split,
            modalities=mods,
            every_subset=args.all_subsets,
            max_subsets=args.max_subsets,
            n_classes=args.classes,
            n_boot=args.n_boot,
            seed=args.seed,
            device=args.device,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    paths = res.write(args.out)
    if args.json:
        print(json.dumps(res.summary(), indent=1, allow_nan=False))
        return 0
    _print_summary(res, paths, args.out)
    return 0


def _print_summary(res: CohortEvaluation, paths: dict[str, Path], out: str | Path) -> None:
    """Print the result of ``s2v evaluate`` as a table with its notes.

    A header line, the pooled table, the sleep-statistic bias, the modality importance, the
    model's warning, the skipped nights and the files written to ``out``.
    """
    from s2v_core.evaluation.cohort import format_table

    info = res.info
    print(
        f"{info['model']} on {info['n_nights']} night(s) of {field(info['source'])}"
        + (f" (split {info['split']})" if info["split"] else "")
        + f", {info['n_classes']}-class; 95% CI: bootstrap over nights ({info['bootstrap']['n_boot']})"
    )
    print(format_table(res))
    stats = res.sleep_stats_summary()
    keep = [
        s
        for s in ("TST_min", "SE_pct", "SOL_min", "WASO_min", "REM_latency_min")
        if s in stats.index
    ]
    if keep:
        print(
            "sleep statistics, predicted - expert (mean over nights): "
            + ", ".join(f"{s} {_signed(stats.loc[s, 'bias'])}" for s in keep)
        )
    if res.importance is not None:
        top = res.importance["delta"].head(3)
        print(
            "modality importance (kappa with - without): "
            + ", ".join(f"{m} {d:+.3f}" for m, d in top.items())
        )
    if "warning" in info:
        print("warning:", field(info["warning"]))
    for s in res.skipped[:5]:
        print(f"skipped {field(s['night'])}: {field(s['reason'])}")
    if len(res.skipped) > 5:
        print(f"... and {len(res.skipped) - 5} more skipped (summary.json lists them)")
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out}")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v evaluate`` to ``sub`` (the subparsers of the ``s2v`` parser)."""
    p = sub.add_parser(
        "evaluate",
        help="evaluate staging against expert hypnograms over a store or a folder of recordings",
        description="Per-night and pooled accuracy, kappa, macro-F1, per-stage F1 and confusion; "
        "bootstrap intervals over nights; sleep statistics predicted vs expert; optionally every "
        "modality subset. Writes per_night.csv, pooled.csv, confusion.csv, sleep_stats.csv, "
        "predictions.csv and summary.json to OUT.",
    )
    p.add_argument(
        "source",
        help="cohort store (s2v prepare), or a folder of recordings with their hypnograms (any kind s2v "
        "info reads; flat, NSRR or BIDS layout; see the README's 'What it reads')",
    )
    p.add_argument("--model", help="classifier folder (default: the shipped model)")
    p.add_argument("--split", choices=("train", "val", "test"), help="only this split of a store")
    p.add_argument(
        "--modalities", help="comma-separated main subset, e.g. ibi (default: all each night has; unlike "
        "s2v predict, modalities outside the model's training ranges are not left out, so every night is "
        "scored on the same rule)"
    )
    p.add_argument(
        "--all-subsets",
        action="store_true",
        help="also every non-empty subset of the night's modalities (of --modalities when given)",
    )
    p.add_argument(
        "--max-subsets", type=int, help="with --all-subsets: only the N smallest subsets"
    )
    p.add_argument(
        "--classes",
        type=int,
        choices=(5, 4, 3),
        default=5,
        help="5 stages, 4 (N1+N2) or 3 (W/NREM/REM)",
    )
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples over nights")
    add_seed_option(p, help="bootstrap seed")
    p.add_argument("--out", required=True, help="output folder")
    add_overwrite_option(p, "tables of an earlier evaluation")
    add_device_option(p)
    p.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    add_quiet_option(p)
    add_threads_option(p)
    p.set_defaults(func=run)
    return p
