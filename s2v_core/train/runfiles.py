"""Files of a pretraining run: the CSV logs, the checkpoint folders, and resuming.

Split from :mod:`s2v_core.train.pretrain` so that the loop reads on its own. Everything here is
written by rank 0 only. Checkpoint folders are written to a temporary sibling and swapped in
(:func:`s2v_core.io.atomic.staged_dir`), so an interrupted run never leaves a half-written
``last/`` or ``best/``, and a run killed in the middle of the swap is completed or rolled back
when it is resumed (:func:`open_run_folder`); the CSV logs are replaced atomically too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from s2v_core.cohort.store import SPLITS, CohortStore
from s2v_core.errors import S2VError
from s2v_core.io.atomic import (
    COMPLETE_MARKER,
    dir_copies,
    readable_dir,
    recover_dir,
    remove_dir_and_copies,
    staged_dir,
    write_atomic,
)
from s2v_core.modalities import MODALITIES
from s2v_core.model.checkpoint import save_checkpoint
from s2v_core.model.config import ModelConfig
from s2v_core.model.sleep2vec import Sleep2Vec
from s2v_core.sanitize.cells import to_csv

__all__ = [
    "HISTORY_COLUMNS",
    "STEP_COLUMNS",
    "EpochInfo",
    "PretrainResult",
    "RunFiles",
    "StepInfo",
    "TrainCallback",
    "data_summary",
    "open_run_folder",
    "resolve_resume",
    "run_checkpoints",
    "save_run_checkpoint",
]

HISTORY_COLUMNS = [
    "epoch", "step", "lr", "train_loss", "val_loss", "val_retrieval_mean", "val_chance_mean",
    "windows_per_s", "seconds",
]  # fmt: skip
"""Columns of ``history.csv`` (one row per epoch; ``epoch`` is 0-based)."""

STEP_COLUMNS = ["step", "epoch", "pair", "loss", "lr", "grad_norm"]
"""Columns of ``steps.csv``."""

_CHECKPOINTS = ("last", "best")
_LOGS = ("history.csv", "steps.csv", "retrieval.csv")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """What a callback learns after each optimiser step."""

    step: int  # steps done so far (1 after the first)
    total_steps: int  # steps of the whole run
    epoch: int  # current epoch, 0-based
    pair: tuple[str, str]  # the modality pair of the batch
    loss_tensor: torch.Tensor  # 0-dim, on the training device: this process's loss of the step
    lr: float  # learning rate used in the step
    grad_norm_tensor: torch.Tensor  # 0-dim, on the training device (NaN when clipping is off)

    # The step's numbers stay on the device until read: the training loop never waits for the GPU
    # to finish a step, so that the next batch is queued while this one runs.
    @property
    def loss(self) -> float:
        """This process's loss of the step (reading it waits for the step to finish on a GPU)."""
        return float(self.loss_tensor)

    @property
    def grad_norm(self) -> float:
        """Global gradient norm before clipping, NaN when clipping is off (waits like :attr:`loss`)."""
        return float(self.grad_norm_tensor)


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
    """``(checkpoint dir, run dir)`` from a run folder or its ``last/`` folder.

    A run killed while it replaced ``last/`` is read through, changing nothing on disk: the
    checkpoint then comes from a complete ``.last.tmp`` or from ``.last.old``
    (:func:`s2v_core.io.atomic.readable_dir`); the resumed run completes or rolls back the
    replacement under the folder's lock (:func:`open_run_folder`).
    """
    source = Path(source)
    for ckpt, run_dir in ((source / "last", source), (source, source.parent)):
        found = readable_dir(ckpt)
        if (found / "resume").is_dir():
            return found, run_dir
    raise S2VError(f"{source}: no resumable checkpoint here (expected last/resume/ inside)")


def run_checkpoints(out_dir: str | Path) -> list[str]:
    """The checkpoint copies a run left in ``out_dir``: ``last/``, ``best/`` and interrupted ones."""
    out_dir = Path(out_dir)
    return [f"{p.name}/" for name in _CHECKPOINTS for p in dir_copies(out_dir / name)]


def open_run_folder(
    out_dir: str | Path, *, resume_run: str | Path | None = None, overwrite: bool = False
) -> None:
    """Make ``out_dir`` ready for a run; its writer calls it holding the folder's lock.

    Completes or rolls back a replacement of ``last/`` or ``best/`` that a killed run left
    half done. A folder holding another run's checkpoints is refused unless ``overwrite``
    (then they and the CSV logs are deleted); resuming the run in ``out_dir`` itself
    (``resume_run``) keeps everything.
    """
    out_dir = Path(out_dir)
    for name in _CHECKPOINTS:
        recover_dir(out_dir / name)
    same = resume_run is not None and Path(resume_run).resolve() == out_dir.resolve()
    if same:
        if overwrite:
            raise S2VError(
                f"{out_dir}: --overwrite would delete the run being resumed; give one of the two"
            )
        return
    found = run_checkpoints(out_dir)
    if not found:
        return
    if not overwrite:
        raise S2VError(
            f"{out_dir} already holds a run ({', '.join(found)}); resume it (--resume {out_dir}), "
            "choose another folder, or pass --overwrite to delete it and start again"
        )
    for name in _CHECKPOINTS:
        remove_dir_and_copies(out_dir / name)
    for name in _LOGS:
        (out_dir / name).unlink(missing_ok=True)
    log.warning("%s: --overwrite: deleted the previous run (%s)", out_dir, ", ".join(found))


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
    """Write EMA weights (the export), ``resume/`` (raw weights + optimizer) and retrieval.csv.

    Staged in ``.NAME.tmp`` and swapped in (:func:`s2v_core.io.atomic.staged_dir`): on any
    failure (a full disk) the staged folder is removed and the previous checkpoint is kept.
    """
    with staged_dir(directory) as tmp:
        save_checkpoint(tmp, ema_model, model_cfg, extra=extra, step=step)
        save_checkpoint(
            tmp / "resume", raw_model, model_cfg, extra=resume_state, optimizer=optimizer, step=step
        )
        to_csv(retrieval, tmp / "retrieval.csv", index=False)
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
        with staged_dir(self.best_dir) as tmp:
            shutil.copytree(self.last_dir, tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("resume", COMPLETE_MARKER))  # fmt: skip

    def saved_epoch(self, name: str) -> int | None:
        """Epochs done by the checkpoint ``name`` ("best", "last"), from its config.json."""
        try:
            return int(json.loads((self.out_dir / name / "config.json").read_text())["extra"]["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_logs(self) -> None:
        """history.csv, steps.csv and retrieval.csv, each replaced atomically (never truncated)."""
        frames = [f for f in self.retrieval if len(f)]
        table = pd.concat(frames) if frames else pd.DataFrame(columns=["epoch"])
        cols = ["epoch"] + [c for c in table.columns if c != "epoch"]
        logs = {
            "history.csv": pd.DataFrame(self.history, columns=HISTORY_COLUMNS),
            "steps.csv": pd.DataFrame(self.steps, columns=STEP_COLUMNS),
            "retrieval.csv": table[cols],
        }
        for name, frame in logs.items():
            write_atomic(self.out_dir / name, lambda tmp, f=frame: to_csv(f, tmp, index=False))

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
