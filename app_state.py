"""The app's shared state and cached calls, used by every page in ``pages/`` (not a page itself).

All session-state keys live here. Heavy objects are cached: the model with ``st.cache_resource``
(shared, never mutated), nights and predictions with ``st.cache_data`` keyed by (file hash,
modality subset, model id), so a widget change never re-reads a file or re-runs the model twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from s2v_core.errors import S2VError
from s2v_core.limits.jsonfile import read_json
from s2v_core.modalities import MODALITIES
from s2v_core.night import Night
from s2v_core.recording.loading import with_hypnogram
from s2v_core.recording.pairing import hypnogram_for, is_hypnogram_name
from s2v_core.recording.registry import (
    UPLOAD_SUFFIXES,
    load_recording,
    recording_labels,
    single_recording,
)
from s2v_core.sanitize.text import markdown_safe
from s2v_core.shipped import MODEL_DIR, REPO_ROOT, cache_dir, shipped_night
from s2v_core.synth.cohort import full_sample_night


def _leave_legacy_page_mode() -> None:
    """Make a deep link opened first after server start use app.py's navigation.

    Streamlit treats an app with a ``pages/`` folder as a legacy multipage app until app.py has
    called ``st.navigation`` once in this server process. A first request to e.g. ``/hypnogram``
    therefore runs the page file alone: the sidebar lists every file of ``pages/`` (this module
    too) and app.py's page config is skipped. Every page imports this module, so here the legacy
    flag is cleared and the run restarted: the rerun executes app.py, which opens the same page
    (page identity is the URL path in both modes). Streamlit internals are used defensively: if
    they move, nothing happens and the old behaviour remains.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a future Streamlit without it
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_page_mode()

# Session-state keys (the only ones the app uses).
K_SOURCE = "night_source"  # the chosen source; kept when the Night page's radio is not shown
K_SOURCE_RADIO = "night_source_radio"  # the radio widget itself (Streamlit drops it on other pages)
K_MAPPING = "mapping_overrides"
K_MAPPING_EDITOR = "mapping_editor"  # the Night page's channel table (its pending edits)
K_UPLOAD = "upload"
K_HYP_UPLOAD = "hypnogram_upload"
K_KEPT_UPLOADS = "kept_uploads"  # {K_UPLOAD: tuple of KeptFile, K_HYP_UPLOAD: KeptFile}, see remember_upload()
K_SFREQ = "dreams_sfreq"  # sampling rate typed for an uploaded DREAMS text excerpt (0: from its hypnogram)
K_ACTIVE = "active_modalities"
K_DEFAULTS_FOR = "active_defaults_for"  # the night whose first-view toggle defaults were applied
K_AUTO_OFF = "active_auto_off"  # modalities that night's defaults switched off (unlike the training data)
K_EPOCH = "selected_epoch"
K_EPOCH_CLICK = "selected_epoch_click"  # last hypnogram click already applied to K_EPOCH
K_MODEL_DIR = "model_dir"
K_MODEL_LABEL = "model_label"  # how the model in use is named to the user (never a server path)
K_MODEL_UPLOAD = "model_upload_folder"  # KeptFolder holding an uploaded checkpoint, see use_uploaded_model()

SOURCES = ("Sample night (8 h PSG)", "Shipped 1-h excerpt", "Upload a recording")
RECORDING_TYPES = list(UPLOAD_SUFFIXES)  # what the recording uploader takes (registry: recordings, companions, hypnograms)
MAX_UPLOAD_MB = 2048


@dataclass(frozen=True)
class LoadedNight:
    """A night plus what identifies it for caching."""

    night: Night
    key: str  # file hash + mapping: the cache key of everything derived from this night
    labels: tuple[str, ...]  # channel labels in the file (for the mapping editor)
    path: str | None = None  # the file on this machine it was read from (None: an upload held in memory)


def _file_key(path: Path) -> str:
    st_ = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st_.st_size}:{st_.st_mtime_ns}".encode()).hexdigest()[:16]


@st.cache_data(show_spinner="Reading the recording...", max_entries=6)
def _night_from_path(path: str, hyp: str | None, mapping: tuple, _key: str) -> Night:
    night = load_recording(path, hyp, mapping=dict(mapping), allow_mismatch=True)
    night.signals = {m: np.asarray(x) for m, x in night.signals.items()}
    return night


@dataclass(frozen=True)
class KeptFile:
    """An uploaded file held in this session's state, hashed once."""

    name: str
    digest: str  # SHA-256 of ``data``: with ``mapping``, the cache key of everything read from it
    data: bytes = field(repr=False)
    file_id: str = ""  # the uploader's id for this upload (a new upload of the same name differs)


def remember_upload(key: str) -> None:
    """``on_change`` of the Night page's uploaders: keep (or drop) the files in session state.

    Streamlit forgets a widget's value once a page without the widget has run, so without this an
    upload would be lost on the first click on another page, and coming back to the Night page
    shows an empty uploader. Only a user's change calls this (an upload, or removing a file), not
    the uploader being drawn again empty. The recording uploader takes several files (the files
    of one WFDB, BrainVision or EEGLAB record, a DREAMS excerpt with its hypnogram): they are
    kept in upload order as a tuple. The bytes are referenced, not copied, and hashed once per
    upload. Session state is per browser session: nothing is shared with other sessions.
    """
    kept = dict(st.session_state.get(K_KEPT_UPLOADS, {}))
    up = st.session_state.get(key)
    ups = [u for u in (up if isinstance(up, list) else [up]) if u is not None]
    old = kept.pop(key, None)
    old_files = old if isinstance(old, tuple) else (() if old is None else (old,))
    ids = {u.file_id for u in ups}
    still = [f for f in old_files if f.file_id in ids]
    known = {f.file_id for f in still}
    new = [KeptFile(u.name, hashlib.sha256(u.getvalue()).hexdigest(), u.getvalue(), u.file_id)
           for u in ups if u.file_id not in known]  # fmt: skip
    files = tuple(still + new)
    if key == K_UPLOAD and files != old_files:  # another recording: its channel overrides do not apply
        st.session_state.pop(K_MAPPING, None)
        st.session_state.pop(K_MAPPING_EDITOR, None)
    if files:
        kept[key] = files if key == K_UPLOAD else files[-1]
    st.session_state[K_KEPT_UPLOADS] = kept  # before the release: a failing release loses no upload
    for f in old_files:
        if f.file_id not in ids:
            _release_upload(f.file_id)


def uploaded_recording_files() -> tuple[KeptFile, ...]:
    """The files of the uploaded recording, in upload order (empty when none)."""
    files = st.session_state.get(K_KEPT_UPLOADS, {}).get(K_UPLOAD)
    return files if isinstance(files, tuple) else (() if files is None else (files,))


def upload_is_dreams_text(files: tuple[KeptFile, ...]) -> bool:
    """Whether the upload holds a DREAMS text excerpt (a ``.txt`` that is not named as a hypnogram)."""
    return any(f.name.lower().endswith(".txt") and not is_hypnogram_name(f.name) for f in files)


def _release_upload(file_id: str) -> None:
    """Let Streamlit free an upload this session no longer uses.

    Streamlit keeps every uploaded file in server memory until the browser deletes it or the
    session ends, and the browser cannot delete a file whose uploader was drawn again empty after
    a visit to another page; without this, each recording uploaded in a session stays in memory
    until the session closes.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None and file_id:
        ctx.uploaded_file_mgr.remove_file(ctx.session_id, file_id)


def _write_upload(folder: Path, name: str, data: bytes) -> Path:
    path = folder / Path(name).name  # the name only: never a path a browser sends
    path.write_bytes(data)
    return path


@st.cache_data(show_spinner="Reading the uploaded recording...", max_entries=2)
def _recording_from_upload(names: tuple[str, ...], digests: tuple[str, ...], mapping: tuple, sfreq: float | None,
                           hyp_name: str | None, hyp_digest: str | None, _data: tuple[bytes, ...],
                           _hyp: bytes | None) -> tuple[Night, tuple[str, ...]]:
    """The uploaded recording's night and channel labels, keyed by the files' digests.

    All files go into one private temporary folder, removed as soon as they are read; the
    recording among them is found and read as ``s2v info`` reads a folder's recording
    (:func:`s2v_core.recording.registry.single_recording`), with the hypnogram paired with it
    by name when one was uploaded with it. ``hyp_name``/``_hyp`` (the hypnogram uploader's
    file) are given only for a DREAMS text excerpt without ``sfreq``: its rate comes from them.
    """
    with tempfile.TemporaryDirectory(prefix="s2v-upload-") as tmp:
        folder = Path(tmp) / "upload"
        folder.mkdir()
        for name, data in zip(names, _data, strict=True):
            _write_upload(folder, name, data)
        psg, kind = single_recording(folder)
        hyp = hypnogram_for(psg, kind) if kind != "wfdb" else None
        if hyp is None and _hyp is not None and hyp_name:
            hyp = _write_upload(Path(tmp), hyp_name, _hyp)
        night = load_recording(psg, hyp, mapping=dict(mapping), allow_mismatch=True, sfreq=sfreq)
        night.signals = {m: np.asarray(x) for m, x in night.signals.items()}
        return night, recording_labels(psg)


@st.cache_data(show_spinner="Reading the hypnogram...", max_entries=4)
def _night_from_upload(names: tuple[str, ...], digests: tuple[str, ...], hyp_name: str | None,
                       hyp_digest: str | None, mapping: tuple, sfreq: float | None, _data: tuple[bytes, ...],
                       _hyp: bytes | None) -> tuple[Night, tuple[str, ...]]:
    # The bytes are identified by their digests (underscore arguments are not hashed again).
    # The signals are read once per recording: adding or changing the hypnogram only re-scores
    # (except for a DREAMS text excerpt without a typed rate, whose rate comes from the hypnogram).
    dreams = sfreq is None and any(n.lower().endswith(".txt") and not is_hypnogram_name(n) for n in names)
    given = (hyp_name, hyp_digest, _hyp) if dreams and _hyp is not None else (None, None, None)
    night, labels = _recording_from_upload(names, digests, mapping, sfreq, given[0], given[1], _data, given[2])
    if _hyp is None or not hyp_name or given[2] is not None:
        return night, labels
    with tempfile.TemporaryDirectory(prefix="s2v-upload-") as tmp:
        hyp_path = _write_upload(Path(tmp), hyp_name, _hyp)
        return with_hypnogram(night, hyp_path, allow_mismatch=True), labels


def selected_night() -> LoadedNight | None:
    """The night chosen on the Night page (the 8-h sample night by default)."""
    source = st.session_state.get(K_SOURCE, SOURCES[0])
    mapping = tuple(sorted(st.session_state.get(K_MAPPING, {}).items()))
    if source == SOURCES[2]:
        files = uploaded_recording_files()
        hyp_up = st.session_state.get(K_KEPT_UPLOADS, {}).get(K_HYP_UPLOAD)
        if not files:
            return None
        sfreq = float(st.session_state.get(K_SFREQ) or 0) or None if upload_is_dreams_text(files) else None
        names, digests = tuple(f.name for f in files), tuple(f.digest for f in files)
        night, labels = _night_from_upload(names, digests, hyp_up.name if hyp_up else None,
                                           hyp_up.digest if hyp_up else None, mapping, sfreq,
                                           tuple(f.data for f in files), hyp_up.data if hyp_up else None)
        files_key = hashlib.sha256("".join(digests).encode()).hexdigest()[:16]
        hyp_key = hyp_up.digest[:16] if hyp_up else "-"
        return LoadedNight(night, f"{files_key}:{hyp_key}:{sfreq}:{mapping}", labels)
    if source == SOURCES[0]:
        with st.spinner("Generating the synthetic sample night (first launch only, a few seconds)..."):
            psg, hyp = full_sample_night()
    else:
        psg, hyp = shipped_night()
    key = _file_key(psg)
    night = _night_from_path(str(psg), str(hyp) if hyp else None, mapping, key)
    return LoadedNight(night, f"{key}:{mapping}", recording_labels(psg), str(psg))


@st.cache_data(show_spinner="Computing the signal features...", max_entries=8)
def _base_features(night_key: str, _night: Night) -> dict[str, np.ndarray]:
    """The night's raw base features: read by the familiarity check and by every prediction."""
    return _night.base_features()


@st.cache_data(show_spinner="Comparing the signals with the model's training data...", max_entries=16)
def _unfamiliar(night_key: str, model_key: str, _night: Night) -> dict[str, list[str]]:
    from s2v_core.inference.familiarity import unfamiliar_modalities

    _, extra, _ = get_model()
    ranges = extra.get("feature_ranges")
    if not ranges:
        return {}
    return unfamiliar_modalities(_night, ranges, _night.modalities, base=_base_features(night_key, _night))


def unfamiliar_modalities_of(loaded: LoadedNight) -> dict[str, list[str]]:
    """The night's modalities whose features are outside the model's training ranges (none without a model)."""
    try:
        _, _, mid = get_model()
    except S2VError:  # no model yet: the pages that need one say so
        return {}
    try:
        return _unfamiliar(loaded.key, mid, loaded.night)
    except Exception:  # noqa: BLE001 - the staging step computes the same features and reports the error
        log.exception("familiarity check failed for night %s", loaded.key)
        return {}


def active_modalities(loaded: LoadedNight, *, familiarity: bool = True) -> tuple[str, ...]:
    """Sidebar toggles shared by all pages: which of the night's modalities the model sees.

    When a night is first staged, modalities whose signals look unlike the model's training data
    start switched off (as ``s2v predict`` leaves them out), unless every one does; a caption
    says which and why. Otherwise the toggles keep the user's choice from night to night.
    ``familiarity=False`` (the Night page, which stages nothing) skips that check, which reads
    every modality's features, until a page that stages the night runs it.
    """
    from s2v_core.inference.familiarity import familiar_subset

    night = loaded.night
    available = night.modalities
    unfamiliar = unfamiliar_modalities_of(loaded) if familiarity else {}
    _, off = familiar_subset(available, unfamiliar)
    if familiarity and st.session_state.get(K_DEFAULTS_FOR) != loaded.key:  # a night staged for the first time
        st.session_state[K_DEFAULTS_FOR] = loaded.key
        before = st.session_state.get(K_ACTIVE)
        restore = st.session_state.pop(K_AUTO_OFF, ())  # switched off for the previous night by this rule
        if off or restore:  # the toggles are rebuilt from K_ACTIVE below
            if before is not None:
                before = tuple(before) + tuple(restore)
            st.session_state[K_ACTIVE] = tuple(m for m in available if m not in off and (before is None or m in before))
            st.session_state[K_AUTO_OFF] = off
            for m in MODALITIES:
                st.session_state.pop(f"toggle_{m}", None)
    st.sidebar.markdown("**Modalities**")
    current = st.session_state.get(K_ACTIVE)
    chosen = []
    for m in MODALITIES:
        if m not in available:
            continue
        on = st.sidebar.toggle(m, value=current is None or m in current, key=f"toggle_{m}")
        if on:
            chosen.append(m)
    st.session_state[K_ACTIVE] = tuple(chosen)
    if st.session_state.get(K_AUTO_OFF):  # switched on by the user: the user's choice from now on
        st.session_state[K_AUTO_OFF] = tuple(m for m in st.session_state[K_AUTO_OFF] if m not in chosen)
    still_off = [m for m in off if m not in chosen]
    if still_off:
        st.sidebar.caption(markdown_safe(
            f"{', '.join(still_off)}: the signals look unlike the recordings the model was trained on (features "
            "outside its training range), so they start switched off for this night; switch them on to use them."))  # fmt: skip
    if not chosen:
        st.sidebar.warning("Switch at least one modality on.")
    return tuple(chosen)


def show_error(exc: Exception) -> None:
    """Errors from the library are written for users; show them as they are, less server paths."""
    st.error(markdown_safe(public_message(str(exc))))  # labels and file names: no links, no markup


# --- what users see of failures and of the server ----------------------------------------------
log = logging.getLogger("sleep2vec_studio.app")
if not logging.getLogger().handlers and not log.handlers:  # `streamlit run` configures no root handler
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(_handler)

# An absolute path (POSIX, ~/..., or C:\...) not inside a word or a URL; ':' ends a path, as in
# the library's "PATH: problem" messages.
_ABS_PATH = re.compile(r"(?<![\w.~/\\:-])(?:~?/|[A-Za-z]:\\)[^\s'\"`<>|,;:()\[\]{}]+")
_QUOTED_PATH = re.compile(r"(['\"`])((?:~?/|[A-Za-z]:\\)[^'\"`\n]+)\1")  # may hold spaces


def _server_dirs() -> list[str]:
    """Server folders that may appear in messages (longest first): named, not shown, to users."""
    dirs = {REPO_ROOT, MODEL_DIR, Path.home(), Path(tempfile.gettempdir()), Path.cwd(), Path(sys.prefix),
            cache_dir()}
    out = set()
    for d in dirs:
        for form in (d, d.resolve()):
            if len(form.parts) > 1:  # never the bare root '/'
                out.add(str(form))
    return sorted(out, key=len, reverse=True)


def _file_name(text: str) -> str:
    """The last component of the path ``text`` (trailing sentence punctuation kept)."""
    tail = ""
    while text and text[-1] in ".'\"":  # sentence punctuation after a path stays
        tail, text = text[-1] + tail, text[:-1]
    name = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return (name or "…") + tail


def public_message(text: str) -> str:
    """``text`` with every absolute server path replaced by its last component (a file name).

    Library messages name files by path; users of the app see file names only, so the layout of
    the server (home folder, temporary folders, where the app is installed) never reaches them.
    """
    for d in _server_dirs():  # known folders first: a space in one would stop the pattern midway
        text = text.replace(d + os.sep, "/…/").replace(d, Path(d).name or "…")
    text = _QUOTED_PATH.sub(lambda m: m.group(1) + _file_name(m.group(2)) + m.group(1), text)
    return _ABS_PATH.sub(lambda m: _file_name(m.group(0)), text)


def public_value(value):
    """:func:`public_message` applied to every string in a JSON-like value (dicts, lists)."""
    if isinstance(value, str):
        return public_message(value)
    if isinstance(value, dict):
        return {public_message(str(k)): public_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_value(v) for v in value]
    return value


def new_incident_id() -> str:
    """A short random id that ties a message shown to a user to its server-log record."""
    return secrets.token_hex(3)


def incident_message(what: str, incident: str) -> str:
    return f"Something went wrong {what} (incident {incident}); the details are in the server log."


def report_incident(what: str, exc: BaseException) -> str:
    """Log ``exc`` with its traceback under a new incident id and show the user a short message."""
    incident = new_incident_id()
    log.error("incident %s: something went wrong %s: %s: %s", incident, what, type(exc).__name__, exc,
              exc_info=(type(exc), exc, exc.__traceback__), extra={"incident": incident})
    st.error(incident_message(what, incident))
    return incident


@dataclass
class Guard:
    """What :func:`guarded` saw: ``failed`` after any error, ``incident`` after an unexpected one."""

    failed: bool = False
    incident: str | None = None


@contextmanager
def guarded(what: str) -> Iterator[Guard]:
    """Turn every failure inside the block into a one-line message; ``what`` says what was being done.

    A :class:`~s2v_core.errors.S2VError` (an expected problem: a bad file, a missing model) is
    shown as its message, server paths replaced by file names. Any other exception is logged with
    its traceback under a short incident id, and the user sees "Something went wrong <what>
    (incident 3f9a2c); the details are in the server log" instead of a traceback. Streamlit's
    own control flow (``st.rerun``, ``st.stop``, page switches) passes through: those exceptions
    derive from ``BaseException``. The block is left at the failure; check ``guard.failed``::

        with guarded("reading the recording") as g:
            loaded = selected_night()
        if g.failed:
            return None

    Also usable as a decorator (the function then returns None after a failure), e.g. for
    widget callbacks, which Streamlit runs outside the page's own code.
    """
    guard = Guard()
    try:
        yield guard
    except S2VError as exc:
        guard.failed = True
        show_error(exc)
    except Exception as exc:  # noqa: BLE001 - the point: nothing unexpected reaches the user as a traceback
        guard.failed = True
        guard.incident = report_incident(what, exc)


# widget callbacks run before the page's code, outside its guard
remember_upload = guarded("keeping the uploaded file")(remember_upload)


# --- model and predictions -----------------------------------------------------------------
SHIPPED_CLASSIFIER = MODEL_DIR / "classifier"


SHIPPED_LABEL = f"{MODEL_DIR.name} (shipped)"
ENV_MODEL_DIRS = "S2V_MODEL_DIRS"  # os.pathsep-separated folders whose checkpoints the Model page offers
ENV_ANY_MODEL_PATH = "S2V_ALLOW_ANY_MODEL_PATH"  # "1": the Model page also loads a typed server path
MAX_SCANNED_DIRS = 500  # per allow-listed folder, when looking for checkpoints in it


def model_dir() -> Path:
    """The classifier folder in use: chosen on the Model page, else the shipped model."""
    return Path(st.session_state.get(K_MODEL_DIR) or SHIPPED_CLASSIFIER)


def model_label() -> str:
    """The model in use as the user sees it: a name, never a server path."""
    label = st.session_state.get(K_MODEL_LABEL)
    if label:
        return label
    path = model_dir()
    return SHIPPED_LABEL if path == SHIPPED_CLASSIFIER else path.name


def any_model_path_allowed() -> bool:
    """Whether the Model page may load any server folder typed by the user (off unless set)."""
    return os.environ.get(ENV_ANY_MODEL_PATH, "").strip().lower() in {"1", "true", "yes", "on"}


def _model_roots() -> list[tuple[Path, bool]]:
    """(folder, is the shipped models/ folder) for the shipped models and each of S2V_MODEL_DIRS."""
    roots = [(MODEL_DIR.parent, True)]
    for entry in os.environ.get(ENV_MODEL_DIRS, "").split(os.pathsep):
        if entry.strip():
            roots.append((Path(entry.strip()).expanduser(), False))
    return roots


def _is_classifier_folder(path: Path) -> bool:
    try:
        if not (path / "model.safetensors").is_file():
            return False
        meta = read_json(path / "config.json")  # size and nesting capped (issue 16)
        return isinstance(meta, dict) and meta.get("kind") == "classifier"
    except (OSError, ValueError, S2VError):
        return False


def _checkpoints_under(root: Path) -> list[Path]:
    """``root`` itself if it is a classifier checkpoint, else those up to two levels below it."""
    if _is_classifier_folder(root):
        return [root]
    found, level, scanned = [], [root], 0
    for _ in range(2):
        below = []
        for d in level:
            try:
                children = sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
            except OSError:
                continue
            for c in children:
                scanned += 1
                if scanned > MAX_SCANNED_DIRS:
                    return found
                (found if _is_classifier_folder(c) else below).append(c)
        level = below
    return found


def allowed_model_folders() -> dict[str, Path]:
    """Display name -> classifier checkpoint folder, for every checkpoint the Model page offers.

    The shipped ``models/`` folder and each folder of ``S2V_MODEL_DIRS`` (the folder itself if it
    is a checkpoint, else checkpoints up to two levels below it, e.g. ``RUN/best``). Users pick a
    name; the path behind it never leaves the server, and no name a user sends is ever a path.
    """
    out: dict[str, Path] = {}
    for root, shipped in _model_roots():
        for path in _checkpoints_under(root):
            if path == SHIPPED_CLASSIFIER:
                name = SHIPPED_LABEL
            else:
                rel = path.relative_to(root).as_posix()
                name = rel if shipped else (root.name if rel == "." else f"{root.name}/{rel}")
            unique, k = name, 2
            while unique in out:
                unique, k = f"{name} ({k})", k + 1
            out[unique] = path
    return out


class KeptFolder:
    """A private temporary folder owned by one session (an uploaded checkpoint).

    Removed by :meth:`remove` when replaced, or when the object is garbage-collected: the session
    state holding it is dropped when the session ends (and at interpreter exit at the latest).
    """

    def __init__(self, prefix: str = "s2v-model-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)

    def remove(self) -> None:
        self._finalizer()


def _load_model_folder(path: Path) -> None:
    """Load ``path`` into the shared model cache (raises when it is not a loadable classifier)."""
    stamp = str((path / "model.safetensors").stat().st_mtime_ns)
    _model(str(path), stamp)


def _set_model(path: Path, label: str, upload: KeptFolder | None = None) -> None:
    old = st.session_state.get(K_MODEL_UPLOAD)
    st.session_state[K_MODEL_DIR] = str(path)
    st.session_state[K_MODEL_LABEL] = label
    st.session_state[K_MODEL_UPLOAD] = upload
    if old is not None and old is not upload:
        old.remove()


def use_shipped_model() -> None:
    """Back to the shipped model; an uploaded checkpoint's folder is removed."""
    old = st.session_state.pop(K_MODEL_UPLOAD, None)
    st.session_state.pop(K_MODEL_DIR, None)
    st.session_state.pop(K_MODEL_LABEL, None)
    if old is not None:
        old.remove()


def use_model_folder(name: str) -> None:
    """Use the allow-listed checkpoint called ``name`` (see :func:`allowed_model_folders`)."""
    path = allowed_model_folders().get(name)
    if path is None:
        raise S2VError("that model folder is not one this server offers; choose one from the list")
    _load_model_folder(path)
    if path == SHIPPED_CLASSIFIER:
        use_shipped_model()
    else:
        _set_model(path, name)


def use_model_path(text: str) -> None:
    """Use a checkpoint folder typed by the user: only with S2V_ALLOW_ANY_MODEL_PATH=1.

    Every failure gives the same message, which says nothing about the folder (whether it exists,
    what is in it, what its config.json holds); the details go to the server log.
    """
    if not any_model_path_allowed():
        raise S2VError("loading a checkpoint from a folder on the server is switched off here; "
                       "upload the checkpoint's files or choose one of the offered folders")
    path = Path(text.strip()).expanduser()
    try:
        if not text.strip() or not (path / "config.json").is_file():
            raise S2VError("no config.json")
        _load_model_folder(path)
    except Exception as exc:  # noqa: BLE001 - one message for every failure, on purpose
        incident = new_incident_id()
        log.warning("incident %s: checkpoint folder %r could not be loaded: %s", incident, text, exc,
                    exc_info=(type(exc), exc, exc.__traceback__), extra={"incident": incident})
        raise S2VError(f"that folder could not be loaded as a staging checkpoint (a folder written by "
                       f"`s2v finetune`, e.g. RUN/best, with config.json and model.safetensors); incident "
                       f"{incident}, the details are in the server log") from None
    _set_model(path, path.name)


CHECKPOINT_UPLOAD_FILES = {".json": "config.json", ".safetensors": "model.safetensors"}


def use_uploaded_model(files) -> None:
    """Use an uploaded checkpoint: its ``config.json`` and ``model.safetensors`` (uploaded files).

    The files are written to a private temporary folder of this session (``s2v-model-*``), loaded
    once to check them, and kept while the checkpoint is in use: the folder is removed when
    another model is chosen, when loading fails, or when the session ends.
    """
    files = list(files or [])
    suffixes = sorted(Path(f.name).suffix.lower() for f in files)
    if suffixes != sorted(CHECKPOINT_UPLOAD_FILES):
        got = ", ".join(Path(f.name).name for f in files) or "nothing"
        raise S2VError(f"upload the two files of one checkpoint folder, config.json and model.safetensors "
                       f"(got {got}); the optional optimizer files are not needed")
    kept = KeptFolder()
    folder = kept.path / "uploaded"  # the model id reads "uploaded-<hash of the files>"
    try:
        folder.mkdir()
        for f in files:
            (folder / CHECKPOINT_UPLOAD_FILES[Path(f.name).suffix.lower()]).write_bytes(f.getvalue())
        _load_model_folder(folder)
    except S2VError as exc:
        kept.remove()
        raise S2VError(str(exc).replace(str(folder), "uploaded checkpoint")) from None
    except BaseException:
        kept.remove()
        raise
    _set_model(folder, "uploaded checkpoint", kept)


@st.cache_resource(show_spinner="Loading the model...", max_entries=3)
def _model(path: str, _stamp: str):
    from s2v_core.inference.predict import load_classifier, model_id

    model, config, extra = load_classifier(path)
    return model, extra, model_id(path)


_WARM_UP_STARTED = False


def warm_up_model() -> None:
    """Start loading the shipped model in a background thread, once per server process.

    Called by app.py on every run (cheap after the first): importing torch and reading the
    weights takes seconds, and this way it overlaps with the user choosing or uploading a night
    instead of delaying the first prediction. The thread fills the same ``st.cache_resource``
    entry :func:`get_model` uses (Streamlit computes an entry once; a page asking meanwhile
    waits for it). Failures are left for :func:`get_model` to report.
    """
    global _WARM_UP_STARTED
    if _WARM_UP_STARTED:
        return
    _WARM_UP_STARTED = True
    weights = SHIPPED_CLASSIFIER / "model.safetensors"
    if not weights.exists():
        return
    import logging
    import threading

    # the thread has no script context on purpose (no spinner to draw); silence that one warning
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)

    def load() -> None:
        try:
            _model(str(weights.parent), str(weights.stat().st_mtime_ns))
        except Exception:  # noqa: BLE001 - reported by get_model() when a page needs the model
            pass

    threading.Thread(target=load, name="s2v-model-warm-up", daemon=True).start()


def get_model():
    """``(model, extra, model_id)``; the model object is shared by all sessions and never mutated."""
    path = model_dir()
    if not (path / "model.safetensors").exists():
        raise S2VError(
            f"no model at {model_label()}: train the shipped model with its recipe (see README) "
            "or load a checkpoint on the Model page"
        )
    stamp = str((path / "model.safetensors").stat().st_mtime_ns)
    return _model(str(path), stamp)


@st.cache_data(show_spinner="Staging the night...", max_entries=64)
def _predict(night_key: str, subset: tuple[str, ...], model_key: str, _night: Night):
    from s2v_core.inference.predict import input_spec, predict_night

    model, extra, mid = get_model()
    ranges = extra.get("feature_ranges")
    # the night's features, shared with the familiarity check (computed once per night)
    base = _base_features(night_key, _night) if ranges or input_spec(model)["features"] else None
    return predict_night(model, _night, subset, name=mid, ranges=ranges, base=base)


def prediction(loaded: LoadedNight, subset: tuple[str, ...]):
    """Cached per (night, modality subset, model)."""
    _, _, mid = get_model()
    return _predict(loaded.key, tuple(subset), mid, loaded.night)


@st.cache_data(show_spinner="Staging the night with the simulated dropout...", max_entries=32)
def _predict_dropout(night_key: str, subset: tuple[str, ...], modality: str, span: tuple[int, int],
                     model_key: str, _night: Night):
    from s2v_core.inference.predict import predict_night
    from s2v_core.views.viewer import simulate_dropout

    model, _, mid = get_model()
    dropped = simulate_dropout(_night, modality, *span)
    used = tuple(m for m in subset if m in dropped.modalities)
    if not used:
        raise S2VError(f"dropping {modality} for the whole night leaves nothing to stage with "
                       f"(switched on: {', '.join(subset)}); switch another modality on or shorten the span")
    return predict_night(model, dropped, used, name=mid)


def dropout_prediction(loaded: LoadedNight, subset: tuple[str, ...], modality: str, span: tuple[int, int]):
    """Prediction with ``modality`` missing over epochs ``span`` (end excluded); cached per
    (night, subset, modality, span, model). A modality dropped for the whole night leaves the subset."""
    _, _, mid = get_model()
    return _predict_dropout(loaded.key, tuple(subset), modality, (int(span[0]), int(span[1])), mid, loaded.night)


@st.cache_data(show_spinner="Computing the embeddings...", max_entries=8)
def _embeddings(night_key: str, subset: tuple[str, ...], model_key: str, _night: Night) -> bytes:
    from s2v_core.views.exports import embeddings_parquet

    model, _, _ = get_model()
    return embeddings_parquet(model, _night, subset)


def embeddings_parquet_bytes(loaded: LoadedNight, subset: tuple[str, ...]) -> bytes:
    """Per-epoch embeddings of the night (Parquet bytes); cached per (night, subset, model)."""
    _, _, mid = get_model()
    return _embeddings(loaded.key, tuple(subset), mid, loaded.night)


def night_or_explain(missing: str = "Choose or upload a night on the Night page first.") -> LoadedNight | None:
    """The selected night, or None after showing why there is none (an error, or ``missing``)."""
    loaded = None
    with guarded("reading the recording") as g:
        loaded = selected_night()
    if g.failed:
        return None
    if loaded is None:
        st.info(missing)
    return loaded


def night_and_prediction():
    """The selected night and its prediction for the active subset, or None after telling the user why."""
    loaded = night_or_explain()
    if loaded is None:
        return None
    subset = active_modalities(loaded)
    if not subset:
        st.warning("No modality is switched on: switch at least one on in the sidebar.")
        return None
    off = [m for m in unfamiliar_modalities_of(loaded) if m in loaded.night.modalities and m not in subset]
    if off:
        st.info(markdown_safe(f"Staged without {', '.join(off)}: {'its' if len(off) == 1 else 'their'} signals look "
                              "unlike the recordings the model was trained on. Switch them on in the sidebar to "
                              "use them anyway."), icon=":material/info:")  # fmt: skip
    with guarded("staging the night") as g:
        pred = prediction(loaded, subset)
    if g.failed:
        return None
    seen = seen_in_training_of(loaded)
    if seen is not None:  # shown with the prediction's other warnings, and exported with them
        from s2v_core.inference.familiarity import seen_in_training_warning

        pred.warnings.append(seen_in_training_warning(seen))
    return loaded, pred


def seen_in_training_of(loaded: LoadedNight) -> dict | None:
    """The model's record of this recording when it was part of its training data, else None."""
    from s2v_core.inference.familiarity import seen_in_training

    try:
        _, extra, _ = get_model()
    except S2VError:
        return None
    if loaded.path is not None:
        return seen_in_training(extra, path=loaded.path)
    for f in uploaded_recording_files():  # uploads are hashed already
        hit = seen_in_training(extra, size=len(f.data), sha256=f.digest)
        if hit is not None:
            return hit
    return None
