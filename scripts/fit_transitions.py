"""Fit first-order sleep-stage transition statistics from the Sleep-EDF hypnograms.

Reads every ``*-Hypnogram.edf`` in the Sleep-EDF sleep-cassette folder with
``mne.read_annotations``, turns the annotations into 30-s epochs of project stage codes
(S3 and S4 -> N3; ``Sleep stage ?`` and ``Movement time`` -> unscored), trims each recording to
its sleep period (first to last sleep epoch) plus/minus 30 minutes because the files span about
24 hours, and counts stage-to-stage transitions between consecutive scored epochs:

* over the whole trimmed night and per time-of-night tertile of the trimmed night, and
* over the sleep period alone (first to last sleep epoch) and per tertile of it.

The result is written as JSON (numbers only, plus a note of the source) to
``s2v_core/data/synth_transitions.json``, which :mod:`s2v_core.synth.hypnogram` reads at call time.

Usage::

    python scripts/fit_transitions.py [--data-dir ../shared/data/sleep-edf] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import mne
import numpy as np

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.stages import N1, REM, STAGE_NAMES, UNSCORED, label_to_stage

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "sleep-edf"
DEFAULT_OUT = REPO / "s2v_core" / "data" / "synth_transitions.json"
TRIM_MINUTES = 30
N_STAGES = len(STAGE_NAMES)


def read_epochs(path: Path) -> np.ndarray:
    """Project stage code per 30-s epoch of one Sleep-EDF hypnogram, shape (n_epochs,), int8."""
    ann = mne.read_annotations(path)
    onsets = np.round(np.asarray(ann.onset) / EPOCH_SECONDS).astype(int)
    counts = np.round(np.asarray(ann.duration) / EPOCH_SECONDS).astype(int)
    codes = np.array([label_to_stage(d) for d in ann.description], dtype=np.int8)
    n_epochs = int((onsets + counts).max())
    stages = np.full(n_epochs, UNSCORED, dtype=np.int8)
    for start, n, code in zip(onsets, counts, codes, strict=True):
        stages[start : start + n] = code
    return stages


def trim(stages: np.ndarray, pad_epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (night trimmed to the sleep period +- pad, sleep period alone)."""
    asleep = np.flatnonzero((stages >= N1) & (stages <= REM))
    first, last = int(asleep[0]), int(asleep[-1])
    lo, hi = max(first - pad_epochs, 0), min(last + pad_epochs + 1, len(stages))
    return stages[lo:hi], stages[first : last + 1]


def count_transitions(stages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transition counts over the whole sequence and per tertile of it.

    Returns
    -------
    all_counts : ndarray, shape (5, 5), int64
        ``[i, j]`` = number of epochs in stage ``i`` followed by an epoch in stage ``j``.
    tertile_counts : ndarray, shape (3, 5, 5), int64
        The same, split by the tertile of the sequence that the first epoch falls in.
    """
    src, dst = stages[:-1].astype(int), stages[1:].astype(int)
    tertile = (3 * np.arange(len(src))) // len(stages)
    ok = (src >= 0) & (dst >= 0)
    tert_counts = np.zeros((3, N_STAGES, N_STAGES), dtype=np.int64)
    np.add.at(tert_counts, (tertile[ok], src[ok], dst[ok]), 1)
    return tert_counts.sum(axis=0), tert_counts


def stage_fractions(stages: np.ndarray) -> np.ndarray:
    """Fraction of scored epochs in each stage per tertile, shape (3, 5)."""
    tertile = (3 * np.arange(len(stages))) // len(stages)
    out = np.zeros((3, N_STAGES))
    ok = stages >= 0
    np.add.at(out, (tertile[ok], stages[ok].astype(int)), 1.0)
    return out / out.sum(axis=1, keepdims=True)


def row_normalise(counts: np.ndarray) -> np.ndarray:
    """Row-normalise transition counts; rows without data become uniform."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=-1, keepdims=True)
    uniform = np.full_like(counts, 1.0 / counts.shape[-1])
    return np.where(totals > 0, counts / np.maximum(totals, 1), uniform)


def fit(data_dir: Path) -> dict:
    """Fit the statistics from every hypnogram in ``data_dir`` and return the JSON dict."""
    files = sorted(data_dir.glob("*-Hypnogram.edf"))
    if not files:
        raise SystemExit(f"no *-Hypnogram.edf files in {data_dir}")
    pad = TRIM_MINUTES * 60 // EPOCH_SECONDS
    night_all = np.zeros((N_STAGES, N_STAGES), dtype=np.int64)
    night_tert = np.zeros((3, N_STAGES, N_STAGES), dtype=np.int64)
    sp_all = np.zeros_like(night_all)
    sp_tert = np.zeros_like(night_tert)
    fractions, sp_fractions, sp_hours, n_epochs = [], [], [], 0
    for path in files:
        night, sleep_period = trim(read_epochs(path), pad)
        a, t = count_transitions(night)
        night_all += a
        night_tert += t
        a, t = count_transitions(sleep_period)
        sp_all += a
        sp_tert += t
        fractions.append(stage_fractions(night))
        sp_fractions.append(stage_fractions(sleep_period))
        sp_hours.append(len(sleep_period) * EPOCH_SECONDS / 3600)
        n_epochs += len(night)
        logger.info("%s: %d epochs after trimming", path.name, len(night))

    def rounded(x: np.ndarray) -> list:
        return np.round(x, 5).tolist()

    return {
        "source": (
            "Sleep-EDF Expanded 1.0.0 sleep-cassette hypnograms (PhysioNet, ODC-By 1.0): "
            + ", ".join(p.name for p in files)
        ),
        "method": (
            "first-order transitions between consecutive scored 30-s epochs; S3+S4 -> N3; "
            "'Sleep stage ?' and 'Movement time' unscored and skipped; 'night' = sleep period "
            f"+- {TRIM_MINUTES} min, 'sleep_period' = first to last sleep epoch; tertiles of each"
        ),
        "stages": list(STAGE_NAMES),
        "epoch_seconds": EPOCH_SECONDS,
        "trim_minutes": TRIM_MINUTES,
        "n_nights": len(files),
        "n_epochs": n_epochs,
        "sleep_period_hours_mean": round(float(np.mean(sp_hours)), 4),
        "night": {
            "counts": night_all.tolist(),
            "tertile_counts": night_tert.tolist(),
            "probabilities": rounded(row_normalise(night_all)),
            "tertile_probabilities": rounded(row_normalise(night_tert)),
            "tertile_stage_fractions": rounded(np.mean(fractions, axis=0)),
        },
        "sleep_period": {
            "counts": sp_all.tolist(),
            "tertile_counts": sp_tert.tolist(),
            "probabilities": rounded(row_normalise(sp_all)),
            "tertile_probabilities": rounded(row_normalise(sp_tert)),
            "tertile_stage_fractions": rounded(np.mean(sp_fractions, axis=0)),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = fit(args.data_dir.resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    logger.info("wrote %s (%d nights, %d epochs)", args.out, result["n_nights"], result["n_epochs"])


if __name__ == "__main__":
    main()
