"""Exports other tools open: hypnogram CSV (EDFbrowser), EDF+ annotations, BIDS events, JSON summaries.

Every export round-trips through :func:`s2v_core.io.hypnogram.read_hypnogram` (tested), and none
contains identifying header fields.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyedflib

from s2v_core.evaluation.staging import agreement_by_classes
from s2v_core.inference.embed import embed_one, night_info
from s2v_core.night import Night
from s2v_core.sanitize.cells import csv_text
from s2v_core.shipped import package_version
from s2v_core.stages import STAGE_NAMES, UNSCORED

__all__ = [
    "BIDS_TRIAL_TYPES",
    "EDF_LABELS",
    "bids_events",
    "bids_events_name",
    "embeddings_parquet",
    "epochs_csv",
    "figure_html",
    "hypnogram_csv",
    "hypnogram_edf_annotations",
    "prediction_json",
    "prediction_summary",
    "prediction_table",
    "stage_runs",
]

EDF_LABELS = {0: "Sleep stage W", 1: "Sleep stage N1", 2: "Sleep stage N2", 3: "Sleep stage N3",
              4: "Sleep stage R", UNSCORED: "Sleep stage ?"}


BIDS_TRIAL_TYPES = {0: "Sleep stage W", 1: "Sleep stage N1", 2: "Sleep stage N2", 3: "Sleep stage N3",
                    4: "Sleep stage R"}  # fmt: skip
"""``trial_type`` of the BIDS events file per stage code (the Sleep-EDF / MNE annotation names)."""

_STAGE_MEANING = {"W": "wake", "N1": "NREM stage 1", "N2": "NREM stage 2", "N3": "NREM stage 3 (slow-wave sleep)",
                  "REM": "REM sleep"}  # fmt: skip
_BIDS_ENTITIES = re.compile(r"^(?P<entities>sub-[A-Za-z0-9]+(?:_[A-Za-z]+-[A-Za-z0-9]+)*)_[A-Za-z0-9]+$")


def bids_events_name(source: str) -> str:
    """The events file name for a recording: its BIDS entities + ``_events.tsv``.

    ``sub-01_ses-1_task-sleep_eeg.edf`` -> ``sub-01_ses-1_task-sleep_events.tsv`` (the recording's
    own datatype suffix replaced, as BIDS names a data file's events); any other name keeps its
    stem: ``night1.edf`` -> ``night1_events.tsv``. The sidecar is the same name with ``.json``.
    """
    name = Path(str(source)).name
    stem = name[: -len(".fif.gz")] if name.lower().endswith(".fif.gz") else Path(name).stem
    m = _BIDS_ENTITIES.match(stem)
    return f"{m['entities'] if m else stem or 'night'}_events.tsv"


def bids_events(pred: Any, night: Night, epoch_seconds: float = 30.0) -> tuple[str, dict[str, Any]]:
    """Predictions as a BIDS events file (TSV text) and its JSON sidecar (a dict).

    One row per 30-s epoch. Columns: ``onset`` and ``duration`` (seconds from the recording's
    first sample), ``trial_type`` (:data:`BIDS_TRIAL_TYPES`), ``stage`` (W N1 N2 N3 REM),
    ``confidence`` and ``p_W`` .. ``p_REM`` (probabilities), ``n_valid_modalities`` (0: the epoch
    had no usable signal, its stage is a guess) and, when the night has a hypnogram,
    ``expert_stage`` (``n/a`` where unscored). Missing values are ``n/a``, as BIDS writes them.
    The sidecar describes every column (``LongName``, ``Description``, ``Levels``, ``Units``)
    and names the model and modalities. :func:`s2v_core.io.hypnogram.read_hypnogram` reads the
    TSV back (its ``stage`` column).
    """
    n = pred.n_epochs
    frame = pd.DataFrame({
        "onset": np.arange(n) * float(epoch_seconds),
        "duration": np.full(n, float(epoch_seconds)),
        "trial_type": [BIDS_TRIAL_TYPES[int(s)] for s in pred.stages],
        "stage": [STAGE_NAMES[int(s)] for s in pred.stages],
        "confidence": np.round(pred.confidence, 4),
    })
    for k, name in enumerate(STAGE_NAMES):
        frame[f"p_{name}"] = np.round(pred.probabilities[:, k], 4)
    if pred.coverage is not None:
        frame["n_valid_modalities"] = np.asarray(pred.coverage, dtype=int)
    scored = bool((night.stages >= 0).any())
    if scored:
        frame["expert_stage"] = [STAGE_NAMES[int(s)] if s >= 0 else "n/a" for s in night.stages[:n]]
    text = frame.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    made_by = (f"predicted by sleep2vec studio {package_version()}, model {pred.model_id or 'unnamed'}, "
               f"from {', '.join(pred.modalities)}")  # fmt: skip
    if pred.left_out:
        made_by += f" ({', '.join(pred.left_out)} left out: unlike the model's training data)"
    levels = {name: _STAGE_MEANING[name] for name in STAGE_NAMES}
    sidecar: dict[str, Any] = {
        "onset": {"LongName": "Epoch onset", "Description": "Start of the 30-s epoch, in seconds from the "
                  "first sample of the recording", "Units": "s"},  # fmt: skip
        "duration": {"LongName": "Epoch duration", "Description": "Length of the scored epoch", "Units": "s"},
        "trial_type": {"LongName": "Predicted sleep stage", "Description": f"AASM sleep stage {made_by}",
                       "Levels": {BIDS_TRIAL_TYPES[k]: _STAGE_MEANING[STAGE_NAMES[k]] for k in BIDS_TRIAL_TYPES}},
        "stage": {"LongName": "Predicted sleep stage, short label", "Description": "The stage of trial_type "
                  "as W, N1, N2, N3 or REM", "Levels": levels},  # fmt: skip
        "confidence": {"LongName": "Confidence", "Description": "Probability of the predicted stage (0-1)"},
    }
    for name in STAGE_NAMES:
        sidecar[f"p_{name}"] = {"LongName": f"Probability of {name}",
                                "Description": f"Predicted probability of {_STAGE_MEANING[name]} (0-1); the five sum to 1"}
    if "n_valid_modalities" in frame:
        sidecar["n_valid_modalities"] = {"LongName": "Modalities with signal", "Description": "Number of the "
                                         "modalities used that had a usable signal in the epoch; 0: the stage "
                                         "was predicted from no signal"}  # fmt: skip
    if scored:
        source = night.hypnogram_source or "the night's hypnogram"
        sidecar["expert_stage"] = {"LongName": "Expert sleep stage", "Description": f"Stage scored in {source} "
                                   "(n/a: unscored epoch)", "Levels": levels}  # fmt: skip
    return text, sidecar


def stage_runs(stages: np.ndarray, epoch_seconds: float = 30.0) -> list[tuple[float, float, int]]:
    """Consecutive identical stages merged into (onset_s, duration_s, stage) runs."""
    s = np.asarray(stages)
    if s.size == 0:
        return []
    change = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [s.size]])
    return [(float(a * epoch_seconds), float((b - a) * epoch_seconds), int(s[a])) for a, b in zip(starts, ends, strict=True)]


def hypnogram_csv(stages: np.ndarray, epoch_seconds: float = 30.0) -> str:
    """CSV with header ``onset,duration,label`` (seconds; labels W N1 N2 N3 REM, ? for unscored)."""
    lines = ["onset,duration,label"]
    for onset, dur, st in stage_runs(stages, epoch_seconds):
        lines.append(f"{onset:g},{dur:g},{STAGE_NAMES[st] if st >= 0 else '?'}")
    return "\n".join(lines) + "\n"


def hypnogram_edf_annotations(stages: np.ndarray, start: datetime | None = None,
                              epoch_seconds: float = 30.0) -> bytes:
    """An annotation-only EDF+ file (like Sleep-EDF hypnograms) holding the stage runs."""
    fd, name = tempfile.mkstemp(suffix=".edf")
    os.close(fd)
    try:
        writer = pyedflib.EdfWriter(name, 0, file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            writer.setStartdatetime(start or datetime(2000, 1, 1))
            for onset, dur, st in stage_runs(stages, epoch_seconds):
                writer.writeAnnotation(onset, dur, EDF_LABELS[st])
        finally:
            writer.close()
        return Path(name).read_bytes()
    finally:
        Path(name).unlink(missing_ok=True)


def prediction_json(pred, night) -> dict:
    """A JSON-ready summary of one prediction (no identifying fields)."""
    return {
        "night_id": night.meta.night_id,
        "start_time": night.start_time.isoformat() if night.start_time else None,
        "epoch_seconds": 30,
        "model": pred.model_id,
        "modalities": list(pred.modalities),
        "left_out": list(pred.left_out),
        "global_gates": pred.global_gates,
        "stages": [int(s) for s in pred.stages],
        "labels": [STAGE_NAMES[s] for s in pred.stages],
        "stage_codes": {"W": 0, "N1": 1, "N2": 2, "N3": 3, "REM": 4, "unscored": -1},
        "confidence": [round(float(c), 4) for c in pred.confidence],
        "warnings": list(pred.warnings),
    }


def embeddings_parquet(model, night, subset: tuple[str, ...] | None = None) -> bytes:
    """Per-epoch fused embeddings of one night with its metadata, as Parquet bytes.

    The same columns as ``s2v embed`` writes (night, epoch, onset_s, stage, predicted, subject,
    site, age, sex, split, modalities, emb_0 .. emb_{H-1}).
    """
    m = night.meta
    epochs, _ = embed_one(model, night, night_info(m.night_id, m.subject, m.site, m.age, m.sex, None), subset)
    buf = BytesIO()
    epochs.to_parquet(buf, index=False)
    return buf.getvalue()


def figure_html(fig) -> str:
    """A plotly figure as one self-contained HTML file (plotly.js inlined: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def epochs_csv(pred: Any, night: Night) -> str:
    """The per-epoch table (:meth:`Prediction.to_frame`) as CSV text, safe to open in a spreadsheet.

    Text cells that a spreadsheet would run as a formula get a leading ``'`` (:mod:`s2v_core.sanitize.cells`).
    """
    return csv_text(pred.to_frame(night.start_time))


def prediction_table(pred: Any, night: Night) -> pd.DataFrame:
    """One row per epoch: :meth:`Prediction.to_frame`, plus the expert stage when there is one."""
    frame = pred.to_frame(night.start_time)
    if (night.stages >= 0).any():
        ref = night.stages.astype(int)
        frame.insert(frame.columns.get_loc("label") + 1, "reference", ref)
        names = np.asarray(("",) + STAGE_NAMES, dtype=object)  # -1 (unscored) -> ""
        frame.insert(frame.columns.get_loc("reference") + 1, "reference_label", names[ref + 1])
    return frame


def prediction_summary(pred: Any, night: Night) -> dict[str, Any]:
    """What ``s2v predict`` reports: model, modalities, gates, counts, agreement, warnings."""
    summary: dict[str, Any] = {
        "file": night.source_file,
        "model": pred.model_id,
        "modalities": list(pred.modalities),
        "left_out": list(pred.left_out),
        "n_epochs": night.n_epochs,
        "global_gates": {m: round(g, 4) for m, g in pred.global_gates.items()},
        "predicted_counts": {s: int((pred.stages == k).sum()) for k, s in enumerate(STAGE_NAMES)},
        "epochs_without_signal": int((pred.coverage == 0).sum()),
        "mean_confidence": round(float(pred.confidence.mean()), 4),
        "model_warnings": list(pred.warnings),
    }
    if (night.stages >= 0).any():
        summary["agreement"] = agreement_by_classes(night.stages, pred)
    summary["warnings"] = list(night.warnings)  # what `s2v info` would warn about this recording
    return summary
