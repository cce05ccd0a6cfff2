"""Model and head configurations: small frozen dataclasses saved as JSON next to the weights.

A checkpoint's ``config.json`` alone must rebuild its model, so every architectural choice lives
here (METHOD.md section 3) and nothing else is needed to construct a :class:`Sleep2Vec`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from s2v_core.errors import S2VError
from s2v_core.modalities import MODALITIES, check_modality, samples_per_epoch
from s2v_core.signals.features import FEATURE_VERSION, n_features

__all__ = [
    "FORMAT_VERSION",
    "PRESETS",
    "ConfigError",
    "HeadConfig",
    "ModelConfig",
    "get_preset",
]

FORMAT_VERSION = 1
"""Version of the config / checkpoint format this code reads and writes."""


class ConfigError(S2VError, ValueError):
    """A model or head configuration is invalid; the message names the field and what is allowed."""


def _canonical_modalities(names: Any) -> tuple[str, ...]:
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise ConfigError(f"modalities must be a list of names, got {names!r}")
    names = list(names)
    if not names:
        raise ConfigError(f"modalities must not be empty; allowed: {', '.join(MODALITIES)}")
    for name in names:
        try:
            check_modality(name)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if len(set(names)) != len(names):
        raise ConfigError(f"modalities must not repeat a name, got {names}")
    return tuple(m for m in MODALITIES if m in names)


def _check_positive(obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ConfigError(f"config format {version}, this version reads {FORMAT_VERSION}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the sleep2vec backbone (tokenizers, shared RoPE encoder, projection).

    Examples
    --------
    >>> cfg = ModelConfig(d_token=16, hidden=32, n_layers=1, n_heads=2)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.samples_per_token("ibi")
    120
    """

    d_token: int = 128  # tokenizer output width d (one vector per 30-s epoch)
    hidden: int = 256  # encoder width H
    n_layers: int = 4  # number of pre-norm transformer layers
    n_heads: int = 4  # attention heads; hidden / n_heads must be even (RoPE rotates pairs)
    mlp_ratio: int = 4  # MLP width = mlp_ratio * hidden
    dropout: float = 0.1  # dropout inside the encoder (attention and residual branches)
    tokenizer_dropout: float = 0.1  # dropout after the tokenizer MLP (METHOD.md: 0.1)
    spectral_bands: int = 0  # 0: the paper's raw tokenizer; > 0: add a log band-power branch
    raw_branch: bool = True  # the paper's raw-sample MLP; False: tokens from engineered features only
    features: int = 0  # 0: none; else the version of s2v_core.signals.features read by the tokenizers
    feature_bins: int = 0  # 0: the feature branch reads the values; k > 0: their one-hot bins between k edges
    binned_modalities: tuple[str, ...] | None = None  # with feature_bins: the modalities read through bins (None: all)
    use_cls: bool = True  # prepend a learned CLS token to every sequence
    proj_dim: int = 128  # projection-head output width for the contrastive loss
    mask_ratio: float = 0.15  # fraction of valid tokens replaced by the mask vector in pretraining
    modalities: tuple[str, ...] = field(default=MODALITIES)  # modalities with a tokenizer
    max_len: int = 1440  # longest accepted sequence in tokens (1440 = 12 h); a sanity limit
    rope_base: float = 10000.0  # RoPE frequency base
    format_version: int = FORMAT_VERSION  # config format; checked when loading

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", _canonical_modalities(self.modalities))
        _check_positive(
            self, ("d_token", "hidden", "n_layers", "n_heads", "mlp_ratio", "proj_dim", "max_len")
        )
        if self.hidden % self.n_heads or (self.hidden // self.n_heads) % 2:
            raise ConfigError(
                f"hidden ({self.hidden}) must split into n_heads ({self.n_heads}) heads of even "
                "width (rotary embeddings rotate pairs of channels)"
            )
        if isinstance(self.spectral_bands, bool) or not isinstance(self.spectral_bands, int) or not (
            0 <= self.spectral_bands <= 512
        ):
            raise ConfigError(f"spectral_bands must be an integer in [0, 512], got {self.spectral_bands!r}")
        if not isinstance(self.raw_branch, bool):
            raise ConfigError(f"raw_branch must be true or false, got {self.raw_branch!r}")
        if self.features not in (0, FEATURE_VERSION) or isinstance(self.features, bool):
            raise ConfigError(
                f"features must be 0 (none) or {FEATURE_VERSION} (the feature set this version "
                f"computes), got {self.features!r}"
            )
        if isinstance(self.feature_bins, bool) or not isinstance(self.feature_bins, int) or not (
            0 <= self.feature_bins <= 64
        ):
            raise ConfigError(f"feature_bins must be an integer in [0, 64], got {self.feature_bins!r}")
        if self.binned_modalities is not None:
            binned = _canonical_modalities(self.binned_modalities)
            outside = [m for m in binned if m not in self.modalities]
            if outside:
                raise ConfigError(f"binned_modalities {outside} are not modalities of this model")
            if not self.feature_bins:
                raise ConfigError("binned_modalities needs feature_bins > 0")
            object.__setattr__(self, "binned_modalities", binned)
        if not (self.reads_samples or self.features):
            raise ConfigError("a tokenizer needs raw samples (raw_branch or spectral_bands) or features")
        _check_fraction("dropout", self.dropout)
        _check_fraction("tokenizer_dropout", self.tokenizer_dropout)
        _check_fraction("mask_ratio", self.mask_ratio)
        if not isinstance(self.use_cls, bool):
            raise ConfigError(f"use_cls must be true or false, got {self.use_cls!r}")
        if not self.rope_base > 1.0:
            raise ConfigError(f"rope_base must be > 1, got {self.rope_base!r}")
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"config format {self.format_version}, this version reads {FORMAT_VERSION}"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head (``hidden // n_heads``)."""
        return self.hidden // self.n_heads

    @property
    def reads_samples(self) -> bool:
        """The tokenizers read the raw samples (raw MLP or band-power branch)."""
        return self.raw_branch or self.spectral_bands > 0

    def feature_bins_of(self, modality: str) -> int:
        """Bins of ``modality``'s feature branch: 0 when it reads the values (see ``binned_modalities``)."""
        if not self.features or (self.binned_modalities is not None and modality not in self.binned_modalities):
            return 0
        return self.feature_bins

    def n_features(self, modality: str) -> int:
        """Engineered features per token of ``modality`` (0 without features)."""
        return n_features(modality) if self.features else 0

    def token_width(self, modality: str) -> int:
        """Width of one token's input: the raw samples (when read), then the features (if any)."""
        raw = self.samples_per_token(modality) if self.reads_samples else 0
        return raw + self.n_features(modality)

    def samples_per_token(self, modality: str) -> int:
        """Samples in one token of ``modality`` (3840 at 128 Hz, 120 at 4 Hz)."""
        if modality not in self.modalities:
            raise ConfigError(
                f"modality {modality!r} is not in this model; it has {', '.join(self.modalities)}"
            )
        return samples_per_epoch(modality)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["modalities"] = list(self.modalities)
        if self.binned_modalities is not None:
            data["binned_modalities"] = list(self.binned_modalities)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class HeadConfig:
    """Downstream heads and fusion on top of the backbone (METHOD.md section 5)."""

    n_stage_classes: int = 5  # per-token classes (5: W/N1/N2/N3/REM; 4 or 3 after merging)
    night_outputs: int = 0  # outputs of the night-level head; 0 = no night head
    per_epoch_gate: bool = True  # add an input-dependent per-epoch gate to the global gates
    head_hidden: int = 128  # width of the hidden layer of the head MLPs
    head_dropout: float = 0.1  # dropout inside the head MLPs
    freeze_tokenizers: bool = True  # tokenizers start frozen when fine-tuning (METHOD.md)
    format_version: int = FORMAT_VERSION  # config format; checked when loading

    def __post_init__(self) -> None:
        _check_positive(self, ("n_stage_classes", "head_hidden"))
        if isinstance(self.night_outputs, bool) or not isinstance(self.night_outputs, int):
            raise ConfigError(f"night_outputs must be an integer >= 0, got {self.night_outputs!r}")
        if self.night_outputs < 0:
            raise ConfigError(f"night_outputs must be an integer >= 0, got {self.night_outputs!r}")
        _check_fraction("head_dropout", self.head_dropout)
        for name in ("per_epoch_gate", "freeze_tokenizers"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"config format {self.format_version}, this version reads {FORMAT_VERSION}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        return _from_dict(cls, data)


PRESETS: dict[str, ModelConfig] = {
    # unit tests: tiny encoder (the 128-Hz tokenizers still hold 3840 * 3 * d weights each)
    "tiny": ModelConfig(
        d_token=16, hidden=32, n_layers=2, n_heads=2, mlp_ratio=2, dropout=0.0, proj_dim=16
    ),
    # the shipped CPU model: 9 modalities x 960 tokens in well under a second on 2 cores
    "small": ModelConfig(d_token=64, hidden=128, n_layers=4, n_heads=4, mlp_ratio=4),
    # the paper's sizes
    "dense": ModelConfig(d_token=256, hidden=768, n_layers=12, n_heads=16, mlp_ratio=4),
    "large": ModelConfig(d_token=256, hidden=1024, n_layers=16, n_heads=16, mlp_ratio=4),
}
"""Named architectures; tokenizer width d of dense/large is ours (the paper gives only H, L, heads)."""


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """Return preset ``name`` with optional field overrides (e.g. ``modalities=("eeg",)``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; allowed: {', '.join(PRESETS)}")
    try:
        return dataclasses.replace(PRESETS[name], **overrides)
    except TypeError as err:
        raise ConfigError(f"bad override for preset {name!r}: {err}") from None
