"""Streamlit AppTest smoke and behaviour tests for every page."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

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
    at.session_state["night_source"] = "Upload EDF/BDF"
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
    import torch

    from s2v_core.checkpoint import save_checkpoint
    from s2v_core.model import HeadConfig, Sleep2VecClassifier, get_preset

    cfg = get_preset("tiny")
    clf = Sleep2VecClassifier(cfg, HeadConfig(), seed=0)
    with torch.no_grad():
        clf.fusion.logits.copy_(torch.linspace(-1, 1, len(cfg.modalities)))
    d = tmp_path_factory.mktemp("model") / "classifier"
    save_checkpoint(d, clf, cfg)
    return str(d)


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


def test_modalities_page_ranks_subsets(tiny_model):
    at = _run(_excerpt_app(tiny_model, "modalities"))
    assert len(at.get("plotly_chart")) == 1 and any("importance" in h.value for h in at.subheader)
