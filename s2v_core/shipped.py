"""What ships with the project: the sample nights, the shipped model's folders, the version.

The short sample night is committed in ``sample_data/``; the full 8-h sample night is generated
on first use by :func:`s2v_core.synth.cohort.full_sample_night` and cached in :func:`cache_dir`.
The shipped model lives in ``models/sleep2vec-small/`` (classifier, cohort embeddings, experiment
results, model card). Standard library only: the command line imports this module at start-up.
"""

from __future__ import annotations

import csv
import os
from importlib import metadata
from pathlib import Path

from s2v_core.errors import S2VError

__all__ = [
    "CLASSIFIER_DIRS",
    "FULL_NIGHT_SEED",
    "MODEL_DIR",
    "REPO_ROOT",
    "SAMPLE_DIR",
    "cache_dir",
    "default_model_dir",
    "embeddings_dir",
    "experiments_dir",
    "package_version",
    "sample_paths",
    "shipped_night",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "sample_data"
MODEL_DIR = REPO_ROOT / "models" / "sleep2vec-small"
"""The shipped model: ``classifier/``, ``embeddings/``, ``experiments/``, ``MODEL_CARD.md``."""
CLASSIFIER_DIRS: tuple[Path, ...] = (MODEL_DIR / "classifier", SAMPLE_DIR / "model")
"""Where the shipped staging classifier is looked for, first found wins."""
FULL_NIGHT_SEED = 20260214


def package_version() -> str:
    """The installed version of sleep2vec studio (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return metadata.version("sleep2vec-studio")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def default_model_dir() -> Path:
    """The shipped classifier folder.

    Raises
    ------
    S2VError
        None of :data:`CLASSIFIER_DIRS` holds a checkpoint.
    """
    for d in CLASSIFIER_DIRS:
        if (d / "config.json").is_file():
            return d
    tried = " or ".join(str(d) for d in CLASSIFIER_DIRS)
    raise S2VError(
        f"no shipped model found ({tried}): pass --model DIR (a classifier folder written by "
        "s2v finetune, e.g. RUN/best) or build it with scripts/train_shipped_model.sh"
    )


def embeddings_dir() -> Path:
    """The shipped cohort embeddings (``scripts/export_cohort_embeddings.py`` writes them)."""
    return MODEL_DIR / "embeddings"


def experiments_dir() -> Path:
    """The shipped ``s2v experiment`` results."""
    return MODEL_DIR / "experiments"


def cache_dir() -> Path:
    """Where generated sample data lives."""
    return Path(os.environ.get("S2V_CACHE") or Path.home() / ".cache" / "sleep2vec-studio")


def sample_paths(folder: Path) -> tuple[Path, Path | None]:
    """The recording and hypnogram of the first night listed in ``folder/metadata.csv``."""
    with open(folder / "metadata.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    hyp = (row.get("hypnogram_file") or "").strip()
    return folder / row["psg_file"], (folder / hyp) if hyp else None


def shipped_night() -> tuple[Path, Path | None]:
    """The 1-h synthetic PSG excerpt committed in ``sample_data/`` (EDF+ and its hypnogram)."""
    return sample_paths(SAMPLE_DIR)
