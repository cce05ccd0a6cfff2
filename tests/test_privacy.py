"""Identifying EDF header fields never reach logs, printed output, exports or the app.

The recordings carry a patient field ``MCH-0234567 F 02-MAY-1951 Haagse_Harry`` (EDF+: code,
sex, birth date, name) and a recording field naming an admin code and a technician; a plain EDF
carries the same as free text. Each is read by every reader path (pyedflib, the MNE fallback for
a truncated file, the native EDF+D reader), staged, and exported in every format, with every
logger at DEBUG and warnings recorded. ``s2v info --show-identifying`` is the one opt-in.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from s2v_core.cli.main import main
from s2v_core.inference.predict import load_classifier, predict_night
from s2v_core.recording.loading import load_night
from s2v_core.views.exports import hypnogram_csv, hypnogram_edf_annotations, prediction_json
from tests.edf_bytes import Signal, contiguous_onsets, write_edf_bytes
from tests.edf_factory import psg_channels, write_edf

ROOT = Path(__file__).resolve().parents[1]
PATIENT = "MCH-0234567 F 02-MAY-1951 Haagse_Harry"
RECORDING = "Startdate 01-MAR-2024 EMR-4711 Dr_Jansen Embla_N7000"
FREE_TEXT = "Haagse Harry MCH-0234567 born 02.05.1951"  # plain EDF: free text
# What must never appear, including reformatted dates a parser could produce from the header.
SECRETS = ("MCH-0234567", "Haagse", "Harry", "02-MAY-1951", "1951-05-02", "02.05.1951",
           "May 1951", "EMR-4711", "Jansen")


def _identify(path: Path, patient: str, recording: str) -> Path:
    """Write the patient and recording identification fields (80 characters each) into a header."""
    raw = bytearray(path.read_bytes())
    raw[8:88] = patient.ljust(80).encode("latin-1")
    raw[88:168] = recording.ljust(80).encode("latin-1")
    path.write_bytes(bytes(raw))
    return path


def _stage_annotations(minutes: int) -> list[tuple[float, float, str]]:
    labels = ["W", "1", "2", "3", "2", "R"]
    return [(30.0 * i, 30.0, f"Sleep stage {labels[i % len(labels)]}") for i in range(minutes * 2)]


@pytest.fixture(scope="module")
def identified(tmp_path_factory) -> dict[str, Path]:
    """The same kind of night behind each reader path, each with identifying header fields."""
    d = tmp_path_factory.mktemp("phi")
    out = {}
    out["edf+"] = _identify(write_edf(d / "edfplus.edf", psg_channels(minutes=4), annotations=_stage_annotations(4)),
                            PATIENT, RECORDING)
    import pyedflib

    out["edf"] = _identify(write_edf(d / "plain.edf", psg_channels(minutes=4), file_type=pyedflib.FILETYPE_EDF),
                           FREE_TEXT, "Dr_Jansen EMR-4711")
    full = out["edf+"].read_bytes()
    (d / "truncated.edf").write_bytes(full[: len(full) - len(full) // 4])  # MNE fallback reader
    out["truncated"] = d / "truncated.edf"
    rng = np.random.default_rng(0)
    n_rec = 240  # 1-s records, 30 s missing before record 120: EDF+D, the native reader
    eeg = Signal("EEG C4-M1", rng.normal(0, 40, n_rec * 128), 128, physical_min=-500, physical_max=500)
    ecg = Signal("ECG II", np.tile(np.r_[np.full(100, -20.0), np.full(28, 900.0)], n_rec), 128,
                 physical_min=-1000, physical_max=1000)
    out["edf+d"] = _identify(write_edf_bytes(d / "gaps.edf", [eeg, ecg], file_type="EDF+D",
                                             record_onsets=contiguous_onsets(n_rec, 1.0, {120: 30.0}),
                                             start=datetime(2024, 3, 1, 22, 0, 0)),
                             PATIENT, "Startdate 01-MAR-2024 EMR-4711 Dr_Jansen Embla_N7000")
    for p in out.values():  # the test is only meaningful if the secrets are in the inputs
        assert b"MCH-0234567" in p.read_bytes()[:256]
    return out


@pytest.fixture
def every_log(caplog):
    """Every log record at DEBUG, MNE's own logger (which does not propagate) included."""
    import mne

    caplog.set_level(logging.DEBUG)
    mne_logger = logging.getLogger("mne")
    handler = caplog.handler
    mne_logger.addHandler(handler)
    old = mne_logger.level
    mne.set_log_level("DEBUG")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield lambda: caplog.text + "\n".join(str(w.message) for w in caught)
    finally:
        mne_logger.removeHandler(handler)
        mne_logger.setLevel(old)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s.lower() in text.lower()]


@pytest.fixture(scope="module")
def shipped_model():
    return load_classifier(ROOT / "models" / "sleep2vec-small" / "classifier")[0]


@pytest.mark.parametrize("kind", ["edf+", "edf", "truncated", "edf+d"])
def test_reading_staging_and_every_export_carry_nothing_identifying(identified, kind, every_log, tmp_path,
                                                                    shipped_model):
    night = load_night(identified[kind], allow_mismatch=True)
    pred = predict_night(shipped_model, night, None, name="m")
    outputs = {
        "summary": json.dumps(night.summary()),
        "warnings": "\n".join(night.warnings),
        "provenance": repr(night.provenance) + repr(night.meta),
        "csv": hypnogram_csv(pred.stages),
        "edf+ annotations": hypnogram_edf_annotations(pred.stages, night.start_time).decode("latin-1"),
        "json": json.dumps(prediction_json(pred, night)),
        "epochs csv": pred.to_frame(night.start_time).to_csv(index=False),
    }
    night.save(tmp_path / "saved")
    for f in sorted((tmp_path / "saved").iterdir()):
        outputs[f"saved {f.name}"] = f.read_bytes().decode("latin-1")
    outputs["logs and warnings"] = every_log()
    leaks = {name: _leaks(text) for name, text in outputs.items() if _leaks(text)}
    assert leaks == {}
    expected_reader = {"edf+": "pyedflib", "edf": "pyedflib", "truncated": "mne", "edf+d": "native"}[kind]
    assert night.provenance["eeg"].reader == expected_reader  # each reader path really was taken


def test_cli_info_and_predict_print_log_and_write_nothing_identifying(identified, every_log, capsys, tmp_path):
    printed = []
    for kind in ("edf+", "truncated", "edf+d"):
        f = str(identified[kind])
        assert main(["-v", "info", f]) == 0
        assert main(["-v", "info", f, "--json"]) == 0
        out = tmp_path / f"{kind}.csv"
        assert main(["-v", "predict", f, "--out", str(out), "--json"]) == 0
        assert main(["predict", f, "--out", str(out)]) == 0
        cap = capsys.readouterr()
        printed += [cap.out, cap.err, out.read_text()]
    text = "\n".join(printed) + every_log()
    assert "epochs" in text  # the commands did print their summaries
    assert _leaks(text) == []


def test_show_identifying_is_the_opt_in(identified, capsys):
    f = str(identified["edf+"])
    assert main(["info", f, "--json", "--show-identifying"]) == 0
    shown = json.loads(capsys.readouterr().out)["identifying"]
    assert shown == {"patient": PATIENT, "recording": RECORDING}
    assert main(["info", f, "--show-identifying"]) == 0
    text = capsys.readouterr().out
    assert f"patient identification (shown because of --show-identifying): {PATIENT}" in text
    assert main(["info", f, "--json"]) == 0
    assert "identifying" not in json.loads(capsys.readouterr().out)


def _element_texts(node) -> list[str]:
    """str() of the proto of every element in an AppTest tree (alerts, tables, charts...)."""
    out = []
    proto = getattr(node, "proto", None)
    if proto is not None:
        out.append(str(proto))
    children = getattr(node, "children", None) or {}
    for child in children.values():
        out.extend(_element_texts(child))
    return out


def test_app_pages_show_nothing_identifying(identified, tmp_path):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    pages = re.findall(r'st\.Page\("(pages/\w+\.py)"', (ROOT / "app.py").read_text())
    assert "pages/night.py" in pages and "pages/export.py" in pages
    f = identified["edf+"]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["night_source"] = "Upload a recording"
    at.run(timeout=120)
    at.file_uploader[0].set_value((f.name, f.read_bytes(), "application/octet-stream"))
    texts = []
    for page in pages:
        at.switch_page(page)
        at.run(timeout=120)
        assert not at.exception, (page, [e.message for e in at.exception])
        texts += _element_texts(at._tree)
    joined = "\n".join(texts)
    assert "Channel to modality mapping" in joined and "EEG C4-M1" in joined  # the night was shown
    assert _leaks(joined) == []
