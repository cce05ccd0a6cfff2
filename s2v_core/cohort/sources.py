"""Where a cohort's nights come from: a store, a folder of recordings, or one recording.

:func:`night_sources` is the one walker every cohort command uses (``s2v evaluate``, ``s2v embed``,
night heads): it turns a store, a folder or a file into :class:`NightSource` items whose nights
are loaded one at a time. :func:`discover_rows` lists the recordings of a source folder; it is
also what ``s2v prepare`` prepares. A folder is one of three layouts:

* **flat**: recordings side by side, every kind :func:`s2v_core.recording.registry.find_recordings`
  finds (EDF/BDF, WFDB records, DREAMS text, FIF, BrainVision, EEGLAB...), each paired with the
  hypnogram beside it by :func:`s2v_core.recording.pairing.hypnogram_for` (one rule per layout:
  Sleep-EDF, DREAMS, BIDS, NSRR names...), or a ``metadata.csv`` naming ``psg_file`` (and
  ``hypnogram_file``) per night;
* **nsrr**: an NSRR download tree (:mod:`s2v_core.cohort.nsrr`);
* **bids**: a BIDS dataset (``sub-*/[ses-*/]<datatype>/`` folders, ``dataset_description.json``):
  each recording of a datatype folder with its ``*_events.tsv``; the subject is the ``sub-``
  label, age and sex come from ``participants.tsv``.

A folder that holds no recording is refused in one line (:func:`no_recording_error`).

Examples
--------
>>> for src in night_sources("store/", split="test"):  # doctest: +SKIP
...     night = src.load()
"""

from __future__ import annotations

import logging
import re
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
from s2v_core.recording.pairing import hypnogram_for, recording_stem
from s2v_core.recording.registry import READS, find_recordings, load_recording
from s2v_core.sanitize.cells import unneutralise_frame

__all__ = [
    "LAYOUTS",
    "NightSource",
    "discover_bids",
    "discover_rows",
    "folder_sources",
    "is_bids_layout",
    "is_store",
    "night_sources",
    "no_recording_error",
    "recording_source",
    "store_sources",
]

log = logging.getLogger(__name__)


def no_recording_error(folder: str | Path) -> S2VError:
    """The one-line refusal of a folder that holds no recording (says what would count)."""
    return S2VError(
        f"{folder}: no recording found (subfolders are searched only in an NSRR or BIDS tree); this tool "
        f"reads {READS}, or a metadata.csv naming psg_file per night"
    )


def _named(found: list[tuple[Path, str]]) -> list[tuple[str, Path, str]]:
    """``(night id, file, kind)``; ids are the stems, or the file names where two recordings share a
    stem (``excerpt3.edf`` and ``excerpt3.txt``)."""
    stems = [recording_stem(p) for p, _ in found]
    return [(stem if stems.count(stem) == 1 else p.name, p, k) for stem, (p, k) in zip(stems, found, strict=True)]


LAYOUTS: tuple[str, ...] = ("auto", "flat", "nsrr", "bids")
"""Source layouts of :func:`discover_rows`."""

_BIDS_DATATYPES = ("eeg", "ieeg", "meg", "beh", "nirs")
_BIDS_SUBJECT = re.compile(r"^sub-([A-Za-z0-9]+)")


def is_bids_layout(source: str | Path) -> bool:
    """True for a BIDS dataset: ``dataset_description.json`` or ``sub-*`` folders at the top."""
    src = Path(source)
    if (src / "dataset_description.json").is_file():
        return True
    return any(p.is_dir() and _BIDS_SUBJECT.match(p.name) for p in src.iterdir())


def _participants(source: Path) -> dict[str, dict[str, Any]]:
    """``participants.tsv`` as ``{"sub-01": {"age": 44.0, "sex": "M"}}`` (empty without one)."""
    table = source / "participants.tsv"
    if not table.is_file():
        return {}
    frame = unneutralise_frame(read_user_csv(table, "participants.tsv", sep="\t", dtype=str))
    cols = {c.lower().strip(): c for c in frame.columns}
    if "participant_id" not in cols:
        return {}
    out = {}
    for _, row in frame.iterrows():
        sex = str(row[cols["sex"]]).strip().upper()[:1] if "sex" in cols else ""
        out[str(row[cols["participant_id"]]).strip()] = {
            "age": number_or_none(row[cols["age"]]) if "age" in cols else None,
            "sex": sex if sex in ("M", "F") else None,
        }
    return out


def discover_bids(source: str | Path) -> list[dict]:
    """The rows of a BIDS dataset: every recording of ``sub-*/[ses-*/]<datatype>/`` folders.

    The night id is the file stem (its entities, ``sub-01_ses-1_task-sleep_eeg``), the subject
    the ``sub-`` label (``sub-01``), the hypnogram the recording's ``*_events.tsv`` (see
    :mod:`s2v_core.recording.pairing`), age and sex from ``participants.tsv`` when present.
    """
    src = Path(source)
    people = _participants(src)
    rows = []
    for sub in sorted(p for p in src.iterdir() if p.is_dir() and _BIDS_SUBJECT.match(p.name)):
        sessions = [sub] + sorted(p for p in sub.iterdir() if p.is_dir() and p.name.startswith("ses-"))
        folders = [s / d for s in sessions for d in _BIDS_DATATYPES if (s / d).is_dir()]
        for night, p, kind in _named([f for folder in folders for f in find_recordings(folder)]):
            hyp = hypnogram_for(p, kind)
            who = people.get(sub.name, {})
            rows.append({"night": night, "subject": sub.name, "site": None, "age": who.get("age"),
                         "sex": who.get("sex"), "ahi": None, "psg_file": p.relative_to(src).as_posix(),
                         "hypnogram_file": hyp.relative_to(src).as_posix() if hyp else None})  # fmt: skip
    return rows


def discover_rows(
    source: str | Path, metadata_csv: str | Path | None = None, *, layout: str = "auto"
) -> list[dict]:
    """The rows :func:`prepare_store` will prepare from a source folder.

    ``layout="flat"``: with a table that has a ``psg_file`` column (``metadata_csv``, else
    ``source/metadata.csv``), one row per table row. Otherwise every recording
    :func:`~s2v_core.recording.registry.find_recordings` finds in the folder is a night named by
    its stem (its file name when two share a stem); the hypnogram is the one
    :func:`~s2v_core.recording.pairing.hypnogram_for` pairs with it (a WFDB record's own ``.st``
    is read with it) and demographics are joined from the table when there is one.

    ``layout="nsrr"``: an NSRR download (SHHS, MESA, MrOS, CFS, WSC folder conventions, or a
    folder of several), read by :func:`s2v_core.cohort.nsrr.discover_nsrr`.

    ``layout="bids"``: a BIDS dataset, read by :func:`discover_bids`.

    ``layout="auto"`` (default): without a metadata table, NSRR when the folder is an NSRR tree
    (or holds some), BIDS when it is a BIDS dataset; else flat.
    """
    source = Path(source)
    if not source.is_dir():
        raise InputFileError(source, "source is not a folder")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if layout == "auto":
        own_table = metadata_csv is not None or (source / "metadata.csv").is_file()
        layout = "flat"
        if not own_table and is_nsrr_layout(source):
            layout = "nsrr"
        elif not own_table and is_bids_layout(source):
            layout = "bids"
    if layout in ("nsrr", "bids"):
        if metadata_csv is not None:
            raise ValueError(f"--metadata does not apply to an {layout.upper()} layout (it has its own tables)")
        return discover_nsrr(source) if layout == "nsrr" else discover_bids(source)
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
    for night, p, kind in _named(find_recordings(source)):
        stem = recording_stem(p)
        row = {"night": night, "psg_file": p.name, "ahi": ahi.get(stem)}
        hyp = hypnogram_for(p, kind)
        row["hypnogram_file"] = hyp.name if hyp and kind != "wfdb" else None  # WFDB: read with the record
        if demo is not None and stem in demo.index:
            rec = demo.loc[stem]
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
        raise no_recording_error(src)
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
