"""Embedding maps: per-epoch and per-night embeddings, 2-D projections and the site shortcut.

Three kinds of embedding feed the app's Embedding map page:

* **backbone** embeddings of a *pretrained* encoder (DASH-InfoNCE or plain InfoNCE): each
  available modality goes through the shared encoder on its own (as in pretraining, without
  token masking and before the projection head); the embedding of a 30-s epoch is the **mean
  of the encoder's output states over the modalities that have a valid signal at that epoch**
  (:func:`backbone_epoch_embeddings`). Epochs where no modality is valid get NaN.
* **fused** embeddings of the fine-tuned classifier: the gated fusion of the modalities'
  states, i.e. the staging head's input (:func:`s2v_core.inference.predict.predict_night`).
* **night** embeddings: the mean of a night's epoch embeddings over the epochs with at least
  one valid modality (:func:`s2v_core.inference.predict.night_embedding`).

:func:`project` maps embeddings to 2-D with UMAP, t-SNE or PCA; UMAP and PCA place new points
into an existing map (``transform``), t-SNE has no out-of-sample map, so new points are
placed by a joint re-fit. :func:`site_score` measures how well the recording site can be
decoded from embeddings (lower is better), with confidence intervals over folds and repeated
splits. The shipped cohort embeddings (``models/sleep2vec-small/embeddings``, written by
``scripts/export_cohort_embeddings.py``) are read with :func:`load_shipped`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import S2VError
from s2v_core.evaluation.shortcut import mean_ci_over_seeds, site_probe
from s2v_core.inference.predict import (
    MAX_WINDOWS_PER_PASS,
    WINDOW_EPOCHS,
    night_embedding,
    night_windows,
    predict_night,
    resolve_subset,
)
from s2v_core.night import Night

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIR = REPO_ROOT / "models" / "sleep2vec-small" / "embeddings"
"""Where the shipped cohort embeddings live."""

MODEL_KEYS: tuple[str, ...] = ("dash", "infonce", "classifier")
"""Models of the shipped embeddings: the two pretrained backbones and the shipped classifier."""

MODEL_LABELS: dict[str, str] = {
    "dash": "DASH-InfoNCE backbone",
    "infonce": "plain InfoNCE backbone",
    "classifier": "shipped classifier (fused)",
}

METHODS: tuple[str, ...] = ("umap", "tsne", "pca")
"""Projection methods of :func:`project`."""

LEVELS: tuple[str, ...] = ("nights", "epochs")
"""Tables of the shipped embeddings: one row per night, or a stage-stratified epoch sample."""

META_COLUMNS: dict[str, tuple[str, ...]] = {
    "nights": ("model", "night", "subject", "site", "age", "sex", "split", "n_epochs", "modalities"),
    "epochs": ("model", "night", "subject", "site", "age", "sex", "split", "epoch", "stage",
               "modalities"),
}  # fmt: skip
"""Metadata columns each shipped table must have (besides ``emb_*`` and ``<method>_x/_y``)."""

EMB_PREFIX = "emb_"


# --- embeddings of one night ------------------------------------------------------------------
def load_backbone(path: str | Path, *, device: str = "cpu") -> Any:
    """Load a pretrained sleep2vec backbone (``s2v pretrain`` output, e.g. ``RUN/best``).

    Raises
    ------
    S2VError
        Missing folder, unreadable checkpoint, or a classifier checkpoint instead of a
        pretrained encoder.
    """
    from s2v_core.model.checkpoint import load_checkpoint

    folder = Path(path)
    if not folder.is_dir():
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
    import torch

    subset = resolve_subset(model, night, modalities)
    inputs, pad_valid, present, valid = night_windows(night, subset, window_epochs)
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


def night_vector(embeddings: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Night embedding ``(H,)``: mean over covered epochs (see ``inference.night_embedding``)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    cov = np.asarray(coverage)
    finite = np.isfinite(emb).all(axis=1)
    return night_embedding(emb[finite], cov[finite])


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


# --- projection -------------------------------------------------------------------------------
@dataclass
class Projection:
    """A 2-D map of embeddings.

    Attributes
    ----------
    coords : np.ndarray, shape (n, 2)
        Map coordinates of the fitted points.
    method : str
        "umap", "tsne" or "pca".
    seed : int
    new_coords : np.ndarray, shape (m, 2), optional
        Coordinates of the ``new`` points given to :func:`project`.
    """

    coords: np.ndarray
    method: str
    seed: int
    new_coords: np.ndarray | None = None
    _scaler: Any = field(default=None, repr=False)
    _reducer: Any = field(default=None, repr=False)

    def transform(self, points: Any) -> np.ndarray:
        """Place new points ``(m, d)`` into this map (UMAP and PCA only).

        Raises
        ------
        S2VError
            For t-SNE, which cannot place new points: call ``project(X, "tsne", new=points)``.
        """
        if self.method == "tsne" or self._reducer is None:
            raise S2VError(
                "t-SNE cannot place new points into an existing map; re-fit with "
                "project(X, method='tsne', new=points)"
            )
        y = _as_matrix(points, "points", min_rows=1)
        if y.shape[1] != self._scaler.n_features_in_:
            raise S2VError(
                f"points have {y.shape[1]} dimensions, the map was fitted on "
                f"{self._scaler.n_features_in_}"
            )
        return np.asarray(self._reducer.transform(self._scaler.transform(y)), dtype=np.float32)


def _as_matrix(x: Any, name: str, min_rows: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise S2VError(f"{name} must be a 2-D array (n, d), got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise S2VError(f"{name} needs at least {min_rows} rows, got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise S2VError(f"{name} contain NaN or infinite values; drop those rows first")
    return a


def project(
    embeddings: Any,
    method: str = "umap",
    seed: int = 0,
    *,
    new: Any = None,
    n_neighbors: int = 15,
    perplexity: float = 30.0,
) -> Projection:
    """Project embeddings to 2-D (features standardised on the fitted points first).

    Parameters
    ----------
    embeddings : array_like, shape (n, d)
        Points defining the map (n >= 5).
    method : {"umap", "tsne", "pca"}
    seed : int
        Random state of the method (UMAP and t-SNE are then reproducible).
    new : array_like, shape (m, d), optional
        Extra points to place: UMAP and PCA fit on ``embeddings`` and transform ``new``;
        t-SNE fits ``embeddings`` and ``new`` jointly (so the map itself depends on them).
    n_neighbors : int
        UMAP neighbourhood size (lowered for tiny inputs).
    perplexity : float
        t-SNE perplexity (lowered for tiny inputs).

    Returns
    -------
    Projection

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> p = project(x, "pca", new=x[:3])
    >>> p.coords.shape, p.new_coords.shape
    ((50, 2), (3, 2))
    """
    from sklearn.preprocessing import StandardScaler

    if method not in METHODS:
        raise S2VError(f"unknown projection method {method!r}; allowed: {', '.join(METHODS)}")
    x = _as_matrix(embeddings, "embeddings", min_rows=5)
    y = None if new is None else _as_matrix(new, "new points", min_rows=1)
    if y is not None and y.shape[1] != x.shape[1]:
        raise S2VError(f"new points have {y.shape[1]} dimensions, embeddings have {x.shape[1]}")
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        both = xs if y is None else np.vstack([xs, scaler.transform(y)])
        perp = float(min(perplexity, max(2.0, (len(both) - 1) / 3.0)))
        tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
        out = tsne.fit_transform(both).astype(np.float32)
        return Projection(out[: len(x)], method, seed, None if y is None else out[len(x):])
    if method == "pca":
        from sklearn.decomposition import PCA

        reducer: Any = PCA(n_components=2, random_state=seed).fit(xs)
    else:
        import umap  # imported late: umap/numba take seconds to import

        reducer = umap.UMAP(
            n_components=2, n_neighbors=int(min(n_neighbors, len(x) - 1)), random_state=seed,
            n_jobs=1,
        ).fit(xs)  # fmt: skip
    coords = np.asarray(
        reducer.embedding_ if method == "umap" else reducer.transform(xs), dtype=np.float32
    )
    proj = Projection(coords, method, seed, None, scaler, reducer)
    if y is not None:
        proj.new_coords = proj.transform(y)
    return proj


# --- site shortcut ----------------------------------------------------------------------------
def _t_interval(values: list[float], level: float) -> tuple[float, float]:
    _, lo, hi = mean_ci_over_seeds(values, level)
    return lo, hi


def site_score(
    embeddings: Any,
    sites: Any,
    *,
    groups: Any = None,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    n_splits: int = 5,
    method: str = "logistic",
    level: float = 0.95,
) -> dict[str, Any]:
    """Site-probe balanced accuracy over repeated cross-validation, with confidence intervals.

    The probe (:func:`s2v_core.evaluation.shortcut.site_probe`: standardised features, then
    logistic regression, subject-grouped stratified folds when ``groups`` is given) runs once
    per seed of the fold shuffling. Lower is better: a site-invariant embedding scores at
    chance. Two embeddings scored on the same rows (same ``sites``, ``groups`` and seeds) get
    the same folds, so :func:`paired_difference` can compare them fold by fold.

    Returns
    -------
    dict
        ``balanced_accuracy``: mean over folds, averaged over the repeats;
        ``ci_folds``: Student-t interval over one repeat's folds (how much the score moves
        between held-out subjects), bounds averaged over the repeats and clipped to [0, 1];
        ``ci_repeats``: t-interval over the repeats' means (split-to-split variation only);
        ``pooled_balanced_accuracy``: all out-of-fold predictions scored together (mean over
        repeats; lower than the fold mean when a fold misses a rare site);
        ``chance`` (1 / n_sites); ``shortcut_score`` = (balanced_accuracy - chance) /
        (1 - chance) and ``shortcut_ci_folds``; ``fold_scores`` (per repeat, per fold);
        ``folds_id`` (identifies the folds); ``n_samples``, ``n_sites``, ``n_splits``,
        ``n_repeats``, ``method``, ``level``.
    """
    import hashlib

    try:
        runs = [
            site_probe(embeddings, sites, groups=groups, method=method, n_splits=n_splits, seed=s)
            for s in seeds
        ]
    except ValueError as exc:
        raise S2VError(f"site score: {exc}") from None
    if not runs:
        raise S2VError("site score needs at least one seed")
    folds = [list(map(float, r["fold_balanced_accuracy"])) for r in runs]
    means = [float(np.mean(f)) for f in folds]
    cis = [_t_interval(f, level) for f in folds]
    lo = float(np.clip(np.mean([c[0] for c in cis]), 0.0, 1.0))
    hi = float(np.clip(np.mean([c[1] for c in cis]), 0.0, 1.0))
    mean = float(np.mean(means))
    chance = runs[0]["chance"]
    ident = hashlib.sha256(
        repr((np.asarray(sites).tolist(), None if groups is None else np.asarray(groups).tolist(),
              tuple(seeds), n_splits)).encode()  # fmt: skip
    ).hexdigest()[:16]

    def norm(v: float) -> float:
        return (v - chance) / (1.0 - chance)

    return {
        "balanced_accuracy": mean,
        "ci_folds": [lo, hi],
        "ci_repeats": list(_t_interval(means, level)) if len(means) > 1 else [mean, mean],
        "pooled_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in runs])),
        "chance": chance,
        "shortcut_score": norm(mean),
        "shortcut_ci_folds": [norm(lo), norm(hi)],
        "fold_scores": folds,
        "folds_id": ident,
        "n_samples": runs[0]["n_samples"],
        "n_sites": runs[0]["n_sites"],
        "n_splits": runs[0]["n_splits"],
        "n_repeats": len(runs),
        "method": runs[0]["method"],
        "level": level,
    }


def paired_difference(score_a: dict[str, Any], score_b: dict[str, Any]) -> dict[str, Any]:
    """Balanced accuracy of ``a`` minus ``b``, fold by fold (both from :func:`site_score`).

    Returns
    -------
    dict
        ``difference`` (mean over folds and repeats; negative: ``a`` is less site-decodable),
        ``ci_folds`` (t-interval over one repeat's fold differences, bounds averaged over the
        repeats), ``folds_lower`` / ``folds_tied`` (share of folds where ``a`` scored lower /
        the same), ``n_folds``.

    Raises
    ------
    S2VError
        The two scores were not computed on the same folds.
    """
    if score_a.get("folds_id") != score_b.get("folds_id"):
        raise S2VError("the two site scores were computed on different rows or folds; "
                       "score both embeddings on the same samples with the same seeds")  # fmt: skip
    level = float(score_a.get("level", 0.95))
    diffs = [np.subtract(a, b) for a, b in zip(score_a["fold_scores"], score_b["fold_scores"],
                                               strict=True)]  # fmt: skip
    cis = [_t_interval(list(d), level) for d in diffs]
    flat = np.concatenate(diffs)
    return {
        "difference": float(flat.mean()),
        "ci_folds": [float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis]))],
        "folds_lower": float(np.mean(flat < 0)),
        "folds_tied": float(np.mean(flat == 0)),
        "n_folds": int(flat.size),
        "level": level,
    }


# --- shipped cohort embeddings ----------------------------------------------------------------
def embedding_columns(frame: pd.DataFrame) -> list[str]:
    """The ``emb_0 .. emb_{H-1}`` columns of a table, in order."""
    cols = [c for c in frame.columns if c.startswith(EMB_PREFIX)]
    return sorted(cols, key=lambda c: int(c[len(EMB_PREFIX):]))


def embedding_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The embeddings of a table as float32 ``(n, H)``."""
    cols = embedding_columns(frame)
    if not cols:
        raise S2VError("this table has no emb_* columns")
    return frame[cols].to_numpy(dtype=np.float32)


def load_shipped(
    level: str = "nights", model: str | None = None, folder: str | Path = SHIPPED_DIR
) -> pd.DataFrame:
    """Read the shipped cohort embeddings (``<folder>/<level>.parquet``).

    Parameters
    ----------
    level : {"nights", "epochs"}
    model : {"dash", "infonce", "classifier"}, optional
        Keep the rows of one model (default: all, with a ``model`` column).
    folder : path
        Folder written by ``scripts/export_cohort_embeddings.py``.

    Returns
    -------
    pandas.DataFrame
        Metadata columns (:data:`META_COLUMNS`), precomputed map coordinates
        (``umap_x``, ``umap_y``, ``tsne_x``... fitted per model) and ``emb_*`` as float32.

    Raises
    ------
    S2VError
        Unknown level or model, a missing file (with the command that makes it), or a table
        lacking expected columns.
    """
    if level not in LEVELS:
        raise S2VError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    if model is not None and model not in MODEL_KEYS:
        raise S2VError(f"unknown model {model!r}; allowed: {', '.join(MODEL_KEYS)}")
    path = Path(folder) / f"{level}.parquet"
    if not path.is_file():
        raise S2VError(
            f"{path}: no cohort embeddings there; make them with "
            "`python scripts/export_cohort_embeddings.py` after scripts/train_shipped_model.sh"
        )
    frame = pd.read_parquet(path)
    missing = [c for c in META_COLUMNS[level] if c not in frame.columns]
    missing += [f"{m}_{a}" for m in METHODS for a in "xy" if f"{m}_{a}" not in frame.columns]
    if missing or not embedding_columns(frame):
        raise S2VError(f"{path}: missing columns {', '.join(missing) or 'emb_*'}")
    if model is not None:
        frame = frame[frame["model"] == model].reset_index(drop=True)
        if frame.empty:
            raise S2VError(f"{path}: no rows for model {model!r}")
    cols = embedding_columns(frame)
    frame[cols] = frame[cols].astype(np.float32)
    return frame


def selection_table(frame: pd.DataFrame, point_ids: list[int], level: str) -> pd.DataFrame:
    """The cohort rows behind selected map points, as a table for people.

    Parameters
    ----------
    frame : pandas.DataFrame
        A table from :func:`load_shipped` (one model).
    point_ids : list of int
        Row numbers of ``frame`` carried by the points (``customdata``); negative ids (points
        that are not cohort rows) and duplicates are ignored.
    level : {"nights", "epochs"}

    Returns
    -------
    pandas.DataFrame
        night, subject, site, age, sex, split, then ``epoch`` and ``stage`` (as a name) for
        epochs, or ``n_epochs`` and ``modalities`` for nights; in selection order.
    """
    from s2v_core.stages import STAGE_NAMES

    if level not in LEVELS:
        raise S2VError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    rows = list(dict.fromkeys(int(i) for i in point_ids if 0 <= int(i) < len(frame)))
    extra = ["epoch", "stage"] if level == "epochs" else ["n_epochs", "modalities"]
    out = frame.iloc[rows][["night", "subject", "site", "age", "sex", "split", *extra]].copy()
    if level == "epochs":
        names = np.asarray(("?",) + STAGE_NAMES, dtype=object)
        out["stage"] = names[out["stage"].to_numpy(dtype=int) + 1]
    return out.reset_index(drop=True)


def load_site_scores(folder: str | Path = SHIPPED_DIR) -> dict[str, Any]:
    """Read ``site_scores.json`` (site-probe scores and how the embeddings were made)."""
    path = Path(folder) / "site_scores.json"
    if not path.is_file():
        raise S2VError(f"{path}: no site scores; run scripts/export_cohort_embeddings.py")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise S2VError(f"{path}: not valid JSON ({exc})") from None
