"""Where a cohort's nights come from: a store, a folder of recordings, or one recording.

:func:`night_sources` is the one walker every cohort command uses (``s2v evaluate``, ``s2v embed``,
night heads): it turns a store, a folder or a file into :class:`NightSource` items whose nights
are loaded one at a time. :func:`discover_rows` lists the recordings of a source folder (a flat
folder with EDF/BDF files and hypnograms next to them or a ``metadata.csv``, or an NSRR tree); it
is also what ``s2v prepare`` prepares.

Examples
--------
>>> for src in night_sources("store/", split="test"):  # doctest: +SKIP
...     night = src.load()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2v_core.cohort.nsrr import discover_nsrr, is_nsrr_layout
from s2v_core.cohort.store import CohortStore, number_or_none, sex_or_none, text_or_none
from s2v_core.errors import InputFileError, S2VError
from s2v_core.inference.embed import night_info
from s2v_core.io.metadata import read_metadata_csv
from s2v_core.io.text_limits import read_user_csv
from s2v_core.night import Night, NightMeta
from s2v_core.recording.registry import is_dreams_text, load_recording
from s2v_core.sanitize.cells import unneutralise_frame

__all__ = [
    "HYPNOGRAM_SUFFIXES",
    "LAYOUTS",
    "NightSource",
    "discover_rows",
    "folder_sources",
    "is_store",
    "night_sources",
    "recording_source",
    "store_sources",
]

log = logging.getLogger(__name__)

HYPNOGRAM_SUFFIXES: tuple[str, ...] = (".xml", "-nsrr.xml", ".csv", "-Hypnogram.edf", ".txt", ".st")
"""Hypnogram names tried next to ``<stem>.edf`` when a source folder has no metadata table."""


def _recording_kind(p: Path) -> str | None:
    """The kind of recording ``p`` is (see :data:`~s2v_core.recording.registry.KINDS`), or None."""
    name = p.name.lower()
    if not p.is_file():
        return None
    if name.endswith((".edf", ".bdf")) and not name.endswith("-hypnogram.edf"):
        return "edf"
    if name.endswith(".ecg"):
        return "wfdb"
    if is_dreams_text(p):
        return "dreams-text"
    return None


def _hypnogram_next_to(psg: Path, kind: str = "edf") -> Path | None:
    """The hypnogram of a recording in a flat folder (none for WFDB: its ``.st`` is read with it)."""
    if kind == "wfdb":
        return None
    candidates = [psg.with_name(psg.stem + suffix) for suffix in HYPNOGRAM_SUFFIXES]
    candidates.append(psg.with_name(f"Hypnogram_{psg.stem}.txt"))  # the DREAMS convention
    for candidate in candidates:
        if candidate.is_file() and candidate != psg and not is_dreams_text(candidate):
            return candidate
    return None


def _flat_recordings(source: Path) -> list[tuple[str, Path, str]]:
    """``(night id, file, kind)`` of every recording of a flat folder; ids are the stems, or the
    file names where two recordings share a stem (``excerpt3.edf`` and ``excerpt3.txt``)."""
    found = [(p, k) for p in sorted(source.iterdir()) if (k := _recording_kind(p)) is not None]
    stems = [p.stem for p, _ in found]
    return [(p.stem if stems.count(p.stem) == 1 else p.name, p, k) for p, k in found]


LAYOUTS: tuple[str, ...] = ("auto", "flat", "nsrr")
"""Source layouts of :func:`discover_rows`."""


def discover_rows(
    source: str | Path, metadata_csv: str | Path | None = None, *, layout: str = "auto"
) -> list[dict]:
    """The rows :func:`prepare_store` will prepare from a source folder.

    ``layout="flat"``: with a table that has a ``psg_file`` column (``metadata_csv``, else
    ``source/metadata.csv``), one row per table row. Otherwise every recording of the folder is a
    night named by its stem: ``*.edf``/``*.bdf`` (not ``*-Hypnogram.edf``), WFDB beat files
    ``*.ecg`` (stages from the ``.st`` beside them) and DREAMS text excerpts; the hypnogram is
    found next to it (see :data:`HYPNOGRAM_SUFFIXES`, and ``Hypnogram_<stem>.txt``) and
    demographics are joined from the table when there is one.

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
        own_table = metadata_csv is not None or (source / "metadata.csv").is_file()
        layout = "nsrr" if not own_table and is_nsrr_layout(source) else "flat"
    if layout == "nsrr":
        if metadata_csv is not None:
            raise ValueError("--metadata does not apply to an NSRR layout (it reads datasets/)")
        return discover_nsrr(source)
    table_path = Path(metadata_csv) if metadata_csv is not None else source / "metadata.csv"
    raw = demo = None
    if table_path.is_file():
        try:
            raw = unneutralise_frame(
                read_user_csv(table_path, "metadata table", sep=None, engine="python", dtype=str)
            )
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
    rows = []
    for night, p, kind in _flat_recordings(source):
        row = {"night": night, "psg_file": p.name, "ahi": ahi.get(p.stem)}
        hyp = _hypnogram_next_to(p, kind)
        row["hypnogram_file"] = hyp.name if hyp else None
        if demo is not None and p.stem in demo.index:
            rec = demo.loc[p.stem]
            row.update({k: rec[k] for k in ("subject", "site", "age", "sex")})
        rows.append(row)
    return rows


# --- the one walker over a store, a folder or a recording ------------------------------------
@dataclass(frozen=True)
class NightSource:
    """One night of a cohort, with its metadata, loaded on demand.

    Attributes
    ----------
    night_id, subject, site : str or None
    age, ahi : float or None
    sex : str or None
        ``"M"``, ``"F"`` or None.
    split : str or None
        The store split; None outside a store.
    load : callable
        Returns the :class:`~s2v_core.night.Night` (reads the file or the store folder).
    """

    night_id: str
    subject: str | None
    site: str | None
    age: float | None
    sex: str | None
    ahi: float | None
    split: str | None
    load: Callable[[], Night]

    def info(self) -> dict[str, Any]:
        """Metadata columns of the tables written per night: unknown age is NaN, others None."""
        return night_info(self.night_id, self.subject, self.site, self.age, self.sex, self.split)


def is_store(path: str | Path) -> bool:
    """True for a cohort store folder (it holds ``manifest.csv``)."""
    return (Path(path) / "manifest.csv").is_file()


def store_sources(store: str | Path | CohortStore, split: str | None = None) -> list[NightSource]:
    """The nights of a cohort store (optionally one split), in manifest order.

    Raises
    ------
    S2VError
        The store has no night in ``split``.
    """
    cs = store if isinstance(store, CohortStore) else CohortStore(store)
    ids = cs.nights(split)
    if not ids:
        raise S2VError(f"{cs.path}: the store has no nights" + (f" in split {split!r}" if split else ""))
    out = []
    for n in ids:
        e = cs.entry(n)
        out.append(NightSource(n, e.subject, e.site, e.age, e.sex, e.ahi, e.split,
                               lambda n=n: cs.night(n)))  # fmt: skip
    return out


def _path_in(folder: Path, name: Any) -> Path | None:
    text = text_or_none(name)
    if text is None:
        return None
    p = Path(text)
    return p if p.is_absolute() else folder / p


def _row_source(folder: Path, row: dict) -> NightSource:
    night_id = str(row["night"])
    meta = NightMeta(
        night_id=night_id,
        subject=text_or_none(row.get("subject")),
        site=text_or_none(row.get("site")),
        age=number_or_none(row.get("age")),
        sex=sex_or_none(row.get("sex")),
    )
    psg = _path_in(folder, row.get("psg_file"))
    hyp = _path_in(folder, row.get("hypnogram_file"))

    def load() -> Night:
        if psg is None:
            raise S2VError("no psg_file given for this night")
        return load_recording(psg, hyp, meta=meta)

    return NightSource(night_id, meta.subject, meta.site, meta.age, meta.sex,
                       number_or_none(row.get("ahi")), None, load)  # fmt: skip


def folder_sources(folder: str | Path) -> list[NightSource]:
    """The recordings of a folder: the rows of :func:`discover_rows`.

    Raises
    ------
    S2VError
        The folder holds no recording.
    """
    src = Path(folder)
    items = [_row_source(src, r) for r in discover_rows(src)]
    if not items:
        raise S2VError(
            f"{src}: no recording found (EDF/BDF files with hypnograms, WFDB .ecg beat files with "
            ".st stages, DREAMS text excerpts, or a metadata.csv with psg_file)"
        )
    return items


def recording_source(
    path: str | Path,
    hypnogram: str | Path | None = None,
    *,
    mapping: Mapping[str, str | None] | None = None,
    allow_mismatch: bool = False,
    sfreq: float | None = None,
) -> NightSource:
    """One recording file as a source; it is read here, so its metadata is known."""
    night = load_recording(path, hypnogram, mapping=mapping, allow_mismatch=allow_mismatch, sfreq=sfreq)
    m = night.meta
    return NightSource(m.night_id, m.subject, m.site, m.age, m.sex, None, None, lambda: night)


def night_sources(
    source: str | Path,
    split: str | None = None,
    *,
    hypnogram: str | Path | None = None,
    mapping: Mapping[str, str | None] | None = None,
    allow_mismatch: bool = False,
    sfreq: float | None = None,
) -> list[NightSource]:
    """The nights of a cohort store, a folder of recordings, or one recording file.

    Parameters
    ----------
    source : path
        A store (``s2v prepare``), a folder (see :func:`folder_sources`) or a recording.
    split : str, optional
        Only this split (stores only).
    hypnogram, mapping, allow_mismatch, sfreq
        For a single recording: its hypnogram, channel overrides, length tolerance and (DREAMS
        text only) sampling rate.

    Raises
    ------
    S2VError
        ``source`` does not exist, holds no night, or an option does not apply to it.
    """
    src = Path(source)
    if not src.exists():
        raise S2VError(f"{src}: no such store, folder or recording")
    single = hypnogram is not None or bool(mapping) or allow_mismatch
    if src.is_file():
        if split is not None:
            raise S2VError(f"--split needs a cohort store; {src} is a recording")
        return [recording_source(src, hypnogram, mapping=mapping, allow_mismatch=allow_mismatch, sfreq=sfreq)]
    if single or sfreq is not None:
        raise S2VError("--hypnogram, --map, --allow-mismatch and --sfreq apply to a single recording")
    if is_store(src):
        return store_sources(src, split)
    if split is not None:
        raise S2VError(f"--split needs a cohort store; {src} is a folder of recordings")
    return folder_sources(src)
