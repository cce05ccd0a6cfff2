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
  one valid modality (:func:`s2v_core.inference.embed.pool_epochs`).

:func:`project` maps embeddings to 2-D with UMAP, t-SNE or PCA; UMAP and PCA place new points
into an existing map (``transform``), t-SNE has no out-of-sample map, so new points are
placed by a joint re-fit. :func:`~s2v_core.evaluation.shortcut.site_score` measures how well the recording site can be
decoded from embeddings (lower is better), with confidence intervals over folds and repeated
splits. The shipped cohort embeddings (``models/sleep2vec-small/embeddings``, written by
``scripts/export_cohort_embeddings.py``) are read with :func:`load_shipped`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import S2VError
from s2v_core.inference.embed import embedding_columns
from s2v_core.limits.jsonfile import read_json
from s2v_core.shipped import embeddings_dir
from s2v_core.stages import STAGE_NAMES

__all__ = [
    "LEVELS",
    "META_COLUMNS",
    "METHODS",
    "MODEL_KEYS",
    "MODEL_LABELS",
    "Projection",
    "embedding_matrix",
    "load_shipped",
    "load_site_scores",
    "project",
    "selection_table",
]

log = logging.getLogger(__name__)

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
def embedding_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The embeddings of a table as float32 ``(n, H)``."""
    cols = embedding_columns(frame)
    if not cols:
        raise S2VError("this table has no emb_* columns")
    return frame[cols].to_numpy(dtype=np.float32)


def load_shipped(
    level: str = "nights", model: str | None = None, folder: str | Path | None = None
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
    path = Path(folder or embeddings_dir()) / f"{level}.parquet"
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
    if level not in LEVELS:
        raise S2VError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    rows = list(dict.fromkeys(int(i) for i in point_ids if 0 <= int(i) < len(frame)))
    extra = ["epoch", "stage"] if level == "epochs" else ["n_epochs", "modalities"]
    out = frame.iloc[rows][["night", "subject", "site", "age", "sex", "split", *extra]].copy()
    if level == "epochs":
        names = np.asarray(("?",) + STAGE_NAMES, dtype=object)
        out["stage"] = names[out["stage"].to_numpy(dtype=int) + 1]
    return out.reset_index(drop=True)


def load_site_scores(folder: str | Path | None = None) -> dict[str, Any]:
    """Read ``site_scores.json`` (site-probe scores and how the embeddings were made)."""
    path = Path(folder or embeddings_dir()) / "site_scores.json"
    if not path.is_file():
        raise S2VError(f"{path}: no site scores; run scripts/export_cohort_embeddings.py")
    return read_json(path, error=lambda problem: S2VError(f"{path.name}: {problem}"))  # capped (issue 16)
