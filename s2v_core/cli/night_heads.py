"""``s2v night-heads``: train and apply night-level heads (age, sex, AHI, binary outcomes).

Subcommands:

``s2v night-heads train --data STORE --task age|sex|ahi|outcome:COL [--model DIR] --out DIR``
    Embeds every night of the store with the frozen model, cross-validates a linear head by
    subject, prints the metrics next to the baselines, and saves the head fitted on all nights.
``s2v night-heads predict --head DIR STORE_OR_FILE --out CSV``
    Applies a saved head to a store, a recording, or a night-embedding table.
``s2v night-heads ahi FILE_OR_COHORT... --out CSV``
    AHI from scored events (WFDB ``.st`` notes, NSRR/Profusion XML, EDF+ annotations, or a
    cohort folder with ``metadata.csv``); the CSV can be given to ``train --metadata``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from s2v_core.cli.options import (
    add_device_option,
    add_overwrite_option,
    add_quiet_option,
    add_seed_option,
    add_threads_option,
    apply_threads,
    load_model,
    modalities_from,
    model_folder,
    refuse_overwrite,
)
from s2v_core.errors import S2VError
from s2v_core.sanitize.text import terminal_safe

__all__ = [
    "POOLING_CHOICES",
    "add_parser",
    "format_report",
]

POOLING_CHOICES = ("mean", "mean+std")
"""``--pooling`` choices (``s2v_core.inference.embed.POOLINGS``; a test keeps them equal)."""

_UNITS = {"age": "years", "ahi": "events/h"}


def _embeddings(args: argparse.Namespace, folder: Path) -> Any:
    """Night embeddings of ``args.data``: from the ``--embeddings`` cache when it fits, else computed."""
    from s2v_core.night_heads.embeddings import cached_store_embeddings

    def progress(i: int, n: int, night: str) -> None:
        if not args.quiet and (i == n or i % 10 == 0):
            print(f"embedded {i}/{n} nights", flush=True)

    frame, note = cached_store_embeddings(
        args.data, folder, args.embeddings, modalities=modalities_from(args.modalities),
        split=args.split, pooling=args.pooling, device=args.device, on_night=progress,
    )
    if note and not args.quiet:
        print(terminal_safe(note))
    return frame


def _fmt(summary: dict, key: str = "mean") -> str:
    v = summary.get(key)
    if v is None:
        return "-"
    ci = summary.get("ci95") if key == "mean" else None
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def format_report(report: dict) -> str:
    """Plain-text table of a :meth:`CVReport.to_dict` (fold mean [95% CI]; pooled)."""
    arms = [a for a in ("head", "baseline", "site_only") if a in next(iter(report["metrics"].values()))]
    titles = {"head": "head", "baseline": "trivial baseline", "site_only": "site only"}
    lines = [
        f"task {report['task']}: {report['n_nights']} nights, {report['n_subjects']} subjects, "
        f"{report['n_folds']} subject-level folds ({report['splitter']})",
        f"{'metric':<20}" + "".join(f"{titles[a]:<28}" for a in arms),
    ]
    for name, by_arm in report["metrics"].items():
        unit = _UNITS.get(report["task"], "") if name == "mae" else ""
        label = f"{name} ({unit})" if unit else name
        lines.append(f"{label:<20}" + "".join(f"{_fmt(by_arm[a]):<28}" for a in arms))
        lines.append(f"{'  pooled':<20}" + "".join(f"{_fmt(by_arm[a], 'pooled'):<28}" for a in arms))
    lines.append("fold mean [95% CI over folds]; pooled = on all out-of-fold predictions")
    return "\n".join(lines)


def _train(args: argparse.Namespace) -> int:
    """Cross-validate and save a night-level head."""
    from s2v_core.inference.predict import model_id
    from s2v_core.night_heads.cv import train_night_head
    from s2v_core.night_heads.tasks import join_metadata, parse_task

    apply_threads(args.threads)
    refuse_overwrite(args, args.out, ["head.json", "head.safetensors", "cv_predictions.csv"], "night head")
    task = parse_task(args.task)
    if args.folds < 2:
        raise S2VError(f"--folds must be >= 2, got {args.folds}")
    if not (Path(args.data) / "manifest.csv").is_file():
        raise S2VError(f"{args.data}: not a cohort store (no manifest.csv); build one with s2v prepare")
    folder = model_folder(args.model).resolve()
    frame = _embeddings(args, folder)
    if args.metadata:
        frame = join_metadata(frame, args.metadata)
    backbone = {"path": str(folder), "model_id": model_id(folder), "modalities": args.modalities}
    head, report = train_night_head(
        frame,
        task,
        args.out,
        n_splits=args.folds,
        seed=args.seed,
        backbone=backbone,
        data=str(Path(args.data).resolve()),
    )
    doc = report.to_dict()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(format_report(doc))
    print(
        f"saved the head fitted on all {head.info['training']['n_nights']} nights "
        f"(alpha {head.alpha:g}) to {args.out}; out-of-fold predictions in "
        f"{Path(args.out) / 'cv_predictions.csv'}"
    )
    return 0


def _prediction_input(args: argparse.Namespace, head: Any) -> Any:
    import pandas as pd

    from s2v_core.inference.embed import embedding_columns
    from s2v_core.inference.predict import model_id
    from s2v_core.night_heads.embeddings import recording_embedding, store_embeddings

    source = Path(args.source)
    if source.is_file() and source.suffix.lower() == ".parquet":
        frame = pd.read_parquet(source)
        if not embedding_columns(frame):
            raise S2VError(f"{source}: no emb_* columns (write one with s2v embed or train)")
        return frame
    backbone = head.info.get("backbone", {})
    folder = Path(args.model) if args.model else Path(backbone.get("path") or model_folder(None))
    if not (folder / "config.json").is_file():
        raise S2VError(
            f"the head's backbone {folder} is not there; pass --model with the model it was "
            "trained on"
        )
    mid = model_id(folder)
    if backbone.get("model_id") and backbone["model_id"] != mid:
        raise S2VError(
            f"this head was trained on embeddings of {backbone['model_id']}, but {folder} is "
            f"{mid}: its embeddings differ; use the matching model or retrain the head"
        )
    model, _, _ = load_model(str(folder), args.device)
    pooling = head.info.get("pooling", "mean")
    subset = modalities_from(args.modalities or backbone.get("modalities"))
    if (source / "manifest.csv").is_file():
        return store_embeddings(
            source, model, model_name=mid, modalities=subset, split=args.split, pooling=pooling,
            device=args.device,
        )
    if args.split:
        raise S2VError(f"--split needs a cohort store; {source} is a recording")
    return recording_embedding(
        source, model, model_name=mid, modalities=subset, pooling=pooling, device=args.device,
        hypnogram=args.hypnogram,
    )


def _predict(args: argparse.Namespace) -> int:
    """Apply a saved head; write one row per night."""
    from s2v_core.night_heads.cv import predictions_frame
    from s2v_core.night_heads.linear import NightHead
    from s2v_core.sanitize.cells import to_csv

    apply_threads(args.threads)
    head = NightHead.load(args.head)
    frame = _prediction_input(args, head)
    out_frame = predictions_frame(head, frame)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    to_csv(out_frame, out, index=False)
    cv = head.info.get("cv", {}).get("metrics", {})
    main_metric = next(iter(cv), None)
    note = ""
    if main_metric:
        mean = cv[main_metric]["head"].get("mean")
        if mean is not None:
            note = f" (cross-validated {main_metric} {mean:.3f})"
    print(f"{len(out_frame)} night(s), task {head.task.name}{note}: wrote {out}")
    if len(out_frame) <= 20 and not args.quiet:
        shown = out_frame.drop(columns=[c for c in ("modalities",) if c in out_frame]).to_string(index=False)
        print(terminal_safe(shown, keep="\n"))  # night ids come from file names
    return 0


def _ahi(args: argparse.Namespace) -> int:
    """AHI from scored events of files or cohort folders."""
    import pandas as pd

    from s2v_core.night_heads.ahi import ahi_from_files, cohort_ahi
    from s2v_core.sanitize.cells import to_csv

    if args.events and len(args.files) > 1:
        raise S2VError("--events goes with a single hypnogram file")
    parts = []
    for item in args.files:
        p = Path(item)
        if p.is_dir():
            parts.append(cohort_ahi(p))
            continue
        try:
            res = ahi_from_files(p, args.events).to_dict()
            res["error"] = ""
        except S2VError as exc:
            if len(args.files) == 1:
                raise
            res = {"ahi": math.nan, "error": str(exc)}
        stem = p.stem[: -len("-Hypnogram")] if p.stem.endswith("-Hypnogram") else p.stem
        parts.append(pd.DataFrame([{"night": stem, **res}]))
    table = pd.concat(parts, ignore_index=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        to_csv(table, out, index=False)
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        cols = [c for c in ("night", "ahi", "severity", "n_apneas", "n_hypopneas",
                            "n_outside_sleep", "sleep_hours", "ahi_table", "error") if c in table]
        print(terminal_safe(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"), keep="\n"))
        if args.out:
            print(f"wrote {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v night-heads`` (train, predict, ahi) to ``sub``."""
    p = sub.add_parser(
        "night-heads",
        help="night-level heads on frozen embeddings: age, sex, AHI, binary outcomes",
        description="Linear heads on mean-pooled night embeddings of a frozen model, evaluated "
        "by subject-level cross-validation against trivial and site-only baselines.",
    )
    nsub = p.add_subparsers(dest="action", required=True)

    t = nsub.add_parser("train", help="cross-validate by subject and save a head")
    t.add_argument("--data", required=True, help="cohort store folder (s2v prepare)")
    t.add_argument("--task", required=True, help="age, sex, ahi or outcome:COLUMN")
    t.add_argument("--model", help="classifier folder (default: the shipped model)")
    t.add_argument("--out", required=True, help="head folder: head.json, head.safetensors")
    add_overwrite_option(t, "head")
    t.add_argument("--metadata", help="CSV of extra night columns (by night id, else subject)")
    t.add_argument("--modalities", help="comma-separated subset (default: all of each night)")
    t.add_argument("--split", choices=("train", "val", "test"), help="only this split")
    t.add_argument("--pooling", choices=POOLING_CHOICES, default="mean", help="night pooling")
    t.add_argument("--folds", type=int, default=5, help="subject-level folds (default 5)")
    add_seed_option(t)
    t.add_argument(
        "--embeddings", help="Parquet cache of night embeddings (reused when model and pooling match)"
    )
    add_device_option(t)
    t.add_argument("--json", action="store_true", help="print the CV report as JSON")
    add_quiet_option(t, help=None)
    add_threads_option(t)
    t.set_defaults(func=_train)

    q = nsub.add_parser("predict", help="apply a saved head to a store, a recording or embeddings")
    q.add_argument("source", help="store folder, EDF/BDF or WFDB recording, or embeddings Parquet")
    q.add_argument("--head", required=True, help="head folder (s2v night-heads train --out)")
    q.add_argument("--out", required=True, help="CSV, one row per night")
    q.add_argument("--model", help="backbone folder (default: the one the head was trained on)")
    q.add_argument("--modalities", help="comma-separated subset (default: as in training)")
    q.add_argument("--hypnogram", help="hypnogram of a single recording (not needed)")
    q.add_argument("--split", choices=("train", "val", "test"), help="only this split of a store")
    add_device_option(q)
    add_quiet_option(q, help=None)
    add_threads_option(q)
    q.set_defaults(func=_predict)

    a = nsub.add_parser("ahi", help="AHI from scored apnea/hypopnea events")
    a.add_argument(
        "files",
        nargs="+",
        help="hypnogram files with events (WFDB .st, NSRR/Profusion XML, EDF+) or cohort "
        "folders with metadata.csv",
    )
    a.add_argument("--events", help="EDF+ file holding the events of a single hypnogram file")
    a.add_argument("--out", help="CSV (night, ahi, severity, counts, sleep hours)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_ahi)
    return p


