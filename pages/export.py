"""Export page: hypnogram and per-epoch outputs in formats other tools open."""

from __future__ import annotations

import io
import json

import streamlit as st

from pages import common as C
from s2v_core.exports import hypnogram_csv, hypnogram_edf_annotations, prediction_json


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
    buf = io.StringIO()
    pred.to_frame(night.start_time).to_csv(buf, index=False)
    c1.download_button("Per-epoch probabilities and gates (CSV)", buf.getvalue(), file_name=f"{stem}_epochs.csv",
                       mime="text/csv")
    c2.download_button("Summary (JSON)", json.dumps(prediction_json(pred, night), indent=1),
                       file_name=f"{stem}.json", mime="application/json")


render()
