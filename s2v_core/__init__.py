"""sleep2vec studio core library: read nights, stage and embed them, evaluate, train.

The public Python API is what this package exports; each name is imported on first use, so that
``import s2v_core`` (and the ``s2v`` command line) stays fast and imports no PyTorch until a
model is needed. Nothing here imports Streamlit. The README's "Python API" section is the guide.

* ``load_night(path_or_raw, hypnogram=None, ...)`` -> :class:`Night`: any recording the ``s2v``
  commands read (EDF/BDF, WFDB records, DREAMS text, FIF, BrainVision, EEGLAB... through
  :func:`s2v_core.recording.registry.load_recording`) or an ``mne.io.BaseRaw``, mapped to the
  nine modalities; ``Night.to_frame()``, ``Night.to_yasa()``.
* ``load_classifier(path=None)`` -> :class:`Classifier`, which unpacks as ``model, config, extra``.
* ``stage(night)`` -> :class:`StagingResult`; ``embed(night)`` -> :class:`EmbeddingResult`;
  ``evaluate(result, reference=None)`` -> :class:`AgreementResult`; each with ``to_frame()`` and
  ``to_yasa()`` (:mod:`s2v_core.evaluation.results`).
* ``StagingResult.compare(("yasa", "sleepecg"))`` -> :class:`PeerComparison` (the peers on the
  same epochs, every pair's kappa); ``predict_subsets(model, night, subsets)`` (each modality
  encoded once); ``site_probe(embedding_table, by="site")``; ``bids_events(prediction, night)``.
* Lower level: ``predict_night(model, night, modalities)`` -> :class:`Prediction`,
  ``embed_night``, ``staging_metrics``, ``read_hypnogram``; cohorts: ``night_sources``,
  ``CohortStore``, ``evaluate_cohort``.

Examples
--------
>>> import s2v_core
>>> night = s2v_core.load_night("night.edf", "night-hypnogram.edf")  # doctest: +SKIP
>>> model, config, extra = s2v_core.load_classifier()  # doctest: +SKIP
>>> staging = s2v_core.stage(night)  # doctest: +SKIP
>>> staging.to_frame().head()  # doctest: +SKIP
>>> staging.evaluate().kappa  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from s2v_core.errors import lazy_exports

__all__ = [
    "AgreementResult",
    "Classifier",
    "CohortStore",
    "EmbeddingResult",
    "Night",
    "NightMeta",
    "PeerComparison",
    "Prediction",
    "S2VError",
    "StagingResult",
    "__version__",
    "bids_events",
    "compare_with_peers",
    "default_model_dir",
    "embed",
    "embed_night",
    "evaluate",
    "evaluate_cohort",
    "load_classifier",
    "load_dreams_night",
    "load_night",
    "load_wfdb_night",
    "night_sources",
    "predict_night",
    "predict_subsets",
    "read_hypnogram",
    "site_probe",
    "stage",
    "staging_metrics",
]

_RESULTS = "s2v_core.evaluation.results"
_EXPORTS: dict[str, str | tuple[str, str]] = {  # name -> module, or (module, name there)
    "AgreementResult": _RESULTS,
    "Classifier": _RESULTS,
    "CohortStore": "s2v_core.cohort.store",
    "EmbeddingResult": _RESULTS,
    "Night": "s2v_core.night",
    "NightMeta": "s2v_core.night",
    "PeerComparison": "s2v_core.evaluation.peers",
    "bids_events": "s2v_core.views.exports",  # (TSV text, sidecar dict) of a Prediction
    "compare_with_peers": "s2v_core.evaluation.peers",
    "predict_subsets": "s2v_core.inference.subsets",  # many modality subsets, each modality encoded once
    "site_probe": ("s2v_core.evaluation.shortcut", "table_site_score"),  # on an s2v embed table
    "Prediction": "s2v_core.inference.predict",
    "S2VError": "s2v_core.errors",
    "StagingResult": _RESULTS,
    "default_model_dir": "s2v_core.shipped",
    "embed": _RESULTS,
    "embed_night": "s2v_core.inference.embed",
    "evaluate": _RESULTS,
    "evaluate_cohort": "s2v_core.evaluation.cohort",
    "load_classifier": _RESULTS,  # returns a Classifier: the 3-tuple of inference.predict's, named
    "load_dreams_night": "s2v_core.recording.dreams",
    "load_night": ("s2v_core.recording.registry", "load_recording"),  # every kind, as the CLI reads
    "load_wfdb_night": "s2v_core.recording.loading",
    "night_sources": "s2v_core.cohort.sources",
    "predict_night": "s2v_core.inference.predict",
    "read_hypnogram": "s2v_core.io.hypnogram.reader",
    "stage": _RESULTS,
    "staging_metrics": "s2v_core.evaluation.staging",
}

# resolved again on every access (not kept in the namespace), as this package always has
_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), cache=False)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return importlib.import_module("s2v_core.shipped").package_version()
    return _lazy_getattr(name)
