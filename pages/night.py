"""Night page: choose the shipped sample night or upload a recording; see how it was read."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from s2v_core.errors import S2VError
from s2v_core.io.edf import check_header
from s2v_core.loading import load_night
from s2v_core.modalities import MODALITIES, SFREQ, UNITS
from s2v_core.night import Night
from s2v_core.sample import full_sample_night, shipped_night

MAX_UPLOAD_MB = 2048


@st.cache_data(show_spinner="Reading the recording...", max_entries=8)
def _load_bytes(name: str, data_hash: str, data: bytes, hyp_name: str | None, hyp: bytes | None,
                mapping: tuple[tuple[str, str | None], ...]) -> Night:
    # Uploads live only in a private temporary folder for the duration of the read.
    with tempfile.TemporaryDirectory(prefix="s2v-upload-") as tmp:
        psg = Path(tmp) / Path(name).name
        psg.write_bytes(data)
        hyp_path = None
        if hyp is not None and hyp_name:
            hyp_path = Path(tmp) / Path(hyp_name).name
            hyp_path.write_bytes(hyp)
        night = load_night(psg, hyp_path, mapping=dict(mapping), allow_mismatch=True)
        return _in_memory(night)


@st.cache_data(show_spinner="Reading the sample night...", max_entries=4)
def _load_path(path: str, hyp: str | None, mapping: tuple[tuple[str, str | None], ...]) -> Night:
    return _in_memory(load_night(path, hyp, mapping=dict(mapping)))


def _in_memory(night: Night) -> Night:
    night.signals = {m: np.asarray(x) for m, x in night.signals.items()}
    return night


def _mapping_editor(labels: list[str], night: Night) -> dict[str, str | None]:
    rows = []
    for m in MODALITIES:
        prov = night.provenance.get(m)
        rows.append({
            "modality": m,
            "channel": prov.source if prov and prov.reader != "derived" else None,
            "derived from": prov.source if prov and prov.reader == "derived" else "",
            "rate in (Hz)": prov.original_sfreq if prov else None,
            "unit": UNITS[m],
            "valid epochs": f"{night.epoch_valid[m].mean():.0%}" if m in night.epoch_valid else "-",
        })
    df = pd.DataFrame(rows)
    edited = st.data_editor(
        df,
        hide_index=True,
        disabled=["modality", "derived from", "rate in (Hz)", "unit", "valid epochs"],
        column_config={"channel": st.column_config.SelectboxColumn(options=labels, help="channel used for this modality")},
        key="mapping_editor",
        width="stretch",
    )
    overrides: dict[str, str | None] = {}
    for before, after in zip(df.itertuples(), edited.itertuples(), strict=True):
        if before.channel != after.channel and before.modality not in ("ibi", "resp"):
            overrides[before.modality] = after.channel if isinstance(after.channel, str) else None
    return overrides


def _epoch_figure(night: Night, epoch: int) -> go.Figure:
    fig = go.Figure()
    mods = night.modalities
    for i, m in enumerate(mods):
        x = np.asarray(night.signals[m][epoch], dtype=float)
        t = np.arange(x.size) / SFREQ[m]
        span = np.nanpercentile(np.abs(x - np.nanmedian(x)), 99) or 1.0
        fig.add_trace(go.Scattergl(x=t, y=(x - np.nanmedian(x)) / (2.2 * span) - i, name=m, mode="lines",
                                   line={"width": 1}, hovertemplate=f"{m}: %{{customdata:.3g}} {UNITS[m]}<extra></extra>",
                                   customdata=x))
    fig.update_layout(height=60 + 55 * len(mods), margin={"l": 10, "r": 10, "t": 10, "b": 30}, showlegend=False,
                      yaxis={"tickvals": [-i for i in range(len(mods))], "ticktext": list(mods)},
                      xaxis={"title": "seconds into the epoch"})
    return fig


def render() -> None:
    st.title("Night")
    sources = ["Sample night (8 h PSG)", "Shipped 1-h excerpt", "Upload EDF/BDF"]
    source = st.radio("Recording", sources, horizontal=True, key="night_source")
    mapping = st.session_state.get("mapping_overrides", {})
    night = None
    try:
        if source != "Upload EDF/BDF":
            if source == sources[0]:
                with st.spinner("Generating the synthetic sample night (first launch only)..."):
                    psg, hyp = full_sample_night()
            else:
                psg, hyp = shipped_night()
            labels = check_header(psg).labels
            night = _load_path(str(psg), str(hyp) if hyp else None, tuple(sorted(mapping.items())))
        else:
            st.caption(f"Files are read on this machine only and removed after reading. Limit {MAX_UPLOAD_MB} MB "
                       "(raise `server.maxUploadSize` in .streamlit/config.toml for larger files, or use `s2v info`).")
            up = st.file_uploader("EDF / EDF+ / BDF recording", type=["edf", "bdf", "rec"])
            hyp_up = st.file_uploader("Hypnogram (optional)", type=["edf", "xml", "csv", "tsv", "txt", "st"])
            if up is None:
                st.info("Upload a recording to continue.")
                return
            data = up.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            with tempfile.TemporaryDirectory(prefix="s2v-hdr-") as tmp:
                p = Path(tmp) / "upload.edf"
                p.write_bytes(data[: 256 * 1024]) if len(data) > 256 * 1024 else p.write_bytes(data)
                try:
                    labels = check_header(p).labels
                except S2VError:
                    labels = []
            night = _load_bytes(up.name, digest, data, hyp_up.name if hyp_up else None,
                                hyp_up.getvalue() if hyp_up else None, tuple(sorted(mapping.items())))
    except S2VError as exc:
        st.error(str(exc))
        return
    st.session_state["night"] = night
    s = night.summary()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Duration", f"{s['duration_s'] / 3600:.2f} h")
    c2.metric("Epochs (30 s)", s["n_epochs"])
    c3.metric("Modalities", f"{len(s['available'])} of 9")
    c4.metric("Start", night.start_time.strftime("%H:%M:%S") if night.start_time else "unknown")
    st.subheader("Channel to modality mapping")
    st.caption("Edit a channel to override the automatic choice; clear it to leave the modality out.")
    overrides = _mapping_editor(labels, night)
    if overrides:
        st.session_state["mapping_overrides"] = {**mapping, **overrides}
        st.rerun()
    if mapping and st.button("Reset mapping"):
        st.session_state["mapping_overrides"] = {}
        st.rerun()
    if s["warnings"]:
        with st.expander(f"{len(s['warnings'])} warnings", expanded=True):
            for w in s["warnings"]:
                st.warning(w)
    if night.modalities:
        st.subheader("Signals")
        epoch = st.slider("Epoch", 0, night.n_epochs - 1, min(night.n_epochs - 1, 60))
        st.plotly_chart(_epoch_figure(night, epoch), width="stretch")


render()
