"""``s2v finetune``: fine-tune a staging classifier on a cohort store."""

from __future__ import annotations

import argparse
import math

from s2v_core.cli.options import (
    TOKENIZERS,
    add_device_option,
    add_quiet_option,
    add_seed_option,
    add_threads_option,
    add_tokenizer_option,
    apply_threads,
)
from s2v_core.errors import S2VError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``s2v finetune`` to ``sub``."""
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
    add_tokenizer_option(p, default=None)
    p.add_argument("--site-weight", action="append", metavar="SITE=W", default=[],
                   help="draw the windows of a site's nights W times as often (repeatable), e.g. dreams=20")
    p.add_argument("--out", required=True, help="run folder: history.csv, best/")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it such a folder is refused)")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training windows")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument(
        "--modality-dropout",
        type=float,
        default=0.5,
        help="probability of dropping each modality of a window (one is always kept); with "
        "--dropout-mode size, of thinning a window at all",
    )
    p.add_argument("--dropout-mode", choices=("independent", "size"), default="independent",
                   help="independent: each modality dropped on its own; size: the number of modalities "
                        "kept drawn uniformly from 1..n, so single modalities are trained as often as all")
    p.add_argument("--single-loss", type=float, default=0.0, metavar="W",
                   help="add W x the mean staging loss of each kept modality staged alone (the shared "
                        "head learns every single modality in every window; 0: off)")
    p.add_argument("--single-loss-modalities", nargs="+", default=(), metavar="MODALITY",
                   help="count only these modalities in --single-loss (default: all)")
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
    add_device_option(p)
    add_seed_option(p)
    add_quiet_option(p, help="no per-pass lines")
    add_threads_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Fine-tune; print one line per pass and the kept checkpoint."""
    from s2v_core.train.finetune import FinetuneConfig, finetune

    apply_threads(args.threads)
    cfg = FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        modality_dropout=args.modality_dropout,
        dropout_mode=args.dropout_mode,
        single_loss=args.single_loss,
        single_loss_modalities=tuple(args.single_loss_modalities),
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
        model_overrides=TOKENIZERS[args.tokenizer] if args.tokenizer else {},
        site_weights=_site_weights(args.site_weight),
    )
    if args.tokenizer and args.pretrained:
        raise S2VError("--tokenizer applies without --pretrained (the checkpoint fixes the tokenizers)")

    def report(row: dict) -> None:
        if not args.quiet:
            kappa = row.get("val_kappa", math.nan)
            print(f"pass {row['epoch']}/{cfg.epochs}: train loss {row['train_loss']:.4f}  "
                  f"val kappa {kappa:.3f}  ({row['seconds']:.0f} s)", flush=True)  # fmt: skip

    res = finetune(args.data, args.out, cfg, pretrained=args.pretrained, on_epoch=report,
                   overwrite=args.overwrite)
    kappa = res.best.get("kappa", math.nan)
    print(f"kept pass {res.best.get('epoch')} (val kappa {kappa:.3f}): {res.checkpoint}")
    return 0


def _site_weights(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        site, _, value = item.partition("=")
        try:
            out[site.strip()] = float(value)
        except ValueError:
            raise S2VError(f"--site-weight expects SITE=W, e.g. dreams=20; got {item!r}") from None
    return out
