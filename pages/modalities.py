"""Modalities page: how staging agreement changes with the sensor set, for the loaded night, and a
sensor-dropout simulation (one modality missing for a time span)."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

import app_state as C
from s2v_core.errors import S2VError
from s2v_core.evaluation import all_subsets, modality_importance, staging_metrics, subset_metrics
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.night import Night
from s2v_core.views.plots_signals import dropout_hypnogram_figure
from s2v_core.views.subsets import SubsetStages, progress_text, quick_subsets
from s2v_core.views.viewer import dropout_agreement


@st.cache_resource(show_spinner=False, max_entries=4)
def _subset_stages(night_key: str, model_key: str, _night: Night, _model) -> SubsetStages:
    """Per (night, model): the night encoded once and the stages of every subset staged so far.

    A resource (shared, not copied): it fills up as the page asks for more subsets, so all subsets
    after the quick set, or another class count, only stage what is new.
    """
    return SubsetStages(_model, _night, name=model_key)


def _boundary_label(night: Night, epoch: int) -> str:
    """Clock time at the start of ``epoch`` (the end of the recording for ``n_epochs``)."""
    seconds = epoch * EPOCH_SECONDS
    if night.start_time is None:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d} (epoch {epoch})"
    return f"{(night.start_time + timedelta(seconds=seconds)):%H:%M} (epoch {epoch})"


def _dropout_section(loaded: C.LoadedNight, subset: tuple[str, ...]) -> None:
    night = loaded.night
    n = night.n_epochs
    st.subheader("Sensor dropout")
    st.caption("What if a sensor failed for part of the night? The chosen modality is removed over the span "
               "(signal missing, epochs marked unusable, as a detached electrode looks after loading) and the "
               "night is staged again with the same sensors switched on in the sidebar.")
    if not subset:
        st.warning("Switch at least one modality on in the sidebar to simulate a dropout.")
        return
    if n < 1:
        st.info("This night has no epochs.")
        return
    try:
        base = C.prediction(loaded, subset)
    except S2VError as exc:
        C.show_error(exc)
        return
    c = st.columns([1, 3])
    leading = max(subset, key=lambda m: base.global_gates.get(m, 0.0))
    modality = c[0].selectbox("Sensor that drops out", subset, index=subset.index(leading), key="dropout_modality",
                              help="Preselected: the sensor with the largest learned gate weight")
    default = (n // 3, min(n, n // 3 + max(1, n // 6)))
    span = c[1].select_slider("Span (from the start of the first dropped epoch to the end of the last)",
                              options=list(range(n + 1)), value=default, key="dropout_span",
                              format_func=lambda e: _boundary_label(night, e))
    start, end = int(min(span)), int(max(span))
    if end <= start:
        st.info("Choose a span of at least one epoch.")
        return
    try:
        dropped = C.dropout_prediction(loaded, subset, modality, (start, end))
    except S2VError as exc:
        C.show_error(exc)
        return
    reference = night.stages if (night.stages >= 0).any() else None
    n_classes = int(st.session_state.get("subset_classes", 5))
    table = dropout_agreement(base.stages, dropped.stages, start, end, reference, n_classes=n_classes)
    inside = table.loc["dropout span"]
    m = st.columns(3)
    m[0].metric("Dropped", f"{(end - start) * EPOCH_SECONDS / 60:g} min", help=f"{end - start} epochs of {modality}")
    m[1].metric("Epochs restaged in the span", f"{int(inside['epochs changed'])} of {int(inside['epochs'])}")
    if reference is not None and np.isfinite(inside["kappa vs expert (dropout)"]):
        change = f"{inside['kappa change vs expert']:+.3f}"
        m[2].metric("Kappa vs expert in the span", f"{inside['kappa vs expert (dropout)']:.3f}",
                    delta=change, delta_color="off" if change in ("+0.000", "-0.000") else "normal",
                    help="With the dropout; the change is relative to staging with all sensors over the same epochs")
    else:
        m[2].metric("Kappa vs all sensors in the span", f"{inside['kappa dropout vs all sensors']:.3f}")
    st.plotly_chart(dropout_hypnogram_figure(base.stages, dropped.stages, start, end, modality=modality,
                                             start=night.start_time), width="stretch", key="dropout_hypnogram")
    uncovered = int((np.asarray(dropped.coverage)[start:end] == 0).sum()) if dropped.coverage is not None else 0
    if uncovered:
        st.warning(f"{uncovered} epochs of the span have no remaining sensor: the model stages them from context only.")
    if modality not in dropped.modalities:
        st.caption(f"{modality} is dropped for the whole night, so the second prediction is made without it.")
    shown = table.T  # measures as rows: fits the page however long the column names are
    counts = pd.IndexSlice[["epochs", "epochs changed"], :]
    st.dataframe(shown.style.format(precision=3, na_rep="—").format("{:.0f}", subset=counts), width="stretch")
    st.caption(f"{n_classes}-class kappa (Cohen). 'kappa dropout vs all sensors' compares the two predictions; "
               + ("the expert columns compare each prediction with the expert hypnogram." if reference is not None
                  else "no expert hypnogram is loaded, so there is no comparison with an expert."))


def _subset_ranking(loaded: C.LoadedNight) -> None:
    night = loaded.night
    available = night.modalities
    n_all = len(all_subsets(available))
    scope = st.radio("Subsets", ["quick", "all"], horizontal=True, key="subset_scope",
                     format_func=lambda s: {"quick": "single, named and leave-one-out",
                                            "all": f"all {n_all} non-empty subsets"}[s])
    n_classes = st.radio("Classes", [5, 4, 3], horizontal=True, key="subset_classes")
    wanted = quick_subsets(available) if scope == "quick" else all_subsets(available)
    try:
        model, _, mid = C.get_model()
        store = _subset_stages(loaded.key, mid, night, model)
        new = len(set(wanted) - store.known())
        if new:
            what = f"Staging {new} subset{'s' if new > 1 else ''} (each modality encoded once)"
            bar = st.progress(0.0, text=f"{what}...")
            t0 = time.perf_counter()

            def progress(done: float, total: float) -> None:
                bar.progress(min(1.0, done / total), text=progress_text(what, done, total, time.perf_counter() - t0))

            predictions = store.stages(wanted, progress)
            bar.empty()
        else:
            predictions = store.stages(wanted)
    except S2VError as exc:
        C.show_error(exc)
        return
    if scope == "all":
        frame = subset_metrics(lambda s: predictions[s], available, night.stages, n_classes=n_classes,
                               cache=dict(predictions))
    else:
        rows = []
        for subset, pred in predictions.items():
            m = staging_metrics(night.stages, pred, n_classes=n_classes)
            rows.append({"subset": "+".join(subset), "n_modalities": len(subset), "accuracy": m.accuracy,
                         "kappa": m.kappa, "macro_f1": m.macro_f1})
        frame = pd.DataFrame(rows)
    frame = frame.sort_values("kappa", ascending=False)
    fig = px.bar(frame, x="kappa", y="subset", orientation="h", color="n_modalities",
                 color_continuous_scale="Blues", height=max(300, 22 * len(frame)), hover_data=["accuracy", "macro_f1"])
    fig.update_yaxes(autorange="reversed")  # best subset on top
    st.plotly_chart(fig, width="stretch")
    if scope == "all" or len(frame) > len(available):
        st.subheader("Modality importance")
        st.caption("Mean kappa of the evaluated subsets with the modality minus without it "
                   "(with the quick set this leans on single modalities; use all subsets for a fair comparison).")
        st.dataframe(modality_importance(frame), width="stretch")


def render() -> None:
    st.title("Modalities")
    loaded = C.night_or_explain()
    if loaded is None:
        return
    night = loaded.night
    subset = C.active_modalities(loaded)  # the shared sidebar toggles: the sensors of the dropout simulation
    if (night.stages >= 0).any():
        _subset_ranking(loaded)
    else:
        st.info("This night has no expert hypnogram, so agreement per subset cannot be computed.")
    _dropout_section(loaded, subset)


with C.guarded("showing the Modalities page"):
    render()
