"""Cohorts: the prepared store, the one walker over stores and folders, preparation, Dask, embedding.

* :mod:`.store`: reading a prepared store (:class:`CohortStore`);
* :mod:`.sources`: :func:`night_sources`, the nights of a store, a folder or one recording;
* :mod:`.prepare`: ``s2v prepare`` (serial or on Dask);
* :mod:`.cluster`: Dask clusters (local, an existing scheduler, SLURM);
* :mod:`.embed`: ``s2v embed`` over many nights;
* :mod:`.nsrr`: NSRR download layouts (SHHS, MESA, MrOS, CFS, WSC).
"""

from s2v_core.cohort.cluster import ClusterSpec
from s2v_core.cohort.embed import embed_sources, embed_store
from s2v_core.cohort.prepare import prepare_store
from s2v_core.cohort.sources import NightSource, discover_rows, night_sources
from s2v_core.cohort.store import SPLITS, CohortStore, StoreEntry

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
