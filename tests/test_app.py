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
