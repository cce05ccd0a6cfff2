"""Embeddings of a night: fused classifier states, pretrained backbone states, one vector per night.

* **fused** embeddings of a fine-tuned classifier: the gated fusion of the modalities' encoder
  states, i.e. the staging head's input (:func:`embed_night`, :func:`embed_one`).
* **backbone** embeddings of a *pretrained* encoder (DASH-InfoNCE or plain InfoNCE): each
  available modality goes through the shared encoder on its own (as in pretraining, without
  token masking and before the projection head); the embedding of a 30-s epoch is the **mean
  of the encoder's output states over the modalities that have a valid signal at that epoch**
  (:func:`backbone_epoch_embeddings`). Epochs where no modality is valid get NaN.
* **night** embeddings: :func:`pool_epochs`, the one pooling every night-level use shares (the
  mean over the epochs with at least one valid modality, optionally with the standard deviation).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from s2v_core.errors import S2VError
from s2v_core.inference.predict import (
    MAX_WINDOWS_PER_PASS,
    WINDOW_EPOCHS,
    input_spec,
    night_windows,
    predict_night,
    refuse_non_finite,
    resolve_subset,
)
from s2v_core.io.atomic import readable_dir
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.model.checkpoint import load_checkpoint
from s2v_core.night import Night

__all__ = [
    "EMB_PREFIX",
    "POOLINGS",
    "backbone_epoch_embeddings",
    "embed_night",
    "embed_one",
    "embedding_columns",
    "epoch_embeddings",
    "load_backbone",
    "night_info",
    "pool_epochs",
    "sample_epochs",
]

EMB_PREFIX = "emb_"
"""Embedding columns of every table this package writes are ``emb_0 .. emb_{H-1}``."""

POOLINGS: tuple[str, ...] = ("mean", "mean+std")
"""How :func:`pool_epochs` turns epoch embeddings into one night vector."""


def pool_epochs(
    epoch_embeddings: np.ndarray, coverage: np.ndarray | None = None, pooling: str = "mean"
) -> np.ndarray:
    """One vector per night from its per-epoch embeddings ``(n_epochs, H)``.

    Epochs with a non-finite embedding (a backbone's epochs without any valid modality) are left
    out; so are epochs where no used modality is valid (``coverage == 0``), unless every epoch is
    uncovered.

    Parameters
    ----------
    epoch_embeddings : np.ndarray, shape (n_epochs, H)
    coverage : np.ndarray, shape (n_epochs,), optional
        Number of used modalities valid at each epoch.
    pooling : str
        ``"mean"`` -> ``(H,)``; ``"mean+std"`` -> ``(2 H,)``, the mean then the standard deviation.

    Raises
    ------
    S2VError
        No epoch to pool, or an unknown ``pooling``.
    """
    if pooling not in POOLINGS:
        raise S2VError(f"unknown pooling {pooling!r}; allowed: {', '.join(POOLINGS)}")
    emb = np.asarray(epoch_embeddings, dtype=np.float32)
    keep = np.isfinite(emb).all(axis=1)
    if coverage is not None:
        covered = keep & (np.asarray(coverage) > 0)
        if covered.any():
            keep = covered
    emb = emb[keep]
    if len(emb) == 0:
        raise S2VError("cannot embed a night without epochs")
    mean = emb.mean(axis=0).astype(np.float32)
    if pooling == "mean":
        return mean
    return np.concatenate([mean, emb.std(axis=0)]).astype(np.float32)


def embedding_columns(frame: pd.DataFrame) -> list[str]:
    """``emb_0 .. emb_{D-1}`` columns of ``frame``, in numeric order."""
    n = len(EMB_PREFIX)
    cols = [c for c in frame.columns if c.startswith(EMB_PREFIX) and c[n:].isdigit()]
    return sorted(cols, key=lambda c: int(c[n:]))


def embed_night(
    model: Any,
    night: Night,
    modalities: tuple[str, ...] | None = None,
    *,
    window_epochs: int = WINDOW_EPOCHS,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Fused embeddings of a night (the staging head's input).

    Returns
    -------
    epoch_embeddings : np.ndarray, shape (n_epochs, H), float32
        Gated fusion of the used modalities' encoder states, one row per 30-s epoch.
    night_embedding : np.ndarray, shape (H,), float32
        Mean over the epochs with at least one valid used modality (:func:`pool_epochs`).
    """
    pred = predict_night(
        model, night, modalities, window_epochs=window_epochs, device=device, with_embeddings=True
    )
    return pred.embeddings, pool_epochs(pred.embeddings, pred.coverage)


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


def embed_one(
    model, night, info: dict, subset: tuple[str, ...] | None, device: str = "cpu"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-epoch frame and the one-row per-night frame of one night.

    Shared by the serial ``s2v embed`` and its Dask workers
    (:func:`s2v_core.cohort.embed.embed_store_night`), so both write the same tables.

    Raises
    ------
    S2VError
        The night lacks the requested modalities (or any the model knows).
    """
    pred = predict_night(model, night, subset, device=device, with_embeddings=True)
    epochs, pooled = pred.embeddings, pool_epochs(pred.embeddings, pred.coverage)
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


def load_backbone(path: str | Path, *, device: str = "cpu") -> Any:
    """Load a pretrained sleep2vec backbone (``s2v pretrain`` output, e.g. ``RUN/best``).

    Raises
    ------
    S2VError
        Missing folder, unreadable checkpoint, or a classifier checkpoint instead of a
        pretrained encoder.
    """
    folder = Path(path)
    if not readable_dir(folder).is_dir():  # a run killed mid-swap of best/ still has a whole copy
        raise S2VError(f"{folder}: no such folder (a pretrained checkpoint folder is needed)")
    model, _, _ = load_checkpoint(folder, device=device)
    if hasattr(model, "fusion"):
        raise S2VError(
            f"{folder.name}: this is a fine-tuned classifier, not a pretrained backbone; "
            "use its fused embeddings (epoch_embeddings works with both)"
        )
    return model.eval()


def backbone_epoch_embeddings(
    model: Any,
    night: Night,
    modalities: tuple[str, ...] | None = None,
    *,
    window_epochs: int = WINDOW_EPOCHS,
    max_windows: int = MAX_WINDOWS_PER_PASS,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Per-epoch backbone embeddings: encoder states averaged over the valid modalities.

    Parameters
    ----------
    model : Sleep2Vec
        A pretrained backbone (:func:`load_backbone`), on the CPU.
    night : Night
    modalities : tuple of str, optional
        Modalities to pool (default: all the night and the model share).
    window_epochs : int
        Tokens per encoder window (120, the pretraining length).
    max_windows : int
        Windows per forward pass.

    Returns
    -------
    embeddings : np.ndarray, shape (n_epochs, H), float32
        NaN rows where no used modality is valid.
    coverage : np.ndarray, shape (n_epochs,), int8
        Number of used modalities valid at each epoch.
    used : tuple of str
        The modalities used, canonical order.
    """
    subset = resolve_subset(model, night, modalities)
    inputs, pad_valid, present, valid = night_windows(night, subset, window_epochs, **input_spec(model))
    n = night.n_epochs
    hidden_size = int(model.config.hidden)
    total = np.zeros((n, hidden_size), dtype=np.float64)
    count = np.zeros(n, dtype=np.int64)
    with torch.inference_mode():
        for s in range(0, len(pad_valid), max(1, max_windows)):
            sl = slice(s, s + max(1, max_windows))
            x = {m: torch.from_numpy(v[sl]) for m, v in inputs.items()}
            p = {m: torch.from_numpy(v[sl]) for m, v in present.items()}
            hidden = model.encode(x, torch.from_numpy(pad_valid[sl]), p)  # {m: (w, T, H)}
            first = s * window_epochs
            for m in subset:
                h = hidden[m].float().numpy().reshape(-1, hidden_size)  # (w * T, H)
                rows = slice(first, min(n, first + len(h)))
                ok = valid[m][rows]
                total[rows][ok] += h[: rows.stop - rows.start][ok]
                count[rows] += ok
    emb = np.full((n, hidden_size), np.nan, dtype=np.float32)
    covered = count > 0
    emb[covered] = (total[covered] / count[covered, None]).astype(np.float32)
    refuse_non_finite(emb[covered], "backbone embeddings")  # NaN only where no modality is valid
    return emb, count.astype(np.int8), subset


def epoch_embeddings(
    model: Any, night: Night, modalities: tuple[str, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Per-epoch embeddings of a backbone (pooled states) or a classifier (fused states).

    Returns
    -------
    embeddings : np.ndarray, shape (n_epochs, H), float32
        For a backbone, NaN rows where no used modality is valid; for a classifier the fused
        state of every epoch (uncovered epochs are flagged by ``coverage == 0``).
    coverage : np.ndarray, shape (n_epochs,), int8
    used : tuple of str
    """
    if hasattr(model, "fusion"):
        pred = predict_night(model, night, modalities, with_embeddings=True)
        return pred.embeddings, pred.coverage, pred.modalities
    return backbone_epoch_embeddings(model, night, modalities)


def sample_epochs(
    stages: np.ndarray, eligible: np.ndarray, n_max: int = 60, seed: int = 0
) -> np.ndarray:
    """Pick at most ``n_max`` eligible epochs of a night, stratified by stage.

    Each scored stage present gets a share proportional to its epoch count (largest
    remainders), but at least one epoch, so rare stages (N1, REM) stay visible.
    Unscored epochs (stage -1) are never picked.

    Parameters
    ----------
    stages : np.ndarray, shape (n_epochs,)
        Stage codes W=0 .. REM=4, unscored -1.
    eligible : np.ndarray, shape (n_epochs,), bool
        Epochs that may be chosen (e.g. with a valid embedding).
    n_max : int
        Upper bound on the number of epochs returned.
    seed : int
        Seed of the random choice within each stage.

    Returns
    -------
    np.ndarray of int
        Sorted epoch indices.
    """
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    stages = np.asarray(stages)
    ok = np.asarray(eligible, dtype=bool) & (stages >= 0)
    codes, counts = np.unique(stages[ok], return_counts=True)
    if counts.sum() <= n_max:
        return np.flatnonzero(ok)
    share = counts / counts.sum() * n_max
    alloc = np.maximum(np.floor(share).astype(int), 1)
    while alloc.sum() > n_max:  # the minimum of one per stage overshot: trim the largest
        alloc[np.argmax(alloc)] -= 1
    for j in np.argsort(-(share - np.floor(share))):  # hand out what is left, largest remainder
        if alloc.sum() >= n_max:
            break
        if alloc[j] < counts[j]:
            alloc[j] += 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(ok & (stages == c)), size=min(a, k), replace=False)
        for c, a, k in zip(codes, alloc, counts, strict=True)
    ]
    return np.sort(np.concatenate(picked))
