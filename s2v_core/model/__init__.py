"""sleep2vec model: configs, tokenizers, shared RoPE encoder, backbone, fusion and heads."""

from s2v_core.model.config import (
    FORMAT_VERSION,
    PRESETS,
    ConfigError,
    HeadConfig,
    ModelConfig,
    get_preset,
)
from s2v_core.model.fusion import (
    ClassifierOutput,
    FusionOutput,
    GatedFusion,
    NightHead,
    Sleep2VecClassifier,
    StagingHead,
    count_classifier_parameters,
)
from s2v_core.model.sleep2vec import Sleep2Vec, count_parameters, sample_token_mask

__all__ = [
    "FORMAT_VERSION",
    "PRESETS",
    "ClassifierOutput",
    "ConfigError",
    "FusionOutput",
    "GatedFusion",
    "HeadConfig",
    "ModelConfig",
    "NightHead",
    "Sleep2Vec",
    "Sleep2VecClassifier",
    "StagingHead",
    "count_classifier_parameters",
    "count_parameters",
    "get_preset",
    "sample_token_mask",
]
