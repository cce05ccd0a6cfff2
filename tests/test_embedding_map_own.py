"""A user's own cohort on the Embedding map: reading `s2v embed` tables, metadata, the probe, `s2v site-probe`.

Small synthetic Parquet tables are made in ``tmp_path``; one test runs `s2v embed` on a tiny synthetic store.
The page's source selector is driven with Streamlit's AppTest (``tests/test_embedding_map_browser.py`` has the
real-browser test).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2v_core.cli.main import main
from s2v_core.errors import InputFileError, S2VError
from s2v_core.evaluation import shortcut
from s2v_core.views import embedding_map as em
from tests.conftest import synthetic_store, write_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SITES = ("north", "south", "east")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def nights_table(n_subjects: int = 24, per_subject: int = 2, d: int = 8, shift: float = 3.0, seed: int = 0,
                 mixed_modalities: bool = False) -> pd.DataFrame:
    """A per-night table like `s2v embed` writes, with a site offset of ``shift`` in the embeddings."""
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    centre = rng.normal(size=(len(SITES), d)) * shift
    for s in range(n_subjects):
        site = s % len(SITES)
        subject = rng.normal(size=d)
        for k in range(per_subject):
            rows.append({"night": f"sub-{s:03d}_night{k + 1}", "subject": f"sub-{s:03d}", "site": SITES[site],
                         "age": float(30 + s), "sex": "MF"[s % 2], "split": "train", "n_epochs": 40,
                         "modalities": ("ecg,resp" if site == 0 else "eeg,ecg,resp") if mixed_modalities
                         else "eeg,ecg,resp"})
            emb.append(centre[site] + subject + 0.3 * rng.normal(size=d))
    frame = pd.DataFrame(rows)
    cols = pd.DataFrame(np.asarray(emb, dtype=np.float32), columns=[f"emb_{i}" for i in range(d)])
    return pd.concat([frame, cols], axis=1)


def epochs_table(nights: pd.DataFrame, n_epochs: int = 80, seed: int = 0) -> pd.DataFrame:
    """A per-epoch table whose epochs scatter around each night's vector."""
    rng = np.random.default_rng(seed)
    emb = em.embedding_matrix(nights)
    parts = []
    for i, row in nights.reset_index(drop=True).iterrows():
        x = emb[i] + 0.5 * rng.normal(size=(n_epochs, emb.shape[1]))
        meta = pd.DataFrame({"night": row["night"], "epoch": np.arange(n_epochs), "onset_s": np.arange(n_epochs) * 30.0,
                             "stage": rng.integers(0, 5, n_epochs).astype(np.int8),
                             "predicted": rng.integers(0, 5, n_epochs).astype(np.int8),
                             "subject": row["subject"], "site": row["site"], "age": row["age"], "sex": row["sex"],
                             "split": row["split"], "modalities": row["modalities"]})
        parts.append(pd.concat([meta, pd.DataFrame(x.astype(np.float32), columns=[f"emb_{j}" for j in range(len(x[0]))])],
                               axis=1))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def nights_parquet(tmp_path) -> Path:
    path = tmp_path / "cohort_nights.parquet"
    nights_table().to_parquet(path, index=False)
    return path


# --- reading and joining -----------------------------------------------------------------------------
def test_read_embedding_table_fills_the_usual_columns(tmp_path):
    frame = nights_table().drop(columns=["sex", "split", "subject"])
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    out = em.read_embedding_table(tmp_path / "a.parquet")
    assert set(em.OWN_COLUMNS) <= set(out.columns) and out["sex"].isna().all()
    assert out["emb_0"].dtype == np.float32 and len(out) == len(frame)


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: p.write_bytes(b"PK\x03\x04 this is a zip, not a table"), "not a Parquet file"),
    (lambda p: pd.DataFrame({"night": ["a"], "x": [1.0]}).to_parquet(p), r"no embedding columns \(emb_0"),
    (lambda p: pd.DataFrame({"id": ["a"], "emb_0": [1.0]}).to_parquet(p), "no 'night' column"),
    (lambda p: pd.DataFrame({"night": ["a", "a"], "emb_0": [1.0, 2.0]}).to_parquet(p), "repeats night ids"),
    (lambda p: pd.DataFrame({"night": pd.Series([], dtype=str), "emb_0": pd.Series([], dtype=float)}).to_parquet(p),
     "no rows"),
    (lambda p: pd.DataFrame({"night": ["a"], "emb_0": ["high"]}).to_parquet(p), "must hold numbers"),
], ids=["zip", "no-emb", "no-night", "repeated", "empty", "text-emb"])
def test_wrong_tables_are_refused_in_one_line(tmp_path, make, match):
    path = tmp_path / "wrong.parquet"
    make(path)
    with pytest.raises(InputFileError, match=match) as info:
        em.read_embedding_table(path, "mine.parquet")
    assert str(info.value).startswith("mine.parquet: ") and "\n" not in str(info.value)


def test_metadata_join_reports_how_many_matched(tmp_path):
    table = nights_table(n_subjects=10, per_subject=1)
    ids = list(table["night"][:7]) + ["stranger"]
    pd.DataFrame({"Record": ids, "clinic": ["X"] * 8, "gender": ["2"] * 8, "BMI": [str(20 + i) for i in range(8)],
                  "note": ["n"] * 8}).to_csv(tmp_path / "meta.csv", index=False)
    meta = em.read_metadata_table(tmp_path / "meta.csv")
    joined, match = em.join_metadata(table, *meta)
    assert (match.nights, match.matched, match.csv_rows) == (10, 7, 8)
    assert "7 of 10 nights matched" in match.message() and "stranger" in match.message()
    assert list(joined["site"][:7]) == ["X"] * 7 and list(joined["site"][7:]) == list(table["site"][7:])
    assert list(joined["sex"][:7]) == ["F"] * 7  # NSRR coding 2 = female
    assert joined["BMI"].dtype.kind == "f" and joined["BMI"][:7].tolist() == [20.0 + i for i in range(7)]
    assert joined["BMI"][7:].isna().all() and "note" in joined.columns
    assert set(em.colour_options(joined, "nights")) >= {"site", "age", "sex", "BMI"}


def test_a_partial_metadata_match_is_a_warning_of_the_cohort(tmp_path):
    cohort = em.cohort_from_table(epochs_table(nights_table(n_subjects=6, per_subject=1), n_epochs=5), "mine")
    ids = cohort.nights["night"]
    pd.DataFrame({"night": ids[:4], "bmi": [20, 21, 22, 23]}).to_csv(tmp_path / "m.csv", index=False)
    part = em.with_metadata(cohort, em.read_metadata_table(tmp_path / "m.csv"))
    assert part.warnings and "4 of 6 nights matched" in part.warnings[0]
    assert part.epochs["bmi"].notna().sum() == 4 * 5  # the epochs get the night's metadata too
    pd.DataFrame({"night": ids, "bmi": range(6)}).to_csv(tmp_path / "m.csv", index=False)
    full = em.with_metadata(cohort, em.read_metadata_table(tmp_path / "m.csv"))
    assert not full.warnings and "6 of 6 nights matched" in full.notes[0]


def test_metadata_without_a_single_matching_id_is_an_error(tmp_path):
    pd.DataFrame({"night": ["x1", "x2"], "site": ["a", "b"]}).to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(S2VError, match=r"none of the 48 nights .* matches .* like 'sub-000_night1'.* like 'x1'"):
        em.join_metadata(nights_table(), *em.read_metadata_table(tmp_path / "meta.csv"))


def test_nights_from_epochs_is_the_mean_of_finite_epochs():
    epochs = epochs_table(nights_table(n_subjects=6, per_subject=1), n_epochs=10)
    epochs.loc[3, "emb_2"] = np.nan  # one epoch without an embedding
    nights = em.nights_from_epochs(epochs)
    assert list(nights["night"]) == list(pd.unique(epochs["night"]))
    first = epochs[epochs["night"] == nights["night"][0]]
    cols = [c for c in epochs.columns if c.startswith("emb_")]
    np.testing.assert_allclose(em.embedding_matrix(nights)[0], first[cols].drop(index=3).mean().to_numpy(), rtol=1e-5)
    assert nights["n_epochs"].tolist() == [10] * 6 and "stage" not in nights.columns and "epoch" not in nights.columns


def test_a_per_epoch_table_gives_both_levels_and_a_bounded_epoch_sample():
    cohort = em.cohort_from_table(epochs_table(nights_table(n_subjects=6, per_subject=1), n_epochs=100), "mine")
    assert cohort.levels == ("nights", "epochs") and len(cohort.nights) == 6
    assert cohort.epochs.groupby("night").size().max() <= em.MAP_EPOCHS_PER_NIGHT
    assert any("mean of its epochs" in n for n in cohort.notes)
    assert em.colour_options(cohort.epochs, "epochs")["stage"] == "stage"
    with pytest.raises(S2VError, match="needs at least 5"):
        em.cohort_from_table(nights_table(n_subjects=4, per_subject=1), "tiny")


def test_selection_lists_what_a_users_table_has(tmp_path):
    frame = pd.DataFrame({"night": ["a", "b"], "emb_0": [1.0, 2.0]})
    frame.to_parquet(tmp_path / "t.parquet")
    table = em.read_embedding_table(tmp_path / "t.parquet")
    out = em.selection_table(table, [1], "nights")
    assert list(out.columns) == ["night", "subject", "site", "age", "sex", "split"] and out["night"].tolist() == ["b"]
    epochs = pd.DataFrame({"night": ["a", "a"], "epoch": [0, 1], "stage": [np.nan, 2.0], "emb_0": [1.0, 2.0]})
    assert em.selection_table(epochs, [0, 1], "epochs")["stage"].tolist() == ["?", "N2"]


def test_cohorts_under_finds_stores_and_embed_tables(tmp_path, nights_parquet):
    (tmp_path / "store" / "nights").mkdir(parents=True)
    (tmp_path / "store" / "manifest.csv").write_text("night\n")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    (tmp_path / "deep" / "er" / "still").mkdir(parents=True)
    nights_table().to_parquet(tmp_path / "deep" / "er" / "still" / "too_deep.parquet")
    found = {p.name for p in em.cohorts_under(tmp_path)}
    assert found == {"store", nights_parquet.name}


# --- the probe -------------------------------------------------------------------------------------
def test_table_probe_finds_a_site_offset_and_not_noise():
    strong = shortcut.table_site_score(nights_table(shift=4.0), "site", seeds=(0, 1))
    none = shortcut.table_site_score(nights_table(shift=0.0), "site", seeds=(0, 1))
    assert strong["balanced_accuracy"] > 0.9 and none["balanced_accuracy"] < 0.6
    assert strong["chance"] == pytest.approx(1 / 3) and strong["groups"] == "subject" and strong["n_samples"] == 48
    lo, hi = strong["ci_folds"]
    assert 0 <= lo <= strong["balanced_accuracy"] <= hi <= 1
    assert strong["classes"] == {"east": 16, "north": 16, "south": 16}


def test_table_probe_filters_modalities_and_flags_a_sensor_confound():
    frame = nights_table(shift=0.0, mixed_modalities=True)
    res = shortcut.table_site_score(frame, "site", seeds=(0,))
    assert res["modality_confound"] and res["modality_sets"] == {"ecg,resp": 16, "eeg,ecg,resp": 32}
    only = shortcut.table_site_score(frame, "site", modalities=("resp", "ecg", "eeg"), seeds=(0,))
    assert only["n_samples"] == 32 and set(only["classes"]) == {"east", "south"} and not only["modality_confound"]
    with pytest.raises(S2VError, match=r"exactly eeg,resp; it holds eeg,ecg,resp \(32 nights\)"):
        shortcut.table_site_score(frame, "site", modalities=("eeg", "resp"))


@pytest.mark.parametrize(("change", "by", "match"), [
    (lambda f: f, "scanner", r"no column 'scanner'; columns the probe can predict: site, sex"),
    (lambda f: f, "age", "'age' has 24 distinct numbers"),
    (lambda f: f, "night", "identifies rows"),
    (lambda f: f.assign(site="north"), "site", r"at least 2 values of 'site' .* found north \(24 subjects\)"),
    (lambda f: f.assign(site=None), "site", "no row has both a value"),
], ids=["no-column", "numeric", "id", "one-site", "no-values"])
def test_table_probe_bad_requests_are_clear(change, by, match):
    with pytest.raises(S2VError, match=match):
        shortcut.table_site_score(change(nights_table()), by, seeds=(0,))


def test_table_probe_drops_values_of_one_subject_and_rows_without_a_value():
    frame = nights_table()
    frame.loc[frame["subject"] == "sub-000", "site"] = "lonely"
    frame.loc[5, "site"] = None
    res = shortcut.table_site_score(frame, "site", seeds=(0,))
    assert res["dropped"]["rare_values"] == ["lonely"] and res["dropped"]["missing_value"] == 1
    assert res["n_samples"] == 48 - 2 - 1


def test_table_probe_on_epochs_samples_each_night_and_groups_by_subject():
    epochs = epochs_table(nights_table(n_subjects=9, per_subject=1), n_epochs=100)
    res = shortcut.table_site_score(epochs, "site", seeds=(0,), epochs_per_night=20)
    assert res["rows"] == "epochs" and res["n_samples"] == 9 * 20 and res["n_nights"] == 9


# --- s2v site-probe ----------------------------------------------------------------------------------
def test_site_probe_command_prints_accuracy_interval_and_chance(nights_parquet, tmp_path, capsys):
    out = tmp_path / "res" / "probe.json"
    assert main(["site-probe", str(nights_parquet), "--by", "site", "--repeats", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "site probe: 48 nights, 3 values (east 16, north 16, south 16), 8-d embeddings" in text
    assert "balanced accuracy" in text and "95% interval" in text and "chance 0.333" in text
    res = json.loads(out.read_text())
    assert res["n_repeats"] == 2 and res["by"] == "site" and res["source"] == nights_parquet.name
    assert f"balanced accuracy {res['balanced_accuracy']:.3f}" in text


def test_site_probe_command_with_metadata_and_modalities(tmp_path, capsys):
    table = nights_table(mixed_modalities=True).drop(columns=["site"])
    table.to_parquet(tmp_path / "t.parquet", index=False)
    sites = nights_table()["site"]
    pd.DataFrame({"nsrrid": table["night"], "center": sites}).to_csv(tmp_path / "m.csv", index=False)
    assert main(["site-probe", str(tmp_path / "t.parquet"), "--metadata", str(tmp_path / "m.csv"), "--repeats", "1",
                 "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["modality_confound"] is True
    assert "48 of 48 nights matched" in captured.err and "modality sets differ" in captured.err
    assert main(["site-probe", str(tmp_path / "t.parquet"), "--metadata", str(tmp_path / "m.csv"), "--repeats", "1",
                 "--modalities", "ecg,resp"]) == 2  # one site left: a clear error
    assert "at least 2 values of 'site'" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "match"), [
    (["--by", "scanner"], "no column 'scanner'"),
    (["--folds", "1"], "--folds must be at least 2"),
    (["--modalities", "eeg,xyz"], "xyz"),
    (["--level", "epochs"], "a per-night table has no epochs"),
], ids=["column", "folds", "modality", "level"])
def test_site_probe_command_errors_are_one_line(nights_parquet, capsys, args, match):
    assert main(["site-probe", str(nights_parquet), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s2v site-probe: error: ") and match in err and err.count("\n") == 1


def test_site_probe_command_refuses_a_file_that_is_not_embed_output(tmp_path, capsys):
    (tmp_path / "x.parquet").write_text("night,site\n")
    assert main(["site-probe", str(tmp_path / "x.parquet")]) == 2
    assert "x.parquet: not a Parquet file" in capsys.readouterr().err


def test_site_probe_command_probes_epochs_and_nights_of_a_per_epoch_table(tmp_path, capsys):
    epochs_table(nights_table(n_subjects=9, per_subject=1), n_epochs=30).to_parquet(tmp_path / "e.parquet")
    assert main(["site-probe", str(tmp_path / "e.parquet"), "--repeats", "1"]) == 0
    assert "270 epochs of 9 nights" in capsys.readouterr().out
    assert main(["site-probe", str(tmp_path / "e.parquet"), "--repeats", "1", "--level", "nights"]) == 0
    assert "site probe: 9 nights" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("own-store"), 8, hours=0.25, seed=5)[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp("own-model") / "classifier")


def test_s2v_embed_output_of_a_store_goes_to_site_probe_and_the_map(tiny_store, tiny_model, tmp_path, capsys):
    out = tmp_path / "emb" / "cohort.parquet"
    assert main(["embed", str(tiny_store), "--model", str(tiny_model), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    nights = em.read_embedding_table(out.with_name("cohort_nights.parquet"))
    assert len(nights) == 8 and {"site", "age", "sex", "modalities"} <= set(nights.columns)
    code = main(["site-probe", str(out.with_name("cohort_nights.parquet")), "--by", "sex", "--repeats", "1"])
    captured = capsys.readouterr()
    if code == 0:
        assert "sex probe: " in captured.out and "chance 0.500" in captured.out
    else:  # a tiny cohort may have one subject of a sex: then the refusal says so
        assert "2 or more subjects each" in captured.err
    cohort = em.cohort_from_table(em.read_embedding_table(out), "cohort.parquet")
    assert cohort.levels == ("nights", "epochs") and len(cohort.nights) == 8
    # the per-night table of `s2v embed` and the mean of its per-epoch table agree closely
    a = em.embedding_matrix(nights.sort_values("night"))
    b = em.embedding_matrix(cohort.nights.sort_values("night"))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_embed_store_for_the_map_uses_the_manifest_and_is_bounded(tiny_store, tiny_model):
    from s2v_core.inference.predict import load_classifier

    model = load_classifier(tiny_model)[0]
    seen = []
    epochs, nights, skipped = em.embed_store(tiny_store, model, progress=lambda i, n: seen.append((i, n)))
    assert seen[-1] == (8, 8) and not skipped and len(nights) == 8 and "ahi" in nights.columns
    cohort = em.cohort_from_store(epochs, nights, "store")
    assert cohort.levels == ("nights", "epochs") and "ahi" in em.colour_options(cohort.nights, "nights")
    with pytest.raises(S2VError, match=r"the store has 8 nights; the app embeds at most 3 .* `s2v embed STORE"):
        em.embed_store(tiny_store, model, max_nights=3)
    with pytest.raises(S2VError, match="not a cohort store"):
        em.embed_store(tiny_store.parent, model)


# --- the page ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _model_warm_up_joined():
    """app.py loads the shipped model in a background thread; a short test run must not exit under it."""
    yield
    for t in threading.enumerate():
        if t.name == "s2v-model-warm-up":
            t.join(timeout=300)


def _page(tmp_path_factory, monkeypatch, **state):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("S2V_CACHE", str(tmp_path_factory.getbasetemp() / "s2v-cache"))
    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    for k, v in state.items():
        at.session_state[k] = v
    at.switch_page("pages/embedding_map.py")
    return at


def _run(at, errors_ok: bool = False):
    at.run(timeout=240)
    assert not at.exception, [e.message for e in at.exception]
    if not errors_ok:
        assert not at.error, [e.value for e in at.error]
    return at


def _upload(at, label_part: str, name: str, data: bytes) -> None:
    for up in at.get("file_uploader"):
        if label_part in up.label:
            up.set_value((name, data, "application/octet-stream"))
            return
    raise AssertionError(f"no uploader with {label_part!r}")


def _trace_names(at, i: int = 0) -> list[str]:
    fig = json.loads(at.get("plotly_chart")[i].proto.spec)
    return [t.get("name") for t in fig["data"]]


def test_default_view_overlays_the_loaded_night(tmp_path_factory, monkeypatch):
    pytest.importorskip("streamlit")
    at = _run(_page(tmp_path_factory, monkeypatch, map_method="pca", map_overlay=True))
    assert at.radio(key="map_source").value == "shipped" and at.radio(key="map_view").value == "classifier"
    assert "loaded night" in _trace_names(at) and not at.info


def test_uploaded_parquet_and_metadata_on_the_map_with_the_probe(tmp_path_factory, monkeypatch, nights_parquet,
                                                                 tmp_path):
    pytest.importorskip("streamlit")
    at = _run(_page(tmp_path_factory, monkeypatch, map_source="upload", map_method="pca"))
    assert any("Upload an `s2v embed` Parquet" in i.value for i in at.info)
    _upload(at, "Parquet", "cohort_nights.parquet", nights_parquet.read_bytes())
    _run(at)
    assert sorted(_trace_names(at)) == sorted(SITES)  # coloured by site by default
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["site balanced accuracy (lower is better)"]) > 0.9 and metrics["Chance"] == "0.33"
    assert "95% interval over folds" in metrics
    # a metadata CSV: partial match, said how many; its own column becomes a colour and a probe target
    table = nights_table()
    pd.DataFrame({"night": table["night"][:40], "scanner": ["A", "B"] * 20}).to_csv(tmp_path / "m.csv", index=False)
    _upload(at, "Metadata CSV", "m.csv", (tmp_path / "m.csv").read_bytes())
    _run(at)
    assert any("40 of 48 nights matched" in w.value and "8 nights have no metadata" in w.value for w in at.warning)
    assert "scanner" in at.selectbox(key="map_own_colour_nights").options
    at.selectbox(key="map_own_colour_nights").set_value("age")
    at.selectbox(key="map_probe_by").set_value("scanner")
    _run(at)
    assert _trace_names(at) == ["cohort"]  # a colour scale
    assert "scanner balanced accuracy (lower is better)" in {m.label for m in at.metric}


def test_wrong_uploads_give_clear_messages(tmp_path_factory, monkeypatch, nights_parquet, tmp_path):
    pytest.importorskip("streamlit")
    at = _run(_page(tmp_path_factory, monkeypatch, map_source="upload"))
    pd.DataFrame({"night": ["a", "b"], "value": [1, 2]}).to_parquet(tmp_path / "w.parquet")
    _upload(at, "Parquet", "w.parquet", (tmp_path / "w.parquet").read_bytes())
    _run(at, errors_ok=True)
    shown = [e.value for e in at.error]
    assert len(shown) == 1 and shown[0].startswith("w.parquet: no embedding columns") and "night, value" in shown[0]
    assert not at.get("plotly_chart")
    _upload(at, "Parquet", "cohort_nights.parquet", nights_parquet.read_bytes())
    pd.DataFrame({"night": ["x", "y"], "site": ["a", "b"]}).to_csv(tmp_path / "m.csv", index=False)
    _upload(at, "Metadata CSV", "m.csv", (tmp_path / "m.csv").read_bytes())
    _run(at, errors_ok=True)
    assert any("none of the 48 nights" in e.value for e in at.error) and not at.get("plotly_chart")


def test_server_cohorts_are_offered_by_name_and_typed_paths_are_off(tmp_path_factory, monkeypatch, tiny_store,
                                                                    tiny_model, tmp_path):
    pytest.importorskip("streamlit")
    root = tmp_path / "cohorts"
    root.mkdir()
    nights_table().to_parquet(root / "clinic_nights.parquet", index=False)
    (root / "store").symlink_to(tiny_store, target_is_directory=True)
    monkeypatch.setenv("S2V_DATA_DIRS", str(root))
    monkeypatch.delenv("S2V_ALLOW_ANY_DATA_PATH", raising=False)
    at = _run(_page(tmp_path_factory, monkeypatch, map_source="server", map_method="pca",
                    model_dir=str(tiny_model)))  # the store is embedded with the model in use
    assert at.selectbox(key="map_server_choice").options == ["cohorts/clinic_nights.parquet", "cohorts/store"]
    assert not at.text_input  # no typed path unless S2V_ALLOW_ANY_DATA_PATH is set
    at.button(key="map_server_open").click()
    _run(at)
    assert sorted(_trace_names(at)) == sorted(SITES)
    at.selectbox(key="map_server_choice").set_value("cohorts/store")
    at.button(key="map_server_open").click()
    _run(at)
    assert at.radio(key="map_own_level").options == ["nights", "epochs"]
    shown = " ".join([c.value for c in at.caption] + [m.value for m in at.markdown] + [w.value for w in at.warning])
    assert "store" in shown and str(tmp_path) not in shown  # names, never server paths
    at.radio(key="map_own_level").set_value("epochs")
    _run(at)
    assert at.selectbox(key="map_own_colour_epochs").value == "stage"


def test_a_typed_path_gives_one_message_that_reveals_nothing(tmp_path_factory, monkeypatch, tmp_path):
    pytest.importorskip("streamlit")
    monkeypatch.delenv("S2V_DATA_DIRS", raising=False)
    monkeypatch.setenv("S2V_ALLOW_ANY_DATA_PATH", "1")
    at = _run(_page(tmp_path_factory, monkeypatch, map_source="server"))
    (tmp_path / "secret.parquet").write_text("not parquet")
    for path in (tmp_path / "secret.parquet", tmp_path / "missing"):
        at.text_input(key="map_server_path").set_value(str(path))
        at.button(key="map_server_path_open").click()
        _run(at, errors_ok=True)
        shown = " ".join(e.value for e in at.error)
        assert "could not be opened as a cohort store" in shown and "incident" in shown
        assert "secret" not in shown and "not a Parquet" not in shown


def test_the_loaded_night_needs_embeddings_of_the_cohorts_width(tmp_path_factory, monkeypatch, nights_parquet):
    pytest.importorskip("streamlit")
    at = _run(_page(tmp_path_factory, monkeypatch, map_source="upload", map_method="pca", map_overlay=True))
    _upload(at, "Parquet", "cohort_nights.parquet", nights_parquet.read_bytes())
    _run(at)
    assert any("have 128 dimensions, the cohort's 8" in i.value for i in at.info)
    assert "loaded night" not in _trace_names(at)


def test_a_typed_path_opens_where_allowed(tmp_path_factory, monkeypatch, nights_parquet):
    pytest.importorskip("streamlit")
    monkeypatch.delenv("S2V_DATA_DIRS", raising=False)
    monkeypatch.setenv("S2V_ALLOW_ANY_DATA_PATH", "1")
    at = _run(_page(tmp_path_factory, monkeypatch, map_source="server", map_method="pca"))
    at.text_input(key="map_server_path").set_value(str(nights_parquet))
    at.button(key="map_server_path_open").click()
    _run(at)
    assert sorted(_trace_names(at)) == sorted(SITES)
    assert any("cohort" in m.value and "PCA of 48 nights" in m.value for m in at.markdown)
