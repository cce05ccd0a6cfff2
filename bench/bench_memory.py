"""Peak memory to read a 24-h, nine-modality recording into a canonical night.

    python bench/bench_memory.py [--hours 24]

Generates (once, cached) a synthetic hospital PSG of the given length as EDF+, then in separate
processes measures peak resident memory (ru_maxrss) of
  - ours: ``s2v_core.recording.loading.load_night`` (channel by channel, all nine modalities incl. derived);
  - peer: ``mne.io.read_raw_edf(..., preload=True)`` on the same file (MNE loads every channel at
    the highest rate as float64, the usual way people open a PSG in Python).
Prints both figures, the file size and the ratio. Goal (issue 6): ours <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
mode, path = sys.argv[1], sys.argv[2]
if mode == "ours":
    from s2v_core.recording.loading import load_night
    night = load_night(path)
    info = {"modalities": list(night.modalities), "n_epochs": night.n_epochs}
else:
    import mne
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    info = {"n_channels": len(raw.ch_names), "n_times": int(raw.n_times)}
info["seconds"] = time.perf_counter() - t
info["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(info))
"""


def measure(mode: str, path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, path], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    args = ap.parse_args()
    from s2v_core.synth.cohort import full_sample_night

    t = time.perf_counter()
    psg, _ = full_sample_night(hours=args.hours)
    print(f"recording: {psg.name}, {args.hours:g} h, {os.path.getsize(psg) / 2**20:.0f} MB "
          f"(generated/cached in {time.perf_counter() - t:.1f} s)")
    ours = measure("ours", str(psg))
    peer = measure("mne", str(psg))
    print(f"ours  load_night          peak {ours['peak_mb']:7.0f} MB  {ours['seconds']:6.1f} s  "
          f"{len(ours['modalities'])} modalities, {ours['n_epochs']} epochs")
    print(f"peer  mne preload=True    peak {peer['peak_mb']:7.0f} MB  {peer['seconds']:6.1f} s  "
          f"{peer['n_channels']} channels")
    print(f"ratio ours/peer peak memory: {ours['peak_mb'] / peer['peak_mb']:.2f}  "
          f"(goal: ours <= 2048 MB: {'met' if ours['peak_mb'] <= 2048 else 'NOT met'})")


if __name__ == "__main__":
    main()
