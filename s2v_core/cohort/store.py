"""The prepared cohort store, read side: canonical nights on disk plus a manifest.

Layout of a store folder::

    store/
      manifest.csv          one row per prepared night (see :class:`StoreEntry`)
      failures.csv          nights of the last run that could not be prepared, with the reason
      nights/<night>/       Night.save() output (<modality>.npy, valid.npy, stages.npy, night.json)
                            plus scaling.json = {modality: [median, iqr]} (robust per-night scaling)

:mod:`s2v_core.cohort.prepare` writes stores; :class:`CohortStore` reads them.

Examples
--------
>>> store = CohortStore("store/")  # doctest: +SKIP
>>> store.nights("train")[:2], store.night("n0001").modalities  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from s2v_core.errors import InputFileError
from s2v_core.night import Night
from s2v_core.sanitize.cells import unneutralise_frame

__all__ = [
    "SPLITS",
    "CohortStore",
    "StoreEntry",
    "check_night_id",
    "is_finished",
    "number_or_none",
    "sex_or_none",
    "split_for_subject",
    "text_or_none",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names, in the order of the ``fractions`` of :func:`split_for_subject`."""
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


def text_or_none(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text if text and text.lower() != "nan" else None


def number_or_none(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def check_night_id(night: str | None) -> str:
    if not night or night.startswith(".") or any(c in night for c in "/\\\x00"):
        raise ValueError(f"night id {night!r} cannot be a folder name (empty, '.', or a '/')")
    return night


def sex_or_none(value) -> str | None:
    text = (text_or_none(value) or "").upper()
    return text if text in ("M", "F") else None


def is_finished(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _DONE_FILES)


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
        frame = unneutralise_frame(pd.read_csv(  # '=1+2 (sanitize.cells) reads back as =1+2
            mpath,
            dtype={"night": str, "subject": str, "site": str, "sex": str, "split": str},
            keep_default_na=False,
            na_values={"age": [""], "ahi": [""]},
        ))
        missing_cols = [f.name for f in fields(StoreEntry) if f.name not in frame.columns]
        if missing_cols:
            raise InputFileError(mpath, f"manifest lacks columns: {', '.join(missing_cols)}")
        frame["modalities"] = [
            tuple(m for m in str(v).split(";") if m) for v in frame["modalities"]
        ]
        for col in ("site", "sex"):
            frame[col] = frame[col].replace("", None)
        bad = [n for n in frame["night"] if not is_finished(self.path / "nights" / n)]
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
            | {"age": number_or_none(r["age"]), "ahi": number_or_none(r["ahi"]), "n_epochs": int(r["n_epochs"])}
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
