"""Night page: choose the sample night, the shipped excerpt or an upload; see how it was read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import app_state as C
from s2v_core.modalities import MODALITIES, SFREQ, UNITS
from s2v_core.night import Night
from s2v_core.sanitize.text import markdown_safe
from s2v_core.views.plots import MODALITY_COLORS
from s2v_core.views.viewer import default_epoch, switched_off_note, usable_epoch, viewer_modalities

EPOCH_SLIDER = "night_epoch_slider"
RECORDING_LABEL = "EDF / EDF+ / BDF, WFDB, DREAMS text, FIF, BrainVision or EEGLAB recording (all files of one record at once)"
RECORDING_HELP = ("EDF/EDF+/BDF; a WFDB record (.hea with its .dat signals and/or .ecg beats, and .st stages); "
                  "a DREAMS text excerpt (excerptN.txt, with Hypnogram_excerptN.txt); through MNE FIF, BrainVision "
                  "(.vhdr with its .vmrk and .eeg), EEGLAB (.set, with its .fdt), GDF, CNT. Select all files of a "
                  "record at once; a hypnogram may come with them (paired by name as in `s2v prepare`).")


def _mapping_editor(labels: tuple[str, ...], night: Night) -> dict[str, str | None]:
    rows = []
    for m in MODALITIES:
        prov = night.provenance.get(m)
        derived = prov is not None and (prov.reader == "derived" or prov.source not in labels)  # e.g. WFDB beats
        rows.append({
            "modality": m,
            "channel": prov.source if prov and not derived else None,
            "derived from": prov.source if derived else "",
            "rate in (Hz)": prov.original_sfreq if prov else None,
            "unit": UNITS[m],
            "valid epochs": f"{night.epoch_valid[m].mean():.0%}" if m in night.epoch_valid else "-",
        })
    df = pd.DataFrame(rows)
    edited = st.data_editor(
        df, hide_index=True, key=C.K_MAPPING_EDITOR, width="stretch",
        disabled=["modality", "derived from", "rate in (Hz)", "unit", "valid epochs"],
        column_config={"channel": st.column_config.SelectboxColumn(options=list(labels),
                                                                   help="channel used for this modality")},
    )
    overrides: dict[str, str | None] = {}
    for before, after in zip(df.itertuples(), edited.itertuples(), strict=True):
        # an empty cell comes back as None or NaN: both mean "no channel" (NaN != None would
        # count as an edit and rerun the page forever for a night missing a modality)
        was, now = _channel(before.channel), _channel(after.channel)
        if was != now and before.modality not in ("ibi", "resp"):
            overrides[before.modality] = now
    return overrides


def _channel(value: object) -> str | None:
    """A mapping-table cell as a channel label, or None for an empty cell."""
    return value if isinstance(value, str) and value else None


def _set_epoch_from_slider() -> None:
    st.session_state[C.K_EPOCH] = st.session_state.get(EPOCH_SLIDER)


def _epoch_slider(night: Night) -> int:
    """The epoch slider: at the selected epoch (shared with the Hypnogram page) when it lies in this
    night, else at the first scored epoch (the first epoch without a hypnogram); a single-epoch
    recording needs no slider."""
    n = night.n_epochs
    epoch = usable_epoch(night, st.session_state.get(C.K_EPOCH))
    if epoch is None:  # nothing selected yet, or an epoch of another (longer) recording
        epoch = default_epoch(night)
    if n < 2:
        return epoch
    st.session_state[EPOCH_SLIDER] = epoch  # before the slider is drawn: always a value inside this night
    return st.slider("Epoch", 0, n - 1, key=EPOCH_SLIDER, on_change=_set_epoch_from_slider)


def _epoch_figure(night: Night, epoch: int, mods: tuple[str, ...]) -> go.Figure:
    fig = go.Figure()
    for i, m in enumerate(mods):
        x = np.asarray(night.signals[m][epoch], dtype=float)
        t = np.arange(x.size) / SFREQ[m]
        centre = np.nanmedian(x) if np.isfinite(x).any() else 0.0
        span = np.nanpercentile(np.abs(x - centre), 99) if np.isfinite(x).any() else 1.0
        fig.add_trace(go.Scattergl(
            x=t, y=(x - centre) / (2.2 * (span or 1.0)) - i, name=m, mode="lines", customdata=x,
            line={"width": 1, "color": MODALITY_COLORS[m]},
            hovertemplate=f"{m}: %{{customdata:.3g}} {UNITS[m]}<extra></extra>"))
    fig.update_layout(height=60 + 55 * len(mods), margin={"l": 10, "r": 10, "t": 10, "b": 30}, showlegend=False,
                      yaxis={"tickvals": [-i for i in range(len(mods))], "ticktext": list(mods), "fixedrange": True},
                      xaxis={"title": "seconds into the epoch"})
    return fig


def render() -> None:
    st.title("Night")
    # the choice lives in K_SOURCE, which survives visits to other pages (the radio's own state does not)
    chosen = st.session_state.get(C.K_SOURCE, C.SOURCES[0])
    source = st.radio("Recording", C.SOURCES, horizontal=True, key=C.K_SOURCE_RADIO,
                      index=C.SOURCES.index(chosen) if chosen in C.SOURCES else 0)
    st.session_state[C.K_SOURCE] = source
    if source == C.SOURCES[2]:
        st.caption(f"Files are read on this machine only, in a private temporary folder that is removed after "
                   f"reading. Upload limit {C.MAX_UPLOAD_MB} MB; for larger files use `s2v info` / `s2v predict`.")
        kept = st.session_state.get(C.K_KEPT_UPLOADS, {})
        files = C.uploaded_recording_files()
        if files and not st.session_state.get(C.K_UPLOAD):
            st.caption("In use: " + ", ".join(f"**{markdown_safe(f.name)}**" for f in files)
                       + (f" with **{markdown_safe(kept[C.K_HYP_UPLOAD].name)}**" if C.K_HYP_UPLOAD in kept else "")
                       + " (upload another file to replace it).")
        st.file_uploader(RECORDING_LABEL, type=C.RECORDING_TYPES, accept_multiple_files=True, key=C.K_UPLOAD,
                         on_change=C.remember_upload, args=(C.K_UPLOAD,), help=RECORDING_HELP)
        st.file_uploader("Hypnogram (optional): Sleep-EDF/EDF+, NSRR or Profusion XML, CSV/TSV, DREAMS, WFDB",
                         type=["edf", "xml", "csv", "tsv", "txt", "st"], key=C.K_HYP_UPLOAD,
                         on_change=C.remember_upload, args=(C.K_HYP_UPLOAD,),
                         help="Any hypnogram format `s2v info --hypnogram` reads, BIDS *_events.tsv included; "
                              "it replaces a hypnogram uploaded with the recording.")
        if C.upload_is_dreams_text(files):
            st.number_input("Sampling rate of the DREAMS text excerpt (Hz; 0: from its hypnogram)", min_value=0.0,
                            max_value=100_000.0, step=1.0, key=C.K_SFREQ,
                            help="The text file stores no rate: give it, or upload the excerpt's hypnogram "
                                 "(Hypnogram_excerptN.txt) and it is derived from the span the hypnogram scores.")
    loaded = C.night_or_explain("Upload a recording to continue.")
    if loaded is None:
        return
    night = loaded.night
    active = C.active_modalities(loaded, familiarity=False)  # the sidebar's toggles, shared by every page
    s = night.summary()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Duration", f"{s['duration_s'] / 3600:.2f} h")
    c2.metric("Epochs (30 s)", s["n_epochs"])
    c3.metric("Modalities", f"{len(s['available'])} of 9")
    c4.metric("Start", night.start_time.strftime("%H:%M:%S") if night.start_time else "unknown")
    if s["hypnogram"]:
        st.caption(f"Expert hypnogram: {markdown_safe(s['hypnogram'])} — " +
                   ", ".join(f"{k} {v}" for k, v in s["stage_counts"].items()))
    st.subheader("Channel to modality mapping")
    st.caption("Edit a channel to override the automatic choice; clear it to leave the modality out.")
    overrides = _mapping_editor(loaded.labels, night)
    mapping = st.session_state.get(C.K_MAPPING, {})
    if overrides and {**mapping, **overrides} != mapping:  # rerun only on a real change
        st.session_state[C.K_MAPPING] = {**mapping, **overrides}
        st.rerun()
    if mapping and st.button("Reset mapping"):
        st.session_state[C.K_MAPPING] = {}
        st.rerun()
    if s["warnings"]:
        with st.expander(f"{len(s['warnings'])} warnings about this recording", expanded=False):
            for w in s["warnings"]:
                st.warning(markdown_safe(w))  # warnings quote channel labels and annotations
    if night.modalities and night.n_epochs:
        st.subheader("Signals")
        shown, switched_off = viewer_modalities(night, active)
        if switched_off:
            st.caption(switched_off_note(switched_off))
        epoch = _epoch_slider(night)
        if shown:
            st.plotly_chart(_epoch_figure(night, epoch, shown), width="stretch", key="night_signals")
        else:
            st.info("No modality is switched on: switch at least one on in the sidebar to see its signal.")


with C.guarded("showing the Night page"):
    render()
