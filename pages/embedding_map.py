"""Embedding map page: the shipped cohort or the user's own in 2-D, the loaded night on top, the site shortcut."""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import app_state as C
import s2v_core.experiments as ex
from s2v_core.errors import S2VError
from s2v_core.evaluation.shortcut import modality_set, probe_columns, table_site_score
from s2v_core.inference import embed as inference_embed
from s2v_core.sanitize.text import markdown_safe
from s2v_core.shipped import embeddings_dir, experiments_dir
from s2v_core.stages import STAGE_NAMES
from s2v_core.views import embedding_map as em
from s2v_core.views.plots import STAGE_COLORS

ROOT = Path(__file__).resolve().parents[1]
METHOD_NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
# The classifier view comes first and is the default: its checkpoint ships, so the loaded night can be placed on
# it; the pretrained backbones of the DASH / InfoNCE views are not shipped (their size, and they are rebuilt by
# scripts/train_shipped_model.sh), so on a fresh install those maps cannot take the loaded night.
VIEWS = {"classifier": "Classifier", "side": "DASH vs InfoNCE", "dash": "DASH", "infonce": "InfoNCE"}
MAX_OVERLAY_EPOCHS = 400  # loaded-night epochs drawn on the map (evenly spaced over the night)
SITE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
SEX_COLORS = {"F": "#CC79A7", "M": "#0072B2"}
SPLIT_COLORS = {"train": "#999999", "val": "#E69F00", "test": "#009E73"}

SOURCES = {
    "shipped": "Shipped cohort (48 synthetic nights)",
    "upload": "Upload `s2v embed` output",
    "server": "A store or Parquet on this server",
}
K_SOURCE = "map_source"
K_PARQUET = "map_own_parquet"  # uploaders: their files are kept with C.remember_upload (see app_state)
K_META = "map_own_metadata"
K_OPENED = "map_server_opened"  # ("offered", name) or ("typed", text): the server cohort opened last
ENV_DATA_DIRS = "S2V_DATA_DIRS"  # os.pathsep-separated folders whose stores and `s2v embed` Parquet files are offered
ENV_ANY_DATA_PATH = "S2V_ALLOW_ANY_DATA_PATH"  # "1": a typed server path may be opened too (single-user local use)
MAX_STORE_RESULTS = 4  # embedded stores kept in memory (shared by sessions, keyed by store, split and model)
EPOCH_PROBE_REPEATS = (0, 1)  # fold shuffles of the (slower) per-epoch probe; nights use five


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
def _colour_kind(colour: str) -> str:
    return "numeric" if colour == "age" else "stage" if colour in ("stage", "predicted") else "category"


def _colour_groups(frame: pd.DataFrame, colour: str, kind: str) -> list[tuple[str, np.ndarray, str]]:
    """(legend name, row mask, colour) per category of a categorical colour column."""
    if kind == "stage":
        codes = frame[colour].fillna(-1).astype(int).to_numpy()
        groups = [(name, codes == code, STAGE_COLORS[name]) for code, name in enumerate(STAGE_NAMES)]
        groups.append(("unscored", (codes < 0) | (codes > 4), STAGE_COLORS["?"]))
        return [g for g in groups if g[1].any()]
    values = frame[colour].astype(object).where(frame[colour].notna(), "unknown").astype(str)
    cats = sorted(values.unique())
    palette = {"sex": SEX_COLORS, "split": SPLIT_COLORS}.get(colour, {})
    return [(em.plot_text(c), (values == c).to_numpy(), palette.get(c, SITE_COLORS[i % len(SITE_COLORS)]))
            for i, c in enumerate(cats)]


def map_figure(frame: pd.DataFrame, coords: np.ndarray, colour: str, level: str,
               overlay: np.ndarray | None = None, overlay_text: list[str] | None = None,
               overlay_stages: np.ndarray | None = None, kind: str | None = None) -> go.Figure:
    """Scatter of the cohort (customdata = row number), plus the loaded night's points.

    ``kind`` is how ``colour`` is drawn: "numeric" (a colour scale), "stage" or "category"
    (default: from the column's name, as on the shipped map).
    """
    kind = kind or _colour_kind(colour)
    if colour not in frame.columns:
        kind = "single"
    fig = go.Figure()
    hover = np.asarray(em.hover_text(frame, level), dtype=object)
    rows = np.arange(len(frame))
    size = 6 if level == "epochs" else 10
    if kind == "numeric":
        fig.add_trace(go.Scatter(
            x=coords[:, 0], y=coords[:, 1], mode="markers", name="cohort", customdata=rows,
            text=hover, hovertemplate="%{text}<extra></extra>",
            marker={"size": size, "color": pd.to_numeric(frame[colour], errors="coerce"), "colorscale": "Viridis",
                    "opacity": 0.8, "colorbar": {"title": em.plot_text(colour), "thickness": 12}}))
    elif kind == "single":
        fig.add_trace(go.Scatter(
            x=coords[:, 0], y=coords[:, 1], mode="markers", name="cohort", customdata=rows, text=hover,
            hovertemplate="%{text}<extra></extra>", marker={"size": size, "color": SITE_COLORS[0], "opacity": 0.8}))
    else:
        for name, mask, col in _colour_groups(frame, colour, kind):
            fig.add_trace(go.Scatter(
                x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=name, customdata=rows[mask],
                text=hover[mask], hovertemplate="%{text}<extra></extra>",
                marker={"size": size, "color": col, "opacity": 0.8}))
    if overlay is not None and len(overlay):
        if kind == "stage" and overlay_stages is not None:
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


def _overlay_points(emb: np.ndarray, cov: np.ndarray, night, level: str, subset) -> tuple[np.ndarray, list, np.ndarray]:
    """The loaded night's points: its night vector, or its covered epochs (evenly thinned)."""
    if level == "nights":
        return inference_embed.pool_epochs(emb, cov)[None, :], [f"loaded night ({', '.join(subset)})"], np.array([-1])
    ok = np.flatnonzero((cov > 0) & np.isfinite(emb).all(axis=1))
    if len(ok) > MAX_OVERLAY_EPOCHS:
        ok = ok[np.linspace(0, len(ok) - 1, MAX_OVERLAY_EPOCHS).round().astype(int)]
    stages = night.stages[ok].astype(int)
    text = [f"loaded night, epoch {j} ({STAGE_NAMES[s] if s >= 0 else 'unscored'})" for j, s in zip(ok, stages, strict=True)]
    return emb[ok], text, stages


def _overlay_for(model: str, doc: dict, level: str, loaded, subset) -> tuple[np.ndarray, list, np.ndarray] | None:
    """The loaded night's embeddings for ``model`` (all epochs or the night vector), or None."""
    info = doc["models"][model]
    path = ROOT / info["checkpoint"]
    if not (path / "model.safetensors").exists():
        st.info(f"{em.MODEL_LABELS[model]}: its checkpoint `{info['checkpoint']}` is not on this machine "
                "(the pretrained backbones are not shipped; `bash scripts/train_shipped_model.sh` rebuilds "
                "them), so the loaded night cannot be placed on this map. The **Classifier** view places it.")
        return None
    if model == "classifier":
        from s2v_core.inference.predict import model_id

        if model_id(path) != info["model_id"]:
            st.warning(f"`{info['checkpoint']}` is now {model_id(path)}, but the cohort map was made with "
                       f"{info['model_id']}: re-run scripts/export_cohort_embeddings.py before comparing.")
    obj = _overlay_model(model, str(path), str((path / "model.safetensors").stat().st_mtime_ns))
    emb, cov = _night_embeddings(loaded.key, model, tuple(subset), loaded.night, obj)
    return _overlay_points(emb, cov, loaded.night, level, subset)


def _selected_rows(event, frame: pd.DataFrame, label: str, level: str, overlay_text: list | None) -> pd.DataFrame:
    points = (event or {}).get("selection", {}).get("points", [])
    ids = [p["customdata"] for p in points if p.get("customdata") is not None]
    ids = [int(i[0] if isinstance(i, list) else i) for i in ids]
    out = em.selection_table(frame, ids, level)
    out.insert(0, "model", label)
    night_pts = [-1 - i for i in ids if i < 0]
    if night_pts and overlay_text:
        extra = pd.DataFrame({"model": label, "night": [overlay_text[i] for i in night_pts]})
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
    return _selected_rows(event, frame, VIEWS[model], level, over_text)


def _loaded_night_and_subset(overlay_on: bool):
    loaded, subset = None, ()
    if overlay_on:
        loaded = C.night_or_explain()
        if loaded is not None:
            subset = C.active_modalities(loaded)
    return loaded, subset


def _show_selection(selections: list[pd.DataFrame], level: str) -> None:
    chosen = pd.concat(selections, ignore_index=True) if selections else pd.DataFrame()
    st.subheader(f"Selected {level}")
    if chosen.empty:
        st.caption("Nothing selected: draw a lasso or a box on a map (the lasso is the default drag tool).")
    else:
        st.dataframe(chosen, hide_index=True, width="stretch")


def render() -> None:
    st.title("Embedding map")
    c1, c2 = st.columns([3.2, 1.3])
    source = c1.radio("Cohort", list(SOURCES), format_func=SOURCES.get, horizontal=True, key=K_SOURCE,
                      help="the shipped synthetic training cohort, or your own: the Parquet tables `s2v embed` "
                           "writes, or a cohort store (`s2v prepare`) that the app embeds with the model in use")
    method = c2.radio("Projection", list(em.METHODS), format_func=METHOD_NAMES.get, horizontal=True, key="map_method")
    if source == "shipped":
        _render_shipped(method)
    else:
        _render_own(source, method)


def _render_shipped(method: str) -> None:
    try:
        doc = em.load_site_scores()
    except S2VError as exc:
        C.show_error(exc)
        return
    st.caption("Each point is a night (or a 30-s epoch) of the 48-night synthetic training cohort, embedded by the "
               "shipped classifier (gated fusion) or by a pretrained backbone (encoder states averaged over the "
               "modalities present). Select points with the lasso or box to list them. A map that clusters "
               "by site rather than by stage is a shortcut the model could exploit.")
    c1, c3, c4 = st.columns([2.2, 1, 1.2])
    view = c1.radio("Model", list(VIEWS), format_func=VIEWS.get, horizontal=True, key="map_view",
                    help="the loaded night can be overlaid on the Classifier map; the DASH and InfoNCE maps need "
                         "the pretrained backbones, which are not shipped")
    level = c3.radio("Level", list(em.LEVELS), horizontal=True, key="map_level")
    colours = ["stage", "site", "age", "sex", "split"] if level == "epochs" else ["site", "age", "sex", "split"]
    colour = c4.selectbox("Colour by", colours, key=f"map_colour_{level}")
    overlay_on = st.toggle("Overlay the loaded night (active modalities from the sidebar)", key="map_overlay")
    loaded, subset = _loaded_night_and_subset(overlay_on)
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
    _show_selection(selections, level)
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


# --- the user's own cohort ---------------------------------------------------------------------
@st.cache_data(show_spinner="Reading the embeddings...", max_entries=4)
def _own_from_upload(name: str, digest: str, _data: bytes) -> em.OwnCohort:
    # The bytes are identified by their digest; written only to a private temporary folder, removed after reading.
    with tempfile.TemporaryDirectory(prefix="s2v-upload-") as tmp:
        path = Path(tmp) / "embeddings.parquet"
        path.write_bytes(_data)
        return em.cohort_from_table(em.read_embedding_table(path, Path(name).name), f"the uploaded {Path(name).name}")


@st.cache_data(show_spinner="Reading the metadata...", max_entries=4)
def _metadata_from_upload(name: str, digest: str, _data: bytes) -> tuple[pd.DataFrame, dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="s2v-upload-") as tmp:
        path = Path(tmp) / Path(name).name  # its name: messages name the file
        path.write_bytes(_data)
        return em.read_metadata_table(path)


@st.cache_data(show_spinner="Reading the embeddings...", max_entries=4)
def _own_from_path(path: str, label: str, _stamp: str) -> em.OwnCohort:
    return em.cohort_from_table(em.read_embedding_table(path, label), label)


@st.cache_data(show_spinner=False, max_entries=16)
def _joined(key: str, meta_digest: str, _cohort: em.OwnCohort, _meta) -> em.OwnCohort:
    return em.with_metadata(_cohort, _meta)


@st.cache_data(show_spinner="Fitting the map (cached afterwards; the first UMAP fit of a session compiles numba "
                            "code and can take a minute or more)...", max_entries=24)
def _own_fit(key: str, level: str, method: str, night_key: str, subset: tuple[str, ...], _x: np.ndarray,
             _new: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    proj = em.project(_x, method, seed=0, new=_new)
    return proj.coords, proj.new_coords


@st.cache_data(show_spinner="Running the site-shortcut probe (cross-validated logistic regression)...",
               max_entries=32)
def _own_probe(key: str, level: str, by: str, modalities: tuple[str, ...], _frame: pd.DataFrame) -> dict:
    seeds = EPOCH_PROBE_REPEATS if level == "epochs" else (0, 1, 2, 3, 4)
    return table_site_score(_frame, by, modalities=modalities or None, seeds=seeds)


@st.cache_resource(show_spinner=False)
def _store_results() -> tuple[threading.Lock, OrderedDict]:
    """Embedded stores, shared by sessions: (store, manifest stamp, split, model id) -> OwnCohort."""
    return threading.Lock(), OrderedDict()


def _file_stamp(path: Path) -> str:
    st_ = path.stat()
    return f"{st_.st_size}:{st_.st_mtime_ns}"


def _store_cohort(path: Path, label: str, split: str | None) -> tuple[em.OwnCohort, str]:
    """The store's nights embedded with the classifier in use (progress bar; kept for later runs), and a key."""
    model, _, mid = C.get_model()
    key = (str(path.resolve()), _file_stamp(path / "manifest.csv"), split, mid)
    lock, done = _store_results()
    with lock:
        if key in done:
            done.move_to_end(key)
            return done[key], repr(key)
    bar = st.progress(0.0, text="Embedding the store's nights...")

    def progress(i: int, n: int) -> None:
        bar.progress(i / n, text=f"Embedding night {i} of {n} with {C.model_label()}...")

    epochs, nights, skipped = em.embed_store(path, model, split=split, progress=progress)
    bar.empty()
    cohort = em.cohort_from_store(epochs, nights, label, skipped)
    with lock:
        done[key] = cohort
        while len(done) > MAX_STORE_RESULTS:
            done.popitem(last=False)
    return cohort, repr(key)


def _data_roots() -> list[Path]:
    return [Path(e.strip()).expanduser() for e in os.environ.get(ENV_DATA_DIRS, "").split(os.pathsep) if e.strip()]


def any_data_path_allowed() -> bool:
    """Whether a typed server path may be opened (off unless S2V_ALLOW_ANY_DATA_PATH is set)."""
    return os.environ.get(ENV_ANY_DATA_PATH, "").strip().lower() in {"1", "true", "yes", "on"}


@st.cache_data(show_spinner="Looking for cohorts on this server...", ttl=60)
def _offered(roots: tuple[str, ...]) -> dict[str, str]:
    """Display name -> path of each store and `s2v embed` Parquet under the allow-listed folders.

    Users pick a name; the path behind it never leaves the server, and no name a user sends is a path.
    """
    out: dict[str, str] = {}
    for root in map(Path, roots):
        for path in em.cohorts_under(root):
            rel = path.relative_to(root).as_posix()
            name = root.name if rel == "." else f"{root.name}/{rel}"
            unique, k = name, 2
            while unique in out:
                unique, k = f"{name} ({k})", k + 1
            out[unique] = str(path)
    return out


def _typed_failure(text: str, exc: Exception) -> S2VError:
    """One message for every failure of a typed path, saying nothing about the server's files."""
    incident = C.new_incident_id()
    C.log.warning("incident %s: cohort path %r could not be opened: %s", incident, text, exc,
                  exc_info=(type(exc), exc, exc.__traceback__), extra={"incident": incident})
    return S2VError("that path could not be opened as a cohort store (a folder written by `s2v prepare`) or an "
                    f"`s2v embed` Parquet table; incident {incident}, the details are in the server log")


def _open_server_cohort(opened: tuple[str, str], split: str | None) -> tuple[em.OwnCohort, str]:
    """The opened store (embedded) or Parquet, and the key of everything derived from it."""
    kind, value = opened
    if kind == "offered":
        found = _offered(tuple(map(str, _data_roots()))).get(value)
        if found is None:
            raise S2VError("that cohort is not one this server offers (any more); choose one from the list")
        path, label = Path(found), value
    else:
        if not any_data_path_allowed():
            raise S2VError(f"opening a typed path on the server is switched off here; ask for {ENV_DATA_DIRS}")
        path, label = Path(value.strip()).expanduser(), Path(value.strip()).name or "the cohort"
    try:
        if path.is_dir():
            return _store_cohort(path, label, split)
        if not path.is_file():
            raise S2VError("no such store or file")
        stamp = _file_stamp(path)
        return _own_from_path(str(path), label, stamp), f"file:{path.resolve()}:{stamp}"
    except Exception as exc:
        if kind == "typed":
            raise _typed_failure(value, exc) from None
        raise


def _choose_server_cohort() -> tuple[tuple[str, str] | None, str | None]:
    """The offered names (and a typed path where allowed); returns what was opened and the store split."""
    roots = _data_roots()
    offered = _offered(tuple(map(str, roots))) if roots else {}
    if offered:
        c = st.columns([3, 1], vertical_alignment="bottom")
        name = c[0].selectbox("Cohorts on this server", list(offered), key="map_server_choice",
                              help=f"cohort stores (`s2v prepare`) and `s2v embed` Parquet tables in the folders "
                                   f"listed in {ENV_DATA_DIRS}, up to two levels down")
        if c[1].button("Open", key="map_server_open"):
            st.session_state[K_OPENED] = ("offered", name)
    elif not any_data_path_allowed():
        st.info(f"This server offers no cohort folders. Set {ENV_DATA_DIRS} to folders holding cohort stores "
                f"(`s2v prepare`) or `s2v embed` Parquet tables (several separated by '{os.pathsep}'), or upload "
                "the Parquet instead.")
    if any_data_path_allowed():
        c = st.columns([3, 1], vertical_alignment="bottom")
        text = c[0].text_input(f"Or a store folder or Parquet file on this machine ({ENV_ANY_DATA_PATH} is set: for "
                               "single-user local use)", key="map_server_path")
        if c[1].button("Open", key="map_server_path_open") and text.strip():
            st.session_state[K_OPENED] = ("typed", text)
    split = st.selectbox("Split (stores)", ["all", "train", "val", "test"], key="map_store_split",
                         help=f"a store is embedded here with the classifier in use, at most {em.MAX_STORE_NIGHTS} "
                              "nights (about 2 s per 8-h night); larger stores: `s2v embed STORE --out x.parquet`")
    return st.session_state.get(K_OPENED), None if split == "all" else split


def _own_cohort(source: str) -> tuple[em.OwnCohort, str] | None:
    """The chosen own cohort with any metadata CSV joined, and its cache key; None after saying why."""
    kept = st.session_state.get(C.K_KEPT_UPLOADS, {})
    if source == "upload":
        st.caption("Upload the per-night table `s2v embed` writes (OUT_nights.parquet) or the per-epoch one "
                   f"(OUT.parquet). Files are read on this machine only. Upload limit {C.MAX_UPLOAD_MB} MB.")
        st.file_uploader("`s2v embed` Parquet", type=["parquet"], key=K_PARQUET, on_change=C.remember_upload,
                         args=(K_PARQUET,))
    else:
        opened, split = _choose_server_cohort()
    st.file_uploader("Metadata CSV (optional): a night id column (night, nsrrid, ...) and site, age, sex or any "
                     "other column to colour or probe by", type=["csv", "tsv", "txt"], key=K_META,
                     on_change=C.remember_upload, args=(K_META,))
    up, meta = kept.get(K_PARQUET), kept.get(K_META)
    in_use = [f"**{markdown_safe(f.name)}**" for f, k in ((up, K_PARQUET), (meta, K_META))
              if f is not None and st.session_state.get(k) is None and (k == K_META or source == "upload")]
    if in_use:
        st.caption(f"In use: {' and '.join(in_use)} (upload another file to replace it).")
    if source == "upload":
        if up is None:
            st.info("Upload an `s2v embed` Parquet to see your cohort on the map.")
            return None
        cohort, key = _own_from_upload(up.name, up.digest, up.data), f"up:{up.digest[:16]}"
    else:
        if opened is None:
            return None
        cohort, key = _open_server_cohort(opened, split)
    if meta is not None:
        cohort = _joined(key, meta.digest, cohort, _metadata_from_upload(meta.name, meta.digest, meta.data))
        key += f":meta:{meta.digest[:16]}"
    return cohort, key


def _own_overlay(cohort: em.OwnCohort, level: str, loaded, subset, width: int):
    """The loaded night embedded by the classifier in use, if its width matches the cohort's; else None."""
    model, _, mid = C.get_model()
    emb, cov = _night_embeddings(loaded.key, mid, tuple(subset), loaded.night, model)
    if emb.shape[1] != width:
        st.info(f"The loaded night's embeddings from {markdown_safe(C.model_label())} have {emb.shape[1]} dimensions, "
                f"the cohort's {width}: it was embedded by another model, so the night cannot be placed on it. "
                "Load that model on the Model page.")
        return None
    return _overlay_points(emb, cov, loaded.night, level, subset)


def _own_map(cohort: em.OwnCohort, key: str, level: str, method: str, column) -> pd.DataFrame:
    frame = cohort.table(level)
    options = em.colour_options(frame, level)
    colours = list(options) or ["(nothing to colour by)"]
    colour = column.selectbox("Colour by", colours, key=f"map_own_colour_{level}",
                          index=colours.index("site") if "site" in colours and level == "nights" else 0)
    overlay_on = st.toggle("Overlay the loaded night (embedded by the classifier in use; active modalities from the "
                           "sidebar)", key="map_overlay")
    loaded, subset = _loaded_night_and_subset(overlay_on)
    x = em.embedding_matrix(frame)
    over, over_text, over_stages, night_key = None, None, None, ""
    if overlay_on and loaded is not None and subset:
        found = _own_overlay(cohort, level, loaded, subset, x.shape[1])
        if found is not None:
            over, over_text, over_stages = found
            night_key = loaded.key
    coords, new = _own_fit(key, level, method, night_key, tuple(subset) if night_key else (), x, over)
    st.markdown(f"**{markdown_safe(cohort.source)}**: {METHOD_NAMES[method]} of {len(frame):,} {level}")
    fig = map_figure(frame, coords, colour, level, new, over_text, over_stages, kind=options.get(colour, "single"))
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            key=f"map_own_{level}")
    return _selected_rows(event, frame, "yours", level, over_text)


def _own_probe_section(cohort: em.OwnCohort, key: str, level: str) -> None:
    frame = cohort.table(level)
    st.subheader("Site shortcut on your cohort")
    columns = probe_columns(frame)
    if not columns:
        st.info("No column to probe: the probe predicts a column with 2 to 20 values (site, sex, ...). Add a "
                "metadata CSV with a site column.")
        return
    c1, c2 = st.columns(2)
    by = c1.selectbox("Predict", columns, key="map_probe_by", index=columns.index("site") if "site" in columns else 0,
                      help="the probe predicts this column from the embeddings; lower balanced accuracy is better")
    mods = ["all"]
    if "modalities" in frame.columns:
        sets = frame.groupby(frame["modalities"].map(lambda t: ",".join(modality_set(t))))["night"].nunique()
        mods += [m for m in sets.sort_values(ascending=False).index if m] if len(sets) > 1 else []
    mod = c2.selectbox("Nights embedded from", mods, key="map_probe_mods",
                       format_func=lambda m: "all modality sets" if m == "all" else m,
                       help="sites that recorded different sensors are told apart by the sensors alone; one "
                            "modality set at a time removes that cue")
    if level == "epochs" and not st.toggle("Run the probe on epochs (slower: about a minute on one core)",
                                           key="map_probe_epochs"):
        return
    try:
        res = _own_probe(key, level, by, () if mod == "all" else tuple(mod.split(",")), frame)
    except S2VError as exc:  # too few subjects of a value, and such: a limit of these rows, not a failure
        st.warning(markdown_safe(C.public_message(f"The probe cannot run on these rows: {exc}")))
        return
    lo, hi = res["ci_folds"]
    rows = f"{res['n_samples']:,} {level}" + (f" of {res['n_nights']} nights" if level == "epochs" else "")
    m1, m2, m3 = st.columns(3)
    m1.metric(f"{markdown_safe(by)} balanced accuracy (lower is better)", f"{res['balanced_accuracy']:.2f}",
              help=f"95% interval over {res['groups']}-grouped folds [{lo:.2f}, {hi:.2f}]")
    m2.metric("95% interval over folds", f"{lo:.2f} to {hi:.2f}")
    m3.metric("Chance", f"{res['chance']:.2f}", help=f"1 / {res['n_sites']} values")
    classes = ", ".join(f"{markdown_safe(k)} {v}" for k, v in res["classes"].items())
    st.caption(f"Logistic regression on standardised embeddings, {res['n_splits']}-fold cross-validation grouped by "
               f"{res['groups']} (all rows of a {res['groups']} in one fold), repeated {res['n_repeats']} times, on "
               f"{rows} ({classes}). Shortcut score {res['shortcut_score']:.2f} (0 at chance, 1 when "
               f"{markdown_safe(by)} is perfectly decodable). Same probe: `s2v site-probe EMBEDDINGS --by "
               f"{markdown_safe(by)}`.")
    d = res["dropped"]
    if d["rare_values"]:
        st.caption(f"Left out, seen in fewer than 2 {res['groups']}s: "
                   f"{', '.join(markdown_safe(v) for v in d['rare_values'][:8])}.")
    if d["missing_value"]:
        st.caption(f"{d['missing_value']} row(s) without a value of {markdown_safe(by)} left out.")
    if res["modality_confound"]:
        st.warning(f"The modality sets differ between values of {markdown_safe(by)}: the probe may recognise which "
                   "sensors a night has rather than where it was recorded. Choose one modality set above to compare.")


def _render_own(source: str, method: str) -> None:
    with C.guarded("reading your cohort") as g:
        found = _own_cohort(source)
    if g.failed or found is None:
        return
    cohort, key = found
    for text in cohort.warnings:
        st.warning(markdown_safe(text))
    for note in cohort.notes:
        st.caption(markdown_safe(note))
    c1, c2 = st.columns([2.2, 1.2])
    level = c1.radio("Level", list(cohort.levels), horizontal=True, key="map_own_level",
                     help="a per-night table has nights only; a per-epoch table has both")
    with C.guarded("drawing the map of your cohort") as g:
        selection = _own_map(cohort, key, level, method, c2)
    if not g.failed:
        _show_selection([selection], level)
    with C.guarded("running the site-shortcut probe"):
        _own_probe_section(cohort, key, level)


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
