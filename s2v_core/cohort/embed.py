"""Embedding a cohort: serially, or on Dask workers with resumable per-night parts (``s2v embed``).

The per-night work is :func:`s2v_core.inference.embed.embed_one` in both paths, so distributed and
serial outputs are equal. Embedding workers load the model once per worker thread
(:func:`cached_model`) and return the night's frames; the client writes one pair of part files per
night under ``OUT.parts/`` as results arrive and skips nights whose parts exist, then concatenates
them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from s2v_core.cohort.cluster import ClusterSpec, open_client, run_tasks, worker_failure
from s2v_core.cohort.sources import NightSource, store_sources
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.inference.embed import embed_one
from s2v_core.inference.predict import load_classifier, model_id
from s2v_core.io.atomic import write_text_atomic
from s2v_core.night import Night

__all__ = [
    "PARTS_SUFFIX",
    "EmbedRun",
    "cached_model",
    "embed_sources",
    "embed_store",
    "embed_store_night",
    "remove_parts",
]

log = logging.getLogger(__name__)

PARTS_SUFFIX = ".parts"
"""``OUT.parts/`` holds the per-night part files of ``s2v embed`` with a cluster."""

_KEY_FILE = "_run.json"


# --- embedding -------------------------------------------------------------------------------
_MODELS = threading.local()


def cached_model(model_dir: str | Path, device: str = "cpu", threads: int | None = None):
    """The classifier of ``model_dir``, loaded once per worker thread (a per-worker cache).

    The cache is per thread, not per process: ``predict_night`` captures the fused states
    with a forward hook on the model, so two threads must never share one model object. With
    the default one thread per worker process this is one model per worker. ``threads`` sets
    torch's intra-op threads the first time (default 1: the cluster already runs one task per
    core).
    """
    key = (str(Path(model_dir).resolve()), device)
    cache = getattr(_MODELS, "cache", None)
    if cache is None:
        cache = _MODELS.cache = {}
    if key not in cache:
        torch.set_num_threads(threads or 1)
        cache[key] = load_classifier(key[0], device=device)[0]
    return cache[key]


def embed_store_night(
    store_dir: str,
    night_id: str,
    info: dict,
    model_dir: str,
    modalities: tuple[str, ...] | None,
    device: str = "cpu",
    threads: int | None = None,
) -> dict:
    """Embed one prepared night on a worker (the task of a distributed ``s2v embed``).

    Returns
    -------
    dict
        ``status`` ``"done"`` with ``epochs`` and ``night`` (the frames of
        :func:`s2v_core.inference.embed.embed_one`), ``"skipped"`` when the night lacks the requested
        modalities, or ``"failed"``; ``error`` holds the reason. Never raises for a bad night.
    """
    try:
        model = cached_model(model_dir, device, threads)
        night = Night.load(Path(store_dir) / "nights" / night_id, mmap=True)
        epochs, nights = embed_one(model, night, info, modalities, device)
        return {"status": "done", "error": "", "epochs": epochs, "night": nights}
    except S2VError as exc:
        return {"status": "skipped", "error": str(exc)}
    except Exception as exc:  # one bad night must never stop a cohort run
        log.exception("unexpected error embedding night %s", night_id)
        return {"status": "failed", "error": worker_failure(exc)}


def _safe_name(night_id: str) -> str:
    if not night_id or night_id.startswith(".") or any(c in night_id for c in "/\\\x00"):
        raise S2VError(f"night id {night_id!r} cannot be a file name")
    return night_id


def _write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:6]}-{path.name}")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _parts_ready(parts: Path, key: dict) -> None:
    """Create ``parts``; wipe it first when it holds parts of another model or subset."""
    key_file = parts / _KEY_FILE
    if parts.is_dir() and key_file.is_file():
        try:
            old = json.loads(key_file.read_text())
        except (OSError, ValueError):
            old = None
        if old != key:
            log.warning("embed: %s holds parts of another run (%s); starting over", parts, old)
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob(".tmp-*"):
        stale.unlink(missing_ok=True)
    write_text_atomic(key_file, json.dumps(key, indent=1))


@dataclass
class EmbedRun:
    """The outcome of :func:`embed_store`."""

    epochs: pd.DataFrame
    nights: pd.DataFrame
    status: pd.DataFrame  # night, status (done/resumed/skipped/failed), error

    @property
    def summary(self) -> dict[str, int]:
        """Counts of each status."""
        s = self.status["status"]
        return {k: int((s == k).sum()) for k in ("done", "resumed", "skipped", "failed")}


def embed_store(
    store_dir: str | Path,
    out: str | Path,
    *,
    model_dir: str | Path,
    cluster: ClusterSpec,
    split: str | None = None,
    modalities: tuple[str, ...] | None = None,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    model_name: str | None = None,
) -> EmbedRun:
    """Embed every night of a store on a Dask cluster, resumably.

    Parts go to ``OUT.parts/<night>.epochs.parquet`` and ``<night>.night.parquet`` (the night
    file last, each written atomically); nights with both parts are not recomputed. A part
    folder made with another model or modality subset is cleared first.

    Parameters
    ----------
    store_dir : path
        A cohort store (``s2v prepare``).
    out : path
        The per-epoch Parquet file the caller will write; names the part folder.
    model_dir : path
        Classifier checkpoint folder, loaded once per worker.
    cluster : ClusterSpec
    split : str, optional
        Only the nights of this split.
    modalities : tuple of str, optional
        Subset to use (default: every modality of the night the model knows).
    device, threads
        Torch device and intra-op threads on the workers (default 1 thread).
    progress : bool
        tqdm bar over finished nights.
    model_name : str, optional
        Model id recorded with the parts (default :func:`s2v_core.inference.predict.model_id`).

    Returns
    -------
    EmbedRun
        Frames in store order, equal to the serial ``s2v embed``, and one status row per night.
    """
    store = CohortStore(store_dir)
    root = str(store.path.resolve())
    model_dir = str(Path(model_dir).resolve())
    if model_name is None:
        model_name = model_id(model_dir)
    out = Path(out)
    parts = out.with_name(out.name + PARTS_SUFFIX)
    key = {"store": root, "model": model_name,
           "modalities": None if modalities is None else list(modalities)}  # fmt: skip
    _parts_ready(parts, key)

    night_ids = store.nights(split)
    infos = {src.night_id: src.info() for src in store_sources(store, split)}
    status: dict[str, tuple[str, str]] = {}
    todo = []
    for nid in night_ids:
        name = _safe_name(nid)
        if (parts / f"{name}.night.parquet").is_file() and (
            parts / f"{name}.epochs.parquet"
        ).is_file():
            status[nid] = ("resumed", "")
        else:
            todo.append(nid)
    if todo:
        calls = [((root, nid, infos[nid], model_dir, modalities, device, threads), {})
                 for nid in todo]  # fmt: skip
        with open_client(cluster) as client:
            for i, res in run_tasks(client, embed_store_night, calls, names=todo, desc="embed",
                                    progress=progress, max_in_flight=cluster.max_in_flight):  # fmt: skip
                nid = todo[i]
                if isinstance(res, BaseException):
                    res = {"status": "failed", "error": worker_failure(res)}
                if res["status"] == "done":
                    _write_parquet_atomic(res["epochs"], parts / f"{nid}.epochs.parquet")
                    _write_parquet_atomic(res["night"], parts / f"{nid}.night.parquet")
                else:
                    level = logging.WARNING if res["status"] == "failed" else logging.INFO
                    log.log(level, "embed: %s %s: %s", res["status"], nid, res["error"])
                status[nid] = (res["status"], res["error"])
    ok = [n for n in night_ids if status[n][0] in ("done", "resumed")]
    table = pd.DataFrame(
        [{"night": n, "status": status[n][0], "error": status[n][1]} for n in night_ids],
        columns=["night", "status", "error"],
    )
    if not ok:
        first = next((f"{n}: {s[1]}" for n, s in status.items() if s[1]), "")
        raise S2VError(
            f"{store_dir}: no night could be embedded" + (f" ({first})" if first else "")
        )
    epochs = pd.concat([pd.read_parquet(parts / f"{n}.epochs.parquet") for n in ok],
                       ignore_index=True)  # fmt: skip
    nights = pd.concat([pd.read_parquet(parts / f"{n}.night.parquet") for n in ok],
                       ignore_index=True)  # fmt: skip
    return EmbedRun(epochs=epochs, nights=nights, status=table)


def remove_parts(out: str | Path) -> None:
    """Delete the part folder of ``out`` (after the final tables are written)."""
    parts = Path(out).with_name(Path(out).name + PARTS_SUFFIX)
    if parts.is_dir():
        shutil.rmtree(parts, ignore_errors=True)


def embed_sources(
    sources: Sequence[NightSource],
    model: Any,
    *,
    modalities: tuple[str, ...] | None = None,
    device: str = "cpu",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-epoch and per-night embedding tables of some nights, one after the other (serial).

    Columns: the metadata of :meth:`NightSource.info`, then ``emb_0 .. emb_{H-1}`` (see
    :func:`~s2v_core.inference.embed.embed_one`). Several nights: a night lacking a requested
    modality is skipped with a warning. One night: its error is raised.

    Raises
    ------
    S2VError
        No night could be embedded.
    """
    epoch_parts, night_parts, skipped = [], [], []
    for src in sources:
        try:
            epochs, nights = embed_one(model, src.load(), src.info(), modalities, device)
        except S2VError as exc:
            if len(sources) == 1:  # a single recording: the error is the answer
                raise
            skipped.append(f"{src.night_id} ({exc})")
            continue
        epoch_parts.append(epochs)
        night_parts.append(nights)
    for s in skipped:
        log.warning("embed: skipped %s", s)
    if not epoch_parts:
        raise S2VError("no night could be embedded" + (f" ({skipped[0]})" if skipped else ""))
    return pd.concat(epoch_parts, ignore_index=True), pd.concat(night_parts, ignore_index=True)
