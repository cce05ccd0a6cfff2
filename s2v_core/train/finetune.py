"""Fine-tuning the staging head so that one model serves ANY non-empty subset of modalities.

The backbone comes from a pretrained checkpoint (or from a preset, for baselines and tests); the
tokenizers stay frozen by default and the encoder, gates and head are trained (METHOD.md
section 5). Every training window uses all of its present modalities minus a random subset
(modality dropout, at least one kept), so the gates learn to renormalise over whatever a device
records. Loss: cross-entropy over scored epochs only (unscored and padding ignored). After each
pass over the training windows the model is scored on the validation windows (all modalities);
the checkpoint with the best validation kappa is kept in ``out_dir/best``.

Options for small real cohorts: ``n_classes`` trains the 4- or 3-class problem (the head keeps
its five outputs; the loss is the cross-entropy of the merged class probabilities, the sums of
the stage probabilities in each group, as :meth:`Prediction.merged` predicts them);
``init_head`` starts from a fine-tuned classifier's gates and staging head as well as its
backbone; ``patience`` stops when the validation kappa has not improved for that many passes.

Night-level heads (age, sex, AHI) are out of scope here; :func:`finetune` takes a
``night_loss`` callable as the hook for them (see its docstring).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.evaluation.staging import staging_metrics
from s2v_core.inference.familiarity import training_ranges
from s2v_core.inference.predict import MERGE_GROUPS, REPRESENTATIVE_STAGE
from s2v_core.io.atomic import (
    dir_copies,
    recover_dir,
    remove_dir_and_copies,
    staged_dir,
    write_atomic,
    write_text_atomic,
)
from s2v_core.io.lock import FolderLock
from s2v_core.modalities import MODALITIES
from s2v_core.model.checkpoint import load_checkpoint, save_checkpoint
from s2v_core.model.config import PRESETS, HeadConfig, get_preset
from s2v_core.model.device import resolve_device
from s2v_core.model.fusion import Sleep2VecClassifier
from s2v_core.sanitize.cells import to_csv
from s2v_core.stages import STAGE_NAMES
from s2v_core.train.schedule import lr_at
from s2v_core.train.windows import WindowDataset

__all__ = [
    "CLASS_WEIGHT_RANGE",
    "DROPOUT_MODES",
    "FinetuneConfig",
    "FinetuneResult",
    "build_model",
    "class_weights_from_counts",
    "collate_windows",
    "data_summary",
    "drop_modalities",
    "evaluate_windows",
    "finetune",
    "labelled_epochs",
    "merge_targets",
    "merged_log_probs",
    "refuse_unlabelled",
    "single_modality_loss",
    "staging_loss",
    "train_step",
]

log = logging.getLogger(__name__)

CLASS_WEIGHT_RANGE = (0.2, 5.0)
"""Clip of the inverse-frequency class weights (relative to their mean)."""

DROPOUT_MODES = ("independent", "size")
"""How modality dropout picks a window's training subset (:func:`drop_modalities`)."""


@dataclass
class FinetuneConfig:
    """Fine-tuning settings, saved as JSON next to the checkpoint."""

    epochs: int = 8  # passes over the training windows
    batch_size: int = 16  # windows per optimiser step
    lr: float = 1e-3  # peak AdamW learning rate (linear warm-up, cosine down to 10 %)
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_fraction: float = 0.05  # share of the steps spent warming up
    modality_dropout: float = 0.5  # probability of dropping each present modality of a window
    dropout_mode: str = "independent"  # "independent": each modality with modality_dropout; "size": see drop_modalities
    single_loss: float = 0.0  # weight of the loss of each kept modality staged alone (single_modality_loss)
    single_loss_modalities: tuple[str, ...] = ()  # the modalities that loss counts (empty: all of them)
    freeze_tokenizers: bool = True  # METHOD.md: tokenizers frozen, encoder fine-tuned
    per_epoch_gate: bool = True  # input-dependent per-epoch gate on top of the global gates
    preset: str = "small"  # backbone preset when no pretrained checkpoint is given
    class_weighted: bool = True  # inverse-frequency class weights (N1 and N3 are rare)
    label_smoothing: float = 0.0  # cross-entropy label smoothing, in [0, 1)
    window_epochs: int = 120  # 30-s epochs per training window (one hour)
    grad_clip: float = 1.0  # max global gradient norm
    max_batches_per_epoch: int | None = None  # cap for quick runs (None: every window once)
    seed: int = 0  # weight init, window order and modality dropout
    device: str = "cpu"  # "cpu", "cuda" or "auto"
    n_classes: int = 5  # training objective and validation kappa: 5 stages, or 4 / 3 merged
    init_head: bool = False  # from a classifier checkpoint: also reuse its gates and staging head
    patience: int | None = None  # stop after this many passes without a better val kappa
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields changed from the preset (no pretrained)
    site_weights: dict = field(default_factory=dict)  # {site: w}: its windows are drawn w times as often
    feature_crops: bool = True  # features of training windows also normalised over 30-60-min crops

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "window_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise S2VError(f"finetune {name} must be a positive integer, got {value!r}")
        for name in ("modality_dropout", "label_smoothing", "warmup_fraction"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise S2VError(f"finetune {name} must be in [0, 1), got {value!r}")
        if not self.lr > 0:
            raise S2VError(f"finetune lr must be > 0, got {self.lr!r}")
        if not (isinstance(self.single_loss, int | float) and not isinstance(self.single_loss, bool)
                and 0.0 <= float(self.single_loss) <= 10.0):  # fmt: skip
            raise S2VError(f"finetune single_loss must be a number in [0, 10], got {self.single_loss!r}")
        chosen = self.single_loss_modalities
        if isinstance(chosen, str) or not all(isinstance(m, str) for m in chosen):
            raise S2VError(f"finetune single_loss_modalities must be a list of modality names, got {chosen!r}")
        unknown = [m for m in chosen if m not in MODALITIES]
        if unknown:
            raise S2VError(f"finetune single_loss_modalities: unknown modality {', '.join(unknown)}; "
                           f"known: {', '.join(MODALITIES)}")  # fmt: skip
        self.single_loss_modalities = tuple(dict.fromkeys(chosen))
        if self.dropout_mode not in DROPOUT_MODES:
            raise S2VError(f"finetune dropout_mode must be one of {', '.join(DROPOUT_MODES)}, got {self.dropout_mode!r}")
        if self.preset not in PRESETS:
            raise S2VError(f"unknown preset {self.preset!r}; allowed: {', '.join(PRESETS)}")
        if self.max_batches_per_epoch is not None and self.max_batches_per_epoch < 1:
            raise S2VError(f"max_batches_per_epoch must be >= 1, got {self.max_batches_per_epoch}")
        if isinstance(self.n_classes, bool) or self.n_classes not in (5, 4, 3):
            raise S2VError(f"finetune n_classes must be 5, 4 or 3, got {self.n_classes!r}")
        if not isinstance(self.model_overrides, dict) or not isinstance(self.site_weights, dict):
            raise S2VError("finetune model_overrides and site_weights must be mappings")
        bad = {k: v for k, v in self.site_weights.items() if not (isinstance(v, int | float) and v > 0)}
        if bad:
            raise S2VError(f"finetune site_weights must be positive numbers, got {bad}")
        if self.patience is not None and (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise S2VError(
                f"finetune patience must be a positive integer or None, got {self.patience!r}"
            )


@dataclass
class FinetuneResult:
    """What :func:`finetune` produced."""

    out_dir: Path  # run folder (history.csv, finetune_config.json, best/)
    history: pd.DataFrame  # one row per pass: epoch, step, lr, train_loss, val_* metrics, seconds
    best: dict = field(default_factory=dict)  # epoch and validation metrics of the kept model

    @property
    def checkpoint(self) -> Path:
        """The kept classifier checkpoint (load it with ``inference.load_classifier``)."""
        return self.out_dir / "best"


def drop_modalities(present: torch.Tensor, p: float, generator: torch.Generator, mode: str = "independent") -> torch.Tensor:
    """Modality dropout: the subset of ``present`` each window is trained on; keeps >= 1.

    Parameters
    ----------
    present : Tensor, shape (B, M), bool
        Which modalities each window has.
    p : float
        In [0, 1). ``mode="independent"``: drop probability per (window, modality).
        ``mode="size"``: probability that a window is thinned at all (the others keep everything).
    generator : torch.Generator
        CPU generator; the result is a function of its state.
    mode : {"independent", "size"}
        ``"independent"`` drops each modality on its own, so a window of n modalities keeps one
        alone with probability about ``n * p**(n-1) * (1-p)``: rare for n = 9. ``"size"`` draws the
        number kept uniformly from 1..n and then which ones uniformly, so every subset size,
        single modalities included, is trained as often as the full set.

    Returns
    -------
    Tensor, shape (B, M), bool
        A subset of ``present``; a row that had any modality keeps at least one (chosen
        uniformly among its present ones when all were dropped). Rows with none stay empty.
    """
    if mode == "size":
        n = present.sum(dim=1)  # (B,)
        k = (torch.rand(n.shape, generator=generator) * n).floor().long() + 1  # uniform in 1..n
        thin = torch.rand(n.shape, generator=generator) < p
        k = torch.where(thin, k, n)
        scores = torch.rand(present.shape, generator=generator).masked_fill(~present, -1.0)
        rank = scores.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = highest score
        return present & (rank < k[:, None])
    if mode != "independent":
        raise S2VError(f"unknown modality dropout mode {mode!r}; allowed: {', '.join(DROPOUT_MODES)}")
    keep = present & (torch.rand(present.shape, generator=generator) >= p)  # (B, M)
    empty = ~keep.any(dim=1) & present.any(dim=1)  # (B,)
    scores = torch.rand(present.shape, generator=generator).masked_fill(~present, -1.0)
    rescue = F.one_hot(scores.argmax(dim=1), present.shape[1]).bool() & empty[:, None]
    return keep | rescue


def collate_windows(items: list[dict], modalities: tuple[str, ...]) -> dict:
    """Stack :class:`WindowDataset` items for the classifier.

    Returns
    -------
    dict
        ``"inputs"``: {m: FloatTensor (B, T, spe)} for the modalities some window has
        (zeros where a window lacks it); ``"names"``: those modalities, canonical order;
        ``"present"``: BoolTensor (B, M) (at least one valid epoch in the window);
        ``"valid"``: BoolTensor (B, T), False on padding; ``"stages"``: LongTensor (B, T),
        -1 on padding and unscored epochs; ``"age"`` FloatTensor (B,) (NaN unknown),
        ``"sex"`` and ``"site"`` LongTensor (B,) (-1 unknown).
    """
    inputs = {}
    for m in modalities:
        xs = [it["inputs"].get(m) for it in items]
        if any(x is not None for x in xs):
            like = next(x for x in xs if x is not None)
            inputs[m] = torch.stack([torch.zeros_like(like) if x is None else x for x in xs])
    names = tuple(inputs)
    present = [[bool(m in it["valid"] and it["valid"][m].any()) for m in names] for it in items]
    return {
        "inputs": inputs,
        "names": names,
        "present": torch.tensor(present, dtype=torch.bool).reshape(len(items), len(names)),
        "valid": torch.stack([it["pad_valid"] for it in items]),
        "stages": torch.stack([it["stages"] for it in items]),
        "age": torch.tensor([it["age"] for it in items], dtype=torch.float32),
        "sex": torch.tensor([it["sex"] for it in items], dtype=torch.long),
        "site": torch.tensor([it["site"] for it in items], dtype=torch.long),
    }


def merge_targets(stages: torch.Tensor, n_classes: int) -> torch.Tensor:
    """5-class stage codes (-1 unscored) -> merged class indices ``0 .. n_classes - 1`` (-1 kept)."""
    table = torch.full((5,), -1, dtype=torch.long, device=stages.device)
    for k, group in enumerate(MERGE_GROUPS[n_classes]):
        table[list(group)] = k
    return torch.where(stages >= 0, table[stages.clamp(min=0)], torch.full_like(stages, -1))


def merged_log_probs(logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Log-probabilities of the merged classes: log of the summed stage probabilities, (..., n)."""
    logp = F.log_softmax(logits, dim=-1)
    return torch.stack([logp[..., list(g)].logsumexp(dim=-1) for g in MERGE_GROUPS[n_classes]], -1)


def staging_loss(
    logits: torch.Tensor,
    stages: torch.Tensor,
    *,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    n_classes: int = 5,
) -> torch.Tensor:
    """Cross-entropy over scored epochs: ``logits`` (B, T, 5), ``stages`` (B, T), -1 ignored.

    With ``n_classes`` 4 or 3 the loss is the cross-entropy of the merged class probabilities
    (:func:`merged_log_probs`) against the merged stages; ``class_weights`` then has one weight
    per merged class. Returns a zero that still carries a gradient when no epoch is scored.
    """
    if n_classes != 5:
        logits = merged_log_probs(logits, n_classes)  # log_softmax leaves these unchanged
        stages = merge_targets(stages, n_classes)
    flat = logits.reshape(-1, logits.shape[-1])  # (B*T, C)
    target = stages.reshape(-1)  # (B*T,)
    if not bool((target >= 0).any()):
        return flat.sum() * 0.0
    return F.cross_entropy(
        flat, target, weight=class_weights, ignore_index=-1, label_smoothing=label_smoothing
    )


def single_modality_loss(
    model: Sleep2VecClassifier,
    hidden: dict[str, torch.Tensor],
    present: dict[str, torch.Tensor],
    target: torch.Tensor,
    **options,
) -> torch.Tensor:
    """Mean over modalities of the staging loss of each modality staged alone.

    The backbone encodes every modality on its own and a single modality's gate weight is 1, so
    ``model.staging(hidden[m])`` is exactly what the classifier predicts from ``m`` alone: the
    shared head learns to stage from each modality while the main loss trains the mixture.

    Parameters
    ----------
    hidden : dict of str to Tensor, each (B, T, H)
        The backbone's states of the batch.
    present : dict of str to Tensor (B,) bool
        Which windows keep each modality; the others do not count for it.
    target : Tensor, shape (B, T)
        Stages, -1 where not scored.
    **options
        ``class_weights``, ``label_smoothing``, ``n_classes`` of :func:`staging_loss`.

    Returns
    -------
    Tensor
        Scalar; a zero that still carries a gradient when no modality has a scored epoch.
    """
    parts = []
    for m, h in hidden.items():
        t = target.masked_fill(~present[m][:, None], -1)
        if bool((t >= 0).any()):
            parts.append(staging_loss(model.staging(h), t, **options))
    if not parts:
        return sum(h.sum() for h in hidden.values()) * 0.0
    return torch.stack(parts).mean()


def train_step(
    model: Sleep2VecClassifier,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    keep: torch.Tensor,
    *,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    grad_clip: float = 1.0,
    night_loss: Callable[[torch.Tensor, dict], torch.Tensor] | None = None,
    n_classes: int = 5,
    single_loss: float = 0.0,
    single_loss_modalities: tuple[str, ...] = (),
) -> float:
    """One optimiser step on a :func:`collate_windows` batch with modalities ``keep`` (B, M).

    Windows left without any modality have their epochs ignored. With ``single_loss`` > 0 the
    loss adds ``single_loss`` times the mean over modalities of the staging loss of each kept
    modality alone (:func:`single_modality_loss`), over ``single_loss_modalities`` only when given.
    Returns the loss.
    """
    device = next(model.parameters()).device
    present = {m: keep[:, j].to(device) for j, m in enumerate(batch["names"])}
    valid = batch["valid"].to(device)
    hidden = model.backbone({m: x.to(device) for m, x in batch["inputs"].items()}, valid, present)
    out = model.heads(hidden, valid, present)
    usable = valid & keep.any(dim=1).to(device)[:, None]  # (B, T)
    target = batch["stages"].to(device).masked_fill(~usable, -1)  # (B, T)
    options = {"class_weights": class_weights, "label_smoothing": label_smoothing, "n_classes": n_classes}
    loss = staging_loss(out.stage_logits, target, **options)
    if single_loss > 0:
        counted = {m: h for m, h in hidden.items() if not single_loss_modalities or m in single_loss_modalities}
        if counted:
            loss = loss + single_loss * single_modality_loss(model, counted, present, target, **options)
    if night_loss is not None and out.night is not None:
        loss = loss + night_loss(out.night, batch)  # hook for night-level heads (age, sex, AHI)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return float(loss.detach())


def evaluate_windows(
    model: Sleep2VecClassifier,
    dataset: WindowDataset,
    *,
    batch_size: int = 16,
    modalities: tuple[str, ...] | None = None,
    n_classes: int = 5,
) -> dict:
    """Kappa, accuracy and macro-F1 over every scored epoch of ``dataset``.

    Parameters
    ----------
    modalities : tuple of str, optional
        Restrict the model to these (default: all each window has).
    n_classes : {5, 4, 3}
        Score the 5 stages, or the merged classes predicted from summed probabilities.

    Returns
    -------
    dict
        ``kappa``, ``accuracy``, ``macro_f1`` (NaN without scored epochs), ``n_epochs``.
    """
    device = next(model.parameters()).device
    use = tuple(m for m in model.config.modalities if modalities is None or m in modalities)
    was_training = model.training
    model.eval()
    refs, preds = [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            idx = range(start, min(len(dataset), start + batch_size))
            b = collate_windows([dataset[i] for i in idx], use)
            if not b["names"]:
                continue
            present = {m: b["present"][:, j].to(device) for j, m in enumerate(b["names"])}
            out = model(
                {m: x.to(device) for m, x in b["inputs"].items()}, b["valid"].to(device), present
            )
            ok = b["valid"] & (b["stages"] >= 0) & b["present"].any(dim=1)[:, None]  # (B, T)
            refs.append(b["stages"][ok].numpy())
            if n_classes == 5:
                pred = out.stage_logits.argmax(-1).cpu()
            else:  # most probable merged class, written as its representative stage code
                merged = merged_log_probs(out.stage_logits.float(), n_classes).argmax(-1).cpu()
                pred = torch.tensor(REPRESENTATIVE_STAGE[n_classes])[merged]
            preds.append(pred[ok].numpy())
    model.train(was_training)
    ref = np.concatenate(refs) if refs else np.zeros(0, int)
    if ref.size == 0:
        return {"kappa": math.nan, "accuracy": math.nan, "macro_f1": math.nan, "n_epochs": 0}
    m = staging_metrics(ref, np.concatenate(preds), n_classes=n_classes)
    return {
        "kappa": m.kappa,
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
        "n_epochs": m.n_epochs,
    }


def data_summary(store: CohortStore, datasets: dict[str, WindowDataset]) -> dict:
    """JSON-ready description of the training data: nights, windows, stages, modalities, sites."""
    out: dict = {"store": str(store.path), "splits": {}}
    for split, ds in datasets.items():
        nights = store.nights(split)
        stages = np.concatenate([np.load(store.folder(n) / "stages.npy") for n in nights] or [[]])
        counts = np.bincount(stages[stages >= 0].astype(int), minlength=5)
        out["splits"][split] = {
            "nights": len(nights),
            "windows": len(ds),
            "scored_epochs": {s: int(c) for s, c in zip(STAGE_NAMES, counts, strict=True)},
            "windows_with": {
                m: int(c) for m, c in zip(MODALITIES, ds.presence().sum(axis=0), strict=True)
            },
            "sites": sorted({str(store.entry(n).site) for n in nights}),
        }
    return out


def labelled_epochs(store: CohortStore, split: str | None = None,
                    nights: Iterable[str] | None = None) -> int:  # fmt: skip
    """Scored epochs (stage >= 0) of ``nights`` (default: every night of ``split``, or of the store).

    Read from each night's ``stages.npy`` (memory-mapped), so stores prepared before the manifest
    had a ``labelled_epochs`` column, and combined stores, are counted too.
    """
    chosen = store.nights(split) if nights is None else list(nights)
    return sum(int(np.count_nonzero(np.load(store.folder(n) / "stages.npy", mmap_mode="r") >= 0))
               for n in chosen)  # fmt: skip


def refuse_unlabelled(store: CohortStore, split: str | None, what: str,
                      nights: Iterable[str] | None = None) -> None:  # fmt: skip
    """Raise :class:`S2VError` when the nights have no labelled epoch (before anything is built).

    A store prepared without its hypnograms has every stage unscored: training on it used to run
    to the end with a loss of 0 and a NaN kappa, and save a model that learned nothing.
    """
    chosen = store.nights(split) if nights is None else list(nights)
    if not chosen or labelled_epochs(store, nights=chosen) > 0:  # no night at all: said elsewhere
        return
    where = f"the {split} split" if split else "the store"
    raise S2VError(
        f"{what}: {where} has no labelled epoch ({len(chosen)} night(s), every epoch unscored); "
        "prepare the store with each recording's hypnogram (hypnogram_file in metadata.csv, or "
        "NAME-Hypnogram.edf/NAME.xml/NAME.csv next to NAME.edf)"
    )


def class_weights_from_counts(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights, one per class of ``counts``, mean 1, clipped to :data:`CLASS_WEIGHT_RANGE`."""
    c = np.asarray(counts, dtype=np.float64)
    w = c.sum() / np.maximum(c, 1.0)
    w = np.clip(w / w.mean(), *CLASS_WEIGHT_RANGE)
    return (w / w.mean()).astype(np.float32)


def build_model(cfg: FinetuneConfig, pretrained: str | Path | None) -> Sleep2VecClassifier:
    """A classifier on a pretrained backbone (tokenizers + encoder copied) or on ``cfg.preset``.

    ``pretrained`` may be a pretraining checkpoint or a classifier one (its backbone is used;
    with ``cfg.init_head`` its gates and staging head too).
    """
    head = HeadConfig(per_epoch_gate=cfg.per_epoch_gate, freeze_tokenizers=cfg.freeze_tokenizers)
    if pretrained is None:
        if cfg.init_head:
            raise S2VError("init_head needs a classifier checkpoint to start from (pretrained)")
        try:
            mcfg = get_preset(cfg.preset, **cfg.model_overrides)
        except (TypeError, ValueError) as exc:
            raise S2VError(f"finetune model_overrides: {exc}") from None
        return Sleep2VecClassifier(mcfg, head, seed=cfg.seed)
    backbone, mcfg, _ = load_checkpoint(pretrained)
    if isinstance(backbone, Sleep2VecClassifier) and cfg.init_head:
        return _whole_classifier(backbone, cfg, pretrained)
    if cfg.init_head:
        raise S2VError(
            f"{pretrained}: init_head needs a classifier checkpoint (s2v finetune output); "
            "this is a pretrained encoder without a staging head"
        )
    if isinstance(backbone, Sleep2VecClassifier):  # start again from a fine-tuned encoder
        backbone = backbone.backbone
    model = Sleep2VecClassifier(mcfg, head, seed=cfg.seed)
    try:
        model.load_backbone(backbone)
    except ValueError as err:
        raise S2VError(f"{pretrained}: {err}") from None
    return model


def _whole_classifier(
    clf: Sleep2VecClassifier, cfg: FinetuneConfig, source: str | Path
) -> Sleep2VecClassifier:
    """A trainable copy of ``clf`` (backbone, gates, heads), tokenizers frozen as ``cfg`` says."""
    hc = clf.head_config
    if hc.per_epoch_gate != cfg.per_epoch_gate:
        raise S2VError(
            f"{source}: the classifier has per_epoch_gate={hc.per_epoch_gate}, the fine-tuning "
            f"config asks for {cfg.per_epoch_gate}; they must agree with init_head"
        )
    head = HeadConfig(**{**hc.to_dict(), "freeze_tokenizers": cfg.freeze_tokenizers})
    model = Sleep2VecClassifier(clf.config, head, seed=cfg.seed)
    model.load_state_dict(clf.state_dict(), strict=True)
    model.set_tokenizers_trainable(not cfg.freeze_tokenizers)
    return model


def finetune(
    store_path: str | Path,
    out_dir: str | Path,
    cfg: FinetuneConfig | None = None,
    *,
    pretrained: str | Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    night_loss: Callable[[torch.Tensor, dict], torch.Tensor] | None = None,
    overwrite: bool = False,
    extra: dict | None = None,
) -> FinetuneResult:
    """Fine-tune a staging classifier on the store's "train" windows; keep the best by val kappa.

    Parameters
    ----------
    store_path : path
        Cohort store (``prepare_store``) with train (and ideally val) nights.
    out_dir : path
        Receives ``finetune_config.json``, ``history.csv`` and ``best/`` (classifier checkpoint;
        its ``extra`` holds the config, validation metrics, data summary and class names).
    cfg : FinetuneConfig, optional
    pretrained : path, optional
        Pretrained checkpoint folder; without it the backbone is built from ``cfg.preset``.
    on_epoch : callable, optional
        Called with each history row (dict) after validation.
    night_loss : callable, optional
        Hook for night-level heads: ``night_loss(night_outputs (B, K), batch) -> scalar``,
        added to the staging loss when the model has a night head (``batch`` carries age, sex
        and site). Unused by the staging-only model built here.
    overwrite : bool
        Replace the run already in ``out_dir`` (its ``best/`` and history.csv); without it
        such a folder is refused. ``out_dir`` is locked while the run writes into it.
    extra : dict, optional
        More JSON-ready entries for the checkpoint's ``extra`` (e.g. the adaptation stage's
        ``training_recordings``); the entries this function writes itself cannot be replaced.

    Returns
    -------
    FinetuneResult
        Without validation windows, the last pass is kept.

    Notes
    -----
    Deterministic for a given seed on CPU; the global torch RNG state is left untouched.
    """
    cfg = cfg or FinetuneConfig()
    out = Path(out_dir)
    store = CohortStore(store_path)
    refuse_unlabelled(store, "train", f"{Path(store_path).name}: nothing to fine-tune on")
    device = resolve_device(cfg.device)
    with FolderLock(out, "s2v finetune"), torch.random.fork_rng(devices=[]):
        _open_finetune_folder(out, overwrite)
        torch.manual_seed(cfg.seed)  # weight init of new parts, dropout inside the model
        model = build_model(cfg, pretrained).to(device)
        spec = {"raw": model.config.reads_samples, "features": model.config.features}
        sets = {s: WindowDataset(store, s, window_epochs=cfg.window_epochs, feature_crops=cfg.feature_crops and s == "train",
                                 crop_seed=cfg.seed, **spec) for s in ("train", "val")}  # fmt: skip
        if len(sets["train"]) == 0:
            raise S2VError(f"{store_path}: the train split has no windows; nothing to fine-tune on")
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "finetune_config.json", json.dumps(asdict(cfg), indent=1) + "\n")
        run = _FinetuneRun(cfg, model, store, sets, device, night_loss, extra)
        rows: list[dict] = []
        best: dict = {}
        for epoch in range(1, cfg.epochs + 1):
            row, metrics = run.one_pass(epoch)
            rows.append(row)
            log.info("pass %d: loss %.4f, val kappa %.3f", epoch, row["train_loss"], metrics["kappa"])
            if _better(metrics["kappa"], best.get("kappa")):
                best = {"epoch": epoch, **metrics}
                run.save(out / "best", best, epoch, row["step"], pretrained)
            frame = pd.DataFrame(rows)
            write_atomic(out / "history.csv", lambda tmp, f=frame: to_csv(f, tmp, index=False))
            if on_epoch is not None:
                on_epoch(row)
            if cfg.patience is not None and len(sets["val"]) and epoch - best["epoch"] >= cfg.patience:
                log.info("no better val kappa for %d passes: stopping early", cfg.patience)
                break
    return FinetuneResult(out, pd.DataFrame(rows), best)


def _open_finetune_folder(out: Path, overwrite: bool) -> None:
    """Repair an interrupted swap of ``best/``; refuse (or, with ``overwrite``, clear) a previous run."""
    recover_dir(out / "best")
    found = [f"{p.name}/" for p in dir_copies(out / "best")]
    if not found:
        return
    if not overwrite:
        raise S2VError(
            f"{out} already holds a fine-tuning run ({', '.join(found)}); choose another folder, "
            "or pass --overwrite to replace it"
        )
    remove_dir_and_copies(out / "best")
    (out / "history.csv").unlink(missing_ok=True)
    log.warning("%s: --overwrite: deleted the previous fine-tuning run", out)


class _FinetuneRun:
    """The optimiser, the window order and one pass of fine-tuning (split from :func:`finetune`)."""

    def __init__(self, cfg: FinetuneConfig, model: Sleep2VecClassifier, store: CohortStore,
                 sets: dict[str, WindowDataset], device: torch.device, night_loss, extra: dict | None = None) -> None:  # fmt: skip
        self.cfg, self.model, self.device = cfg, model, device
        self.train, self.val = sets["train"], sets["val"]
        self.summary = data_summary(store, sets)
        weights = None
        if cfg.class_weighted:
            counts = [self.summary["splits"]["train"]["scored_epochs"][s] for s in STAGE_NAMES]
            merged = [sum(counts[c] for c in g) for g in MERGE_GROUPS[cfg.n_classes]]
            weights = torch.from_numpy(class_weights_from_counts(np.array(merged))).to(device)
        self.step_options = {"class_weights": weights, "label_smoothing": cfg.label_smoothing,
                             "grad_clip": cfg.grad_clip, "night_loss": night_loss, "n_classes": cfg.n_classes,
                             "single_loss": float(cfg.single_loss),
                             "single_loss_modalities": cfg.single_loss_modalities}  # fmt: skip
        self.window_weights = _window_weights(store, self.train, cfg.site_weights)
        self.ranges = _feature_ranges(self.train) if model.config.features else None
        self.extra = dict(extra or {})  # the caller's checkpoint entries (finetune's ``extra``)
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
        self.gen = torch.Generator().manual_seed(cfg.seed)  # window order and modality dropout
        n_batches = math.ceil(len(self.train) / cfg.batch_size)
        self.n_batches = min(n_batches, cfg.max_batches_per_epoch or n_batches)
        self.total = self.n_batches * cfg.epochs
        self.selection = (f"best val kappa ({cfg.n_classes}-class), all modalities" if len(self.val)
                          else "last pass (no val windows)")  # fmt: skip

    def _order(self) -> list[int]:
        if self.window_weights is None:
            return torch.randperm(len(self.train), generator=self.gen).tolist()
        return torch.multinomial(self.window_weights, len(self.train), replacement=True, generator=self.gen).tolist()

    def one_pass(self, epoch: int) -> tuple[dict, dict]:
        """Train on ``n_batches`` batches, then validate; returns the history row and the metrics."""
        cfg, model = self.cfg, self.model
        model.train()
        t0, losses = time.perf_counter(), []
        order = self._order()
        for b in range(self.n_batches):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = collate_windows([self.train[i] for i in idx], model.config.modalities)
            keep = drop_modalities(batch["present"], cfg.modality_dropout, self.gen, cfg.dropout_mode)
            step = (epoch - 1) * self.n_batches + b
            lr = lr_at(step, self.total, cfg.lr, warmup_fraction=cfg.warmup_fraction)
            for g in self.opt.param_groups:
                g["lr"] = lr
            losses.append(train_step(model, batch, self.opt, keep, **self.step_options))
        metrics = evaluate_windows(model, self.val, batch_size=cfg.batch_size, n_classes=cfg.n_classes)
        row = {"epoch": epoch, "step": epoch * self.n_batches, "lr": lr, "train_loss": float(np.mean(losses)),
               **{f"val_{k}": v for k, v in metrics.items()}, "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
        return row, metrics

    def save(self, folder: Path, best: dict, epoch: int, step: int, pretrained) -> None:
        """Write the current model as the kept checkpoint, with what it was trained on."""
        extra = {
            "finetune_config": asdict(self.cfg),
            "metrics": _json_safe(best),
            "epoch": epoch,
            "pretrained": str(pretrained) if pretrained else None,
            "data": self.summary,
            "class_names": list(STAGE_NAMES),
            "selection": self.selection,
        }
        if self.ranges is not None:
            extra["feature_ranges"] = self.ranges
        extra = {**self.extra, **extra}  # the caller's entries never replace these
        with staged_dir(folder) as tmp:  # swapped in whole; a failure keeps the previous best/
            save_checkpoint(tmp, self.model, self.model.config, extra=extra, step=step)


def _feature_ranges(train: WindowDataset) -> dict:
    """Training ranges of the per-night feature medians (:func:`~s2v_core.inference.familiarity.training_ranges`)."""
    medians: dict[str, list[np.ndarray]] = {}
    for k in range(len(train.night_ids)):
        for m in train.present(k):
            raw = train.raw_features(k, m)
            ok = np.isfinite(raw).any(axis=1)
            if ok.sum() >= 10:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a feature never defined in this night
                    medians.setdefault(m, []).append(np.nanmedian(raw[ok], axis=0))
    return training_ranges(medians)


def _window_weights(store: CohortStore, train: WindowDataset, site_weights: dict) -> torch.Tensor | None:
    """Sampling weight of each training window from its night's site (None: uniform, no weights)."""
    if not site_weights:
        return None
    sites = np.array([store.entry(n).site or "" for n in train.night_ids], dtype=object)
    per_night = np.array([float(site_weights.get(s, 1.0)) for s in sites])
    return torch.from_numpy(per_night[train.window_night_index]).double()


def _better(score: float, best: float | None) -> bool:
    """True for the first pass, then when ``score`` beats ``best`` (all NaN: keep the latest)."""
    if best is None:
        return True
    if math.isnan(score):
        return math.isnan(best)
    return math.isnan(best) or score > best


def _json_safe(d: dict) -> dict:
    """NaN -> None so metrics can go into JSON."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
