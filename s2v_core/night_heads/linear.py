"""Regularised linear heads on standardised night embeddings, saved without pickle.

Ridge regression for regression tasks, L2 logistic regression with balanced class weights for
binary ones; the strength comes from an inner subject-level cross-validation (:func:`choose_alpha`).
A trained head is a folder ``head.json`` (task, settings, backbone id, CV metrics) plus
``head.safetensors`` (scaler mean and scale, coefficients, intercept).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from s2v_core.limits.jsonfile import read_json
from s2v_core.model.checkpoint import PICKLE_SUFFIXES
from s2v_core.night_heads.tasks import NightHeadError, TaskSpec, parse_task

__all__ = [
    "ALPHAS",
    "DEFAULT_ALPHA",
    "HEAD_CONFIG_FILE",
    "HEAD_FORMAT_VERSION",
    "HEAD_KIND",
    "HEAD_WEIGHTS_FILE",
    "NightHead",
    "choose_alpha",
    "fit_head",
    "fit_linear",
    "group_splitter",
    "linear_score",
    "n_splits_for",
    "sigmoid",
    "standardise",
]

log = logging.getLogger(__name__)

HEAD_FORMAT_VERSION = 1
HEAD_CONFIG_FILE = "head.json"
HEAD_WEIGHTS_FILE = "head.safetensors"
HEAD_KIND = "night_head"
ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
"""Regularisation strengths tried by the inner cross-validation (ridge alpha; logistic 1/C)."""
DEFAULT_ALPHA = 10.0
"""Strength used when a training fold has too few subjects for an inner cross-validation."""


# --- linear heads ---------------------------------------------------------------------------
def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    return mean, scale


def fit_linear(x: np.ndarray, y: np.ndarray, kind: str, alpha: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept on standardised ``x``."""
    if kind == "regression":
        from sklearn.linear_model import Ridge

        m = Ridge(alpha=alpha).fit(x, y)
        return np.asarray(m.coef_, dtype=float).ravel(), float(m.intercept_)
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=1.0 / alpha, class_weight="balanced", max_iter=2000).fit(x, y)
    return np.asarray(m.coef_, dtype=float).ravel(), float(np.ravel(m.intercept_)[0])


def linear_score(x: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    return x @ coef + intercept


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def group_splitter(kind: str, n_splits: int, seed: int):
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if kind == "binary":
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def n_splits_for(kind: str, y: np.ndarray, groups: np.ndarray, wanted: int) -> int:
    n = len(np.unique(groups))
    if kind == "binary":
        n = min(len(np.unique(groups[y == c])) for c in (0.0, 1.0))
    return min(wanted, n)


def choose_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str, seed: int = 0) -> float:
    """Regularisation strength by an inner subject-level CV (MSE or log-loss), from :data:`ALPHAS`.

    Falls back to :data:`DEFAULT_ALPHA` when fewer than 3 subjects (per class, for binary tasks)
    are available.
    """
    k = n_splits_for(kind, y, groups, 3)
    if k < 3:
        return DEFAULT_ALPHA
    losses = np.zeros(len(ALPHAS))
    for tr, te in group_splitter(kind, k, seed).split(x, y.astype(int) if kind == "binary" else y, groups):
        if kind == "binary" and len(np.unique(y[tr])) < 2:
            continue
        mean, scale = standardise(x[tr])
        xtr, xte = (x[tr] - mean) / scale, (x[te] - mean) / scale
        for i, a in enumerate(ALPHAS):
            coef, b = fit_linear(xtr, y[tr], kind, a)
            s = linear_score(xte, coef, b)
            if kind == "regression":
                losses[i] += float(np.sum((s - y[te]) ** 2))
            else:
                p = np.clip(sigmoid(s), 1e-7, 1 - 1e-7)
                losses[i] += float(-np.sum(y[te] * np.log(p) + (1 - y[te]) * np.log(1 - p)))
    return float(ALPHAS[int(np.argmin(losses))])


@dataclass
class NightHead:
    """A fitted linear night-level head: ``score = ((x - mean) / scale) @ coef + intercept``.

    For regression the score is the target (``log1p`` of it for AHI); for binary tasks the
    probability of the positive class is ``sigmoid(score)``.
    """

    task: TaskSpec
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.coef.size)

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise NightHeadError(
                f"the head expects {self.n_features} features per night, got shape {x.shape}"
            )
        return linear_score((x - self.mean) / self.scale, self.coef, self.intercept)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Years (age), events/h (AHI, >= 0), or probability of the positive class."""
        s = self.score(x)
        if self.task.kind == "binary":
            return sigmoid(s)
        return np.maximum(np.expm1(s), 0.0) if self.task.log_target else s

    def save(self, folder: str | Path) -> Path:
        """Write ``head.safetensors`` and ``head.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": HEAD_FORMAT_VERSION,
            "kind": HEAD_KIND,
            "task": self.task.name,
            "task_kind": self.task.kind,
            "column": self.task.column,
            "target_transform": "log1p" if self.task.log_target else None,
            "model": "ridge" if self.task.kind == "regression" else "logistic (balanced)",
            "alpha": self.alpha,
            "n_features": self.n_features,
            **self.info,
        }
        try:
            text = json.dumps(meta, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise NightHeadError(f"head metadata is not JSON-serialisable: {exc}") from None
        tensors = {
            "mean": self.mean.astype(np.float64),
            "scale": self.scale.astype(np.float64),
            "coef": self.coef.astype(np.float64),
            "intercept": np.array([self.intercept], dtype=np.float64),
        }
        save_file(tensors, str(folder / HEAD_WEIGHTS_FILE), metadata={"kind": HEAD_KIND})
        (folder / HEAD_CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> NightHead:
        """Read a head written by :meth:`save`; refuses pickles and checks every shape."""
        folder = Path(folder)
        if not folder.is_dir():
            raise NightHeadError(f"{folder}: no such head folder")
        pickled = [p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickled:
            raise NightHeadError(f"{folder}: refusing pickled file(s) {', '.join(pickled)}")
        cfg_path, w_path = folder / HEAD_CONFIG_FILE, folder / HEAD_WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise NightHeadError(
                f"{folder}: not a night head (needs {HEAD_CONFIG_FILE} and {HEAD_WEIGHTS_FILE}; "
                "train one with s2v night-heads train)"
            )
        meta = read_json(cfg_path, error=lambda problem: NightHeadError(
            f"{folder.name}/{cfg_path.name}: {problem}"))  # size and nesting capped (issue 16)
        if not isinstance(meta, dict) or meta.get("kind") != HEAD_KIND:
            raise NightHeadError(f"{cfg_path}: not a night head (kind must be {HEAD_KIND!r})")
        if meta.get("format_version") != HEAD_FORMAT_VERSION:
            raise NightHeadError(
                f"{cfg_path}: head format {meta.get('format_version')}, this version reads "
                f"{HEAD_FORMAT_VERSION}"
            )
        try:
            t = load_file(str(w_path))
        except (SafetensorError, OSError) as exc:
            raise NightHeadError(f"{w_path}: cannot read weights ({exc})") from None
        task = parse_task(str(meta.get("task", "")))
        n = meta.get("n_features")
        want = {"mean": (n,), "scale": (n,), "coef": (n,), "intercept": (1,)}
        got = {k: tuple(v.shape) for k, v in t.items()}
        if not isinstance(n, int) or got != want:
            raise NightHeadError(f"{w_path}: tensors {got} do not fit n_features={n}")
        _check_head_values(t, f"{folder.name}/{HEAD_WEIGHTS_FILE}")
        info = {
            k: v
            for k, v in meta.items()
            if k
            not in (
                "format_version",
                "kind",
                "task",
                "task_kind",
                "column",
                "target_transform",
                "model",
                "alpha",
                "n_features",
            )
        }
        return cls(
            task=task,
            mean=t["mean"],
            scale=t["scale"],
            coef=t["coef"],
            intercept=float(t["intercept"][0]),
            alpha=float(meta.get("alpha", DEFAULT_ALPHA)),
            info=info,
        )


def _check_head_values(tensors: dict[str, np.ndarray], where: str) -> None:
    """Refuse NaN/infinite head values or a non-positive scale (every prediction would be NaN)."""
    for name in ("mean", "scale", "coef", "intercept"):
        v = np.asarray(tensors[name], dtype=float)
        bad = ~np.isfinite(v)
        if bad.any():
            raise NightHeadError(
                f"{where}: tensor {name!r} holds {int(np.isnan(v).sum())} NaN and {int(np.isinf(v).sum())} "
                f"infinite value(s) of {v.size}; the head is corrupt: refusing to load it (train it again)"
            )
    if (np.asarray(tensors["scale"]) <= 0).any():
        raise NightHeadError(f"{where}: tensor 'scale' holds zero or negative values; the head is corrupt: "
                             "refusing to load it (train it again)")


def fit_head(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, task: TaskSpec, *, seed: int = 0
) -> NightHead:
    """Fit a head on all given nights; the strength comes from :func:`choose_alpha`."""
    x = np.asarray(x, dtype=float)
    target = np.log1p(y) if task.log_target else np.asarray(y, dtype=float)
    alpha = choose_alpha(x, target, groups, task.kind, seed)
    mean, scale = standardise(x)
    coef, b = fit_linear((x - mean) / scale, target, task.kind, alpha)
    return NightHead(task, mean, scale, coef, b, alpha)
