"""``s2v finetune``, ``s2v predict`` and ``s2v embed``: argparse builders and their handlers.

:mod:`s2v_core.cli.main` adds these subcommands with :func:`add_finetune_parser`,
:func:`add_predict_parser` and :func:`add_embed_parser`; each sets ``func`` to its handler,
which returns an exit status and raises :class:`~s2v_core.errors.S2VError` for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from s2v_core.errors import S2VError
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.stages import STAGE_NAMES

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIRS: tuple[Path, ...] = (
    REPO_ROOT / "models" / "sleep2vec-small" / "classifier",
    REPO_ROOT / "sample_data" / "model",
)
"""Where ``s2v predict`` and ``s2v embed`` look for the shipped model, first found wins."""


def default_model_dir() -> Path:
    """The shipped classifier folder.

    Raises
    ------
    S2VError
        None of :data:`DEFAULT_MODEL_DIRS` holds a checkpoint.
    """
    for d in DEFAULT_MODEL_DIRS:
        if (d / "config.json").is_file():
            return d
    tried = " or ".join(str(d) for d in DEFAULT_MODEL_DIRS)
    raise S2VError(
        f"no shipped model found ({tried}): pass --model DIR (a classifier folder written by "
        "s2v finetune, e.g. RUN/best) or build it with scripts/train_shipped_model.sh"
    )


def parse_channel_map(items: Sequence[str] | None) -> dict[str, str | None]:
    """``["eeg=C4-M1", "emg="]`` -> ``{"eeg": "C4-M1", "emg": None}`` (empty: drop it)."""
    out: dict[str, str | None] = {}
    for item in items or ():
        if "=" not in item:
            raise S2VError(
                f"--map expects MODALITY=CHANNEL (or MODALITY= to drop it), got {item!r}"
            )
        key, value = item.split("=", 1)
        out[key.strip().lower()] = value or None
    return out


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch intra-op threads (fewer than the cores avoids oversubscription)."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch and for reading channels (default: torch's choice and 2 "
        "reading threads; 1 is often fastest on a busy machine)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` for this process."""
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise S2VError(f"--threads must be >= 1, got {args.threads}")
        import torch

        from s2v_core.recording import loading

        torch.set_num_threads(args.threads)
        loading.READ_THREADS = args.threads


def _load_model(arg: str | None, device: str):
    from s2v_core.inference.predict import load_classifier, model_id

    folder = Path(arg) if arg else default_model_dir()
    model, _, extra = load_classifier(folder, device=device)
    return model, extra, model_id(folder)


# --- finetune --------------------------------------------------------------------------------
def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a staging classifier on a cohort store; prints one line per pass."""
    from s2v_core.train.finetune import FinetuneConfig, finetune

    apply_threads(args)
    cfg = FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        modality_dropout=args.modality_dropout,
        preset=args.preset,
        seed=args.seed,
        device=args.device,
        max_batches_per_epoch=args.batches_per_epoch,
        window_epochs=args.window_epochs,
        label_smoothing=args.label_smoothing,
        class_weighted=not args.no_class_weights,
        freeze_tokenizers=not args.train_tokenizers,
        n_classes=args.classes,
        init_head=args.init_head,
        patience=args.patience,
    )

    def report(row: dict) -> None:
        if not args.quiet:
            kappa = row.get("val_kappa", math.nan)
            print(
                f"pass {row['epoch']}/{cfg.epochs}: train loss {row['train_loss']:.4f}  "
                f"val kappa {kappa:.3f}  ({row['seconds']:.0f} s)",
                flush=True,
            )

    res = finetune(args.data, args.out, cfg, pretrained=args.pretrained, on_epoch=report)
    kappa = res.best.get("kappa", math.nan)
    print(f"kept pass {res.best.get('epoch')} (val kappa {kappa:.3f}): {res.checkpoint}")
    return 0


def add_finetune_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v finetune`` to ``sub`` (the subparsers of the ``s2v`` parser)."""
    p = sub.add_parser(
        "finetune",
        help="fine-tune the staging head (any-subset, modality dropout) on a cohort store",
        description="Fine-tune a 5-class staging classifier on the train nights of a store; "
        "the checkpoint with the best validation kappa goes to OUT/best.",
    )
    p.add_argument("--data", required=True, help="cohort store folder (s2v prepare)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", help="pretrained checkpoint folder (s2v pretrain, RUN/best)")
    src.add_argument("--preset", default="small", help="backbone preset without --pretrained")
    p.add_argument("--out", required=True, help="run folder: history.csv, best/")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training windows")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument(
        "--modality-dropout",
        type=float,
        default=0.5,
        help="probability of dropping each modality of a window (one is always kept)",
    )
    p.add_argument("--window-epochs", type=int, default=120, help="30-s epochs per window")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--no-class-weights", action="store_true", help="plain cross-entropy")
    p.add_argument("--train-tokenizers", action="store_true", help="do not freeze the tokenizers")
    p.add_argument("--classes", type=int, choices=(5, 4, 3), default=5,
                   help="training objective and validation kappa: 5 stages, or 4 (N1+N2) / 3 (W, NREM, "
                        "REM) by summing stage probabilities; the head keeps 5 outputs")
    p.add_argument("--init-head", action="store_true",
                   help="with a classifier as --pretrained: also start from its gates and staging head "
                        "(adapting a trained model to a new cohort)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many passes without a better validation kappa")
    p.add_argument("--batches-per-epoch", type=int, default=None, help="cap, for quick runs")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no per-pass lines")
    add_threads_option(p)
    p.set_defaults(func=cmd_finetune)
    return p


# --- predict ---------------------------------------------------------------------------------
def agreement(reference: np.ndarray, pred) -> dict:
    """Accuracy, kappa, macro-F1... of ``pred`` (a Prediction) against 5-class ``reference``.

    The 4- and 3-class predictions sum the probabilities of merged stages
    (:meth:`Prediction.merged`). Keys ``"5-class"``, ``"4-class"``, ``"3-class"``; a value is
    ``{"error": ...}`` when no epoch is scored on both sides.
    """
    from s2v_core.evaluation import staging_metrics

    out = {}
    for k in (5, 4, 3):
        try:
            metrics = staging_metrics(reference, pred.merged_as_five(k), n_classes=k).to_dict()
        except ValueError as exc:
            metrics = {"error": str(exc)}
        out[f"{k}-class"] = metrics
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    """Stage a recording; write the per-epoch CSV; print a summary (JSON with ``--json``)."""
    from s2v_core.inference.predict import predict_night
    from s2v_core.modalities import parse_modality_list
    from s2v_core.recording.loading import load_night

    apply_threads(args)
    model, _, mid = _load_model(args.model, args.device)
    night = load_night(
        args.file,
        args.hypnogram,
        mapping=parse_channel_map(args.map),
        allow_mismatch=args.allow_mismatch,
    )
    subset = parse_modality_list(args.modalities)
    pred = predict_night(model, night, subset, name=mid, device=args.device)
    frame = pred.to_frame(night.start_time)
    labelled = bool((night.stages >= 0).any())
    if labelled:
        ref = night.stages.astype(int)
        frame.insert(frame.columns.get_loc("label") + 1, "reference", ref)
        names = np.asarray(("",) + STAGE_NAMES, dtype=object)  # -1 (unscored) -> ""
        frame.insert(frame.columns.get_loc("reference") + 1, "reference_label", names[ref + 1])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    summary = {
        "file": night.source_file,
        "model": pred.model_id,
        "modalities": list(pred.modalities),
        "n_epochs": night.n_epochs,
        "global_gates": {m: round(g, 4) for m, g in pred.global_gates.items()},
        "predicted_counts": {s: int((pred.stages == k).sum()) for k, s in enumerate(STAGE_NAMES)},
        "epochs_without_signal": int((pred.coverage == 0).sum()),
        "out": str(out),
    }
    if labelled:
        summary["agreement"] = agreement(night.stages, pred)
    summary["warnings"] = list(night.warnings)  # what `s2v info` would warn about this recording
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{Path(night.source_file).name}: {night.n_epochs} epochs staged from "
        f"{', '.join(pred.modalities)}; wrote {out}"
    )
    for k, m in summary.get("agreement", {}).items():
        if m.get("kappa") is not None:
            print(
                f"  {k}: accuracy {m['accuracy']:.3f}  kappa {m['kappa']:.3f}  "
                f"macro-F1 {m['macro_f1']:.3f}"
            )
    for w in night.warnings:
        print("warning:", w)
    return 0


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hypnogram", help="hypnogram file (expert stages)")
    p.add_argument(
        "--modalities", help="comma-separated subset, e.g. eeg,eog (default: all available)"
    )
    p.add_argument("--model", help="classifier folder (default: the shipped model)")
    p.add_argument(
        "--map",
        action="append",
        metavar="MODALITY=CHANNEL",
        help="override the channel of a modality (repeatable); MODALITY= drops it",
    )
    p.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="pad/trim a hypnogram whose length differs from the signal",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    add_threads_option(p)


def add_predict_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v predict`` to ``sub``."""
    p = sub.add_parser(
        "predict",
        help="stage a recording with a fine-tuned model (any subset of modalities)",
        description="Per-epoch stage, stage probabilities and gate weights to a CSV; with a "
        "hypnogram, accuracy, kappa and macro-F1 (5-, 4- and 3-class) in the summary.",
    )
    p.add_argument("file", help="EDF/EDF+/BDF file, or WFDB .ecg beat annotations")
    _add_input_options(p)
    p.add_argument("--out", required=True, help="per-epoch CSV")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_predict)
    return p


# --- embed ---------------------------------------------------------------------------------
def night_info(night, subject, site, age, sex, split) -> dict:
    """Metadata columns of one night; unknown age is NaN, other unknowns None."""
    age = math.nan if age is None else float(age)
    return {
        "night": night,
        "subject": subject,
        "site": site,
        "age": age,
        "sex": sex,
        "split": split,
    }


def _nights_to_embed(args: argparse.Namespace):
    """Yield ``(night, info)`` pairs from a store folder or one recording."""
    from s2v_core.cohort.store import CohortStore

    source = Path(args.source)
    if (source / "manifest.csv").is_file():
        store = CohortStore(source)
        for night_id in store.nights(args.split):
            e = store.entry(night_id)
            info = night_info(night_id, e.subject, e.site, e.age, e.sex, e.split)
            yield store.night(night_id), info
        return
    if args.split:
        raise S2VError(f"--split needs a cohort store; {source} is a recording")
    from s2v_core.recording.loading import load_night

    mapping = parse_channel_map(args.map)
    night = load_night(source, args.hypnogram, mapping=mapping, allow_mismatch=args.allow_mismatch)
    m = night.meta
    yield night, night_info(m.night_id, m.subject, m.site, m.age, m.sex, None)


def embed_one(
    model, night, info: dict, subset: tuple[str, ...] | None, device: str = "cpu"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-epoch frame and the one-row per-night frame of one night.

    Shared by the serial ``s2v embed`` and its Dask workers
    (:func:`s2v_core.cohort.cluster.embed_store_night`), so both write the same tables.

    Raises
    ------
    S2VError
        The night lacks the requested modalities (or any the model knows).
    """
    from s2v_core.inference.predict import night_embedding, predict_night

    pred = predict_night(model, night, subset, device=device, with_embeddings=True)
    epochs, pooled = pred.embeddings, night_embedding(pred.embeddings, pred.coverage)
    used = ",".join(pred.modalities)
    n = night.n_epochs
    meta = pd.DataFrame(
        {
            "night": info["night"],
            "epoch": np.arange(n),
            "onset_s": np.arange(n) * float(EPOCH_SECONDS),
            "stage": np.asarray(night.stages).astype(np.int8),
            "predicted": pred.stages,
            **{k: v for k, v in info.items() if k != "night"},
            "modalities": used,
        }
    )
    emb = pd.DataFrame(epochs, columns=[f"emb_{i}" for i in range(epochs.shape[1])])
    row = pd.DataFrame([{**info, "n_epochs": n, "modalities": used}])
    pooled_frame = pd.DataFrame(
        pooled[None, :], columns=[f"emb_{i}" for i in range(pooled.shape[0])]
    )
    return pd.concat([meta, emb], axis=1), pd.concat([row, pooled_frame], axis=1)


def embedding_frames(args: argparse.Namespace, model) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-epoch and per-night embedding tables (metadata columns, then ``emb_0..emb_{H-1}``).

    In a store, nights lacking a requested modality are skipped with a warning.
    """
    from s2v_core.modalities import parse_modality_list

    subset = parse_modality_list(args.modalities)
    epoch_parts, night_parts, skipped = [], [], []
    for night, info in _nights_to_embed(args):
        try:
            epochs, nights = embed_one(model, night, info, subset, args.device)
        except S2VError as exc:
            if info["split"] is None:  # a single recording: the error is the answer
                raise
            skipped.append(f"{info['night']} ({exc})")
            continue
        epoch_parts.append(epochs)
        night_parts.append(nights)
    for s in skipped:
        log.warning("embed: skipped %s", s)
    if not epoch_parts:
        raise S2VError(
            f"{args.source}: no night could be embedded" + (f" ({skipped[0]})" if skipped else "")
        )
    return pd.concat(epoch_parts, ignore_index=True), pd.concat(night_parts, ignore_index=True)


def _embed_outputs(args: argparse.Namespace) -> tuple[Path, Path]:
    out = Path(args.out)
    nights_out = (
        Path(args.nights_out) if args.nights_out else out.with_name(out.stem + "_nights.parquet")
    )
    return out, nights_out


def _embed_distributed(args: argparse.Namespace, cluster) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``s2v embed STORE`` on a Dask cluster; prints the run summary and any failures."""
    from s2v_core.cohort.cluster import embed_store
    from s2v_core.modalities import parse_modality_list

    if not (Path(args.source) / "manifest.csv").is_file():
        raise S2VError(
            f"{args.source}: --workers/--scheduler/--slurm need a cohort store (s2v prepare), "
            "not a single recording"
        )
    if args.map or args.hypnogram or args.allow_mismatch:
        raise S2VError("--map, --hypnogram and --allow-mismatch apply to a single recording")
    model_dir = Path(args.model) if args.model else default_model_dir()
    from s2v_core.inference.predict import model_id

    mid = model_id(model_dir)
    out, _ = _embed_outputs(args)
    run = embed_store(
        args.source,
        out,
        model_dir=model_dir,
        cluster=cluster,
        split=args.split,
        modalities=parse_modality_list(args.modalities),
        device=args.device,
        threads=args.threads,
        progress=not args.quiet,
        model_name=mid,
    )
    summary = run.summary
    print(", ".join(f"{v} {k}" for k, v in summary.items()) + f" ({cluster.describe()})")
    bad = run.status[run.status["status"].isin(("skipped", "failed"))]
    for _, r in bad.head(10).iterrows():
        print(f"{r['status']}: {r['night']}: {r['error']}")
    if len(bad) > 10:
        print(f"... and {len(bad) - 10} more")
    if len(bad):
        fail_csv = out.with_name(out.stem + "_failures.csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        bad.to_csv(fail_csv, index=False)
        print(f"skipped and failed nights: {fail_csv}")
    return run.epochs, run.nights, mid


def cmd_embed(args: argparse.Namespace) -> int:
    """Write per-epoch (``--out``) and per-night embeddings as Parquet."""
    from s2v_core.cohort.cluster import cluster_from_args, remove_parts

    cluster = cluster_from_args(args)
    if cluster is None:
        apply_threads(args)
        model, _, mid = _load_model(args.model, args.device)
        epochs, nights = embedding_frames(args, model)
    else:
        if args.threads is not None and args.threads < 1:
            raise S2VError(f"--threads must be >= 1, got {args.threads}")
        epochs, nights, mid = _embed_distributed(args, cluster)
    out, nights_out = _embed_outputs(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    nights_out.parent.mkdir(parents=True, exist_ok=True)
    epochs.to_parquet(out, index=False)
    nights.to_parquet(nights_out, index=False)
    if cluster is not None and not args.keep_parts:
        remove_parts(out)
    width = sum(c.startswith("emb_") for c in epochs.columns)
    print(
        f"{len(nights)} night(s), {len(epochs)} epochs, {width}-d embeddings from {mid}: "
        f"{out} (epochs), {nights_out} (nights)"
    )
    return 0


def add_embed_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v embed`` to ``sub``."""
    p = sub.add_parser(
        "embed",
        help="fused per-epoch and per-night embeddings of a recording or a store, as Parquet",
        description="Columns: night, epoch, onset_s, stage, predicted, subject, site, age, sex, "
        "split, modalities, emb_0..emb_{H-1}; the per-night table (mean over epochs) goes "
        "next to it.",
    )
    p.add_argument("source", help="EDF/BDF recording, or a cohort store folder")
    _add_input_options(p)
    p.add_argument("--split", choices=("train", "val", "test"), help="only this split of a store")
    p.add_argument("--out", required=True, help="per-epoch Parquet file")
    p.add_argument("--nights-out", help="per-night Parquet file (default: OUT_nights.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (cluster runs)")
    p.add_argument(
        "--keep-parts",
        action="store_true",
        help="with a cluster: keep the per-night parts in OUT.parts/ after writing OUT",
    )
    from s2v_core.cohort.cluster import add_cluster_options

    add_cluster_options(p)
    p.set_defaults(func=cmd_embed)
    return p
