"""Preparing a cohort store from a source folder (``s2v prepare``), serially or on Dask.

:func:`prepare_one` turns one metadata row into one night folder and is a pure function of its
arguments (it reads the source, writes only its own folder and returns the manifest row), so a
cohort can be prepared by mapping it over a cluster; :func:`prepare_store` is the driver, serial
or on Dask workers (``cluster=``, see :mod:`s2v_core.cohort.cluster`), and the only writer of the
manifest. A night is written to a temporary folder and renamed into place, so an interrupted run
never leaves a half-written night that later looks finished.

Examples
--------
>>> table = prepare_store("cohort/", "store/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from s2v_core.cohort.cluster import open_client, run_tasks, worker_failure
from s2v_core.cohort.sources import discover_rows, no_recording_error
from s2v_core.cohort.store import (
    CohortStore,
    StoreEntry,
    check_night_id,
    is_finished,
    number_or_none,
    sex_or_none,
    split_for_subject,
    text_or_none,
)
from s2v_core.errors import S2VError
from s2v_core.io.atomic import write_atomic
from s2v_core.io.lock import locked_folder
from s2v_core.modalities import MODALITIES
from s2v_core.night import Night, NightMeta
from s2v_core.recording.registry import load_recording
from s2v_core.sanitize.cells import read_csv, to_csv
from s2v_core.synth.acquisition import randomise_night

__all__ = [
    "AUGMENT_MARK",
    "LABELLED",
    "augmented_rows",
    "combine_stores",
    "describe_labels",
    "label_summary",
    "prepare_one",
    "prepare_store",
]

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"


def _entry_row(row: dict, n_epochs: int, modalities: tuple[str, ...], seed: int) -> dict:
    night = str(row["night"])
    subject = text_or_none(row.get("subject")) or text_or_none(row.get("augment_of")) or night
    entry = StoreEntry(
        night=night,
        subject=subject,
        site=text_or_none(row.get("site")),
        age=number_or_none(row.get("age")),
        sex=sex_or_none(row.get("sex")),
        ahi=number_or_none(row.get("ahi")),
        n_epochs=int(n_epochs),
        modalities=tuple(modalities),
        split=text_or_none(row.get("split")) or split_for_subject(subject, seed=seed),
    )
    return asdict(entry)


def _resolve(source_dir: Path, name) -> Path | None:
    text = text_or_none(name)
    if text is None:
        return None
    p = Path(text)
    return p if p.is_absolute() else source_dir / p


AUGMENT_MARK = "~aug"
"""Night ids of randomised training copies: ``<night>~aug<k>`` (see ``prepare_store(augment=K)``)."""


def prepare_one(
    row: dict,
    source_dir: str | Path,
    store_dir: str | Path,
    *,
    overwrite: bool = False,
    seed: int = 0,
) -> dict:
    """Prepare one night: load it, save it under ``store_dir/nights/<night>/``, return its row.

    Parameters
    ----------
    row : dict
        ``night``, ``psg_file`` (relative to ``source_dir`` or absolute), optional
        ``hypnogram_file``, ``subject``, ``site``, ``age``, ``sex``, ``ahi`` and ``split``
        (computed with :func:`split_for_subject` when absent). A randomised training copy also
        has ``augment_of`` (the original night id) and ``augment_seed``.
    source_dir, store_dir : path
        Where the recordings are; the store root.
    overwrite : bool
        Redo a night that is already finished (``night.json`` and ``scaling.json`` present).
    seed : int
        Seed of the subject split.

    Returns
    -------
    dict
        The :class:`StoreEntry` fields plus ``psg_file``, ``status`` (``"done"``, ``"skipped"``,
        ``"omitted"`` for a randomised copy of a night outside the train split, or ``"failed"``)
        and ``error`` (the message of a failure, else ``""``). Never raises for a bad recording:
        the failure is reported in the row.
    """
    source_dir, store_dir = Path(source_dir), Path(store_dir)
    night_id = text_or_none(row.get("night"))
    base = {"night": night_id, "psg_file": text_or_none(row.get("psg_file")) or ""}
    try:
        night_id = check_night_id(night_id)
        final = store_dir / "nights" / night_id
        if is_finished(final) and not overwrite:
            scaling = json.loads((final / "scaling.json").read_text())
            stages = np.load(final / "stages.npy", mmap_mode="r")
            n_epochs, labelled = len(stages), int(np.count_nonzero(np.asarray(stages) >= 0))
            mods = tuple(m for m in MODALITIES if m in scaling)
            return {**_entry_row(row, n_epochs, mods, seed), **base, "labelled_epochs": labelled,
                    "status": "skipped", "error": ""}  # fmt: skip
        night = _load_row(row, source_dir, night_id)
        known = {k: getattr(night.meta, k) for k in ("subject", "site", "age", "sex")}  # e.g. from a WFDB header
        filled = {**row, **{k: v for k, v in known.items() if v is not None and text_or_none(row.get(k)) is None}}
        entry = _entry_row(filled, night.n_epochs, night.modalities, seed)
        if row.get("augment_of"):
            if entry["split"] != "train":
                return {**entry, **base, "status": "omitted", "error": ""}
            night = randomise_night(night, np.random.default_rng([int(row.get("augment_seed") or 0),
                                                                   zlib.crc32(night_id.encode())]))  # fmt: skip
        _write_night(night, store_dir / "nights", night_id)
        labelled = int(np.count_nonzero(np.asarray(night.stages) >= 0))  # 0: no hypnogram was paired
        return {**entry, **base, "labelled_epochs": labelled, "status": "done", "error": ""}
    except Exception as exc:  # one bad night must never stop a cohort run
        if not isinstance(exc, (S2VError, OSError, ValueError)):
            log.exception("unexpected error preparing night %s", night_id)
        message = str(exc) or type(exc).__name__
        log.warning("night %s failed: %s", night_id, message)
        return {**base, "status": "failed", "error": message}


def _load_row(row: dict, source_dir: Path, night_id: str) -> Night:
    psg = _resolve(source_dir, row.get("psg_file"))
    if psg is None:
        raise ValueError("no psg_file given for this night")
    meta = NightMeta(
        night_id=night_id,
        subject=text_or_none(row.get("subject")),
        site=text_or_none(row.get("site")),
        age=number_or_none(row.get("age")),
        sex=sex_or_none(row.get("sex")),
    )
    return load_recording(psg, _resolve(source_dir, row.get("hypnogram_file")), meta=meta)


def _write_night(night: Night, nights_dir: Path, night_id: str) -> None:
    """Save a night and its scaling in a temporary folder, then rename it into place."""
    final = nights_dir / night_id
    nights_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{night_id}-", dir=nights_dir))
    try:
        night.save(tmp)
        raw = night.scaling_stats()
        stats = {m: list(raw[m]) for m in MODALITIES if m in raw}  # canonical order
        (tmp / "scaling.json").write_text(json.dumps(stats, indent=1))
        if final.exists():  # stale or overwritten: replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def augmented_rows(rows: list[dict], copies: int, seed: int = 0) -> list[dict]:
    """``copies`` randomised training copies of every row (``<night>~aug<k>``, same subject)."""
    out = []
    for row in rows:
        night = text_or_none(row.get("night"))
        if night is None or copies < 1:
            continue
        for k in range(1, copies + 1):
            out.append({**row, "night": f"{night}{AUGMENT_MARK}{k}", "augment_of": night, "augment_seed": seed})
    return out


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    # a temporary sibling, removed on any failure: a full disk leaves the previous file intact
    write_atomic(path, lambda tmp: to_csv(frame, tmp, index=False))  # text cells that a spreadsheet would run get a ' (sanitize.cells)


def _manifest_frame(rows: list[dict]) -> pd.DataFrame:
    cols = [f.name for f in fields(StoreEntry)] + ["psg_file", LABELLED]
    frame = pd.DataFrame(rows, columns=cols)
    frame["modalities"] = [
        ";".join(m) if isinstance(m, tuple | list) else m for m in frame["modalities"]
    ]
    return frame


@locked_folder("store", "s2v prepare")  # one writer per store; a second is refused (io.lock)
def prepare_store(
    source: str | Path,
    store: str | Path,
    *,
    metadata_csv: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    layout: str = "auto",
    cluster=None,
    augment: int = 0,
    augment_seed: int = 0,
) -> pd.DataFrame:
    """Prepare every night of a source folder into a cohort store (resumable).

    Parameters
    ----------
    source : path
        Folder with ``metadata.csv`` (columns night, subject, site, age, sex, ahi, psg_file,
        hypnogram_file; paths relative to the folder), with recordings of any kind
        :func:`s2v_core.recording.registry.find_recordings` finds, an NSRR download or a BIDS
        dataset (see :func:`discover_rows`).
    store : path
        Store root; created if needed. Finished nights are skipped unless ``overwrite``.
    metadata_csv : path, optional
        Demographics (or a full table with ``psg_file``) used instead of ``source/metadata.csv``.
    seed : int
        Seed of the subject-level split.
    progress : bool
        Show a tqdm progress bar and print the summary.
    overwrite : bool
        Redo nights that are already prepared.
    layout : str
        ``"auto"``, ``"flat"``, ``"nsrr"`` or ``"bids"`` (see :func:`discover_rows`).
    augment : int
        Also write this many randomised copies of every train-split night (domain randomisation,
        :func:`s2v_core.synth.acquisition.randomise_night`), as nights ``<night>~aug<k>`` of the
        same subject; copies of val/test nights are not written.
    augment_seed : int
        Seed of the randomisation (with the night id, so a copy is reproducible on its own).
    cluster : s2v_core.cohort.cluster.ClusterSpec, optional
        Prepare the nights on a Dask cluster (:mod:`s2v_core.cohort.cluster`); serial when None. The
        nights and the manifest are the same either way; the manifest is written here only.

    Returns
    -------
    pandas.DataFrame
        One row per night of this run (manifest fields, ``status``, ``error``);
        ``frame.attrs["summary"]`` counts the statuses. ``store/manifest.csv`` gets the prepared
        nights (earlier manifest rows of nights not in this run are kept while their folder
        exists) and ``store/failures.csv`` the failures.

    Raises
    ------
    S2VError
        The folder holds no recording (one line: :func:`s2v_core.cohort.sources.no_recording_error`).
    """
    source, store = Path(source), Path(store)
    rows = discover_rows(source, metadata_csv, layout=layout)
    if not rows:
        raise no_recording_error(source)
    if augment < 0:
        raise S2VError(f"augment must be >= 0, got {augment}")
    rows = rows + augmented_rows(rows, augment, augment_seed)
    nights_dir = store / "nights"
    nights_dir.mkdir(parents=True, exist_ok=True)
    for stale in nights_dir.glob(f"{_TMP_PREFIX}*"):  # left by an interrupted run
        log.info("removing unfinished %s", stale.name)
        shutil.rmtree(stale, ignore_errors=True)
    results: list[dict | None] = [None] * len(rows)
    seen, pending = set(), []
    serial = cluster is None
    for i, row in enumerate(
        tqdm(rows, desc="preparing nights", unit="night", disable=not (progress and serial))
    ):
        night = text_or_none(row.get("night"))
        if night in seen:
            error = f"duplicate night id {night!r}"
            psg = text_or_none(row.get("psg_file")) or ""
            results[i] = {"night": night, "psg_file": psg, "status": "failed", "error": error}
            continue
        seen.add(night)
        done = night is not None and not overwrite and is_finished(nights_dir / night)
        if serial or done:  # a finished night is only read back: no need to ship it
            results[i] = prepare_one(row, source, store, overwrite=overwrite, seed=seed)
        else:
            pending.append(i)
    if pending:
        src, dst = str(source.resolve()), str(store.resolve())
        calls = [((rows[i], src, dst), {"overwrite": overwrite, "seed": seed}) for i in pending]
        names = [str(text_or_none(rows[i].get("night"))) for i in pending]
        if progress:
            print(f"preparing {len(pending)} night(s) on {cluster.describe()}")
        with open_client(cluster) as client:
            for k, res in run_tasks(client, prepare_one, calls, names=names, desc="prepare",
                                    progress=progress, max_in_flight=cluster.max_in_flight):  # fmt: skip
                i = pending[k]
                if isinstance(res, BaseException):  # the worker died or the task could not run
                    psg = text_or_none(rows[i].get("psg_file")) or ""
                    res = {"night": names[k], "psg_file": psg, "status": "failed",
                           "error": worker_failure(res)}  # fmt: skip
                    log.warning("night %s failed: %s", names[k], res["error"])
                results[i] = res
    return _finish_run(results, store, nights_dir, progress)


def _finish_run(results: list, store: Path, nights_dir: Path, progress: bool) -> pd.DataFrame:
    """Write manifest.csv and failures.csv for a run's results; return the run table."""
    run = pd.DataFrame(results)
    for col in ("night", "status", "error"):
        if col not in run:
            run[col] = ""
    ok = [r for r in results if r["status"] in ("done", "skipped")]
    manifest = _manifest_frame(ok)
    old_path = store / "manifest.csv"
    if old_path.is_file():
        old = read_csv(old_path, dtype={"night": str, "subject": str, "site": str})  # undoes the '
        keep = old[~old["night"].isin(manifest["night"]) & ~old["night"].isin(run["night"])]
        keep = keep[[is_finished(nights_dir / str(n)) for n in keep["night"]]]
        manifest = pd.concat([keep, manifest], ignore_index=True) if len(keep) else manifest
    _write_csv_atomic(manifest, old_path)
    failed = run.loc[run["status"] == "failed", ["night", "psg_file", "error"]]
    _write_csv_atomic(failed, store / "failures.csv")
    summary = {s: int((run["status"] == s).sum()) for s in ("done", "skipped", "failed")}
    run.attrs["labels"] = labels = label_summary(ok)
    if (run["status"] == "omitted").any():
        summary["omitted"] = int((run["status"] == "omitted").sum())  # randomised copies outside train
    run.attrs["summary"] = summary
    text = ", ".join(f"{v} {k}" for k, v in summary.items()) + describe_labels(labels) + f"; store: {store}"
    log.info("prepare_store: %s", text)
    if progress:
        print(text)
    return run


LABELLED = "labelled_epochs"
"""Manifest column: the night's scored epochs (0 when no hypnogram was paired with it)."""


def label_summary(rows: list[dict]) -> dict[str, int]:
    """``{"with_labels", "without_labels", "labelled_epochs"}`` over prepared rows (done or skipped)."""
    counts = [int(r.get(LABELLED) or 0) for r in rows]
    return {"with_labels": sum(c > 0 for c in counts), "without_labels": sum(c == 0 for c in counts),
            "labelled_epochs": sum(counts)}  # fmt: skip


def describe_labels(labels: dict[str, int]) -> str:
    """``; nights: 2 with labels (1,820 labelled epochs), 1 without a hypnogram`` ("" for no night)."""
    parts = []
    if labels["with_labels"]:
        parts.append(f"{labels['with_labels']} with labels ({labels['labelled_epochs']:,} labelled epochs)")
    if labels["without_labels"]:
        parts.append(f"{labels['without_labels']} without a hypnogram (no labelled epoch)")
    return f"; nights: {', '.join(parts)}" if parts else ""


def combine_stores(
    stores: Sequence[str | Path],
    out: str | Path,
    *,
    drop_subjects: Iterable[str] = (),
    split_of: Callable[[StoreEntry], str] | None = None,
) -> Path:
    """A store whose nights are those of ``stores`` (linked, not copied), with optional changes.

    Parameters
    ----------
    stores : paths
        Prepared stores; their night ids must not repeat.
    out : path
        The new store (created; must not hold a manifest yet).
    drop_subjects : iterable of str
        Subjects left out (e.g. the held-out subject of a leave-one-subject-out fold).
    split_of : callable, optional
        New split of each night from its :class:`StoreEntry` (default: keep the split).

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    if (out / "manifest.csv").exists():
        raise S2VError(f"{out}: already a store; combine into a new folder")
    dropped = set(drop_subjects)
    frames, seen = [], set()
    (out / "nights").mkdir(parents=True, exist_ok=True)
    for path in stores:
        store = CohortStore(path)
        rows = []
        for night in store.nights():
            entry = store.entry(night)
            if entry.subject in dropped:
                continue
            if night in seen:
                raise S2VError(f"night {night!r} is in more than one of the stores to combine")
            seen.add(night)
            row = asdict(entry)
            if split_of is not None:
                row["split"] = split_of(entry)
            os.symlink(store.folder(night).resolve(), out / "nights" / night, target_is_directory=True)
            rows.append(row)
        frames.append(_manifest_frame(rows))
    _write_csv_atomic(pd.concat(frames, ignore_index=True) if frames else _manifest_frame([]), out / "manifest.csv")
    return out
