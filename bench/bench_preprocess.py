"""Issue 15: old vs new preprocessing statistics on the bench_yasa 8-h EEG+EOG+EMG file.

    python bench/bench_preprocess.py [--runs 7]

Times, per step and in total for the three channels, the old implementations (copied here) against
the library's current ones on the same canonical epochs, alternating, in one process; medians
and ratios. Also checks that both give the same answers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_yasa  # noqa: E402

from s2v_core import signals as sig  # noqa: E402
from s2v_core.io.edf import open_recording  # noqa: E402
from s2v_core.modalities import SFREQ  # noqa: E402
from s2v_core.night import n_epochs_for  # noqa: E402
from s2v_core.recording.loading import load_night, resolve_biopotential_unit  # noqa: E402
from s2v_core.synth.cohort import full_sample_night  # noqa: E402


def old_median_stats(modality, x):  # the old plausibility_warnings' work for EEG/EOG/EMG
    x = np.asarray(x, dtype=np.float32).ravel()
    values = x[np.isfinite(x)]
    median = float(np.median(values))
    values.std()
    return median, float(np.median(np.abs(values - median)))


def old_row_stats(x):
    finite = np.isfinite(x)
    count = finite.sum(axis=1)
    safe = np.maximum(count, 1)
    mean = np.where(finite, x, 0.0).sum(axis=1) / safe
    dev = np.where(finite, x - mean[:, None], 0.0)
    return count, mean, np.sqrt((dev**2).sum(axis=1) / safe)


def old_clipped(x):
    finite = np.isfinite(x)
    whole = finite.all(axis=1)
    q_lo, q_hi = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if whole.any():
        q_lo[whole], q_hi[whole] = np.percentile(x[whole], [1, 99], axis=1)
    if not whole.all():
        q_lo[~whole], q_hi[~whole] = np.nanpercentile(x[~whole], [1, 99], axis=1)
    tol = 0.01 * (q_hi - q_lo)
    near = finite & (
        (np.abs(x - q_lo[:, None]) <= tol[:, None]) | (np.abs(x - q_hi[:, None]) <= tol[:, None])
    )
    return (near.sum(axis=1) / np.maximum(finite.sum(axis=1), 1) > 0.5) & (q_hi > q_lo)


def old_epoch_quality(x_epochs):  # EEG/EOG/EMG path
    x = np.asarray(x_epochs, dtype=np.float64)
    count, mean, std = old_row_stats(x)
    usable = (count > 0) & ((1.0 - count / x.shape[1]) <= 0.5)
    flat = (std == 0) | (std <= 1e-6 * np.abs(mean))
    moving = std[usable & ~flat]
    if moving.size:
        flat |= std < 0.01 * np.median(moving)
    usable &= ~flat
    return usable & ~old_clipped(x)


def old_robust_scale(x):
    values = x[np.isfinite(x)].astype(np.float64)
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    scaled = ((x.astype(np.float64) - median) / float(q75 - q25)).astype(np.float32)
    return scaled, float(median), float(q75 - q25)


def old_amplitude(x):
    finite = x[np.isfinite(x)]
    step = max(1, finite.size // 200_000)
    dev = np.abs(finite[::step] - np.median(finite[::step]))
    return float(np.median(dev))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    edf = bench_yasa.write_three_channel_edf(full_sample_night()[0], work / "three.edf")
    chans = {}
    with open_recording(edf) as rec:
        n_epochs = n_epochs_for(rec.header.duration_s)
        for m, label in bench_yasa.CHANNELS.items():
            x, fs = rec.read_channel(label)
            epochs = sig.epoch_matrix(sig.resample(x, fs, SFREQ[m]), SFREQ[m], n_epochs)
            chans[m] = (x, epochs)
    ok = {m: sig.epoch_quality(e, m) for m, (_, e) in chans.items()}
    sub = {m: e[ok[m]][:: max(1, int(ok[m].sum()) // 400)] for m, (_, e) in chans.items()}

    def plaus_old():
        for m, (_, e) in chans.items():
            old_median_stats(m, e[ok[m]])

    def plaus_new():
        for m, (_, e) in chans.items():
            sig.plausibility_warnings(m, e[ok[m]])

    def scale_old():
        for x in sub.values():
            old_robust_scale(x)

    def scale_new():
        for x in sub.values():
            sig.robust_scale(x)

    def amp_old():
        for x, _ in chans.values():
            old_amplitude(x)

    def amp_new():
        for m, (x, _) in chans.items():
            resolve_biopotential_unit(m, x, "uV")

    def quality_old():
        for _, e in chans.values():
            old_epoch_quality(e)

    def quality_new():
        for m, (_, e) in chans.items():
            sig.epoch_quality(e, m)

    steps = {
        "epoch_quality": (quality_old, quality_new),
        "plausibility_warnings": (plaus_old, plaus_new),
        "unit amplitude": (amp_old, amp_new),
        "robust_scale (scaling_stats, model step)": (scale_old, scale_new),
    }
    for m, (_, e) in chans.items():  # same answers
        assert old_robust_scale(sub[m])[1:] == sig.robust_scale(sub[m])[1:]
        assert np.array_equal(old_epoch_quality(e), ok[m])
    print(
        f"8-h EEG+EOG+EMG ({n_epochs} epochs), medians of {args.runs} alternating runs, 3 channels"
    )
    tot_old = tot_new = 0.0
    for name, (old, new) in steps.items():
        to, tn = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            old()
            to.append(time.perf_counter() - t)  # noqa: E702
            t = time.perf_counter()
            new()
            tn.append(time.perf_counter() - t)  # noqa: E702
        mo, mn = statistics.median(to), statistics.median(tn)
        tot_old += mo
        tot_new += mn
        print(f"  {name:42s} old {mo * 1e3:7.1f} ms  new {mn * 1e3:7.1f} ms  ratio {mn / mo:.2f}")
    print(
        f"  {'total of these steps':42s} old {tot_old * 1e3:7.1f} ms  new {tot_new * 1e3:7.1f} ms  "
        f"ratio {tot_new / tot_old:.2f}"
    )
    # the whole read + preprocess step, with the old epoch checks patched in (the old unit check
    # is not patched: about 13 ms of its 40 ms are not counted)
    from s2v_core.recording import loading

    def old_quality(x, m):
        return old_epoch_quality(x)

    def old_plausibility(m, x):
        old_median_stats(m, x)
        return []

    def load_new():
        load_night(edf, modalities=tuple(bench_yasa.CHANNELS))

    def load_old():
        new_q, new_p = sig.epoch_quality, sig.plausibility_warnings
        sig.epoch_quality, sig.plausibility_warnings = old_quality, old_plausibility
        try:
            load_night(edf, modalities=tuple(bench_yasa.CHANNELS))
        finally:
            sig.epoch_quality, sig.plausibility_warnings = new_q, new_p

    loading.set_read_threads(1)
    to, tn = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        load_old()
        to.append(time.perf_counter() - t)  # noqa: E702
        t = time.perf_counter()
        load_new()
        tn.append(time.perf_counter() - t)  # noqa: E702
    mo, mn = statistics.median(to), statistics.median(tn)
    print(
        f"  {'load_night (read + preprocess, 1 thread)':42s} old {mo:7.3f} s   new {mn:7.3f} s   ratio {mn / mo:.2f}"
    )


if __name__ == "__main__":
    main()
