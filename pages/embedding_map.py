"""Embedding map page: the shipped cohort in 2-D, the loaded night on top, and the site shortcut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import app_state as C
import s2v_core.experiments as ex
from s2v_core.errors import S2VError
from s2v_core.inference import embed as inference_embed
from s2v_core.shipped import embeddings_dir, experiments_dir
from s2v_core.stages import STAGE_NAMES
from s2v_core.views import embedding_map as em
from s2v_core.views.plots import STAGE_COLORS

ROOT = Path(__file__).resolve().parents[1]
METHOD_NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
VIEWS = {"dash": "DASH", "infonce": "InfoNCE", "classifier": "Classifier", "side": "DASH vs InfoNCE"}
MAX_OVERLAY_EPOCHS = 400  # loaded-night epochs drawn on the map (evenly spaced over the night)
SITE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
SEX_COLORS = {"F": "#CC79A7", "M": "#0072B2"}
SPLIT_COLORS = {"train": "#999999", "val": "#E69F00", "test": "#009E73"}


# --- cached data ------------------------------------------------------------------------------
def _stamp(level: str) -> str:
    path = embeddings_dir() / f"{level}.parquet"
    return str(path.stat().st_mtime_ns) if path.exists() else ""


@st.cache_data(show_spinner="Reading the cohort embeddings...", max_entries=8)
def _cohort(level: str, model: str, _stamp: str) -> pd.DataFrame:
    return em.load_shipped(level, model)


@st.cache_resource(show_spinner="Loading the model for the overlay...", max_entries=3)
def _overlay_model(model: str, path: str, _stamp: str):
    if model == "classifier":
        from s2v_core.inference.predict import load_classifier

        return load_classifier(path)[0]
    return inference_embed.load_backbone(path)


@st.cache_data(show_spinner="Embedding the loaded night...", max_entries=16)
def _night_embeddings(night_key: str, model: str, subset: tuple[str, ...], _night, _model_obj):
    emb, cov, _ = inference_embed.epoch_embeddings(_model_obj, _night, subset)
    return emb, cov


@st.cache_data(show_spinner="Fitting the map with the loaded night (cached afterwards; the first UMAP fit of a "
                            "session compiles numba code and can take a minute or more)...", max_entries=24)
def _fit(model: str, level: str, method: str, night_key: str, subset: tuple[str, ...], stamp: str,
         _x: np.ndarray, _new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proj = em.project(_x, method, seed=0, new=_new)
    return proj.coords, proj.new_coords


# --- figure ----------------------------------------------------------------------------------
def _colour_groups(frame: pd.DataFrame, colour: str) -> list[tuple[str, np.ndarray, str]]:
    """(legend name, row mask, colour) per category of a categorical colour column."""
    if colour == "stage":
        return [(name, (frame["stage"] == code).to_numpy(), STAGE_COLORS[name])
                for code, name in enumerate(STAGE_NAMES) if (frame["stage"] == code).any()]
    values = frame[colour].fillna("unknown").astype(str)
    cats = sorted(values.unique())
    palette = {"sex": SEX_COLORS, "split": SPLIT_COLORS}.get(colour, {})
    return [(c, (values == c).to_numpy(), palette.get(c, SITE_COLORS[i % len(SITE_COLORS)]))
            for i, c in enumerate(cats)]


def _hover(frame: pd.DataFrame, level: str) -> list[str]:
    age = frame["age"].map(lambda a: "?" if pd.isna(a) else f"{a:.0f}")
    text = frame["night"] + "<br>site " + frame["site"].fillna("?") + ", age " + age + ", sex " + \
        frame["sex"].fillna("?") + ", " + frame["split"]
    if level == "epochs":
        stage = frame["stage"].map(lambda s: STAGE_NAMES[s] if 0 <= s < 5 else "?")
        text = text + "<br>epoch " + frame["epoch"].astype(str) + " (" + stage + ")"
    return list(text)


def map_figure(frame: pd.DataFrame, coords: np.ndarray, colour: str, level: str,
               overlay: np.ndarray | None = None, overlay_text: list[str] | None = None,
               overlay_stages: np.ndarray | None = None) -> go.Figure:
    """Scatter of the cohort (customdata = row number), plus the loaded night's points."""
    fig = go.Figure()
    hover = np.asarray(_hover(frame, level), dtype=object)
    rows = np.arange(len(frame))
    size = 6 if level == "epochs" else 10
    if colour == "age":
        fig.add_trace(go.Scatter(
            x=coords[:, 0], y=coords[:, 1], mode="markers", name="cohort", customdata=rows,
            text=hover, hovertemplate="%{text}<extra></extra>",
            marker={"size": size, "color": frame["age"], "colorscale": "Viridis", "opacity": 0.8,
                    "colorbar": {"title": "age", "thickness": 12}}))
    else:
        for name, mask, col in _colour_groups(frame, colour):
            fig.add_trace(go.Scatter(
                x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=name, customdata=rows[mask],
                text=hover[mask], hovertemplate="%{text}<extra></extra>",
                marker={"size": size, "color": col, "opacity": 0.8}))
    if overlay is not None and len(overlay):
        if colour == "stage" and overlay_stages is not None:
            marker_col = [STAGE_COLORS[STAGE_NAMES[s]] if 0 <= s < 5 else STAGE_COLORS["?"] for s in overlay_stages]
        else:
            marker_col = "#000000"
        fig.add_trace(go.Scatter(
            x=overlay[:, 0], y=overlay[:, 1], mode="markers", name="loaded night",
            customdata=-1 - np.arange(len(overlay)), text=overlay_text, hovertemplate="%{text}<extra></extra>",
            marker={"size": 14 if level == "nights" else 8, "symbol": "diamond", "color": marker_col,
                    "line": {"color": "#000000", "width": 1.5}}))
    fig.update_layout(height=500, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.05}, dragmode="lasso",
                      xaxis={"showticklabels": False, "title": None}, yaxis={"showticklabels": False, "title": None})
    return fig


# --- page pieces -----------------------------------------------------------------------------
def _fmt(score: dict) -> str:
    lo, hi = score["ci_folds"]
    return f"{score['balanced_accuracy']:.2f} [{lo:.2f}, {hi:.2f}]"


def _score_table(doc: dict, level: str) -> pd.DataFrame:
    rows = []
    for key in em.MODEL_KEYS:
        s = doc["scores"].get(key)
        if not s:
            continue
        rows.append({
            "model": em.MODEL_LABELS[key],
            "site balanced accuracy (all modalities)": _fmt(s[level]),
            f"... from {'+'.join(doc['common_modalities'])} only": _fmt(s[f"common_{level}"]),
            "shortcut score": round(s[level]["shortcut_score"], 3),
            "chance": round(s[level]["chance"], 3),
            "n": s[level]["n_samples"],
        })
    return pd.DataFrame(rows)


def _overlay_for(model: str, doc: dict, level: str, loaded, subset) -> tuple[np.ndarray, list, np.ndarray] | None:
    """The loaded night's embeddings for ``model`` (all epochs or the night vector), or None."""
    info = doc["models"][model]
    path = ROOT / info["checkpoint"]
    if not (path / "model.safetensors").exists():
        st.info(f"{em.MODEL_LABELS[model]}: its checkpoint `{info['checkpoint']}` is not on this machine "
                "(the pretrained backbones are not shipped; `bash scripts/train_shipped_model.sh` rebuilds "
                "them), so the loaded night cannot be placed on this map.")
        return None
    if model == "classifier":
        from s2v_core.inference.predict import model_id

        if model_id(path) != info["model_id"]:
            st.warning(f"`{info['checkpoint']}` is now {model_id(path)}, but the cohort map was made with "
                       f"{info['model_id']}: re-run scripts/export_cohort_embeddings.py before comparing.")
    obj = _overlay_model(model, str(path), str((path / "model.safetensors").stat().st_mtime_ns))
    emb, cov = _night_embeddings(loaded.key, model, tuple(subset), loaded.night, obj)
    night = loaded.night
    if level == "nights":
        return inference_embed.pool_epochs(emb, cov)[None, :], [f"loaded night ({', '.join(subset)})"], np.array([-1])
    ok = np.flatnonzero((cov > 0) & np.isfinite(emb).all(axis=1))
    if len(ok) > MAX_OVERLAY_EPOCHS:
        ok = ok[np.linspace(0, len(ok) - 1, MAX_OVERLAY_EPOCHS).round().astype(int)]
    stages = night.stages[ok].astype(int)
    text = [f"loaded night, epoch {j} ({STAGE_NAMES[s] if s >= 0 else 'unscored'})" for j, s in zip(ok, stages, strict=True)]
    return emb[ok], text, stages


def _selected_rows(event, frame: pd.DataFrame, model: str, level: str, overlay_text: list | None) -> pd.DataFrame:
    points = (event or {}).get("selection", {}).get("points", [])
    ids = [p["customdata"] for p in points if p.get("customdata") is not None]
    ids = [int(i[0] if isinstance(i, list) else i) for i in ids]
    out = em.selection_table(frame, ids, level)
    out.insert(0, "model", VIEWS[model])
    night_pts = [-1 - i for i in ids if i < 0]
    if night_pts and overlay_text:
        extra = pd.DataFrame({"model": VIEWS[model], "night": [overlay_text[i] for i in night_pts]})
        out = pd.concat([out, extra], ignore_index=True)
    return out


def _one_map(model: str, level: str, method: str, colour: str, overlay_on: bool, doc: dict, loaded, subset,
             width_key: str):
    frame = _cohort(level, model, _stamp(level))
    coords = frame[[f"{method}_x", f"{method}_y"]].to_numpy(dtype=np.float32)
    over, over_text, over_stages = None, None, None
    if overlay_on and loaded is not None and subset:
        found = _overlay_for(model, doc, level, loaded, subset)
        if found is not None:
            new, over_text, over_stages = found
            coords, over = _fit(model, level, method, loaded.key, tuple(subset), _stamp(level),
                                em.embedding_matrix(frame), new)
    st.markdown(f"**{em.MODEL_LABELS[model]}**: {METHOD_NAMES[method]} of {len(frame)} {level}")
    fig = map_figure(frame, coords, colour, level, over, over_text, over_stages)
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            key=f"map_{width_key}_{model}")
    s = doc["scores"][model][level]
    lo, hi = s["shortcut_ci_folds"]
    st.metric(f"Site shortcut score, {VIEWS[model]} (lower is better)", f"{s['shortcut_score']:.2f}",
              help=f"(balanced accuracy - chance) / (1 - chance); 95% interval over probe folds [{lo:.2f}, {hi:.2f}]; "
                   f"balanced accuracy {_fmt(s)}, chance {s['chance']:.2f}")
    return _selected_rows(event, frame, model, level, over_text)


def render() -> None:
    st.title("Embedding map")
    try:
        doc = em.load_site_scores()
    except S2VError as exc:
        C.show_error(exc)
        return
    st.caption("Each point is a night (or a 30-s epoch) of the 48-night synthetic training cohort, embedded by a "
               "pretrained backbone (encoder states averaged over the modalities present) or by the shipped "
               "classifier (gated fusion). Select points with the lasso or box to list them. A map that clusters "
               "by site rather than by stage is a shortcut the model could exploit.")
    c1, c2, c3, c4 = st.columns([2.2, 1.3, 1, 1.2])
    view = c1.radio("Model", list(VIEWS), index=list(VIEWS).index("side"), format_func=VIEWS.get, horizontal=True,
                    key="map_view")
    method = c2.radio("Projection", list(em.METHODS), format_func=METHOD_NAMES.get, horizontal=True, key="map_method")
    level = c3.radio("Level", list(em.LEVELS), horizontal=True, key="map_level")
    colours = ["stage", "site", "age", "sex", "split"] if level == "epochs" else ["site", "age", "sex", "split"]
    colour = c4.selectbox("Colour by", colours, key=f"map_colour_{level}")
    overlay_on = st.toggle("Overlay the loaded night (active modalities from the sidebar)", key="map_overlay")
    loaded, subset = None, ()
    if overlay_on:
        loaded = C.night_or_explain()
        if loaded is not None:
            subset = C.active_modalities(loaded.night)
    try:
        selections = []
        if view == "side":
            left, right = st.columns(2)
            for col, model in ((left, "dash"), (right, "infonce")):
                with col:
                    selections.append(_one_map(model, level, method, colour, overlay_on, doc, loaded, subset, "side"))
        else:
            selections.append(_one_map(view, level, method, colour, overlay_on, doc, loaded, subset, "single"))
    except S2VError as exc:
        C.show_error(exc)
        return
    chosen = pd.concat(selections, ignore_index=True) if selections else pd.DataFrame()
    st.subheader(f"Selected {level}")
    if chosen.empty:
        st.caption("Nothing selected: draw a lasso or a box on a map (the lasso is the default drag tool).")
    else:
        st.dataframe(chosen, hide_index=True, width="stretch")
    st.subheader("Site shortcut per model")
    ref = doc["scores"]["dash"][level]
    st.caption(f"How well a logistic-regression probe recognises the recording site from the embeddings: balanced "
               f"accuracy over subject-grouped {ref['n_splits']}-fold cross-validation repeated {ref['n_repeats']} "
               f"times, with the 95% interval over the folds. Lower is better; chance is {ref['chance']:.2f} "
               f"({ref['n_sites']} sites). The second column uses only {', '.join(doc['common_modalities'])}, what "
               f"every site recorded: in this cohort the sensor set itself differs between sites, so the first "
               f"column also measures which sensors a night has. The shortcut score rescales the first column to "
               f"0 at chance and 1 at perfect. One pretraining run per loss: the intervals cover probe folds, "
               f"not training runs.")
    st.dataframe(_score_table(doc, level), hide_index=True, width="stretch")
    diff = doc.get("dash_minus_infonce", {})
    if level in diff and f"common_{level}" in diff:
        a, b = diff[level], diff[f"common_{level}"]
        st.markdown(
            f"**DASH minus InfoNCE**, same folds: {a['difference']:+.3f} (95% interval {a['ci_folds'][0]:+.3f} to "
            f"{a['ci_folds'][1]:+.3f}; DASH lower in {a['folds_lower']:.0%} of {a['n_folds']} folds, tied in "
            f"{a.get('folds_tied', 0):.0%}) with all "
            f"modalities; {b['difference']:+.3f} ({b['ci_folds'][0]:+.3f} to {b['ci_folds'][1]:+.3f}) from "
            f"{', '.join(doc['common_modalities'])} only. Negative means DASH is less site-decodable.")
    with st.expander("How these embeddings were made"):
        st.json({k: doc[k] for k in ("embedding", "levels", "models", "commands", "versions") if k in doc})
    _experiments()


EXPERIMENT_TEXT = {
    "losses": "DASH vs InfoNCE",
    "sweep": "DASH sensitivity",
    "scaling": "Scaling",
}
EXPERIMENT_HELP = {
    "losses": "DASH-InfoNCE against plain InfoNCE: same store, schedule and seeds.",
    "sweep": "DASH-InfoNCE with one weighting setting changed at a time: age bandwidth (years), the factor "
             "for negatives of the other sex, the factors for same/other-site negatives (default 20, 0.8, 1.3/0.8).",
    "scaling": "Modality count in pretraining (added in the order eeg, eog, emg, ecg, resp, spo2, airflow, effort, "
               "ibi; the same number of steps for every count) and model size. The anchor is EEG alone.",
}


@st.cache_data(show_spinner=False)
def _load_experiment(kind: str) -> dict | None:
    try:
        return ex.load_experiment(experiments_dir() / kind)
    except S2VError:
        return None


def _experiments() -> None:
    """Shipped `s2v experiment` results: the question the single-run scores above cannot answer."""
    found = {kind: _load_experiment(kind) for kind in ex.EXPERIMENTS}
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        return
    st.subheader("Over training seeds")
    cohort = next(iter(found.values()))["meta"].get("cohort", {})
    size = f"{cohort['nights']}-night, {len(cohort['sites'])}-site " if cohort else ""
    st.caption(f"`s2v experiment` on a separate {size}synthetic cohort: every backbone scored by the "
               "same probes on frozen embeddings (staging kappa on val + test nights, staging on a site left out, "
               "site shortcut of the modalities every night has, validation retrieval). Points are means over "
               "pretraining seeds, bars 95% t-intervals; the commands are in the README.")
    tabs = st.tabs([EXPERIMENT_TEXT[k] for k in found])
    for tab, (kind, exp) in zip(tabs, found.items(), strict=True):
        with tab:
            st.caption(EXPERIMENT_HELP[kind])
            st.plotly_chart(ex.summary_figure(kind, exp["summary"]), width="stretch", key=f"exp_{kind}")
            if exp.get("paired") is not None and len(exp["paired"]):
                st.markdown("**DASH minus InfoNCE, seed by seed** (negative site shortcut: DASH less site-decodable)")
                st.dataframe(exp["paired"].round(3), hide_index=True, width="stretch")
            cols = ["group", "n_seeds", "kappa_all", "kappa_loso", "site_shortcut", "retrieval_lift"]
            table = exp["summary"][[c for c in cols if c in exp["summary"]]]
            st.dataframe(table.round(3), hide_index=True, width="stretch")


with C.guarded("showing the Embedding map page"):
    render()
