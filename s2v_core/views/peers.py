"""Peers side by side: what ``s2v predict --compare`` writes and what an app page shows.

Everything here turns a :class:`~s2v_core.evaluation.peers.PeerComparison` into tables and
figures; nothing runs a peer (see :mod:`s2v_core.evaluation.peers`).

* :func:`with_peer_columns`: the per-epoch prediction table plus ``<peer>_stage`` and
  ``<peer>_label`` for every peer that staged the night (a refused peer adds no column).
* :func:`peer_status_table`: one row per peer: staged or refused, what it was given or why not.
* :func:`agreement_table`: one row per pair of stagers: classes, kappa, accuracy, epochs compared.
* :func:`kappa_matrix_figure`: the same kappas as a stager x stager heatmap.
* :func:`peers_hypnogram_figure`: the hypnograms stacked on one time axis (a 3-class peer drawn
  on W/REM/NREM levels, never as N2).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from s2v_core.evaluation.peers import EXPERT, OURS, PeerComparison, peer_labels
from s2v_core.stages import N1, N2, N3, REM, STAGE_NAMES, W, class_names
from s2v_core.views.plots import STAGE_COLORS, time_axis

__all__ = [
    "DISPLAY_NAMES",
    "agreement_table",
    "kappa_matrix_figure",
    "peer_columns",
    "peer_status_table",
    "peers_hypnogram_figure",
    "with_peer_columns",
]

DISPLAY_NAMES: dict[str, str] = {OURS: "ours", "yasa": "YASA", "sleepecg": "sleepecg", EXPERT: "expert"}
"""How stagers are named in tables and figures."""

_LEVEL = {W: 4, REM: 3, N1: 2, N2: 1, N3: 0}  # the hypnogram page's order: W, REM, N1, N2, N3
_LEVEL_3 = {W: 4, REM: 3, N2: 1}  # a 3-class track: W, REM, NREM (at the N2 level)
_GAP = 6.0
_TRACK_COLOURS = {OURS: "#0072B2", EXPERT: "#333333", "yasa": "#009E73", "sleepecg": "#CC79A7"}


def _name(key: str) -> str:
    return DISPLAY_NAMES.get(key, key)


def peer_columns(comparison: PeerComparison) -> dict[str, list]:
    """``{"<peer>_stage": codes, "<peer>_label": names}`` for every peer that staged the night.

    Codes are the project's (-1 unscored); a 3-class peer's labels are W/NREM/REM (NREM coded 2).
    """
    cols: dict[str, list] = {}
    for name, r in comparison.peers.items():
        if r.applied:
            cols[f"{name}_stage"] = [int(s) for s in r.stages]
            cols[f"{name}_label"] = r.labels()
    return cols


def with_peer_columns(frame: pd.DataFrame, comparison: PeerComparison) -> pd.DataFrame:
    """The per-epoch table with the peers' stages, after the expert's columns (or after ``label``).

    The ``stage``/``label`` columns stay ours and come first, so the CSV still reads as our
    hypnogram; peer columns are named ``<peer>_stage`` and ``<peer>_label``.
    """
    if len(frame) != comparison.n_epochs:
        raise ValueError(f"the table has {len(frame)} rows for {comparison.n_epochs} epochs")
    out = frame.copy()
    anchor = "reference_label" if "reference_label" in out.columns else "label"
    at = out.columns.get_loc(anchor) + 1 if anchor in out.columns else len(out.columns)
    for col, values in peer_columns(comparison).items():
        out.insert(at, col, values)
        at += 1
    return out


def peer_status_table(comparison: PeerComparison) -> pd.DataFrame:
    """One row per peer: ``peer``, ``status`` (staged / refused), ``classes``, ``detail``, ``seconds``."""
    rows = []
    for name, r in comparison.peers.items():
        detail = "; ".join([r.used, *r.notes]) if r.applied else (r.refused or "")
        rows.append({
            "peer": _name(name) + (f" {r.version}" if r.version else ""),
            "status": "staged" if r.applied else "refused",
            "classes": "/".join(class_names(r.n_classes)),
            "detail": detail,
            "seconds": round(float(r.seconds), 1) if r.applied else None,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["peer", "status", "classes", "detail", "seconds"])


def agreement_table(comparison: PeerComparison) -> pd.DataFrame:
    """One row per pair: ``stagers``, ``classes``, ``kappa``, ``accuracy``, ``epochs`` compared."""
    rows = [{
        "stagers": f"{_name(p['a'])} vs {_name(p['b'])}",
        "classes": "/".join(class_names(p["n_classes"])),
        "kappa": p["kappa"],
        "accuracy": p["accuracy"],
        "epochs": p["n_epochs"],
    } for p in comparison.pairs]  # fmt: skip
    return pd.DataFrame(rows, columns=["stagers", "classes", "kappa", "accuracy", "epochs"])


def kappa_matrix_figure(comparison: PeerComparison, *, height: int = 320) -> go.Figure:
    """Cohen's kappa of every pair of stagers as a symmetric heatmap; 3-class cells marked ``(3)``."""
    names: list[str] = []
    for p in comparison.pairs:
        for k in (p["a"], p["b"]):
            if k not in names:
                names.append(k)
    n = len(names)
    z = np.full((n, n), np.nan)
    text = [["" for _ in range(n)] for _ in range(n)]
    for i in range(n):
        z[i, i] = 1.0
        text[i][i] = "-"
    for p in comparison.pairs:
        i, j = names.index(p["a"]), names.index(p["b"])
        k = p["kappa"]
        label = "n/a" if k is None else f"{k:.2f}"
        label += " (3)" if p["n_classes"] == 3 else ""
        label += f"<br>{p['n_epochs']} ep"
        for a, b in ((i, j), (j, i)):
            z[a, b] = np.nan if k is None else k
            text[a][b] = label
    shown = [_name(k) for k in names]
    fig = go.Figure(go.Heatmap(z=z, x=shown, y=shown, text=text, texttemplate="%{text}", zmin=-0.2, zmax=1.0,
                               colorscale="Blues", colorbar={"title": "kappa"}, hoverinfo="skip"))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top")
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def peers_hypnogram_figure(ours: np.ndarray, comparison: PeerComparison, *, expert: np.ndarray | None = None,
                           start: datetime | None = None, epoch_seconds: float = 30.0,
                           height: int | None = None) -> go.Figure:  # fmt: skip
    """Stacked hypnograms: ours, each peer that staged the night, then the expert when given.

    A 3-class peer is drawn on three levels (W, REM, NREM) and labelled W/NREM/REM; unscored
    epochs leave gaps; REM is overdrawn thicker in the REM colour as on the hypnogram page.
    """
    tracks: list[tuple[str, np.ndarray, int]] = [(OURS, np.asarray(ours), 5)]
    tracks += [(k, r.stages, r.n_classes) for k, r in comparison.peers.items() if r.applied]
    if expert is not None and (np.asarray(expert) >= 0).any():
        tracks.append((EXPERT, np.asarray(expert), 5))
    n = max(len(s) for _, s, _ in tracks)
    x, xlabel = time_axis(n, start, epoch_seconds)
    fig = go.Figure()
    ticks_y: list[float] = []
    ticks_t: list[str] = []
    for k, (key, stages, n_classes) in enumerate(tracks):
        offset = -_GAP * k
        s = np.asarray(stages, dtype=np.int64)
        levels = _LEVEL_3 if n_classes == 3 else _LEVEL
        y = np.array([levels.get(int(v), np.nan) for v in s], dtype=float) + offset
        names = peer_labels(s, n_classes) if n_classes == 3 else [STAGE_NAMES[v] if v >= 0 else "?" for v in s]
        names = [v or "?" for v in names]
        title = _name(key) + (" (W/NREM/REM)" if n_classes == 3 else "")
        fig.add_trace(go.Scatter(x=x[: len(s)], y=y, mode="lines", name=title, customdata=names,
                                 line={"shape": "hv", "width": 1.4, "color": _TRACK_COLOURS.get(key, "#555555")},
                                 hovertemplate=f"{title}: %{{customdata}}<extra></extra>"))  # fmt: skip
        rem = np.where(s == REM, y, np.nan)
        fig.add_trace(go.Scatter(x=x[: len(s)], y=rem, mode="lines", showlegend=False, hoverinfo="skip",
                                 line={"shape": "hv", "width": 5, "color": STAGE_COLORS["REM"]}))  # fmt: skip
        fig.add_annotation(x=0, xref="paper", y=offset + 4.6, text=f"<b>{title}</b>", showarrow=False, xanchor="left")
        if n_classes == 3:
            ticks_y += [4 + offset, 3 + offset, 1 + offset]
            ticks_t += ["W", "REM", "NREM"]
        else:
            ticks_y += [4 + offset, 3 + offset, 2 + offset, 1 + offset, 0 + offset]
            ticks_t += ["W", "REM", "N1", "N2", "N3"]
    bottom = -_GAP * (len(tracks) - 1)
    fig.update_yaxes(tickvals=ticks_y, ticktext=ticks_t, range=[bottom - 0.8, 5.2], fixedrange=True, showgrid=False)
    fig.update_xaxes(title=xlabel)
    fig.update_layout(height=height or 110 + 105 * len(tracks), margin={"l": 10, "r": 10, "t": 10, "b": 40},
                      hovermode="x unified", showlegend=False)  # fmt: skip
    return fig
