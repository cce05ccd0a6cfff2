"""Files of a pretraining run: the CSV logs, the checkpoint folders, and resuming.

Split from :mod:`s2v_core.train.pretrain` so that the loop reads on its own. Everything here is
written by rank 0 only. Checkpoint folders are written to a temporary sibling and swapped in,
so an interrupted run never leaves a half-written ``last/`` or ``best/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from s2v_core.cohort.store import SPLITS, CohortStore
from s2v_core.errors import S2VError
from s2v_core.modalities import MODALITIES
from s2v_core.model.checkpoint import save_checkpoint
from s2v_core.model.config import ModelConfig
from s2v_core.model.sleep2vec import Sleep2Vec

__all__ = [
    "HISTORY_COLUMNS",
    "STEP_COLUMNS",
    "EpochInfo",
    "PretrainResult",
    "RunFiles",
    "StepInfo",
    "TrainCallback",
    "data_summary",
    "resolve_resume",
    "save_run_checkpoint",
]

HISTORY_COLUMNS = [
    "epoch", "step", "lr", "train_loss", "val_loss", "val_retrieval_mean", "val_chance_mean",
    "windows_per_s", "seconds",
]  # fmt: skip
"""Columns of ``history.csv`` (one row per epoch; ``epoch`` is 0-based)."""

STEP_COLUMNS = ["step", "epoch", "pair", "loss", "lr", "grad_norm"]
"""Columns of ``steps.csv``."""


@dataclass(frozen=True)
class StepInfo:
    """What a callback learns after each optimiser step."""

    step: int  # steps done so far (1 after the first)
    total_steps: int  # steps of the whole run
    epoch: int  # current epoch, 0-based
    pair: tuple[str, str]  # the modality pair of the batch
    loss: float  # this process's loss of the step
    lr: float  # learning rate used in the step
    grad_norm: float  # global gradient norm before clipping (NaN when clipping is off)


@dataclass(frozen=True)
class EpochInfo:
    """What a callback learns after each epoch (validation and checkpoints done)."""

    epoch: int  # the epoch just finished, 0-based
    epochs: int  # epochs of the whole run
    metrics: dict  # the history.csv row of this epoch
    retrieval: pd.DataFrame  # per-pair validation table (retrieval.RETRIEVAL_COLUMNS)
    is_best: bool  # this epoch was saved to best/


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns."""

    out_dir: Path  # the run folder
    history: pd.DataFrame  # history.csv
    retrieval: pd.DataFrame  # per-pair table of the best epoch
    best_metrics: dict  # history row of the best epoch
    step: int  # steps done
    stopped_early: bool  # a callback asked to stop before the last epoch
    paths: dict[str, Path] = field(default_factory=dict)  # best, last, history, steps, retrieval


class TrainCallback:
    """Base class of progress callbacks; override what you need (called on rank 0 only)."""

    def on_step(self, info: StepInfo) -> None:
        """After every optimiser step."""

    def on_epoch_end(self, info: EpochInfo) -> bool | None:
        """After every epoch's validation and checkpoint; return True to stop training."""
        return None


def data_summary(store: CohortStore) -> dict:
    """What a checkpoint records about its training data (JSON-serialisable)."""
    m = store.manifest
    sites = [s for s in m["site"] if isinstance(s, str)]
    mods = [x for row in m["modalities"] for x in row]
    digest = hashlib.sha256((store.path / "manifest.csv").read_bytes()).hexdigest()
    return {
        "store": str(store.path.resolve()),
        "nights_per_split": {s: int((m["split"] == s).sum()) for s in SPLITS},
        "nights_per_site": {s: sites.count(s) for s in sorted(set(sites))},
        "nights_per_modality": {x: mods.count(x) for x in MODALITIES if x in mods},
        "manifest_sha256": digest,
    }


def resolve_resume(source: str | Path) -> tuple[Path, Path]:
    """``(checkpoint dir, run dir)`` from a run folder or its ``last/`` folder."""
    source = Path(source)
    if (source / "last" / "resume").is_dir():
        return source / "last", source
    if (source / "resume").is_dir():
        return source, source.parent
    raise S2VError(f"{source}: no resumable checkpoint here (expected last/resume/ inside)")


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; the previous ``final`` survives until the move is done."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def save_run_checkpoint(
    directory: Path,
    ema_model: Sleep2Vec,
    raw_model: Sleep2Vec,
    optimizer: torch.optim.Optimizer,
    model_cfg: ModelConfig,
    *,
    extra: dict,
    resume_state: dict,
    step: int,
    retrieval: pd.DataFrame,
) -> Path:
    """Write EMA weights (the export), ``resume/`` (raw weights + optimizer) and retrieval.csv."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, ema_model, model_cfg, extra=extra, step=step)
    save_checkpoint(
        tmp / "resume", raw_model, model_cfg, extra=resume_state, optimizer=optimizer, step=step
    )
    retrieval.to_csv(tmp / "retrieval.csv", index=False)
    _replace_dir(tmp, directory)
    return directory


class RunFiles:
    """The CSV logs and checkpoint folders of a run (written by rank 0 only)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.last_dir, self.best_dir = out_dir / "last", out_dir / "best"
        self.history: list[dict] = []
        self.steps: list[dict] = []
        self.retrieval: list[pd.DataFrame] = []

    def load_previous(self, run_dir: Path, epochs_done: int) -> None:
        """Keep the log rows of the first ``epochs_done`` epochs of an earlier run."""
        for name, attr in (("history.csv", "history"), ("steps.csv", "steps")):
            if (run_dir / name).is_file():
                frame = pd.read_csv(run_dir / name)
                setattr(self, attr, frame[frame["epoch"] < epochs_done].to_dict("records"))
        if (run_dir / "retrieval.csv").is_file():
            frame = pd.read_csv(run_dir / "retrieval.csv")
            self.retrieval = [frame[frame["epoch"] < epochs_done]]

    def log_step(self, info: StepInfo, every: int) -> None:
        if info.step % every == 0:
            pair = "-".join(info.pair)
            self.steps.append({"step": info.step, "epoch": info.epoch, "pair": pair,
                               "loss": info.loss, "lr": info.lr, "grad_norm": info.grad_norm})  # fmt: skip

    def add_epoch(self, metrics: dict, table: pd.DataFrame) -> None:
        self.history.append(dict(metrics))
        self.retrieval.append(table.assign(epoch=metrics["epoch"]))

    def copy_best(self) -> None:
        tmp = self.best_dir.with_name(".best.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.last_dir, tmp, ignore=shutil.ignore_patterns("resume"))
        _replace_dir(tmp, self.best_dir)

    def write_logs(self) -> None:
        pd.DataFrame(self.history, columns=HISTORY_COLUMNS).to_csv(
            self.out_dir / "history.csv", index=False
        )
        pd.DataFrame(self.steps, columns=STEP_COLUMNS).to_csv(
            self.out_dir / "steps.csv", index=False
        )
        frames = [f for f in self.retrieval if len(f)]
        table = pd.concat(frames) if frames else pd.DataFrame(columns=["epoch"])
        cols = ["epoch"] + [c for c in table.columns if c != "epoch"]
        table[cols].to_csv(self.out_dir / "retrieval.csv", index=False)

    def result(self, step: int, stopped: bool, best_epoch: int | None) -> PretrainResult:
        history = pd.DataFrame(self.history, columns=HISTORY_COLUMNS)
        best = history[history["epoch"] == best_epoch]
        frames = [f for f in self.retrieval if len(f)]
        table = pd.concat(frames) if frames else pd.DataFrame(columns=["epoch"])
        best_table = table[table["epoch"] == best_epoch].drop(columns="epoch")
        names = ("history.csv", "steps.csv", "retrieval.csv")
        paths = {"best": self.best_dir, "last": self.last_dir}
        paths |= {n.split(".")[0]: self.out_dir / n for n in names}
        return PretrainResult(
            out_dir=self.out_dir,
            history=history,
            retrieval=best_table.reset_index(drop=True),
            best_metrics=best.iloc[0].to_dict() if len(best) else {},
            step=step,
            stopped_early=stopped,
            paths=paths,
        )
