"""Sample nights: a short one shipped in ``sample_data/``, a full night generated on first use.

Generated nights are deterministic (fixed seed) and cached under ``$S2V_CACHE`` or
``~/.cache/sleep2vec-studio``, so only the first use pays for the generation (a few seconds).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
FULL_NIGHT_SEED = 20260214


def cache_dir() -> Path:
    """Where generated sample data lives."""
    return Path(os.environ.get("S2V_CACHE") or Path.home() / ".cache" / "sleep2vec-studio")


def _paths(folder: Path, row: pd.Series) -> tuple[Path, Path | None]:
    hyp = row.get("hypnogram_file")
    return folder / row["psg_file"], (folder / hyp) if isinstance(hyp, str) and hyp else None


def shipped_night() -> tuple[Path, Path | None]:
    """The 1-h synthetic PSG excerpt committed in ``sample_data/`` (EDF+ and its hypnogram)."""
    meta = pd.read_csv(SAMPLE_DIR / "metadata.csv")
    return _paths(SAMPLE_DIR, meta.iloc[0])


def full_sample_night(hours: float = 8.0, site: str = "us_hospital") -> tuple[Path, Path | None]:
    """An 8-h, nine-modality synthetic hospital PSG night, generated once and cached."""
    from s2v_core.synth.cohort import generate_cohort

    out = cache_dir() / f"sample-{site}-{hours:g}h-s{FULL_NIGHT_SEED}"
    meta = out / "metadata.csv"
    if not meta.exists():
        tmp = out.with_name(out.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        generate_cohort(1, tmp, seed=FULL_NIGHT_SEED, hours=hours, sites=[site])
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return _paths(out, pd.read_csv(meta).iloc[0])
