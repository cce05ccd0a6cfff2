"""A browserless Streamlit client: one real app session over the websocket protocol.

It speaks to a ``streamlit run`` server the way the browser front end does: it fetches the XSRF
cookie, opens ``/_stcore/stream``, sends ``rerun_script`` back-messages with the widget states
it has set, uploads files through ``file_urls_request`` + ``PUT /_stcore/upload_file/...`` and
reads the forward messages of each script run (metrics, alerts, tables, charts, download URLs).
Several of these can be open at once against one server, which is how the concurrency tests
and ``bench/bench_app_sessions.py`` hold many sessions without starting browsers.

Used by tests only (``tests/test_sessions.py``) and the session benchmark.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    env: dict[str, str] | None = None, *, timeout: float = 90.0, log_path: Path | None = None,
    options: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run app.py`` on a free loopback port.

    ``options`` are further ``--name value`` Streamlit options (e.g. ``server.disconnectedSessionTTL``).

    Returns
    -------
    proc : subprocess.Popen
        The server process (its output goes to ``log_path`` or is discarded).
    url : str
        ``http://127.0.0.1:PORT``.
    """
    port = free_port()
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false",
         *[a for k, v in (options or {}).items() for a in (f"--{k}", str(v))]],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            if requests.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("streamlit did not start")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server started by :func:`start_server` (this process only)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@dataclass
class Run:
    """What one script run displayed, in delta order."""

    elements: list[tuple[tuple[int, ...], Any]] = field(default_factory=list)
    finished: str = ""

    def of(self, kind: str) -> list[Any]:
        """The protos of every element of one kind (``metric``, ``alert``, ``dataframe``...)."""
        return [getattr(e, kind) for _, e in self.elements if e.WhichOneof("type") == kind]

    @property
    def metrics(self) -> dict[str, str]:
        return {m.label: m.body for m in self.of("metric")}

    @property
    def errors(self) -> list[str]:
        return [a.body for a in self.of("alert") if a.format == 1]  # Alert.Format.ERROR

    @property
    def exceptions(self) -> list[str]:
        return [f"{e.type}: {e.message}" for e in self.of("exception")]

    @property
    def text(self) -> str:
        """Headings, markdown, captions and alerts joined (for substring checks)."""
        parts = [h.body for h in self.of("heading")] + [m.body for m in self.of("markdown")]
        return "\n".join(parts + [a.body for a in self.of("alert")])

    def tables(self) -> list[Any]:
        """Every dataframe / data editor as a pandas DataFrame."""
        import pyarrow as pa

        out = []
        for d in self.of("dataframe"):
            with pa.ipc.open_stream(io.BytesIO(d.arrow_data.data)) as reader:
                out.append(reader.read_pandas())
        return out

    def plotly(self) -> list[dict]:
        return [json.loads(p.spec) for p in self.of("plotly_chart")]

    def widget(self, kind: str, label: str) -> Any:
        for w in self.of(kind):
            if w.label == label:
                return w
        raise KeyError(f"no {kind} labelled {label!r}; have {[w.label for w in self.of(kind)]}")

    def widget_with_key(self, kind: str, key: str) -> Any:
        for w in self.of(kind):
            if w.id.endswith(f"-{key}"):
                return w
        raise KeyError(f"no {kind} with key {key!r}")


class AppSession:
    """One browser-like session on a running server (use as a context manager).

    Parameters
    ----------
    url : str
        ``http://127.0.0.1:PORT`` of a running ``streamlit run``.
    timeout : float
        Seconds to wait for one script run (loading a night and staging it included).
    """

    def __init__(self, url: str, timeout: float = 180.0):
        import requests

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.get(self.url + "/_stcore/health", timeout=30)  # sets the _streamlit_xsrf cookie
        self.xsrf = self.http.cookies.get("_streamlit_xsrf")
        self.ws = None
        self.session_id = ""
        self.pages: dict[str, str] = {}  # url path ("night", "hypnogram"...) -> page script hash
        self.page_hash = ""
        self.states: dict[str, Any] = {}  # widget id -> WidgetState proto
        self.last = Run()

    # -- connection --------------------------------------------------------------------------
    def __enter__(self) -> AppSession:
        from websockets.sync.client import connect

        host = self.url.split("://", 1)[1]
        protocols = ["streamlit", self.xsrf] if self.xsrf else ["streamlit"]
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        self._ws_ctx = connect(f"ws://{host}/_stcore/stream", subprotocols=protocols,
                               additional_headers={"Cookie": cookie, "Origin": self.url},
                               max_size=None, open_timeout=30)
        self.ws = self._ws_ctx.__enter__()  # the context-manager form works across websockets versions
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.ws is not None:
            self._ws_ctx.__exit__(None, None, None)
            self.ws = None
        self.http.close()

    # -- protocol ------------------------------------------------------------------------------
    def _send(self, msg) -> None:
        self.ws.send(msg.SerializeToString())

    def _recv(self, deadline: float):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        left = deadline - time.time()
        if left <= 0:
            raise TimeoutError("the app did not finish its run in time")
        msg = ForwardMsg()
        msg.ParseFromString(self.ws.recv(timeout=left))
        return msg

    def rerun(self, page: str | None = None) -> Run:
        """Run the app (on ``page``, a url path such as "hypnogram") with the widget states set."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        if page is not None:
            self.page_hash = self.pages.get(page, page)
        back = BackMsg()
        back.rerun_script.query_string = ""
        back.rerun_script.page_script_hash = self.page_hash
        for state in self.states.values():
            back.rerun_script.widget_states.widgets.append(state)
        self._send(back)
        return self._collect()

    def _collect(self) -> Run:
        """Read forward messages until a script run finishes without asking for another."""
        deadline = time.time() + self.timeout
        run = Run()
        by_path: dict[tuple[int, ...], Any] = {}
        while True:
            msg = self._recv(deadline)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                by_path = {}
                self.session_id = msg.new_session.initialize.session_id or self.session_id
                for p in msg.new_session.app_pages:
                    self.pages[p.url_pathname or p.page_name] = p.page_script_hash
                self.page_hash = msg.new_session.page_script_hash or self.page_hash
            elif kind == "navigation":
                for p in msg.navigation.app_pages:
                    self.pages[p.url_pathname or p.page_name] = p.page_script_hash
                self.page_hash = msg.navigation.page_script_hash or self.page_hash
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                by_path[tuple(msg.metadata.delta_path)] = msg.delta.new_element
            elif kind == "script_finished":
                status = msg.DESCRIPTOR.fields_by_name["script_finished"].enum_type.values_by_number[
                    msg.script_finished].name
                if status == "FINISHED_EARLY_FOR_RERUN":
                    continue  # st.rerun(): the next run follows on its own
                run.elements = sorted(by_path.items())
                run.finished = status
                self._remember_defaults(run)
                self.last = run
                return run

    def _remember_defaults(self, run: Run) -> None:
        """Track widget states as the browser does.

        The front end sends the value of every widget shown by the last run and forgets the
        widgets a run no longer shows (another page's widgets, for instance).
        """
        shown = {getattr(e, e.WhichOneof("type")).id for _, e in run.elements
                 if hasattr(getattr(e, e.WhichOneof("type")), "id")}
        self.states = {k: v for k, v in self.states.items() if k in shown}
        for kind in ("radio", "checkbox"):
            for w in run.of(kind):
                if w.id in self.states:
                    continue
                from streamlit.proto.WidgetStates_pb2 import WidgetState

                s = WidgetState(id=w.id)
                if kind == "radio":
                    s.string_value = w.options[w.default]
                else:
                    s.bool_value = w.default
                self.states[w.id] = s

    # -- widgets ---------------------------------------------------------------------------------
    def set_radio(self, label: str, option: str) -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        w = self.last.widget("radio", label)
        if option not in w.options:
            raise KeyError(f"{label!r} has no option {option!r}; options: {list(w.options)}")
        self.states[w.id] = WidgetState(id=w.id, string_value=option)

    def set_toggle(self, key: str, value: bool) -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        w = self.last.widget_with_key("checkbox", key)
        self.states[w.id] = WidgetState(id=w.id, bool_value=value)

    def upload(self, label: str, name: str, data: bytes) -> None:
        """Upload ``data`` as ``name`` into the file uploader labelled ``label`` (no rerun)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        w = self.last.widget("file_uploader", label)
        self.remove_upload(label)  # a single-file uploader replaces its file, as the browser does
        back = BackMsg()
        request_id = uuid.uuid4().hex
        back.file_urls_request.request_id = request_id
        back.file_urls_request.file_names.append(name)
        back.file_urls_request.session_id = self.session_id
        self._send(back)
        deadline = time.time() + 30
        while True:
            msg = self._recv(deadline)
            if msg.WhichOneof("type") == "file_urls_response" and msg.file_urls_response.response_id == request_id:
                break
        if msg.file_urls_response.error_msg:
            raise RuntimeError(msg.file_urls_response.error_msg)
        urls = msg.file_urls_response.file_urls[0]
        r = self.http.put(self.url + urls.upload_url if urls.upload_url.startswith("/") else urls.upload_url,
                          files={"file": (name, data, "application/octet-stream")},
                          headers={"X-Xsrftoken": self.xsrf or ""}, timeout=120)
        r.raise_for_status()
        state = WidgetState(id=w.id)
        info = state.file_uploader_state_value.uploaded_file_info.add()
        info.file_id, info.name, info.size = urls.file_id, name, len(data)
        info.file_urls.CopyFrom(urls)
        self.states[w.id] = state

    def remove_upload(self, label: str) -> None:
        """Remove the file from the uploader labelled ``label`` (DELETE, as the browser's x does)."""
        w = self.last.widget("file_uploader", label)
        state = self.states.pop(w.id, None)
        if state is None:
            return
        for info in state.file_uploader_state_value.uploaded_file_info:
            url = info.file_urls.delete_url
            self.http.delete(self.url + url if url.startswith("/") else url,
                             headers={"X-Xsrftoken": self.xsrf or ""}, timeout=30).raise_for_status()
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        empty = WidgetState(id=w.id)
        empty.file_uploader_state_value.SetInParent()
        self.states[w.id] = empty

    def download(self, label: str) -> bytes:
        """The bytes behind the download button labelled ``label`` in the last run."""
        w = self.last.widget("download_button", label)
        r = self.http.get(self.url + w.url if w.url.startswith("/") else w.url, timeout=60)
        r.raise_for_status()
        return r.content


def memory_metrics(url: str) -> dict[str, int]:
    """Bytes the server reports per cache (``/_stcore/metrics``, family ``cache_memory_bytes``).

    Keys are ``"<cache_type>:<cache>"``, e.g. ``"UploadedFileManager:"`` (uploads held for
    sessions) or ``"st_cache_data:<function>"``; absent caches are empty.
    """
    import re

    import requests

    text = requests.get(url.rstrip("/") + "/_stcore/metrics", timeout=30).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r'cache_memory_bytes\{cache_type="([^"]*)",cache="([^"]*)"\} (\S+)', line)
        if m:
            key = f"{m.group(1)}:{m.group(2)}"
            out[key] = out.get(key, 0) + int(float(m.group(3)))
    return out
