"""``s2v info``: describe a recording (channel mapping, modalities, units, warnings)."""

from __future__ import annotations

import argparse
import json

from s2v_core.cli.options import (
    RECORDING_HELP,
    add_sfreq_option,
    modalities_from,
    parse_channel_map,
)
from s2v_core.cli.output import fields
from s2v_core.errors import S2VError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v info`` to ``sub``."""
    p = sub.add_parser("info", help="describe a recording: channel mapping, modalities, units, warnings")
    p.add_argument("file", help=RECORDING_HELP)
    p.add_argument("--hypnogram", help="hypnogram file (Sleep-EDF, NSRR/Profusion XML, CSV, DREAMS, WFDB .st)")
    p.add_argument("--map", action="append", metavar="MODALITY=CHANNEL",
                   help="override the channel for a modality (repeatable); MODALITY= drops it")
    p.add_argument("--modalities", help="comma-separated subset to build, e.g. eeg,eog")
    p.add_argument("--metadata", help="demographics CSV (joined by the file name)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="pad/trim a hypnogram whose length differs from the signal")
    add_sfreq_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--show-identifying", action="store_true",
                   help="also print the EDF header's patient and recording identification fields "
                        "(name, birth date, patient code...); never shown or logged otherwise")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Load the recording and print its summary (JSON with ``--json``)."""
    from s2v_core.io.metadata import meta_for, read_metadata_csv
    from s2v_core.recording.pairing import recording_stem
    from s2v_core.recording.registry import load_recording

    meta = None
    if args.metadata:
        frame, _ = read_metadata_csv(args.metadata)
        meta = meta_for(frame, recording_stem(args.file))
    night = load_recording(
        args.file,
        args.hypnogram,
        mapping=parse_channel_map(args.map),
        modalities=modalities_from(args.modalities),
        meta=meta,
        allow_mismatch=args.allow_mismatch,
        sfreq=args.sfreq,
    )
    summary = night.summary()
    if args.show_identifying:  # opt-in only: never part of the default output
        summary["identifying"] = _identifying_fields(args.file)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(_format_summary(fields(summary)))  # labels, names, warnings: escaped (cli.output)
    return 0


def _format_summary(summary: dict) -> str:
    lines = [
        f"{summary['source_file']}: {summary['n_epochs']} epochs of 30 s "
        f"({summary['duration_s'] / 3600:.2f} h), start {summary['start_time'] or 'unknown'}",
        f"{'modality':<9} {'source':<44} {'rate in':>8} {'unit':>6} {'valid':>6}",
    ]
    for m, d in summary["modalities"].items():
        if not d.get("available") and "source" not in d:
            lines.append(f"{m:<9} {'-':<44}")
            continue
        rate = "" if d["original_sfreq"] is None else f"{d['original_sfreq']:g} Hz"
        lines.append(f"{m:<9} {d['source'][:44]:<44} {rate:>8} {d['unit']:>6} {d['valid_fraction']:>6.0%}")
    if summary["hypnogram"]:
        lines.append("stages: " + ", ".join(f"{k} {v}" for k, v in summary["stage_counts"].items()))
    lines += [f"warning: {w}" for w in summary["warnings"]]
    lines += [f"{k} identification (shown because of --show-identifying): {v}"
              for k, v in summary.get("identifying", {}).items()]  # fmt: skip
    return "\n".join(lines)


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
