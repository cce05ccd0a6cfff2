"""Learning-rate schedule (linear warm-up, then cosine) and an EMA copy of the weights.

The schedule is a pure function of the step, so a resumed run needs no scheduler state: the
step alone puts it back at the same position.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = [
    "EMA",
    "lr_at",
    "warmup_steps",
]


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    """Number of warm-up steps: ``ceil(warmup_fraction * total_steps)`` (0 when the fraction is 0)."""
    return int(math.ceil(warmup_fraction * total_steps - 1e-9)) if warmup_fraction > 0 else 0


def lr_at(
    step: int,
    total_steps: int,
    base_lr: float,
    *,
    warmup_fraction: float = 0.03,
    final_lr_fraction: float = 0.1,
) -> float:
    """Learning rate used for optimiser step ``step`` (0-based).

    Linear warm-up ``base_lr * (step + 1) / W`` over the first ``W`` steps (see
    :func:`warmup_steps`), then a half cosine from ``base_lr`` down to
    ``final_lr_fraction * base_lr``, reached at the last step ``total_steps - 1``. Steps past
    the end stay at the final value.

    Parameters
    ----------
    step : int
        Optimiser step, 0-based.
    total_steps : int
        Steps of the whole run (epochs x steps per epoch).
    base_lr : float
        Peak learning rate.
    warmup_fraction, final_lr_fraction : float
        Share of steps in warm-up; final lr as a fraction of the peak.

    Examples
    --------
    >>> lr_at(0, 100, 1.0, warmup_fraction=0.1)
    0.1
    >>> lr_at(99, 100, 1.0, warmup_fraction=0.1, final_lr_fraction=0.1)
    0.1
    """
    total_steps = max(int(total_steps), 1)
    warm = warmup_steps(total_steps, warmup_fraction)
    if step < warm:
        return base_lr * (step + 1) / warm
    span = total_steps - 1 - warm
    progress = 1.0 if span <= 0 else min(1.0, (step - warm) / span)
    floor = final_lr_fraction * base_lr
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's parameters, kept in a frozen copy of the model.

    After each optimiser step, ``ema = d * ema + (1 - d) * param`` with the warmed-up decay
    ``d = min(decay, (1 + n) / (10 + n))`` (``n`` = updates so far), so that a short run is not
    dominated by the random initialisation. Buffers are copied as they are.

    Parameters
    ----------
    model : nn.Module
        The trained model; it is deep-copied once.
    decay : float
        Long-run decay in [0, 1).

    Attributes
    ----------
    module : nn.Module
        The averaged model, in eval mode, without gradients (the one to evaluate and export).
    updates : int
        Number of :meth:`update` calls so far (restored when resuming).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """Decay the next :meth:`update` applies."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current parameters (same architecture)."""
        weight = 1.0 - self.current_decay()
        averages = list(self.module.parameters())
        news = [
            new.detach().to(avg.dtype)
            for avg, new in zip(averages, model.parameters(), strict=True)
        ]
        # one fused call over all parameters (per device and dtype) instead of one kernel each
        torch._foreach_lerp_(averages, news, weight)
        for avg, new in zip(self.module.buffers(), model.buffers(), strict=True):
            avg.copy_(new)
        self.updates += 1
