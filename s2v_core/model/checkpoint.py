"""Safe checkpoints: weights in safetensors, configs and scalars in JSON, never pickle.

A checkpoint is a directory::

    model.safetensors        model weights
    config.json              {"format_version", "kind", "model", "head"?, "step", "extra"}
    optimizer.safetensors    optional: optimizer state tensors
    optimizer.json           optional: optimizer scalars and structure, tensors by reference

``load_checkpoint`` rebuilds the model from ``config.json`` alone, checks every tensor name
and shape before loading, and refuses pickled files outright.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from s2v_core.errors import S2VError
from s2v_core.io.atomic import readable_dir
from s2v_core.limits.jsonfile import read_json
from s2v_core.model.config import FORMAT_VERSION, ConfigError, HeadConfig, ModelConfig
from s2v_core.model.device import resolve_device
from s2v_core.model.fusion import Sleep2VecClassifier
from s2v_core.model.sleep2vec import Sleep2Vec
from s2v_core.shipped import package_version

__all__ = [
    "CONFIG_FILE",
    "KINDS",
    "OPTIMIZER_STATE_FILE",
    "OPTIMIZER_TENSORS_FILE",
    "PICKLE_SUFFIXES",
    "WEIGHTS_FILE",
    "WRITER",
    "CheckpointError",
    "check_finite",
    "flatten_state",
    "load_checkpoint",
    "load_optimizer_state",
    "read_checkpoint_config",
    "save_checkpoint",
    "unflatten_state",
]

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_STATE_FILE = "optimizer.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
KINDS = ("pretrain", "classifier")
_TOP_KEYS = ("format_version", "kind", "model", "head", "step", "extra", "written_by")
WRITER = f"sleep2vec-studio {package_version()}"
"""Recorded as ``written_by`` in every checkpoint, and named in version-mismatch messages."""
_MAX_LISTED = 5


class CheckpointError(S2VError):
    """A checkpoint cannot be written or read; the message names the file and the problem."""


def _refuse_pickles(path: Path) -> None:
    candidates = [path] if path.is_file() else sorted(path.iterdir()) if path.is_dir() else []
    pickled = [p.name for p in candidates if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickled:
        raise CheckpointError(
            f"{path}: refusing to read pickled file(s) {', '.join(pickled)}; pickles can run "
            f"arbitrary code. sleep2vec checkpoints store weights in {WEIGHTS_FILE} and "
            f"settings in {CONFIG_FILE}"
        )


def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, scalars, tensors) into JSON plus tensors.

    Tensors are replaced by ``{"__tensor__": key}`` and collected under ``key``; dicts become
    ``{"__dict__": [[key, value], ...]}`` (keeping integer keys) and tuples
    ``{"__tuple__": [...]}``, so :func:`unflatten_state` restores the exact structure.

    Raises
    ------
    CheckpointError
        On a value that is neither of those types, naming its path.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().cpu().contiguous()
            return {"__tensor__": path}
        if isinstance(value, dict):
            for k in value:
                if not isinstance(k, str | int) or isinstance(k, bool):
                    raise CheckpointError(f"cannot store state key {k!r} at {path or 'top'}")
            return {
                "__dict__": [
                    [k, walk(v, f"{path}.{k}" if path else str(k))] for k, v in value.items()
                ]
            }
        if isinstance(value, list | tuple):
            items = [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
            return {"__tuple__": items} if isinstance(value, tuple) else items
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise CheckpointError(
            f"cannot store {type(value).__name__} at {path or 'top'} without pickle"
        )

    return walk(obj, prefix), tensors


def unflatten_state(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(data, list):
        return [unflatten_state(v, tensors) for v in data]
    if isinstance(data, dict):
        if set(data) == {"__tensor__"}:
            if data["__tensor__"] not in tensors:
                raise CheckpointError(
                    f"optimizer state refers to missing tensor {data['__tensor__']!r}"
                )
            return tensors[data["__tensor__"]]
        if set(data) == {"__tuple__"}:
            return tuple(unflatten_state(v, tensors) for v in data["__tuple__"])
        if set(data) == {"__dict__"}:
            return {k: unflatten_state(v, tensors) for k, v in data["__dict__"]}
        raise CheckpointError(f"unexpected object in optimizer state: keys {sorted(data)}")
    return data


def save_checkpoint(
    directory: str | Path,
    model: Sleep2Vec | Sleep2VecClassifier,
    config: ModelConfig,
    *,
    extra: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int | None = None,
) -> Path:
    """Write ``model`` (and optionally ``optimizer``) to ``directory`` without pickle.

    Parameters
    ----------
    directory : str or Path
        Created if needed; existing checkpoint files in it are overwritten.
    model : Sleep2Vec or Sleep2VecClassifier
        Its kind ("pretrain" or "classifier") is recorded; a classifier's head config too.
    config : ModelConfig
        The backbone configuration the model was built from.
    extra : dict, optional
        JSON-serialisable metadata (training data, metrics, EMA flag...).
    optimizer : torch.optim.Optimizer, optional
        Its state dict is stored as safetensors tensors plus JSON.
    step : int, optional
        Training step, stored in ``config.json``.

    Returns
    -------
    Path
        The checkpoint directory.
    """
    directory = Path(directory)
    if config.to_dict() != model.config.to_dict():
        raise CheckpointError("the config given differs from the model's own config")
    kind = "classifier" if isinstance(model, Sleep2VecClassifier) else "pretrain"
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "written_by": WRITER,
        "kind": kind,
        "model": config.to_dict(),
    }
    if isinstance(model, Sleep2VecClassifier):
        meta["head"] = model.head_config.to_dict()
    meta["step"] = step
    meta["extra"] = extra or {}
    try:
        config_text = json.dumps(meta, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"extra metadata is not JSON-serialisable: {err}") from None
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(
        state,
        str(directory / WEIGHTS_FILE),
        metadata={"format_version": str(FORMAT_VERSION), "kind": kind},
    )
    (directory / CONFIG_FILE).write_text(config_text + "\n", encoding="utf-8")
    if optimizer is not None:
        structure, tensors = flatten_state(optimizer.state_dict(), "optimizer")
        save_file(tensors, str(directory / OPTIMIZER_TENSORS_FILE))
        (directory / OPTIMIZER_STATE_FILE).write_text(json.dumps(structure), encoding="utf-8")
    log.info("saved %s checkpoint (%d tensors) to %s", kind, len(state), directory)
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """Read and validate ``config.json``; returns it with ``model`` (and ``head``) as configs."""
    directory = readable_dir(directory)  # a run killed mid-swap of best/: its complete copy
    _refuse_pickles(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a sleep2vec checkpoint (no {CONFIG_FILE})")
    # size and nesting capped; every failure one line (issue 16: deep nesting was a RecursionError)
    meta = read_json(path, error=lambda problem: CheckpointError(f"{directory.name}/{path.name}: {problem}"))
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    _check_format_version(meta, path)
    unknown = sorted(set(meta) - set(_TOP_KEYS))
    if unknown:
        raise CheckpointError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_TOP_KEYS)}"
        )
    if meta.get("kind") not in KINDS:
        raise CheckpointError(f"{path}: kind {meta.get('kind')!r}; allowed: {', '.join(KINDS)}")
    try:
        meta["model"] = ModelConfig.from_dict(meta.get("model"))
        if meta["kind"] == "classifier":
            meta["head"] = HeadConfig.from_dict(meta.get("head", {}))
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: {err}") from None
    if not isinstance(meta.get("extra", {}), dict):
        raise CheckpointError(f"{path}: 'extra' must be a JSON object")
    meta.setdefault("extra", {})
    meta.setdefault("step", None)
    return meta


def _check_format_version(meta: dict[str, Any], path: Path) -> None:
    """Refuse a config.json of another format, saying which software reads it and what to do."""
    version = meta.get("format_version")
    if version == FORMAT_VERSION and not isinstance(version, bool):
        return
    writer = meta.get("written_by")
    by = f" (written by {writer})" if isinstance(writer, str) and writer else ""
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(
            f"{path}: format_version {version!r} is missing or not an integer{by}; this is not a "
            f"sleep2vec checkpoint written by {WRITER} or earlier, or its {CONFIG_FILE} was edited. "
            f"Re-export it with the software that wrote it (save_checkpoint or s2v finetune)"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version}{by} is newer than this {WRITER} reads "
            f"(format {FORMAT_VERSION}); upgrade sleep2vec-studio (pip install -U "
            f"sleep2vec-studio), or load it with the release that wrote it"
        )
    raise CheckpointError(
        f"{path}: checkpoint format {version}{by} is older than this {WRITER} reads "
        f"(format {FORMAT_VERSION}); load it with the release that wrote it and save it again "
        f"with a release that writes format {FORMAT_VERSION}, or fine-tune a new model"
    )


_LAYER = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.")
_TOKENIZER = re.compile(r"(?:^|\.)tokenizers\.([a-z0-9]+)\.")


def _check_config_fits_weights(meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                               path: Path) -> None:
    """Check config.json against the weights' names and shapes before any model is built.

    The config alone decides the model that is constructed; one describing a far larger model
    than the file holds (an edited or mismatched config.json: a million layers, a width of
    1e30) would otherwise take minutes or fail inside PyTorch. Every width in the config must
    occur as a tensor dimension no larger than the file's largest, and the encoder layers and
    tokenizers must be the ones the file holds.
    """
    config: ModelConfig = meta["model"]
    largest = max((max(t.shape, default=1) for t in tensors.values()), default=0)
    widths = {"d_token": config.d_token, "hidden": config.hidden,
              "hidden * mlp_ratio": config.hidden * config.mlp_ratio}
    if meta["kind"] == "pretrain":
        widths["proj_dim"] = config.proj_dim
    else:
        head: HeadConfig = meta["head"]
        widths.update(head_hidden=head.head_hidden, n_stage_classes=head.n_stage_classes,
                      night_outputs=head.night_outputs)
    too_big = [f"{k} = {v}" for k, v in widths.items() if v > largest]
    if too_big:
        raise CheckpointError(
            f"{path.parent / CONFIG_FILE}: {', '.join(too_big)} "
            f"{'is' if len(too_big) == 1 else 'are'} larger than any tensor in "
            f"{WEIGHTS_FILE} (largest dimension {largest}): the config does not belong to these "
            "weights"
        )
    layers = {int(m.group(1)) for k in tensors if (m := _LAYER.search(k))}
    if len(layers) != config.n_layers:
        raise CheckpointError(
            f"{path.parent / CONFIG_FILE}: n_layers = {config.n_layers}, but {WEIGHTS_FILE} holds "
            f"{len(layers)} encoder layers: the config does not belong to these weights"
        )
    found = {m.group(1) for k in tensors if (m := _TOKENIZER.search(k))}
    if found != set(config.modalities):
        raise CheckpointError(
            f"{path.parent / CONFIG_FILE}: modalities {', '.join(config.modalities)}, but "
            f"{WEIGHTS_FILE} has tokenizers for {', '.join(sorted(found)) or 'none'}: the config "
            "does not belong to these weights"
        )


def _check_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)}, model {shape}"
        for k, shape in expected.items()
        if k in tensors and tuple(tensors[k].shape) != shape
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", wrong),
    ):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            problems.append(f"{label}: {'; '.join(items[:_MAX_LISTED])}{more}")
    if problems:
        raise CheckpointError(
            f"{path}: weights do not fit the model in {CONFIG_FILE}: " + " | ".join(problems)
        )
    not_float = [k for k, v in tensors.items() if not v.is_floating_point()]
    if not_float:
        raise CheckpointError(f"{path}: non-float tensors {', '.join(not_float[:_MAX_LISTED])}")


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or infinite values, naming the first such tensor.

    A model with them loads and runs, but every output is NaN: the argmax of NaN
    probabilities is stage 0, so every epoch came out W with empty probability columns.

    Raises
    ------
    CheckpointError
        ``where: tensor 'NAME' holds N NaN and M infinite values of K ...``.
    """
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return
    t = tensors[bad[0]]
    n_nan = int(torch.isnan(t).sum())
    n_inf = int(torch.isinf(t).sum())
    what = " and ".join(x for x in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else "") if x)
    more = f" (and {len(bad) - 1} more tensor{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
    raise CheckpointError(
        f"{where}: tensor {bad[0]!r} holds {what} value{'s' if n_nan + n_inf > 1 else ''} of {t.numel()}"
        f"{more}; the weights are corrupt (or training diverged) and would stage every epoch W: "
        "refusing to load them; use an earlier checkpoint or train again"
    )


def load_checkpoint(
    directory: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[Sleep2Vec | Sleep2VecClassifier, ModelConfig, dict[str, Any]]:
    """Rebuild and load a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    directory : str or Path
        Checkpoint directory. A pickled file (``*.pt``, ``*.pth``, ``*.ckpt``, ``*.bin``...) or a
        directory containing one is refused.
    device : str or torch.device
        Where to put the weights; "auto" picks CUDA when available, else the CPU.

    Returns
    -------
    model : Sleep2Vec or Sleep2VecClassifier
        In eval mode.
    config : ModelConfig
    extra : dict
        The metadata given to :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        Pickled files, missing files, wrong format version, unknown config keys, weights whose
        names or shapes do not match the model the config describes, or weights holding NaN or
        infinite values (:func:`check_finite`).
    DeviceError
        ``device`` is not usable here (:func:`s2v_core.model.device.resolve_device`).
    """
    directory = readable_dir(directory)  # a run killed mid-swap of best/: its complete copy
    target = resolve_device(device)  # an unusable --device is one line, before anything is read
    meta = read_checkpoint_config(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{directory}: missing {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path}: cannot read weights ({err})") from None
    config: ModelConfig = meta["model"]
    _check_config_fits_weights(meta, tensors, weights_path)
    with torch.device("meta"):  # no allocation or random init before the weights arrive
        if meta["kind"] == "classifier":
            model: nn.Module = Sleep2VecClassifier(config, meta["head"])
        else:
            model = Sleep2Vec(config)
    _check_tensors(model, tensors, weights_path)
    check_finite(tensors, f"{directory.name}/{WEIGHTS_FILE}")
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True, assign=True)
    model.to(target).eval()
    log.info("loaded %s checkpoint from %s", meta["kind"], directory)
    return model, config, meta["extra"]


def load_optimizer_state(directory: str | Path, optimizer: torch.optim.Optimizer) -> int | None:
    """Restore ``optimizer`` from a checkpoint saved with one; returns the saved step."""
    directory = readable_dir(directory)
    meta = read_checkpoint_config(directory)
    tensor_path, state_path = directory / OPTIMIZER_TENSORS_FILE, directory / OPTIMIZER_STATE_FILE
    if not (tensor_path.is_file() and state_path.is_file()):
        raise CheckpointError(f"{directory}: no optimizer state ({OPTIMIZER_STATE_FILE})")
    try:
        tensors = load_file(str(tensor_path), device="cpu")
        structure = read_json(state_path, error=lambda problem: CheckpointError(
            f"{directory.name}/{state_path.name}: cannot read optimizer state ({problem})"))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{directory}: cannot read optimizer state ({err})") from None
    check_finite(tensors, f"{directory.name}/{OPTIMIZER_TENSORS_FILE}")
    try:
        optimizer.load_state_dict(unflatten_state(structure, tensors))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"{directory}: optimizer state does not fit this optimizer ({err})"
        ) from None
    return meta["step"]
