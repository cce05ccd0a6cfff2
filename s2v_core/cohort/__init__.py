"""Cohorts: the prepared store, the one walker over stores and folders, preparation, Dask, embedding.

* :mod:`.store`: reading a prepared store (:class:`CohortStore`);
* :mod:`.sources`: :func:`night_sources`, the nights of a store, a folder or one recording;
* :mod:`.prepare`: ``s2v prepare`` (serial or on Dask);
* :mod:`.cluster`: Dask clusters (local, an existing scheduler, SLURM);
* :mod:`.embed`: ``s2v embed`` over many nights;
* :mod:`.nsrr`: NSRR download layouts (SHHS, MESA, MrOS, CFS, WSC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s2v_core.errors import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they load on first use
    from s2v_core.cohort.cluster import ClusterSpec
    from s2v_core.cohort.embed import embed_sources, embed_store
    from s2v_core.cohort.prepare import prepare_store
    from s2v_core.cohort.sources import NightSource, discover_rows, night_sources
    from s2v_core.cohort.store import SPLITS, CohortStore, StoreEntry

_WHERE = {
    "ClusterSpec": "s2v_core.cohort.cluster",
    "embed_sources": "s2v_core.cohort.embed",
    "embed_store": "s2v_core.cohort.embed",
    "prepare_store": "s2v_core.cohort.prepare",
    "NightSource": "s2v_core.cohort.sources",
    "discover_rows": "s2v_core.cohort.sources",
    "night_sources": "s2v_core.cohort.sources",
    "SPLITS": "s2v_core.cohort.store",
    "CohortStore": "s2v_core.cohort.store",
    "StoreEntry": "s2v_core.cohort.store",
}
"""Where each public name is defined. Loaded on first use, so that reading a store for training
does not import preparation, Dask or tqdm."""

__all__ = [
    "SPLITS",
    "ClusterSpec",
    "CohortStore",
    "NightSource",
    "StoreEntry",
    "discover_rows",
    "embed_sources",
    "embed_store",
    "night_sources",
    "prepare_store",
]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
