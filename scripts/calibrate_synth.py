"""Measure the generator's calibration statistics on real data and on synthetic nights.

    python scripts/calibrate_synth.py                      # compare synthetic with the reference
    python scripts/calibrate_synth.py --write              # re-measure the real reference (needs ../shared/data)
    python scripts/calibrate_synth.py --nights 12 --hours 4 --seed 5

Real data (never copied, only summarised): the DREAMS EEG excerpts (``excerpt1-4.txt`` with their
hypnograms) and the PhysioNet slpdb beat annotations. The reference file
``s2v_core/data/synth_calibration.json`` holds, per statistic (see
:mod:`s2v_core.synth.calibration`), the real value, a tolerance and where it came from. The
tolerance is twice the bootstrap SD over real recordings (recordings resampled with
replacement), at least 0.25 (for a power share: at least a quarter of it; for an amplitude ratio,
log10, at least 0.08, a factor of 1.2): the statistics of four 30-min excerpts or twelve OSA nights are
themselves uncertain, and the test only asks the generator to stay inside that uncertainty.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from s2v_core.recording.registry import load_recording
from s2v_core.synth.calibration import REFERENCE_FILE, compare, load_reference, night_statistics
from s2v_core.synth.cohort import generate_cohort

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("S2V_SHARED_DATA", ROOT.parent / "shared" / "data"))
MIN_TOLERANCE = 0.25
MIN_AMPLITUDE_TOLERANCE = 0.08
N_BOOT = 200


def real_nights() -> tuple[list, list]:
    """The DREAMS EEG excerpts and the slpdb records as canonical nights."""
    dreams = SHARED / "dreams"
    eeg = [load_recording(dreams / f"excerpt{k}.txt", dreams / f"Hypnogram_excerpt{k}.txt") for k in (1, 2, 3, 4)]
    ibi = [load_recording(p) for p in sorted((SHARED / "slpdb").glob("*.ecg"))]
    return eeg, ibi


def reference(eeg: list, ibi: list, seed: int = 0) -> dict:
    """Real values with bootstrap tolerances (recordings resampled)."""
    rng = np.random.default_rng(seed)
    point = night_statistics(eeg + ibi)
    boots: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(N_BOOT):
        sample = [eeg[i] for i in rng.integers(0, len(eeg), len(eeg))] + [ibi[i] for i in rng.integers(0, len(ibi), len(ibi))]
        for k, v in night_statistics(sample).items():
            if k in boots:
                boots[k].append(v)
    stats = {}
    for k, v in point.items():
        sd = float(np.std(boots[k])) if len(boots[k]) > 10 else float("nan")
        tol = max(MIN_TOLERANCE, 2 * sd) if np.isfinite(sd) else 2 * MIN_TOLERANCE
        eeg_stat = k.startswith(("contrast", "share", "amplitude"))
        if k.startswith("share"):  # a share is a fraction: its tolerance scales with it
            tol = max(0.25 * v, 2 * sd, 0.01) if np.isfinite(sd) else max(0.5 * v, 0.01)
        if k.startswith("amplitude"):
            tol = max(MIN_AMPLITUDE_TOLERANCE, 2 * sd) if np.isfinite(sd) else 2 * MIN_AMPLITUDE_TOLERANCE
        source = "DREAMS excerpts 1-4 (EEG)" if eeg_stat else "PhysioNet slpdb, 12 records (beats)"
        stats[k] = {"real": round(v, 4), "tolerance": round(tol, 4), "bootstrap_sd": round(sd, 4), "source": source}
    return stats


def synthetic_nights(n: int, hours: float, seed: int) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        meta = generate_cohort(n, tmp, seed=seed, hours=hours, progress=False)
        return [load_recording(Path(tmp) / r.psg_file, Path(tmp) / r.hypnogram_file) for r in meta.itertuples()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="re-measure the real reference and write it")
    p.add_argument("--nights", type=int, default=10)
    p.add_argument("--hours", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    if args.write:
        if not SHARED.is_dir():
            sys.exit(f"{SHARED}: the real data are not here")
        eeg, ibi = real_nights()
        doc = {"about": "Calibration reference of s2v synth: scale-free per-stage statistics of real "
                        "recordings (see s2v_core/synth/calibration.py); written by scripts/calibrate_synth.py",
               "statistics": reference(eeg, ibi)}  # fmt: skip
        REFERENCE_FILE.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {REFERENCE_FILE}")
    ref = load_reference()
    table = compare(night_statistics(synthetic_nights(args.nights, args.hours, args.seed)), ref)
    with pd.option_context("display.width", 140, "display.max_rows", 100):
        print(table.to_string(index=False, float_format=lambda v: f"{v:+.3f}"))
    print(f"{int(table['ok'].sum())} of {len(table)} statistics within tolerance "
          f"({args.nights} synthetic nights of {args.hours:g} h, seed {args.seed})")


if __name__ == "__main__":
    main()
