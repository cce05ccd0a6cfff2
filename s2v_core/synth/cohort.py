"""A multi-site synthetic cohort written to disk: EDF+ files, hypnograms and ``metadata.csv``.

Subjects are drawn one after another from seeded generators (``[seed, subject]`` for the subject,
``[seed, subject, night]`` for each night), so the first nights of a cohort do not change when
more nights are asked for. The first subjects visit every site once, later ones are drawn by the
sites' weights. About a third of the subjects get a second night (``night2``), so that
subject-level splits matter.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from s2v_core.sanitize.cells import to_csv
from s2v_core.shipped import FULL_NIGHT_SEED, cache_dir, sample_paths
from s2v_core.synth.physiology import NightSpec, draw_traits, generate_night
from s2v_core.synth.sites import SITES, SiteSpec
from s2v_core.synth.writers import write_edf, write_hypnogram

__all__ = [
    "METADATA_COLUMNS",
    "P_SECOND_NIGHT",
    "full_sample_night",
    "generate_cohort",
    "plan_cohort",
]

log = logging.getLogger(__name__)

METADATA_COLUMNS = (
    "night",
    "subject",
    "site",
    "age",
    "sex",
    "ahi",
    "psg_file",
    "hypnogram_file",
    "hours",
)
"""Columns of ``metadata.csv``, in order."""

P_SECOND_NIGHT = 0.35
"""Probability that a subject is recorded on two nights."""


@dataclass(frozen=True)
class _PlannedNight:
    spec: NightSpec
    seed: tuple[int, int, int]  # entropy of the night's generator
    start: datetime  # recording start written in the files


def plan_cohort(
    n_nights: int, *, seed: int = 0, hours: float | None = None, sites: Sequence[str] | None = None
) -> list[_PlannedNight]:
    """Decide subjects, sites, demographics and night lengths without generating signals."""
    if n_nights < 1:
        raise ValueError(f"n_nights must be >= 1, got {n_nights}")
    if hours is not None and not 30 / 3600 <= hours <= 24:
        raise ValueError(f"hours must be between 30 s and 24 h, got {hours}")
    names = list(SITES) if sites is None else list(sites)
    unknown = [s for s in names if s not in SITES]
    if not names or unknown:
        raise ValueError(f"unknown or empty sites {unknown or names}; allowed: {', '.join(SITES)}")
    weights = np.array([SITES[s].weight for s in names])
    weights /= weights.sum()
    base_day = datetime(2000, 1, 1, 22, 0, 0) + timedelta(days=int(seed) % 3650)
    # The first subjects visit every site once (in a seeded order) so that even a small cohort
    # shows every site's signature; later subjects are drawn by the sites' weights.
    first_round = np.random.default_rng([int(seed), 0]).permutation(len(names))
    planned: list[_PlannedNight] = []
    subject = 0
    while len(planned) < n_nights:
        subject += 1
        rng = np.random.default_rng([int(seed), subject])
        drawn = int(rng.choice(len(names), p=weights))
        site = SITES[names[first_round[subject - 1] if subject <= len(names) else drawn]]
        age, sex, ahi = _demographics(site, rng)
        traits = draw_traits(age, sex, rng)
        n_here = 2 if rng.random() < P_SECOND_NIGHT else 1
        n_here = min(n_here, n_nights - len(planned))
        lights_off = int(rng.integers(0, 120))  # minutes after 22:00
        for night in range(1, n_here + 1):
            night_hours = hours if hours is not None else float(rng.uniform(6.5, 9.0))
            night_ahi = ahi if night == 1 else ahi * float(rng.lognormal(0.0, 0.2))
            sid = f"sub-{subject:03d}"
            spec = NightSpec(
                f"{sid}_night{night}", sid, site.name, age, sex, night_ahi, night_hours, traits
            )
            start = base_day + timedelta(days=3 * subject + 7 * (night - 1), minutes=lights_off)
            planned.append(_PlannedNight(spec, (int(seed), subject, night), start))
    return planned


def _demographics(site: SiteSpec, rng: np.random.Generator) -> tuple[float, str, float]:
    age = float(np.round(np.clip(rng.normal(site.age_mean, site.age_sd), *site.age_range)))
    sex = "M" if rng.random() < site.p_male else "F"
    ahi = float(rng.lognormal(np.log(site.ahi_median), site.ahi_log_sd))
    ahi *= 1.0 + max(age - 50.0, 0.0) / 60.0 + (0.3 if sex == "M" else 0.0)
    return age, sex, min(ahi, 90.0)


def generate_cohort(
    n_nights: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    hours: float | None = None,
    sites: Sequence[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Generate and write a synthetic multi-site cohort.

    Parameters
    ----------
    n_nights : int
        Number of nights (>= 1). Some subjects have two nights.
    out_dir : path
        Created if needed. Receives ``<night>.edf`` (EDF+C), ``<night>.xml`` or ``<night>.csv``
        (hypnogram in the site's format) and ``metadata.csv``.
    seed : int
        Same seed -> byte-identical files; the recording start date is derived from it.
    hours : float, optional
        Length of every night in hours (rounded to whole 30-s epochs); by default each night
        draws 6.5-9 h.
    sites : sequence of str, optional
        Restrict to these sites (keys of :data:`s2v_core.synth.sites.SITES`); default all,
        mixed by each site's weight.
    progress : bool
        Show a progress bar (tqdm) while generating.

    Returns
    -------
    pandas.DataFrame
        The rows of ``metadata.csv``: night, subject, site, age (years), sex (M/F), ahi (events
        per hour of sleep actually inserted), psg_file and hypnogram_file (names inside
        ``out_dir``), hours (recording length).

    Examples
    --------
    >>> meta = generate_cohort(2, "synthetic", hours=0.5, sites=["wearable"])  # doctest: +SKIP
    >>> list(meta.columns)  # doctest: +SKIP
    ['night', 'subject', 'site', 'age', 'sex', 'ahi', 'psg_file', 'hypnogram_file', 'hours']
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_cohort(n_nights, seed=seed, hours=hours, sites=sites)
    iterator = plan
    if progress:
        iterator = tqdm(plan, desc="synthetic nights", unit="night")
    rows = []
    for item in iterator:
        spec = item.spec
        night = generate_night(spec, np.random.default_rng(list(item.seed)))
        psg = write_edf(night, out / f"{spec.night_id}.edf", item.start)
        hyp = write_hypnogram(night, out / f"{spec.night_id}{night.site.hypnogram_ext}", item.start)
        rows.append(
            {
                "night": spec.night_id,
                "subject": spec.subject_id,
                "site": spec.site,
                "age": int(spec.age),
                "sex": spec.sex,
                "ahi": round(night.ahi, 2),
                "psg_file": psg.name,
                "hypnogram_file": hyp.name,
                "hours": round(night.duration_s / 3600.0, 4),
            }
        )
        log.info(
            "wrote %s (%s, %.2f h, AHI %.1f)", psg.name, spec.site, rows[-1]["hours"], night.ahi
        )
    meta = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
    to_csv(meta, out / "metadata.csv", index=False)
    return meta


def full_sample_night(hours: float = 8.0, site: str = "us_hospital") -> tuple[Path, Path | None]:
    """An 8-h, nine-modality synthetic hospital PSG night, generated once and cached.

    Deterministic (seed :data:`~s2v_core.shipped.FULL_NIGHT_SEED`) and cached in
    :func:`~s2v_core.shipped.cache_dir`, so only the first use pays for the generation.
    """
    out = cache_dir() / f"sample-{site}-{hours:g}h-s{FULL_NIGHT_SEED}"
    if not (out / "metadata.csv").exists():
        tmp = out.with_name(out.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            generate_cohort(1, tmp, seed=FULL_NIGHT_SEED, hours=hours, sites=[site])
        except BaseException:  # a full disk or Ctrl-C: no half-written folder left in the cache
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return sample_paths(out)
