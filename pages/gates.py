"""Gates page: which modalities the fused prediction leans on, globally, per epoch and per stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import app_state as C
from s2v_core.stages import STAGE_NAMES
from s2v_core.views.plots import MODALITY_COLORS, gates_area_figure, hypnogram_figure


def render() -> None:
    st.title("Gates")
    result = C.night_and_prediction()
    if result is None:
        return
    loaded, pred = result
    night = loaded.night
    st.caption("Global gates are the learned per-modality weights renormalised over the modalities switched on; "
               "per-epoch gates add the input-dependent term, so they show which modality drove each epoch.")
    g = pd.Series(pred.global_gates)
    fig = go.Figure(go.Bar(x=g.index, y=g.values, marker_color=[MODALITY_COLORS[m] for m in g.index],
                           text=[f"{v:.2f}" for v in g.values], textposition="outside"))
    fig.update_layout(height=260, yaxis={"title": "global gate weight", "range": [0, max(0.05, g.max() * 1.25)]},
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.subheader("Global gate weights")
    st.plotly_chart(fig, width="stretch")
    st.subheader("Per-epoch gate weights")
    st.plotly_chart(hypnogram_figure({"predicted": pred.stages}, start=night.start_time, height=200), width="stretch")
    st.plotly_chart(gates_area_figure(pred.epoch_gates, pred.modalities, start=night.start_time), width="stretch")
    st.subheader("Average gate per stage (predicted stages)")
    rows = {}
    for code, name in enumerate(STAGE_NAMES):
        sel = pred.stages == code
        if sel.any():
            rows[name] = pred.epoch_gates[sel].mean(axis=0)
    table = pd.DataFrame(rows, index=list(pred.modalities)).T
    st.dataframe(table.style.format("{:.2f}").background_gradient(axis=None, cmap="Blues"), width="stretch")
    if not np.isfinite(pred.epoch_gates).all():
        st.warning("Some gate weights are not finite.")


with C.guarded("showing the Gates page"):
    render()
