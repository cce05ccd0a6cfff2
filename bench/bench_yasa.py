"""Whole-night staging speed against YASA: 8-h synthetic PSG EDF with EEG + EOG + EMG only.

    pip install -e ".[bench]"            # yasa 0.8.1 (LightGBM staging models bundled)
    python bench/bench_yasa.py [--hours 8] [--runs 5] [--cold-runs 3] [--threads 1]

The recording is the cached 8-h us_hospital synthetic night (``s2v_core.shipped``) cut down to
three channels written as a new EDF: C4-M1 (EEG), E1-M2 (EOG), Chin1-Chin2 (EMG), all 256 Hz.
Both tools get exactly these channels:
  - ours: the shipped small model, modalities eeg+eog+emg;
  - peer: ``yasa.SleepStaging(raw, eeg_name="C4-M1", eog_name="E1-M2", emg_name="Chin1-Chin2")``
    with its bundled eeg+eog+emg LightGBM model (no age/sex given).

1. Warm, in-process (issue 6 goal: ours <= 0.5x YASA): each tool does the whole job once as a
   warm-up (imports, numba JIT, file in the page cache), then ``--runs`` alternating timed runs;
   medians. A run is file -> per-epoch CSV, the work of ``s2v predict``:
     ours  load_classifier + load_night + predict_night (with the model's feature ranges, so the
           "unlike the training data" check runs as in ``s2v predict``) + CSV
     peer  mne.io.read_raw_edf(preload=True) + SleepStaging(...) + .predict() + CSV
   Step times are printed too (YASA's ``predict()`` loads its classifier each call; ours loads
   the model in the first step, so both totals include a model load).
2. Cold, whole process from the command line (goal: ours <= YASA): ``s2v predict FILE
   --modalities eeg,eog,emg --out CSV --threads T`` against ``python -c`` running the peer steps
   above, each from a fresh interpreter, alternating, median of ``--cold-runs``.

Both tools run with the same thread count (``--threads``: torch threads for ours; OMP, MKL,
OpenBLAS and numba threads for both, set before anything is imported). Agreement with the
synthetic night's hypnogram is printed for information only (synthetic signals; YASA was trained
on real PSG, our model on synthetic nights like this one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = {"eeg": "C4-M1", "eog": "E1-M2", "emg": "Chin1-Chin2"}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")

PEER_SCRIPT = r"""
import sys, warnings
warnings.filterwarnings("ignore", message=".*unpickle estimator.*")
import mne, yasa
path, out, eeg, eog, emg = sys.argv[1:6]
raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
hyp = yasa.SleepStaging(raw, eeg_name=eeg, eog_name=eog, emg_name=emg).predict()
frame = hyp.proba.reset_index(drop=True)
frame.insert(0, "stage", hyp.as_int().to_numpy())
frame.to_csv(out, index_label="epoch")
"""


def _s2v_executable() -> str:
    exe = Path(sys.executable).with_name("s2v")
    return str(exe) if exe.exists() else "s2v"


def write_three_channel_edf(src: Path, dst: Path) -> Path:
    """Copy the EEG, EOG and EMG channels of ``src`` (physical values, same headers) to ``dst``."""
    import pyedflib

    with pyedflib.EdfReader(str(src)) as reader:
        labels = reader.getSignalLabels()
        idx = [labels.index(label) for label in CHANNELS.values()]
        headers = [reader.getSignalHeader(i) for i in idx]
        data = [reader.readSignal(i) for i in idx]
        start = reader.getStartdatetime()
    writer = pyedflib.EdfWriter(str(dst), len(idx), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(start)
        writer.writeSamples(data)
    finally:
        writer.close()
    return dst


# --- one run of each tool, in-process --------------------------------------------------------
def run_ours(path: Path, out: Path, threads: int) -> tuple[dict[str, float], object]:
    import torch

    from s2v_core.inference.predict import load_classifier, model_id, predict_night
    from s2v_core.recording.loading import load_night

    torch.set_num_threads(threads)
    from s2v_core.recording import loading

    loading.READ_THREADS = threads  # channel reading threads too: the same budget as the peer
    steps: dict[str, float] = {}
    t = time.perf_counter()
    folder = ROOT / "models" / "sleep2vec-small" / "classifier"
    model, _, extra = load_classifier(folder)
    steps["load model"] = time.perf_counter() - t
    t = time.perf_counter()
    night = load_night(path, modalities=tuple(CHANNELS))
    steps["read + preprocess"] = time.perf_counter() - t
    t = time.perf_counter()
    # with the model's training feature ranges, as `s2v predict` does (the familiarity warnings)
    pred = predict_night(model, night, tuple(CHANNELS), name=model_id(folder), ranges=extra.get("feature_ranges"))
    steps["stage (model)"] = time.perf_counter() - t
    t = time.perf_counter()
    pred.to_frame(night.start_time).to_csv(out, index=False)
    steps["write CSV"] = time.perf_counter() - t
    return steps, pred.stages


def run_peer(path: Path, out: Path) -> tuple[dict[str, float], object]:
    import mne
    import yasa

    steps: dict[str, float] = {}
    t = time.perf_counter()
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    steps["read (MNE preload)"] = time.perf_counter() - t
    t = time.perf_counter()
    ss = yasa.SleepStaging(
        raw, eeg_name=CHANNELS["eeg"], eog_name=CHANNELS["eog"], emg_name=CHANNELS["emg"]
    )
    steps["pick + resample to 100 Hz"] = time.perf_counter() - t
    t = time.perf_counter()
    ss.fit()
    steps["features"] = time.perf_counter() - t
    t = time.perf_counter()
    hyp = ss.predict()
    steps["load classifier + predict"] = time.perf_counter() - t
    t = time.perf_counter()
    frame = hyp.proba.reset_index(drop=True)
    frame.insert(0, "stage", hyp.as_int().to_numpy())
    frame.to_csv(out, index_label="epoch")
    steps["write CSV"] = time.perf_counter() - t
    return steps, hyp.as_int().to_numpy()


def _profile(path: Path, out: Path, threads: int, top: int = 14) -> None:
    """Print the functions where one warm run of ours spends its time (cumulative)."""
    import cProfile
    import pstats
    import re

    prof = cProfile.Profile()
    prof.enable()
    run_ours(path, out, threads)
    prof.disable()
    wanted = re.compile(r"s2v_core|pyedflib|resample_poly|percentile|median|partition")
    rows = []
    for (filename, line, func), (_, _, _, cumtime, _) in pstats.Stats(prof).stats.items():
        where = f"{filename}:{line}({func})"
        if wanted.search(where) and "bench_yasa" not in filename:
            short = re.sub(r".*/(site-packages|work/main)/", "", where)
            rows.append((cumtime, short))
    print("\nprofile of one warm run of ours (cumulative seconds, includes callees):")
    for cumtime, where in sorted(rows, reverse=True)[:top]:
        print(f"  {cumtime:6.2f} s  {where}")


def _median_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _cold(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return seconds


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=5, help="timed warm runs per tool (median)")
    ap.add_argument("--cold-runs", type=int, default=3, help="fresh processes per tool (median)")
    ap.add_argument("--threads", type=int, default=1, help="threads for both tools")
    ap.add_argument("--workdir", type=Path, help="where the EDF and CSVs go (default: temp)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--profile", action="store_true",
                    help="profile one warm run of ours and print where its time goes")
    args = ap.parse_args()
    if args.runs < 1 or args.cold_runs < 1 or args.threads < 1:
        ap.error("--runs, --cold-runs and --threads must be >= 1")
    for var in THREAD_VARS:  # before numpy, torch, lightgbm or numba are imported
        os.environ[var] = str(args.threads)
    # YASA's bundled classifiers were pickled with scikit-learn 0.24; the label encoder inside
    # still works, so the version warning only clutters the output
    warnings.filterwarnings("ignore", message=".*unpickle estimator.*")
    try:
        import yasa
    except ImportError:
        raise SystemExit('YASA is not installed: pip install -e ".[bench]" (yasa==0.8.1)') from None
    import lightgbm
    import mne
    import numpy as np
    import torch

    from s2v_core.evaluation import staging_metrics
    from s2v_core.io.hypnogram import read_hypnogram
    from s2v_core.synth.cohort import full_sample_night

    work = args.workdir or Path(tempfile.mkdtemp(prefix="s2v-bench-yasa-"))
    work.mkdir(parents=True, exist_ok=True)
    psg, hyp_path = full_sample_night(hours=args.hours)
    edf = write_three_channel_edf(psg, work / f"psg-{args.hours:g}h-eeg-eog-emg.edf")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}; python {platform.python_version()}, "
        f"torch {torch.__version__}, yasa {yasa.__version__}, lightgbm {lightgbm.__version__}, "
        f"mne {mne.__version__}; {args.threads} thread(s) for both"
    )
    print(
        f"input: {edf.name} ({edf.stat().st_size / 2**20:.0f} MB, {args.hours:g} h), channels "
        + ", ".join(f"{m.upper()} {c!r}" for m, c in CHANNELS.items())
        + " at 256 Hz; both tools use all three"
    )

    # 1. warm, in-process
    run_ours(edf, work / "ours.csv", args.threads)
    run_peer(edf, work / "peer.csv")
    ours_runs, peer_runs = [], []
    for _ in range(args.runs):
        steps, ours_stages = run_ours(edf, work / "ours.csv", args.threads)
        ours_runs.append(steps)
        steps, peer_stages = run_peer(edf, work / "peer.csv")
        peer_runs.append(steps)
    ours_total = statistics.median(sum(r.values()) for r in ours_runs)
    peer_total = statistics.median(sum(r.values()) for r in peer_runs)
    ratio_warm = ours_total / peer_total
    print(f"\nwarm, in-process, file -> per-epoch CSV, median of {args.runs}:")
    for name, runs, total in (("ours", ours_runs, ours_total), ("YASA", peer_runs, peer_total)):
        detail = ", ".join(f"{k} {v:.2f}" for k, v in _median_steps(runs).items())
        print(f"  {name:5s} {total:6.2f} s   ({detail})")
    print(f"  ratio ours/YASA: {ratio_warm:.2f}  (goal <= 0.5: {_verdict(ratio_warm <= 0.5)})")

    # 2. cold, whole process from the command line
    env = dict(os.environ)
    ours_cmd = [
        _s2v_executable(), "predict", str(edf), "--modalities", ",".join(CHANNELS),
        "--out", str(work / "ours-cli.csv"), "--threads", str(args.threads),
    ]
    peer_cmd = [sys.executable, "-c", PEER_SCRIPT, str(edf), str(work / "peer-cli.csv"),
                *CHANNELS.values()]
    ours_cold, peer_cold = [], []
    for _ in range(args.cold_runs):
        ours_cold.append(_cold(ours_cmd, env))
        peer_cold.append(_cold(peer_cmd, env))
    oc, pc = statistics.median(ours_cold), statistics.median(peer_cold)
    ratio_cold = oc / pc
    print(f"\ncold, fresh process from the command line, median of {args.cold_runs}:")
    print(f"  ours  {oc:6.2f} s   s2v predict ... --modalities eeg,eog,emg  "
          f"(runs: {', '.join(f'{x:.2f}' for x in ours_cold)})")
    print(f"  YASA  {pc:6.2f} s   python -c 'mne.io.read_raw_edf + SleepStaging(...).predict()'  "
          f"(runs: {', '.join(f'{x:.2f}' for x in peer_cold)})")
    print(f"  ratio ours/YASA: {ratio_cold:.2f}  (goal <= 1: {_verdict(ratio_cold <= 1)})")
    imports = {
        "ours": _cold([sys.executable, "-c", "import torch, s2v_core.cli.main, s2v_core.cli.predict, "
                       "s2v_core.recording.loading, s2v_core.inference.predict, s2v_core.views.exports"], env),
        "YASA": _cold([sys.executable, "-c", "import mne, yasa, antropy, lightgbm"], env),
    }
    print("  of which imports alone (one fresh process each): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in imports.items())
          + " (antropy compiles its numba kernels at import, in every new process)")
    if args.profile:
        _profile(edf, work / "ours.csv", args.threads)

    # information only: agreement with the synthetic hypnogram
    ref = read_hypnogram(hyp_path).aligned(len(ours_stages)).stages
    peer_codes = np.where(np.asarray(peer_stages) < 0, -1, peer_stages)
    agreement = {}
    for name, stages in (("ours", ours_stages), ("YASA", peer_codes)):
        m = staging_metrics(ref, np.asarray(stages, dtype=np.int64))
        agreement[name] = {"accuracy": m.accuracy, "kappa": m.kappa, "n_epochs": m.n_epochs}
    print("\nagreement with the synthetic hypnogram (information only, 5-class): "
          + "; ".join(f"{k} accuracy {v['accuracy']:.3f} kappa {v['kappa']:.3f}"
                      for k, v in agreement.items()))
    if args.json:
        args.json.write_text(json.dumps({
            "hours": args.hours, "threads": args.threads, "channels": CHANNELS,
            "warm": {"ours_s": ours_total, "yasa_s": peer_total, "ratio": ratio_warm,
                     "ours_steps": _median_steps(ours_runs), "yasa_steps": _median_steps(peer_runs)},
            "cold": {"ours_s": oc, "yasa_s": pc, "ratio": ratio_cold,
                     "ours_runs": ours_cold, "yasa_runs": peer_cold, "imports_s": imports},
            "agreement": agreement,
        }, indent=2))


if __name__ == "__main__":
    main()
