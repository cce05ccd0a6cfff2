"""``s2v experiment losses|sweep|scaling``: the pretraining experiments of :mod:`s2v_core.experiments`."""

from __future__ import annotations

import argparse
import logging

from s2v_core.cli.options import add_device_option
from s2v_core.errors import S2VError

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "experiment",
        help="pretraining experiments: DASH vs InfoNCE over seeds, DASH sensitivity sweep, scaling law",
        description="Run a grid of pretraining runs on one store and score each backbone the same way "
        "(linear staging probe on frozen embeddings, site-shortcut probe, validation retrieval). "
        "losses: DASH-InfoNCE and plain InfoNCE per seed; sweep: DASH with the age bandwidth, the "
        "sex factor and the site factors changed one at a time; scaling: every preset and modality "
        "count. Writes results.csv, summary.csv (mean and 95% CI over seeds), paired.csv (losses) "
        "and figure.html/png into OUT. Finished runs are reused and interrupted ones resumed, so "
        "the same command continues an experiment.",
    )
    p.add_argument("kind", choices=("losses", "sweep", "scaling"))
    p.add_argument("--data", required=True, help="cohort store (s2v prepare) with train, val and test splits")
    p.add_argument("--out", required=True, help="experiment folder")
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="training seeds (default 0,1,2)")
    p.add_argument("--preset", choices=("tiny", "small", "dense", "large"), default="small",
                   help="model preset (losses, sweep; default small)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    p.add_argument("--batches-per-epoch", type=int, default=None,
                   help="steps per epoch (default: one pass over the train windows)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--pair-weighting", choices=("windows", "sqrt", "balanced"), default="balanced",
                   help="how often each modality pair is drawn (default balanced: rare pairs train too)")
    p.add_argument("--spectral-bands", type=int, default=48,
                   help="log band powers in each tokenizer (0: the paper's raw tokenizer; default 48)")
    p.add_argument("--sweep", action="append", metavar="NAME=V1,V2",
                   help="sweep values (repeatable): age_bandwidth=5,80  sex_diff_factor=0.5,1  "
                   "site=1/1,2/0.5 (same/different); default: these")
    p.add_argument("--presets", type=_names, default=["tiny", "small"], help="scaling: presets (default tiny,small)")
    p.add_argument("--counts", type=_ints, default=[2, 3, 5, 9], help="scaling: modality counts (default 2,3,5,9)")
    p.add_argument("--preset-lr", action="append", metavar="PRESET=LR",
                   help="scaling: learning rate of one preset (repeatable), e.g. tiny=1e-3")
    p.add_argument("--order", type=_names, default=None,
                   help="scaling: order modalities are added; the first is scored alone "
                   "(default eeg,eog,emg,ecg,resp,spo2,airflow,effort,ibi)")
    p.add_argument("--per-night", type=int, default=60, help="epochs sampled per night for the probes (default 60)")
    add_device_option(p, help="cpu, cuda, cuda:1 or auto (default cpu)")
    p.add_argument("--no-train", action="store_true",
                   help="only summarise the runs already finished in OUT (e.g. while others still train)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from s2v_core.experiments.grid import SCALING_ORDER, make_grid, parse_sweep
    from s2v_core.experiments.report import summarise
    from s2v_core.experiments.run import run_experiment
    from s2v_core.train.config import TrainConfig

    if args.epochs < 1 or args.per_night < 2 or args.batch_size < 2:
        raise S2VError("--epochs must be >= 1, --per-night and --batch-size >= 2")
    if args.spectral_bands < 0:
        raise S2VError("--spectral-bands must be >= 0")
    sweep = parse_sweep(args.sweep) if args.sweep else None
    order = tuple(args.order) if args.order else SCALING_ORDER
    bad = [p for p in args.presets if p not in ("tiny", "small", "dense", "large")]
    if bad:
        raise S2VError(f"unknown preset(s) {', '.join(bad)}; choose from tiny, small, dense, large")
    preset_lr = {}
    for item in args.preset_lr or []:
        name, _, value = item.partition("=")
        try:
            preset_lr[name.strip()] = float(value)
        except ValueError:
            raise S2VError(f"--preset-lr {item!r}: expected PRESET=LR, e.g. tiny=1e-3") from None
        if not 0 < preset_lr[name.strip()] < 1:
            raise S2VError(f"--preset-lr {item!r}: the learning rate must be in (0, 1)")
    specs = make_grid(args.kind, args.seeds, sweep=sweep, presets=args.presets, counts=args.counts,
                      order=order, preset_lr=preset_lr)  # fmt: skip
    try:
        base = TrainConfig(
            preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            device=args.device, pair_weighting=args.pair_weighting,
            batches_per_epoch=args.batches_per_epoch,
            model_overrides={"spectral_bands": args.spectral_bands} if args.spectral_bands else {},
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise S2VError(str(exc)) from None
    print(f"{args.kind}: {len(specs)} runs into {args.out}", flush=True)
    results = run_experiment(
        args.kind, args.data, args.out, specs, base, per_night=args.per_night,
        anchor=order[0] if args.kind == "scaling" else None, progress=lambda line: print(line, flush=True),
        train=not args.no_train,
    )  # fmt: skip
    cols = ["group", "n_seeds", "kappa_all", "kappa_all_low", "kappa_all_high", "site_shortcut",
            "site_shortcut_low", "site_shortcut_high", "retrieval_lift"]  # fmt: skip
    print(summarise(results)[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
