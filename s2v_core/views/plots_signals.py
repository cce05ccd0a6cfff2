"""Plotly figures for the signal viewer, spectrograms and the sensor-dropout simulation.

They draw what :mod:`s2v_core.views.viewer` computes and follow the display conventions of
:mod:`s2v_core.views.plots`: the same stage and modality palettes, clock time on the x axis when the
recording start is known (else time since the start), and a perceptually uniform colour map
(viridis) for power.
"""

from __future__ import annotations

import html
from datetime import datetime

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.sanitize.text import terminal_safe
from s2v_core.stages import STAGE_NAMES
from s2v_core.views.plots import MODALITY_COLORS, STAGE_COLORS, hypnogram_figure, time_axis
from s2v_core.views.viewer import SignalWindow, Spectrogram

__all__ = [
    "MAX_LABELLED_EPOCHS",
    "SELECTION_COLOR",
    "SPECTROGRAM_COLORSCALE",
    "dropout_hypnogram_figure",
    "signal_figure",
    "spectrogram_figure",
]

SELECTION_COLOR = "#CC79A7"  # reddish purple (Okabe-Ito): the selected epoch, as on the hypnogram
SPECTROGRAM_COLORSCALE = "Viridis"  # perceptually uniform, readable in grey and with CVD
_DARK_STAGES = {"N2", "N3", "REM"}  # stage colours dark enough for white text
_ELAPSED_ORIGIN = np.datetime64("2000-01-01T00:00:00", "ms")
MAX_LABELLED_EPOCHS = 21  # beyond this many shown epochs only the selected one is labelled


def _x(seconds: np.ndarray, clock: np.ndarray | None) -> np.ndarray:
    """Clock times, or time since the start drawn as h:mm:ss on a date axis."""
    if clock is not None:
        return clock
    return _ELAPSED_ORIGIN + np.round(np.asarray(seconds, dtype=np.float64) * 1000).astype("timedelta64[ms]")


def _x_title(clock: np.ndarray | None) -> tuple[str, str | None]:
    return ("clock time", "%H:%M:%S") if clock is not None else ("time since recording start", "%H:%M:%S")


def _stage_name(code: int) -> str:
    return STAGE_NAMES[int(code)] if 0 <= int(code) < len(STAGE_NAMES) else "?"


def _stage_label(fig: go.Figure, x: object, name: str, y: float, prefix: str = "") -> None:
    colour = STAGE_COLORS.get(name, STAGE_COLORS["?"])
    fig.add_annotation(x=x, y=y, xref="x", yref="paper", text=f"{prefix}{name}", showarrow=False,
                       bgcolor=colour, font={"size": 11, "color": "white" if name in _DARK_STAGES else "#222222"},
                       borderpad=2, yanchor="bottom")


def signal_figure(
    window: SignalWindow,
    *,
    predicted: np.ndarray | None = None,
    height_per_trace: int = 95,
) -> go.Figure:
    """Stacked traces of every modality in ``window`` on one shared time axis.

    The selected epoch is shaded, epoch boundaries are dotted, and each shown epoch is labelled
    with its expert stage (and the predicted stage when ``predicted``, a whole-night array of
    stage codes, is given). Each y axis names the modality and its unit.
    """
    mods = list(window.traces)
    rows = max(1, len(mods))
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.012 if rows > 1 else 0.0)
    for k, m in enumerate(mods, start=1):
        tr = window.traces[m]
        source = html.escape(terminal_safe(tr.source), quote=False)  # a label is text, not plotly markup
        hover = f"{m} %{{y:.4g}} {tr.unit}<extra>{source}</extra>"
        fig.add_trace(go.Scatter(x=_x(tr.seconds, tr.clock), y=tr.values, mode="lines", name=m, connectgaps=False,
                                 line={"width": 0.9, "color": MODALITY_COLORS.get(m, "#555555")},
                                 hovertemplate=hover, showlegend=False), row=k, col=1)
        fig.update_yaxes(title={"text": f"{m}<br>{tr.unit}", "font": {"size": 11}}, row=k, col=1,
                         zeroline=False, showgrid=False, tickfont={"size": 9})
        if tr.valid is not None and not tr.valid.any():
            fig.add_annotation(text=f"{m}: no usable signal here", xref="x domain", yref="y domain",
                               x=0.5, y=0.5, showarrow=False, row=k, col=1, font={"color": "#777777"})
    starts = window.epoch_starts_s
    bounds = _x(np.append(starts, starts[-1] + EPOCH_SECONDS) if len(starts) else starts,
                None if window.epoch_clock is None else
                np.append(window.epoch_clock, window.epoch_clock[-1] + np.timedelta64(EPOCH_SECONDS, "s")))
    sel = window.epoch - window.first_epoch
    if 0 <= sel < len(starts):
        fig.add_vrect(x0=bounds[sel], x1=bounds[sel + 1], fillcolor=SELECTION_COLOR, opacity=0.13, line_width=0,
                      layer="below", row="all", col=1)
    for b in bounds[1:-1]:
        fig.add_vline(x=b, line={"color": "#BBBBBB", "width": 1, "dash": "dot"}, row="all", col=1)
    pred = None if predicted is None else np.asarray(predicted)[window.first_epoch:window.last_epoch]
    label_all = window.n_epochs <= MAX_LABELLED_EPOCHS
    has_ref = bool((window.stages >= 0).any())
    plot_px = height_per_trace * rows
    label_step = 24 / plot_px  # one label row, in paper units
    for j in range(window.n_epochs):
        if not label_all and j != sel:
            continue
        centre = bounds[j] + (bounds[j + 1] - bounds[j]) / 2
        # expert row on top, model row under it (the order of the hypnogram tracks)
        if pred is not None and j < len(pred):
            _stage_label(fig, centre, _stage_name(pred[j]), 1.0, "model " if j == sel else "")
        if has_ref:
            _stage_label(fig, centre, _stage_name(window.stages[j]), 1.0 + label_step if pred is not None else 1.0,
                         "expert " if j == sel else "")
    title, fmt = _x_title(window.epoch_clock)
    fig.update_xaxes(tickformat=fmt, row=rows, col=1, title={"text": title})
    fig.update_xaxes(showgrid=False)
    n_label_rows = int(has_ref) + int(predicted is not None)
    top = 34 + 24 * n_label_rows  # label rows under the plotly mode bar
    fig.update_layout(height=plot_px + top + 50, hovermode="x",
                      margin={"l": 10, "r": 10, "t": top, "b": 50}, plot_bgcolor="white")
    return fig


def _spec_x(spec: Spectrogram, seconds: np.ndarray) -> np.ndarray:
    """x positions of ``seconds`` (from the recording start) on the axis of ``spectrogram_figure``."""
    if spec.whole_night and spec.clock is None:
        return np.asarray(seconds, dtype=float) / 3600.0
    if spec.clock is None or not len(spec.seconds):
        return _x(seconds, None)
    origin = spec.clock[0] - np.round(spec.seconds[0] * 1000).astype("timedelta64[ms]")
    return origin + np.round(np.asarray(seconds, dtype=float) * 1000).astype("timedelta64[ms]")


def spectrogram_figure(spec: Spectrogram, *, height: int = 300) -> go.Figure:
    """Power (dB) as a heatmap, frequency upwards, with the selected epoch outlined or marked.

    The colour range runs from the 2nd to the 98th percentile of the shown power so that a few
    artefacts do not wash the picture out.
    """
    z = np.asarray(spec.power_db, dtype=float)
    finite = z[np.isfinite(z)]
    zmin, zmax = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    if zmax <= zmin:
        zmax = zmin + 1.0
    x = _spec_x(spec, spec.seconds)
    if spec.whole_night and spec.clock is None:
        xtitle, fmt = "hours since start", None
    else:
        xtitle, fmt = _x_title(spec.clock)
        if spec.whole_night:
            fmt = "%H:%M"
    fig = go.Figure(go.Heatmap(z=z, x=x, y=spec.freqs, colorscale=SPECTROGRAM_COLORSCALE, zmin=float(zmin),
                               zmax=float(zmax), colorbar={"title": {"text": spec.unit, "side": "right"},
                                                           "thickness": 12},
                               hovertemplate="%{y:.2f} Hz  %{z:.1f} dB<extra></extra>"))
    e0 = spec.epoch * EPOCH_SECONDS
    edges = _spec_x(spec, np.array([e0, e0 + EPOCH_SECONDS], dtype=float))
    if spec.whole_night:
        fig.add_vline(x=edges[0], line={"color": "white", "width": 2, "dash": "dash"})
    else:
        fig.add_vrect(x0=edges[0], x1=edges[1], line={"color": "white", "width": 1.5, "dash": "dash"},
                      fillcolor="rgba(0,0,0,0)")
    fig.update_yaxes(title="frequency (Hz)", range=[float(spec.freqs[0]), float(spec.freqs[-1])] if len(spec.freqs) else None)
    fig.update_xaxes(title=xtitle, tickformat=fmt)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 40})
    return fig


def dropout_hypnogram_figure(
    base: np.ndarray,
    dropped: np.ndarray,
    start_epoch: int,
    end_epoch: int,
    *,
    modality: str,
    start: datetime | None = None,
    height: int = 300,
) -> go.Figure:
    """Predicted hypnograms with all sensors and with ``modality`` dropped, the span shaded.

    Epochs whose stage changed are ticked in the disagreement strip under the two tracks.
    """
    fig = hypnogram_figure({"all sensors": np.asarray(base), f"without {modality}": np.asarray(dropped)},
                           start=start, height=height)
    x, _ = time_axis(len(base) + 1, start)
    fig.add_vrect(x0=x[start_epoch], x1=x[end_epoch], fillcolor="#999999", opacity=0.18, line_width=0,
                  layer="below", annotation_text=f"{modality} dropped", annotation_position="bottom left",
                  annotation_font={"size": 11, "color": "#444444"})
    fig.update_layout(legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0.0, "xanchor": "left"},
                      margin={"t": 34})  # legend above the tracks, clear of the mode bar on the right
    return fig
