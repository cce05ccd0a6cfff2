"""Cohort-scale preparation and embedding on Dask distributed.

``s2v prepare`` and ``s2v embed`` run serially by default. With one of the cluster options they
map the per-night work over Dask workers instead:

``--workers N``
    a local cluster of N worker *processes* with one thread each (``distributed.LocalCluster``);
``--scheduler tcp://host:8786``
    an existing cluster (started with ``dask scheduler`` / ``dask worker``, or any other way);
``--slurm`` (+ ``--slurm-queue``, ``--slurm-cores``, ``--slurm-memory``, ``--slurm-walltime``,
``--slurm-jobs``, ``--slurm-account``, ``--slurm-prologue``)
    SLURM batch jobs started by ``dask_jobqueue.SLURMCluster`` (imported only then).

Workers must see the source and store folders at the same paths as the client (a shared file
system on a cluster); paths are made absolute before they are sent.

Design
------
* One task per night. The task functions (:func:`s2v_core.cohort.store.prepare_one`,
  :func:`embed_store_night`) never raise for a bad night: they return a row with
  ``status="failed"`` and the reason, and a worker that dies is caught on the client and
  reported the same way, so one bad night is logged and skipped, never fatal.
* The client is the single writer of ``manifest.csv``, ``failures.csv`` and the Parquet tables.
* At most ``max_in_flight`` tasks are submitted at a time (a sliding window over
  ``distributed.as_completed``), so thousands of nights neither flood the scheduler nor pile up
  results in worker memory; a tqdm bar counts finished nights.
* Resumable: a prepared night folder is final once it holds ``scaling.json`` (see
  :mod:`s2v_core.cohort.store`); embedding writes one pair of part files per night under
  ``OUT.parts/`` as results arrive and skips nights whose parts exist, then concatenates them.
* Embedding workers load the model once per process (:func:`cached_model`) and return the
  night's frames; the per-night work is the same function as the serial path
  (:func:`s2v_core.cli.heads.embed_one`), so distributed and serial outputs are equal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from s2v_core.errors import S2VError

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64
"""Default number of tasks submitted to the cluster at a time."""

PARTS_SUFFIX = ".parts"
"""``OUT.parts/`` holds the per-night part files of ``s2v embed`` with a cluster."""

_KEY_FILE = "_run.json"


@dataclass
class ClusterSpec:
    """Where the per-night tasks run. ``None`` fields are not used.

    Exactly one of ``workers``, ``scheduler`` and ``slurm`` should be set; see
    :meth:`validate`.
    """

    workers: int | None = None  # local cluster of this many workers
    scheduler: str | None = None  # address of an existing scheduler
    slurm: bool = False  # dask-jobqueue SLURMCluster
    processes: bool = True  # local cluster: worker processes (False: threads, for tests)
    slurm_queue: str | None = None
    slurm_account: str | None = None
    slurm_cores: int = 4  # cores per job = worker processes per job, one thread each
    slurm_memory: str = "16GB"  # memory per job
    slurm_walltime: str = "02:00:00"
    slurm_jobs: int = 1
    slurm_prologue: list[str] = field(default_factory=list)  # shell lines run before the worker
    max_in_flight: int = MAX_IN_FLIGHT
    connect_timeout: str = "20s"  # how long to try reaching a --scheduler

    def validate(self) -> ClusterSpec:
        """Check the options; raise :class:`S2VError` with what is allowed."""
        chosen = [n for n, on in (("--workers", self.workers is not None),
                                  ("--scheduler", bool(self.scheduler)),
                                  ("--slurm", self.slurm)) if on]  # fmt: skip
        if len(chosen) != 1:
            raise S2VError(
                "choose one of --workers N, --scheduler ADDRESS or --slurm"
                + (f" (got {' and '.join(chosen)})" if chosen else "")
            )
        if self.workers is not None and self.workers < 1:
            raise S2VError(f"--workers must be >= 1, got {self.workers}")
        if self.scheduler and "://" not in self.scheduler and ":" not in self.scheduler:
            raise S2VError(
                f"--scheduler expects an address such as tcp://host:8786, got {self.scheduler!r}"
            )
        if self.slurm and (self.slurm_cores < 1 or self.slurm_jobs < 1):
            raise S2VError("--slurm-cores and --slurm-jobs must be >= 1")
        if self.max_in_flight < 1:
            raise S2VError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        return self

    def describe(self) -> str:
        """A short human description, for progress messages."""
        if self.scheduler:
            return f"Dask scheduler {self.scheduler}"
        if self.slurm:
            return (
                f"SLURM ({self.slurm_jobs} job(s) x {self.slurm_cores} cores, "
                f"{self.slurm_memory}, queue {self.slurm_queue or 'default'})"
            )
        kind = "processes" if self.processes else "threads"
        return f"local Dask cluster ({self.workers} worker {kind})"


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Add ``--workers``, ``--scheduler``, ``--slurm`` and the ``--slurm-*`` options."""
    g = p.add_argument_group(
        "cluster (Dask)", "run the nights in parallel; without these options the run is serial"
    )
    ex = g.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=int, metavar="N",
                    help="local Dask cluster of N worker processes (one thread each)")
    ex.add_argument("--scheduler", metavar="ADDRESS",
                    help="existing Dask scheduler, e.g. tcp://host:8786")
    ex.add_argument("--slurm", action="store_true",
                    help="start workers as SLURM jobs (needs dask-jobqueue)")
    g.add_argument("--slurm-queue", help="SLURM partition")
    g.add_argument("--slurm-account", help="SLURM account")
    g.add_argument("--slurm-cores", type=int, default=4,
                   help="cores per job, one worker process each (default 4)")
    g.add_argument("--slurm-memory", default="16GB", help="memory per job (default 16GB)")
    g.add_argument("--slurm-walltime", default="02:00:00", help="walltime per job (default 2 h)")
    g.add_argument("--slurm-jobs", type=int, default=1, help="number of jobs (default 1)")
    g.add_argument("--slurm-prologue", action="append", default=[], metavar="LINE",
                   help="shell line run in each job before the worker starts, e.g. "
                   "'source ~/venvs/s2v/bin/activate' (repeatable)")  # fmt: skip


def cluster_from_args(args: argparse.Namespace) -> ClusterSpec | None:
    """The :class:`ClusterSpec` of the parsed options, or ``None`` for a serial run."""
    workers = getattr(args, "workers", None)
    scheduler = getattr(args, "scheduler", None)
    slurm = bool(getattr(args, "slurm", False))
    if workers is None and not scheduler and not slurm:
        return None
    return ClusterSpec(
        workers=workers,
        scheduler=scheduler,
        slurm=slurm,
        slurm_queue=args.slurm_queue,
        slurm_account=args.slurm_account,
        slurm_cores=args.slurm_cores,
        slurm_memory=args.slurm_memory,
        slurm_walltime=args.slurm_walltime,
        slurm_jobs=args.slurm_jobs,
        slurm_prologue=list(args.slurm_prologue or []),
    ).validate()


def _import_distributed():
    try:
        import distributed
    except ImportError:  # pragma: no cover - a dependency of the project
        raise S2VError(
            "Dask distributed is not installed: pip install 'dask[distributed]'"
        ) from None
    return distributed


def _slurm_cluster(spec: ClusterSpec):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise S2VError(
            "--slurm needs dask-jobqueue, which is not installed: pip install dask-jobqueue"
        ) from None
    kwargs: dict[str, Any] = {
        "cores": spec.slurm_cores,
        "processes": spec.slurm_cores,  # one single-threaded worker process per core
        "memory": spec.slurm_memory,
        "walltime": spec.slurm_walltime,
        "job_script_prologue": list(spec.slurm_prologue),
    }
    if spec.slurm_queue:
        kwargs["queue"] = spec.slurm_queue
    if spec.slurm_account:
        kwargs["account"] = spec.slurm_account
    try:
        cluster = SLURMCluster(**kwargs)
        cluster.scale(jobs=spec.slurm_jobs)
    except (OSError, ValueError, RuntimeError) as exc:  # no sbatch, bad memory string...
        raise S2VError(f"cannot start the SLURM cluster: {exc}") from None
    return cluster


@contextmanager
def open_client(spec: ClusterSpec) -> Iterator[Any]:
    """A connected ``distributed.Client`` for ``spec``; the cluster it started is closed after.

    Raises
    ------
    S2VError
        Bad options, an unreachable scheduler, or dask-jobqueue missing for ``--slurm``.
    """
    spec.validate()
    distributed = _import_distributed()
    cluster = None
    # distributed logs its start-up and shutdown at INFO; keep them out of the CLI's output
    # unless the user asked for debug logging.
    dlog = logging.getLogger("distributed")
    old_level = dlog.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        dlog.setLevel(logging.WARNING)
    try:
        if spec.scheduler:
            try:
                client = distributed.Client(spec.scheduler, timeout=spec.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise S2VError(f"cannot reach the Dask scheduler {spec.scheduler}: {exc}") from None
        else:
            if spec.slurm:
                cluster = _slurm_cluster(spec)
            else:
                cluster = distributed.LocalCluster(
                    n_workers=spec.workers,
                    threads_per_worker=1,
                    processes=spec.processes,
                    dashboard_address=":0",  # a free port: runs side by side never clash
                    silence_logs=logging.WARNING,
                )
            client = distributed.Client(cluster)
        log.info("running on %s", spec.describe())
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
        dlog.setLevel(old_level)


def run_tasks(
    client: Any,
    fn: Callable[..., Any],
    calls: Sequence[tuple[tuple, dict]],
    *,
    names: Sequence[str],
    desc: str,
    progress: bool = True,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*args, **kwargs)`` for each call on the cluster; yield ``(index, result)``.

    Results come in completion order. A task that raised (or whose worker died) yields the
    exception instead of a result, so the caller decides how to report it. At most
    ``max_in_flight`` tasks are on the cluster at a time.
    """
    from tqdm.auto import tqdm

    distributed = _import_distributed()
    run_id = uuid.uuid4().hex[:8]
    pending = iter(range(len(calls)))
    index: dict[str, int] = {}

    def submit(i: int):
        args, kwargs = calls[i]
        key = f"{desc}-{run_id}-{i}-{names[i]}"
        fut = client.submit(fn, *args, key=key, pure=False, retries=0, **kwargs)
        index[fut.key] = i
        return fut

    first = [submit(i) for _, i in zip(range(max_in_flight), pending, strict=False)]
    queue = distributed.as_completed(first)
    with tqdm(total=len(calls), desc=desc, unit="night", disable=not progress) as bar:
        for fut in queue:
            i = index.pop(fut.key)
            try:
                result = fut.result()
            except Exception as exc:  # the task raised or its worker died: report, go on
                result = exc
            finally:
                fut.release()
            nxt = next(pending, None)
            if nxt is not None:
                queue.add(submit(nxt))
            bar.update(1)
            yield i, result


def worker_failure(exc: BaseException) -> str:
    """The message of a task that raised or whose worker was lost."""
    name = type(exc).__name__
    text = str(exc) or name
    return text if isinstance(exc, S2VError) else f"{name}: {text}"


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
        import torch

        from s2v_core.inference.predict import load_classifier

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
        :func:`s2v_core.cli.heads.embed_one`), ``"skipped"`` when the night lacks the requested
        modalities, or ``"failed"``; ``error`` holds the reason. Never raises for a bad night.
    """
    from s2v_core.cli.heads import embed_one
    from s2v_core.night import Night

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
    key_file.write_text(json.dumps(key, indent=1))


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
    from s2v_core.cli.heads import night_info
    from s2v_core.cohort.store import CohortStore

    store = CohortStore(store_dir)
    root = str(store.path.resolve())
    model_dir = str(Path(model_dir).resolve())
    if model_name is None:
        from s2v_core.inference.predict import model_id

        model_name = model_id(model_dir)
    out = Path(out)
    parts = out.with_name(out.name + PARTS_SUFFIX)
    key = {"store": root, "model": model_name,
           "modalities": None if modalities is None else list(modalities)}  # fmt: skip
    _parts_ready(parts, key)

    night_ids = store.nights(split)
    infos = {}
    for nid in night_ids:
        e = store.entry(nid)
        infos[nid] = night_info(nid, e.subject, e.site, e.age, e.sex, e.split)
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

