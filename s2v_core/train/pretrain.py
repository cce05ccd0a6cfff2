"""The contrastive pretraining loop (single process, or DDP under ``torchrun``).

One step: the pair-first sampler gives N windows that all have modalities (a, b); both are
encoded (15 % of tokens masked, each modality with its own validity), projected, and compared
with DASH-InfoNCE (or plain InfoNCE); AdamW steps with warm-up + cosine learning rate and
gradient clipping; an EMA copy of the weights follows. After every epoch the EMA weights are
scored on the validation split (pairwise retrieval, :mod:`s2v_core.train.retrieval`) and saved.

Output folder::

    out/
      last/          EMA weights (model.safetensors + config.json), retrieval.csv,
        resume/      raw weights + optimizer state, to continue exactly (``resume_from``)
      best/          EMA weights of the epoch with the best mean validation retrieval
      history.csv    one row per epoch: epoch, step, lr, train_loss, val_loss,
                     val_retrieval_mean, val_chance_mean, windows_per_s, seconds
      steps.csv      every ``log_every`` steps: step, epoch, pair, loss, lr, grad_norm
      retrieval.csv  per epoch and pair: accuracy, chance, n, loss

Randomness: the model is initialised from ``seed``, the sampler is seeded with ``seed`` and the
epoch, and the global torch RNG (token masking, dropout) is reseeded at every step from
``(seed, rank, step)``; hence the same seed gives the same weights, and a resumed run continues
exactly where the interrupted one was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.io.lock import FolderLock
from s2v_core.model.checkpoint import (
    load_checkpoint,
    load_optimizer_state,
    read_checkpoint_config,
)
from s2v_core.model.sleep2vec import Sleep2Vec
from s2v_core.train import distributed as ddp
from s2v_core.train.config import TrainConfig
from s2v_core.train.losses import dash_infonce
from s2v_core.train.retrieval import pairwise_retrieval
from s2v_core.train.runfiles import (
    EpochInfo,
    PretrainResult,
    RunFiles,
    StepInfo,
    TrainCallback,
    data_summary,
    open_run_folder,
    resolve_resume,
    save_run_checkpoint,
)
from s2v_core.train.schedule import EMA, lr_at
from s2v_core.train.windows import PairFirstBatchSampler, WindowDataset, make_loader

__all__ = [
    "HASH_DIR_ENV",
    "NonFiniteWatch",
    "PairEncoder",
    "compile_encoder",
    "make_loss_fn",
    "make_optimizer",
    "pretrain",
    "step_seed",
    "train_step",
]

log = logging.getLogger(__name__)

HASH_DIR_ENV = "S2V_TRAIN_HASH_DIR"
"""When set, every rank writes ``rank<k>.json`` with the SHA-256 of its final weights there."""


class PairEncoder(nn.Module):
    """Wraps :class:`Sleep2Vec` so that one call (the one DDP sees) encodes and projects a pair."""

    def __init__(self, model: Sleep2Vec):
        super().__init__()
        self.model = model

    def forward(
        self, a: str, xa: Tensor, valid_a: Tensor, b: str, xb: Tensor, valid_b: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``x*`` (N, T, spe), ``valid_*`` (N, T) bool -> projections (N, T, P) of a and b."""
        ha = self.model({a: xa}, valid_a, mask_tokens=True)[a]  # (N, T, H)
        hb = self.model({b: xb}, valid_b, mask_tokens=True)[b]  # (N, T, H)
        return self.model.project(ha), self.model.project(hb)  # (N, T, P) each


def make_loss_fn(cfg: TrainConfig):
    """``loss(za, zb, valid, age, sex, site, night_id)`` for ``cfg.loss`` and its parameters."""
    kwargs = dict(
        tau=cfg.tau,
        age_bandwidth=cfg.age_bandwidth,
        sex_diff_factor=cfg.sex_diff_factor,
        site_same=cfg.site_same,
        site_diff=cfg.site_diff,
        eps=cfg.eps,
        margin=cfg.margin,
        weighting=cfg.loss == "dash",
    )

    def loss_fn(za, zb, valid, age, sex, site, night_id) -> Tensor:
        return dash_infonce(za, zb, valid, age, sex, site, night_id, **kwargs)

    return loss_fn


def compile_encoder(model: Sleep2Vec, backend: str = "inductor") -> None:
    """Compile the shared transformer encoder in place (``nn.Module.compile``; weights' names kept).

    The encoder is where a batch's time goes for the larger presets, and its input shape is the
    same for every modality pair (rows x tokens x hidden), so it compiles once (twice on a CPU,
    where it also reads whether a key mask is needed); the nine tokenizers stay eager. The EMA
    copy and the checkpoints are unaffected. Compiling takes tens of seconds at the first step.
    """
    import torch._dynamo  # ~0.8 s: only when compiling

    if backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise S2VError(
            f"unknown torch.compile backend {backend!r}; choose one of "
            f"{', '.join(torch._dynamo.list_backends())}"
        )
    model.encoder.compile(backend=backend, dynamic=False)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases, norms, mask vectors, CLS).

    On a GPU the fused implementation: one kernel for all parameters, and its step counts stay on
    the device, so the update never waits for the host.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    fused = any(p.is_cuda for p in decay + other)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the global torch RNG for one step (masking and dropout)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


class NonFiniteWatch:
    """The first step of an epoch whose loss was NaN or infinite, found without waiting for the device.

    Every step's loss is compared on the device; :meth:`check` (on logged steps and at the epoch's
    end) reads the result once and stops the run with the step, its pair and learning rate.
    """

    def __init__(self, device: torch.device):
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.steps: dict[int, tuple[tuple[str, str], float]] = {}

    def add(self, loss: torch.Tensor, step: int, pair: tuple[str, str], lr: float) -> None:
        """Note ``step``'s loss (queued on the device; nothing waits)."""
        bad = (self.first < 0) & ~torch.isfinite(loss)
        self.first = torch.where(bad, step, self.first)
        self.steps[step] = (tuple(pair), lr)

    def check(self) -> None:
        """Raise :class:`S2VError` when a step since the last check had a non-finite loss."""
        first = int(self.first)
        steps, self.steps = self.steps, {}
        if first < 0:
            return
        pair, lr = steps[first]
        raise S2VError(
            f"the loss became NaN or infinite at step {first} (pair {'-'.join(pair)}); "
            f"lower the learning rate (now {lr:.3g})"
        )


def train_step(
    net: nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    *,
    lr: float,
    grad_clip: float,
    device: torch.device,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a :func:`~s2v_core.train.windows.collate_pair` batch.

    Nothing here waits for the device: the copies, the forward and backward passes, the clipping
    and the optimiser update are only queued, and the step's numbers come back as device tensors.

    Returns
    -------
    loss : torch.Tensor
        0-dim, detached, on ``device`` (``float(loss)`` waits for the step).
    grad_norm : torch.Tensor
        0-dim, on ``device``: global gradient norm before clipping (NaN when ``grad_clip`` is 0).
    """
    a, b = batch["pair"]
    # every copy is queued without waiting (asynchronous from the loader's pinned batches);
    # the masks are combined on the device, from the copied tensors
    names = ("a", "b", "valid", "valid_a", "valid_b", "pad_valid", "age", "sex", "site", "night_index")
    moved = {k: batch[k].to(device, non_blocking=True) for k in names}
    valid_a = moved["valid_a"] & moved["pad_valid"]
    valid_b = moved["valid_b"] & moved["pad_valid"]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if bf16 and device.type == "cuda"
        else contextlib.nullcontext()
    )
    with autocast:
        za, zb = net(a, moved["a"], valid_a, b, moved["b"], valid_b)  # (N, T, P) each
    meta = [moved[k] for k in ("age", "sex", "site", "night_index")]
    loss = loss_fn(za.float(), zb.float(), moved["valid"], *meta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        grad_norm = torch.full((), math.nan, device=device)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return loss.detach(), grad_norm.detach()


def pretrain(
    store_path: str | Path,
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    callbacks: Sequence[TrainCallback] = (),
    resume_from: str | Path | None = None,
    overwrite: bool = False,
) -> PretrainResult:
    """Pretrain a sleep2vec backbone on a cohort store.

    Parameters
    ----------
    store_path : path
        A store prepared by :func:`s2v_core.cohort.prepare.prepare_store`; its ``train`` split is
        trained on, its ``val`` split scored after every epoch.
    out_dir : path
        Run folder (see the module docstring); created if needed.
    cfg : TrainConfig
        The run's settings; with ``resume_from``, the model must match the checkpoint's.
    callbacks : sequence of TrainCallback
        Called on rank 0 only: ``on_step(StepInfo)``, ``on_epoch_end(EpochInfo)``; an
        ``on_epoch_end`` returning True stops training after that epoch's checkpoint.
    resume_from : path, optional
        A run folder (or its ``last/``) to continue exactly: same step, same position of the
        learning-rate schedule, same sampler epoch.
    overwrite : bool
        Delete the checkpoints and logs of a previous run in ``out_dir`` and start again;
        without it such a folder is refused (resume it instead).

    Returns
    -------
    PretrainResult
        On every rank; only rank 0's ``history`` is complete.
    """
    ctx = ddp.init_distributed(cfg.device)
    lock, error = None, None
    try:
        if ctx.is_main:  # one writer per run folder; rank 0 also repairs it before anyone reads it
            try:
                lock = FolderLock(out_dir, "s2v pretrain").acquire()
                run_dir = None if resume_from is None else resolve_resume(resume_from)[1]
                open_run_folder(out_dir, resume_run=run_dir, overwrite=overwrite)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
                error = exc
        if not ddp.broadcast_flag(error is None, ctx):
            raise error if error is not None else S2VError(f"{out_dir}: rank 0 could not open the run folder")
        return _Run(store_path, out_dir, cfg, ctx, callbacks, resume_from).run()
    finally:
        if lock is not None:
            lock.release()
        ddp.cleanup(ctx)


class _Run:
    """State of one pretraining run; split from :func:`pretrain` to keep the loop readable."""

    def __init__(self, store_path, out_dir, cfg: TrainConfig, ctx, callbacks, resume_from):
        self.cfg, self.ctx, self.callbacks = cfg, ctx, list(callbacks)
        self.store = CohortStore(store_path)
        self.model_cfg = cfg.model_config()
        self.bf16 = ctx.device.type == "cuda" and (cfg.bf16 is None or cfg.bf16)
        mods = self.model_cfg.modalities
        spec = {"raw": self.model_cfg.reads_samples, "features": self.model_cfg.features}
        self.train_ds = WindowDataset(self.store, "train", modalities=mods, window_epochs=cfg.window_epochs,
                                      feature_crops=True, crop_seed=cfg.seed, **spec)  # fmt: skip
        self.val_ds = WindowDataset(self.store, "val", modalities=mods, window_epochs=cfg.window_epochs, **spec)
        if len(self.train_ds) < cfg.batch_size:
            raise S2VError(
                f"{self.store.path}: the train split has {len(self.train_ds)} windows of "
                f"{cfg.window_epochs} epochs, fewer than batch_size={cfg.batch_size}"
            )
        n_batches = (
            None if cfg.batches_per_epoch is None else cfg.batches_per_epoch * ctx.world_size
        )
        try:
            self.sampler = PairFirstBatchSampler(
                self.train_ds, cfg.batch_size, seed=cfg.seed, rank=ctx.rank,
                world_size=ctx.world_size, n_batches=n_batches, pair_weighting=cfg.pair_weighting,
            )  # fmt: skip
        except ValueError as err:
            raise S2VError(f"{self.store.path}: {err}") from None
        if len(self.sampler) == 0:
            raise S2VError(f"{self.store.path}: no training batch per process; lower batch_size")
        self.total_steps = cfg.epochs * len(self.sampler)
        self.model = Sleep2Vec(self.model_cfg, pretraining=True, seed=cfg.seed).to(ctx.device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.ema = EMA(self.model, cfg.ema_decay)
        if cfg.compile:
            compile_encoder(self.model, cfg.compile)
        self.loss_fn = make_loss_fn(cfg)
        self.files = RunFiles(Path(out_dir))  # checked and repaired by open_run_folder
        self.data_summary = data_summary(self.store)
        self.epoch, self.step = 0, 0
        self.best_score, self.best_epoch = -math.inf, None
        if resume_from is not None:
            self._resume(Path(resume_from))

    def _resume(self, source: Path) -> None:
        ckpt, run_dir = resolve_resume(source)
        meta = read_checkpoint_config(ckpt)
        if meta["model"].to_dict() != self.model_cfg.to_dict():
            raise S2VError(f"{ckpt}: its model differs from the configured one; cannot resume")
        saved = TrainConfig.from_dict(meta["extra"]["train_config"]).to_dict()
        changed = sorted(k for k, v in self.cfg.to_dict().items() if saved.get(k) != v)
        if changed:
            log.warning("resuming with changed settings: %s", ", ".join(changed))
        raw, _, state = load_checkpoint(ckpt / "resume", device=self.ctx.device)
        self.model.load_state_dict(raw.state_dict())
        load_optimizer_state(ckpt / "resume", self.optimizer)
        ema, _, _ = load_checkpoint(ckpt, device=self.ctx.device)
        self.ema.module.load_state_dict(ema.state_dict())
        self.ema.updates = int(state["ema_updates"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_score = (
            float(state["best_score"]) if state["best_score"] is not None else -math.inf
        )
        self.best_epoch = state["best_epoch"]
        self.files.load_previous(run_dir, self.epoch)
        same = run_dir.resolve() == self.files.out_dir.resolve()
        if self.ctx.is_main and same and self.best_epoch is not None and int(self.best_epoch) + 1 == self.epoch \
                and self.files.saved_epoch("best") != self.epoch:  # fmt: skip
            log.warning("best/ lags the best epoch %d (killed while copying it); copying it again", self.epoch)
            self.files.copy_best()
        log.info("resumed from %s at epoch %d, step %d", ckpt, self.epoch, self.step)

    def run(self) -> PretrainResult:
        cfg, ctx = self.cfg, self.ctx
        net = ddp.wrap_model(PairEncoder(self.model), ctx)
        loader = make_loader(
            self.train_ds, self.sampler, cfg.num_workers, pin_memory=ctx.device.type == "cuda"
        )
        if ctx.is_main:
            self.files.out_dir.mkdir(parents=True, exist_ok=True)
        stopped = False
        for epoch in range(self.epoch, cfg.epochs):
            self.sampler.set_epoch(epoch)
            net.train()
            # the epoch's loss and its first non-finite step are kept on the device: the host reads
            # them only on logged steps and at the epoch's end, never waiting for every step
            loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
            watch = NonFiniteWatch(ctx.device)
            n_steps, started, lr = 0, time.perf_counter(), cfg.lr
            for batch in loader:
                torch.manual_seed(step_seed(cfg.seed, ctx.rank, self.step))
                lr = lr_at(
                    self.step, self.total_steps, cfg.lr,
                    warmup_fraction=cfg.warmup_fraction, final_lr_fraction=cfg.final_lr_fraction,
                )  # fmt: skip
                loss, grad_norm = train_step(
                    net, batch, self.optimizer, self.loss_fn, lr=lr, grad_clip=cfg.grad_clip,
                    device=ctx.device, bf16=self.bf16,
                )  # fmt: skip
                self.ema.update(self.model)
                self.step += 1
                watch.add(loss, self.step, batch["pair"], lr)
                loss_sum += loss
                n_steps += 1
                info = StepInfo(
                    self.step, self.total_steps, epoch, batch["pair"], loss, lr, grad_norm
                )
                if self.step % cfg.log_every == 0:
                    watch.check()  # a logged step reads the loss anyway
                if ctx.is_main:
                    self.files.log_step(info, cfg.log_every)
                    for cb in self.callbacks:
                        cb.on_step(info)
            watch.check()  # before anything of this epoch is validated or saved
            seconds = time.perf_counter() - started
            total_loss, total_steps = ddp.all_reduce_sum([float(loss_sum), n_steps], ctx)
            windows_per_s = total_steps * cfg.batch_size / max(seconds, 1e-9)
            stop = False
            if ctx.is_main:
                stop = self._end_epoch(
                    epoch, lr, total_loss / max(total_steps, 1), windows_per_s, seconds
                )
            self.epoch = epoch + 1
            stopped = ddp.broadcast_flag(stop, ctx) and self.epoch < cfg.epochs
            if stopped:
                break
        self._write_hash()
        ddp.barrier(ctx)
        return self.files.result(self.step, stopped, self.best_epoch)

    def _end_epoch(self, epoch, lr, train_loss, windows_per_s, seconds) -> bool:
        cfg = self.cfg
        table = pairwise_retrieval(
            self.ema.module, self.val_ds, batch_size=max(cfg.batch_size, 2),
            max_windows=cfg.val_batches * cfg.batch_size, loss_fn=self.loss_fn,
            device=self.ctx.device, bf16=self.bf16, seed=cfg.seed,
        )  # fmt: skip
        weights = table["n"].to_numpy(float)
        val_loss = float(np.average(table["loss"], weights=weights)) if weights.sum() else math.nan
        metrics = {
            "epoch": epoch,
            "step": self.step,
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_retrieval_mean": float(table["accuracy"].mean()) if len(table) else math.nan,
            "val_chance_mean": float(table["chance"].mean()) if len(table) else math.nan,
            "windows_per_s": windows_per_s,
            "seconds": seconds,
        }
        # model selection on mean validation retrieval; on the train loss without a val split
        score = metrics["val_retrieval_mean"]
        score = -train_loss if math.isnan(score) else score
        is_best = score > self.best_score
        if is_best:
            self.best_score, self.best_epoch = score, epoch
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in metrics.items()}  # fmt: skip
        extra = {
            "train_config": cfg.to_dict(),
            "epoch": epoch + 1,
            "weights": "ema",
            "metrics": clean,
            "data_summary": self.data_summary,
        }
        state = {
            "weights": "raw",
            "epoch": epoch + 1,
            "step": self.step,
            "ema_updates": self.ema.updates,
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "best_epoch": self.best_epoch,
        }
        self.files.add_epoch(metrics, table)
        self.files.write_logs()  # before the checkpoint: a resume keeps only the epochs it holds
        save_run_checkpoint(
            self.files.last_dir, self.ema.module, self.model, self.optimizer, self.model_cfg,
            extra=extra, resume_state=state, step=self.step, retrieval=table,
        )  # fmt: skip
        if is_best:
            self.files.copy_best()
        log.info("epoch %d: %s", epoch, json.dumps(clean))
        info = EpochInfo(epoch, cfg.epochs, metrics, table, is_best)
        answers = [bool(cb.on_epoch_end(info)) for cb in self.callbacks]  # call every callback
        return any(answers)

    def _write_hash(self) -> None:
        target = os.environ.get(HASH_DIR_ENV)
        if not target:
            return
        folder = Path(target)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {
            "rank": self.ctx.rank,
            "world_size": self.ctx.world_size,
            "step": self.step,
            "raw": ddp.state_sha256(self.model),
            "ema": ddp.state_sha256(self.ema.module),
        }
        (folder / f"rank{self.ctx.rank}.json").write_text(json.dumps(doc), encoding="utf-8")
