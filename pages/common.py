"""State and cached calls shared by every page (not a page itself).

All session-state keys live here. Heavy objects are cached: the model with ``st.cache_resource``
(shared, never mutated), nights and predictions with ``st.cache_data`` keyed by (file hash,
modality subset, model id), so a widget change never re-reads a file or re-runs the model twice.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from s2v_core.errors import S2VError
from s2v_core.io.edf import check_header
from s2v_core.loading import load_night
from s2v_core.modalities import MODALITIES
from s2v_core.night import Night
from s2v_core.sample import full_sample_night, shipped_night

# Session-state keys (the only ones the app uses).
K_SOURCE = "night_source"
K_MAPPING = "mapping_overrides"
K_UPLOAD = "upload"
K_HYP_UPLOAD = "hypnogram_upload"
K_ACTIVE = "active_modalities"
K_EPOCH = "selected_epoch"
K_MODEL_DIR = "model_dir"

SOURCES = ("Sample night (8 h PSG)", "Shipped 1-h excerpt", "Upload EDF/BDF")
MAX_UPLOAD_MB = 2048


@dataclass(frozen=True)
class LoadedNight:
    """A night plus what identifies it for caching."""

    night: Night
    key: str  # file hash + mapping: the cache key of everything derived from this night
    labels: tuple[str, ...]  # channel labels in the file (for the mapping editor)


def _file_key(path: Path) -> str:
    st_ = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st_.st_size}:{st_.st_mtime_ns}".encode()).hexdigest()[:16]


@st.cache_data(show_spinner="Reading the recording...", max_entries=6)
def _night_from_path(path: str, hyp: str | None, mapping: tuple, _key: str) -> Night:
    night = load_night(path, hyp, mapping=dict(mapping), allow_mismatch=True)
    night.signals = {m: np.asarray(x) for m, x in night.signals.items()}
    return night


@st.cache_data(show_spinner="Reading the uploaded recording...", max_entries=4)
def _night_from_upload(name: str, digest: str, data: bytes, hyp_name: str | None, hyp: bytes | None,
                       mapping: tuple) -> Night:
    # Uploads are written only to a private temporary folder, removed as soon as they are read.
    with tempfile.TemporaryDirectory(prefix="s2v-upload-") as tmp:
        psg = Path(tmp) / Path(name).name
        psg.write_bytes(data)
        hyp_path = None
        if hyp is not None and hyp_name:
            hyp_path = Path(tmp) / Path(hyp_name).name
            hyp_path.write_bytes(hyp)
        night = load_night(psg, hyp_path, mapping=dict(mapping), allow_mismatch=True)
        night.signals = {m: np.asarray(x) for m, x in night.signals.items()}
        return night


def _labels_of(path: Path) -> tuple[str, ...]:
    try:
        return tuple(check_header(path).labels)
    except S2VError:
        return ()


def selected_night() -> LoadedNight | None:
    """The night chosen on the Night page (the 8-h sample night by default)."""
    source = st.session_state.get(K_SOURCE, SOURCES[0])
    mapping = tuple(sorted(st.session_state.get(K_MAPPING, {}).items()))
    if source == SOURCES[2]:
        up = st.session_state.get(K_UPLOAD)
        if up is None:
            return None
        hyp_up = st.session_state.get(K_HYP_UPLOAD)
        data = up.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        night = _night_from_upload(up.name, digest, data, hyp_up.name if hyp_up else None,
                                   hyp_up.getvalue() if hyp_up else None, mapping)
        with tempfile.TemporaryDirectory(prefix="s2v-hdr-") as tmp:
            head = Path(tmp) / "header.edf"
            head.write_bytes(data[: 1 << 20])
            labels = _labels_of(head)
        return LoadedNight(night, f"{digest[:16]}:{mapping}", labels)
    if source == SOURCES[0]:
        with st.spinner("Generating the synthetic sample night (first launch only, a few seconds)..."):
            psg, hyp = full_sample_night()
    else:
        psg, hyp = shipped_night()
    key = _file_key(psg)
    night = _night_from_path(str(psg), str(hyp) if hyp else None, mapping, key)
    return LoadedNight(night, f"{key}:{mapping}", _labels_of(psg))


def active_modalities(night: Night) -> tuple[str, ...]:
    """Sidebar toggles shared by all pages: which of the night's modalities the model sees."""
    available = night.modalities
    st.sidebar.markdown("**Modalities**")
    current = st.session_state.get(K_ACTIVE)
    chosen = []
    for m in MODALITIES:
        if m not in available:
            continue
        on = st.sidebar.toggle(m, value=current is None or m in current, key=f"toggle_{m}")
        if on:
            chosen.append(m)
    st.session_state[K_ACTIVE] = tuple(chosen)
    if not chosen:
        st.sidebar.warning("Switch at least one modality on.")
    return tuple(chosen)


def show_error(exc: Exception) -> None:
    """Errors from the library are written for users; show them as they are."""
    st.error(str(exc))


# --- model and predictions -----------------------------------------------------------------
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "sleep2vec-small"


def model_dir() -> Path:
    """The classifier folder in use: chosen on the Model page, else the shipped model."""
    return Path(st.session_state.get(K_MODEL_DIR) or SHIPPED_MODEL / "classifier")


@st.cache_resource(show_spinner="Loading the model...", max_entries=3)
def _model(path: str, _stamp: str):
    from s2v_core.inference import load_classifier, model_id

    model, config, extra = load_classifier(path)
    return model, extra, model_id(path)


def get_model():
    """``(model, extra, model_id)``; the model object is shared by all sessions and never mutated."""
    path = model_dir()
    if not (path / "model.safetensors").exists():
        raise S2VError(
            f"no model at {path}: train the shipped model with its recipe (see README) "
            "or load a checkpoint folder on the Model page"
        )
    stamp = str((path / "model.safetensors").stat().st_mtime_ns)
    return _model(str(path), stamp)


@st.cache_data(show_spinner="Staging the night...", max_entries=64)
def _predict(night_key: str, subset: tuple[str, ...], model_key: str, _night: Night):
    from s2v_core.inference import predict_night

    model, _, mid = get_model()
    return predict_night(model, _night, subset, name=mid)


def prediction(loaded: LoadedNight, subset: tuple[str, ...]):
    """Cached per (night, modality subset, model)."""
    _, _, mid = get_model()
    return _predict(loaded.key, tuple(subset), mid, loaded.night)


def night_and_prediction():
    """The selected night and its prediction for the active subset, or None after telling the user why."""
    try:
        loaded = selected_night()
        if loaded is None:
            st.info("Choose or upload a night on the Night page first.")
            return None
        subset = active_modalities(loaded.night)
        if not subset:
            st.warning("No modality is switched on: switch at least one on in the sidebar.")
            return None
        return loaded, prediction(loaded, subset)
    except S2VError as exc:
        show_error(exc)
        return None
