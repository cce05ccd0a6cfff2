"""Hypnogram page: predicted vs expert hypnogram, hypnodensity, agreement and sleep statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages import common as C
from s2v_core.evaluation import STAT_DEFINITIONS, compare_sleep_statistics, staging_metrics
from s2v_core.plots import confusion_figure, hypnodensity_figure, hypnogram_figure
from s2v_core.stages import STAGE_NAMES


def _agreement(reference: np.ndarray, predicted: np.ndarray) -> None:
    n_classes = st.radio("Classes", [5, 4, 3], horizontal=True, key="n_classes",
                         format_func=lambda k: {5: "5 (W N1 N2 N3 REM)", 4: "4 (N1+N2)", 3: "3 (W NREM REM)"}[k])
    try:
        m = staging_metrics(reference, predicted, n_classes=n_classes)
    except ValueError as exc:
        st.info(f"No agreement statistics: {exc}")
        return
    c = st.columns(4)
    c[0].metric("Accuracy", f"{m.accuracy:.1%}")
    c[1].metric("Cohen's kappa", f"{m.kappa:.3f}")
    c[2].metric("Macro-F1", f"{m.macro_f1:.3f}")
    c[3].metric("Epochs compared", f"{m.n_epochs}", help=f"{m.n_excluded} unscored epochs excluded")
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(confusion_figure(m.confusion, m.class_names), width="stretch")
    with right:
        f1 = pd.DataFrame({"stage": list(m.per_stage_f1), "F1": list(m.per_stage_f1.values())})
        st.dataframe(f1, hide_index=True, width="stretch")


def render() -> None:
    st.title("Hypnogram")
    result = C.night_and_prediction()
    if result is None:
        return
    loaded, pred = result
    night = loaded.night
    subset = pred.modalities
    reference = night.stages
    has_expert = bool((reference >= 0).any())
    tracks = {"expert": reference, "predicted": pred.stages} if has_expert else {"predicted": pred.stages}
    st.caption(f"Model {pred.model_id} on {', '.join(subset)}"
               + ("" if has_expert else " — no expert hypnogram loaded, so no agreement statistics"))
    epoch = st.session_state.get(C.K_EPOCH)
    event = st.plotly_chart(hypnogram_figure(tracks, start=night.start_time, highlight=epoch), width="stretch",
                            on_select="rerun", selection_mode="points", key="hypnogram_chart")
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", [])
    if points:
        st.session_state[C.K_EPOCH] = int(points[0].get("point_index", points[0].get("pointIndex", 0)))
    st.subheader("Hypnodensity")
    st.plotly_chart(hypnodensity_figure(pred.probabilities, start=night.start_time), width="stretch")
    if has_expert:
        st.subheader("Agreement with the expert")
        _agreement(reference, pred.stages)
    st.subheader("Sleep statistics")
    if has_expert:
        table = compare_sleep_statistics(reference, pred.stages)
    else:
        from s2v_core.evaluation import sleep_statistics

        table = pd.DataFrame({"predicted": sleep_statistics(pred.stages)})
    table.insert(0, "definition", [STAT_DEFINITIONS.get(k, "") for k in table.index])
    st.dataframe(table, width="stretch", column_config={"definition": st.column_config.TextColumn(width="large")})
    st.caption("REM latency is measured from sleep onset (AASM), not from lights off. "
               f"Stages: {', '.join(STAGE_NAMES)}.")


render()
