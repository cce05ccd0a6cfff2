"""Staging agreement on the DREAMS EEG excerpts, against YASA on the same epochs.

    pip install -e ".[bench]"            # yasa 0.8.1
    python bench/bench_dreams.py [--data ../shared/data/dreams] [--out-dir DIR] [--threads 1]

Data: the DREAMS Sleep Spindles excerpts (30 min each; not in this repository, skipped when
absent). ``excerptN.txt`` holds one EEG channel (1: C3-A1 100 Hz, 2 and 4: CZ-A1 200 Hz,
3: C3-A1 50 Hz), read with :func:`s2v_core.recording.dreams.load_dreams_night`; the sampling rate
comes from the hypnogram's span. ``excerpt3.edf`` is the full 50-Hz PSG of excerpt 3.

Reference: ``Hypnogram_excerptN.txt``, one code per 5 s (5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4,
negative unscored), read by :func:`s2v_core.io.hypnogram.read_hypnogram`: codes are mapped to
project stages first (S3 and S4 both N3), then each 30-s epoch takes the stage covering most of
its six codes; a tie goes to the stage that comes first in the epoch; an epoch with fewer than
three scored codes is unscored and left out of every metric.

Compared, on the same 30-s epochs:
  - ours, EEG only: the shipped small model on the ``eeg`` modality of each excerpt;
  - YASA, EEG only: ``yasa.SleepStaging(raw, eeg_name=LABEL).predict()`` on an MNE RawArray of
    the same samples (in V; no age/sex, so its ``clf_eeg`` model). YASA refuses recordings at or
    below 80 Hz: the refusal is recorded, not worked around. For information only, one extra
    row gives YASA on excerpt 3 after upsampling it by hand to 100 Hz with MNE;
  - ours on ``excerpt3.edf`` with every non-empty subset of its usable modalities (SpO2 is
    scaled wrongly in that file and is rejected by the quality check), and YASA's four channel
    combinations (EEG, +EOG, +EMG, +both) on the same file.
Metrics: 5-class accuracy, Cohen's kappa and macro-F1, per excerpt and pooled over epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

# the library's YASA runner (bench_real imports it from here too)
from s2v_core.evaluation.peers import yasa_stage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("S2V_SHARED_DATA", ROOT.parent / "shared" / "data")) / "dreams"
EXCERPTS = (1, 2, 3, 4)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
EDF_CHANNELS = {"eeg": "C3-A1", "eog": "EOG1-A1", "emg": "EMG1"}  # what YASA is given in the EDF


def metrics(reference, predicted) -> dict:
    """5-class accuracy, kappa, macro-F1 on the epochs scored in the reference."""
    from s2v_core.evaluation import staging_metrics

    m = staging_metrics(reference, predicted, n_classes=5)
    return {"n_epochs": m.n_epochs, "accuracy": m.accuracy, "kappa": m.kappa,
            "macro_f1": m.macro_f1}


def counts(stages) -> str:
    import numpy as np

    names = ("W", "N1", "N2", "N3", "R")
    s = np.asarray(stages)
    return " ".join(f"{n}={int((s == k).sum())}" for k, n in enumerate(names))


def _fmt(m: dict | None) -> str:
    if m is None:
        return f"{'-':>6} {'-':>6} {'-':>6}"
    return f"{m['accuracy']:6.3f} {m['kappa']:6.3f} {m['macro_f1']:6.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the DREAMS files")
    ap.add_argument("--out-dir", type=Path, help="write per-excerpt and subset tables (CSV, JSON)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not (args.data / "Hypnogram_excerpt1.txt").exists():
        print(f"skipped: DREAMS data not found in {args.data}")
        return 0
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    # YASA's bundled classifiers were pickled with scikit-learn 0.24 (a version warning only)
    warnings.filterwarnings("ignore", message=".*unpickle estimator.*")
    try:
        import yasa
    except ImportError:
        print('YASA is not installed: pip install -e ".[bench]" (yasa==0.8.1)', file=sys.stderr)
        return 2
    import mne
    import numpy as np
    import pandas as pd
    import torch

    from s2v_core.evaluation.robustness import modality_importance, subset_metrics
    from s2v_core.inference.predict import load_classifier, predict_night
    from s2v_core.io.dreams import read_dreams_signal
    from s2v_core.recording.dreams import load_dreams_night
    from s2v_core.recording.loading import load_night

    torch.set_num_threads(args.threads)
    mne.set_log_level("ERROR")
    model, _, _ = load_classifier(ROOT / "models" / "sleep2vec-small" / "classifier")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}, yasa {yasa.__version__}, mne {mne.__version__}; "
          f"{args.threads} thread(s); data {args.data}")

    rows, pooled = [], {"ref": [], "ours": [], "ours_where_yasa": [], "yasa": [], "ref_yasa": []}
    print("\nEEG only, 5-class, per excerpt (accuracy kappa macro-F1):")
    print(f"{'excerpt':8s} {'channel':7s} {'Hz':>4s} {'epochs':>6s}  {'ours':^20s}  {'YASA':^20s}  "
          "reference / ours / YASA stage counts")
    for k in EXCERPTS:
        txt = args.data / f"excerpt{k}.txt"
        hyp = args.data / f"Hypnogram_excerpt{k}.txt"
        night = load_dreams_night(txt, hyp)
        ref = night.stages.astype(np.int64)
        t = time.perf_counter()
        ours = predict_night(model, night, ("eeg",)).stages.astype(np.int64)
        ours_s = time.perf_counter() - t
        sig = read_dreams_signal(txt)
        fs = night.provenance["eeg"].original_sfreq
        info = mne.create_info([sig.label], fs, ch_types="eeg")
        raw = mne.io.RawArray(sig.data[None, :] * 1e-6, info, verbose="error")
        peer = yasa_stage(raw, sig.label)
        m_ours = metrics(ref, ours)
        m_peer = metrics(ref, peer["stages"]) if "stages" in peer else None
        pooled["ref"].append(ref)
        pooled["ours"].append(ours)
        if m_peer is not None:
            pooled["yasa"].append(peer["stages"])
            pooled["ref_yasa"].append(ref)
            pooled["ours_where_yasa"].append(ours)
        peer_counts = counts(peer["stages"]) if m_peer else f"refused ({peer['refused']})"
        print(f"{k:<8d} {sig.label:7s} {fs:4.0f} {m_ours['n_epochs']:6d}  {_fmt(m_ours)}  "
              f"{_fmt(m_peer)}  {counts(ref)} / {counts(ours)} / {peer_counts}")
        rows.append({"excerpt": k, "channel": sig.label, "sfreq": fs,
                     "n_epochs": m_ours["n_epochs"], "ours": m_ours, "ours_seconds": ours_s,
                     "yasa": m_peer, "yasa_refused": peer.get("refused"),
                     "yasa_seconds": peer.get("seconds")})
        if fs <= 80:  # information only: what YASA would do if the user upsampled by hand
            up = yasa_stage(raw.copy().resample(100.0), sig.label)
            if "stages" in up:
                m_up = metrics(ref, up["stages"])
                print(f"{'':8s} (YASA after upsampling {fs:g} -> 100 Hz by hand: "
                      f"{_fmt(m_up).strip()}; {counts(up['stages'])})")
                rows[-1]["yasa_upsampled_by_hand"] = m_up

    def cat(key: str):
        return np.concatenate(pooled[key]) if pooled[key] else np.zeros(0, np.int64)

    all_ours = metrics(cat("ref"), cat("ours"))
    print(f"{'pooled':8s} {'all 4':7s} {'':4s} {all_ours['n_epochs']:6d}  {_fmt(all_ours)}  "
          f"{_fmt(None)}")
    if pooled["yasa"]:
        where = [r["excerpt"] for r in rows if r["yasa"] is not None]
        ours_w = metrics(cat("ref_yasa"), cat("ours_where_yasa"))
        peer_w = metrics(cat("ref_yasa"), cat("yasa"))
        label = "+".join(str(x) for x in where)
        print(f"{'pooled':8s} {label:7s} {'':4s} {ours_w['n_epochs']:6d}  {_fmt(ours_w)}  "
              f"{_fmt(peer_w)}  (the excerpts YASA accepted)")
    else:
        ours_w = peer_w = None

    # excerpt3.edf: every subset of its modalities (ours) and YASA's channel combinations
    edf = args.data / "excerpt3.edf"
    subset_frame = None
    if edf.exists():
        night = load_night(edf, args.data / "Hypnogram_excerpt3.txt")
        ref = night.stages.astype(np.int64)
        mods = night.modalities
        t = time.perf_counter()
        subset_frame = subset_metrics(
            lambda s: predict_night(model, night, s).stages, mods, ref, n_classes=5
        )
        took = time.perf_counter() - t
        f = subset_frame.sort_values("kappa", ascending=False).reset_index(drop=True)
        print(f"\nexcerpt3.edf (50 Hz PSG, {night.n_epochs} epochs, reference "
              f"{counts(ref)}): ours on all {len(f)} subsets of {'+'.join(mods)} "
              f"({took:.1f} s)")
        k = f["kappa"]
        print(f"  kappa over subsets: median {k.median():.3f}, best {k.max():.3f}, worst "
              f"{k.min():.3f}; {int((k > 0.2).sum())} subsets above 0.2, "
              f"{int((k <= 0).sum())} at or below 0")
        imp = modality_importance(subset_frame, metric="kappa")
        print("  mean kappa of the subsets with / without each modality: " + "; ".join(
            f"{m} {r['mean_with']:.3f}/{r['mean_without']:.3f}" for m, r in imp.iterrows()))
        print(f"  {'subset':44s} {'acc':>6s} {'kappa':>6s} {'mF1':>6s}")
        named = ["eeg", "eeg+eog", "eeg+emg", "eeg+eog+emg", "+".join(mods)]
        show = list(f.head(8)["subset"]) + [s for s in named if s not in set(f.head(8)["subset"])]
        for s in show:
            r = f[f["subset"] == s].iloc[0]
            print(f"  {s:44s} {r['accuracy']:6.3f} {r['kappa']:6.3f} {r['macro_f1']:6.3f}")
        raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
        print(f"  YASA on excerpt3.edf ({raw.info['sfreq']:g} Hz):")
        for combo in (("eeg",), ("eeg", "eog"), ("eeg", "emg"), ("eeg", "eog", "emg")):
            names = {m: EDF_CHANNELS[m] for m in combo}
            peer = yasa_stage(raw, names["eeg"], names.get("eog"), names.get("emg"))
            ours = subset_frame[subset_frame["subset"] == "+".join(combo)].iloc[0]
            result = (_fmt(metrics(ref, peer["stages"])) if "stages" in peer
                      else f"refused ({peer['refused']})")
            print(f"    {'+'.join(combo):12s} ({', '.join(names.values())}): YASA {result}; "
                  f"ours kappa {ours['kappa']:.3f}")

    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "dreams_excerpts.json").write_text(json.dumps(
            {"excerpts": rows, "pooled_ours_all": all_ours, "pooled_ours_where_yasa": ours_w,
             "pooled_yasa": peer_w}, indent=2, default=float))
        if subset_frame is not None:
            subset_frame.to_csv(args.out_dir / "excerpt3_subsets.csv", index=False)
        pd.DataFrame([{**{k: v for k, v in r.items() if k not in ("ours", "yasa")},
                       **{f"ours_{k}": v for k, v in r["ours"].items()},
                       **{f"yasa_{k}": v for k, v in (r["yasa"] or {}).items()}}
                      for r in rows]).to_csv(args.out_dir / "dreams_excerpts.csv", index=False)
        print(f"\ntables written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
