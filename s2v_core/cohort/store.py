"""The preprocessed cohort store: canonical nights on disk plus a manifest.

Layout of a store folder::

    store/
      manifest.csv          one row per prepared night (see :class:`StoreEntry`)
      failures.csv          nights of the last run that could not be prepared, with the reason
      nights/<night>/       Night.save() output (<modality>.npy, valid.npy, stages.npy, night.json)
                            plus scaling.json = {modality: [median, iqr]} (robust per-night scaling)

:func:`prepare_one` turns one metadata row into one night folder and is a pure function of its
arguments (it reads the source, writes only its own folder and returns the manifest row), so a
cohort can be prepared by mapping it over a cluster; :func:`prepare_store` is the driver, serial
or on Dask workers (``cluster=``, see :mod:`s2v_core.cohort.cluster`), and the only writer of the manifest.
Sources are a flat folder (``metadata.csv`` or EDF/BDF files) or an NSRR download
(:mod:`s2v_core.cohort.nsrr`).
A night is written to a temporary folder and renamed into place, so an interrupted run never
leaves a half-written night that later looks finished.

Examples
--------
>>> table = prepare_store("cohort/", "store/")  # doctest: +SKIP
>>> store = CohortStore("store/")  # doctest: +SKIP
>>> store.nights("train")[:2], store.night("n0001").modalities  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from s2v_core.errors import InputFileError, S2VError
from s2v_core.io.metadata import read_metadata_csv
from s2v_core.modalities import MODALITIES
from s2v_core.night import Night, NightMeta
from s2v_core.recording.loading import load_night

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names, in the order of the ``fractions`` of :func:`split_for_subject`."""

HYPNOGRAM_SUFFIXES: tuple[str, ...] = (".xml", "-nsrr.xml", ".csv", "-Hypnogram.edf", ".txt", ".st")
"""Hypnogram names tried next to ``<stem>.edf`` when a source folder has no metadata table."""

_TMP_PREFIX = ".tmp-"
_DONE_FILES = ("night.json", "scaling.json")  # scaling.json is written last: both => finished


@dataclass
class StoreEntry:
    """One prepared night, as a row of ``manifest.csv``. Unknown values are ``None``."""

    night: str  # night id, also the folder name under nights/
    subject: str  # subject id (the night id when unknown: one night per subject)
    site: str | None  # acquisition site / cohort
    age: float | None  # years
    sex: str | None  # "M" or "F"
    ahi: float | None  # apnea-hypopnea index, events/h
    n_epochs: int  # 30-s epochs
    modalities: tuple[str, ...]  # modalities with at least one valid epoch, canonical order
    split: str  # "train", "val" or "test" (from the subject, see split_for_subject)


def split_for_subject(
    subject: str, *, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> str:
    """Assign a subject to ``"train"``, ``"val"`` or ``"test"``, deterministically.

    The split depends only on ``(seed, subject)`` through a SHA-256 hash, so a subject keeps its
    split whatever other subjects exist, across runs and machines, and all nights of a subject
    land in the same split.

    Parameters
    ----------
    subject : str
        Subject id.
    seed : int
        Changes the assignment of every subject.
    fractions : tuple of 3 floats
        Expected shares of train, val and test; non-negative, summing to 1.

    Examples
    --------
    >>> split_for_subject("s001") == split_for_subject("s001")
    True
    """
    ok = len(fractions) == 3 and min(fractions) >= 0 and math.isclose(sum(fractions), 1.0)
    if not ok:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    digest = hashlib.sha256(f"{seed}\x00{subject}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1)
    cut = np.cumsum(fractions)
    return SPLITS[min(int(np.searchsorted(cut, u, side="right")), 2)]


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text if text and text.lower() != "nan" else None


def _number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _check_night_id(night: str | None) -> str:
    if not night or night.startswith(".") or any(c in night for c in "/\\\x00"):
        raise ValueError(f"night id {night!r} cannot be a folder name (empty, '.', or a '/')")
    return night


def _sex(value) -> str | None:
    text = (_text(value) or "").upper()
    return text if text in ("M", "F") else None


def _entry_row(row: dict, n_epochs: int, modalities: tuple[str, ...], seed: int) -> dict:
    night = str(row["night"])
    subject = _text(row.get("subject")) or night
    entry = StoreEntry(
        night=night,
        subject=subject,
        site=_text(row.get("site")),
        age=_number(row.get("age")),
        sex=_sex(row.get("sex")),
        ahi=_number(row.get("ahi")),
        n_epochs=int(n_epochs),
        modalities=tuple(modalities),
        split=_text(row.get("split")) or split_for_subject(subject, seed=seed),
    )
    return asdict(entry)


def _finished(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _DONE_FILES)


def _resolve(source_dir: Path, name) -> Path | None:
    text = _text(name)
    if text is None:
        return None
    p = Path(text)
    return p if p.is_absolute() else source_dir / p


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
        (computed with :func:`split_for_subject` when absent).
    source_dir, store_dir : path
        Where the recordings are; the store root.
    overwrite : bool
        Redo a night that is already finished (``night.json`` and ``scaling.json`` present).
    seed : int
        Seed of the subject split.

    Returns
    -------
    dict
        The :class:`StoreEntry` fields plus ``psg_file``, ``status`` (``"done"``, ``"skipped"``
        or ``"failed"``) and ``error`` (the message of a failure, else ``""``). Never raises for
        a bad recording: the failure is reported in the row.
    """
    source_dir, store_dir = Path(source_dir), Path(store_dir)
    night_id = _text(row.get("night"))
    base = {"night": night_id, "psg_file": _text(row.get("psg_file")) or ""}
    try:
        night_id = _check_night_id(night_id)
        nights_dir = store_dir / "nights"
        final = nights_dir / night_id
        if _finished(final) and not overwrite:
            scaling = json.loads((final / "scaling.json").read_text())
            n_epochs = len(np.load(final / "stages.npy", mmap_mode="r"))
            mods = tuple(m for m in MODALITIES if m in scaling)
            return {
                **_entry_row(row, n_epochs, mods, seed),
                **base,
                "status": "skipped",
                "error": "",
            }
        psg = _resolve(source_dir, row.get("psg_file"))
        if psg is None:
            raise ValueError("no psg_file given for this night")
        meta = NightMeta(
            night_id=night_id,
            subject=_text(row.get("subject")) or night_id,
            site=_text(row.get("site")),
            age=_number(row.get("age")),
            sex=_sex(row.get("sex")),
        )
        night = load_night(psg, _resolve(source_dir, row.get("hypnogram_file")), meta=meta)
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
        entry = _entry_row(row, night.n_epochs, night.modalities, seed)
        return {**entry, **base, "status": "done", "error": ""}
    except Exception as exc:  # one bad night must never stop a cohort run
        if not isinstance(exc, (S2VError, OSError, ValueError)):
            log.exception("unexpected error preparing night %s", night_id)
        message = str(exc) or type(exc).__name__
        log.warning("night %s failed: %s", night_id, message)
        return {**base, "status": "failed", "error": message}


def _is_recording(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and name.endswith((".edf", ".bdf")) and not name.endswith("-hypnogram.edf")


def _hypnogram_next_to(psg: Path) -> Path | None:
    for suffix in HYPNOGRAM_SUFFIXES:
        candidate = psg.with_name(psg.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


LAYOUTS: tuple[str, ...] = ("auto", "flat", "nsrr")
"""Source layouts of :func:`discover_rows`."""


def discover_rows(
    source: str | Path, metadata_csv: str | Path | None = None, *, layout: str = "auto"
) -> list[dict]:
    """The rows :func:`prepare_store` will prepare from a source folder.

    ``layout="flat"``: with a table that has a ``psg_file`` column (``metadata_csv``, else
    ``source/metadata.csv``), one row per table row. Otherwise every ``*.edf``/``*.bdf`` of the
    folder (not ``*-Hypnogram.edf``) is a night named by its stem, with the hypnogram found next
    to it (see :data:`HYPNOGRAM_SUFFIXES`) and demographics joined from the table when there is
    one.

    ``layout="nsrr"``: an NSRR download (SHHS, MESA, MrOS, CFS, WSC folder conventions, or a
    folder of several), read by :func:`s2v_core.cohort.nsrr.discover_nsrr`.

    ``layout="auto"`` (default): NSRR when the folder is an NSRR tree (or holds some) and no
    metadata table is given, else flat.
    """
    source = Path(source)
    if not source.is_dir():
        raise InputFileError(source, "source is not a folder")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if layout == "auto":
        from s2v_core.cohort.nsrr import is_nsrr_layout

        own_table = metadata_csv is not None or (source / "metadata.csv").is_file()
        layout = "nsrr" if not own_table and is_nsrr_layout(source) else "flat"
    if layout == "nsrr":
        from s2v_core.cohort.nsrr import discover_nsrr

        if metadata_csv is not None:
            raise ValueError("--metadata does not apply to an NSRR layout (it reads datasets/)")
        return discover_nsrr(source)
    table_path = Path(metadata_csv) if metadata_csv is not None else source / "metadata.csv"
    raw = demo = None
    if table_path.is_file():
        try:
            raw = pd.read_csv(table_path, sep=None, engine="python", dtype=str)
        except (OSError, ValueError) as exc:  # pandas parser errors are ValueErrors
            raise InputFileError(table_path, f"cannot read metadata table: {exc}") from None
        demo, _ = read_metadata_csv(table_path)
    elif metadata_csv is not None:
        raise InputFileError(table_path, "metadata table not found")
    lower = {} if raw is None else {c.lower().strip(): c for c in raw.columns}
    if raw is not None and "psg_file" in lower:
        rows = demo.reset_index(drop=True).to_dict("records")
        for r, i in zip(rows, range(len(raw)), strict=True):
            for col in ("psg_file", "hypnogram_file", "ahi", "split"):
                if col in lower:
                    r[col] = raw[lower[col]].iloc[i]
        return rows
    ahi = {}
    if raw is not None and "ahi" in lower:
        ahi = dict(zip(demo["night"], raw[lower["ahi"]], strict=True))
    files = sorted(p for p in source.iterdir() if _is_recording(p))
    rows = []
    for p in files:
        row = {"night": p.stem, "psg_file": p.name, "ahi": ahi.get(p.stem)}
        hyp = _hypnogram_next_to(p)
        row["hypnogram_file"] = hyp.name if hyp else None
        if demo is not None and p.stem in demo.index:
            rec = demo.loc[p.stem]
            row.update({k: rec[k] for k in ("subject", "site", "age", "sex")})
        rows.append(row)
    return rows


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _manifest_frame(rows: list[dict]) -> pd.DataFrame:
    cols = [f.name for f in fields(StoreEntry)] + ["psg_file"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["modalities"] = [
        ";".join(m) if isinstance(m, tuple | list) else m for m in frame["modalities"]
    ]
    return frame


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
) -> pd.DataFrame:
    """Prepare every night of a source folder into a cohort store (resumable).

    Parameters
    ----------
    source : path
        Folder with ``metadata.csv`` (columns night, subject, site, age, sex, ahi, psg_file,
        hypnogram_file; paths relative to the folder), with EDF/BDF files, or an NSRR download
        (see :func:`discover_rows`).
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
        ``"auto"``, ``"flat"`` or ``"nsrr"`` (see :func:`discover_rows`).
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
    """
    from tqdm.auto import tqdm

    source, store = Path(source), Path(store)
    rows = discover_rows(source, metadata_csv, layout=layout)
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
        night = _text(row.get("night"))
        if night in seen:
            error = f"duplicate night id {night!r}"
            psg = _text(row.get("psg_file")) or ""
            results[i] = {"night": night, "psg_file": psg, "status": "failed", "error": error}
            continue
        seen.add(night)
        done = night is not None and not overwrite and _finished(nights_dir / night)
        if serial or done:  # a finished night is only read back: no need to ship it
            results[i] = prepare_one(row, source, store, overwrite=overwrite, seed=seed)
        else:
            pending.append(i)
    if pending:
        from s2v_core.cohort.cluster import open_client, run_tasks, worker_failure

        src, dst = str(source.resolve()), str(store.resolve())
        calls = [((rows[i], src, dst), {"overwrite": overwrite, "seed": seed}) for i in pending]
        names = [str(_text(rows[i].get("night"))) for i in pending]
        if progress:
            print(f"preparing {len(pending)} night(s) on {cluster.describe()}")
        with open_client(cluster) as client:
            for k, res in run_tasks(client, prepare_one, calls, names=names, desc="prepare",
                                    progress=progress, max_in_flight=cluster.max_in_flight):  # fmt: skip
                i = pending[k]
                if isinstance(res, BaseException):  # the worker died or the task could not run
                    psg = _text(rows[i].get("psg_file")) or ""
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
        old = pd.read_csv(old_path, dtype={"night": str, "subject": str, "site": str})
        keep = old[~old["night"].isin(manifest["night"]) & ~old["night"].isin(run["night"])]
        keep = keep[[_finished(nights_dir / str(n)) for n in keep["night"]]]
        manifest = pd.concat([keep, manifest], ignore_index=True) if len(keep) else manifest
    _write_csv_atomic(manifest, old_path)
    failed = run.loc[run["status"] == "failed", ["night", "psg_file", "error"]]
    _write_csv_atomic(failed, store / "failures.csv")
    summary = {s: int((run["status"] == s).sum()) for s in ("done", "skipped", "failed")}
    run.attrs["summary"] = summary
    text = ", ".join(f"{v} {k}" for k, v in summary.items()) + f"; store: {store}"
    log.info("prepare_store: %s", text)
    if progress:
        print(text)
    return run


def _cell_text(value) -> str | None:
    """A manifest text cell, or None when empty or missing (pandas 2 and 3 read blanks differently)."""
    return value if isinstance(value, str) and value else None


class CohortStore:
    """Read access to a prepared store; nights are memory-mapped.

    Parameters
    ----------
    path : path
        Store root holding ``manifest.csv`` and ``nights/``.

    Attributes
    ----------
    manifest : pandas.DataFrame
        The manifest, indexed by night id; ``modalities`` is a tuple per night.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mpath = self.path / "manifest.csv"
        if not mpath.is_file():
            raise InputFileError(
                self.path, "not a cohort store: no manifest.csv (prepare it with prepare_store)"
            )
        frame = pd.read_csv(
            mpath,
            dtype={"night": str, "subject": str, "site": str, "sex": str, "split": str},
            keep_default_na=False,
            na_values={"age": [""], "ahi": [""]},
        )
        missing_cols = [f.name for f in fields(StoreEntry) if f.name not in frame.columns]
        if missing_cols:
            raise InputFileError(mpath, f"manifest lacks columns: {', '.join(missing_cols)}")
        frame["modalities"] = [
            tuple(m for m in str(v).split(";") if m) for v in frame["modalities"]
        ]
        for col in ("site", "sex"):
            frame[col] = frame[col].replace("", None)
        bad = [n for n in frame["night"] if not _finished(self.path / "nights" / n)]
        if bad:
            raise InputFileError(
                mpath,
                f"{len(bad)} night folder(s) missing or unfinished under nights/: "
                + ", ".join(bad[:5])
                + (" ..." if len(bad) > 5 else "")
                + " (re-run prepare_store)",
            )
        self.manifest = frame.set_index("night", drop=False)

    def __len__(self) -> int:
        return len(self.manifest)

    def folder(self, night_id: str) -> Path:
        """Folder of one night; ``ValueError`` for an id not in the manifest."""
        if night_id not in self.manifest.index:
            raise ValueError(f"unknown night {night_id!r}; the store has {len(self)} nights")
        return self.path / "nights" / night_id

    def night(self, night_id: str) -> Night:
        """The night, with its arrays memory-mapped (read-only)."""
        return Night.load(self.folder(night_id), mmap=True)

    def scaling(self, night_id: str) -> dict[str, tuple[float, float]]:
        """``{modality: (median, iqr)}`` of the night's robust scaling."""
        doc = json.loads((self.folder(night_id) / "scaling.json").read_text())
        return {m: (float(v[0]), float(v[1])) for m, v in doc.items()}

    def entry(self, night_id: str) -> StoreEntry:
        """The manifest row of one night as a :class:`StoreEntry`."""
        self.folder(night_id)
        r = self.manifest.loc[night_id]
        return StoreEntry(
            **{f.name: r[f.name] for f in fields(StoreEntry)}
            | {"age": _number(r["age"]), "ahi": _number(r["ahi"]), "n_epochs": int(r["n_epochs"])}
            | {k: _cell_text(r[k]) for k in ("subject", "site", "sex")}
        )

    def nights(self, split: str | None = None) -> list[str]:
        """Night ids in manifest order, optionally of one split."""
        if split is None:
            return list(self.manifest["night"])
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return list(self.manifest.loc[self.manifest["split"] == split, "night"])

    def site_index(self) -> dict[str, int]:
        """``{site: code}`` over the store's known sites, sorted by name (unknown site = -1)."""
        sites = sorted({s for s in self.manifest["site"] if isinstance(s, str) and s})
        return {s: i for i, s in enumerate(sites)}

    @staticmethod
    def sex_code(sex: str | None) -> int:
        """0 for ``"F"``, 1 for ``"M"``, -1 when unknown."""
        return {"F": 0, "M": 1}.get(sex if isinstance(sex, str) else "", -1)
