"""Pretraining throughput (windows per second) of the real training step, per preset.

Times :func:`s2v_core.train.pretrain.train_step` (forward of both modalities, projection,
DASH-InfoNCE, backward, clipping, AdamW) on random one-hour windows, after a few warm-up
steps, for a 128-Hz pair (eeg-eog, 3840 samples per token) and a 4-Hz pair (ibi-spo2, 120
samples per token): the mean of the two is what a cohort mixing both kinds of pairs sees. Data
loading is not included (see ``windows_per_s`` in a run's history.csv for end-to-end numbers).

Usage::

    python bench/bench_pretrain.py                      # tiny and small (+ dense on CUDA)
    python bench/bench_pretrain.py --presets small --batch-size 32 --steps 10
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from s2v_core.model import Sleep2Vec, count_parameters, get_preset
from s2v_core.model.device import resolve_device
from s2v_core.train.config import TrainConfig
from s2v_core.train.pretrain import PairEncoder, make_loss_fn, make_optimizer, train_step

PAIRS = (("eeg", "eog"), ("ibi", "spo2"))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fake_batch(pair, batch_size: int, window: int, seed: int) -> dict:
    """A collate_pair-shaped batch of random windows from ``batch_size`` distinct nights."""
    g = torch.Generator().manual_seed(seed)
    cfg = get_preset("tiny")
    a, b = pair
    ones = torch.ones(batch_size, window, dtype=torch.bool)
    return {
        "pair": pair,
        "a": torch.randn(batch_size, window, cfg.samples_per_token(a), generator=g),
        "b": torch.randn(batch_size, window, cfg.samples_per_token(b), generator=g),
        "valid": ones,
        "valid_a": ones,
        "valid_b": ones,
        "pad_valid": ones,
        "age": torch.rand(batch_size, generator=g) * 60 + 20,
        "sex": torch.randint(0, 2, (batch_size,), generator=g),
        "site": torch.randint(0, 4, (batch_size,), generator=g),
        "night_index": torch.arange(batch_size),
    }


def bench_preset(preset: str, args, device: torch.device, bf16: bool) -> dict:
    cfg = TrainConfig(preset=preset, batch_size=args.batch_size, device=str(device))
    model = Sleep2Vec(cfg.model_config(), seed=0).to(device)
    net, opt, loss_fn = PairEncoder(model).train(), make_optimizer(model, cfg), make_loss_fn(cfg)
    rates = {}
    for k, pair in enumerate(PAIRS):
        batch = fake_batch(pair, args.batch_size, args.window_epochs, seed=k)
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            train_step(net, batch, opt, loss_fn, lr=cfg.lr, grad_clip=cfg.grad_clip,
                       device=device, bf16=bf16)  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates["-".join(pair)] = args.steps * args.batch_size / (time.perf_counter() - start)
    rates["mean"] = sum(rates.values()) / len(PAIRS)
    return {"params": count_parameters(cfg.model_config()), **rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="*", help="default: tiny small (+ dense on CUDA)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window-epochs", type=int, default=120)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per pair")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per pair")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    presets = args.presets or (["tiny", "small"] + (["dense"] if device.type == "cuda" else []))
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"torch {torch.__version__} on {device} ({where}); {torch.get_num_threads()} CPU threads; "
          f"bf16 autocast {'on' if bf16 else 'off'}")  # fmt: skip
    print(f"batch {args.batch_size} windows x {args.window_epochs} tokens; "
          f"{args.warmup} warm-up + {args.steps} timed steps per pair")  # fmt: skip
    header = f"{'preset':<8} {'params':>11}" + "".join(f" {'-'.join(p):>10}" for p in PAIRS)
    print(header + f" {'mean':>10}   (windows/s)")
    for preset in presets:
        r = bench_preset(preset, args, device, bf16)
        cells = "".join(f" {r['-'.join(p)]:>10.1f}" for p in PAIRS)
        print(f"{preset:<8} {r['params']:>11,}{cells} {r['mean']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
