"""The grids of pretraining runs an experiment trains: DASH vs InfoNCE over seeds, a sweep, scaling."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from s2v_core.errors import S2VError
from s2v_core.modalities import MODALITIES

__all__ = [
    "EXPERIMENTS",
    "RunSpec",
    "SCALING_ORDER",
    "SWEEP_DEFAULTS",
    "make_grid",
    "parse_sweep",
]

log = logging.getLogger(__name__)

EXPERIMENTS: tuple[str, ...] = ("losses", "sweep", "scaling")
"""Experiment kinds of :func:`make_grid` and ``s2v experiment``."""

SWEEP_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "age_bandwidth": (5.0, 80.0),
    "sex_diff_factor": (0.5, 1.0),
    "site": ((1.0, 1.0), (2.0, 0.5)),
}
"""Values tried one at a time around the paper's setting (20 years, 0.8, 1.3/0.8)."""

SCALING_ORDER: tuple[str, ...] = ("eeg", "eog", "emg", "ecg", "resp", "spo2", "airflow", "effort", "ibi")
"""Order in which the scaling grid adds modalities; its first is the anchor modality."""


@dataclass(frozen=True)
class RunSpec:
    """One pretraining run of a grid.

    ``settings`` are :class:`~s2v_core.train.config.TrainConfig` fields that differ from the
    experiment's base configuration (``loss``, ``age_bandwidth``, ``preset``,
    ``model_overrides``...); ``group`` is what seeds are pooled over.
    """

    name: str
    group: str
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)
    order: int = 0  # plotting position of the group (sweep value, modality count...)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(_fmt(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_sweep(items: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``["age_bandwidth=5,80", "site=1/1,2/0.5"]`` -> ``{"age_bandwidth": (5.0, 80.0), ...}``.

    Raises
    ------
    S2VError
        An unknown parameter or a value that is not a positive number (``site``: two).
    """
    out: dict[str, tuple[Any, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or name not in SWEEP_DEFAULTS:
            raise S2VError(
                f"--sweep {item!r}: expected NAME=V1,V2 with NAME one of {', '.join(SWEEP_DEFAULTS)}"
            )
        parsed = []
        for text in values.split(","):
            parts = text.strip().split("/")
            try:
                numbers = tuple(float(p) for p in parts)
            except ValueError:
                raise S2VError(f"--sweep {item!r}: {text!r} is not a number") from None
            if name == "site" and len(numbers) != 2:
                raise S2VError(f"--sweep {item!r}: site values are SAME/DIFFERENT, e.g. 1.3/0.8")
            if name != "site" and len(numbers) != 1:
                raise S2VError(f"--sweep {item!r}: {text!r} is not a single number")
            if not all(math.isfinite(v) and v > 0 for v in numbers):
                raise S2VError(f"--sweep {item!r}: values must be positive numbers")
            parsed.append(numbers if name == "site" else numbers[0])
        if not parsed:
            raise S2VError(f"--sweep {item!r}: no values")
        out[name] = tuple(parsed)
    return out


def make_grid(
    kind: str,
    seeds: Sequence[int],
    *,
    sweep: dict[str, tuple[Any, ...]] | None = None,
    presets: Sequence[str] = ("tiny", "small"),
    counts: Sequence[int] = (2, 3, 5, 9),
    order: Sequence[str] = SCALING_ORDER,
    preset_lr: dict[str, float] | None = None,
) -> list[RunSpec]:
    """The runs of an experiment.

    Parameters
    ----------
    kind : {"losses", "sweep", "scaling"}
        ``losses``: DASH-InfoNCE and plain InfoNCE per seed. ``sweep``: DASH with the paper's
        setting (group ``default``) and each ``sweep`` value changed one at a time.
        ``scaling``: DASH for every preset and every modality count (the first ``k`` of
        ``order``).
    seeds : sequence of int
        Training seeds; every group is run once per seed.
    sweep : dict, optional
        Parameter -> values (default :data:`SWEEP_DEFAULTS`); ``site`` values are
        ``(same, different)``.
    presets, counts, order
        Scaling grid: model presets, modality counts (2..9) and the order modalities are added.
    preset_lr : dict, optional
        Scaling grid: peak learning rate per preset (others keep the base configuration's);
        a small model often wants a larger rate than a big one.
    """
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds or min(seeds) < 0:
        raise S2VError("give at least one seed >= 0")
    specs: list[RunSpec] = []
    if kind == "losses":
        for seed in seeds:
            for i, loss in enumerate(("dash", "infonce")):
                specs.append(RunSpec(f"{loss}_s{seed}", loss, seed, {"loss": loss}, i))
    elif kind == "sweep":
        values = SWEEP_DEFAULTS if sweep is None else sweep
        for seed in seeds:
            specs.append(RunSpec(f"default_s{seed}", "default", seed, {"loss": "dash"}, 0))
            for name, vals in values.items():
                for j, v in enumerate(vals):
                    settings: dict[str, Any] = {"loss": "dash"}
                    if name == "site":
                        settings["site_same"], settings["site_diff"] = float(v[0]), float(v[1])
                    else:
                        settings[name] = float(v)
                    label = f"{name}={_fmt(v)}"
                    specs.append(RunSpec(f"{label.replace('/', '-')}_s{seed}", label, seed, settings, j + 1))
    elif kind == "scaling":
        order = tuple(order)
        unknown = [m for m in order if m not in MODALITIES]
        if unknown or len(set(order)) != len(order):
            raise S2VError(f"modality order must list distinct modalities of {', '.join(MODALITIES)}")
        bad = [k for k in counts if not 2 <= int(k) <= len(order)]
        if bad:
            raise S2VError(f"modality counts must be between 2 and {len(order)}, got {bad}")
        rates = dict(preset_lr or {})
        stray = sorted(set(rates) - set(presets))
        if stray:
            raise S2VError(f"learning rate given for preset(s) not in the grid: {', '.join(stray)}")
        for seed in seeds:
            for preset in presets:
                for k in sorted(set(int(c) for c in counts)):
                    mods = tuple(m for m in MODALITIES if m in order[:k])  # canonical order
                    settings = {"loss": "dash", "preset": preset, "model_overrides": {"modalities": mods}}
                    if preset in rates:
                        settings["lr"] = float(rates[preset])
                    specs.append(RunSpec(f"{preset}_m{k}_s{seed}", f"{preset}/{k}", seed, settings, k))
    else:
        raise S2VError(f"unknown experiment {kind!r}; choose one of {', '.join(EXPERIMENTS)}")
    return specs
