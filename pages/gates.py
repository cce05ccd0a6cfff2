"""Gates page: which modalities the fused prediction leans on, globally, per epoch and per stage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

import app_state as C
from s2v_core.stages import STAGE_NAMES
from s2v_core.views.plots import (
    gates_area_figure,
    gates_bar_figure,
    hypnogram_figure,
    mean_epoch_gates,
)

NEAR_UNIFORM_LOGITS = 0.1  # learned gate numbers closer than this give global weights within ~10 % of 1/k


def global_gates_sentence(global_gates: dict[str, float]) -> str:
    """One sentence saying what the global weights are, and why they are equal when they are.

    The global weight of a modality is the softmax of one learned number per modality over the
    modalities switched on, the same for every night; the spread of those numbers is recovered
    from the weights (log-ratio of the largest to the smallest).
    """
    values = [v for v in global_gates.values() if v > 0]
    k = len(global_gates)
    spread = math.log(max(values) / min(values)) if values else 0.0
    if k > 1 and spread < NEAR_UNIFORM_LOGITS:
        return (f"Every global weight is about 1/{k} = {1 / k:.2f} because it is a softmax over one learned "
                f"number per modality and training left those numbers almost equal (they differ by at most "
                f"{spread:.2f}), so which modality the model leans on is decided per epoch from the signals: "
                f"the mean per-epoch gate of this night is shown beside each global weight.")
    return ("The global weight is a softmax over one learned number per modality (the same for every night), "
            "while the per-epoch gate adds a term computed from each epoch's signals; its mean over this night "
            "is shown beside each global weight.")


def render() -> None:
    st.title("Gates")
    result = C.night_and_prediction()
    if result is None:
        return
    loaded, pred = result
    night = loaded.night
    night_mean = mean_epoch_gates(pred.epoch_gates, pred.modalities)
    st.subheader("Global gate weights")
    st.caption(global_gates_sentence(pred.global_gates))
    st.plotly_chart(gates_bar_figure(pred.global_gates, night_mean), width="stretch", key="global_gates_chart")
    st.subheader("Per-epoch gate weights")
    st.plotly_chart(hypnogram_figure({"predicted": pred.stages}, start=night.start_time, height=200), width="stretch")
    st.plotly_chart(gates_area_figure(pred.epoch_gates, pred.modalities, start=night.start_time), width="stretch")
    st.subheader("Average gate per stage (predicted stages)")
    rows = {}
    for code, name in enumerate(STAGE_NAMES):
        sel = pred.stages == code
        if sel.any():
            rows[name] = pred.epoch_gates[sel].mean(axis=0)
    rows["whole night"] = [night_mean[m] for m in pred.modalities]
    rows["global"] = [pred.global_gates[m] for m in pred.modalities]
    table = pd.DataFrame(rows, index=list(pred.modalities)).T
    st.dataframe(table.style.format("{:.2f}").background_gradient(axis=None, cmap="Blues"), width="stretch")
    if not np.isfinite(pred.epoch_gates).all():
        st.warning("Some gate weights are not finite.")


with C.guarded("showing the Gates page"):
    render()
