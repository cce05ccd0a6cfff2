"""Demographics and site metadata from a CSV, joined to nights by id.

Accepts the project's own ``metadata.csv`` (night, subject, site, age, sex) and NSRR-style dataset
CSVs, whose columns have other names (``nsrrid``, ``age_s1``, ``gender`` coded 1 = male,
2 = female, ``clinic``...). Column names are matched through :data:`COLUMN_ALIASES`; the columns
used are reported so nothing is guessed silently.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from s2v_core.errors import InputFileError
from s2v_core.io.text_limits import clip_message, read_user_csv
from s2v_core.night import NightMeta
from s2v_core.sanitize.cells import unneutralise_frame

__all__ = [
    "COLUMN_ALIASES",
    "meta_for",
    "read_metadata_csv",
]

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "night": ("night", "night_id", "record", "recording", "file", "nsrrid", "id", "pptid"),
    "subject": ("subject", "subject_id", "participant", "patient", "nsrrid", "pptid"),
    "site": ("site", "cohort", "clinic", "center", "centre", "pm_site", "nsrr_site", "dataset"),
    "age": ("age", "age_years", "nsrr_age", "age_s1", "age_s2", "ageyr", "age_at_visit"),
    "sex": ("sex", "gender", "nsrr_sex", "male", "female"),
}
"""Canonical column -> accepted names (case-insensitive), first match wins."""

_SEX_TEXT = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}


def _sex(value, column: str) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    if text in _SEX_TEXT:
        return _SEX_TEXT[text]
    if column in ("gender", "nsrr_sex", "sex") and text in ("1", "1.0"):
        return "M"  # NSRR convention: 1 = male, 2 = female
    if column in ("gender", "nsrr_sex", "sex") and text in ("2", "2.0", "0", "0.0"):
        return "F" if text.startswith("2") else None
    if column == "male":
        return "M" if text in ("1", "1.0", "true") else "F"
    if column == "female":
        return "F" if text in ("1", "1.0", "true") else "M"
    return None


def read_metadata_csv(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a demographics CSV into columns night, subject, site, age, sex.

    Returns
    -------
    frame : pandas.DataFrame
        Indexed by night id (string). Missing values are NaN/None.
    used : dict
        Canonical column -> the column name found in the file.
    """
    p = Path(path)
    try:
        raw = unneutralise_frame(read_user_csv(p, "metadata CSV", sep=None, engine="python", dtype=str))  # '=x -> =x (sanitize.cells)
    except (OSError, csv.Error, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputFileError(p, f"cannot read metadata CSV: {exc}") from None
    lower = {c.lower().strip(): c for c in raw.columns}
    used: dict[str, str] = {}
    for canon, names in COLUMN_ALIASES.items():
        for n in names:
            if n in lower:  # night and subject may share a column (NSRR: one night per nsrrid)
                used[canon] = lower[n]
                break
    if "night" not in used:
        raise InputFileError(
            p, "metadata CSV has no id column; expected one of " + ", ".join(COLUMN_ALIASES["night"])
        )
    out = pd.DataFrame({"night": raw[used["night"]].astype(str).str.strip()})
    out["subject"] = raw[used["subject"]].astype(str).str.strip() if "subject" in used else out["night"]
    out["site"] = raw[used["site"]].astype(str).str.strip() if "site" in used else None
    out["age"] = pd.to_numeric(raw[used["age"]], errors="coerce") if "age" in used else float("nan")
    if "sex" in used:
        col = used["sex"].lower()
        out["sex"] = [_sex(v, col) for v in raw[used["sex"]]]
    else:
        out["sex"] = None
    dup = out["night"][out["night"].duplicated()].unique()
    if len(dup):
        raise InputFileError(p, f"metadata CSV repeats night ids: {', '.join(clip_message(d, 40) for d in dup[:5])}")
    return out.set_index("night", drop=False), used


def meta_for(frame: pd.DataFrame, night_id: str) -> NightMeta:
    """Metadata for one night (unknown fields None when the id is absent)."""
    if night_id not in frame.index:
        return NightMeta(night_id=night_id)
    row = frame.loc[night_id]
    age = row["age"]
    site = row["site"]
    return NightMeta(
        night_id=night_id,
        subject=None if pd.isna(row["subject"]) else str(row["subject"]),
        site=None if site is None or pd.isna(site) else str(site),
        age=None if pd.isna(age) else float(age),
        sex=row["sex"] if row["sex"] in ("M", "F") else None,
    )
