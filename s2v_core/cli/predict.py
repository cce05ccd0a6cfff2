"""``s2v predict``: stage one recording with a classifier (any subset of modalities)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from s2v_core.cli.options import (
    RECORDING_HELP,
    add_compare_option,
    add_input_options,
    apply_threads,
    load_model,
    modalities_from,
    parse_channel_map,
)
from s2v_core.cli.output import field

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v predict`` to ``sub``."""
    p = sub.add_parser(
        "predict",
        help="stage a recording with a fine-tuned model (any subset of modalities)",
        description="Per-epoch stage, stage probabilities and gate weights to a CSV; with a "
        "hypnogram, accuracy, kappa and macro-F1 (5-, 4- and 3-class) in the summary. With --compare, "
        "other stagers (YASA, sleepecg) on the same epochs, side by side.",
    )
    p.add_argument("file", help=RECORDING_HELP)
    add_input_options(p)
    p.add_argument("--out", required=True, help="per-epoch CSV")
    p.add_argument("--bids-out", metavar="DIR",
                   help="also write the predictions as BIDS events into DIR: <entities>_events.tsv (onset, "
                   "duration, trial_type, stage, probabilities) and its JSON sidecar")  # fmt: skip
    p.add_argument("--keep-unfamiliar", action="store_true",
                   help="without --modalities, a modality whose signals look unlike the model's training data "
                   "(features outside its training range) is left out and the night staged from the others, "
                   "with a warning; this keeps every available modality (with the warning only). "
                   "Modalities named in --modalities are always used")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_compare_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Stage the recording; write the per-epoch CSV; print a summary (JSON with ``--json``)."""
    from s2v_core.evaluation.peers import compare_with_peers, parse_peers
    from s2v_core.inference.familiarity import seen_in_training, seen_in_training_warning
    from s2v_core.inference.predict import predict_night
    from s2v_core.recording.registry import load_recording
    from s2v_core.sanitize.cells import to_csv
    from s2v_core.views.exports import prediction_summary, prediction_table
    from s2v_core.views.peers import with_peer_columns

    peers = parse_peers(args.compare)  # a wrong name fails before anything is read
    apply_threads(args.threads)
    model, extra, mid = load_model(args.model, args.device)
    night = load_recording(args.file, args.hypnogram, mapping=parse_channel_map(args.map),
                           allow_mismatch=args.allow_mismatch, sfreq=args.sfreq)  # fmt: skip
    chosen = modalities_from(args.modalities)
    pred = predict_night(model, night, chosen, name=mid, device=args.device, ranges=extra.get("feature_ranges"),
                         leave_out_unfamiliar=chosen is None and not args.keep_unfamiliar)  # fmt: skip
    seen = seen_in_training(extra, path=args.file)
    if seen is not None:  # a public recording the shipped model was adapted on, for instance
        pred.warnings.append(seen_in_training_warning(seen))
    table = prediction_table(pred, night)
    comparison = None
    if peers:
        comparison = compare_with_peers(night, pred.stages, peers, ours_3class=pred.merged_as_five(3),
                                        path=args.file)  # fmt: skip
        table = with_peer_columns(table, comparison)
        for w in comparison.warnings():  # stderr: --json keeps stdout for the JSON
            print(f"warning: {field(w)}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    to_csv(table, out, index=False)
    summary = prediction_summary(pred, night)
    if args.bids_out:
        summary["bids_events"] = [str(p) for p in _write_bids(Path(args.bids_out), pred, night)]
    tail = ("agreement", "warnings")
    summary = {**{k: v for k, v in summary.items() if k not in tail}, "out": str(out),
               **({k: summary[k] for k in tail[:1] if k in summary}),
               **(comparison.to_dict() if comparison is not None else {}),
               **{k: summary[k] for k in tail[1:] if k in summary}}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{field(Path(night.source_file).name)}: {night.n_epochs} epochs staged from "
          f"{', '.join(pred.modalities)}; wrote {field(out)}")  # fmt: skip
    if args.bids_out:
        print(f"  BIDS events: {' and '.join(field(p) for p in summary['bids_events'])}")
    for k, m in summary.get("agreement", {}).items():
        if m.get("kappa") is not None:
            print(f"  {k}: accuracy {m['accuracy']:.3f}  kappa {m['kappa']:.3f}  macro-F1 {m['macro_f1']:.3f}")
    print(f"  mean confidence {summary['mean_confidence']:.2f}")
    if comparison is not None:
        _print_comparison(comparison)
    for w in pred.warnings + night.warnings:
        print("warning:", field(w))
    return 0


def _print_comparison(comparison) -> None:
    """The peers that staged the night and every pair's agreement, one line each."""
    for name, r in comparison.peers.items():
        if r.applied:
            print(f"  peer {name}: {r.n_classes}-class, {r.seconds:.1f} s; {field(r.used)}")
            for note in r.notes:
                print(f"    note: {field(note)}")
        else:
            print(f"  peer {name}: refused (see the warning)")
    for p in comparison.pairs:
        if p["kappa"] is None:
            print(f"  {p['a']} vs {p['b']} ({p['n_classes']}-class): no epoch staged by both")
        else:
            print(f"  {p['a']} vs {p['b']} ({p['n_classes']}-class): kappa {p['kappa']:.3f}  "
                  f"accuracy {p['accuracy']:.3f}  ({p['n_epochs']} epochs)")  # fmt: skip


def _write_bids(folder: Path, pred, night) -> tuple[Path, Path]:
    """``<entities>_events.tsv`` and its ``.json`` sidecar in ``folder`` (created if needed)."""
    from s2v_core.io.atomic import write_text_atomic
    from s2v_core.views.exports import bids_events, bids_events_name

    text, sidecar = bids_events(pred, night)
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / bids_events_name(night.source_file or night.meta.night_id)
    sidecar_path = tsv.with_suffix(".json")
    write_text_atomic(tsv, text)
    write_text_atomic(sidecar_path, json.dumps(sidecar, indent=2) + "\n")
    return tsv, sidecar_path
