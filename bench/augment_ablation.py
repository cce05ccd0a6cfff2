"""Does the domain randomisation of training nights help or hurt EEG staging of real recordings?

    python bench/augment_ablation.py [--work .cache/recipe] [--seeds 3] [--out bench/results/augment_ablation]

A diagnostic, not a model: a gradient-boosted tree (scikit-learn's HistGradientBoostingClassifier)
reads the EEG features the model reads (:func:`s2v_core.signals.features.night_features`) of the
recipe's synthetic training nights that have an EEG, with or without one randomised copy of each
(:func:`s2v_core.synth.acquisition.randomise_night`, as ``s2v prepare --augment 1`` makes them),
and stages the DREAMS excerpts 1-4 of ../shared/data (zero-shot: no real epoch in training). It
takes seconds per condition, so the randomisation's settings can be compared before a network is
trained on them; the network's own figures come from ``bench/bench_real.py``.

Conditions: the originals alone; originals plus copies made with the EOG-into-EEG leak range of
earlier stores (0.05-0.3), the current one (:data:`~s2v_core.synth.acquisition.EOG_LEAK`) and
none. Copies are drawn ``--seeds`` times per condition (different random acquisitions). Kappa per
excerpt and pooled (1-4; and 1, 2, 4, where YASA also runs). Needs the recipe's cohort
(``bash scripts/train_shipped_model.sh`` steps 1-2, or ``s2v synth --nights 48 --hours 3 --seed
2026``) and ../shared/data/dreams; skips cleanly without them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import cohen_kappa_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from real_data import SHARED  # noqa: E402

from s2v_core.cohort.store import CohortStore  # noqa: E402
from s2v_core.recording.registry import load_recording  # noqa: E402
from s2v_core.signals.features import night_features  # noqa: E402
from s2v_core.synth.acquisition import EOG_LEAK, randomise_night  # noqa: E402

CONDITIONS = {"no copies": None, "copies, leak 0.05-0.3 (before)": (0.05, 0.3),
              f"copies, leak {EOG_LEAK[0]:g}-{EOG_LEAK[1]:g} (now)": EOG_LEAK,
              "copies, no leak": (0.0, 0.0)}  # fmt: skip
EXCERPTS = ("excerpt1", "excerpt2", "excerpt3", "excerpt4")


def eeg_rows(night) -> tuple[np.ndarray, np.ndarray]:
    """``(features, stages)`` of a night's labelled epochs with a valid EEG."""
    ok = np.asarray(night.epoch_valid["eeg"], bool)
    x = night_features("eeg", night.signals["eeg"], ok)
    keep = ok & (np.asarray(night.stages) >= 0)
    return x[keep], np.asarray(night.stages)[keep].astype(np.int64)


def training_nights(work: Path) -> list:
    """The recipe store's original training nights with an EEG, loaded from the cohort's files."""
    store = CohortStore(work / "store")
    meta = pd.read_csv(work / "cohort" / "metadata.csv").set_index("night")
    out = []
    for night_id in store.nights("train"):
        if "~aug" in night_id or "eeg" not in store.entry(night_id).modalities:
            continue
        row = meta.loc[night_id]
        out.append(load_recording(work / "cohort" / row["psg_file"], work / "cohort" / row["hypnogram_file"]))
    return out


def score(model, dreams: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    pred = {k: model.predict(x) for k, (x, _) in dreams.items()}
    out = {k: float(cohen_kappa_score(y, pred[k])) for k, (_, y) in dreams.items()}
    for name, keys in (("pooled 1-4", EXCERPTS), ("pooled 1, 2, 4", ("excerpt1", "excerpt2", "excerpt4"))):
        keys = [k for k in keys if k in dreams]
        out[name] = float(cohen_kappa_score(np.concatenate([dreams[k][1] for k in keys]),
                                            np.concatenate([pred[k] for k in keys])))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "recipe", help="the recipe's work folder")
    ap.add_argument("--seeds", type=int, default=3, help="random draws of the copies per condition")
    ap.add_argument("--out", type=Path, default=None, help="folder for table.csv and summary.json")
    args = ap.parse_args(argv)
    dreams_dir = SHARED / "dreams"
    if not (args.work / "store" / "manifest.csv").exists() or not (dreams_dir / "excerpt1.txt").exists():
        print(f"skipped: needs {args.work}/store and {dreams_dir} (see the docstring)")
        return 0
    t0 = time.perf_counter()
    dreams = {}
    for k in EXCERPTS:
        if (dreams_dir / f"{k}.txt").exists():
            dreams[k] = eeg_rows(load_recording(dreams_dir / f"{k}.txt", dreams_dir / f"Hypnogram_{k}.txt"))
    nights = training_nights(args.work)
    originals = [eeg_rows(n) for n in nights]
    print(f"{len(nights)} synthetic training nights with EEG, {len(dreams)} DREAMS excerpts", flush=True)
    rows = []
    for name, leak in CONDITIONS.items():
        for seed in range(1 if leak is None else args.seeds):
            parts = list(originals)
            if leak is not None:
                for j, night in enumerate(nights):
                    copy = randomise_night(night, np.random.default_rng([seed, j]), eog_leak=leak)
                    parts.append(eeg_rows(copy))
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            model = HistGradientBoostingClassifier(random_state=0).fit(x, y)
            rows.append({"condition": name, "seed": seed, **score(model, dreams)})
            print(f"{name:34s} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()
                                                           if k not in ("condition", "seed")), flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    summary = table.drop(columns="seed").groupby("condition", sort=False).agg(["mean", "min", "max"]).round(3)
    print()
    print(summary.to_string())
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "table.csv", index=False)
        means = table.drop(columns="seed").groupby("condition", sort=False).mean().round(4)
        (args.out / "summary.json").write_text(json.dumps(means.to_dict(orient="index"), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
