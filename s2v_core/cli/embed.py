"""``s2v embed``: fused per-epoch and per-night embeddings as Parquet, serially or on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path

from s2v_core.cli.options import (
    RECORDING_HELP,
    add_cluster_options,
    add_input_options,
    add_quiet_option,
    apply_threads,
    cluster_from_args,
    load_model,
    modalities_from,
    model_folder,
    parse_channel_map,
)
from s2v_core.cli.output import field
from s2v_core.errors import S2VError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v embed`` to ``sub``."""
    p = sub.add_parser(
        "embed",
        help="fused per-epoch and per-night embeddings of a recording or a store, as Parquet",
        description="Columns: night, epoch, onset_s, stage, predicted, subject, site, age, sex, "
        "split, modalities, emb_0..emb_{H-1}; the per-night table (mean over epochs) goes "
        "next to it.",
    )
    p.add_argument("source", help=f"{RECORDING_HELP}; or a folder of recordings (flat, NSRR or BIDS), or a cohort store")
    add_input_options(p)
    p.add_argument("--split", choices=("train", "val", "test"), help="only this split of a store")
    p.add_argument("--out", required=True, help="per-epoch Parquet file")
    p.add_argument("--nights-out", help="per-night Parquet file (default: OUT_nights.parquet)")
    add_quiet_option(p, help="no progress bar (cluster runs)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT and the per-night file when they exist (without it they are kept and the run refused)",
    )
    p.add_argument(
        "--keep-parts",
        action="store_true",
        help="with a cluster: keep the per-night parts in OUT.parts/ after writing OUT",
    )
    add_cluster_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write per-epoch (``--out``) and per-night embeddings as Parquet."""
    cluster = cluster_from_args(args)
    out = Path(args.out)
    nights_out = Path(args.nights_out) if args.nights_out else out.with_name(out.stem + "_nights.parquet")
    from s2v_core.io.atomic import write_atomic
    from s2v_core.io.lock import FolderLock

    # one writer per output file (a second `s2v embed --out` of it is refused); previous tables kept
    with FolderLock(out.parent, "s2v embed", name=f".{out.name}.lock", what=str(out)):
        existing = [str(p) for p in (out, nights_out) if p.exists()]
        if existing and not args.overwrite:
            raise S2VError(f"{' and '.join(existing)} already hold embeddings of a previous run; choose "
                           "another --out, or pass --overwrite to replace them")  # fmt: skip
        if cluster is None:
            epochs, nights, mid = _serial(args)
        else:
            epochs, nights, mid = _distributed(args, cluster, out)
        nights_out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, lambda tmp: epochs.to_parquet(tmp, index=False))  # never half-written
        write_atomic(nights_out, lambda tmp: nights.to_parquet(tmp, index=False))
    if cluster is not None and not args.keep_parts:
        from s2v_core.cohort.embed import remove_parts

        remove_parts(out)
    width = sum(c.startswith("emb_") for c in epochs.columns)
    print(f"{len(nights)} night(s), {len(epochs)} epochs, {width}-d embeddings from {mid}: "
          f"{out} (epochs), {nights_out} (nights)")  # fmt: skip
    return 0


def _serial(args: argparse.Namespace):
    from s2v_core.cohort.embed import embed_sources
    from s2v_core.cohort.sources import night_sources

    apply_threads(args.threads)
    model, _, mid = load_model(args.model, args.device)
    sources = night_sources(args.source, args.split, hypnogram=args.hypnogram, mapping=parse_channel_map(args.map),
                            allow_mismatch=args.allow_mismatch, sfreq=args.sfreq)  # fmt: skip
    try:
        epochs, nights = embed_sources(sources, model, modalities=modalities_from(args.modalities),
                                       device=args.device)  # fmt: skip
    except S2VError as exc:
        raise S2VError(f"{args.source}: {exc}") if len(sources) > 1 else exc from None
    return epochs, nights, mid


def _distributed(args: argparse.Namespace, cluster, out: Path):
    """``s2v embed STORE`` on a Dask cluster; prints the run summary and any failures."""
    from s2v_core.cohort.embed import embed_store
    from s2v_core.cohort.sources import is_store
    from s2v_core.inference.predict import model_id
    from s2v_core.sanitize.cells import to_csv

    if not is_store(args.source):
        raise S2VError(
            f"{args.source}: --workers/--scheduler/--slurm need a cohort store (s2v prepare), "
            "not a single recording"
        )
    if args.map or args.hypnogram or args.allow_mismatch or args.sfreq:
        raise S2VError("--map, --hypnogram and --allow-mismatch apply to a single recording")
    if args.threads is not None and args.threads < 1:
        raise S2VError(f"--threads must be >= 1, got {args.threads}")
    folder = model_folder(args.model)
    mid = model_id(folder)
    run = embed_store(args.source, out, model_dir=folder, cluster=cluster, split=args.split,
                      modalities=modalities_from(args.modalities), device=args.device,
                      threads=args.threads, progress=not args.quiet, model_name=mid)  # fmt: skip
    print(", ".join(f"{v} {k}" for k, v in run.summary.items()) + f" ({cluster.describe()})")
    bad = run.status[run.status["status"].isin(("skipped", "failed"))]
    for _, r in bad.head(10).iterrows():
        print(f"{r['status']}: {field(r['night'])}: {field(r['error'])}")
    if len(bad) > 10:
        print(f"... and {len(bad) - 10} more")
    if len(bad):
        fail_csv = out.with_name(out.stem + "_failures.csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        to_csv(bad, fail_csv, index=False)
        print(f"skipped and failed nights: {fail_csv}")
    return run.epochs, run.nights, mid
