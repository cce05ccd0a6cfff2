"""Fine-tuning the staging head for any subset of modalities.

The backbone comes from a pretrained checkpoint (or a preset, for baselines and tests); the
tokenizers stay frozen by default (METHOD.md section 5). Each training window keeps a random
non-empty subset of its modalities (modality dropout), so one model serves every sensor set.
Loss: cross-entropy on scored epochs (unscored and padding are ignored). The checkpoint with the
best validation kappa is kept.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import S2VError
from .evaluation import staging_metrics
from .model import HeadConfig, Sleep2VecClassifier, get_preset
from .store import CohortStore
from .windows import WindowDataset

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Fine-tuning settings (saved next to the checkpoint)."""

    epochs: int = 8  # passes over the training windows
    batch_size: int = 16  # windows of 120 epochs per step
    lr: float = 1e-3  # peak AdamW learning rate (warm-up 5 % of steps, cosine to 10 %)
    weight_decay: float = 0.01
    modality_dropout: float = 0.5  # probability of dropping each modality of a window (one is always kept)
    freeze_tokenizers: bool = True  # METHOD.md: tokenizers frozen, encoder fine-tuned
    per_epoch_gate: bool = True  # add the input-dependent per-epoch gate to the global gates
    preset: str = "small"  # backbone preset when no pretrained checkpoint is given
    class_weighted: bool = True  # inverse-frequency class weights (N1 and REM are rare)
    seed: int = 0
    device: str = "cpu"
    max_batches_per_epoch: int | None = None  # cap for quick runs
    grad_clip: float = 1.0


@dataclass
class FinetuneResult:
    out_dir: Path
    history: pd.DataFrame
    best: dict = field(default_factory=dict)


def drop_modalities(present: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Randomly switch off entries of ``present`` (B, M) with probability ``p``, keeping >= 1 per row.

    Rows whose modalities would all be dropped keep one present modality chosen at random.
    """
    keep = present & (torch.rand(present.shape, generator=generator) >= p)
    empty = ~keep.any(dim=1) & present.any(dim=1)
    if empty.any():
        scores = torch.rand(present.shape, generator=generator).masked_fill(~present, -1.0)
        pick = scores.argmax(dim=1)
        rows = torch.nonzero(empty).squeeze(1)
        keep[rows, pick[rows]] = True
    return keep


def _collate(items: list[dict], modalities: tuple[str, ...]) -> dict:
    batch_inputs, present = {}, []
    for m in modalities:
        xs = [it["inputs"].get(m) for it in items]
        if all(x is None for x in xs):
            continue
        shape = next(x for x in xs if x is not None).shape
        batch_inputs[m] = torch.stack([x if x is not None else torch.zeros(shape) for x in xs])
    names = tuple(batch_inputs)
    for it in items:
        present.append([bool(m in it["valid"] and it["valid"][m].any()) for m in names])
    return {
        "inputs": batch_inputs,
        "names": names,
        "present": torch.tensor(present, dtype=torch.bool).reshape(len(items), len(names)),
        "valid": torch.stack([it["pad_valid"] for it in items]),
        "stages": torch.stack([it["stages"] for it in items]),
    }


def _finite(d: dict) -> dict:
    """NaN -> None so metrics can go into JSON."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _lr_at(step: int, total: int, peak: float) -> float:
    warm = max(1, int(0.05 * total))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def evaluate_windows(model: Sleep2VecClassifier, dataset: WindowDataset, *, batch_size: int = 16,
                     device: str = "cpu") -> dict:
    """Validation kappa / accuracy / macro-F1 over every window of ``dataset`` (all modalities)."""
    model.eval()
    refs, preds = [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            b = _collate(items, model.config.modalities)
            present = {m: b["present"][:, j].to(device) for j, m in enumerate(b["names"])}
            out = model({m: x.to(device) for m, x in b["inputs"].items()}, b["valid"].to(device), present)
            ok = b["valid"] & (b["stages"] >= 0)
            refs.append(b["stages"][ok].numpy())
            preds.append(out.stage_logits.argmax(-1).cpu()[ok].numpy())
    ref, pred = np.concatenate(refs), np.concatenate(preds)
    if ref.size == 0:
        return {"kappa": float("nan"), "accuracy": float("nan"), "macro_f1": float("nan"), "n_epochs": 0}
    m = staging_metrics(ref, pred)
    return {"kappa": m.kappa, "accuracy": m.accuracy, "macro_f1": m.macro_f1, "n_epochs": m.n_epochs}


def finetune(
    store_path: str | Path,
    out_dir: str | Path,
    cfg: FinetuneConfig | None = None,
    *,
    pretrained: str | Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FinetuneResult:
    """Fine-tune a staging classifier on the store's train split; keep the best by val kappa."""
    cfg = cfg or FinetuneConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    store = CohortStore(store_path)
    train, val = WindowDataset(store, "train"), WindowDataset(store, "val")
    if len(train) == 0:
        raise S2VError(f"{store_path}: the train split has no windows")
    head = HeadConfig(per_epoch_gate=cfg.per_epoch_gate, freeze_tokenizers=cfg.freeze_tokenizers)
    if pretrained is not None:
        backbone, mcfg, _ = load_checkpoint(pretrained)
        model = Sleep2VecClassifier(mcfg, head, seed=cfg.seed)
        model.load_backbone(backbone)
    else:
        mcfg = get_preset(cfg.preset)
        model = Sleep2VecClassifier(mcfg, head, seed=cfg.seed)
    model.set_tokenizers_trainable(not cfg.freeze_tokenizers)
    model.to(cfg.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    counts = np.bincount(np.concatenate([np.load(store.folder(n) / "stages.npy") for n in store.nights("train")])
                         .clip(-1, 4) + 1, minlength=6)[1:].astype(float)
    weights = None
    if cfg.class_weighted and counts.sum() > 0:
        w = counts.sum() / np.maximum(counts, 1) / 5
        weights = torch.tensor(np.clip(w / w.mean(), 0.2, 5.0), dtype=torch.float32, device=cfg.device)
    loss_fn = nn.CrossEntropyLoss(weight=weights, ignore_index=-1)
    n_batches = len(train) // cfg.batch_size or 1
    if cfg.max_batches_per_epoch:
        n_batches = min(n_batches, cfg.max_batches_per_epoch)
    total = n_batches * cfg.epochs
    gen = torch.Generator().manual_seed(cfg.seed)
    rows, best, step = [], {"kappa": -math.inf}, 0
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        t0, losses = time.perf_counter(), []
        for b in range(n_batches):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            batch = _collate([train[i] for i in idx], model.config.modalities)
            keep = drop_modalities(batch["present"], cfg.modality_dropout, gen)
            present = {m: keep[:, j].to(cfg.device) for j, m in enumerate(batch["names"])}
            result = model({m: x.to(cfg.device) for m, x in batch["inputs"].items()},
                           batch["valid"].to(cfg.device), present)
            target = batch["stages"].to(cfg.device).masked_fill(~batch["valid"].to(cfg.device), -1)
            logits = result.stage_logits  # (B, T, 5)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        metrics = evaluate_windows(model, val, device=cfg.device) if len(val) else {"kappa": float("nan")}
        row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)),
               "seconds": time.perf_counter() - t0, **{f"val_{k}": v for k, v in metrics.items()}}
        rows.append(row)
        if on_epoch:
            on_epoch(row)
        score = metrics.get("kappa", float("nan"))
        if best["kappa"] == -math.inf or (not math.isnan(score) and score > best["kappa"]):
            best = {"epoch": epoch + 1, **metrics}
            extra = {"finetune_config": asdict(cfg), "metrics": _finite(metrics), "epoch": epoch + 1,
                     "pretrained": str(pretrained) if pretrained else None,
                     "data": {"store": str(store_path), "nights": {s: len(store.nights(s)) for s in ("train", "val", "test")}},
                     "class_names": ["W", "N1", "N2", "N3", "REM"]}
            save_checkpoint(out / "best", model, mcfg, extra=extra)
        pd.DataFrame(rows).to_csv(out / "history.csv", index=False)
    (out / "finetune_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return FinetuneResult(out, pd.DataFrame(rows), best)
