"""Every bad input of issue 7, through the command line and through the app.

One table (:data:`CASES`) drives both tests:

- ``s2v info`` (and ``s2v predict`` for inputs that cannot be read) must exit with status 2 and
  print one line naming the file and the problem, never a traceback; inputs that can be read
  with a caveat must exit 0 and print the caveat as a ``warning:`` line.
- the same files uploaded on the Night page must give an ``st.error`` (or ``st.warning``) with the
  same message and no exception element.

``python -m tests.test_bad_inputs_cli`` prints the table with the messages actually produced
(it is copied into ``bench/RELIABILITY.md``).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from s2v_core.cli.main import main
from tests.edf_bytes import Signal, contiguous_onsets, write_edf_bytes
from tests.edf_factory import psg_channels, write_edf

ROOT = Path(__file__).resolve().parents[1]


# --- input builders: each returns (recording, hypnogram or None) ------------------------------------
def _good(d: Path) -> Path:
    p = d / "night.edf"
    if not p.exists():
        write_edf(p, psg_channels(minutes=4))
    return p


def _patched(d: Path, name: str, offset: int, text: str, width: int) -> Path:
    raw = bytearray(_good(d).read_bytes())
    raw[offset:offset + width] = text.ljust(width).encode("ascii")
    (d / name).write_bytes(bytes(raw))
    return d / name


def _signal_field(d: Path, name: str, field_offset: int, text: str) -> Path:
    """Patch field ``field_offset`` (bytes per signal, e.g. 104 = physical minimum) of signal 0."""
    ns = int(_good(d).read_bytes()[252:256])
    return _patched(d, name, 256 + ns * field_offset, text, 8)


def not_edf(d):
    (d / "photo.edf").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 600)
    return d / "photo.edf", None


def empty(d):
    (d / "empty.edf").write_bytes(b"")
    return d / "empty.edf", None


def missing(d):
    return d / "nowhere.edf", None


def truncated_header(d):
    (d / "cuthead.edf").write_bytes(_good(d).read_bytes()[:300])
    return d / "cuthead.edf", None


def truncated_data(d):
    data = _good(d).read_bytes()
    (d / "cut.edf").write_bytes(data[: len(data) * 2 // 3])
    return d / "cut.edf", None


def record_count_too_high(d):
    return _patched(d, "count.edf", 236, "9999", 8), None


def record_count_minus_one(d):
    return _patched(d, "count-1.edf", 236, "-1", 8), None


def record_duration_zero(d):
    return _patched(d, "dur0.edf", 244, "0", 8), None


def record_duration_subnormal(d):
    return _patched(d, "dur-tiny.edf", 244, "1e-309", 8), None


def corrupt_number(d):
    return _patched(d, "ns.edf", 252, "xx", 4), None


def phys_min_equals_max(d):
    ns = int(_good(d).read_bytes()[252:256])
    pmax = _good(d).read_bytes()[256 + ns * 112: 256 + ns * 112 + 8].decode().strip()
    return _signal_field(d, "phys.edf", 104, pmax), None


def digital_min_above_max(d):
    return _signal_field(d, "digital.edf", 120, "40000"), None


def flat_channel(d):
    ch = psg_channels(minutes=4)
    ch["E1-M2"] = (np.full(256 * 240, 500.0), 256, "uV")
    return write_edf(d / "flat.edf", ch), None


def gaps_nan(d):
    rng = np.random.default_rng(0)
    eeg = Signal("EEG C4-M1", rng.normal(0, 40, 240 * 128), 128, physical_min=-500, physical_max=500)
    return write_edf_bytes(d / "gaps.edf", [eeg], file_type="EDF+D",
                           record_onsets=contiguous_onsets(240, 1.0, {120: 90.0})), None


def absurd_rate(d):
    x = np.random.default_rng(0).normal(0, 30, 240 * 2)
    return write_edf(d / "slow.edf", {"EEG C4-M1": (x, 2, "uV"), "SpO2": (np.full(240, 96.0) + np.arange(240) % 3, 1, "%")}), None


def mixed_rates(d):
    return _good(d), None  # 256, 32 and 1 Hz channels side by side


def volts_as_microvolts(d):
    ch = psg_channels(minutes=4)
    x, fs, _ = ch["EEG C4-M1"]
    ch["EEG C4-M1"] = (x * 1e-6, fs, "uV")
    return write_edf(d / "volts.edf", ch), None


def duplicate_labels(d):
    rng = np.random.default_rng(1)
    return write_edf_bytes(d / "dup.edf", [Signal("C4-M1", rng.integers(-300, 300, 120 * 128), 128),
                                           Signal("C4-M1", rng.integers(-300, 300, 120 * 128), 128)]), None


def forty_eight_hours(d):
    n = 48 * 3600
    t = np.arange(n * 8) / 8
    ch = {"SpO2": (96 + np.sin(np.arange(n) / 300.0), 1, "%"),
          "THOR RES": (100 * np.sin(2 * np.pi * 0.25 * t), 8, "uV")}
    return write_edf(d / "two-nights.edf", ch, start=datetime(2024, 3, 1, 20, 0, 0)), None


def shorter_than_an_epoch(d):
    return write_edf(d / "tiny.edf", {"C4-M1": (np.sin(np.arange(256 * 20)), 256, "uV")}), None


def no_usable_channel(d):
    return write_edf(d / "odd.edf", {"Light": (np.ones(60) * 3 + np.arange(60) % 2, 1, ""),
                                     "Position": (np.arange(60.0) % 4, 1, "")}), None


def hypnogram_as_recording(d):
    import pyedflib

    w = pyedflib.EdfWriter(str(d / "sc-Hypnogram.edf"), 0, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setStartdatetime(datetime(2024, 1, 1))
    w.writeAnnotation(0, 30, "Sleep stage W")
    w.close()
    return d / "sc-Hypnogram.edf", None


def _hyp(d: Path, name: str, text: str) -> tuple[Path, Path]:
    (d / name).write_text(text)
    return _good(d), d / name


def hyp_shorter(d):
    return _hyp(d, "short.csv", "stage\n" + "\n".join(["N2"] * 3))


def hyp_longer(d):
    return _hyp(d, "long.csv", "stage\n" + "\n".join(["N2"] * 30))


def hyp_unknown_labels(d):
    return _hyp(d, "labels.csv", "stage\nW\nN2\nStage 9\nfoo\nN2\nN2\nN2\nN2\n")


def hyp_20s_epochs(d):
    rows = "\n".join(f"{i * 20},20,{'W' if i < 6 else 'N2'}" for i in range(12))
    return _hyp(d, "epochs20.csv", "onset,duration,stage\n" + rows)


def hyp_malformed_xml(d):
    return _hyp(d, "broken.xml", "<PSGAnnotation><ScoredEvents><ScoredEvent></Scored>")


def hyp_xml_entities(d):
    return _hyp(d, "entity.xml", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]>'
                                 "<PSGAnnotation>&a;</PSGAnnotation>")


def hyp_huge_xml(d):
    events = "".join(f"<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Wake|0</EventConcept>"
                     f"<Start>{30 * i}</Start><Duration>30</Duration></ScoredEvent>" for i in range(8))
    return _hyp(d, "huge.xml", f"<PSGAnnotation><ScoredEvents>{events}</ScoredEvents></PSGAnnotation>")


def hyp_empty(d):
    return _hyp(d, "empty.csv", "")


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, and what the CLI and the app must say."""

    id: str
    issue: str  # the wording of issue 7's list
    make: Callable[[Path], tuple[Path, Path | None]]
    cli: tuple[str, str]  # ("error" | "warning" | "ok", regex the output must contain)
    app: tuple[str, str] | None  # the same for the Night page (the app allows hypnogram mismatches)
    extra: tuple[str, ...] = ()


CASES = [
    Case("not_edf", "non-EDF renamed .edf", not_edf, ("error", r"photo\.edf: not an EDF/BDF file"), "same"),
    Case("empty", "empty file", empty, ("error", r"empty\.edf: the file is empty \(0 bytes\)"), "same"),
    Case("missing", "file not found (CLI only)", missing, ("error", r"nowhere\.edf: file not found"), None),
    Case("truncated_header", "truncated (inside the header)", truncated_header,
         ("error", r"cuthead\.edf: truncated EDF: the file ends inside the signal headers"), "same"),
    Case("truncated_data", "truncated (inside the data)", truncated_data,
         ("warning", r"truncated file: the header declares 240 data records but only 159 are complete"), "same"),
    Case("record_count_high", "wrong record count (too high)", record_count_too_high,
         ("warning", r"declares 9999 data records but only 240 are complete"), "same"),
    Case("record_count_-1", "wrong record count (-1, recording not closed)", record_count_minus_one,
         ("warning", r"header record count is -1 \(recording not closed\); 240 records in the file"), "same"),
    Case("record_duration_0", "record duration 0", record_duration_zero,
         ("error", r"dur0\.edf: corrupt EDF header: record duration 0\.0 s"), "same"),
    Case("record_duration_subnormal", "absurd rate from the header (1e-309 s records)", record_duration_subnormal,
         ("error", r"dur-tiny\.edf: corrupt EDF header: record duration 1e-309 s gives channel .* \(over 1e\+06 Hz\)"),
         "same"),
    Case("corrupt_number", "unreadable numeric header field", corrupt_number,
         ("error", r"ns\.edf: .*numeric field is unreadable"), "same"),
    Case("phys_min_eq_max", "physical min == max", phys_min_equals_max,
         ("error", r"phys\.edf: .*physical minimum equals physical maximum"), "same"),
    Case("digital_range", "digital range (min not below max)", digital_min_above_max,
         ("error", r"digital\.edf: .*digital minimum 40000 is not below"), "same"),
    Case("flat_channel", "flat channel", flat_channel,
         ("warning", r"eog: EOG: signal is flat \(constant 500\).*|eog: no usable epoch \(flat, NaN or clipped\)"),
         "same"),
    Case("nan_gaps", "NaN samples (EDF+D gap)", gaps_nan,
         ("warning", r"EDF\+D: 1 gap totalling 1\.5 min; samples there are missing \(NaN\)"), "same"),
    Case("absurd_rate", "absurd rate (EEG at 2 Hz)", absurd_rate,
         ("warning", r"eeg: channel 'EEG C4-M1' is sampled at 2 Hz, below the 32 Hz this modality needs"), "same"),
    Case("mixed_rates", "mixed rates (256, 32 and 1 Hz)", mixed_rates,
         ("ok", r"eeg +EEG C4-M1 +256 Hz.*\n(.*\n)*spo2 +SpO2 +1 Hz"), None),
    Case("volts_as_uV", "V vs µV (volts labelled uV)", volts_as_microvolts,
         ("warning", r"eeg: amplitude implausible in the declared unit 'uV' .*values were read as V instead"), "same"),
    Case("duplicate_labels", "duplicate labels", duplicate_labels,
         ("warning", r"duplicate channel labels \['C4-M1'\]: the first of each is used"), "same"),
    Case("48_hours", "24-48 h recording", forty_eight_hours,
         ("ok", r"two-nights\.edf: 5760 epochs of 30 s \(48\.00 h\)"), ("ok", r"48\.00 h")),
    Case("shorter_than_epoch", "shorter than one 30-s epoch", shorter_than_an_epoch,
         ("error", r"tiny\.edf: recording is 20 s long, shorter than one 30-s epoch"), "same"),
    Case("no_usable_channel", "no channel maps to a modality", no_usable_channel,
         ("error", r"odd\.edf: no channel could be mapped"), "same"),
    Case("hypnogram_as_recording", "annotation-only EDF+ given as the recording", hypnogram_as_recording,
         ("error", r"sc-Hypnogram\.edf: the file has no signal channels \(only annotations\)"), "same"),
    Case("hyp_shorter", "hypnogram shorter", hyp_shorter,
         ("error", r"short\.csv: the hypnogram has 3 epochs .* but the signal has 8 epochs .*--allow-mismatch"),
         ("warning", r"padded 5 unscored epochs at the end of the hypnogram")),
    Case("hyp_longer", "hypnogram longer", hyp_longer,
         ("error", r"long\.csv: the hypnogram has 30 epochs .* but the signal has 8 epochs"),
         ("warning", r"trimmed 22 epochs from the end of the hypnogram")),
    Case("hyp_longer_allowed", "hypnogram longer, --allow-mismatch", hyp_longer,
         ("warning", r"trimmed 22 epochs from the end of the hypnogram to fit the signal \(8 epochs\)"), None,
         ("--allow-mismatch",)),
    Case("hyp_unknown_labels", "hypnogram with unknown labels", hyp_unknown_labels,
         ("error", r"labels\.csv: 2 unknown stage labels in 2 rows .*'Stage 9', 'foo'"), "same"),
    Case("hyp_20s_epochs", "hypnogram with another epoch length (20 s)", hyp_20s_epochs,
         ("ok", r"stages: W 4, N1 0, N2 4, N3 0, REM 0, unscored 0"), ("ok", r"W 4, N1 0, N2 4")),
    Case("hyp_malformed_xml", "malformed XML", hyp_malformed_xml,
         ("error", r"broken\.xml: malformed XML at line 1"), "same"),
    Case("hyp_xml_entities", "XML declaring entities (billion laughs)", hyp_xml_entities,
         ("error", r"entity\.xml: XML files that declare entities are not accepted"), "same"),
    Case("hyp_huge_xml", "huge XML (limit lowered to 100 bytes for the test)", hyp_huge_xml,
         ("error", r"huge\.xml: the XML file is 0 MB; hypnogram XML over 200 MB is refused"), "same"),
    Case("hyp_empty", "empty hypnogram", hyp_empty, ("error", r"empty\.csv: empty file"), "same"),
]


@pytest.fixture(autouse=True)
def _small_xml_limit(monkeypatch, request):
    """The huge-XML case lowers the size limit instead of writing 200 MB."""
    if "hyp_huge_xml" in request.node.name:
        from s2v_core.io.hypnogram import formats as hypno_formats

        monkeypatch.setattr(hypno_formats, "MAX_XML_BYTES", 100)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``s2v ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _argv(command: str, case: Case, psg: Path, hyp: Path | None, tmp: Path) -> list[str]:
    argv = [command, str(psg), *(["--hypnogram", str(hyp)] if hyp else []), *case.extra]
    return argv + (["--out", str(tmp / "out.csv")] if command == "predict" else [])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli(case: Case, tmp_path):
    psg, hyp = case.make(tmp_path)
    kind, pattern = case.cli
    code, out, err = run_cli(_argv("info", case, psg, hyp, tmp_path))
    assert "Traceback" not in out + err
    if kind == "error":
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("s2v info: error: "), err
        assert re.search(pattern, err), err
        code, out, err2 = run_cli(_argv("predict", case, psg, hyp, tmp_path))  # the same for predict
        assert code == 2 and err2.count("\n") == 1 and re.search(pattern, err2), err2
    else:
        assert code == 0 and err == "", err
        if kind == "warning":
            lines = [ln for ln in out.splitlines() if ln.startswith("warning: ")]
            assert any(re.search(pattern, ln) for ln in lines), out
        else:
            assert re.search(pattern, out), out


def test_cli_predict_prints_the_warnings_too(tmp_path):
    psg, _ = volts_as_microvolts(tmp_path)
    code, out, err = run_cli(["predict", str(psg), "--out", str(tmp_path / "o.csv")])
    assert code == 0 and "warning: eeg: amplitude implausible" in out


def test_the_console_script_prints_one_line_and_no_traceback(tmp_path):
    import subprocess
    import sys

    psg, _ = not_edf(tmp_path)
    r = subprocess.run([sys.executable, "-m", "s2v_core.cli", "info", str(psg)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "photo.edf: not an EDF/BDF file" in r.stderr


# --- the same inputs in the app ------------------------------------------------------------------------
APP_CASES = [c for c in CASES if c.app is not None]


@pytest.mark.parametrize("case", APP_CASES, ids=[c.id for c in APP_CASES])
def test_app(case: Case, tmp_path):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    psg, hyp = case.make(tmp_path)
    kind, pattern = case.cli if case.app == "same" else case.app
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["night_source"] = "Upload a recording"
    at.run(timeout=120)
    uploaders = {u.label.split(" ")[0]: u for u in at.file_uploader}
    uploaders["EDF"].set_value((psg.name, psg.read_bytes(), "application/octet-stream"))
    if hyp is not None:
        uploaders["Hypnogram"].set_value((hyp.name, hyp.read_bytes(), "text/plain"))
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    if kind == "error":
        assert len(errors) == 1 and re.search(pattern, errors[0]), errors
    else:
        assert errors == []
        if kind == "warning":
            assert any(re.search(pattern, w.value) for w in at.warning), [w.value for w in at.warning]
        else:
            texts = [m.value for m in at.metric] + [c.value for c in at.caption]
            assert any(re.search(pattern, t) for t in texts), texts


@pytest.mark.parametrize("defect", ["newer_format", "pickle", "config_not_for_weights"])
def test_app_bad_checkpoint_is_a_message(defect, tmp_path):
    pytest.importorskip("streamlit")
    import json

    from streamlit.testing.v1 import AppTest

    from s2v_core.model import HeadConfig, Sleep2VecClassifier, get_preset
    from s2v_core.model.checkpoint import save_checkpoint

    cfg = get_preset("tiny")
    folder = save_checkpoint(tmp_path / "clf", Sleep2VecClassifier(cfg, HeadConfig(), seed=0), cfg)
    meta = json.loads((folder / "config.json").read_text())
    if defect == "newer_format":
        meta["format_version"], expected = 3, r"checkpoint format 3 .* is newer than this .* upgrade sleep2vec-studio"
    elif defect == "pickle":
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
        expected = r"refusing to read pickled file\(s\) pytorch_model\.bin"
    else:
        meta["model"]["n_layers"], expected = 10**6, r"n_layers = 1000000, but model\.safetensors holds 2"
    (folder / "config.json").write_text(json.dumps(meta))
    for page in ("model", "hypnogram"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["night_source"] = "Shipped 1-h excerpt"
        at.session_state["model_dir"] = str(folder)
        at.switch_page(f"pages/{page}.py")
        at.run(timeout=120)
        assert not at.exception, [e.message for e in at.exception]
        assert any(re.search(expected, e.value) for e in at.error), (page, [e.value for e in at.error])


def markdown_table(tmp: Path) -> str:
    """The case table with the messages the CLI prints now (for bench/RELIABILITY.md)."""
    from s2v_core.io.hypnogram import formats as hypno_formats

    rows = ["| input (issue 7) | CLI test | app test | `s2v info` says |", "|---|---|---|---|"]
    for case in CASES:
        d = tmp / case.id
        d.mkdir(parents=True, exist_ok=True)
        old = hypno_formats.MAX_XML_BYTES
        if case.id == "hyp_huge_xml":
            hypno_formats.MAX_XML_BYTES = 100
        try:
            psg, hyp = case.make(d)
            code, out, err = run_cli(_argv("info", case, psg, hyp, d))
        finally:
            hypno_formats.MAX_XML_BYTES = old
        kind, pattern = case.cli
        if kind == "error":
            said = f"exit {code}: `{err.strip()}`"
        elif kind == "warning":
            said = f"exit {code}: `{next(ln for ln in out.splitlines() if re.search(pattern, ln))}`"
        else:
            said = f"exit {code}: `{re.search(pattern, out).group(0).splitlines()[0]}`"
        app = f"`test_app[{case.id}]`" if case.app is not None else "-"
        rows.append(f"| {case.issue} | `test_cli[{case.id}]` | {app} | {said.replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    import tempfile

    with tempfile.TemporaryDirectory() as t:
        print(markdown_table(Path(t)))
