"""Pretraining configuration: one small dataclass, saved as JSON inside every checkpoint.

The learning rate default (3e-4) is higher than the paper's 5e-5 on purpose: 5e-5 is what the
paper uses for its dense/large models (H = 768/1024, tens of thousands of nights); the small
CPU presets have few parameters and few steps, and learn far too slowly at 5e-5. Use
``--lr 5e-5`` for the dense and large presets.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from s2v_core.limits.jsonfile import read_json
from s2v_core.model.config import ConfigError, ModelConfig, get_preset
from s2v_core.train.windows import WINDOW_EPOCHS

__all__ = [
    "LOSSES",
    "TRAIN_CONFIG_VERSION",
    "TrainConfig",
]

LOSSES: tuple[str, ...] = ("dash", "infonce")
"""Allowed values of :attr:`TrainConfig.loss`."""

TRAIN_CONFIG_VERSION = 1
"""Version of the training-config JSON this code reads and writes."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a pretraining run besides the data.

    Examples
    --------
    >>> cfg = TrainConfig(preset="tiny", epochs=2)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.model_config().hidden
    32
    """

    preset: str = "small"  # model preset name (tiny, small, dense, large), see model.PRESETS
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig field overrides
    loss: str = "dash"  # "dash" (DASH-InfoNCE) or "infonce" (the paper's baseline)
    tau: float = 0.2  # softmax temperature of the contrastive loss
    age_bandwidth: float = 20.0  # years; age kernel exp(-|age_i - age_j| / bandwidth)
    sex_diff_factor: float = 0.8  # DASH weight factor for negatives of the other sex
    site_same: float = 1.3  # DASH weight factor for negatives from the same site
    site_diff: float = 0.8  # DASH weight factor for negatives from another site
    eps: float = 1e-6  # DASH weight floor; same-night negatives get weight eps
    margin: float = 0.5  # DASH similarity margin on same-night negatives
    epochs: int = 10  # passes over the training data (see batches_per_epoch)
    batch_size: int = 16  # windows per batch and process (N of the contrastive loss)
    lr: float = 3e-4  # peak learning rate (paper: 5e-5 for dense/large; see module docstring)
    weight_decay: float = 0.01  # AdamW decoupled weight decay, on matrices only
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    warmup_fraction: float = 0.03  # share of all steps with linear warm-up
    final_lr_fraction: float = 0.1  # the cosine ends at this fraction of the peak lr
    grad_clip: float = 1.0  # max global gradient norm (0 disables clipping)
    ema_decay: float = 0.999  # EMA decay of the exported weights (warmed up, see schedule.EMA)
    seed: int = 0  # seeds model init, sampler order, masking and dropout
    device: str = "auto"  # "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1"...
    bf16: bool | None = None  # bf16 autocast; None = on for CUDA, off for CPU (never on CPU)
    num_workers: int = 0  # DataLoader worker processes per training process
    window_epochs: int = WINDOW_EPOCHS  # tokens per training window (120 = one hour)
    pair_weighting: str = "windows"  # modality pair per batch: "windows" (proportional), "sqrt" or "balanced"
    batches_per_epoch: int | None = None  # steps per epoch and process; None = one data pass
    val_batches: int = 8  # validation windows per pair, in units of batch_size
    log_every: int = 10  # write a row of steps.csv every this many steps
    compile: str = ""  # torch.compile backend for the shared encoder ("inductor" on a GPU); "" = eager
    format_version: int = TRAIN_CONFIG_VERSION  # checked when loading

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "model_overrides", dict(self.model_overrides))
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.pair_weighting not in ("windows", "balanced", "sqrt"):
            raise ConfigError(f"pair_weighting must be windows, balanced or sqrt, got {self.pair_weighting!r}")
        for name in ("epochs", "batch_size", "window_epochs", "val_batches", "log_every"):
            _require(name, getattr(self, name), int, lambda v: v >= 1, "a positive integer")
        if self.batches_per_epoch is not None:
            _require("batches_per_epoch", self.batches_per_epoch, int, lambda v: v >= 1,
                     "a positive integer or null")  # fmt: skip
        _require("num_workers", self.num_workers, int, lambda v: v >= 0, "an integer >= 0")
        _require("seed", self.seed, int, lambda v: v >= 0, "an integer >= 0")
        for name in ("tau", "lr", "age_bandwidth"):
            _require(name, getattr(self, name), float, lambda v: v > 0, "a number > 0")
        for name in ("weight_decay", "grad_clip", "margin", "eps"):
            _require(name, getattr(self, name), float, lambda v: v >= 0, "a number >= 0")
        for name in ("sex_diff_factor", "site_same", "site_diff"):
            _require(name, getattr(self, name), float, lambda v: v > 0, "a number > 0")
        _require("warmup_fraction", self.warmup_fraction, float, lambda v: 0 <= v < 1, "in [0, 1)")
        _require("final_lr_fraction", self.final_lr_fraction, float, lambda v: 0 <= v <= 1,
                 "in [0, 1]")  # fmt: skip
        _require("ema_decay", self.ema_decay, float, lambda v: 0 <= v < 1, "in [0, 1)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.bf16 is not None and not isinstance(self.bf16, bool):
            raise ConfigError(f"bf16 must be true, false or null (auto), got {self.bf16!r}")
        if not isinstance(self.compile, str):
            raise ConfigError(f"compile must be a torch.compile backend name or '' (off), got {self.compile!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.format_version != TRAIN_CONFIG_VERSION:
            raise ConfigError(
                f"training config format {self.format_version}, this version reads "
                f"{TRAIN_CONFIG_VERSION}"
            )
        self.model_config()  # unknown preset or bad override fails here, not mid-run

    def model_config(self) -> ModelConfig:
        """The :class:`ModelConfig` of :attr:`preset` with :attr:`model_overrides` applied."""
        overrides = dict(self.model_overrides)
        if "modalities" in overrides:
            overrides["modalities"] = tuple(overrides["modalities"])
        return get_preset(self.preset, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        data["model_overrides"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.model_overrides.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"TrainConfig must be a JSON object, got {type(data).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig key(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        return cls(**data)

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> TrainConfig:
        """Read a file written by :meth:`save_json`."""
        p = Path(path)  # size and nesting capped (issue 16)
        return cls.from_dict(read_json(p, error=lambda problem: ConfigError(f"{p.name}: {problem}")))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _require(name: str, value: Any, kind: type, ok, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float if kind is float else int):
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")
    if not ok(value):
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")
