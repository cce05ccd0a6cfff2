"""Streamlit AppTest smoke and behaviour tests for every page."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.conftest import write_tiny_classifier

APP = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("S2V_CACHE", str(tmp_path_factory.getbasetemp() / "s2v-cache"))


def _run(at: AppTest) -> AppTest:
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_night_page_shipped_excerpt_shows_mapping():
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    _run(at)
    assert any("Night" in t.value for t in at.title)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Epochs (30 s)"] == "120"
    assert metrics["Modalities"] == "9 of 9"


def test_night_page_upload_prompt():
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["night_source"] = "Upload a recording"
    _run(at)
    assert any("Upload a recording" in i.value for i in at.info)


def test_library_never_imports_streamlit():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1] / "s2v_core"
    offenders = [p for p in root.rglob("*.py") if re.search(r"^\s*(import|from)\s+streamlit", p.read_text(), re.M)]
    assert offenders == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier"))


def _excerpt_app(model_dir: str, page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    at.session_state["model_dir"] = model_dir
    at.switch_page(f"pages/{page}.py")
    return at


@pytest.mark.parametrize("page", ["hypnogram", "modalities", "gates", "export", "model"])
def test_every_page_renders(tiny_model, page):
    at = _run(_excerpt_app(tiny_model, page))
    assert at.title and not at.error, [e.value for e in at.error]


def test_toggling_a_modality_changes_the_prediction(tiny_model):
    at = _run(_excerpt_app(tiny_model, "hypnogram"))
    kappa_all = {m.label: m.value for m in at.metric}["Cohen's kappa"]
    for m in ("eeg", "eog", "emg", "ecg", "ibi"):
        at.toggle(key=f"toggle_{m}").set_value(False)
    _run(at)
    assert at.session_state["active_modalities"] == ("resp", "effort", "airflow", "spo2")
    assert {m.label: m.value for m in at.metric}["Cohen's kappa"] != kappa_all
    assert any("resp, effort, airflow, spo2" in c.value for c in at.caption)


def test_all_modalities_off_is_a_warning_not_an_error(tiny_model):
    at = _run(_excerpt_app(tiny_model, "gates"))
    for m in ("eeg", "eog", "emg", "ecg", "ibi", "resp", "effort", "airflow", "spo2"):
        at.toggle(key=f"toggle_{m}").set_value(False)
    _run(at)
    assert at.warning and not at.error


def test_missing_model_is_a_clear_message(tmp_path):
    at = _excerpt_app(str(tmp_path / "nowhere"), "hypnogram")
    _run(at)
    assert any("no model at" in e.value for e in at.error)


def test_modalities_page_ranks_subsets_and_simulates_a_dropout(tiny_model):
    at = _run(_excerpt_app(tiny_model, "modalities"))
    assert len(at.get("plotly_chart")) == 2 and any("importance" in h.value for h in at.subheader)
    assert any(h.value == "Sensor dropout" for h in at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Dropped"] == "10 min"  # default span: epochs 40-59 of the 1-h excerpt
    assert metrics["Epochs restaged in the span"].endswith("of 20")
    assert "Kappa vs expert in the span" in metrics
    table = at.dataframe[-1].value
    assert list(table.columns) == ["whole night", "dropout span", "outside the span"]
    assert table.loc["epochs", "dropout span"] == 20 and "kappa vs expert (dropout)" in table.index
    # EEG missing for the whole hour: the second prediction is made without it
    at.selectbox(key="dropout_modality").set_value("eeg")
    at.select_slider(key="dropout_span").set_value((0, 120))
    _run(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Dropped"] == "60 min"
    assert any("eeg is dropped for the whole night" in c.value for c in at.caption)
    assert not at.error


def test_dropout_of_the_only_sensor_is_a_clear_message(tiny_model):
    at = _excerpt_app(tiny_model, "modalities")
    at.session_state["active_modalities"] = ("spo2",)
    at.session_state["dropout_span"] = (0, 120)
    _run(at)
    assert any("dropping spo2 for the whole night leaves nothing" in e.value for e in at.error)


def test_signal_viewer_follows_the_selected_epoch(tiny_model):
    at = _run(_excerpt_app(tiny_model, "hypnogram"))
    assert any("Click an epoch" in i.value for i in at.info)
    n_charts = len(at.get("plotly_chart"))
    at.session_state["selected_epoch"] = 40  # what a click on the hypnogram stores
    _run(at)
    assert len(at.get("plotly_chart")) == n_charts + 2  # signal viewer and spectrogram
    assert at.number_input(key="epoch_input").value == 40
    assert any(c.value.startswith("Epoch 40, 22:28:00") for c in at.caption)
    at.button[1].click()  # next
    _run(at)
    assert at.session_state["selected_epoch"] == 41
    at.number_input(key="epoch_input").set_value(119)
    at.number_input(key="viewer_after").set_value(3)
    at.radio(key="spectrogram_view").set_value("whole night")
    at.multiselect(key="viewer_modalities").set_value(["eeg", "spo2"])
    _run(at)
    assert at.session_state["selected_epoch"] == 119 and not at.error
    assert any("Welch per 30-s epoch" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == n_charts + 2


def test_a_click_on_the_hypnogram_selects_the_epoch(tiny_model):
    at = _excerpt_app(tiny_model, "hypnogram")
    # the selection state plotly sends when epoch 30 of a hypnogram track is clicked
    at.session_state["hypnogram_chart"] = {"selection": {"points": [{"point_index": 30}], "point_indices": [30],
                                                         "box": [], "lasso": []}}
    _run(at)
    assert at.session_state["selected_epoch"] == 30
    assert any(c.value.startswith("Epoch 30,") for c in at.caption)
    at.button[1].click()  # next: a selection kept across reruns must not pull the epoch back
    _run(at)
    assert at.session_state["selected_epoch"] == 31


def test_export_page_embeddings_and_figures(tiny_model):
    at = _run(_excerpt_app(tiny_model, "export"))
    assert not at.error and any(h.value == "Figures" for h in at.subheader)
    at.toggle(key="export_embeddings").set_value(True)
    at.selectbox(key="export_figure").set_value("Per-epoch gates")
    at.radio(key="export_format").set_value("png")
    _run(at)
    assert not at.error
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Per-epoch embeddings (Parquet)" in labels and "Interactive figure (HTML)" in labels
