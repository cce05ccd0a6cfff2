"""Nights of NSRR cohort downloads (SHHS, MESA, MrOS, CFS, WSC) as store metadata rows.

The National Sleep Research Resource ships each cohort as one folder tree::

    <cohort>/
      polysomnography/edfs/[<visit folder>/]<night>.edf
      polysomnography/annotations-events-nsrr/[<visit folder>/]<night>-nsrr.xml
      polysomnography/annotations-events-profusion/[<visit folder>/]<night>-profusion.xml
      datasets/<cohort>-...-dataset-<version>.csv     (and ...-harmonized-...csv)

(WSC keeps its EDFs flat in ``polysomnography/``.) :func:`discover_nsrr` walks one such tree,
or a folder holding several (``nsrr/shhs``, ``nsrr/mesa``...), and returns one row per EDF in
the form :func:`s2v_core.cohort.prepare.prepare_one` takes: night (the EDF stem), subject, site, age,
sex, ahi, psg_file, hypnogram_file, plus cohort and visit.

Nights and subjects
-------------------
The night id is the file stem (``shhs1-200001``, ``mesa-sleep-0001``, ``mros-visit2-aa0001``,
``cfs-visit5-800002``, ``wsc-visit3-10119-nsrr``); it contains the visit, so the two SHHS
visits of one participant are two nights. The subject is ``<cohort>-<participant id>`` and is
the same for every visit of a participant, so the subject-level split keeps all of a
person's nights on one side.

Hypnograms
----------
``<stem>-nsrr.xml`` is used when present (preferably under ``annotations-events-nsrr``), else
``<stem>-profusion.xml``, else ``<stem>.xml`` anywhere under ``polysomnography/``. WSC's own
text scorings (``.stg.txt``, ``.allscore.txt``) are not read: such nights are prepared without
stages (fine for pretraining, excluded from staging metrics).

Demographics (checked against the NSRR data dictionaries)
---------------------------------------------------------
Every CSV under ``datasets/`` whose header holds the cohort's id column is read (only the
columns below). A row belongs to a visit through the cohort's visit column or, failing that,
the visit number in the file name (``shhs1-``, ``-visit5-``); rows without either apply to
every visit. For each field the first non-empty value in this order wins, rows of the night's
own visit before visit-less rows (sex and site, which belong to the participant, then fall back
to the rows of the participant's other visits):

======  ==========  ============  ==========================  ==============================  =========
cohort  id          visit column  age                         sex                             site
======  ==========  ============  ==========================  ==============================  =========
SHHS    nsrrid      visitnumber   nsrr_age; age_s1 (visit 1), nsrr_sex; gender 1=M 2=F      clinic
                                  age_s2 (visit 2)
MESA    mesaid      examnumber    nsrr_age; sleepage5c        nsrr_sex; gender1 0=F 1=M     site5c,
                                                                                               siteid
MrOS    nsrrid      visit         nsrr_age; vsage1 (visit 1), nsrr_sex; all men -> M        site
                                  vs2age1 (visit 2)                                             (1-6 ->
                                                                                               BI MN PA
                                                                                               PI PO SD)
CFS     nsrrid      visit         nsrr_age; age               nsrr_sex; male 1=M 0=F        (cfs)
WSC     wsc_id      wsc_vst       nsrr_age; age               nsrr_sex; sex m/f             (wsc)
======  ==========  ============  ==========================  ==============================  =========

``nsrr_age`` and ``nsrr_sex`` are NSRR's harmonised terms (``nsrr_age`` is capped at 90 for
privacy; ``nsrr_sex`` is the text ``male``/``female``/``not reported``); NSRR has no
harmonised site term, so the site is ``<cohort>-<code>`` from the cohort's own column, or the
cohort name when there is none (CFS and WSC are single-site). The AHI is NSRR's harmonised
``nsrr_ahi_hp3r_aasm15`` (AASM 2015 rule: hypopneas with 3 % desaturation or an arousal), else
``nsrr_ahi_hp4u_aasm15``. Participant ids are compared without leading zeros and case
(``mesa-sleep-0001`` is ``mesaid`` 1; ``mros-visit1-aa0001`` is ``nsrrid`` AA0001).

Examples
--------
>>> rows = discover_nsrr("/data/nsrr/shhs")  # doctest: +SKIP
>>> rows[0]["night"], rows[0]["subject"], rows[0]["visit"]  # doctest: +SKIP
('shhs1-200001', 'shhs-200001', 1)
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from s2v_core.errors import InputFileError

__all__ = [
    "AHI_COLUMNS",
    "COHORTS",
    "NSRR_SEX",
    "CohortSpec",
    "cohort_of",
    "discover_nsrr",
    "is_nsrr_layout",
    "is_nsrr_tree",
    "normalise_id",
    "nsrr_trees",
]

log = logging.getLogger(__name__)

NSRR_SEX = {"male": "M", "female": "F"}
"""Values of NSRR's harmonised ``nsrr_sex`` (anything else, e.g. "not reported", is unknown)."""

AHI_COLUMNS: tuple[str, ...] = ("nsrr_ahi_hp3r_aasm15", "nsrr_ahi_hp4u_aasm15")
"""Harmonised AHI columns, first found wins."""

_RECORDINGS = (".edf", ".bdf")


@dataclass(frozen=True)
class CohortSpec:
    """File-name and dataset-column conventions of one NSRR cohort.

    ``ages`` and ``sexes`` are tried in order; an age column tagged with a visit only applies
    to nights of that visit. ``sexes`` maps the column's (lower-case) values to ``"M"``/``"F"``.
    """

    name: str
    file_pattern: str  # regex on the lower-case EDF stem with groups ``id`` and maybe ``visit``
    id_column: str
    visit_columns: tuple[str, ...] = ()
    ages: tuple[tuple[str, int | None], ...] = (("nsrr_age", None),)
    sexes: tuple[tuple[str, dict[str, str]], ...] = (("nsrr_sex", NSRR_SEX),)
    site_columns: tuple[str, ...] = ()
    site_names: dict[str, str] = field(default_factory=dict)
    fixed_sex: str | None = None  # a single-sex cohort (MrOS: men)

    def match(self, stem: str) -> re.Match | None:
        """The file-name match of an EDF stem, or None when it is not this cohort's."""
        return re.fullmatch(self.file_pattern, stem.lower())


COHORTS: dict[str, CohortSpec] = {
    "shhs": CohortSpec(
        name="shhs",
        file_pattern=r"shhs(?P<visit>\d+)-(?P<id>\d+)",
        id_column="nsrrid",
        visit_columns=("visitnumber",),
        ages=(("nsrr_age", None), ("age_s1", 1), ("age_s2", 2)),
        sexes=(("nsrr_sex", NSRR_SEX), ("gender", {"1": "M", "2": "F"})),
        site_columns=("clinic",),
    ),
    "mesa": CohortSpec(
        name="mesa",
        file_pattern=r"mesa-sleep-(?P<id>\d+)",
        id_column="mesaid",
        visit_columns=("examnumber",),
        ages=(("nsrr_age", None), ("sleepage5c", None)),
        sexes=(("nsrr_sex", NSRR_SEX), ("gender1", {"0": "F", "1": "M"})),
        site_columns=("site5c", "siteid"),
    ),
    "mros": CohortSpec(
        name="mros",
        file_pattern=r"mros-visit(?P<visit>\d+)-(?P<id>[a-z]{2}\d+)",
        id_column="nsrrid",
        visit_columns=("visit",),
        ages=(("nsrr_age", None), ("vsage1", 1), ("vs2age1", 2)),
        sexes=(("nsrr_sex", NSRR_SEX),),
        site_columns=("site",),
        site_names={"1": "BI", "2": "MN", "3": "PA", "4": "PI", "5": "PO", "6": "SD"},
        fixed_sex="M",
    ),
    "cfs": CohortSpec(
        name="cfs",
        file_pattern=r"cfs-visit(?P<visit>\d+)-(?P<id>\d+)",
        id_column="nsrrid",
        visit_columns=("visit",),
        ages=(("nsrr_age", None), ("age", None)),
        sexes=(("nsrr_sex", NSRR_SEX), ("male", {"1": "M", "0": "F"})),
    ),
    "wsc": CohortSpec(
        name="wsc",
        file_pattern=r"wsc-visit(?P<visit>\d+)-(?P<id>\d+)(?:-nsrr)?",
        id_column="wsc_id",
        visit_columns=("wsc_vst",),
        ages=(("nsrr_age", None), ("age", None)),
        sexes=(("nsrr_sex", NSRR_SEX), ("sex", {"m": "M", "f": "F"})),
    ),
}
"""The cohorts :func:`discover_nsrr` knows, by name."""


def normalise_id(value) -> str | None:
    """A participant id for matching: stripped, upper-case, integers without leading zeros."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text or text.lower() == "nan":
        return None
    m = re.fullmatch(r"0*(\d+)(?:\.0+)?", text)
    if m:
        return m.group(1) or "0"
    return text.upper()


def _visit_number(value) -> int | None:
    try:
        x = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return int(x) if math.isfinite(x) and x == int(x) else None


def _cell(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text if text and text.lower() not in ("nan", "na", ".") else None


def _number(value) -> float | None:
    try:
        x = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def is_nsrr_tree(folder: str | Path) -> bool:
    """True when ``folder`` is one NSRR cohort download (it has ``polysomnography/``)."""
    return (Path(folder) / "polysomnography").is_dir()


def nsrr_trees(source: str | Path) -> list[Path]:
    """The NSRR cohort trees of ``source``: itself, or its sub-folders that are trees."""
    source = Path(source)
    if is_nsrr_tree(source):
        return [source]
    if not source.is_dir():
        return []
    return sorted(p for p in source.iterdir() if p.is_dir() and is_nsrr_tree(p))


def is_nsrr_layout(source: str | Path) -> bool:
    """True when ``source`` is an NSRR tree or a folder of NSRR trees."""
    return bool(nsrr_trees(source))


def cohort_of(stem: str) -> tuple[CohortSpec, re.Match] | None:
    """The cohort whose file names match ``stem``, with the match; None when none does."""
    for spec in COHORTS.values():
        m = spec.match(stem)
        if m:
            return spec, m
    return None


# --- datasets --------------------------------------------------------------------------------
_FILE_VISIT = re.compile(r"(?:^|[-_])(?:shhs|visit|exam)-?(\d+)(?=[-_.])")


class _Demographics:
    """Dataset rows of one cohort tree, by participant: ``id -> [(visit, {column: value})]``."""

    def __init__(self, spec: CohortSpec):
        self.spec = spec
        self.rows: dict[str, list[tuple[int | None, dict[str, str]]]] = defaultdict(list)
        self.files: list[str] = []

    def wanted(self) -> set[str]:
        s = self.spec
        cols = {c for c, _ in s.ages} | {c for c, _ in s.sexes} | set(s.site_columns)
        return cols | set(AHI_COLUMNS)

    def read(self, path: Path) -> None:
        """Add the rows of one dataset CSV (a CSV without the id column is ignored)."""
        try:
            header = pd.read_csv(path, nrows=0, encoding_errors="replace")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            log.warning("NSRR dataset %s unreadable, ignored: %s", path.name, exc)
            return
        lower = {str(c).strip().lower(): c for c in header.columns}
        if self.spec.id_column not in lower:
            return
        values = [c for c in self.wanted() if c in lower]
        if not values:
            return
        visit_col = next((c for c in self.spec.visit_columns if c in lower), None)
        keep = [self.spec.id_column] + ([visit_col] if visit_col else []) + values
        try:
            frame = pd.read_csv(
                path, usecols=[lower[c] for c in keep], dtype=str, encoding_errors="replace"
            )
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            log.warning("NSRR dataset %s unreadable, ignored: %s", path.name, exc)
            return
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        m = _FILE_VISIT.search(path.name.lower())
        file_visit = int(m.group(1)) if m else None
        for rec in frame.to_dict("records"):
            pid = normalise_id(rec.get(self.spec.id_column))
            if pid is None:
                continue
            visit = _visit_number(rec.get(visit_col)) if visit_col else None
            if visit is None:
                visit = file_visit
            cells = {c: v for c in values if (v := _cell(rec.get(c))) is not None}
            if cells:
                self.rows[pid].append((visit, cells))
        self.files.append(path.name)

    def _candidates(self, pid: str, visit: int | None, any_visit: bool) -> list[dict[str, str]]:
        rows = self.rows.get(pid, [])
        if visit is None:
            return [c for _, c in rows]
        own = [c for v, c in rows if v == visit] + [c for v, c in rows if v is None]
        return own + ([c for v, c in rows if v not in (visit, None)] if any_visit else [])

    def lookup(self, pid: str, visit: int | None) -> dict:
        """``age``, ``sex``, ``site``, ``ahi`` of a participant's visit (None when unknown).

        Age and AHI come from rows of the night's visit (or visit-less rows) only; sex and site
        belong to the participant and fall back to the rows of other visits.
        """
        s = self.spec
        cands = self._candidates(pid, visit, any_visit=False)
        person = self._candidates(pid, visit, any_visit=True)
        out: dict = {"age": None, "sex": s.fixed_sex, "site": None, "ahi": None}
        for col, only in s.ages:
            if only is not None and only != visit:
                continue
            age = next((a for c in cands if (a := _number(c.get(col))) is not None), None)
            if age is not None:
                out["age"] = age
                break
        if s.fixed_sex is None:
            for col, codes in s.sexes:
                sex = next(
                    (codes[v] for c in person if (v := (c.get(col) or "").lower()) in codes), None
                )
                if sex is not None:
                    out["sex"] = sex
                    break
        for col in s.site_columns:
            code = next((c[col] for c in person if col in c), None)
            if code is not None:
                key = normalise_id(code) or code
                out["site"] = f"{s.name}-{s.site_names.get(key, code)}"
                break
        for col in AHI_COLUMNS:
            ahi = next((a for c in cands if (a := _number(c.get(col))) is not None), None)
            if ahi is not None:
                out["ahi"] = ahi
                break
        if out["site"] is None:
            out["site"] = s.name
        return out


# --- discovery -------------------------------------------------------------------------------
def _walk(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in sorted(filenames))
    return found


def _annotation_index(files: list[Path]) -> dict[str, Path]:
    """Lower-case XML file name -> path, preferring annotations-events-nsrr, then -profusion."""

    def rank(p: Path) -> int:
        parts = [q.lower() for q in p.parts]
        return 0 if "annotations-events-nsrr" in parts else 1 if "annotations-events-profusion" in parts else 2

    index: dict[str, Path] = {}
    for p in sorted((f for f in files if f.name.lower().endswith(".xml")), key=rank):
        index.setdefault(p.name.lower(), p)
    return index


def _hypnogram_for(stem: str, index: dict[str, Path]) -> Path | None:
    s = stem.lower()
    bases = [s] + ([s[: -len("-nsrr")]] if s.endswith("-nsrr") else [])
    for suffix in ("-nsrr.xml", "-profusion.xml", ".xml"):
        for b in bases:
            if (p := index.get(b + suffix)) is not None:
                return p
    return None


def _tree_cohort(stems: list[str], tree: Path) -> CohortSpec | None:
    counts: dict[str, int] = defaultdict(int)
    for s in stems:
        hit = cohort_of(s)
        if hit:
            counts[hit[0].name] += 1
    if not counts:
        return COHORTS.get(tree.name.lower())
    return COHORTS[max(counts, key=counts.get)]


def discover_nsrr(source: str | Path) -> list[dict]:
    """Rows for :func:`s2v_core.cohort.prepare.prepare_one`, one per EDF/BDF of the NSRR tree(s).

    Parameters
    ----------
    source : path
        One cohort download (a folder with ``polysomnography/``) or a folder of them.

    Returns
    -------
    list of dict
        night, subject, site, age, sex, ahi, psg_file and hypnogram_file (relative to
        ``source``; hypnogram None when no XML was found), cohort and visit. Files whose name
        follows no known cohort are kept with their stem as subject and the tree's folder name
        as site (a warning counts them).

    Raises
    ------
    InputFileError
        ``source`` holds no NSRR tree.
    """
    source = Path(source)
    trees = nsrr_trees(source)
    if not trees:
        raise InputFileError(source, "not an NSRR download: no polysomnography/ folder")
    rows: list[dict] = []
    for tree in trees:
        files = _walk(tree / "polysomnography")
        recordings = [
            f for f in files
            if f.suffix.lower() in _RECORDINGS and not f.name.lower().endswith("-hypnogram.edf")
        ]  # fmt: skip
        spec = _tree_cohort([f.stem for f in recordings], tree)
        demo = _Demographics(spec) if spec else None
        datasets = tree / "datasets"
        if demo is not None and datasets.is_dir():
            for csv in sorted(datasets.rglob("*.csv")):
                demo.read(csv)
        index = _annotation_index(files)
        unknown = no_hyp = 0
        for f in recordings:
            hit = cohort_of(f.stem)
            hyp = _hypnogram_for(f.stem, index)
            no_hyp += hyp is None
            row = {
                "night": f.stem,
                "psg_file": f.relative_to(source).as_posix(),
                "hypnogram_file": hyp.relative_to(source).as_posix() if hyp else None,
            }
            if hit is None:
                unknown += 1
                row.update(subject=f.stem, site=tree.name, age=None, sex=None, ahi=None,
                           cohort=None, visit=None)  # fmt: skip
                rows.append(row)
                continue
            cspec, m = hit
            visit = int(m.group("visit")) if "visit" in m.groupdict() else None
            pid = m.group("id")
            meta = (
                _Demographics(cspec).lookup(normalise_id(pid), visit)
                if demo is None or demo.spec.name != cspec.name
                else demo.lookup(normalise_id(pid), visit)
            )
            row.update(subject=f"{cspec.name}-{pid}", cohort=cspec.name, visit=visit, **meta)
            rows.append(row)
        log.info(
            "NSRR %s: %d recordings (%s), datasets %s, %d without hypnogram, %d unknown names",
            tree.name, len(recordings), spec.name if spec else "unknown cohort",
            ", ".join(demo.files) if demo and demo.files else "none", no_hyp, unknown,
        )  # fmt: skip
        if unknown:
            log.warning(
                "NSRR %s: %d recording(s) not named like any known cohort (%s); prepared with "
                "the file name as subject", tree.name, unknown, ", ".join(COHORTS),
            )  # fmt: skip
    return rows
