"""Commands that do not run the model must feel instant: `s2v --version` and `s2v info`.

    python bench/bench_startup.py [--file PATH] [--repeats 5]

Each command is run as a fresh process, as a user types it (``--repeats`` times; the median is
printed). The peer is what a user of MNE does to see the same file: a fresh ``python -c`` that
imports MNE and reads the recording with ``mne.io.read_raw(..., preload=True)``. ``s2v info``
does more (channel mapping, units, R peaks, per-modality quality), so a ratio near 1 means the
summary costs about what opening the file in MNE costs.

Goals (issue 14, point 5): ``s2v --version`` < 1 s, ``s2v info`` on DREAMS excerpt3.edf < 2 s,
and neither imports PyTorch (checked here: the run fails if ``torch`` is in ``sys.modules``).
The file defaults to ../shared/data/dreams/excerpt3.edf and, when absent, to the shipped 1-h
sample night.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DREAMS = ROOT.parent / "shared" / "data" / "dreams" / "excerpt3.edf"

_NO_TORCH = (
    "import runpy, sys; sys.argv = ['s2v', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('s2v_core.cli', run_name='__main__')\n"
    "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
    "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)\n"
)


def _time(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    path = args.file
    if path is None:
        if DREAMS.is_file():
            path = DREAMS
        else:
            from s2v_core.shipped import shipped_night

            path = shipped_night()[0]
    py = sys.executable
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"file: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    version = _time([py, "-c", _NO_TORCH, "--version"], args.repeats)
    info = _time([py, "-c", _NO_TORCH, "info", str(path)], args.repeats)
    peer = _time([py, "-c", "import sys, mne; mne.io.read_raw(sys.argv[1], preload=True, verbose='error')",
                  str(path)], args.repeats)
    bare = _time([py, "-c", "pass"], args.repeats)
    print(f"{'command':<34}{'median s':>10}{'goal s':>8}  met")
    print(f"{'python -c pass (interpreter)':<34}{bare:>10.2f}")
    print(f"{'s2v --version':<34}{version:>10.2f}{1.0:>8.1f}  {'yes' if version < 1.0 else 'NO'}")
    print(f"{'s2v info FILE':<34}{info:>10.2f}{2.0:>8.1f}  {'yes' if info < 2.0 else 'NO'}")
    print(f"{'peer: mne.io.read_raw(FILE)':<34}{peer:>10.2f}")
    print(f"ratio s2v info / MNE read: {info / peer:.2f}; torch imported by neither s2v command: yes")


if __name__ == "__main__":
    main()
