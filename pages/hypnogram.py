"""Hypnogram page: predicted vs expert hypnogram, the peers (YASA, sleepecg) on the same epochs,
signal viewer and spectrogram at the selected epoch, hypnodensity, agreement and sleep statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import app_state as C
from s2v_core.errors import S2VError
from s2v_core.evaluation import STAT_DEFINITIONS, compare_sleep_statistics, staging_metrics
from s2v_core.evaluation.peers import PEERS, PeerResult, compare_with_peers, run_peer
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.night import Night
from s2v_core.recording.pairing import mismatch_problems
from s2v_core.sanitize.text import markdown_safe
from s2v_core.stages import STAGE_NAMES
from s2v_core.views.peers import (
    DISPLAY_NAMES,
    agreement_table,
    kappa_matrix_figure,
    peer_status_table,
    peers_hypnogram_figure,
)
from s2v_core.views.plots import confusion_figure, hypnodensity_figure, hypnogram_figure
from s2v_core.views.plots_signals import signal_figure, spectrogram_figure
from s2v_core.views.viewer import (
    MAX_CONTEXT_EPOCHS,
    SPECTRAL_MODALITIES,
    SignalWindow,
    Spectrogram,
    signal_window,
    spectrogram,
    switched_off_note,
    usable_epoch,
    viewer_modalities,
)

CHART_KEY = "hypnogram_chart"
EPOCH_INPUT = "epoch_input"
SHOWN_KEY = "viewer_modalities"  # the viewer's multiselect
HIDDEN_KEY = "viewer_hidden"  # modalities the user took out of that multiselect (kept while switched off)
SPECTRO_KEY = "spectrogram_modality"
PEERS_ON_KEY = "peers_on"
PEERS_KEY = "peers_chosen"
MAX_POINTS = 2000  # points per trace sent to the browser


@st.cache_data(show_spinner=False, max_entries=64)
def _window(night_key: str, epoch: int, before: int, after: int, modalities: tuple[str, ...],
            _night: Night) -> SignalWindow:
    return signal_window(_night, epoch, before=before, after=after, modalities=modalities, max_points=MAX_POINTS)


@st.cache_data(show_spinner="Computing the spectrogram...", max_entries=32)
def _spectrogram(night_key: str, modality: str, epoch: int, context: int, whole_night: bool,
                 _night: Night) -> Spectrogram:
    return spectrogram(_night, modality, epoch, context_epochs=context, whole_night=whole_night)


@st.cache_data(show_spinner=False, max_entries=16)
def _peer(night_key: str, name: str, path: str | None, _night: Night) -> PeerResult:
    """One peer's stages of a night: they do not depend on our model or on the modalities switched on."""
    return run_peer(name, _night, path)


def _peers(loaded: C.LoadedNight, pred, mismatched: bool) -> None:
    """YASA and sleepecg on the same epochs, under ours, with the agreement of every pair."""
    night = loaded.night
    st.subheader("Peers on the same epochs")
    on = st.toggle("Compare with YASA and sleepecg", key=PEERS_ON_KEY,
                   help="Runs the peers on this night (each only where it applies): YASA on the EEG (with EOG "
                        "and EMG) at >= 80 Hz, sleepecg's wrn-gru-mesa model on the heartbeats (W/NREM/REM).")
    if not on:
        st.caption("Switch on to stage this night with YASA and sleepecg as well and compare every pair of "
                   "stagers epoch by epoch (a few seconds per peer the first time; cached per night).")
        return
    st.session_state.setdefault(PEERS_KEY, list(PEERS))
    chosen = st.multiselect("Peers", list(PEERS), key=PEERS_KEY,
                            format_func=lambda k: DISPLAY_NAMES.get(k, k),
                            help="\n\n".join(f"**{k}**: {v}" for k, v in PEERS.items()))
    if not chosen:
        st.info("Choose at least one peer.")
        return
    path = loaded.path  # YASA re-reads the EEG there at the file's own rate (uploads: the 128-Hz copies)
    results = {}
    for i, name in enumerate(chosen):
        with st.spinner(f"Staging the night with {name} ({i + 1} of {len(chosen)})..."):
            results[name] = _peer(loaded.key, name, path, night)
    comparison = compare_with_peers(night, pred.stages, tuple(chosen), ours_3class=pred.merged_as_five(3),
                                    results=results)
    for name, r in comparison.peers.items():
        if not r.applied:
            st.warning(markdown_safe(f"{DISPLAY_NAMES.get(name, name)} gives no stages for this night: {r.refused}"),
                       icon=":material/block:")
    reference = night.stages if (night.stages >= 0).any() else None
    if any(r.applied for r in comparison.peers.values()):
        st.plotly_chart(peers_hypnogram_figure(pred.stages, comparison, expert=reference, start=night.start_time),
                        width="stretch", key="peers_hypnogram")
    status = peer_status_table(comparison)
    status["detail"] = [markdown_safe(d) for d in status["detail"]]
    st.dataframe(status, hide_index=True, width="stretch",
                 column_config={"detail": st.column_config.TextColumn(width="large")})
    if not comparison.pairs:
        return
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(agreement_table(comparison), hide_index=True, width="stretch",
                     column_config={"kappa": st.column_config.NumberColumn(format="%.3f"),
                                    "accuracy": st.column_config.NumberColumn(format="%.3f")})
    with right:
        st.plotly_chart(kappa_matrix_figure(comparison), width="stretch", key="peers_kappa",
                        config={"displayModeBar": False})
    st.caption("Cohen's kappa and accuracy over the epochs both stagers scored; a pair with sleepecg (W/NREM/REM) "
               "is compared in 3 classes, ours then from its summed probabilities. "
               + ("The expert row is the uploaded hypnogram, which does not match this recording. " if mismatched
                  else "") + "Peers see the whole recording whatever modalities are switched on in the sidebar.")


def _clickable(fig: go.Figure, tracks: dict[str, np.ndarray]) -> go.Figure:
    """Make every epoch of the hypnogram tracks clickable.

    Plotly selects only marker points on click (never a lines-only trace) and not under the
    "x unified" hover mode, so each track gets a transparent marker per epoch that carries the
    hover text, and the lines stop answering hovers.
    """
    for tr in list(fig.data):
        if tr.name not in tracks:
            continue
        labels = [STAGE_NAMES[s] if s >= 0 else "unscored" for s in np.asarray(tracks[tr.name])]
        fig.add_trace(go.Scatter(
            x=tr.x, y=tr.y, mode="markers", name=tr.name, showlegend=False,
            marker={"size": 7, "opacity": 0}, selected={"marker": {"opacity": 0}},
            unselected={"marker": {"opacity": 0}}, customdata=np.column_stack([labels, np.arange(len(labels))]),
            hovertemplate=f"{tr.name}: %{{customdata[0]}}, epoch %{{customdata[1]}} (click to view the signals)"
                          "<extra></extra>"))
        tr.hoverinfo = "skip"
    fig.update_layout(hovermode="closest")
    return fig


def _apply_click(n_epochs: int) -> None:
    """Turn a new click on the hypnogram into the selected epoch (before anything is drawn)."""
    event = st.session_state.get(CHART_KEY)
    selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", None)
    points = (selection.get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])) \
        if selection else []
    if not points:
        st.session_state[C.K_EPOCH_CLICK] = None
        return
    idx = int(points[0].get("point_index", points[0].get("pointIndex", 0)))
    if idx != st.session_state.get(C.K_EPOCH_CLICK) and 0 <= idx < n_epochs:
        st.session_state[C.K_EPOCH] = idx  # a new click; the same selection kept across reruns is not re-applied
    st.session_state[C.K_EPOCH_CLICK] = idx


def _set_epoch_from_input() -> None:
    st.session_state[C.K_EPOCH] = st.session_state.get(EPOCH_INPUT)


def _step_epoch(delta: int, n_epochs: int) -> None:
    current = st.session_state.get(C.K_EPOCH)
    start = 0 if current is None else int(current) + delta
    st.session_state[C.K_EPOCH] = min(max(start, 0), n_epochs - 1)


def _clock(night: Night, epoch: int) -> str:
    if night.start_time is None:
        total = int(epoch * EPOCH_SECONDS)
        return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d} after the start"
    return (night.start_time + pd.Timedelta(seconds=epoch * EPOCH_SECONDS)).strftime("%H:%M:%S")


def _remember_hidden(options: tuple[str, ...]) -> None:
    """``on_change`` of the viewer's multiselect: which of ``options`` the user took out."""
    chosen = set(st.session_state.get(SHOWN_KEY) or ())
    before = set(st.session_state.get(HIDDEN_KEY, ())) - set(options)  # choices about switched-off ones stay
    st.session_state[HIDDEN_KEY] = tuple(sorted(before | {m for m in options if m not in chosen}))


def _shown_modalities(options: tuple[str, ...]) -> list[str]:
    """The viewer's multiselect, offering only the modalities switched on in the sidebar.

    Its value is rebuilt on every run from what the user took out, so a modality switched off
    disappears from it and comes back, shown, when it is switched on again.
    """
    hidden = set(st.session_state.get(HIDDEN_KEY, ()))
    st.session_state[SHOWN_KEY] = [m for m in options if m not in hidden]
    return st.multiselect("Modalities shown", options, key=SHOWN_KEY, on_change=_remember_hidden, args=(options,),
                          help="The modalities switched on in the sidebar; switch one on there to show it here.")


def _signal_viewer(loaded: C.LoadedNight, predicted: np.ndarray, active: tuple[str, ...]) -> None:
    night = loaded.night
    n = night.n_epochs
    st.subheader("Signals at the selected epoch")
    epoch = usable_epoch(night, st.session_state.get(C.K_EPOCH))
    if epoch is None:  # none yet, or left over from another (longer) night
        st.session_state[C.K_EPOCH] = None
    st.session_state[EPOCH_INPUT] = epoch
    c = st.columns([2, 1, 1, 1, 1], vertical_alignment="bottom")
    c[0].number_input(f"Epoch (0-{n - 1})", min_value=0, max_value=n - 1, step=1, key=EPOCH_INPUT,
                      on_change=_set_epoch_from_input, placeholder="click the hypnogram")
    c[1].button("◀ previous", on_click=_step_epoch, args=(-1, n), disabled=epoch is None or epoch <= 0,
                width="stretch")
    c[2].button("next ▶", on_click=_step_epoch, args=(1, n), disabled=epoch is not None and epoch >= n - 1,
                width="stretch")
    before = c[3].number_input("Epochs before", 0, MAX_CONTEXT_EPOCHS, 1, key="viewer_before")
    after = c[4].number_input("Epochs after", 0, MAX_CONTEXT_EPOCHS, 1, key="viewer_after")
    options, switched_off = viewer_modalities(night, active)
    shown = _shown_modalities(options)
    if switched_off:
        st.caption(switched_off_note(switched_off))
    if epoch is None:
        st.info("Click an epoch on the hypnogram (or type its number) to see the signals around it.")
        return
    epoch = int(epoch)
    ref = int(night.stages[epoch])
    st.caption(f"Epoch {epoch}, {_clock(night, epoch)}: expert {STAGE_NAMES[ref] if ref >= 0 else 'unscored'}, "
               f"model {STAGE_NAMES[int(predicted[epoch])]}. Traces in physical units, downsampled on the server "
               f"to at most {MAX_POINTS} points each (min/max envelope: peaks kept, gaps left blank).")
    try:
        if shown:
            win = _window(loaded.key, epoch, int(before), int(after), tuple(shown), night)
            st.plotly_chart(signal_figure(win, predicted=predicted), width="stretch", key="signal_viewer")
        else:
            st.info("Choose at least one modality to show.")
        _spectrogram_view(loaded, epoch, options)
    except S2VError as exc:
        C.show_error(exc)


def _spectrogram_view(loaded: C.LoadedNight, epoch: int, active: tuple[str, ...]) -> None:
    night = loaded.night
    options = [m for m in SPECTRAL_MODALITIES if m in active]
    st.subheader("Spectrogram")
    if not options:
        if any(m in night.modalities for m in SPECTRAL_MODALITIES):
            st.info("No 128-Hz signal (EEG, EOG, EMG or ECG) is switched on in the sidebar: switch one on for "
                    "a spectrogram.")
        else:
            st.info("No 128-Hz signal (EEG, EOG, EMG or ECG) in this night: the slow modalities (4 Hz) are read "
                    "as traces above, not as spectra.")
        return
    if st.session_state.get(SPECTRO_KEY) not in options:  # switched off since it was chosen
        st.session_state.pop(SPECTRO_KEY, None)
    c = st.columns([1, 2])
    modality = c[0].selectbox("Signal", options, key=SPECTRO_KEY)
    view = c[1].radio("View", ["around the epoch", "whole night"], horizontal=True, key="spectrogram_view")
    whole = view == "whole night"
    context = min(max(int(st.session_state.get("viewer_before", 1)), int(st.session_state.get("viewer_after", 1)),
                      2), MAX_CONTEXT_EPOCHS)
    spec = _spectrogram(loaded.key, modality, 0 if whole else epoch, context, whole, night)
    if whole:
        spec = dataclasses.replace(spec, epoch=epoch)  # the night view is cached once; only the marker moves
    st.plotly_chart(spectrogram_figure(spec), width="stretch", key="spectrogram_chart")
    how = ("Welch per 30-s epoch (4-s Hann windows)" if whole else "2-s Hann windows every 0.25 s")
    st.caption(f"{modality} power spectral density, {how}, {spec.freqs[0]:.1f}-{spec.freqs[-1]:.0f} Hz, "
               f"{spec.unit}; colour range 2nd-98th percentile; blank columns: signal missing.")


def _agreement(reference: np.ndarray, predicted: np.ndarray) -> None:
    n_classes = st.radio("Classes", [5, 4, 3], horizontal=True, key="n_classes",
                         format_func=lambda k: {5: "5 (W N1 N2 N3 REM)", 4: "4 (N1+N2)", 3: "3 (W NREM REM)"}[k])
    try:
        m = staging_metrics(reference, predicted, n_classes=n_classes)
    except ValueError as exc:
        st.info(f"No agreement statistics: {markdown_safe(exc)}")
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
    # A hypnogram of another recording (dates or scored span far off) is never presented as this
    # night's expert scoring: a prominent error with both dates, and its track named for what it is.
    mismatched = mismatch_problems(night.warnings)
    for problem in mismatched:
        st.error(markdown_safe(f"The hypnogram {night.hypnogram_source} does not match this recording: {problem} "
                               "Upload the hypnogram of this recording; agreement below is with this file, not "
                               "with the expert scoring of this night."), icon=":material/error:")
    ref_name = "uploaded hypnogram (mismatched)" if mismatched else "expert"
    tracks = {ref_name: reference, "predicted": pred.stages} if has_expert else {"predicted": pred.stages}
    for w in pred.warnings:  # inputs unlike the training data, low confidence: shown, not folded away
        st.warning(markdown_safe(w), icon=":material/warning:")
    st.caption(f"Model {pred.model_id} on {', '.join(subset)}; mean confidence {float(pred.confidence.mean()):.0%}"
               + ("" if has_expert else f" — the hypnogram {markdown_safe(night.hypnogram_source)} has no scored epoch within "
                  "this recording, so no agreement statistics" if night.hypnogram_source
                  else " — no expert hypnogram loaded, so no agreement statistics"))
    _apply_click(night.n_epochs)
    epoch = st.session_state.get(C.K_EPOCH)
    fig = _clickable(hypnogram_figure(tracks, start=night.start_time, highlight=epoch), tracks)
    st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode="points", key=CHART_KEY)
    _signal_viewer(loaded, pred.stages, subset)
    st.subheader("Hypnodensity")
    st.caption("Stage probabilities per epoch; the widest band at an epoch is the model's confidence in its stage "
               "(exported as the confidence column).")
    st.plotly_chart(hypnodensity_figure(pred.probabilities, start=night.start_time), width="stretch")
    _peers(loaded, pred, bool(mismatched))
    if has_expert:
        st.subheader("Agreement with the uploaded hypnogram (it does not match this recording)" if mismatched
                     else "Agreement with the expert")
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


with C.guarded("showing the Hypnogram page"):
    render()
