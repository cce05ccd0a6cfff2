"""Inference with a trained model: stage a night (:mod:`.predict`), from many modality subsets at
once (:mod:`.subsets`), and embed it (:mod:`.embed`)."""

from s2v_core.inference.embed import (
    backbone_epoch_embeddings,
    embed_night,
    epoch_embeddings,
    load_backbone,
    pool_epochs,
)
from s2v_core.inference.predict import Prediction, load_classifier, model_id, predict_night
from s2v_core.inference.subsets import EncodedNight, encode_night, predict_subsets

__all__ = [
    "EncodedNight",
    "Prediction",
    "backbone_epoch_embeddings",
    "embed_night",
    "encode_night",
    "epoch_embeddings",
    "load_backbone",
    "load_classifier",
    "model_id",
    "pool_epochs",
    "predict_night",
    "predict_subsets",
]
