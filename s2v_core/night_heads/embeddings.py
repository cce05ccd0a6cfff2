"""Pooled night embeddings of a frozen model over a cohort store or one recording, with a cache."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.cohort.sources import NightSource, recording_source, store_sources
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.inference.embed import pool_epochs
from s2v_core.inference.predict import load_classifier, model_id, predict_night
from s2v_core.night_heads.tasks import NightHeadError

__all__ = [
    "cached_store_embeddings",
    "recording_embedding",
    "source_embeddings",
    "store_embeddings",
]

log = logging.getLogger(__name__)


# --- embeddings -----------------------------------------------------------------------------
def _frame(rows: list[dict], vectors: list[np.ndarray]) -> pd.DataFrame:
    emb = np.stack(vectors)
    return pd.concat(
        [
            pd.DataFrame(rows),
            pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(emb.shape[1])]),
        ],
        axis=1,
    )


def _row(src: NightSource, pred: Any, n_epochs: int, model_name: str, pooling: str) -> dict:
    return {
        "night": src.night_id,
        "subject": src.subject,
        "site": src.site,
        "age": math.nan if src.age is None else float(src.age),
        "sex": src.sex,
        "ahi": math.nan if src.ahi is None else float(src.ahi),
        "split": src.split,
        "n_epochs": n_epochs,
        "modalities": ",".join(pred.modalities),
        "model_id": model_name,
        "pooling": pooling,
    }


def source_embeddings(
    sources: list[NightSource],
    model: Any,
    *,
    model_name: str = "",
    modalities: tuple[str, ...] | None = None,
    pooling: str = "mean",
    device: str = "cpu",
    on_night: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Pooled embedding and metadata of each night of ``sources``.

    Nights lacking a requested modality are skipped with a warning (listed in
    ``frame.attrs["skipped"]``).

    Returns
    -------
    pandas.DataFrame
        Columns night, subject, site, age, sex, ahi, split, n_epochs, modalities, model_id,
        pooling, then ``emb_0..emb_{D-1}``.

    Raises
    ------
    NightHeadError
        No night could be embedded.
    """
    rows, vectors, skipped = [], [], []
    for i, src in enumerate(sources):
        night = src.load()
        try:
            pred = predict_night(model, night, modalities, device=device, with_embeddings=True)
        except S2VError as exc:
            skipped.append(f"{src.night_id} ({exc})")
            continue
        vectors.append(pool_epochs(pred.embeddings, pred.coverage, pooling))
        rows.append(_row(src, pred, night.n_epochs, model_name, pooling))
        if on_night is not None:
            on_night(i + 1, len(sources), src.night_id)
    for s in skipped:
        log.warning("night heads: skipped %s", s)
    if not rows:
        raise NightHeadError("no night could be embedded" + (f" ({skipped[0]})" if skipped else ""))
    out = _frame(rows, vectors)
    out.attrs["skipped"] = skipped
    return out


def store_embeddings(store: str | Path, model: Any, *, split: str | None = None, **kwargs: Any) -> pd.DataFrame:
    """:func:`source_embeddings` of every night of a cohort store (optionally one split)."""
    try:
        sources = store_sources(store, split)
    except S2VError as exc:
        raise NightHeadError(str(exc)) from None
    return source_embeddings(sources, model, **kwargs)


def recording_embedding(
    path: str | Path, model: Any, *, hypnogram: str | Path | None = None, **kwargs: Any
) -> pd.DataFrame:
    """:func:`source_embeddings` of one recording (EDF/BDF or WFDB beats), same columns as a store's."""
    return source_embeddings([recording_source(path, hypnogram)], model, **kwargs)


def cached_store_embeddings(
    store: str | Path,
    model_folder: str | Path,
    cache: str | Path | None,
    *,
    modalities: tuple[str, ...] | None = None,
    split: str | None = None,
    pooling: str = "mean",
    device: str = "cpu",
    on_night: Callable[[int, int, str], None] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Night embeddings of a store, read from ``cache`` when it fits, else computed (and cached).

    The cache fits when it holds exactly the store's nights (of ``split``), embedded by the same
    model (:func:`~s2v_core.inference.predict.model_id`), pooling and modality subset.

    Returns
    -------
    frame : pandas.DataFrame
        As :func:`store_embeddings`.
    note : str
        What happened to the cache, for the user ("" when there is no cache).
    """
    folder = Path(model_folder)
    mid = model_id(folder)
    cache = Path(cache) if cache else None
    note = ""
    if cache is not None and cache.is_file():
        frame = pd.read_parquet(cache)
        ids = set(frame.get("model_id", pd.Series(dtype=str)).dropna())
        pools = set(frame.get("pooling", pd.Series(dtype=str)).dropna())
        same_nights = set(frame["night"].astype(str)) == set(CohortStore(store).nights(split))
        same_subset = modalities is None or set(frame["modalities"]) == {",".join(modalities)}
        if ids == {mid} and pools == {pooling} and same_nights and same_subset:
            return frame, f"reusing {len(frame)} night embeddings from {cache}"
        note = f"{cache} holds other nights, model, pooling or modalities: recomputed"
    model, _, _ = load_classifier(folder, device=device)
    frame = store_embeddings(store, model, model_name=mid, modalities=modalities, split=split,
                             pooling=pooling, device=device, on_night=on_night)  # fmt: skip
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(cache, index=False)
    return frame, note
