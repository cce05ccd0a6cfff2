"""Summaries over seeds, paired differences, Markdown tables and figures of an experiment folder."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import S2VError
from s2v_core.evaluation.shortcut import mean_ci_over_seeds
from s2v_core.experiments.grid import EXPERIMENTS
from s2v_core.experiments.probes import METRICS
from s2v_core.sanitize.cells import read_csv

__all__ = [
    "load_experiment",
    "paired_losses",
    "summarise",
    "summary_figure",
    "summary_markdown",
    "write_figure",
]

log = logging.getLogger(__name__)


def summarise(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t interval over seeds of every metric, per group.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``group, order, n_seeds, preset, n_modalities, n_parameters`` and
        ``<metric>``, ``<metric>_low``, ``<metric>_high`` (bounds NaN with one seed).
    """
    rows = []
    for group, part in results.groupby("group", sort=False):
        row = {"group": group, "order": int(part["order"].iloc[0]), "n_seeds": int(len(part)),
               "preset": part["preset"].iloc[0], "n_modalities": int(part["n_modalities"].iloc[0]),
               "n_parameters": int(part["n_parameters"].iloc[0])}  # fmt: skip
        for metric in METRICS:
            values = part[metric].to_numpy(float) if metric in part else np.array([np.nan])
            values = values[np.isfinite(values)]
            if values.size:
                mean, low, high = mean_ci_over_seeds(values, level)
            else:
                mean = low = high = math.nan
            row.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


_TABLE_METRICS = {
    "losses": ("kappa_all", "kappa_common", "kappa_loso", "site_shortcut", "retrieval_lift"),
    "sweep": ("kappa_all", "kappa_common", "kappa_loso", "site_shortcut", "retrieval_lift"),
    "scaling": ("kappa_all", "kappa_anchor", "kappa_loso", "retrieval_lift"),
}


def summary_markdown(kind: str, summary: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    """``summary.md``: the summary as a Markdown table, "mean [low, high]" per metric."""

    def cell(row, metric):
        v, lo, hi = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
        if not np.isfinite(v):
            return "-"
        return f"{v:.3f}" if not np.isfinite(lo) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"

    metrics = _TABLE_METRICS[kind]
    lines = [f"# {_title(kind, summary)}", "",
             "| group | seeds | parameters | " + " | ".join(metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]  # fmt: skip
    for _, row in summary.iterrows():
        cells = [cell(row, m) for m in metrics]
        lines.append(f"| {row['group']} | {int(row['n_seeds'])} | {int(row['n_parameters']):,} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    if paired is not None and len(paired):
        lines += ["", "DASH minus InfoNCE, paired by seed:", "",
                  "| metric | difference [95% CI] | seeds | DASH lower in |", "|---|---|---|---|"]  # fmt: skip
        for _, r in paired.iterrows():
            ci = "" if not np.isfinite(r["low"]) else f" [{r['low']:+.3f}, {r['high']:+.3f}]"
            lines.append(f"| {r['metric']} | {r['dash_minus_infonce']:+.3f}{ci} | {int(r['n_seeds'])} | "
                         f"{int(r['dash_lower_in'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def paired_losses(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """DASH minus InfoNCE, seed by seed, per metric: mean, t-interval and the seeds compared."""
    dash = results[results["loss"] == "dash"].set_index("seed")
    info = results[results["loss"] == "infonce"].set_index("seed")
    seeds = sorted(set(dash.index) & set(info.index))
    rows = []
    for metric in METRICS:
        if metric not in results:
            continue
        diff = np.array([dash.loc[s, metric] - info.loc[s, metric] for s in seeds], dtype=float)
        diff = diff[np.isfinite(diff)]
        if not diff.size:
            continue
        mean, low, high = mean_ci_over_seeds(diff, level)
        rows.append({"metric": metric, "dash_minus_infonce": mean, "low": low, "high": high,
                     "n_seeds": int(diff.size), "dash_lower_in": int((diff < 0).sum())})  # fmt: skip
    return pd.DataFrame(rows)


# --- figure ---------------------------------------------------------------------------------
_PANELS = {
    "losses": ("kappa_all", "kappa_loso", "site_shortcut", "retrieval_lift"),
    "sweep": ("kappa_all", "kappa_loso", "site_shortcut", "retrieval_lift"),
    # site shortcut left out: with fewer modalities it is scored on other sensors, not comparable
    "scaling": ("kappa_all", "kappa_anchor", "kappa_loso", "retrieval_lift"),
}
_LABELS = {
    "kappa_all": "staging kappa, all modalities (probe)",
    "kappa_common": "staging kappa, common modalities (probe)",
    "kappa_anchor": "staging kappa, anchor modality alone (probe)",
    "kappa_loso": "staging kappa on an unseen site (probe, mean)",
    "site_shortcut": "site shortcut score (lower is better)",
    "retrieval_lift": "validation retrieval / chance",
}


def _series(kind: str, summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str]]:
    """(legend name, rows in x order, x column) per line of the figure."""
    if kind == "scaling":
        lines = []
        for preset, part in summary.groupby("preset", sort=False):
            part = part.sort_values("n_modalities")
            size = int(part["n_parameters"].iloc[-1]) / 1e6
            lines.append((f"{preset} ({size:.2f} M parameters)", part, "n_modalities"))
        return lines
    return [("", summary.sort_values("order"), "group")]


def _title(kind: str, summary: pd.DataFrame) -> str:
    seeds = int(summary["n_seeds"].max()) if len(summary) else 0
    title = {"losses": "DASH-InfoNCE vs plain InfoNCE", "sweep": "DASH-InfoNCE sensitivity",
             "scaling": "Scaling: modality count and model size"}[kind]  # fmt: skip
    return title + f" (mean and 95% CI over {seeds} seed{'s' if seeds != 1 else ''})"


def _errors(part: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = part[metric].to_numpy(float)
    lo, hi = part[f"{metric}_low"].to_numpy(float), part[f"{metric}_high"].to_numpy(float)
    return y, np.nan_to_num(y - lo), np.nan_to_num(hi - y)


def summary_figure(kind: str, summary: pd.DataFrame):
    """Plotly figure of a :func:`summarise` table: one panel per headline metric, CI error bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if kind not in _PANELS:
        raise S2VError(f"unknown experiment {kind!r}; choose one of {', '.join(EXPERIMENTS)}")
    panels = _PANELS[kind]
    titles = [_LABELS[p].replace(", ", ",<br>").replace(" (", "<br>(") for p in panels]  # narrow panels
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles)
    for col, metric in enumerate(panels, start=1):
        for name, part, xcol in _series(kind, summary):
            y, err_lo, err_hi = _errors(part, metric)
            x = part[xcol].astype(str if xcol == "group" else float).to_list()
            fig.add_trace(go.Scatter(
                x=x, y=y, name=name or metric, mode="markers+lines" if kind == "scaling" else "markers",
                error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True),
                legendgroup=name, showlegend=bool(name) and col == 1,
            ), row=1, col=col)  # fmt: skip
        if kind == "scaling":
            fig.update_xaxes(title_text="modalities in pretraining", row=1, col=col)
    fig.update_layout(title=_title(kind, summary), height=460, template="plotly_white",
                      margin=dict(t=120), showlegend=kind == "scaling")
    fig.update_annotations(font_size=12)
    return fig


def write_figure(kind: str, summary: pd.DataFrame, out: Path) -> None:
    """``figure.html`` (plotly, offline) and ``figure.png`` (matplotlib, static) of the summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = summary_figure(kind, summary)
    fig.update_layout(width=360 * len(_PANELS[kind]))
    (out / "figure.html").write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
    panels = _PANELS[kind]
    mfig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for name, part, xcol in _series(kind, summary):
            y, err_lo, err_hi = _errors(part, metric)
            x = part[xcol].astype(str if xcol == "group" else float).to_list()
            ax.errorbar(range(len(x)) if xcol == "group" else x, y, yerr=[err_lo, err_hi],
                        fmt="o-" if kind == "scaling" else "o", capsize=3, label=name or None)  # fmt: skip
            if xcol == "group":
                ax.set_xticks(range(len(x)), x, rotation=35, ha="right", fontsize=8)
        ax.set_title(_LABELS[metric], fontsize=9)
        if kind == "scaling":
            ax.set_xlabel("modalities in pretraining")
            if ax is axes[0, 0]:
                ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    mfig.suptitle(_title(kind, summary), fontsize=10)
    mfig.tight_layout()
    mfig.savefig(out / "figure.png", dpi=110)
    plt.close(mfig)


def load_experiment(folder: str | Path) -> dict[str, Any]:
    """An experiment folder's tables: ``kind``, ``summary``, ``results`` and (losses) ``paired``.

    Raises
    ------
    S2VError
        The folder has no ``experiment.json`` or ``summary.csv`` (not a finished experiment).
    """
    folder = Path(folder)
    meta_path, summary_path = folder / "experiment.json", folder / "summary.csv"
    if not meta_path.is_file() or not summary_path.is_file():
        raise S2VError(f"{folder}: not a finished experiment (experiment.json and summary.csv are missing)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    out = {"kind": meta.get("kind"), "meta": meta, "summary": read_csv(summary_path)}
    for name in ("results", "paired"):
        path = folder / f"{name}.csv"
        out[name] = read_csv(path) if path.is_file() else None
    return out
