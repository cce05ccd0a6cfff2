"""The ``s2v`` command line: batch work on recordings and cohorts.

Every subcommand reports bad input as one clear line on stderr (exit status 2) rather than a
traceback; ``--debug`` shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from s2v_core import __version__
from s2v_core.errors import S2VError

log = logging.getLogger("s2v")


def _parse_map(items: Sequence[str] | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items or ():
        if "=" not in item:
            raise S2VError(f"--map expects MODALITY=CHANNEL (or MODALITY= to drop it), got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().lower()] = v if v != "" else None
    return out


def cmd_info(args: argparse.Namespace) -> int:
    from s2v_core.io.metadata import meta_for, read_metadata_csv
    from s2v_core.modalities import parse_modality_list
    from s2v_core.recording.loading import load_night

    meta = None
    if args.metadata:
        frame, _ = read_metadata_csv(args.metadata)
        meta = meta_for(frame, Path(args.file).stem)
    night = load_night(
        args.file,
        args.hypnogram,
        mapping=_parse_map(args.map),
        modalities=parse_modality_list(args.modalities),
        meta=meta,
        allow_mismatch=args.allow_mismatch,
    )
    summary = night.summary()
    if args.show_identifying:  # opt-in only: never part of the default output
        summary["identifying"] = _identifying_fields(args.file)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['source_file']}: {summary['n_epochs']} epochs of 30 s "
          f"({summary['duration_s'] / 3600:.2f} h), start {summary['start_time'] or 'unknown'}")
    print(f"{'modality':<9} {'source':<44} {'rate in':>8} {'unit':>6} {'valid':>6}")
    for m, d in summary["modalities"].items():
        if not d.get("available") and "source" not in d:
            print(f"{m:<9} {'-':<44}")
            continue
        rate = "" if d["original_sfreq"] is None else f"{d['original_sfreq']:g} Hz"
        print(f"{m:<9} {d['source'][:44]:<44} {rate:>8} {d['unit']:>6} {d['valid_fraction']:>6.0%}")
    if summary["hypnogram"]:
        print("stages:", ", ".join(f"{k} {v}" for k, v in summary["stage_counts"].items()))
    for w in summary["warnings"]:
        print("warning:", w)
    for k, v in summary.get("identifying", {}).items():
        print(f"{k} identification (shown because of --show-identifying): {v}")
    return 0


def _identifying_fields(path: str) -> dict[str, str]:
    """The EDF header's patient and recording identification fields (only on request)."""
    from s2v_core.io.edf import open_recording
    from s2v_core.io.edf_header import check_header

    try:
        check_header(path)
    except S2VError as exc:
        raise S2VError(f"--show-identifying reads EDF/BDF headers only ({exc})") from None
    with open_recording(path) as rec:
        return rec.identifying_fields()


def cmd_synth(args: argparse.Namespace) -> int:
    from s2v_core.synth.cohort import generate_cohort

    frame = generate_cohort(args.nights, args.out, seed=args.seed, hours=args.hours, progress=not args.quiet)
    print(f"wrote {len(frame)} nights to {args.out} (metadata.csv lists them)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2v", description="sleep2vec studio command line")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="describe a recording: channel mapping, modalities, units, warnings")
    p.add_argument("file", help="EDF/EDF+/BDF file, or a WFDB .ecg beat-annotation file")
    p.add_argument("--hypnogram", help="hypnogram file (Sleep-EDF, NSRR/Profusion XML, CSV, DREAMS, WFDB .st)")
    p.add_argument("--map", action="append", metavar="MODALITY=CHANNEL",
                   help="override the channel for a modality (repeatable); MODALITY= drops it")
    p.add_argument("--modalities", help="comma-separated subset to build, e.g. eeg,eog")
    p.add_argument("--metadata", help="demographics CSV (joined by the file name)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="pad/trim a hypnogram whose length differs from the signal")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--show-identifying", action="store_true",
                   help="also print the EDF header's patient and recording identification fields "
                        "(name, birth date, patient code...); never shown or logged otherwise")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("synth", help="generate a synthetic multi-site cohort as EDF+ files")
    p.add_argument("--nights", type=int, default=8)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hours", type=float, default=None, help="hours per night (default: drawn, 6.5-9)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    from s2v_core.cli.heads import add_embed_parser, add_finetune_parser, add_predict_parser

    add_predict_parser(sub)
    add_finetune_parser(sub)
    add_embed_parser(sub)

    from s2v_core.evaluation.cohort import add_evaluate_parser

    add_evaluate_parser(sub)

    from s2v_core.cli.night_heads import add_night_heads_parser

    add_night_heads_parser(sub)

    from s2v_core.cli.experiment import add_experiment_parser

    add_experiment_parser(sub)

    try:  # pretraining commands live with the trainer
        from s2v_core.cli.train import add_prepare_parser, add_pretrain_parser

        add_prepare_parser(sub)
        add_pretrain_parser(sub)
    except ImportError:  # pragma: no cover - the trainer package is part of the install
        pass
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except S2VError as exc:
        if args.debug:
            raise
        print(f"s2v {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"s2v {args.command}: error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
