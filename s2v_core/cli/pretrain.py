"""``s2v pretrain``: contrastive pretraining (DASH-InfoNCE) on a cohort store; DDP under torchrun.

``torchrun`` starts one process per GPU or CPU share with the same command line::

    torchrun --standalone --nproc-per-node 2 -m s2v_core.cli pretrain \
        --data store/ --preset small --out runs/ddp

(see :mod:`s2v_core.train.distributed` for a multi-node command).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from s2v_core.cli.options import (
    TOKENIZERS,
    add_device_option,
    add_quiet_option,
    add_seed_option,
    add_tokenizer_option,
)
from s2v_core.errors import S2VError

if TYPE_CHECKING:  # torch-free at import time: `s2v info` must not pay for importing torch
    from s2v_core.train.config import TrainConfig
    from s2v_core.train.runfiles import EpochInfo, StepInfo

__all__ = [
    "LOSS_CHOICES",
    "PRESET_CHOICES",
    "EpochPrinter",
    "ProgressBar",
    "add_parser",
    "config_from_args",
    "format_retrieval_table",
    "run",
]

log = logging.getLogger(__name__)

PRESET_CHOICES = ("tiny", "small", "dense", "large")
"""``--preset`` choices (the keys of ``s2v_core.model.PRESETS``; a test keeps them equal)."""

LOSS_CHOICES = ("dash", "infonce")
"""``--loss`` choices (``s2v_core.train.config.LOSSES``; a test keeps them equal)."""

# CLI flag -> TrainConfig field; flags left out keep the config default (or the checkpoint's)
_FLAG_FIELDS = {
    "preset": "preset",
    "loss": "loss",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "device": "device",
    "seed": "seed",
    "batches_per_epoch": "batches_per_epoch",
    "num_workers": "num_workers",
    "window_epochs": "window_epochs",
    "pair_weighting": "pair_weighting",
    "val_batches": "val_batches",
    "ema_decay": "ema_decay",
    "compile": "compile",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``pretrain --data STORE --preset P --loss dash|infonce --out DIR [...]``."""
    p = subparsers.add_parser(
        "pretrain",
        help="contrastive pretraining (DASH-InfoNCE) on a cohort store; DDP under torchrun",
        description="Pretrain a sleep2vec backbone. Writes DIR/best/ and DIR/last/ checkpoints, "
        "history.csv, steps.csv and retrieval.csv. Defaults come from TrainConfig; with "
        "--resume they come from the checkpoint and only the flags given change them.",
    )
    p.add_argument("--data", required=True, help="cohort store (from s2v prepare)")
    p.add_argument("--out", help="run folder (default: the --resume folder)")
    p.add_argument("--preset", choices=PRESET_CHOICES, help="model size (default small)")
    p.add_argument("--loss", choices=LOSS_CHOICES, help="dash (default) or infonce")
    p.add_argument("--modalities", help="comma-separated modalities of the model (default all 9)")
    p.add_argument("--spectral-bands", type=int,
                   help="add a log band-power branch with this many bands to every tokenizer "
                        "(default 0: the paper's raw tokenizer; the shipped model uses 48)")
    add_tokenizer_option(p, default=None)
    p.add_argument("--epochs", type=int, help="epochs (default 10)")
    p.add_argument("--batch-size", type=int, help="windows per batch and process (default 16)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-4; paper 5e-5)")
    add_device_option(p, default=None, help="auto (default), cpu, cuda, cuda:N")
    add_seed_option(p, default=None, help="seed (default 0)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from DIR/last/")
    p.add_argument("--overwrite", action="store_true",
                   help="--out already holds a run: delete its checkpoints and logs and start again "
                        "(without it such a folder is refused; --resume continues it)")  # fmt: skip
    p.add_argument("--batches-per-epoch", type=int, help="steps per epoch (default: one pass)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default 0)")
    p.add_argument("--window-epochs", type=int, help="tokens per window (default 120 = 1 h)")
    p.add_argument("--pair-weighting", choices=("balanced", "sqrt", "windows"),
                   help="how often each modality pair is trained (default windows: in proportion to its windows)")
    p.add_argument("--val-batches", type=int, help="validation windows per pair / batch size")
    p.add_argument("--ema-decay", type=float, help="EMA decay (default 0.999)")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="compile the shared encoder with torch.compile (default backend inductor; "
                        "for GPUs; tens of seconds at the first step). Default: eager")  # fmt: skip
    add_quiet_option(p)
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's :class:`TrainConfig`: defaults (or the resumed checkpoint's) plus the flags."""
    from s2v_core.train.config import TrainConfig

    base = TrainConfig()
    if args.resume:
        from s2v_core.model.checkpoint import read_checkpoint_config
        from s2v_core.train.runfiles import resolve_resume

        ckpt, _ = resolve_resume(args.resume)
        base = TrainConfig.from_dict(read_checkpoint_config(ckpt)["extra"]["train_config"])
    changes = {
        field: getattr(args, flag)
        for flag, field in _FLAG_FIELDS.items()
        if getattr(args, flag) is not None
    }
    if args.modalities:
        names = [m.strip() for m in args.modalities.split(",") if m.strip()]
        changes["model_overrides"] = {**base.model_overrides, "modalities": names}
    if getattr(args, "tokenizer", None) is not None:
        overrides = changes.get("model_overrides", base.model_overrides)
        changes["model_overrides"] = {**overrides, "raw_branch": True, "features": 0, **TOKENIZERS[args.tokenizer]}
    if getattr(args, "spectral_bands", None) is not None:
        overrides = changes.get("model_overrides", base.model_overrides)
        changes["model_overrides"] = {**overrides, "spectral_bands": args.spectral_bands}
    return base.replace(**changes)


class ProgressBar:
    """A tqdm bar over all steps of the run, with the running loss (a ``TrainCallback``).

    The loss shown is read every ``loss_every`` steps and on the last one: reading it waits for the
    device, so reading it on every step would stop a GPU from running ahead of the host.
    """

    def __init__(self, enabled: bool = True, loss_every: int = 10):
        self.enabled, self.bar, self.loss_every = enabled, None, max(1, int(loss_every))

    def on_step(self, info: StepInfo) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=info.total_steps, initial=info.step - 1, unit="step")
        self.bar.update(1)
        if info.step % self.loss_every == 0 or info.step == info.total_steps:
            self.bar.set_postfix(loss=f"{info.loss:.3f}", pair="-".join(info.pair), refresh=False)

    def on_epoch_end(self, info: EpochInfo) -> None:
        return None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EpochPrinter:
    """One line per epoch: losses, mean validation retrieval vs chance (a ``TrainCallback``)."""

    def on_step(self, info: StepInfo) -> None:
        return None

    def on_epoch_end(self, info: EpochInfo) -> None:
        m = info.metrics
        line = (
            f"epoch {info.epoch + 1}/{info.epochs}  step {m['step']}  "
            f"train_loss {m['train_loss']:.4f}  val_loss {_num(m['val_loss'])}  "
            f"val_retrieval {_num(m['val_retrieval_mean'])} (chance {_num(m['val_chance_mean'])})"
            f"  {m['windows_per_s']:.1f} windows/s" + ("  *best*" if info.is_best else "")
        )
        from tqdm import tqdm

        tqdm.write(line)


def _num(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def format_retrieval_table(table) -> str:
    """The per-pair retrieval table as aligned text, best pair first."""
    if table is None or not len(table):
        return "no validation pair had enough windows (is the val split empty?)"
    lines = [f"{'pair':<16} {'accuracy':>8} {'chance':>8} {'x chance':>8} {'n':>7}"]
    for _, r in table.sort_values("accuracy", ascending=False).iterrows():
        ratio = r["accuracy"] / r["chance"] if r["chance"] else math.nan
        lines.append(
            f"{r['pair']:<16} {r['accuracy']:>8.3f} {r['chance']:>8.3f} {ratio:>8.1f} {r['n']:>7d}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of ``s2v pretrain``; prints one line per epoch and the final retrieval table."""
    from s2v_core.train.pretrain import pretrain
    from s2v_core.train.runfiles import resolve_resume

    cfg = config_from_args(args)
    if args.out is None and args.resume is None:
        raise S2VError("pretrain needs --out DIR (or --resume DIR to continue a run)")
    out = Path(args.out) if args.out else resolve_resume(args.resume)[1]
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = ProgressBar(enabled=is_main and not args.quiet, loss_every=cfg.log_every)
    try:
        result = pretrain(args.data, out, cfg, callbacks=[bar, EpochPrinter()],
                          resume_from=args.resume, overwrite=args.overwrite)  # fmt: skip
    finally:
        bar.close()
    if is_main:
        best = result.best_metrics
        epoch = int(best["epoch"]) + 1 if best else "?"
        print(f"best epoch {epoch}: per-pair validation retrieval (EMA weights, top-1)")
        print(format_retrieval_table(result.retrieval))
        print(f"checkpoints: {result.paths['best']} and {result.paths['last']}")
    return 0
