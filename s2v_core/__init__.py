"""sleep2vec studio core library: read nights, stage and embed them, evaluate, train.

The public Python API is what this package exports; each name is imported on first use, so that
``import s2v_core`` (and the ``s2v`` command line) stays fast. Nothing here imports Streamlit.

Examples
--------
>>> import s2v_core
>>> night = s2v_core.load_night("night.edf", "night-hypnogram.edf")  # doctest: +SKIP
>>> model, config, extra = s2v_core.load_classifier(s2v_core.default_model_dir())  # doctest: +SKIP
>>> pred = s2v_core.predict_night(model, night, ("eeg", "eog"))  # doctest: +SKIP
>>> pred.to_frame(night.start_time).head()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CohortStore",
    "Night",
    "NightMeta",
    "Prediction",
    "S2VError",
    "__version__",
    "default_model_dir",
    "embed_night",
    "evaluate_cohort",
    "load_classifier",
    "load_dreams_night",
    "load_night",
    "load_wfdb_night",
    "night_sources",
    "predict_night",
    "read_hypnogram",
    "staging_metrics",
]

_EXPORTS = {
    "CohortStore": "s2v_core.cohort.store",
    "Night": "s2v_core.night",
    "NightMeta": "s2v_core.night",
    "Prediction": "s2v_core.inference.predict",
    "S2VError": "s2v_core.errors",
    "default_model_dir": "s2v_core.shipped",
    "embed_night": "s2v_core.inference.embed",
    "evaluate_cohort": "s2v_core.evaluation.cohort",
    "load_classifier": "s2v_core.inference.predict",
    "load_dreams_night": "s2v_core.recording.dreams",
    "load_night": "s2v_core.recording.loading",
    "load_wfdb_night": "s2v_core.recording.loading",
    "night_sources": "s2v_core.cohort.sources",
    "predict_night": "s2v_core.inference.predict",
    "read_hypnogram": "s2v_core.io.hypnogram.reader",
    "staging_metrics": "s2v_core.evaluation.staging",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return importlib.import_module("s2v_core.shipped").package_version()
    if name not in _EXPORTS:
        raise AttributeError(f"module 's2v_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
