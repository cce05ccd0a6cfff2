"""Several app sessions at once: nothing of one session is visible in another, the shared model
is never mutated, and uploads leave no temporary files behind.

Two layers:

- AppTest sessions (fast, same process as the caches): sessions interleave uploads of different
  recordings that share a file name; each must show its own night, mapping and staging, and the
  ``st.cache_resource`` model's tensors must hash identically before and after.
- a real ``streamlit run`` server with several concurrent websocket sessions
  (:mod:`tests.app_session`, no browser), each uploading a different EDF + hypnogram at the same
  moment; every session's Night page, mapping table and exported hypnogram must be its own
  (slow: marked ``slow``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from s2v_core.evaluation import staging_metrics  # noqa: E402
from s2v_core.inference.predict import load_classifier, model_id, predict_night  # noqa: E402
from s2v_core.recording.loading import load_night  # noqa: E402
from s2v_core.views.exports import hypnogram_csv  # noqa: E402
from tests.conftest import write_tiny_classifier

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
UPLOAD = "Upload a recording"
PSG_LABEL = "EDF / EDF+ / BDF, WFDB, DREAMS text, FIF, BrainVision or EEGLAB recording (all files of one record at once)"
HYP_LABEL = "Hypnogram (optional): Sleep-EDF/EDF+, NSRR or Profusion XML, CSV/TSV, DREAMS, WFDB"

# (site, hours, seed): different montages and lengths; generate_cohort names every file
# sub-001_night1.*, so the sessions upload different bytes under the same file name.
RECORDINGS = {
    "A": ("us_hospital", 0.5, 1),
    "B": ("home_test", 0.75, 2),
    "C": ("eu_clinic", 1.0, 3),
}


def tensor_digest(model) -> str:
    """SHA-256 over every tensor of ``model.state_dict()`` (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def s2v_temp_entries(folder: str | Path | None = None) -> set[str]:
    """Names of upload scratch folders (``s2v-upload-*``, ``s2v-hdr-*``) in the temp folder."""
    root = Path(folder or tempfile.gettempdir())
    return {p.name for p in root.glob("s2v-upload-*")} | {p.name for p in root.glob("s2v-hdr-*")}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, dict]:
    """Three generated nights (EDF+ and hypnogram bytes) with what each must display."""
    from s2v_core.synth.cohort import generate_cohort

    out = {}
    for key, (site, hours, seed) in RECORDINGS.items():
        folder = tmp_path_factory.mktemp(f"rec{key}")
        row = generate_cohort(1, folder, seed=seed, hours=hours, sites=[site]).iloc[0]
        psg, hyp = folder / row["psg_file"], folder / row["hypnogram_file"]
        night = load_night(psg, hyp, allow_mismatch=True)
        out[key] = {
            "psg": psg, "hyp": hyp, "night": night,
            "psg_bytes": psg.read_bytes(), "hyp_bytes": hyp.read_bytes(),
            "metrics": {"Duration": f"{night.duration_s / 3600:.2f} h", "Epochs (30 s)": str(night.n_epochs),
                        "Modalities": f"{len(night.modalities)} of 9"},
            "channels": {m: p.source for m, p in night.provenance.items() if p.reader != "derived"},
        }
    names = {r["psg"].name for r in out.values()}
    assert len(names) == 1, "the recordings must share a file name (content, not name, identifies them)"
    assert len({r["metrics"]["Epochs (30 s)"] for r in out.values()}) == len(out)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier"))


# --- AppTest sessions (fast) -----------------------------------------------------------------------
def _session(model_dir: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["night_source"] = UPLOAD
    at.session_state["model_dir"] = model_dir
    return at


def _run(at: AppTest) -> AppTest:
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _upload(at: AppTest, rec: dict) -> None:
    for up in at.get("file_uploader"):
        if up.label == PSG_LABEL:
            up.set_value((rec["psg"].name, rec["psg_bytes"], "application/octet-stream"))
        elif up.label == HYP_LABEL:
            up.set_value((rec["hyp"].name, rec["hyp_bytes"], "text/plain"))


def _night_view(at: AppTest) -> tuple[dict, dict]:
    metrics = {m.label: m.value for m in at.metric if m.label != "Start"}
    table = at.get("arrow_data_frame") or at.dataframe
    frame = table[0].value
    channels = {r.modality: r.channel for r in frame.itertuples() if isinstance(r.channel, str)}
    return metrics, channels


def test_interleaved_apptest_sessions_are_isolated_and_the_model_is_untouched(recordings, tiny_model):
    import app_state as C

    stamp = str((Path(tiny_model) / "model.safetensors").stat().st_mtime_ns)
    model, _, _ = C._model(tiny_model, stamp)  # the object every session gets from st.cache_resource
    before = tensor_digest(model)
    sessions = {k: _run(_session(tiny_model)) for k in ("A", "B")}
    for k, at in sessions.items():  # both upload before either is looked at again
        _upload(at, recordings[k])
    for k, at in sessions.items():
        _run(at)
        metrics, channels = _night_view(at)
        assert metrics == recordings[k]["metrics"], k
        assert channels == recordings[k]["channels"], k
    # staging: kappa against each session's own expert hypnogram, recomputed here
    fresh, _, _ = load_classifier(tiny_model)
    for k, at in reversed(list(sessions.items())):
        at.switch_page("pages/hypnogram.py")
        _run(at)
        night = recordings[k]["night"]
        pred = predict_night(fresh, night, tuple(night.modalities), name=model_id(tiny_model))
        want = staging_metrics(night.stages, pred.stages)
        got = {m.label: m.value for m in at.metric}
        assert got["Cohen's kappa"] == f"{want.kappa:.3f}", k
        assert got["Epochs compared"] == str(want.n_epochs), k
    # back on the Night page both still have their own upload; then A replaces its upload with
    # C's recording (same file name) and B still sees its own night
    for k, at in sessions.items():
        at.switch_page("pages/night.py")
        _run(at)
        assert _night_view(at)[0] == recordings[k]["metrics"], k
    _upload(sessions["A"], recordings["C"])
    _run(sessions["A"])
    _run(sessions["B"])
    assert _night_view(sessions["A"])[0] == recordings["C"]["metrics"]
    assert _night_view(sessions["B"])[0] == recordings["B"]["metrics"]
    again, _, _ = C._model(tiny_model, stamp)
    assert again is model and not model.training
    assert tensor_digest(model) == before
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_an_upload_survives_other_pages_and_removing_it_forgets_it(recordings, tiny_model):
    at = _run(_session(tiny_model))
    _upload(at, recordings["B"])
    _run(at)
    for page in ("gates", "export"):  # two runs on each page: Streamlit drops unseen widgets' values
        at.switch_page(f"pages/{page}.py")
        _run(at)
        _run(at)
        assert not at.info, [i.value for i in at.info]
    at.switch_page("pages/night.py")
    _run(at)
    assert _night_view(at)[0] == recordings["B"]["metrics"]
    assert any("In use: **sub-001_night1.edf**" in c.value for c in at.caption)
    assert at.radio(key="night_source_radio").value == UPLOAD
    _upload(at, recordings["A"])  # a new upload replaces the kept one
    _run(at)
    assert _night_view(at)[0] == recordings["A"]["metrics"]
    at.file_uploader[0].set_value(None)  # the user removes the recording
    _run(at)
    assert any("Upload a recording" in i.value for i in at.info)
    assert "upload" not in at.session_state["kept_uploads"]


def test_the_chosen_source_survives_other_pages(tiny_model):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    at.session_state["model_dir"] = tiny_model
    _run(at)
    at.radio(key="night_source_radio").set_value(UPLOAD)
    _run(at)
    at.radio(key="night_source_radio").set_value("Shipped 1-h excerpt")
    _run(at)
    at.switch_page("pages/model.py")
    _run(at)
    _run(at)
    at.switch_page("pages/night.py")
    _run(at)
    assert {m.label: m.value for m in at.metric}["Epochs (30 s)"] == "120"


def test_uploads_leave_no_temporary_folders(recordings, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # private temp root for this test
    at = _run(_session(tiny_model))
    _upload(at, recordings["A"])
    _run(at)
    assert _night_view(at)[0] == recordings["A"]["metrics"]
    bad = bytearray(recordings["B"]["psg_bytes"][:400])  # a header cut short: unreadable
    for up in at.get("file_uploader"):
        if up.label == PSG_LABEL:
            up.set_value(("broken.edf", bytes(bad), "application/octet-stream"))
    _run(at)
    assert at.error and "broken.edf" in at.error[0].value, [e.value for e in at.error]
    assert s2v_temp_entries(tmp_path) == set()


# --- a real server, concurrent websocket sessions (slow) ----------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("websockets")
    from app_session import start_server, stop_server

    tmp = tmp_path_factory.mktemp("server-tmp")
    log = tmp_path_factory.mktemp("server-log") / "streamlit.log"
    proc, url = start_server({"TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}, log_path=log)
    yield url, tmp, proc
    stop_server(proc)


def _visit_and_check(url: str, rec: dict, barrier: threading.Barrier, expected_csv: str, out: dict) -> None:
    from app_session import AppSession

    with AppSession(url, timeout=300) as s:
        s.rerun()
        s.set_radio("Recording", UPLOAD)
        s.rerun()
        s.upload(PSG_LABEL, rec["psg"].name, rec["psg_bytes"])
        s.upload(HYP_LABEL, rec["hyp"].name, rec["hyp_bytes"])
        barrier.wait(timeout=120)  # every session reads its upload at the same moment
        night = s.rerun()
        table = night.tables()[0]
        hyp = s.rerun("hypnogram")
        export = s.rerun("export")
        csv = s.download("Hypnogram CSV (onset, duration, label; opens in EDFbrowser)").decode()
        barrier.wait(timeout=300)  # and all look at their Night page again after the others
        again = s.rerun("night")
        out.update(
            metrics={k: v for k, v in night.metrics.items() if k != "Start"},
            channels={r.modality: r.channel for r in table.itertuples() if isinstance(r.channel, str)},
            errors=night.errors + hyp.errors + export.errors + again.errors,
            exceptions=night.exceptions + hyp.exceptions + export.exceptions + again.exceptions,
            csv=csv, csv_ok=csv == expected_csv,
            again={k: v for k, v in again.metrics.items() if k != "Start"},
            session=s.session_id,
        )


@pytest.mark.slow
def test_concurrent_server_sessions_are_isolated(server, recordings):
    url, tmp, _ = server
    model, _, _ = load_classifier(ROOT / "models" / "sleep2vec-small" / "classifier")
    mid = model_id(ROOT / "models" / "sleep2vec-small" / "classifier")
    expected = {}
    for k, rec in recordings.items():
        pred = predict_night(model, rec["night"], None, name=mid)
        expected[k] = hypnogram_csv(pred.stages)
    assert len(set(expected.values())) == len(expected)
    # S2V_TEST_SESSIONS=8 holds more sessions at once; session i uploads recording i mod 3
    n = max(len(recordings), int(os.environ.get("S2V_TEST_SESSIONS", len(recordings))))
    keys = [list(recordings)[i % len(recordings)] for i in range(n)]
    barrier = threading.Barrier(n)
    results: list[dict] = [{} for _ in range(n)]
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            _visit_and_check(url, recordings[keys[i]], barrier, expected[keys[i]], results[i])
        except BaseException as exc:  # reported below with the session it came from
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    assert not failures, failures
    assert len({r["session"] for r in results}) == n  # n distinct server sessions
    for k, r in zip(keys, results, strict=True):
        assert not r["errors"] and not r["exceptions"], (k, r["errors"], r["exceptions"])
        assert r["metrics"] == recordings[k]["metrics"], k
        assert r["again"] == recordings[k]["metrics"], k
        assert r["channels"] == recordings[k]["channels"], k
        assert r["csv_ok"], (k, r["csv"][:200])
    assert s2v_temp_entries(tmp) == set()


@pytest.mark.slow
def test_failing_upload_on_the_server_is_a_message_and_leaves_nothing(server):
    from app_session import AppSession

    url, tmp, _ = server
    with AppSession(url, timeout=300) as s:
        s.rerun()
        s.set_radio("Recording", UPLOAD)
        s.rerun()
        s.upload(PSG_LABEL, "notes.edf", b"this is not a recording\n" * 40)
        run = s.rerun()
    assert not run.exceptions, run.exceptions
    assert any("notes.edf: not an EDF/BDF file" in e for e in run.errors), run.errors
    assert s2v_temp_entries(tmp) == set()


@pytest.mark.slow
def test_server_memory_stays_bounded_over_uploads(tmp_path):
    """A short run of bench/bench_app_sessions.py: 8 distinct uploads from 2 sessions."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_app_sessions", ROOT / "bench" / "bench_app_sessions.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "figures.json"
    assert bench.main(["--uploads", "8", "--hours", "0.25", "--sessions", "2", "--ttl", "3",
                       "--workdir", str(tmp_path), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["uploads"] == 8 and figures["temp_folders_left"] == []
    assert figures["final_over_first"] < 1.3, figures["rows"]
    # Streamlit keeps uploads until the session ends unless the app releases replaced ones: at
    # most one recording (plus its small hypnogram) per session may be held
    assert figures["uploads_held_final_mb"] <= 2 * (figures["largest_upload_mb"] + 1), figures["rows"]


def test_tensor_digest_sees_a_changed_weight(tiny_model):
    import torch

    model, _, _ = load_classifier(tiny_model)
    before = tensor_digest(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    assert tensor_digest(model) != before
    assert np.isfinite(float(next(model.parameters()).view(-1)[0]))
