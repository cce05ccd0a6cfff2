"""The Hypnogram page's peers: YASA and sleepecg under ours, with the agreement of every pair."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.conftest import write_tiny_classifier

APP = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("S2V_CACHE", str(tmp_path_factory.getbasetemp() / "s2v-cache"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier"))


def _hypnogram_page(model_dir: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    at.session_state["model_dir"] = model_dir
    at.switch_page("pages/hypnogram.py")
    at.run(timeout=180)
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_peers_are_off_until_asked(tiny_model):
    at = _hypnogram_page(tiny_model)
    assert at.toggle(key="peers_on").value is False
    assert any("Switch on to stage this night with YASA" in c.value for c in at.caption)
    assert not any("status" in d.value.columns or "stagers" in d.value.columns for d in at.dataframe)


def test_yasa_on_the_excerpt_and_a_plain_refusal(tiny_model, monkeypatch):
    pytest.importorskip("yasa")
    at = _hypnogram_page(tiny_model)
    at.session_state["peers_chosen"] = ["yasa"]
    at.toggle(key="peers_on").set_value(True)
    at.run(timeout=300)
    assert not at.exception, [e.message for e in at.exception]
    tables = [d.value for d in at.dataframe]
    status = next(t for t in tables if "status" in t.columns)
    assert list(status["status"]) == ["staged"], status
    pairs = next(t for t in tables if "stagers" in t.columns)
    # ours, YASA and the expert: three pairs, every kappa a number over the scored epochs
    assert list(pairs["stagers"]) == ["ours vs YASA", "ours vs expert", "YASA vs expert"]
    assert pairs["kappa"].between(-1, 1).all() and (pairs["epochs"] > 0).all()

    # the peers see the whole recording, whatever modalities are switched on in the sidebar
    at.toggle(key="toggle_eeg").set_value(False)
    at.run(timeout=300)
    assert not at.exception, [e.message for e in at.exception]
    status = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert list(status["status"]) == ["staged"]


def test_a_refusing_peer_says_why(tiny_model, monkeypatch):
    import streamlit as st

    from s2v_core.evaluation import peers

    def refuse(night, path=None):
        return peers.PeerResult("yasa", 5, refused="EEG sampled at 64 Hz; YASA needs >= 80 Hz")

    st.cache_data.clear()
    monkeypatch.setattr(peers, "run_yasa", refuse)
    at = _hypnogram_page(tiny_model)
    at.session_state["peers_chosen"] = ["yasa"]
    at.toggle(key="peers_on").set_value(True)
    at.run(timeout=300)
    assert not at.exception, [e.message for e in at.exception]
    assert any("YASA gives no stages for this night: EEG sampled at 64 Hz" in w.value for w in at.warning)
    status = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert list(status["status"]) == ["refused"]
    pairs = next(d.value for d in at.dataframe if "stagers" in d.value.columns)
    assert list(pairs["stagers"]) == ["ours vs expert"]  # a refusing peer is in no pair
    st.cache_data.clear()
