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

A user's own cohort goes on the same map: :func:`read_embedding_table` reads an ``s2v embed``
Parquet (per night or per epoch), :func:`join_metadata` adds a metadata CSV
(:func:`read_metadata_table`) by night id, :func:`embed_store` embeds a prepared store, and
:func:`cohort_from_table` / :func:`cohort_from_store` turn either into an :class:`OwnCohort`
(per-night rows and a bounded per-epoch sample) for the page (:func:`with_metadata` joins a CSV).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from s2v_core.cohort.sources import is_store, store_sources
from s2v_core.errors import InputFileError, S2VError
from s2v_core.evaluation.shortcut import sample_table_epochs
from s2v_core.inference.embed import embed_one, embedding_columns
from s2v_core.io.metadata import read_metadata_csv
from s2v_core.io.text_limits import clip_message, read_user_csv
from s2v_core.limits.bounds import allocation_budget, describe_bytes
from s2v_core.limits.jsonfile import read_json
from s2v_core.sanitize.cells import unneutralise_frame
from s2v_core.sanitize.text import terminal_safe
from s2v_core.shipped import embeddings_dir
from s2v_core.stages import STAGE_NAMES

__all__ = [
    "LEVELS",
    "MAP_EPOCHS_PER_NIGHT",
    "MAX_COLOUR_VALUES",
    "MAX_EMBEDDING_VALUES",
    "MAX_MAP_EPOCHS",
    "MAX_STORE_NIGHTS",
    "META_COLUMNS",
    "METHODS",
    "MODEL_KEYS",
    "MODEL_LABELS",
    "OWN_COLUMNS",
    "MetadataMatch",
    "OwnCohort",
    "Projection",
    "cohort_from_store",
    "cohort_from_table",
    "cohorts_under",
    "colour_options",
    "embed_store",
    "embedding_matrix",
    "hover_text",
    "join_metadata",
    "load_shipped",
    "load_site_scores",
    "nights_from_epochs",
    "plot_text",
    "project",
    "read_embedding_table",
    "read_metadata_table",
    "selection_table",
    "with_metadata",
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
        A table from :func:`load_shipped` (one model) or of an :class:`OwnCohort`.
    point_ids : list of int
        Row numbers of ``frame`` carried by the points (``customdata``); negative ids (points
        that are not cohort rows) and duplicates are ignored.
    level : {"nights", "epochs"}

    Returns
    -------
    pandas.DataFrame
        night, subject, site, age, sex, split, then ``epoch`` and ``stage`` (as a name) for
        epochs, or ``n_epochs`` and ``modalities`` for nights (those ``frame`` has); in
        selection order.
    """
    if level not in LEVELS:
        raise S2VError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    rows = list(dict.fromkeys(int(i) for i in point_ids if 0 <= int(i) < len(frame)))
    extra = ["epoch", "stage"] if level == "epochs" else ["n_epochs", "modalities"]
    cols = [c for c in ("night", "subject", "site", "age", "sex", "split", *extra) if c in frame.columns]
    out = frame.iloc[rows][cols].copy()  # a user's table may lack some (n_epochs, modalities...)
    if level == "epochs" and "stage" in out.columns:
        names = np.asarray(("?",) + STAGE_NAMES, dtype=object)
        codes = pd.to_numeric(out["stage"], errors="coerce").fillna(-1).clip(-1, 4).to_numpy(dtype=int)
        out["stage"] = names[codes + 1]
    return out.reset_index(drop=True)


def load_site_scores(folder: str | Path | None = None) -> dict[str, Any]:
    """Read ``site_scores.json`` (site-probe scores and how the embeddings were made)."""
    path = Path(folder or embeddings_dir()) / "site_scores.json"
    if not path.is_file():
        raise S2VError(f"{path}: no site scores; run scripts/export_cohort_embeddings.py")
    return read_json(path, error=lambda problem: S2VError(f"{path.name}: {problem}"))  # capped (issue 16)


# --- a user's own cohort -------------------------------------------------------------------------
OWN_COLUMNS: tuple[str, ...] = ("night", "subject", "site", "age", "sex", "split")
"""Metadata columns every own-cohort table gets (missing ones are filled with None / NaN)."""

MAX_EMBEDDING_VALUES = 200_000_000
"""Rows x embedding width an embedding table may hold (800 MB as float32): a per-epoch table of
about 1,600 8-h nights with 128-d embeddings. Bigger cohorts: per-night tables."""

MAP_EPOCHS_PER_NIGHT = 60
"""Epochs per night drawn on an own cohort's epoch map (stratified by stage, as the shipped map)."""

MAX_MAP_EPOCHS = 6_000
"""Most epochs drawn on an own cohort's epoch map (fewer per night in large cohorts)."""

MAX_STORE_NIGHTS = 200
"""Most nights of a store the app embeds (about 2 s per 8-h night on one CPU core); larger
stores go through ``s2v embed STORE --out ...``, whose per-night Parquet the page opens."""

MAX_COLOUR_VALUES = 24
"""Most distinct values of a categorical colour column."""

_PER_EPOCH = ("epoch", "onset_s", "stage", "predicted")  # columns that differ within a night
_NOT_COLOURS = ("night", "epoch", "onset_s", "model")
_FIRST_COLOURS = ("stage", "predicted", "site", "age", "sex", "split")
_TABLE_HINT = "expected a table written by `s2v embed` (OUT.parquet per epoch or OUT_nights.parquet per night)"


def plot_text(value: Any) -> str:
    """A value from a user's file as plotly text: escaped, so it is shown and never run as markup."""
    return html.escape(terminal_safe(value), quote=False)


def read_embedding_table(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read an ``s2v embed`` Parquet (per-night or per-epoch table), checked.

    Parameters
    ----------
    path : path
        The Parquet file.
    name : str, optional
        How messages name the file (an upload's own name); default the file name.

    Returns
    -------
    pandas.DataFrame
        The table with ``emb_*`` as float32, ``night`` as text and every column of
        :data:`OWN_COLUMNS` (filled with None, or NaN for age, where the file lacks it).

    Raises
    ------
    InputFileError
        Not a Parquet file, no ``emb_*`` or ``night`` column, more than
        :data:`MAX_EMBEDDING_VALUES` values (or more than its size allows), repeated night ids
        (per-night tables) or (night, epoch) pairs (per-epoch tables), no rows.
    """
    path = Path(path)
    label = name or path.name
    try:
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
        n_rows = int(pf.metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError) as exc:
        log.info("%s: not readable as Parquet: %s", label, exc)
        raise InputFileError(label, f"not a Parquet file; {_TABLE_HINT}") from None
    emb = embedding_columns(pd.DataFrame(columns=names))
    if not emb:
        shown = ", ".join(clip_message(c, 40) for c in names[:8]) + (", ..." if len(names) > 8 else "")
        raise InputFileError(label, f"no embedding columns (emb_0, emb_1, ...); {_TABLE_HINT}. Its columns: "
                                    f"{shown or 'none'}")  # fmt: skip
    if "night" not in names:
        raise InputFileError(label, f"no 'night' column (the night id of each row); {_TABLE_HINT}")
    if n_rows == 0:
        raise InputFileError(label, "the table has no rows")
    values = n_rows * len(emb)
    if values > MAX_EMBEDDING_VALUES:
        raise InputFileError(label, f"{n_rows:,} rows of {len(emb)}-d embeddings are more than the app reads (at "
                                    f"most {MAX_EMBEDDING_VALUES:,} values); use the per-night table or a part "
                                    "of the cohort")  # fmt: skip
    need, size = n_rows * len(names) * 8.0, path.stat().st_size
    if need > allocation_budget(size):
        raise InputFileError(label, f"{n_rows:,} rows of {len(names)} columns would take {describe_bytes(need)} of "
                                    f"memory for a file of {describe_bytes(size)}; a table of embeddings does not "
                                    "compress that well")  # fmt: skip
    try:
        frame = pf.read().to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        log.info("%s: Parquet could not be read: %s", label, exc)
        raise InputFileError(label, f"the Parquet file could not be read ({clip_message(exc, 80)})") from None
    try:
        frame[emb] = frame[emb].astype(np.float32)
    except (TypeError, ValueError):
        raise InputFileError(label, "embedding columns (emb_*) must hold numbers") from None
    frame["night"] = frame["night"].astype(str).str.strip()
    key = ["night", "epoch"] if "epoch" in frame.columns else ["night"]
    dup = frame[key][frame.duplicated(key)]
    if len(dup):
        what = "night ids" if key == ["night"] else "(night, epoch) pairs"
        first = ", ".join(clip_message(v, 40) for v in dup["night"].head(3))
        raise InputFileError(label, f"the table repeats {what} ({len(dup)} repeated, e.g. {first}): one "
                                    "`s2v embed` run per table")  # fmt: skip
    return _with_own_columns(frame)


def _with_own_columns(frame: pd.DataFrame) -> pd.DataFrame:
    for c in OWN_COLUMNS:
        if c not in frame.columns:
            frame[c] = np.nan if c == "age" else None
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    return frame


def read_metadata_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """A metadata CSV for :func:`join_metadata`: the known columns and every other one.

    The id, subject, site, age and sex columns are found by their usual names
    (:func:`s2v_core.io.metadata.read_metadata_csv`: ``night``, ``nsrrid``, ``gender``...); the
    file's other columns come along under their own names (numbers where every filled cell is
    one), so a map can be coloured by, say, BMI or AHI.

    Returns
    -------
    frame : pandas.DataFrame
        Indexed by night id.
    used : dict
        Canonical column -> the file's column, for the known columns found.
    """
    meta, used = read_metadata_csv(path)
    raw = unneutralise_frame(read_user_csv(path, "metadata CSV", sep=None, engine="python", dtype=str))
    taken = set(used.values())
    for col in raw.columns:
        name = str(col).strip()
        if col in taken or not name or name in meta.columns or name.startswith("emb_") or name in _PER_EPOCH:
            continue
        text = raw[col].astype("string").str.strip()
        filled = text.notna() & (text != "")
        numbers = pd.to_numeric(text.where(filled), errors="coerce")
        meta[name] = (numbers.to_numpy() if filled.any() and numbers[filled].notna().all()
                      else text.where(filled).astype(object).to_numpy())  # fmt: skip
    return meta, used


@dataclass
class MetadataMatch:
    """How the rows of a metadata CSV met the nights of an embedding table.

    Attributes
    ----------
    nights : int
        Distinct nights of the embedding table.
    matched : int
        Of them, those with a row in the CSV.
    csv_rows : int
    id_column : str
        The CSV's id column.
    columns : list of str
        Columns the CSV gave (site, age, ... and its own).
    unmatched : list of str
        Up to five table nights without a CSV row.
    unused : list of str
        Up to five CSV ids without a night in the table.
    """

    nights: int
    matched: int
    csv_rows: int
    id_column: str
    columns: list[str]
    unmatched: list[str]
    unused: list[str]

    def message(self) -> str:
        """One paragraph for people."""
        text = (f"Metadata: {self.matched} of {self.nights} nights matched a row of the CSV by id "
                f"(column {self.id_column!r}); columns {', '.join(self.columns) or 'none'}.")  # fmt: skip
        if self.matched < self.nights:
            text += (f" {self.nights - self.matched} nights have no metadata (e.g. "
                     f"{', '.join(self.unmatched)}): their values stay as in the embeddings.")  # fmt: skip
        if self.unused:
            text += f" CSV ids without a night: e.g. {', '.join(self.unused)}."
        return text


def join_metadata(frame: pd.DataFrame, meta: pd.DataFrame, used: dict[str, str]
                  ) -> tuple[pd.DataFrame, MetadataMatch]:  # fmt: skip
    """Add a metadata CSV (:func:`read_metadata_table`) to an embedding table by night id.

    The CSV's values replace the table's where the CSV has one (its site, age, sex, subject);
    its other columns are added. Ids are compared as text without surrounding spaces.

    Returns
    -------
    frame : pandas.DataFrame
        A new table.
    match : MetadataMatch

    Raises
    ------
    S2VError
        No night of the table has a row in the CSV (the message shows ids of both).
    """
    out = frame.copy()
    ids = out["night"].astype(str).str.strip()
    table_ids = pd.unique(ids)
    meta = meta.copy()
    meta.index = meta.index.astype(str).str.strip()
    found = np.isin(table_ids, meta.index)
    id_col = used.get("night", "night")
    if not found.any():
        ours = ", ".join(repr(clip_message(v, 40)) for v in table_ids[:3])
        theirs = ", ".join(repr(clip_message(v, 40)) for v in meta.index[:3])
        raise S2VError(f"none of the {len(table_ids)} nights of the embeddings matches an id of the metadata CSV "
                       f"({len(meta)} rows, id column {clip_message(id_col, 40)!r}): the embeddings' nights are "
                       f"like {ours or 'none'}, the CSV's ids like {theirs or 'none'}")  # fmt: skip
    columns = [c for c in ("subject", "site", "age", "sex") if c in used]
    columns += [c for c in meta.columns if c not in ("night", "subject", "site", "age", "sex")]
    hit = ids.isin(meta.index).to_numpy()
    for c in columns:
        new = meta[c].reindex(ids).to_numpy()
        if c in out.columns:
            filled = hit & pd.notna(new)
            col = out[c].astype(object).to_numpy(copy=True) if c != "age" else out[c].to_numpy(copy=True)
            col[filled] = new[filled]
            out[c] = col
        else:
            out[c] = new
    out["age"] = pd.to_numeric(out["age"], errors="coerce")
    unused = [v for v in meta.index if v not in set(table_ids)]
    match = MetadataMatch(
        nights=len(table_ids), matched=int(found.sum()), csv_rows=len(meta), id_column=str(id_col),
        columns=[str(c) for c in columns],
        unmatched=[clip_message(v, 40) for v in table_ids[~found][:5]],
        unused=[clip_message(v, 40) for v in unused[:5]],
    )  # fmt: skip
    return out, match


def nights_from_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per night of a per-epoch table: the mean of its epochs' finite embeddings.

    ``s2v embed``'s own per-night table also leaves out epochs where no used modality is valid;
    this mean cannot tell those apart, so it may differ from it slightly on such nights. The
    night's other columns (site, age...) are the first value of each; per-epoch columns (epoch,
    onset, stage, predicted) are dropped; ``n_epochs`` counts the night's rows.
    """
    emb = embedding_columns(epochs)
    codes, names = pd.factorize(epochs["night"], sort=False)
    x = epochs[emb].to_numpy(dtype=np.float64)
    ok = np.isfinite(x).all(axis=1)
    sums = np.zeros((len(names), len(emb)))
    np.add.at(sums, codes[ok], x[ok])
    counts = np.bincount(codes[ok], minlength=len(names))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums / counts[:, None]).astype(np.float32)  # NaN for a night without a finite epoch
    meta_cols = [c for c in epochs.columns if c not in emb and c not in _PER_EPOCH and c != "night"]
    first = epochs[meta_cols].groupby(codes, sort=True).first() if meta_cols else pd.DataFrame(index=range(len(names)))
    out = pd.DataFrame({"night": np.asarray(names, dtype=object)})
    out = pd.concat([out, first.reset_index(drop=True)], axis=1)
    out["n_epochs"] = np.bincount(codes, minlength=len(names))
    out = pd.concat([out, pd.DataFrame(mean, columns=emb)], axis=1)
    return _with_own_columns(out)


def colour_options(frame: pd.DataFrame, level: str) -> dict[str, str]:
    """Columns a map can be coloured by: name -> ``"stage"``, ``"numeric"`` or ``"category"``.

    Stage codes (``stage``, ``predicted``) on epoch maps; numbers with more than 8 values get a
    colour scale; other columns with 1 to :data:`MAX_COLOUR_VALUES` values one colour per value.
    Ids, positions and embeddings are left out. Known columns come first (stage, site, age...).
    """
    emb = set(embedding_columns(frame))
    out: dict[str, str] = {}
    for c in frame.columns:
        if not isinstance(c, str) or c in emb or c in _NOT_COLOURS or c.endswith(("_x", "_y")):
            continue
        values = frame[c].dropna()
        if c in ("stage", "predicted"):
            if level == "epochs":
                out[c] = "stage"
            continue
        if values.empty:
            continue
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        n = values.nunique()
        if numeric and (n > 8 or c == "age"):
            out[c] = "numeric"
        elif n <= MAX_COLOUR_VALUES:
            out[c] = "category"
    order = {c: i for i, c in enumerate(_FIRST_COLOURS)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def hover_text(frame: pd.DataFrame, level: str) -> list[str]:
    """Hover text of each row: night, site, age, sex, split (and epoch with its stage), escaped."""

    def col(name: str) -> pd.Series:
        if name not in frame.columns:
            return pd.Series(["?"] * len(frame), index=frame.index)
        return frame[name].map(lambda v: "?" if v is None or (isinstance(v, float) and np.isnan(v))
                               else plot_text(v))  # fmt: skip

    age = frame["age"].map(lambda a: "?" if pd.isna(a) else f"{a:.0f}") if "age" in frame.columns else col("age")
    text = col("night") + "<br>site " + col("site") + ", age " + age + ", sex " + col("sex") + ", " + col("split")
    if level == "epochs" and "epoch" in frame.columns:
        names = np.asarray(("?",) + STAGE_NAMES, dtype=object)
        stage = frame["stage"].fillna(-1).astype(int).clip(-1, 4) if "stage" in frame.columns else None
        label = names[stage.to_numpy() + 1] if stage is not None else np.full(len(frame), "?", dtype=object)
        text = text + "<br>epoch " + frame["epoch"].astype(str) + " (" + pd.Series(label, index=frame.index) + ")"
    return list(text)


@dataclass
class OwnCohort:
    """A user's cohort ready for the Embedding map.

    Attributes
    ----------
    nights : pandas.DataFrame
        One row per night: :data:`OWN_COLUMNS`, other metadata, ``emb_*``.
    epochs : pandas.DataFrame or None
        At most :data:`MAP_EPOCHS_PER_NIGHT` epochs per night (and :data:`MAX_MAP_EPOCHS` in
        all), stratified by stage; None when only per-night embeddings were given.
    source : str
        What was loaded, for people (no server path).
    notes : list of str
        What people should know: metadata matching, nights left out, pooled nights.
    warnings : list of str
        What people must not miss: nights without metadata, nights that could not be embedded.
    """

    nights: pd.DataFrame
    epochs: pd.DataFrame | None
    source: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def levels(self) -> tuple[str, ...]:
        """The map levels available: nights, and epochs when given."""
        return LEVELS if self.epochs is not None else ("nights",)

    def table(self, level: str) -> pd.DataFrame:
        """The rows of one level, without rows whose embedding is not finite."""
        if level not in self.levels:
            raise S2VError(f"{self.source} has no per-{level[:-1]} embeddings; levels: {', '.join(self.levels)}")
        frame = self.nights if level == "nights" else self.epochs
        ok = np.isfinite(embedding_matrix(frame)).all(axis=1)
        return frame if ok.all() else frame[ok].reset_index(drop=True)


def _map_epochs(epochs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    n_nights = max(1, epochs["night"].nunique())
    per_night = int(min(MAP_EPOCHS_PER_NIGHT, max(1, MAX_MAP_EPOCHS // n_nights)))
    return epochs.iloc[sample_table_epochs(epochs, per_night, seed)].reset_index(drop=True)


def cohort_from_table(table: pd.DataFrame, source: str) -> OwnCohort:
    """An :class:`OwnCohort` from an embedding table (:func:`read_embedding_table`).

    A per-epoch table gives both levels: its nights are the mean of their epochs
    (:func:`nights_from_epochs`), and a sample of its epochs is kept for the epoch map.

    Raises
    ------
    S2VError
        Fewer than 5 nights with a finite embedding (too few for a map).
    """
    notes = []
    if "epoch" in table.columns:
        nights = nights_from_epochs(table)
        epochs = _map_epochs(table)
        notes.append(f"Per-epoch table: each night is the mean of its epochs' embeddings; the epoch map shows "
                     f"{len(epochs):,} of {len(table):,} epochs (at most {MAP_EPOCHS_PER_NIGHT} per night, "
                     "stratified by stage).")  # fmt: skip
    else:
        nights, epochs = table.reset_index(drop=True), None
    return _checked(OwnCohort(nights, epochs, source, notes))


def _checked(cohort: OwnCohort) -> OwnCohort:
    bad = int((~np.isfinite(embedding_matrix(cohort.nights)).all(axis=1)).sum())
    if bad:
        cohort.warnings.append(f"{bad} night(s) without a finite embedding are left out.")
    if len(cohort.nights) - bad < 5:
        raise S2VError(f"{cohort.source}: {len(cohort.nights) - bad} night(s) with embeddings; a map needs at least 5")
    return cohort


def with_metadata(cohort: OwnCohort, metadata: tuple[pd.DataFrame, dict[str, str]]) -> OwnCohort:
    """``cohort`` with a metadata CSV (:func:`read_metadata_table`) joined to its nights and epochs.

    Raises
    ------
    S2VError
        No night matches an id of the CSV.
    """
    nights, match = join_metadata(cohort.nights, *metadata)
    epochs = None if cohort.epochs is None else join_metadata(cohort.epochs, *metadata)[0]
    partial = match.matched < match.nights
    return OwnCohort(nights, epochs, cohort.source, [*([] if partial else [match.message()]), *cohort.notes],
                     [*([match.message()] if partial else []), *cohort.warnings])  # fmt: skip


def embed_store(
    store: str | Path,
    model: Any,
    *,
    split: str | None = None,
    max_nights: int = MAX_STORE_NIGHTS,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Fused embeddings of a prepared store's nights, as ``s2v embed`` writes them.

    Parameters
    ----------
    store : path
        A cohort store (``s2v prepare``).
    model : Sleep2VecClassifier
    split : str, optional
        Only the nights of this split.
    max_nights : int
        Refuse stores with more nights (the app's bound on work per request).
    progress : callable, optional
        ``progress(done, total)`` after each night.

    Returns
    -------
    epochs, nights : pandas.DataFrame
        The tables of :func:`~s2v_core.inference.embed.embed_one`, plus ``ahi`` when the
        manifest has it.
    skipped : list of str
        Nights that could not be embedded, with the reason.

    Raises
    ------
    S2VError
        Not a store, more than ``max_nights`` nights, or no night embedded.
    """
    if not is_store(store):
        raise S2VError("not a cohort store (no manifest.csv); prepare one with `s2v prepare`")
    sources = store_sources(store, split)
    if len(sources) > max_nights:
        raise S2VError(f"the store has {len(sources)} nights{f' in split {split}' if split else ''}; the app "
                       f"embeds at most {max_nights} (about 2 s per 8-h night). Choose a split, or run "
                       "`s2v embed STORE --out cohort.parquet` and open cohort_nights.parquet here")  # fmt: skip
    epoch_parts, night_parts, skipped = [], [], []
    for i, src in enumerate(sources):
        try:
            epochs, nights = embed_one(model, src.load(), src.info(), None)
        except S2VError as exc:
            skipped.append(f"{src.night_id} ({exc})")
        else:
            ahi = np.nan if src.ahi is None else float(src.ahi)
            nights.insert(int(nights.columns.get_loc("split")) + 1, "ahi", ahi)
            epochs.insert(int(epochs.columns.get_loc("split")) + 1, "ahi", ahi)
            epoch_parts.append(epochs)
            night_parts.append(nights)
        if progress is not None:
            progress(i + 1, len(sources))
    if not night_parts:
        raise S2VError("no night of the store could be embedded" + (f": {skipped[0]}" if skipped else ""))
    nights, epochs = pd.concat(night_parts, ignore_index=True), pd.concat(epoch_parts, ignore_index=True)
    if nights["ahi"].isna().all():
        nights, epochs = nights.drop(columns="ahi"), epochs.drop(columns="ahi")
    return epochs, nights, skipped


def cohort_from_store(epochs: pd.DataFrame, nights: pd.DataFrame, source: str,
                      skipped: Sequence[str] = ()) -> OwnCohort:  # fmt: skip
    """An :class:`OwnCohort` from :func:`embed_store`'s tables (``s2v embed``'s exact night vectors)."""
    warnings = []
    if skipped:
        warnings.append(f"{len(skipped)} night(s) could not be embedded: {'; '.join(skipped[:3])}"
                        + (" ..." if len(skipped) > 3 else ""))  # fmt: skip
    return _checked(OwnCohort(_with_own_columns(nights.reset_index(drop=True)),
                              _with_own_columns(_map_epochs(epochs)), source, warnings=warnings))  # fmt: skip


def cohorts_under(root: str | Path, max_scanned: int = 500) -> list[Path]:
    """Cohort stores and ``s2v embed`` Parquet files at or up to two levels below ``root``.

    A Parquet file counts when its schema has ``night`` and ``emb_*`` columns. Hidden entries
    and ``s2v embed``'s part folders are skipped; at most ``max_scanned`` entries are looked at.
    """
    root = Path(root)

    def usable(p: Path) -> bool:
        try:
            if p.is_dir():
                return is_store(p)
            if p.suffix.lower() != ".parquet" or not p.is_file():
                return False
            names = pq.read_schema(p).names
            return "night" in names and bool(embedding_columns(pd.DataFrame(columns=names)))
        except (OSError, pa.ArrowException, ValueError):
            return False

    if usable(root):
        return [root]
    found, level, scanned = [], [root], 0
    for _ in range(2):
        below = []
        for d in level:
            try:
                children = sorted(c for c in d.iterdir() if not c.name.startswith(".") and not c.name.endswith(".parts"))
            except OSError:
                continue
            for c in children:
                scanned += 1
                if scanned > max_scanned:
                    return found
                if usable(c):
                    found.append(c)
                elif c.is_dir():
                    below.append(c)
        level = below
    return found
