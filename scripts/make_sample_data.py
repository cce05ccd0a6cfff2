"""Regenerate ``sample_data/``: one short synthetic PSG night shipped with the project.

    python scripts/make_sample_data.py

The night is deterministic (fixed seed), so rerunning gives byte-identical files. Longer sample
nights are generated on first use by :func:`s2v_core.shipped.sample_cohort` instead of shipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from s2v_core.synth.cohort import generate_cohort

SEED = 7
OUT = Path(__file__).resolve().parents[1] / "sample_data"


def main() -> None:
    tmp = OUT.with_name("sample_data.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # eu_clinic: a full 9-modality PSG montage at 200 Hz, about 7.7 MB per hour of EDF.
    frame = generate_cohort(1, tmp, seed=SEED, hours=1.0, sites=["eu_clinic"])
    OUT.mkdir(exist_ok=True)
    for f in tmp.iterdir():
        shutil.copy2(f, OUT / f.name)
    shutil.rmtree(tmp)
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
