"""Text from files cannot drive the terminal (or the app's Markdown) through what the tools show.

A channel label ``EEG\\x1b[2J`` clears the screen when printed raw, ``\\x1b]0;...\\x07`` retitles
the terminal, a C1 ``\\x9b`` starts a control sequence, a bidi override (U+202E) reverses how a
file name reads, and NUL, DEL, CR and newline hide or forge text. ``s2v`` prints every such
character as a visible ``\\uXXXX`` escape, in labels, annotation texts, file names, warnings and
error messages; ``--json`` output stays valid JSON that decodes to the exact values.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from s2v_core.cli.main import main
from s2v_core.cli.output import SafeFormatter, safe_output
from s2v_core.recording.registry import load_recording
from s2v_core.sanitize.text import TerminalSafeStream, markdown_safe, terminal_safe
from tests.conftest import write_tiny_classifier
from tests.edf_bytes import Signal, write_edf_bytes
from tests.edf_factory import psg_channels, write_edf

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = {
    "csi_clear": "\x1b[2J",
    "osc_title_bel": "\x1b]0;pwned\x07",
    "c1_csi": "\x9b2J",
    "bidi_override": "\u202efdp.exe",
    "bidi_isolate": "\u2066x\u2069",
    "nul": "\x00",
    "del": "\x7f",
    "cr": "\rok",
    "newline": "\nwarning: all fine",
}
# an EDF header is latin-1: no bidi characters there (they reach us through UTF-8 annotations and file names)
LABEL_CASES = ["csi_clear", "osc_title_bel", "c1_csi", "nul", "del", "cr"]
NAME_CASES = ["csi_clear", "osc_title_bel", "c1_csi", "bidi_override", "bidi_isolate", "del", "cr", "newline"]
ANNOTATION_CASES = ["csi_clear", "osc_title_bel", "c1_csi", "bidi_override", "bidi_isolate", "del"]

# what must never reach the terminal (newline separates the program's own lines)
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def assert_terminal_safe(text: str) -> None:
    found = UNSAFE.findall(text)
    assert not found, (found, text)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _signal(label: str, seed: int = 0) -> Signal:
    rng = np.random.default_rng(seed)
    return Signal(label, rng.normal(0, 40, 240 * 128), 128, physical_min=-500, physical_max=500)


@pytest.fixture(scope="module")
def clean_edf(tmp_path_factory) -> Path:
    return write_edf(tmp_path_factory.mktemp("clean") / "clean.edf", psg_channels(minutes=4))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_classifier(tmp_path_factory.mktemp("clf") / "best", seed=3,
                                 extra={"class_names": ["W", "N1", "N2", "N3", "REM"]})  # fmt: skip


# --- the helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", HOSTILE)
def test_terminal_safe_escapes_each_class_visibly_and_json_compatibly(kind):
    text = "a" + HOSTILE[kind] + "b"
    safe = terminal_safe(text)
    assert_terminal_safe(safe)
    assert "\n" not in safe and ("\\u00" in safe or "\\u20" in safe)
    assert json.loads(f'"{safe}"') == text  # the escape is a JSON escape of the same character
    assert terminal_safe(safe) == safe  # idempotent: nothing is escaped twice


def test_the_stream_guard_keeps_lines_and_json_valid():
    buf = io.StringIO()
    stream = TerminalSafeStream(buf)
    doc = {k: "x" + v for k, v in HOSTILE.items()}
    stream.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    stream.write("line 1\nline 2\tcol\r")
    written = buf.getvalue()
    assert_terminal_safe(written.replace("\tcol\r", ""))  # the program's own tab and CR pass
    assert json.loads(written.split("\nline 1")[0]) == doc


def test_log_records_and_stderr_prints_are_escaped(capsys):
    fmt = SafeFormatter("%(message)s")
    record = logging.LogRecord("s2v", logging.WARNING, __file__, 1, "reading %s", (HOSTILE["csi_clear"],), None)
    assert_terminal_safe(fmt.format(record))
    assert record.getMessage() == "reading \x1b[2J"  # the record itself is not changed
    with safe_output():
        print("label", HOSTILE["osc_title_bel"], file=sys.stderr)
        print("name", HOSTILE["bidi_override"])
    cap = capsys.readouterr()
    assert_terminal_safe(cap.err + cap.out)
    assert "\\u001b]0;pwned\\u0007" in cap.err and "\\u202efdp.exe" in cap.out


@pytest.mark.parametrize("payload", ["![x](http://evil.example/p.png)", "[click](https://evil.example)",
                                     "see http://evil.example", "www.evil.example", "<http://evil.example>",
                                     ":red[ALERT]", "# Heading", "`code` **bold** $x$", "a\n\n# b",
                                     "\x1b[2J", "x\\](y)"])  # fmt: skip
def test_markdown_safe_leaves_no_link_image_or_markup(payload):
    safe = markdown_safe(payload)
    assert_terminal_safe(safe)
    assert "](" not in safe.replace("]\\(", "") and "://" not in safe.replace("\\://", "")
    assert "www." not in safe.replace("www\\.", "")
    assert not re.search(r"(?<!\\)[`*$<]", safe.replace("\\\\", ""))
    assert not safe.startswith("#") and ":red[" not in safe.replace("\\:red[", "")


def test_markdown_safe_leaves_ordinary_messages_as_they_are():
    for text in ["duplicate channel labels ['C4-M1']: the first of each is used", "photo.edf: not an EDF/BDF file",
                 "EDF+D: 1 gap totalling 1.5 min; samples there are missing (NaN)", "night_01_a.edf"]:  # fmt: skip
        assert markdown_safe(text) == text


# --- s2v info: channel labels, file names, annotation texts, warnings, errors ----------------------


@pytest.mark.parametrize("kind", LABEL_CASES)
def test_info_prints_channel_labels_escaped(kind, tmp_path):
    label = "EEG" + HOSTILE[kind]
    psg = write_edf_bytes(tmp_path / "labels.edf", [_signal(label), _signal("ECG II", 1)])
    code, out, err = run_cli(["info", str(psg)])
    assert code == 0 and err == ""
    assert_terminal_safe(out)
    eeg = [ln for ln in out.splitlines() if ln.startswith("eeg ")]
    assert len(eeg) == 1 and "EEG" in eeg[0]  # still one row: a CR or newline cannot split it
    code, out, err = run_cli(["info", str(psg), "--json"])
    assert code == 0 and out.isascii()
    assert_terminal_safe(out)
    expected = load_recording(psg).summary()["modalities"]["eeg"]["source"]  # what the reader made of it
    assert json.loads(out)["modalities"]["eeg"]["source"] == expected


def test_the_screen_clearing_label_is_shown_as_text(tmp_path):
    psg = write_edf_bytes(tmp_path / "clear.edf", [_signal("EEG\x1b[2J"), _signal("EOG\x9b2J", 1)])
    code, out, _ = run_cli(["info", str(psg)])
    assert code == 0 and "EEG\\u001b[2J" in out and "EOG\\u009b2J" in out


def test_labels_in_warnings_and_errors_are_escaped(tmp_path):
    dup = write_edf_bytes(tmp_path / "dup.edf", [_signal("EEG\x1b]0;t\x07"), _signal("EEG\x1b]0;t\x07", 1)])
    code, out, err = run_cli(["info", str(dup)])
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning: duplicate channel labels")]
    assert code == 0 and len(warnings) == 1
    assert_terminal_safe(out + err)
    odd = write_edf_bytes(tmp_path / "odd.edf", [_signal("X\x1b[2J"), _signal("Y\x9b2J\r", 1)])
    code, out, err = run_cli(["info", str(odd)])
    assert code == 2 and out == "" and err.count("\n") == 1 and "no channel could be mapped" in err
    assert_terminal_safe(err)


@pytest.mark.parametrize("kind", NAME_CASES)
def test_info_prints_file_names_escaped(kind, clean_edf, tmp_path):
    name = f"night{HOSTILE[kind]}.edf"
    psg = tmp_path / name
    shutil.copy(clean_edf, psg)
    code, out, err = run_cli(["info", str(psg)])
    assert code == 0 and err == ""
    assert_terminal_safe(out)
    assert out.splitlines()[0].startswith(terminal_safe(name) + ": 8 epochs")
    code, out, _ = run_cli(["info", str(psg), "--json"])
    assert code == 0 and out.isascii()
    assert json.loads(out)["source_file"] == name  # JSON keeps the exact name
    junk = tmp_path / f"junk{HOSTILE[kind]}.edf"
    junk.write_bytes(b"not an EDF")
    code, out, err = run_cli(["info", str(junk)])
    assert code == 2 and out == "" and err.count("\n") == 1 and "not an EDF/BDF file" in err
    assert_terminal_safe(err)


@pytest.mark.parametrize("kind", ANNOTATION_CASES)
def test_hypnogram_texts_in_errors_are_escaped(kind, clean_edf, tmp_path):
    hyp = tmp_path / "hyp.csv"
    hyp.write_text("stage\nW\n" + f"Sleep{HOSTILE[kind]}\n" + "N2\n" * 6, encoding="utf-8")
    code, out, err = run_cli(["info", str(clean_edf), "--hypnogram", str(hyp)])
    assert code == 2 and out == "" and err.count("\n") == 1 and "unknown stage label" in err
    assert_terminal_safe(err)


@pytest.mark.parametrize("kind", ANNOTATION_CASES)
def test_edf_annotations_with_escapes_do_not_reach_the_terminal(kind, clean_edf, tmp_path):
    text = "Sleep stage W" + HOSTILE[kind]
    hyp = write_edf_bytes(tmp_path / "h-Hypnogram.edf", [], record_onsets=np.arange(8) * 30.0, record_duration=30,
                          annotations=[(30.0 * i, 30.0, text if i % 2 else "Sleep stage 2") for i in range(8)])
    for argv in (["info", str(clean_edf), "--hypnogram", str(hyp)],
                 ["info", str(clean_edf), "--hypnogram", str(hyp), "--json"]):  # fmt: skip
        code, out, err = run_cli(argv)
        assert_terminal_safe(out + err)
        if "--json" in argv and code == 0:
            json.loads(out)


# --- s2v predict: text and --json ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_recording(tmp_path_factory) -> tuple[Path, str]:
    """Hostile labels (one duplicated: a warning quotes it), a bidi and ESC file name, annotations."""
    name = "n\u202efdp\x1b[2J\x9b.edf"
    signals = [_signal("EEG\x1b[2J"), _signal("EEG\x1b[2J", 1), _signal("ECG\x1b]0;x\x07", 2)]
    annotations = [(30.0 * i, 30.0, "Sleep stage 2" if i % 2 else "Sleep stage W\u202e\x1b[2J") for i in range(8)]
    path = write_edf_bytes(tmp_path_factory.mktemp("hostile") / name, signals, annotations=annotations)
    return path, name


def test_predict_text_output_is_escaped(hostile_recording, tiny_model, tmp_path):
    psg, name = hostile_recording
    code, out, err = run_cli(["predict", str(psg), "--model", str(tiny_model), "--out", str(tmp_path / "p.csv"),
                              "--threads", "1"])  # fmt: skip
    assert code == 0 and err == ""
    assert_terminal_safe(out)
    assert out.startswith(terminal_safe(name) + ": 8 epochs staged from")
    assert any(ln.startswith("warning: duplicate channel labels") for ln in out.splitlines())


def test_predict_json_is_valid_ascii_with_the_exact_values(hostile_recording, tiny_model, tmp_path):
    psg, name = hostile_recording
    code, out, err = run_cli(["predict", str(psg), "--model", str(tiny_model), "--out", str(tmp_path / "p.csv"),
                              "--threads", "1", "--json"])  # fmt: skip
    assert code == 0 and out.isascii()
    assert_terminal_safe(out + err)
    doc = json.loads(out)
    assert doc["file"].endswith(name)
    assert any("duplicate channel labels" in w for w in doc["warnings"])


def test_predict_error_for_a_hostile_name_is_one_escaped_line(tiny_model, tmp_path):
    junk = tmp_path / "x\x1b[2J\u202e\nwarning: fine.edf"
    junk.write_bytes(b"")
    code, out, err = run_cli(["predict", str(junk), "--model", str(tiny_model), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert_terminal_safe(err)


# --- the app: Markdown ------------------------------------------------------------------------------


def test_app_shows_labels_and_names_without_markup_or_escapes(tmp_path):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    psg = write_edf_bytes(tmp_path / "rec.edf", [_signal("[a](https:e.x)"), _signal("X\x1b[2J", 1)])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["night_source"] = "Upload a recording"
    at.run(timeout=120)
    at.file_uploader[0].set_value(("![p](https:e.x).edf", psg.read_bytes(), "application/octet-stream"))
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "no channel could be mapped" in errors[0], errors
    shown = "\n".join(errors + [w.value for w in at.warning] + [c.value for c in at.caption])
    assert_terminal_safe(shown)
    assert "](" not in shown.replace("]\\(", ""), shown  # no link, no image
