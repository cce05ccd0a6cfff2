"""Embedding maps: backbone pooling, epoch sampling, projections, site score, shipped files, page."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2v_core.errors import S2VError
from s2v_core.evaluation import shortcut
from s2v_core.inference import embed as inference_embed
from s2v_core.inference.predict import load_classifier, model_id, predict_night
from s2v_core.model import HeadConfig, Sleep2Vec, Sleep2VecClassifier, get_preset
from s2v_core.model.checkpoint import save_checkpoint
from s2v_core.recording.loading import load_night
from s2v_core.shipped import embeddings_dir, shipped_night
from s2v_core.views import embedding_map as em

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def night():
    psg, hyp = shipped_night()
    return load_night(psg, hyp)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre") / "best"
    model = Sleep2Vec(get_preset("tiny"), seed=0)
    save_checkpoint(d, model, model.config)
    return d


@pytest.fixture(scope="module")
def backbone(backbone_dir):
    return inference_embed.load_backbone(backbone_dir)


# --- per-epoch embeddings -----------------------------------------------------------------------
def _hidden_per_epoch(model, night, m):
    """The encoder states of one modality for every epoch, computed directly (reference)."""
    emb, cov, used = inference_embed.backbone_epoch_embeddings(model, night, (m,))
    assert used == (m,)
    return emb, cov


def test_backbone_embedding_is_the_mean_over_valid_modalities(night, backbone):
    valid_eeg = night.epoch_valid["eeg"].copy()
    valid_eeg[10:30] = False  # EEG missing for 20 epochs
    changed = dataclasses.replace(night, epoch_valid={**night.epoch_valid, "eeg": valid_eeg})
    e_eeg, cov_eeg = _hidden_per_epoch(backbone, changed, "eeg")
    e_ibi, _ = _hidden_per_epoch(backbone, changed, "ibi")
    both, cov, used = inference_embed.backbone_epoch_embeddings(backbone, changed, ("ibi", "eeg"))
    assert used == ("eeg", "ibi") and both.shape == (night.n_epochs, backbone.config.hidden)
    assert np.isnan(e_eeg[10:30]).all() and (cov_eeg[10:30] == 0).all()  # no valid modality: NaN
    assert (cov[10:30] == 1).all() and (cov[:10] == 2).all()
    np.testing.assert_allclose(both[10:30], e_ibi[10:30], atol=1e-5)  # only ibi valid there
    np.testing.assert_allclose(both[:10], (e_eeg[:10] + e_ibi[:10]) / 2, atol=1e-5)
    assert not np.allclose(e_eeg[:10], e_ibi[:10])  # the modalities really differ


def test_backbone_embedding_does_not_depend_on_batching(night, backbone):
    a, _, _ = inference_embed.backbone_epoch_embeddings(backbone, night, window_epochs=40, max_windows=1)
    b, _, _ = inference_embed.backbone_epoch_embeddings(backbone, night, window_epochs=40, max_windows=24)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_epoch_embeddings_of_a_classifier_are_the_fused_states(night):
    clf = Sleep2VecClassifier(get_preset("tiny"), HeadConfig(), seed=0).eval()
    emb, cov, used = inference_embed.epoch_embeddings(clf, night, ("ibi", "spo2"))
    pred = predict_night(clf, night, ("ibi", "spo2"), with_embeddings=True)
    np.testing.assert_array_equal(emb, pred.embeddings)
    assert used == ("ibi", "spo2") and (cov == pred.coverage).all()
    vec = inference_embed.pool_epochs(emb, cov)
    np.testing.assert_allclose(vec, emb[cov > 0].mean(axis=0), rtol=1e-5)


def test_load_backbone_refuses_classifiers_and_missing_folders(tmp_path):
    with pytest.raises(S2VError, match="no such folder"):
        inference_embed.load_backbone(tmp_path / "nowhere")
    with pytest.raises(S2VError, match="not a pretrained backbone"):
        inference_embed.load_backbone(ROOT / "models" / "sleep2vec-small" / "classifier")


def test_backbone_rejects_modalities_the_night_lacks(night, backbone):
    no_eeg = dataclasses.replace(night, signals={k: v for k, v in night.signals.items() if k != "eeg"},
                                 epoch_valid={k: v for k, v in night.epoch_valid.items() if k != "eeg"})
    with pytest.raises(S2VError, match="cannot use eeg"):
        inference_embed.backbone_epoch_embeddings(backbone, no_eeg, ("eeg",))


# --- epoch sampling ---------------------------------------------------------------------------
def test_sample_epochs_is_stratified_bounded_and_skips_unscored():
    rng = np.random.default_rng(1)
    stages = rng.choice([-1, 0, 1, 2, 2, 2, 2, 3, 4], size=360)
    stages[:3] = 1  # a rare stage is still there
    eligible = np.ones(360, dtype=bool)
    eligible[100:150] = False
    idx = inference_embed.sample_epochs(stages, eligible, 60, seed=0)
    assert len(idx) == 60 and len(set(idx)) == 60 and np.all(np.diff(idx) > 0)
    assert (stages[idx] >= 0).all() and eligible[idx].all()
    ok = eligible & (stages >= 0)
    for code in range(5):
        expected = 60 * (stages[ok] == code).mean()
        assert abs((stages[idx] == code).sum() - expected) <= 1.5
    np.testing.assert_array_equal(idx, inference_embed.sample_epochs(stages, eligible, 60, seed=0))
    assert not np.array_equal(idx, inference_embed.sample_epochs(stages, eligible, 60, seed=1))


def test_sample_epochs_keeps_every_stage_and_short_nights_whole():
    stages = np.array([2] * 500 + [4])  # one REM epoch among 500 N2
    idx = inference_embed.sample_epochs(stages, np.ones(501, bool), 10)
    assert len(idx) == 10 and 500 in idx
    short = np.array([0, 1, -1, 2])
    np.testing.assert_array_equal(inference_embed.sample_epochs(short, np.ones(4, bool), 10), [0, 1, 3])
    with pytest.raises(ValueError):
        inference_embed.sample_epochs(short, np.ones(4, bool), 0)


# --- projection -------------------------------------------------------------------------------
def _blobs(n=40, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 1, (n, d)), rng.normal(6, 1, (n, d))])


def test_pca_projection_shapes_and_transform_of_new_points():
    x = _blobs()
    p = em.project(x, "pca", seed=0, new=x[:5])
    assert p.coords.shape == (80, 2) and p.new_coords.shape == (5, 2)
    np.testing.assert_allclose(p.new_coords, p.coords[:5], atol=1e-4)  # same points, same place
    np.testing.assert_allclose(p.transform(x[40:42]), p.coords[40:42], atol=1e-4)
    gap = np.linalg.norm(p.coords[:40].mean(0) - p.coords[40:].mean(0))
    assert gap > 5 * p.coords[:40].std(axis=0).max()  # the two blobs stay apart


def test_tsne_refits_jointly_and_cannot_transform():
    x = _blobs(n=25)
    p = em.project(x, "tsne", seed=0, new=x[:2] + 1e-3)
    assert p.coords.shape == (50, 2) and p.new_coords.shape == (2, 2)
    assert np.linalg.norm(p.new_coords - p.coords[:2], axis=1).max() < 0.5 * np.ptp(p.coords[:, 0])
    with pytest.raises(S2VError, match="t-SNE cannot place new points"):
        p.transform(x[:2])


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.zeros((10, 3)), {"method": "mds"}, "unknown projection method"),
        (np.zeros(10), {}, "2-D array"),
        (np.zeros((3, 4)), {"method": "pca"}, "at least 5 rows"),
        (np.full((10, 3), np.nan), {"method": "pca"}, "NaN"),
        (np.ones((10, 3)), {"method": "pca", "new": np.ones((2, 4))}, "dimensions"),
    ],
)
def test_projection_bad_input_is_a_clear_error(x, kwargs, match):
    with pytest.raises(S2VError, match=match):
        em.project(x, **kwargs)


@pytest.mark.slow
def test_umap_projection_transforms_new_points():
    x = _blobs(n=60)
    p = em.project(x, "umap", seed=0, new=x[:3])
    assert p.coords.shape == (120, 2) and p.new_coords.shape == (3, 2)
    centre_a, centre_b = p.coords[:60].mean(0), p.coords[60:].mean(0)
    for pt in p.transform(x[60:63]):  # points of blob B land nearer blob B
        assert np.linalg.norm(pt - centre_b) < np.linalg.norm(pt - centre_a)
    np.testing.assert_allclose(em.project(x, "umap", seed=0).coords, p.coords, atol=1e-4)


# --- site score -------------------------------------------------------------------------------
def test_site_score_separable_vs_random():
    x = _blobs(n=30)
    sites = np.repeat(["a", "b"], 30)
    subjects = np.arange(60)
    high = shortcut.site_score(x, sites, groups=subjects, seeds=(0, 1))
    assert high["balanced_accuracy"] > 0.95 and high["shortcut_score"] > 0.9
    rnd = shortcut.site_score(np.random.default_rng(3).normal(size=(60, 12)), sites, groups=subjects,
                        seeds=(0, 1, 2))
    assert rnd["balanced_accuracy"] < 0.75 and rnd["chance"] == 0.5
    lo, hi = rnd["ci_folds"]
    assert lo <= rnd["balanced_accuracy"] <= hi and len(rnd["fold_scores"]) == 3
    assert rnd["n_repeats"] == 3 and rnd["n_samples"] == 60 and rnd["n_sites"] == 2


def test_paired_difference_compares_fold_by_fold():
    rng = np.random.default_rng(4)
    sites = np.repeat(["a", "b", "c"], 20)
    subjects = np.arange(60)
    informative = rng.normal(size=(60, 6)) + 3 * (sites[:, None] == np.array(["a", "b", "c"]))[:, :1]
    noise = rng.normal(size=(60, 6))
    s_info = shortcut.site_score(informative, sites, groups=subjects, seeds=(0, 1))
    s_noise = shortcut.site_score(noise, sites, groups=subjects, seeds=(0, 1))
    d = shortcut.paired_difference(s_noise, s_info)
    assert d["difference"] < 0 and d["folds_lower"] > 0.5 and d["n_folds"] == 10
    assert d["ci_folds"][0] <= d["difference"] <= d["ci_folds"][1]
    same = shortcut.paired_difference(s_info, s_info)
    assert same["difference"] == 0 and same["folds_lower"] == 0 and same["folds_tied"] == 1
    other = shortcut.site_score(noise, sites, groups=subjects, seeds=(5, 6))
    with pytest.raises(S2VError, match="different rows or folds"):
        shortcut.paired_difference(s_noise, other)


def test_site_score_needs_two_sites():
    with pytest.raises(S2VError, match="at least 2 sites"):
        shortcut.site_score(np.zeros((10, 3)), ["a"] * 10)


# --- shipped cohort embeddings ------------------------------------------------------------------
def test_shipped_tables_have_the_expected_columns_and_rows():
    nights = em.load_shipped("nights")
    epochs = em.load_shipped("epochs")
    for level, frame in (("nights", nights), ("epochs", epochs)):
        assert set(em.META_COLUMNS[level]) <= set(frame.columns)
        assert {f"{m}_{a}" for m in em.METHODS for a in "xy"} <= set(frame.columns)
        assert set(frame["model"]) == set(em.MODEL_KEYS)
        x = em.embedding_matrix(frame)
        assert x.dtype == np.float32 and np.isfinite(x).all() and x.shape[1] == 128
        assert frame[[f"{m}_x" for m in em.METHODS]].notna().all().all()
    per_model = nights.groupby("model")["night"].apply(frozenset)
    assert len(set(per_model)) == 1 and len(per_model.iloc[0]) == 48
    assert set(nights["site"]) >= {"eu_research", "home_test", "us_hospital", "wearable"}
    keys = epochs.groupby("model").apply(lambda f: tuple(zip(f["night"], f["epoch"], strict=True)),
                                         include_groups=False)
    assert len(set(keys)) == 1  # the same sampled epochs for every model
    counts = epochs[epochs["model"] == "dash"].groupby("night").size()
    assert counts.max() <= 60 and epochs["stage"].between(0, 4).all()
    one = em.load_shipped("epochs", "infonce")
    assert len(one) == len(epochs) // 3 and (one["model"] == "infonce").all()


def test_shipped_files_are_small_and_stored_as_float16():
    import pyarrow.parquet as pq

    total = sum(f.stat().st_size for f in embeddings_dir().iterdir())
    assert total < 3_000_000
    schema = pq.read_schema(embeddings_dir() / "epochs.parquet")
    assert str(schema.field("emb_0").type) == "halffloat"


def test_shipped_site_scores_are_complete_and_match_the_shipped_classifier():
    doc = em.load_site_scores()
    for key in em.MODEL_KEYS:
        for level in ("nights", "epochs", "common_nights", "common_epochs"):
            s = doc["scores"][key][level]
            lo, hi = s["ci_folds"]
            assert 0 <= lo <= s["balanced_accuracy"] <= hi <= 1.0 + 1e-9
            assert s["chance"] == pytest.approx(1 / s["n_sites"])
    assert doc["models"]["dash"]["loss"] == "dash" and doc["models"]["infonce"]["loss"] == "infonce"
    assert doc["models"]["dash"]["seed"] == doc["models"]["infonce"]["seed"]
    clf = ROOT / doc["models"]["classifier"]["checkpoint"]
    assert model_id(clf) == doc["models"]["classifier"]["model_id"], "re-run export_cohort_embeddings.py"
    assert doc["common_modalities"] and doc["commands"]
    for level, d in doc["dash_minus_infonce"].items():  # recomputable from the stored folds
        again = shortcut.paired_difference(doc["scores"]["dash"][level], doc["scores"]["infonce"][level])
        assert again["difference"] == pytest.approx(d["difference"])


@pytest.mark.parametrize("model_key", ["classifier", "dash", "infonce"])
def test_shipped_embeddings_are_reproducible(model_key):
    """Recompute one cohort night's embeddings (needs the recipe's store and checkpoints)."""
    doc = em.load_site_scores()
    store_dir = ROOT / doc["store"]["path"]
    ckpt = ROOT / doc["models"][model_key]["checkpoint"]
    if not (store_dir / "manifest.csv").is_file() or not (ckpt / "model.safetensors").is_file():
        pytest.skip("recipe store or checkpoint not built here (bash scripts/train_shipped_model.sh)")
    from s2v_core.cohort.store import CohortStore

    store = CohortStore(store_dir)
    model = load_classifier(ckpt)[0] if model_key == "classifier" else inference_embed.load_backbone(ckpt)
    epochs = em.load_shipped("epochs", model_key)
    nights = em.load_shipped("nights", model_key)
    night_id = "sub-001_night1"
    emb, cov, used = inference_embed.epoch_embeddings(model, store.night(night_id))
    rows = epochs[epochs["night"] == night_id]
    np.testing.assert_allclose(em.embedding_matrix(rows), emb[rows["epoch"].to_numpy()], atol=2e-2, rtol=1e-2)
    shipped_vec = em.embedding_matrix(nights[nights["night"] == night_id])[0]
    np.testing.assert_allclose(shipped_vec, inference_embed.pool_epochs(emb, cov), atol=2e-2, rtol=1e-2)
    assert rows["modalities"].iloc[0] == ",".join(used)


def test_load_shipped_errors(tmp_path):
    with pytest.raises(S2VError, match="unknown level"):
        em.load_shipped("weeks")
    with pytest.raises(S2VError, match="unknown model"):
        em.load_shipped("nights", "bert")
    with pytest.raises(S2VError, match="export_cohort_embeddings"):
        em.load_shipped("nights", folder=tmp_path)
    pd.DataFrame({"model": ["dash"], "emb_0": [1.0]}).to_parquet(tmp_path / "nights.parquet")
    with pytest.raises(S2VError, match="missing columns"):
        em.load_shipped("nights", folder=tmp_path)
    with pytest.raises(S2VError, match="no site scores"):
        em.load_site_scores(tmp_path)


# --- the page ---------------------------------------------------------------------------------
def _page():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    at.switch_page("pages/embedding_map.py")
    return at


def _run(at):
    at.run(timeout=180)
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("S2V_CACHE", str(tmp_path_factory.getbasetemp() / "s2v-cache"))


def test_embedding_map_page_renders_and_switches_views(_cache):
    pytest.importorskip("streamlit")
    at = _run(_page())
    assert at.title[0].value == "Embedding map"
    shipped = [k for k in ("losses", "sweep", "scaling")
               if (embeddings_dir().parent / "experiments" / k / "summary.csv").is_file()]  # fmt: skip
    assert shipped, "the shipped s2v experiment summaries are missing"
    assert any(h.value == "Over training seeds" for h in at.subheader)
    # the classifier by default (the loaded night can be placed on it), then one figure per shipped experiment
    assert at.radio(key="map_view").value == "classifier"
    assert len(at.get("plotly_chart")) == 1 + len(shipped)
    assert {m.label for m in at.metric} == {"Site shortcut score, Classifier (lower is better)"}
    at.radio(key="map_view").set_value("side")  # DASH vs InfoNCE side by side
    _run(at)
    assert len(at.get("plotly_chart")) == 2 + len(shipped)
    assert {m.label for m in at.metric} == {"Site shortcut score, DASH (lower is better)",
                                            "Site shortcut score, InfoNCE (lower is better)"}
    assert len(at.dataframe[0].value) == 3  # site scores of the 3 models
    assert len(at.dataframe) == 1 + len(shipped) + ("losses" in shipped)  # + summaries and paired table
    at.radio(key="map_view").set_value("dash")
    at.radio(key="map_level").set_value("epochs")
    _run(at)
    assert len(at.get("plotly_chart")) == 1 + len(shipped)
    at.selectbox(key="map_colour_epochs").set_value("age")
    at.radio(key="map_method").set_value("tsne")
    _run(at)


def test_embedding_map_page_overlays_the_loaded_night(_cache):
    pytest.importorskip("streamlit")
    import json

    at = _page()
    at.session_state["map_view"] = "classifier"
    at.session_state["map_method"] = "pca"
    at.session_state["map_level"] = "epochs"
    at.session_state["map_overlay"] = True
    _run(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t.get("name") for t in fig["data"]]
    assert "loaded night" in names
    xs = fig["data"][names.index("loaded night")]["x"]
    if isinstance(xs, dict):  # plotly sends numeric arrays base64-encoded
        import base64

        xs = np.frombuffer(base64.b64decode(xs["bdata"]), dtype=xs["dtype"])
    assert len(xs) == 120 and np.isfinite(xs).all()  # every epoch of the 1-h excerpt


def test_selection_table_lists_the_selected_rows():
    frame = pd.DataFrame({
        "night": ["a", "a", "b"], "subject": ["s1", "s1", "s2"], "site": ["x", "x", "y"],
        "age": [40.0, 40.0, np.nan], "sex": ["F", "F", None], "split": ["train"] * 3,
        "epoch": [3, 7, 1], "stage": np.array([4, -1, 0], dtype=np.int8), "emb_0": [0.0, 1.0, 2.0],
    })
    out = em.selection_table(frame, [2, 0, -5, 2, 99], "epochs")
    assert list(out["night"]) == ["b", "a"] and list(out["stage"]) == ["W", "REM"]
    assert list(out.columns) == ["night", "subject", "site", "age", "sex", "split", "epoch", "stage"]
    assert em.selection_table(frame, [], "epochs").empty
    with pytest.raises(S2VError, match="unknown level"):
        em.selection_table(frame, [0], "hours")
