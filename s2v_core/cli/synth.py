"""``s2v synth``: generate a synthetic multi-site cohort as EDF+ files."""

from __future__ import annotations

import argparse

from s2v_core.cli.options import (
    add_overwrite_option,
    add_quiet_option,
    add_seed_option,
    refuse_overwrite,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v synth`` to ``sub``."""
    p = sub.add_parser("synth", help="generate a synthetic multi-site cohort as EDF+ files")
    p.add_argument("--nights", type=int, default=8)
    p.add_argument("--out", required=True)
    add_seed_option(p)
    p.add_argument("--hours", type=float, default=None, help="hours per night (default: drawn, 6.5-9)")
    add_quiet_option(p, help=None)
    add_overwrite_option(p, "cohort (metadata.csv and its recordings)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the cohort and its ``metadata.csv``."""
    from s2v_core.synth.cohort import generate_cohort

    refuse_overwrite(args, args.out, ["metadata.csv"], "synthetic cohort")
    frame = generate_cohort(args.nights, args.out, seed=args.seed, hours=args.hours, progress=not args.quiet)
    print(f"wrote {len(frame)} nights to {args.out} (metadata.csv lists them)")
    return 0
