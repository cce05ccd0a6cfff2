"""Every GPU figure of issue 15 in one run, printed as one table (``bench/bench_gpu.sh`` runs it).

1. **train step only**: windows/s of :func:`s2v_core.train.pretrain.train_step` on random batches
   (``bench/bench_pretrain.py``), presets tiny, small, dense, large.
2. **end to end**: windows/s of :func:`s2v_core.train.pretrain.pretrain` (``history.csv``'s
   ``windows_per_s``, median of the epochs after the first) on a store grown from the carried
   one (``bench/bench_store.py``), with the data path before issue 15
   (``tests/windows_reference.py``: item-by-item reads, workers restarted every epoch, blocking
   copies) and after it, with 0 and N DataLoader workers; next to it the train step alone on
   the first batches of the same loader (same pairs), and their ratio (goal: >= 80 %).
3. **inference**: warm staging of an 8-h night (the carried night with all nine modalities,
   tiled) with the shipped classifier, on CUDA and on the CPU: ``predict_night`` (features,
   scaling, forward, assembly) and the model's forward pass alone.

Runs on a bare machine (torch, numpy, scipy, pandas, pyarrow, safetensors): see
``bench/bare_imports.py``. ``--smoke`` runs a few seconds of each part, for the CPU and tests.

    python bench/bench_gpu.py --device cuda
    python bench/bench_gpu.py --device cpu --smoke
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

import bare_imports  # noqa: E402

if os.environ.get("S2V_BENCH_BARE") == "1":  # rehearse the bare machine on a full install
    bare_imports.hide()
# torch first: its optional imports (tqdm in torch.hub, used by torch.compile's FX interpreter) must
# see a missing package as missing and take their own fallback, not a stand-in
import torch  # noqa: E402

STUBS = bare_imports.stub_missing()

from bench_pretrain import bench_preset, cpu_name  # noqa: E402
from bench_store import eight_hour_night, grow_store  # noqa: E402

import s2v_core.train.pretrain as pretrain_module  # noqa: E402
from s2v_core.inference.predict import (  # noqa: E402
    input_spec,
    load_classifier,
    model_modalities,
    night_windows,
    predict_night,
)
from s2v_core.model import Sleep2Vec  # noqa: E402
from s2v_core.model.device import resolve_device  # noqa: E402
from s2v_core.shipped import MODEL_DIR  # noqa: E402
from s2v_core.train.config import TrainConfig  # noqa: E402
from s2v_core.train.pretrain import (  # noqa: E402
    PairEncoder,
    compile_encoder,
    make_loss_fn,
    make_optimizer,
    pretrain,
    train_step,
)
from s2v_core.train.windows import PairFirstBatchSampler, WindowDataset, make_loader  # noqa: E402
from tests.windows_reference import (  # noqa: E402
    ReferenceWindowDataset,
    reference_make_loader,
    reference_train_step,
)

ROWS: list[dict] = []


def row(section: str, what: str, device, value: float, unit: str, note: str = "") -> None:
    r = {"section": section, "what": what, "device": str(device), "value": value, "unit": unit, "note": note}
    ROWS.append(r)
    print(f"  {section:<11} {what:<44} {str(device):<5} {value:>10.2f} {unit:<9} {note}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def data_path(old: bool):
    """Run :func:`pretrain` with the data path before issue 15 (``old``) or the current one."""
    names = ("WindowDataset", "make_loader", "train_step")
    saved = {n: getattr(pretrain_module, n) for n in names}
    if old:
        pretrain_module.WindowDataset = ReferenceWindowDataset
        pretrain_module.make_loader = reference_make_loader
        pretrain_module.train_step = reference_train_step
    try:
        yield
    finally:
        for n, v in saved.items():
            setattr(pretrain_module, n, v)


# --- 1. train step only -------------------------------------------------------------------------
def step_only(args, device, bf16) -> dict[str, float]:
    ns = argparse.Namespace(batch_size=args.batch_size, window_epochs=120, warmup=args.warmup, steps=args.steps)
    rates = {}
    for preset in args.presets:
        r = bench_preset(preset, ns, device, bf16)
        rates[preset] = r["mean"]
        row("train step", f"{preset} ({r['params'] / 1e6:.1f} M), eeg-eog / ibi-spo2 mean", device, r["mean"],
            "windows/s", f"{r['eeg-eog']:.1f} / {r['ibi-spo2']:.1f}")  # fmt: skip
        del r
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rates


def step_on_loader_batches(store: Path, preset: str, args, device, bf16, backend: str = "") -> tuple[float, float]:
    """(windows/s of train_step alone on the first batches the end-to-end run would load, seconds of
    the warm-up steps); with ``backend``, the encoder compiled by it first (the warm-up compiles)."""
    cfg = TrainConfig(preset=preset, batch_size=args.batch_size, device=str(device), seed=0)
    mc = cfg.model_config()
    ds = WindowDataset(store, "train", modalities=mc.modalities, window_epochs=cfg.window_epochs,
                       feature_crops=True, crop_seed=cfg.seed, raw=mc.reads_samples, features=mc.features)  # fmt: skip
    sampler = PairFirstBatchSampler(ds, cfg.batch_size, seed=cfg.seed, n_batches=args.batches)
    batches = [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in b.items()}
               for b in make_loader(ds, sampler)]  # fmt: skip
    model = Sleep2Vec(mc, pretraining=True, seed=0).to(device)
    net, opt, loss_fn = PairEncoder(model).train(), make_optimizer(model, cfg), make_loss_fn(cfg)
    if backend:
        compile_encoder(model, backend)

    def one(batch):
        train_step(net, batch, opt, loss_fn, lr=cfg.lr, grad_clip=cfg.grad_clip, device=device, bf16=bf16)

    start = time.perf_counter()
    for batch in batches[: args.warmup]:
        one(batch)
    sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batches:
        one(batch)
    sync(device)
    return len(batches) * args.batch_size / (time.perf_counter() - start), warm


# --- 2. end to end ------------------------------------------------------------------------------
def end_to_end(store: Path, work: Path, preset: str, workers: int, old: bool, args, device) -> tuple[float, float]:
    """(windows/s: median of the epochs after the first, first epoch) of one pretrain run."""
    cfg = TrainConfig(preset=preset, batch_size=args.batch_size, epochs=args.epochs, batches_per_epoch=args.batches,
                      num_workers=workers, device=str(device), val_batches=1, log_every=10_000, seed=0)  # fmt: skip
    out = work / f"run-{preset}-w{workers}-{'old' if old else 'new'}"
    with data_path(old):
        result = pretrain(store, out, cfg, overwrite=True)
    rates = result.history["windows_per_s"].astype(float).tolist()
    later = rates[1:] or rates
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return statistics.median(later), rates[0]


# --- 3. inference -------------------------------------------------------------------------------
def inference(carried: Path, args, devices) -> None:
    night = eight_hour_night(carried, args.night_hours)
    skip = () if importlib.util.find_spec("sleepecg") else ("ecg",)  # ECG features need sleepecg's beats
    for device in devices:
        model, _, _ = load_classifier(MODEL_DIR / "classifier", device=str(device))
        subset = tuple(m for m in model_modalities(model) if m in night.modalities and m not in skip)
        inputs, pad, present, _ = night_windows(night, subset, **input_spec(model))
        x = {m: torch.from_numpy(v).to(device) for m, v in inputs.items()}
        p = {m: torch.from_numpy(v).to(device) for m, v in present.items()}
        pv = torch.from_numpy(pad).to(device)

        def forward(model=model, x=x, p=p, pv=pv):
            with torch.inference_mode():
                model(x, pv, p)

        def predict(model=model, subset=subset, device=device):
            predict_night(model, night, subset, device=str(device))

        for label, fn in (("predict_night (features + forward)", predict), ("model forward only", forward)):
            fn()  # warm-up
            sync(device)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                fn()
                sync(device)
                times.append(time.perf_counter() - t)
            note = f"{night.n_epochs} epochs, {len(subset)} modalities" + (", no ecg: sleepecg missing" if skip else "")
            row("inference", f"{args.night_hours:g}-h night, {label}", device, statistics.median(times), "s", note)
        del model, x, p, pv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--smoke", action="store_true", help="a few seconds of each part (CPU, tests)")
    ap.add_argument("--store", type=Path, default=ROOT / "build" / "gpu_store", help="the carried store")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers of the end-to-end runs")
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip what would start after this")
    ap.add_argument("--presets", nargs="*", help="train-step presets (default: tiny small dense large)")
    ap.add_argument("--e2e-presets", nargs="*", help="end-to-end presets (default: dense)")
    ap.add_argument("--compile", default=None, metavar="BACKEND",
                    help="also time the train step with the encoder compiled by this torch.compile backend "
                         "(default: inductor on CUDA, none on a CPU; '' to skip)")  # fmt: skip
    args = ap.parse_args()
    chosen = (args.presets, args.e2e_presets)
    device = resolve_device(args.device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if args.compile is None:  # the smoke run on a CPU traces it without a C compiler (aot_eager)
        args.compile = "inductor" if device.type == "cuda" else ("aot_eager" if args.smoke else "")
    if args.smoke:
        args.presets, args.e2e_presets, args.batch_size, args.steps, args.warmup = ["tiny"], ["tiny"], 4, 1, 1
        args.epochs, args.batches, args.copies, args.repeats, args.night_hours = 2, 2, 4, 1, 2.0
        args.workers = min(args.workers, 2)
    else:
        args.presets, args.e2e_presets, args.batch_size, args.steps, args.warmup = (
            ["tiny", "small", "dense", "large"], ["dense"], 16, 10, 2)  # fmt: skip
        args.epochs, args.batches, args.copies, args.repeats, args.night_hours = 3, 30, 40, 3, 8.0
    args.presets, args.e2e_presets = chosen[0] or args.presets, chosen[1] or args.e2e_presets
    if not (args.store / "manifest.csv").is_file():
        sys.exit(f"{args.store}: no carried store; build it with: python bench/bench_store.py build --out {args.store}")
    started = time.perf_counter()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"torch {torch.__version__} on {device} ({where}); {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
          f"threads; bf16 {'on' if bf16 else 'off'}; stand-ins for missing {', '.join(STUBS) or 'nothing'}")  # fmt: skip
    print(f"batch {args.batch_size} windows x 120 epochs; {'SMOKE run' if args.smoke else 'full run'}", flush=True)
    print(f"  {'section':<11} {'what':<44} {'dev':<5} {'value':>10} {'unit':<9} note")

    def time_left() -> bool:
        return time.perf_counter() - started < args.budget_s

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        store = grow_store(args.store, work / "store", args.copies)
        step_only(args, device, bf16)
        eager = {}  # preset -> its eager train-step rate on the loader batches (the compile row's base)
        for preset in args.e2e_presets:
            step, _ = step_on_loader_batches(store, preset, args, device, bf16)
            eager[preset] = step
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the batches and the model of the step-only run are gone
            row("end to end", f"{preset}: train step alone, same batches", device, step, "windows/s")
            for workers in sorted({0, args.workers}):
                for old in (True, False):
                    if not time_left():
                        print(f"  (skipped {preset} {workers} workers {'before' if old else 'after'}: budget)")
                        continue
                    rate, first = end_to_end(store, work, preset, workers, old, args, device)
                    what = f"{preset}: pretrain, {workers} workers, {'before' if old else 'after'}"
                    row("end to end", what, device, rate, "windows/s",
                        f"{100 * rate / step:.0f} % of step; 1st epoch {first:.1f}")  # fmt: skip
        if time_left():
            devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
            inference(args.store, args, devices)
        # last, as compiling may take a minute: the encoder compiled, on the same batches as eager
        for preset in args.e2e_presets if args.compile else []:
            if not time_left():
                print(f"  (skipped compiling {preset}: budget)")
                continue
            what = f"{preset}: train step alone, encoder compiled ({args.compile})"
            try:
                fast, warm = step_on_loader_batches(store, preset, args, device, bf16, args.compile)
            except Exception as err:  # noqa: BLE001 - a compiler missing here must not cost the other rows
                print(f"  (compile {what} failed: {type(err).__name__}: {str(err)[:300]})", flush=True)
            else:
                row("compile", what, device, fast, "windows/s",
                    f"{fast / eager[preset]:.2f}x eager; warm-up incl. compiling {warm:.0f} s")  # fmt: skip
            if device.type == "cuda":
                torch.cuda.empty_cache()
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"device": where, "torch": torch.__version__, "smoke": args.smoke,
                                         "stubs": STUBS, "seconds": total, "rows": ROWS}, indent=1))  # fmt: skip
    if any(isinstance(r["value"], float) and not math.isfinite(r["value"]) for r in ROWS):
        sys.exit(1)


if __name__ == "__main__":
    main()
