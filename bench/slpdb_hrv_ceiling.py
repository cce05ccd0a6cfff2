"""How much the heart beats of slpdb carry: a tree on the model's IBI features, and on more HRV measures.

    python bench/slpdb_hrv_ceiling.py                         # real store of the recipe work folder
    python bench/slpdb_hrv_ceiling.py --real .cache/recipe/real

A gradient-boosted tree (scikit-learn's ``HistGradientBoostingClassifier``, class-balanced) stages
the 12 slpdb records 3-class (W, NREM, REM) leave one subject out, trained on the other subjects'
records only, from

* ``model``: the IBI inputs the network reads (:func:`s2v_core.signals.features.features_from_raw`:
  the ten base HRV features, within-night scores, centred 7.5-min and trailing 2-min smoothing);
* ``model + X``: those plus one candidate group, each a within-night robust score and its 7.5-min
  centred average, computed on the 1-Hz beat-interval series over 5 min centred on the epoch:
  ``dfa``: detrended fluctuation analysis, short-range exponent alpha1 (scales 4-16 s);
  ``permutation entropy`` (order 3); ``instability``: SD of the epoch-mean interval over +-2.5 min;
  ``long-range``: log interval over its 30-min running mean; ``rank``: the epoch's heart-rate
  rank within the night.

If no candidate moves the tree's kappa, the network's leave-one-subject-out figure on slpdb is near
what these beats carry, and new HRV inputs are not the lever for it. Kappa is pooled over epochs.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import cohen_kappa_score

from s2v_core.cohort.store import CohortStore
from s2v_core.signals.features import features_from_raw, normalise_within_night, smooth_centred
from s2v_core.stages import REM, W

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("dfa", "permutation entropy", "instability", "long-range", "rank")
_SCALES = np.array([4, 6, 8, 11, 16])  # DFA box sizes in beats at ~1 Hz
_WINDOW_S = 300


def dfa_alpha1(windows: np.ndarray) -> np.ndarray:
    """Short-range DFA exponent of each row (linear detrending in boxes of :data:`_SCALES`)."""
    profile = np.cumsum(windows - windows.mean(axis=1, keepdims=True), axis=1)
    fluct = []
    for s in _SCALES:
        k = profile.shape[1] // s
        boxes = profile[:, : k * s].reshape(len(profile), k, s)
        t = np.arange(s) - (s - 1) / 2
        slope = (boxes * t).sum(axis=-1, keepdims=True) / (t**2).sum()
        resid = boxes - boxes.mean(axis=-1, keepdims=True) - slope * t
        fluct.append(np.sqrt((resid**2).mean(axis=(1, 2))) + 1e-12)
    return np.polyfit(np.log(_SCALES), np.log(np.array(fluct)), 1)[0]


def permutation_entropy(windows: np.ndarray) -> np.ndarray:
    """Normalised order-3 permutation entropy of each row."""
    n, length = windows.shape
    patterns = np.stack([windows[:, i : length - 2 + i] for i in range(3)], axis=-1)
    codes = (np.argsort(patterns, axis=-1) * np.array([1, 3, 9])).sum(axis=-1)
    counts = np.stack([np.bincount(c, minlength=27) for c in codes]) / codes.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(counts > 0, counts * np.log(counts), 0.0).sum(axis=1) / np.log(6)


def candidate_features(ibi: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """``{group: (n_epochs, 2)}``: each candidate's within-night score, and that of its 7.5-min average
    (smoothed, then scored, as :func:`~s2v_core.signals.features.features_from_raw` does)."""
    n = len(ibi)
    flat = ibi.astype(np.float64).ravel()
    flat = np.where(np.isfinite(flat), flat, np.nanmedian(flat))
    per_s = flat.reshape(-1, 4).mean(axis=1)  # the 4-Hz series at 1 Hz
    padded = np.pad(per_s, _WINDOW_S, mode="reflect")
    centres = np.arange(n) * 30 + 15 + _WINDOW_S
    windows = np.lib.stride_tricks.sliding_window_view(padded, _WINDOW_S)[centres - _WINDOW_S // 2]
    with warnings.catch_warnings():  # an epoch without beats has no mean: it takes the night's median
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(ibi, axis=1)
    mean = np.where(np.isfinite(mean), mean, np.nanmedian(mean))
    spread = uniform_filter1d(mean**2, 11, mode="nearest") - uniform_filter1d(mean, 11, mode="nearest") ** 2
    raw = {
        "dfa": dfa_alpha1(windows),
        "permutation entropy": permutation_entropy(windows),
        "instability": np.log(np.sqrt(np.maximum(spread, 0)) + 1e-5),
        "long-range": np.log(mean) - np.log(uniform_filter1d(mean, 61, mode="nearest")),
        "rank": np.argsort(np.argsort(mean)) / n,
    }
    out = {}
    for name, col in raw.items():
        col = col[:, None]
        smooth = smooth_centred(col, valid)
        out[name] = np.concatenate([normalise_within_night(col, valid), normalise_within_night(smooth, valid)], axis=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", type=Path, default=ROOT / ".cache" / "recipe" / "real", help="the recipe's real store")
    args = ap.parse_args()
    store = CohortStore(args.real)
    nights = {}
    for name in store.nights():
        entry = store.entry(name)
        if entry.site != "slpdb":
            continue
        night = store.night(name)
        ok = night.epoch_valid["ibi"]
        base = features_from_raw(night.base_features(["ibi"])["ibi"], ok, "ibi")
        s = night.stages.astype(int)
        y = np.where(s == W, 0, np.where(s == REM, 2, 1))
        y[s < 0] = -1
        nights[name] = (entry.subject, base, candidate_features(night.signals["ibi"], ok), y)
    if not nights:
        raise SystemExit(f"{args.real}: no slpdb night (make the real store with scripts/real_data.py prepare)")
    subjects = sorted({v[0] for v in nights.values()})

    def loso(columns) -> float:
        truth, pred = [], []
        for held in subjects:
            train = [v for v in nights.values() if v[0] != held]
            x, y = np.concatenate([columns(v) for v in train]), np.concatenate([v[3] for v in train])
            tree = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, class_weight="balanced",
                                                  random_state=0).fit(x[y >= 0], y[y >= 0])  # fmt: skip
            for v in nights.values():
                if v[0] == held:
                    keep = v[3] >= 0
                    truth.append(v[3][keep])
                    pred.append(tree.predict(columns(v)[keep]))
        return cohen_kappa_score(np.concatenate(truth), np.concatenate(pred))

    print(f"slpdb, {len(nights)} records, {len(subjects)} subjects, 3-class, leave one subject out (tree)")
    print(f"{'inputs':<32} kappa")
    print(f"{'model':<32} {loso(lambda v: v[1]):.3f}")
    for group in CANDIDATES:
        print(f"{'model + ' + group:<32} {loso(lambda v, g=group: np.concatenate([v[1], v[2][g]], axis=1)):.3f}")
    every = lambda v: np.concatenate([v[1], *v[2].values()], axis=1)  # noqa: E731
    print(f"{'model + all five':<32} {loso(every):.3f}")


if __name__ == "__main__":
    main()
