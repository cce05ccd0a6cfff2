"""``s2v predict``: stage one recording with a classifier (any subset of modalities)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from s2v_core.cli.options import (
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
        "hypnogram, accuracy, kappa and macro-F1 (5-, 4- and 3-class) in the summary.",
    )
    p.add_argument("file", help="EDF/EDF+/BDF file, WFDB .ecg beat annotations, or a DREAMS text excerpt")
    add_input_options(p)
    p.add_argument("--out", required=True, help="per-epoch CSV")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Stage the recording; write the per-epoch CSV; print a summary (JSON with ``--json``)."""
    from s2v_core.inference.predict import predict_night
    from s2v_core.recording.registry import load_recording
    from s2v_core.sanitize.cells import to_csv
    from s2v_core.views.exports import prediction_summary, prediction_table

    apply_threads(args.threads)
    model, extra, mid = load_model(args.model, args.device)
    night = load_recording(args.file, args.hypnogram, mapping=parse_channel_map(args.map),
                           allow_mismatch=args.allow_mismatch, sfreq=args.sfreq)  # fmt: skip
    pred = predict_night(model, night, modalities_from(args.modalities), name=mid, device=args.device,
                         ranges=extra.get("feature_ranges"))  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    to_csv(prediction_table(pred, night), out, index=False)
    summary = prediction_summary(pred, night)
    summary = {**{k: v for k, v in summary.items() if k not in ("agreement", "warnings")}, "out": str(out),
               **{k: summary[k] for k in ("agreement", "warnings") if k in summary}}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{field(Path(night.source_file).name)}: {night.n_epochs} epochs staged from "
          f"{', '.join(pred.modalities)}; wrote {field(out)}")  # fmt: skip
    for k, m in summary.get("agreement", {}).items():
        if m.get("kappa") is not None:
            print(f"  {k}: accuracy {m['accuracy']:.3f}  kappa {m['kappa']:.3f}  macro-F1 {m['macro_f1']:.3f}")
    print(f"  mean confidence {summary['mean_confidence']:.2f}")
    for w in pred.warnings + night.warnings:
        print("warning:", field(w))
    return 0
