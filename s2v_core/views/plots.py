"""Plotly figures shared by the app and exports, with one stage palette everywhere.

Conventions (UX.md): hypnogram y order top to bottom W, REM, N1, N2, N3; REM drawn thicker and in
the warm colour; W light, N1 -> N3 light to dark blue; clock time on the x axis when the recording
start is known, else hours since the start.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import plotly.graph_objects as go

from s2v_core.modalities import MODALITIES
from s2v_core.stages import N1, N2, N3, REM, STAGE_NAMES, UNSCORED, W

__all__ = [
    "MODALITY_COLORS",
    "STAGE_COLORS",
    "confusion_figure",
    "gates_area_figure",
    "gates_bar_figure",
    "hypnodensity_figure",
    "hypnogram_figure",
    "mean_epoch_gates",
    "time_axis",
]

# Colour-blind-safe stage palette: wake light grey-yellow, NREM light -> dark blue, REM vermilion.
STAGE_COLORS: dict[str, str] = {
    "W": "#E8D88E",
    "N1": "#9ECAE1",
    "N2": "#4292C6",
    "N3": "#08306B",
    "REM": "#D55E00",
    "?": "#BDBDBD",
}
# Okabe-Ito derived palette for modalities (distinguishable with common colour-vision deficiencies).
MODALITY_COLORS: dict[str, str] = dict(
    zip(
        MODALITIES,
        ("#0072B2", "#56B4E9", "#009E73", "#CC79A7", "#E69F00", "#F0E442", "#D55E00", "#999999", "#000000"),
        strict=True,
    )
)
# Plot level of each stage: W on top, then REM, N1, N2, N3.
_LEVEL = {W: 4, REM: 3, N1: 2, N2: 1, N3: 0}
_LEVEL_TICKS = ([4, 3, 2, 1, 0], ["W", "REM", "N1", "N2", "N3"])


def time_axis(n_epochs: int, start: datetime | None, epoch_seconds: float = 30.0) -> tuple[list, str]:
    """Epoch start times: clock datetimes when ``start`` is known, else hours since the start."""
    if start is not None:
        return [start + timedelta(seconds=i * epoch_seconds) for i in range(n_epochs)], "clock time"
    return list(np.arange(n_epochs) * epoch_seconds / 3600.0), "hours since start"


def _steps(stages: np.ndarray) -> np.ndarray:
    y = np.array([_LEVEL.get(int(s), np.nan) for s in stages], dtype=float)
    return y


def hypnogram_figure(
    tracks: dict[str, np.ndarray],
    *,
    start: datetime | None = None,
    epoch_seconds: float = 30.0,
    highlight: int | None = None,
    height: int = 320,
) -> go.Figure:
    """Stacked hypnograms (e.g. ``{"expert": ref, "predicted": pred}``) on one time axis.

    Unscored epochs leave gaps. REM segments are overdrawn thicker in the REM colour. A
    disagreement strip is added under the tracks when exactly two are given.
    """
    names = list(tracks)
    n = max(len(v) for v in tracks.values())
    x, xlabel = time_axis(n, start, epoch_seconds)
    fig = go.Figure()
    offset = 0.0
    gap = 6.0
    for k, name in enumerate(names):
        st = np.asarray(tracks[name])
        y = _steps(st) + offset
        colour = "#333333" if k == 0 else "#0072B2"
        fig.add_trace(go.Scatter(x=x[: len(st)], y=y, mode="lines", line={"shape": "hv", "width": 1.4, "color": colour},
                                 name=name, customdata=[STAGE_NAMES[s] if s >= 0 else "?" for s in st],
                                 hovertemplate=f"{name}: %{{customdata}}<extra></extra>"))
        rem = np.where(st == REM, y, np.nan)
        fig.add_trace(go.Scatter(x=x[: len(st)], y=rem, mode="lines", showlegend=False, hoverinfo="skip",
                                 line={"shape": "hv", "width": 5, "color": STAGE_COLORS["REM"]}))
        fig.add_annotation(x=0, xref="paper", y=offset + 4.6, text=f"<b>{name}</b>", showarrow=False, xanchor="left")
        offset -= gap
    if len(names) == 2:
        a, b = (np.asarray(tracks[k]) for k in names)
        m = min(len(a), len(b))
        differ = (a[:m] != b[:m]) & (a[:m] != UNSCORED) & (b[:m] != UNSCORED)
        yd = np.where(differ, offset + 4.2, np.nan)
        fig.add_trace(go.Scatter(x=x[:m], y=yd, mode="markers", marker={"symbol": "line-ns-open", "size": 9,
                                 "color": "#CC79A7"}, name="disagreement", hoverinfo="skip"))
        offset -= 1.5
    ticks_y, ticks_t = [], []
    for k in range(len(names)):
        ticks_y += [v - gap * k for v in _LEVEL_TICKS[0]]
        ticks_t += _LEVEL_TICKS[1]
    fig.update_yaxes(tickvals=ticks_y, ticktext=ticks_t, range=[offset + 3, 5.2], fixedrange=True, showgrid=False)
    fig.update_xaxes(title=xlabel)
    if highlight is not None and 0 <= highlight < n:
        fig.add_vline(x=x[highlight], line={"color": "#CC79A7", "width": 2, "dash": "dot"})
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 40}, hovermode="x unified",
                      legend={"orientation": "h", "y": 1.08}, showlegend=len(names) > 1)
    return fig


def hypnodensity_figure(probabilities: np.ndarray, *, start: datetime | None = None,
                        epoch_seconds: float = 30.0, height: int = 220) -> go.Figure:
    """Stacked stage probabilities per epoch (W on top, N3 at the bottom)."""
    p = np.asarray(probabilities, dtype=float)
    x, xlabel = time_axis(len(p), start, epoch_seconds)
    fig = go.Figure()
    for code in (N3, N2, N1, REM, W):
        name = STAGE_NAMES[code]
        fig.add_trace(go.Scatter(x=x, y=p[:, code], stackgroup="p", mode="lines", name=name,
                                 line={"width": 0, "shape": "hv"}, fillcolor=STAGE_COLORS[name],
                                 hovertemplate=f"{name} %{{y:.2f}}<extra></extra>"))
    fig.update_yaxes(range=[0, 1], title="probability", fixedrange=True)
    fig.update_xaxes(title=xlabel)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 40}, legend={"orientation": "h", "y": 1.15})
    return fig


def confusion_figure(confusion: np.ndarray, class_names: tuple[str, ...], *, normalise: bool = True) -> go.Figure:
    """Confusion matrix, rows = expert, columns = predicted; cells show row % and counts."""
    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    pct = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) * 100
    z = pct if normalise else cm
    text = [[f"{pct[i, j]:.0f}%<br>{int(cm[i, j])}" for j in range(cm.shape[1])] for i in range(cm.shape[0])]
    fig = go.Figure(go.Heatmap(z=z, x=list(class_names), y=list(class_names), text=text, texttemplate="%{text}",
                               colorscale="Blues", showscale=False, hoverinfo="skip"))
    fig.update_yaxes(autorange="reversed", title="expert")
    fig.update_xaxes(title="predicted", side="top")
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def gates_area_figure(epoch_gates: np.ndarray, modalities: tuple[str, ...], *, start: datetime | None = None,
                      epoch_seconds: float = 30.0, height: int = 220) -> go.Figure:
    """Per-epoch gate weights as a stacked area (sums to 1 per epoch)."""
    g = np.asarray(epoch_gates, dtype=float)
    x, xlabel = time_axis(len(g), start, epoch_seconds)
    fig = go.Figure()
    for j, m in enumerate(modalities):
        fig.add_trace(go.Scatter(x=x, y=g[:, j], stackgroup="g", mode="lines", name=m,
                                 line={"width": 0}, fillcolor=MODALITY_COLORS.get(m, "#777777"),
                                 hovertemplate=f"{m} %{{y:.2f}}<extra></extra>"))
    fig.update_yaxes(range=[0, 1], title="gate weight", fixedrange=True)
    fig.update_xaxes(title=xlabel)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 40}, legend={"orientation": "h", "y": 1.15})
    return fig


def mean_epoch_gates(epoch_gates: np.ndarray, modalities: tuple[str, ...]) -> dict[str, float]:
    """Mean per-epoch gate weight of each modality over the night (sums to 1).

    Epochs whose gate row is all zero or not finite (no modality present there) are left out,
    so they do not pull every mean down; with no such epoch at all every mean is 0.
    """
    g = np.asarray(epoch_gates, dtype=float).reshape(-1, len(modalities))
    used = np.isfinite(g).all(axis=1) & (g.sum(axis=1) > 0)
    means = g[used].mean(axis=0) if used.any() else np.zeros(len(modalities))
    return {m: float(v) for m, v in zip(modalities, means, strict=True)}


def gates_bar_figure(global_gates: dict[str, float], night_mean: dict[str, float] | None = None, *,
                     height: int = 280) -> go.Figure:
    """Global gate weight of each modality, with the night's mean per-epoch gate beside it.

    ``global_gates`` and ``night_mean`` map modality -> weight (see :func:`mean_epoch_gates`);
    the modality colour fills the global bar, the night-mean bar is the same colour hatched.
    """
    mods = list(global_gates)
    colours = [MODALITY_COLORS.get(m, "#777777") for m in mods]
    fig = go.Figure(go.Bar(x=mods, y=[global_gates[m] for m in mods], name="global (learned, same every night)",
                           marker_color=colours, text=[f"{global_gates[m]:.2f}" for m in mods],
                           textposition="outside", hovertemplate="%{x} global %{y:.3f}<extra></extra>"))
    top = max(global_gates.values(), default=0.0)
    if night_mean is not None:
        fig.add_trace(go.Bar(x=mods, y=[night_mean.get(m, 0.0) for m in mods], name="mean per-epoch gate, this night",
                             marker={"color": colours, "pattern": {"shape": "/", "fgcolor": "#FFFFFF"},
                                     "line": {"color": "#333333", "width": 1}},
                             text=[f"{night_mean.get(m, 0.0):.2f}" for m in mods], textposition="outside",
                             hovertemplate="%{x} night mean %{y:.3f}<extra></extra>"))
        top = max(top, *night_mean.values()) if night_mean else top
    fig.update_layout(height=height, barmode="group", margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      yaxis={"title": "gate weight", "range": [0, max(0.05, top * 1.25)], "fixedrange": True},
                      legend={"orientation": "h", "y": 1.12}, showlegend=night_mean is not None)
    return fig
