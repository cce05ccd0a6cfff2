"""Contrastive pretraining: config, loop (single process or DDP), schedule, EMA, validation.

Names are imported lazily (PEP 562), so that ``s2v_core.cli.train`` can be hooked into the
``s2v`` command line without importing torch for every subcommand. The loop itself is
``from s2v_core.train.pretrain import pretrain`` (a lazy package attribute of that name would be
shadowed by the submodule of the same name).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EMA": "s2v_core.train.schedule",
    "LOSSES": "s2v_core.train.config",
    "EpochInfo": "s2v_core.train.runfiles",
    "PretrainResult": "s2v_core.train.runfiles",
    "RetrievalScore": "s2v_core.train.retrieval",
    "StepInfo": "s2v_core.train.runfiles",
    "TrainCallback": "s2v_core.train.runfiles",
    "TrainConfig": "s2v_core.train.config",
    "lr_at": "s2v_core.train.schedule",
    "make_loss_fn": "s2v_core.train.pretrain",
    "pairwise_retrieval": "s2v_core.train.retrieval",
    "retrieval_accuracy": "s2v_core.train.retrieval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 's2v_core.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
