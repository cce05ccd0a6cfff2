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
* One task per night. The task functions (:func:`s2v_core.cohort.prepare.prepare_one`,
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
  (:func:`s2v_core.inference.embed.embed_one`), so distributed and serial outputs are equal.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from s2v_core.errors import S2VError

__all__ = [
    "ClusterSpec",
    "MAX_IN_FLIGHT",
    "open_client",
    "run_tasks",
    "worker_failure",
]

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64
"""Default number of tasks submitted to the cluster at a time."""


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
