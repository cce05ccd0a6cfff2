"""Does the real-data adaptation stage gain from several seeds: averaged predictions or averaged weights?

    bash scripts/train_shipped_model.sh            # (or its synth + prepare steps) for WORK/store
    python bench/adapt_soup.py [--work .cache/recipe] [--seeds 3] [--out bench/results/adapt_soup]
    python bench/ensemble_real.py OUT/seed0 OUT/seed1 OUT/seed2 --peers bench/results/real_mixed_seed0
    python bench/ensemble_real.py OUT/soup --peers bench/results/real_mixed_seed0

The adaptation stage (``s2v_core.train.adapt``) fine-tunes the synthetic-only classifier on
synthetic + real nights. Its figures move a lot between training seeds while the real data are
240 DREAMS epochs and 12 slpdb records, so this asks what a user would get from K seeds of it:

* each seed alone, leave one subject out exactly as ``bench_real.py`` does (the stage re-run with
  the subject left out; only that subject scored);
* the average of the K seeds' stage probabilities (an ensemble: K models at inference);
* a "soup": the K adapted classifiers' weights averaged into one model (:func:`average_checkpoints`;
  the cost of one model at inference; it works when fine-tuning from one start keeps the runs in
  one basin).

Writes ``OUT/seed<k>/probabilities.npz`` and ``OUT/soup/probabilities.npz`` in ``bench_real``'s
format (keys ``ours LOSO|<recording>``), scored by ``bench/ensemble_real.py``. Seed 0 is the
setting the recipe ships, so ``OUT/seed0`` reproduces ``bench_real``'s LOSO column.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_real import real_nights, score_model  # noqa: E402
from real_data import SHARED, prepare_real  # noqa: E402

from s2v_core.errors import S2VError  # noqa: E402
from s2v_core.inference.predict import load_classifier  # noqa: E402
from s2v_core.io.atomic import staged_dir  # noqa: E402
from s2v_core.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from s2v_core.shipped import MODEL_DIR  # noqa: E402
from s2v_core.train.adapt import ADAPTATION, adapt_to_real  # noqa: E402


def average_checkpoints(checkpoints: list[Path], out: Path) -> Path:
    """One classifier whose floating-point weights are the mean of ``checkpoints``' (same model).

    Everything else (integer buffers, the metadata such as the training feature ranges) must be
    equal and is taken from the first; ``extra["averaged_from"]`` lists the folders.
    """
    loaded = [load_checkpoint(c) for c in checkpoints]
    model, config, extra = loaded[0]
    for path, (_, other, _) in zip(checkpoints[1:], loaded[1:], strict=True):
        if other.to_dict() != config.to_dict():
            raise S2VError(f"{path}: another model than {checkpoints[0]}; only runs of one model can be averaged")
    states = [m.state_dict() for m, _, _ in loaded]
    mean = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            mean[key] = (sum(s[key].double() for s in states) / len(states)).to(first.dtype)
        elif any(not torch.equal(s[key], first) for s in states[1:]):
            raise S2VError(f"{key} differs between the checkpoints and cannot be averaged")
        else:
            mean[key] = first
    model.load_state_dict(mean)
    with staged_dir(out) as tmp:
        save_checkpoint(tmp, model, config, extra={**extra, "averaged_from": [str(c) for c in checkpoints]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "recipe", help="the recipe's work folder")
    ap.add_argument("--synthetic-model", type=Path, default=MODEL_DIR / "classifier_synthetic",
                    help="the synthetic-only classifier the adaptation starts from")  # fmt: skip
    ap.add_argument("--seeds", type=int, default=3, help="adaptation seeds 0 .. K-1")
    ap.add_argument("--subjects", nargs="*", help="only these real subjects (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "adapt_soup")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (SHARED / "slpdb").is_dir() or not (SHARED / "dreams").is_dir():
        print(f"skipped: the real data are not in {SHARED}")
        return 0
    synthetic_store, real_store = args.work / "store", args.work / "real"
    if not (synthetic_store / "manifest.csv").is_file():
        raise SystemExit(f"{synthetic_store}: no synthetic store; run bash scripts/train_shipped_model.sh first")
    if not (real_store / "manifest.csv").is_file():
        prepare_real(real_store)
    import torch

    torch.set_num_threads(args.threads)
    nights = real_nights(SHARED)
    subjects = args.subjects or sorted({r["subject"] for r in nights.values()})
    seeds = list(range(args.seeds))
    keep: dict[str, dict[str, np.ndarray]] = {f"seed{s}": {} for s in seeds} | {"soup": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="adapt-soup-") as tmp:
        for k, subject in enumerate(subjects):
            t = time.perf_counter()
            mine = {n: r for n, r in nights.items() if r["subject"] == subject}
            members = []
            for seed in seeds:
                res = adapt_to_real(synthetic_store, real_store, Path(tmp) / f"fold{k}-seed{seed}", args.synthetic_model,
                                    drop_subjects=[subject], cfg=replace(ADAPTATION, seed=seed))  # fmt: skip
                model, _, _ = load_classifier(res.checkpoint)
                score_model(model, mine, keep[f"seed{seed}"])
                members.append(res.checkpoint)
            model, _, _ = load_classifier(average_checkpoints(members, Path(tmp) / f"fold{k}-soup"))
            score_model(model, mine, keep["soup"])
            print(f"  fold {k + 1}/{len(subjects)}: {subject} held out, {len(seeds)} seeds "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip
    for name, probs in keep.items():
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "probabilities.npz", **{f"ours LOSO|{n}": p for n, p in probs.items()})
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s); score with bench/ensemble_real.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
