"""A cohort-scale plan on paper (issue 15): hours, peak memory and disk for N nights, from measured per-night costs.

    python bench/plan_cohort.py [--nights 3] [--hours 8] [--cohort 10000] [--workers 1,8,32]
                                [--gpus 1,8] [--gpu-train-windows-per-s 679] [--gpu-e2e-windows-per-s 240]
                                [--gpu-embed-s-per-night 0.187] [--ddp-efficiency 0.9]
                                [--pretrain-epochs 20] [--batch-size 32] [--json PATH] [--smoke]

Generates (not timed) a few synthetic nights like an NSRR hospital PSG: ``--hours`` long, all
nine modalities, NSRR XML hypnogram (site ``us_hospital``). Then measures on this machine, per
night:

* ``prepare``: seconds of the serial ``prepare_store`` path (what one Dask worker does per night),
  peak resident memory of one ``prepare_one`` in a fresh process (and its excess over a process
  that only imports the modules), and bytes the night takes in the store;
* ``embed``: seconds of the serial ``s2v embed`` path (shipped classifier loaded once, torch 1
  thread, after a warm-up night), peak memory of one embed in a fresh process likewise;
* the pretraining workload, from the code: windows per night (``WindowDataset`` built over the
  prepared store), the expected share of nights in the train split (``split_for_subject``'s
  fractions), the pair sampler's arithmetic for 1 and 8 ranks, and the dense preset's parameters
  (``count_parameters``).

GPU rates cannot be measured here (no GPU); they are options, with defaults measured on one H200
by the issue's author. :func:`plan` turns the per-night figures and the options into the plan
(pure arithmetic, tested in ``tests/test_plan_cohort.py``); one markdown table is printed, with
lines that say which figures were measured here and which came from options.

Caveats: synthetic EDF nights are not NSRR files (real ones differ in rates, channel counts and
compression), so prepare time and disk are indicative; Dask scaling is assumed linear per worker
(one core per worker, no shared-disk bottleneck); pretraining hours count the training windows
only (the per-epoch validation pass and checkpointing are left out).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MODEL = Path(__file__).resolve().parents[1] / "models" / "sleep2vec-small" / "classifier"
BYTES_PER_PARAM_STATE = 20
"""fp32 weights (4) + gradients (4) + AdamW first and second moments (8) + EMA copy (4)."""

# Children that measure peak resident memory of one step on one night in a fresh process; mode
# "base-*" only imports what the step imports. Linux keeps ru_maxrss across fork + exec (a child
# of this big process would report at least this process's size), so VmHWM is read instead.
CHILD = r"""
import json, resource, sys, time
mode, source, store, model = sys.argv[1:5]
if mode in ("prepare", "base-prepare"):
    from s2v_core.cohort.prepare import prepare_one
    from s2v_core.cohort.sources import discover_rows
    if mode == "prepare":
        row = discover_rows(source)[0]
        t = time.perf_counter()
        res = prepare_one(row, source, store)
        assert res["status"] == "done", res
else:
    import torch
    torch.set_num_threads(1)
    from s2v_core.cohort.embed import embed_sources
    from s2v_core.cohort.sources import store_sources
    from s2v_core.inference.predict import load_classifier
    if mode == "embed":
        net = load_classifier(model)[0]
        t = time.perf_counter()
        embed_sources(store_sources(store)[:1], net)
try:  # VmHWM: the peak of this process's own memory; ru_maxrss keeps the forking parent's across exec
    with open("/proc/self/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": kb / 1024}))
"""


@dataclass
class Options:
    """The figures the plan takes as given (not measured here)."""

    cohort: int = 10_000
    workers: tuple[int, ...] = (1, 8, 32)
    gpus: tuple[int, ...] = (1, 8)
    gpu_train_windows_per_s: float = 679.0
    gpu_e2e_windows_per_s: float = 240.0
    gpu_embed_s_per_night: float = 0.187
    ddp_efficiency: float = 0.9
    pretrain_epochs: int = 20
    batch_size: int = 32
    extra: dict = field(default_factory=dict)  # free-form notes carried into the JSON


def epoch_windows(train_windows: int, batch_size: int, world_size: int) -> tuple[int, int]:
    """``(steps per rank, windows drawn by all ranks)`` in one epoch of ``s2v pretrain``.

    The sampler's arithmetic (``PairFirstBatchSampler`` with ``drop_last=True``, the default of
    pretraining): ``floor(train_windows / batch_size)`` global batches, ``floor(that /
    world_size)`` of them per rank, each of ``batch_size`` windows sharing one modality pair.
    """
    steps = (train_windows // batch_size) // world_size
    return steps, steps * world_size * batch_size


def plan(per_night: dict, options: Options) -> dict:
    """Cohort figures from per-night costs and the options (pure arithmetic).

    ``per_night`` needs ``prepare_s``, ``prepare_peak_mb``, ``disk_bytes``, ``embed_s``,
    ``embed_peak_mb``, ``windows_per_night``, ``train_fraction`` and ``params``. Hours of a step
    on W workers assume linear scaling: ``cohort * seconds per night / W / 3600``. Pretraining:
    ``epochs * steps per rank * batch_size / (rate * e) / 3600`` with ``e`` the DDP efficiency
    for more than one GPU (1 for one GPU).
    """
    n = options.cohort
    train_windows = round(n * per_night["train_fraction"] * per_night["windows_per_night"])
    pretrain = {}
    for g in options.gpus:
        steps, windows = epoch_windows(train_windows, options.batch_size, g)
        eff = options.ddp_efficiency if g > 1 else 1.0
        hours = {
            name: options.pretrain_epochs * steps * options.batch_size / (rate * eff) / 3600
            for name, rate in (("train_step", options.gpu_train_windows_per_s),
                               ("end_to_end", options.gpu_e2e_windows_per_s))
        }  # fmt: skip
        pretrain[g] = {"steps_per_rank": steps, "windows_per_epoch": windows, "hours": hours}
    return {
        "cohort": n,
        "prepare_hours": {w: n * per_night["prepare_s"] / w / 3600 for w in options.workers},
        "prepare_peak_mb_per_worker": per_night["prepare_peak_mb"],
        "disk_bytes_total": n * per_night["disk_bytes"],
        "train_windows": train_windows,
        "pretrain": pretrain,
        "model_state_bytes_per_gpu": per_night["params"] * BYTES_PER_PARAM_STATE,
        "embed_cpu_hours": {w: n * per_night["embed_s"] / w / 3600 for w in options.workers},
        "embed_peak_mb_per_worker": per_night["embed_peak_mb"],
        "embed_gpu_hours": n * options.gpu_embed_s_per_night / 3600,
    }


# --- measuring --------------------------------------------------------------------------------
def _child(mode: str, source: Path, store: Path, model: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(source), str(store), model],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def _allocated(folder: Path) -> int:
    """Bytes the files of ``folder`` take on disk (allocated blocks)."""
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())


def measure(work: Path, nights: int, hours: float, model: str, seed: int = 0) -> dict:
    """Per-night costs measured on this machine (see the module docstring)."""
    import torch

    from s2v_core.cohort.embed import embed_sources
    from s2v_core.cohort.prepare import prepare_store
    from s2v_core.cohort.sources import store_sources
    from s2v_core.cohort.store import CohortStore, split_for_subject
    from s2v_core.inference.predict import load_classifier
    from s2v_core.model.config import get_preset
    from s2v_core.model.sleep2vec import count_parameters
    from s2v_core.synth.cohort import generate_cohort
    from s2v_core.train.windows import WINDOW_EPOCHS, WindowDataset

    torch.set_num_threads(1)
    source, store = work / "cohort", work / "store"
    generate_cohort(nights, source, seed=seed, hours=hours, sites=["us_hospital"])
    t = time.perf_counter()
    run = prepare_store(source, store, progress=False)
    prepare_s = (time.perf_counter() - t) / nights
    if run.attrs["summary"]["done"] != nights:
        raise SystemExit(f"prepare: {run.attrs['summary']}")
    cs = CohortStore(store)
    disk = sum(_allocated(cs.folder(n)) for n in cs.nights()) / nights

    net = load_classifier(model)[0]
    sources = store_sources(store)
    embed_sources(sources[:1], net)  # warm-up, not timed
    t = time.perf_counter()
    embed_sources(sources, net)
    embed_s = (time.perf_counter() - t) / nights

    # Pretraining workload. WindowDataset cuts every night into non-overlapping windows of
    # WINDOW_EPOCHS (120) 30-s epochs, the last one padded: ceil(n_epochs / 120) per night
    # (8 h = 960 epochs -> 8). Only train-split nights are trained on; the split is drawn per
    # subject with split_for_subject's default fractions, so the expected share is fractions[0].
    # One epoch = floor(train windows / batch) batches (see epoch_windows), each batch one
    # modality pair: every window is drawn about once per epoch, with one of its 36 pairs.
    ds = WindowDataset(cs)
    n_epochs = [cs.entry(n).n_epochs for n in cs.nights()]
    assert len(ds) == sum(math.ceil(e / WINDOW_EPOCHS) for e in n_epochs)
    fractions = inspect.signature(split_for_subject).parameters["fractions"].default

    peaks = {}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for mode in (
            "base-prepare",
            "prepare",
            "base-embed",
            "embed",
        ):  # prepare: into a scratch store
            peaks[mode] = _child(
                mode, source, Path(tmp) / "store" if "prepare" in mode else store, model
            )
    return {
        "prepare_s": prepare_s,
        "prepare_peak_mb": peaks["prepare"],
        "prepare_above_imports_mb": peaks["prepare"] - peaks["base-prepare"],
        "disk_bytes": disk,
        "source_bytes": sum(f.stat().st_size for f in source.glob("*.edf")) / nights,
        "embed_s": embed_s,
        "embed_peak_mb": peaks["embed"],
        "embed_above_imports_mb": peaks["embed"] - peaks["base-embed"],
        "epochs_per_night": sum(n_epochs) / nights,
        "windows_per_night": len(ds) / nights,
        "window_epochs": WINDOW_EPOCHS,
        "modalities": len(ds.modalities),
        "train_fraction": float(fractions[0]),
        "params": count_parameters(get_preset("dense")),
    }


# --- report -----------------------------------------------------------------------------------
def _h(hours: float) -> str:
    return f"{hours:,.1f} h" if hours >= 1 else f"{hours * 60:,.0f} min"


def table(per_night: dict, options: Options, p: dict) -> list[str]:
    """The markdown table of the plan (one row per step and setting)."""
    n = f"{options.cohort:,}"
    rows = [f"| step | setting | hours for {n} nights | peak memory | disk / workload | basis |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    mem_p = (f"{per_night['prepare_peak_mb']:,.0f} MB per worker "
             f"(+{per_night['prepare_above_imports_mb']:,.0f} MB over imports)")  # fmt: skip
    total = p["disk_bytes_total"]
    total_text = f"{total / 1e12:,.2f} TB" if total >= 1e12 else f"{total / 1e9:,.0f} GB"
    disk = f"{total_text} store ({per_night['disk_bytes'] / 1e6:,.0f} MB/night)"
    for w in options.workers:
        rows.append(f"| prepare | {w} Dask worker{'s' * (w > 1)} | {_h(p['prepare_hours'][w])} | {mem_p} "
                    f"| {disk} | measured {per_night['prepare_s']:.2f} s/night serial; linear in workers (assumed) |")  # fmt: skip
    state = f">= {p['model_state_bytes_per_gpu'] / 1e9:.1f} GB/GPU model state (activations not counted)"
    for g in options.gpus:
        pre = p["pretrain"][g]
        work = (f"{pre['windows_per_epoch']:,} windows/epoch ({pre['steps_per_rank']:,} steps/GPU) "
                f"x {options.pretrain_epochs} epochs")  # fmt: skip
        ddp = f", DDP efficiency {options.ddp_efficiency:g} (assumed)" if g > 1 else ""
        for key, label, rate in (("train_step", "train step", options.gpu_train_windows_per_s),
                                 ("end_to_end", "end to end", options.gpu_e2e_windows_per_s)):  # fmt: skip
            rows.append(f"| pretrain dense ({per_night['params'] / 1e6:.1f} M params) | {g} GPU{'s' * (g > 1)}, "
                        f"{label} | {_h(pre['hours'][key])} | {state} | {work} "
                        f"| option {rate:g} windows/s per GPU{ddp} |")  # fmt: skip
    mem_e = (f"{per_night['embed_peak_mb']:,.0f} MB per worker "
             f"(+{per_night['embed_above_imports_mb']:,.0f} MB over imports)")  # fmt: skip
    for w in options.workers:
        rows.append(f"| embed (CPU) | {w} worker{'s' * (w > 1)} x 1 thread | {_h(p['embed_cpu_hours'][w])} | {mem_e} "
                    f"| - | measured {per_night['embed_s']:.2f} s/night; linear in workers (assumed) |")  # fmt: skip
    rows.append(f"| embed (GPU) | 1 GPU | {_h(p['embed_gpu_hours'])} | - | - "
                f"| option {options.gpu_embed_s_per_night:g} s/night (warm inference only) |")  # fmt: skip
    return rows


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(","))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nights", type=int, default=3, help="synthetic nights measured here")
    ap.add_argument("--hours", type=float, default=8.0, help="hours per synthetic night")
    ap.add_argument("--smoke", action="store_true", help="1 night of 0.5 h (a quick check)")
    ap.add_argument("--cohort", type=int, default=10_000, help="nights of the planned cohort")
    ap.add_argument("--workers", type=_ints, default=(1, 8, 32), help="Dask worker counts")
    ap.add_argument("--gpus", type=_ints, default=(1, 8), help="GPU counts of pretraining (DDP)")
    ap.add_argument(
        "--gpu-train-windows-per-s",
        type=float,
        default=679.0,
        help="dense train step alone, batch 32, one H200, bf16 (issue's author)",
    )
    ap.add_argument(
        "--gpu-e2e-windows-per-s",
        type=float,
        default=240.0,
        help="dense s2v pretrain end to end, 8 DataLoader workers, one H200 (issue's "
        "author; before the CPU data path was made 4x faster)",
    )
    ap.add_argument(
        "--gpu-embed-s-per-night",
        type=float,
        default=0.187,
        help="warm 8-h nine-modality inference on CUDA (issue's author)",
    )
    ap.add_argument(
        "--ddp-efficiency", type=float, default=0.9, help="assumed, for more than 1 GPU"
    )
    ap.add_argument("--pretrain-epochs", type=int, default=20, help="the recipe's")
    ap.add_argument("--batch-size", type=int, default=32, help="windows per batch and GPU")
    ap.add_argument("--model", default=str(MODEL), help="classifier folder for embed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep files here (default: a temporary folder)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    if args.smoke:
        args.nights, args.hours = 1, 0.5
    options = Options(cohort=args.cohort, workers=args.workers, gpus=args.gpus,
                      gpu_train_windows_per_s=args.gpu_train_windows_per_s,
                      gpu_e2e_windows_per_s=args.gpu_e2e_windows_per_s,
                      gpu_embed_s_per_night=args.gpu_embed_s_per_night,
                      ddp_efficiency=args.ddp_efficiency, pretrain_epochs=args.pretrain_epochs,
                      batch_size=args.batch_size)  # fmt: skip
    load = os.getloadavg()[0]
    started = time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="s2v-plan-cohort-"))
    try:
        per_night = measure(work, args.nights, args.hours, args.model, args.seed)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    p = plan(per_night, options)
    elapsed = time.perf_counter() - started
    import torch

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start, "
               f"torch {torch.__version__}, Python {platform.python_version()}")  # fmt: skip
    print("\n".join(table(per_night, options, p)))
    print()
    print(f"Measured here ({machine}; {elapsed:.0f} s): {args.nights} synthetic night(s) of "
          f"{args.hours:g} h, {per_night['modalities']} modalities (us_hospital PSG, "
          f"{per_night['source_bytes'] / 1e6:.0f} MB EDF/night): prepare and embed seconds per night, "
          f"peak RSS of one night in a fresh process, store bytes per night; windows per night "
          f"{per_night['windows_per_night']:g} (ceil({per_night['epochs_per_night']:g} epochs / "
          f"{per_night['window_epochs']})) and train share {per_night['train_fraction']:g} from the code, "
          f"{p['train_windows']:,} train windows; dense parameters by count_parameters.")  # fmt: skip
    print(f"From options: GPU rates ({options.gpu_train_windows_per_s:g} / {options.gpu_e2e_windows_per_s:g} "
          f"windows/s per GPU, {options.gpu_embed_s_per_night:g} s/night embed; one H200, issue's author), "
          f"DDP efficiency {options.ddp_efficiency:g} (assumed), {options.pretrain_epochs} epochs, "
          f"batch {options.batch_size}, cohort {options.cohort:,}, workers "
          f"{','.join(map(str, options.workers))}. Assumed: linear scaling per worker and GPU; "
          f"validation, checkpoints and model loading left out.")  # fmt: skip
    if args.json:
        doc = {"measured": per_night, "options": asdict(options), "plan": p, "machine": machine,
               "load_average_at_start": load, "seconds": elapsed,
               "nights_measured": args.nights, "hours_per_night": args.hours}  # fmt: skip
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
