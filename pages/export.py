"""Export page: hypnogram and per-epoch outputs in formats other tools open."""

from __future__ import annotations

import json

import streamlit as st

import app_state as C
from s2v_core.evaluation import staging_metrics
from s2v_core.sanitize.text import markdown_safe
from s2v_core.views.exports import (
    bids_events,
    bids_events_name,
    epochs_csv,
    figure_html,
    hypnogram_csv,
    hypnogram_edf_annotations,
    prediction_json,
)
from s2v_core.views.plots import (
    confusion_figure,
    gates_area_figure,
    hypnodensity_figure,
    hypnogram_figure,
)

FIGURES = ("Hypnogram", "Hypnodensity", "Per-epoch gates", "Confusion matrix")


def _figure(name: str, night, pred):
    start = night.start_time
    if name == "Hypnogram":
        has_expert = bool((night.stages >= 0).any())
        tracks = {"expert": night.stages, "predicted": pred.stages} if has_expert else {"predicted": pred.stages}
        return hypnogram_figure(tracks, start=start)
    if name == "Hypnodensity":
        return hypnodensity_figure(pred.probabilities, start=start)
    if name == "Per-epoch gates":
        return gates_area_figure(pred.epoch_gates, pred.modalities, start=start)
    m = staging_metrics(night.stages, pred.stages)
    return confusion_figure(m.confusion, m.class_names)


def _figures(night, pred, stem: str) -> None:
    st.subheader("Figures")
    has_expert = bool((night.stages >= 0).any())
    names = FIGURES if has_expert else FIGURES[:3]
    c = st.columns([2, 1, 1])
    name = c[0].selectbox("Figure", names, key="export_figure")
    fmt = c[1].radio("Image format", ["svg", "png"], horizontal=True, key="export_format",
                     format_func=str.upper)
    scale = c[2].selectbox("PNG scale", [1, 2, 3, 4], index=1, key="export_scale",
                           help="pixels per figure unit: 2 gives a 2x sharper PNG")
    fig = _figure(name, night, pred)
    fname = f"{stem}_{name.lower().replace(' ', '_').replace('-', '_')}"
    st.caption(f"Save as {fmt.upper()} with the camera icon of the figure's toolbar (made in your browser, "
               "nothing is uploaded); or download an interactive HTML file that opens offline.")
    st.plotly_chart(fig, width="stretch", key="export_chart",
                    config={"toImageButtonOptions": {"format": fmt, "filename": fname, "scale": scale},
                            "displaylogo": False})
    st.download_button("Interactive figure (HTML)", figure_html(fig), file_name=f"{fname}.html",
                       mime="text/html")


def render() -> None:
    st.title("Export")
    result = C.night_and_prediction()
    if result is None:
        return
    loaded, pred = result
    night = loaded.night
    stem = f"{night.meta.night_id}_{'-'.join(pred.modalities)}"
    st.caption("Nothing identifying from the recording header (name, birth date, patient code) is exported.")
    c1, c2 = st.columns(2)
    c1.download_button("Hypnogram CSV (onset, duration, label; opens in EDFbrowser)", hypnogram_csv(pred.stages),
                       file_name=f"{stem}_hypnogram.csv", mime="text/csv")
    c2.download_button("Hypnogram as EDF+ annotations", hypnogram_edf_annotations(pred.stages, night.start_time),
                       file_name=f"{stem}_hypnogram.edf", mime="application/octet-stream")
    c1.download_button("Per-epoch probabilities and gates (CSV)", epochs_csv(pred, night), file_name=f"{stem}_epochs.csv",
                       mime="text/csv")
    c2.download_button("Summary (JSON)", json.dumps(prediction_json(pred, night), indent=1),
                       file_name=f"{stem}.json", mime="application/json")
    st.subheader("BIDS events")
    events, sidecar = bids_events(pred, night)
    events_name = bids_events_name(night.source_file or night.meta.night_id)
    st.caption(f"One row per 30-s epoch (onset, duration, trial_type, stage, probabilities) with its JSON sidecar "
               f"describing every column: put both next to the recording in a BIDS dataset "
               f"(**{markdown_safe(events_name)}**).")
    b1, b2 = st.columns(2)
    b1.download_button("Predictions as BIDS events (TSV)", events, file_name=events_name,
                       mime="text/tab-separated-values")
    b2.download_button("BIDS events sidecar (JSON)", json.dumps(sidecar, indent=2),
                       file_name=events_name.removesuffix(".tsv") + ".json", mime="application/json")
    st.subheader("Embeddings")
    st.caption("Per-epoch fused embeddings (what the staging head sees) with night metadata, stage and "
               "prediction, as Parquet: the columns `s2v embed` writes.")
    if st.toggle("Prepare the embeddings (about as long as one prediction)", key="export_embeddings"):
        data = C.embeddings_parquet_bytes(loaded, pred.modalities)
        st.download_button("Per-epoch embeddings (Parquet)", data, file_name=f"{stem}_embeddings.parquet",
                           mime="application/vnd.apache.parquet")
    _figures(night, pred, stem)


with C.guarded("showing the Export page"):
    render()
