"""Modalities page: how staging agreement changes with the sensor set, for the loaded night."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from pages import common as C
from s2v_core.errors import S2VError
from s2v_core.evaluation import all_subsets, modality_importance, staging_metrics, subset_metrics
from s2v_core.modalities import NAMED_SUBSETS


def _quick_subsets(available: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Single modalities, the paper's named subsets, every leave-one-out set and the full set."""
    subsets = [(m,) for m in available]
    subsets += [tuple(m for m in s if m in available) for s in NAMED_SUBSETS.values()]
    subsets += [tuple(x for x in available if x != m) for m in available]
    return list(dict.fromkeys(s for s in subsets if s))


def render() -> None:
    st.title("Modalities")
    try:
        loaded = C.selected_night()
    except S2VError as exc:
        C.show_error(exc)
        return
    if loaded is None:
        st.info("Choose or upload a night on the Night page first.")
        return
    night = loaded.night
    C.active_modalities(night)  # keep the shared sidebar toggles visible here too
    if not (night.stages >= 0).any():
        st.info("This night has no expert hypnogram, so agreement per subset cannot be computed.")
        return
    available = night.modalities
    n_all = len(all_subsets(available))
    scope = st.radio("Subsets", ["quick", "all"], horizontal=True, key="subset_scope",
                     format_func=lambda s: {"quick": "single, named and leave-one-out",
                                            "all": f"all {n_all} non-empty subsets"}[s])
    n_classes = st.radio("Classes", [5, 4, 3], horizontal=True, key="subset_classes")
    wanted = _quick_subsets(available) if scope == "quick" else all_subsets(available)
    bar = st.progress(0.0, text="Staging each subset (cached after the first time)...")
    predictions = {}
    try:
        for k, subset in enumerate(wanted):
            predictions[subset] = C.prediction(loaded, subset).stages
            bar.progress((k + 1) / len(wanted), text=f"{k + 1} / {len(wanted)} subsets")
    except S2VError as exc:
        C.show_error(exc)
        return
    bar.empty()
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


render()
