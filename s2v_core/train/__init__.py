"""Contrastive pretraining: config, loop (single process or DDP), schedule, EMA, validation.

Also fine-tuning (:mod:`.finetune`), the training windows of a store (:mod:`.windows`) and the
DASH-InfoNCE loss (:mod:`.losses`). The loop itself is ``from s2v_core.train.pretrain import
pretrain``.
"""

from s2v_core.train.config import LOSSES, TrainConfig
from s2v_core.train.pretrain import make_loss_fn
from s2v_core.train.retrieval import RetrievalScore, pairwise_retrieval, retrieval_accuracy
from s2v_core.train.runfiles import EpochInfo, PretrainResult, StepInfo, TrainCallback
from s2v_core.train.schedule import EMA, lr_at

__all__ = [
    "EMA",
    "EpochInfo",
    "LOSSES",
    "PretrainResult",
    "RetrievalScore",
    "StepInfo",
    "TrainCallback",
    "TrainConfig",
    "lr_at",
    "make_loss_fn",
    "pairwise_retrieval",
    "retrieval_accuracy",
]
