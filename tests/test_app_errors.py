"""Nothing reaches a user that should not (issue 16, app side).

Two classes of fault, each tried with several members:

1. Failures: an unexpected exception on any page is a one-line ``st.error`` with a short incident
   id, never a traceback; the traceback is in the server log under the same id. Expected errors
   (``S2VError``) keep their message, with server paths replaced by file names.
2. The Model page: the shipped model is shown by name; checkpoints come from uploads or from an
   allow-list of server folders (by name); a typed server path is refused unless the server sets
   S2V_ALLOW_ANY_MODEL_PATH=1, and even then a failure says nothing about the folder.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import app_state as C  # noqa: E402
from s2v_core.errors import S2VError  # noqa: E402
from tests.conftest import write_tiny_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SECRET = "/secret/server/path"
INCIDENT = re.compile(r"^Something went wrong (.+) \(incident ([0-9a-f]{6})\); the details are in the server log\.$")


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("S2V_CACHE", str(tmp_path_factory.getbasetemp() / "s2v-cache"))
    monkeypatch.delenv(C.ENV_MODEL_DIRS, raising=False)
    monkeypatch.delenv(C.ENV_ANY_MODEL_PATH, raising=False)


@pytest.fixture(scope="module", autouse=True)
def _imported_before_any_patch():
    """Import what the pages import before a test replaces a library function: a module first
    imported while a function is replaced would keep the replacement (``from X import f``)."""
    import importlib

    for name in ("s2v_core.evaluation", "s2v_core.inference", "s2v_core.inference.predict",
                 "s2v_core.inference.embed", "s2v_core.views.plots", "s2v_core.views.plots_signals",
                 "s2v_core.views.viewer", "s2v_core.views.exports", "s2v_core.views.embedding_map",
                 "s2v_core.experiments"):
        importlib.import_module(name)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier"))


def _element_texts(node) -> list[str]:
    """str() of the proto of every element in an AppTest tree (alerts, tables, charts, json...)."""
    out = []
    proto = getattr(node, "proto", None)
    if proto is not None:
        out.append(str(proto))
    for child in (getattr(node, "children", None) or {}).values():
        out.extend(_element_texts(child))
    return out


def _shown(at: AppTest) -> str:
    """Everything the page shows, less the path input's own echo of what the user typed."""
    return "\n".join(t for t in _element_texts(at._tree) if "model_path_input" not in t)


def _run(at: AppTest) -> AppTest:
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _app(page: str, model_dir: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["night_source"] = "Shipped 1-h excerpt"
    if model_dir is not None:
        at.session_state["model_dir"] = model_dir
    at.switch_page(f"pages/{page}.py")
    return at


def _boom(*args, **kwargs):
    raise RuntimeError(f"{SECRET}/night.edf: the disk said no")


def _incidents(at: AppTest) -> list[tuple[str, str]]:
    """(what, incident id) of every incident message shown."""
    return [m.groups() for e in at.error if (m := INCIDENT.match(e.value))]


# --- 1. unexpected failures are incidents ---------------------------------------------------------
# (page, library function the page calls, what the message says was being done)
FAILURES = [
    ("night", "s2v_core.night.Night.summary", "showing the Night page"),
    ("night", "app_state.recording_labels", "reading the recording"),
    ("hypnogram", "s2v_core.views.plots.hypnogram_figure", "showing the Hypnogram page"),
    ("gates", "s2v_core.views.plots.gates_area_figure", "showing the Gates page"),
    ("modalities", "s2v_core.evaluation.all_subsets", "showing the Modalities page"),
    ("export", "s2v_core.views.exports.hypnogram_csv", "showing the Export page"),
    ("embedding_map", "s2v_core.views.embedding_map.load_site_scores", "showing the Embedding map page"),
    ("model", "app_state._model", "loading the model"),
]


@pytest.mark.parametrize(("page", "target", "what"), FAILURES, ids=[f"{p}-{t.rsplit('.', 1)[1]}" for p, t, _ in FAILURES])
def test_an_unexpected_failure_is_an_incident_not_a_traceback(tiny_model, monkeypatch, caplog, page, target, what):
    monkeypatch.setattr(target, _boom)
    caplog.set_level(logging.ERROR, logger=C.log.name)
    at = _run(_app(page, tiny_model))
    assert at.title, "the page's own code ran"
    found = _incidents(at)
    assert [w for w, _ in found] == [what], [e.value for e in at.error]
    shown = _shown(at)
    for leak in (SECRET, "night.edf", "Traceback", "RuntimeError", "disk said no", str(ROOT)):
        assert leak not in shown, leak
    incident = found[0][1]
    records = [r for r in caplog.records if getattr(r, "incident", None) == incident]
    assert len(records) == 1 and incident in records[0].getMessage()
    trace = logging.Formatter().formatException(records[0].exc_info)
    assert trace.startswith("Traceback") and f"RuntimeError: {SECRET}/night.edf" in trace
    assert "_boom" in trace  # the frame that failed is in the server log


def test_a_failure_while_staging_names_the_step(tmp_path, monkeypatch, caplog):
    # a model of its own: the staging cache cannot already hold this night's prediction
    model = write_tiny_classifier(tmp_path / "fresh", extra={"nonce": tmp_path.name})
    monkeypatch.setattr("s2v_core.inference.predict.predict_night", _boom)
    caplog.set_level(logging.ERROR, logger=C.log.name)
    at = _run(_app("gates", str(model)))
    assert [w for w, _ in _incidents(at)] == ["staging the night"]
    assert SECRET not in _shown(at)
    assert any(getattr(r, "incident", None) == _incidents(at)[0][1] for r in caplog.records)


def test_a_failure_in_an_upload_callback_is_an_incident(tiny_model, monkeypatch):
    def release_fails(file_id):
        raise OSError(f"{SECRET}/uploads/{file_id}: busy")

    monkeypatch.setattr("app_state._release_upload", release_fails)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["night_source"] = "Upload a recording"
    at.session_state["model_dir"] = tiny_model
    _run(at)
    data = (ROOT / "sample_data" / "sub-001_night1.edf").read_bytes()
    at.file_uploader[0].set_value(("first.edf", data, "application/octet-stream"))
    _run(at)
    at.file_uploader[0].set_value(("second.edf", data + b"", "application/octet-stream"))
    _run(at)  # replacing the upload releases the first one, which fails here
    assert "keeping the uploaded file" in [w for w, _ in _incidents(at)]
    assert SECRET not in _shown(at)


@pytest.mark.parametrize("message", [
    f"{SECRET}/cut.edf: truncated EDF: the file ends inside the signal headers",
    f"no shipped model found ({SECRET}/models/classifier or {SECRET}/sample_data/model)",
    f"'{SECRET}/with space/odd name.edf' cannot be read",
])
def test_expected_errors_keep_their_message_without_server_paths(tiny_model, monkeypatch, message):
    def expected(*args, **kwargs):
        raise S2VError(message)

    monkeypatch.setattr("s2v_core.night.Night.summary", expected)
    at = _run(_app("night", tiny_model))
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and not _incidents(at), errors
    assert errors[0] == C.public_message(message)
    assert SECRET not in _shown(at) and "secret" not in errors[0]


def test_a_bad_checkpoint_message_names_files_not_server_paths(tmp_path):
    folder = write_tiny_classifier(tmp_path / "private-run" / "best", extra={"nonce": "bad-json"})
    (folder / "config.json").write_text("{not json")
    for page in ("hypnogram", "model"):
        at = _run(_app(page, str(folder)))
        errors = [e.value for e in at.error]
        assert any(re.match(r"(best/)?config\.json: not valid JSON", e) for e in errors), errors
        assert str(tmp_path) not in _shown(at)


@pytest.mark.parametrize(("text", "expected"), [
    ("/tmp/pytest-1/clf/config.json: not valid JSON (x)", "config.json: not valid JSON (x)"),
    (f"no model at {ROOT}/models/sleep2vec-small/classifier.", "no model at classifier."),
    ("'/home/jane doe/data/night 1.edf' is empty", "'night 1.edf' is empty"),
    ("C:\\Users\\jane\\night.edf: bad", "night.edf: bad"),
    ("~/runs/best: missing model.safetensors", "best: missing model.safetensors"),
    ("use W/N1/N2/N3/R (or REM, 'Sleep stage 1', ...)", "use W/N1/N2/N3/R (or REM, 'Sleep stage 1', ...)"),
    ("see https://example.org/a/b and 1/3 of µV/s", "see https://example.org/a/b and 1/3 of µV/s"),
])
def test_public_message_replaces_paths_by_names(text, expected):
    assert C.public_message(text) == expected


def test_public_value_cleans_checkpoint_metadata():
    extra = {"data": {"store": "/tmp/s2v-adapt-30lkeuzv/store"}, "pretrained": ".cache/recipe/finetune/best",
             "runs": [f"{SECRET}/a", 3]}
    assert C.public_value(extra) == {"data": {"store": "store"}, "pretrained": ".cache/recipe/finetune/best",
                                     "runs": ["a", 3]}


@pytest.mark.parametrize("control", ["RerunException", "StopException"])
def test_streamlit_control_flow_passes_through_the_guard(control):
    from streamlit.runtime.scriptrunner_utils import exceptions

    exc_type = getattr(exceptions, control)
    with pytest.raises(exc_type), C.guarded("doing nothing"):
        raise exc_type(None) if control == "RerunException" else exc_type()


def test_streamlit_shows_no_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"  # False would still mean "stacktrace"


# --- 2. the Model page -------------------------------------------------------------------------------
def _model_page(model_dir: str | None = None) -> AppTest:
    return _run(_app("model", model_dir))


def _label(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("Classifier checkpoint:"))


def test_the_shipped_model_is_shown_by_name_not_by_path():
    if not (C.SHIPPED_CLASSIFIER / "model.safetensors").exists():
        pytest.skip("the shipped model is not built on this machine")
    at = _model_page()
    assert _label(at) == "Classifier checkpoint: **sleep2vec-small (shipped)**"
    shown = _shown(at)
    for leak in (str(C.SHIPPED_CLASSIFIER), str(C.MODEL_DIR), str(ROOT), "/tmp/"):
        assert leak not in shown, leak
    assert not at.text_input, "no server path can be typed by default"
    assert at.selectbox(key="model_folder_choice").options[0] == "sleep2vec-small (shipped)"


@pytest.mark.parametrize("path", ["/etc", "../../../../etc", "models/../../../etc/passwd", "__TMP_CONFIG__"])
def test_a_typed_server_path_is_refused_by_default(tmp_path, path):
    folder = tmp_path / "elsewhere"
    write_tiny_classifier(folder)
    path = str(folder) if path == "__TMP_CONFIG__" else path
    with pytest.raises(S2VError, match="switched off") as err:
        C.use_model_path(path)
    assert path not in str(err.value) and "elsewhere" not in str(err.value)


@pytest.mark.parametrize("name", ["../../etc", "/etc", "sleep2vec-small/../../../etc",
                                  "sleep2vec-small/classifier/../../..", "", "sleep2vec-small"])
def test_only_offered_folder_names_load(name):
    with pytest.raises(S2VError, match="not one this server offers") as err:
        C.use_model_folder(name)
    assert name not in str(err.value) or not name


def _hostile_folder(tmp_path: Path, kind: str, weights: Path) -> str:
    """Server folders a user might point the any-path mode at; none may be described back."""
    if kind in ("/etc", "/etc/../etc", "/nowhere/at/all"):
        return kind
    d = tmp_path / "private-project"
    d.mkdir()
    if kind in ("config_values", "pickle"):  # real weights: the config is read and checked
        (d / "model.safetensors").write_bytes(weights.read_bytes())
    (d / "secret-notes-7311.txt").write_text("do not list me")
    if kind == "config_values":  # values a validation error would quote
        (d / "config.json").write_text(json.dumps({"format_version": "SECRET-VALUE-5521", "kind": "SECRET-KIND-8842",
                                                   "written_by": "SECRET-WRITER-1234"}))
    elif kind == "pickle":  # the pickle refusal would name the files in the folder
        (d / "config.json").write_text("{}")
        (d / "weights-SECRET-9931.pt").write_bytes(b"\x80\x04")
    elif kind == "traversal":
        return str(d / ".." / ".." / ".." / "etc")
    return str(d)


@pytest.mark.parametrize("kind", ["/etc", "/etc/../etc", "/nowhere/at/all", "traversal", "config_values",
                                  "pickle", "empty_folder"])
def test_any_path_mode_says_nothing_about_the_folder(tiny_model, tmp_path, monkeypatch, caplog, kind):
    monkeypatch.setenv(C.ENV_ANY_MODEL_PATH, "1")
    caplog.set_level(logging.WARNING, logger=C.log.name)
    path = _hostile_folder(tmp_path, kind, Path(tiny_model) / "model.safetensors")
    at = _model_page(tiny_model)
    before = _label(at)
    at.text_input(key="model_path_input").set_value(path)
    at.button(key="model_path_load").click()
    _run(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    generic = re.sub(r"incident [0-9a-f]{6}", "incident X", errors[0]).replace("\\`", "`")
    assert generic == ("that folder could not be loaded as a staging checkpoint (a folder written by `s2v finetune`, "
                       "e.g. RUN/best, with config.json and model.safetensors); incident X, the details are in the "
                       "server log")
    shown = _shown(at)
    for leak in ("SECRET", "secret-notes", "private-project", "/etc", "nowhere", str(tmp_path)):
        assert leak not in shown, leak
    assert _label(at) == before and at.session_state["model_dir"] == tiny_model  # the model did not change
    incident = re.search(r"incident ([0-9a-f]{6})", errors[0]).group(1)
    assert any(getattr(r, "incident", None) == incident and r.exc_info for r in caplog.records)


def test_any_path_mode_loads_a_real_checkpoint_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv(C.ENV_ANY_MODEL_PATH, "1")
    folder = write_tiny_classifier(tmp_path / "my-run" / "best", extra={"nonce": "typed"})
    at = _model_page()
    at.text_input(key="model_path_input").set_value(str(folder))
    at.button(key="model_path_load").click()
    _run(at)
    assert not at.error and _label(at) == "Classifier checkpoint: **best**"
    assert at.session_state["model_dir"] == str(folder) and str(tmp_path) not in _shown(at)


def _allow_list(tmp_path: Path) -> Path:
    root = tmp_path / "lab-models"
    write_tiny_classifier(root / "run-a" / "best", extra={"nonce": "run-a"})
    write_tiny_classifier(root / "run-b", extra={"nonce": "run-b"})
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "config.json").write_text(json.dumps({"kind": "pretrain"}))
    (root / "notes.txt").write_text("a file, not a folder")
    return root


def test_allow_listed_folders_are_offered_by_name_and_load(tmp_path, monkeypatch):
    root = _allow_list(tmp_path)
    single = write_tiny_classifier(tmp_path / "one-checkpoint", extra={"nonce": "single"})
    monkeypatch.setenv(C.ENV_MODEL_DIRS, f"{root}{__import__('os').pathsep}{single}")
    at = _model_page()
    options = at.selectbox(key="model_folder_choice").options
    assert {"lab-models/run-a/best", "lab-models/run-b", "one-checkpoint"} <= set(options)
    assert not any("not-a-model" in o or "notes" in o or o.startswith("/") for o in options), options
    at.selectbox(key="model_folder_choice").set_value("lab-models/run-a/best")
    at.button(key="model_folder_load").click()
    _run(at)
    assert not at.error and _label(at) == "Classifier checkpoint: **lab-models/run-a/best**"
    assert at.session_state["model_dir"] == str(root / "run-a" / "best")
    assert str(tmp_path) not in _shown(at)
    at.switch_page("pages/hypnogram.py")  # the pages stage with it
    _run(at)
    assert any(c.value.startswith("Model best-") for c in at.caption), [c.value for c in at.caption]


def _checkpoint_files(folder: Path) -> list[tuple[str, bytes, str]]:
    return [("config.json", (folder / "config.json").read_bytes(), "application/json"),
            ("model.safetensors", (folder / "model.safetensors").read_bytes(), "application/octet-stream")]


def _upload_model(at: AppTest, files) -> AppTest:
    at.file_uploader(key="model_upload").set_value(files)
    _run(at)
    at.button(key="model_upload_load").click()
    return _run(at)


def _model_temp_folders(root: Path) -> set[str]:
    return {p.name for p in root.glob("s2v-model-*")}


def test_an_uploaded_checkpoint_is_used_and_its_folder_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    first = write_tiny_classifier(tmp_path / "a", extra={"nonce": "upload-a"})
    second = write_tiny_classifier(tmp_path / "b", seed=1, extra={"nonce": "upload-b"})
    at = _upload_model(_model_page(), _checkpoint_files(first))
    assert not at.error and _label(at) == "Classifier checkpoint: **uploaded checkpoint**"
    assert any(c.value.startswith("Model id uploaded-") for c in at.caption)
    held = _model_temp_folders(tmp_path / "tmp")
    assert len(held) == 1 and str(tmp_path) not in _shown(at)
    at.switch_page("pages/gates.py")
    _run(at)
    assert not at.error and at.title
    at.switch_page("pages/model.py")
    _run(at)
    _upload_model(at, _checkpoint_files(second))  # replaced: the first folder goes
    now = _model_temp_folders(tmp_path / "tmp")
    assert len(now) == 1 and now != held
    next(b for b in at.button if b.label == "Back to the shipped model").click()
    _run(at)
    assert _model_temp_folders(tmp_path / "tmp") == set() and "model_dir" not in at.session_state
    _upload_model(at, _checkpoint_files(first))
    assert len(_model_temp_folders(tmp_path / "tmp")) == 1
    del at  # the session ends: its state, and the folder with it, goes
    for _ in range(50):  # a script thread of the app may hold the state a moment longer
        gc.collect()
        if not _model_temp_folders(tmp_path / "tmp"):
            break
        time.sleep(0.1)
    assert _model_temp_folders(tmp_path / "tmp") == set()


@pytest.mark.parametrize("defect", ["only_config", "two_configs", "not_json", "config_not_for_weights"])
def test_a_bad_upload_is_a_message_and_leaves_nothing(tmp_path, monkeypatch, tiny_model, defect):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    files = _checkpoint_files(write_tiny_classifier(tmp_path / "c", extra={"nonce": f"bad-{defect}"}))
    if defect == "only_config":
        files, expected = files[:1], r"^upload the two files of one checkpoint folder.*\(got config\.json\)"
    elif defect == "two_configs":
        files, expected = [files[0], ("other.json", b"{}", "application/json")], r"got config\.json, other\.json"
    elif defect == "not_json":
        files[0], expected = ("config.json", b"{oops", "application/json"), r"^uploaded( checkpoint)?/config\.json: not valid"
    else:
        meta = json.loads(files[0][1])
        meta["model"]["n_layers"] = 7
        files[0], expected = ("config.json", json.dumps(meta).encode(), "application/json"), r"n_layers = 7"
    at = _upload_model(_model_page(tiny_model), files)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and re.search(expected, errors[0]), errors
    assert at.session_state["model_dir"] == tiny_model  # the model in use stays
    assert _model_temp_folders(tmp_path / "tmp") == set() and str(tmp_path) not in _shown(at)


# --- a real server ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_on_a_real_server_the_message_has_the_id_and_the_server_log_the_traceback(tmp_path):
    """`streamlit run`: no server path on the Model page, and an incident's traceback in the server's log."""
    pytest.importorskip("websockets")
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    from tests.app_session import AppSession, start_server, stop_server

    log = tmp_path / "server.log"
    proc, url = start_server({C.ENV_ANY_MODEL_PATH: "1", "OMP_NUM_THREADS": "1"}, log_path=log)
    try:
        with AppSession(url, timeout=300) as s:
            s.rerun()
            run = s.rerun("model")
            assert not run.exceptions and str(ROOT) not in run.text, run.text[:500]
            assert "Classifier checkpoint: **sleep2vec-small (shipped)**" in run.text
            box = run.widget_with_key("text_input", "model_path_input")
            button = run.widget_with_key("button", "model_path_load")
            s.states[box.id] = WidgetState(id=box.id, string_value=f"{SECRET}/run/best")
            s.states[button.id] = WidgetState(id=button.id, trigger_value=True)
            run = s.rerun()
    finally:
        stop_server(proc)
    assert not run.exceptions, run.exceptions
    errors = [e for e in run.errors if "incident" in e]
    assert len(errors) == 1 and SECRET not in run.text, run.errors
    incident = re.search(r"incident ([0-9a-f]{6})", errors[0]).group(1)
    server_log = log.read_text()
    at = server_log.index(f"incident {incident}")
    assert "Traceback (most recent call last)" in server_log[at:] and SECRET in server_log[at:]
