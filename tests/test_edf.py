"""EDF/BDF reading: values against an independent reader, header defects with clear messages."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyedflib
import pytest

from s2v_core.errors import InputFileError
from s2v_core.io import edf as edf_module
from s2v_core.io.edf import open_recording
from s2v_core.io.edf_header import check_header
from tests.conftest import shared_path
from tests.edf_factory import psg_channels, write_edf


@pytest.fixture
def psg(tmp_path):
    return write_edf(tmp_path / "night.edf", psg_channels(minutes=3), annotations=[(30, 30, "Sleep stage 2")])


def test_reads_values_and_rates(psg):
    chans = psg_channels(minutes=3)
    with open_recording(psg) as rec:
        assert rec.reader == "pyedflib"
        assert rec.header.file_type == "EDF+C"
        assert rec.header.duration_s == 180
        assert rec.header.start_time.isoformat() == "2024-03-01T22:30:00"
        for label, (x, fs, _dim) in chans.items():
            y, sf = rec.read_channel(label)
            assert sf == fs and y.dtype == np.float32 and y.shape == x.shape
            # 16-bit quantisation of the physical range
            step = (np.ptp(x) * 1.1 + 2) / 65535
            assert np.max(np.abs(y - x)) <= step + 1e-3
        onsets, durs, texts = rec.read_annotations()
        assert list(texts) == ["Sleep stage 2"] and onsets[0] == 30 and durs[0] == 30


def test_bdf(tmp_path):
    x = np.sin(np.linspace(0, 40, 256 * 60)) * 50
    p = write_edf(tmp_path / "r.bdf", {"C4-M1": (x, 256, "uV")}, file_type=pyedflib.FILETYPE_BDFPLUS)
    with open_recording(p) as rec:
        assert rec.header.file_type == "BDF+C"
        y, _ = rec.read_channel("C4-M1")
        assert np.max(np.abs(y - x)) < 1e-3


def test_mixed_rates_and_plain_edf(tmp_path):
    p = write_edf(tmp_path / "r.edf", {"EEG Fpz-Cz": (np.zeros(100 * 60) + np.arange(6000) % 7, 100, "uV"),
                                       "Resp oro-nasal": (np.arange(60.0), 1, "")},
                  file_type=pyedflib.FILETYPE_EDF)
    h = check_header(p)
    assert h.file_type == "EDF" and [c.sfreq for c in h.channels] == [100, 1]


def test_identifying_fields_only_on_request(tmp_path):
    p = write_edf(tmp_path / "r.edf", psg_channels(minutes=1), patient_name="Jane_Doe", birthdate=date(1960, 1, 2))
    with open_recording(p) as rec:
        assert "Jane" not in repr(rec.header) and "1960" not in repr(rec.header)
        assert "Jane" not in " ".join(rec.warnings)
        assert "Jane_Doe" in rec.identifying_fields()["patient"]


# --- bad input ------------------------------------------------------------------------------
def test_empty_file(tmp_path):
    p = tmp_path / "empty.edf"
    p.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty.edf: the file is empty"):
        open_recording(p)


def test_not_an_edf(tmp_path):
    p = tmp_path / "photo.edf"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 600)
    with pytest.raises(InputFileError, match="photo.edf: not an EDF/BDF file"):
        open_recording(p)
    q = tmp_path / "short.edf"
    q.write_bytes(b"0       abc")
    with pytest.raises(InputFileError, match="only 11 bytes"):
        open_recording(q)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        open_recording(tmp_path / "nope.edf")


def _patch(path, offset, text, width):
    data = bytearray(path.read_bytes())
    data[offset:offset + width] = text.ljust(width).encode("ascii")
    path.write_bytes(bytes(data))


def test_truncated_file_keeps_complete_records(psg, tmp_path):
    data = psg.read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: len(data) - len(data) // 3])
    with open_recording(cut) as rec:
        assert any("truncated" in w for w in rec.warnings)
        assert rec.reader == "mne"
        n = rec.header.n_records
        assert 0 < n < 180
        full, _ = open_recording(psg).read_channel("EEG C4-M1")
        part, _ = rec.read_channel("EEG C4-M1")
        assert part.shape[0] == n * 256
        np.testing.assert_allclose(part, full[: n * 256], atol=1e-2)


def test_header_record_count_wrong(psg):
    _patch(psg, 236, "9999", 8)
    with open_recording(psg) as rec:
        assert rec.header.n_records == 180
        assert any("only 180 are complete" in w for w in rec.warnings)


def test_physical_min_equals_max(psg):
    ns = int(psg.read_bytes()[252:256])
    # physical minimum of signal 0 lives at 256 + ns*104; set it equal to the maximum
    pmax = psg.read_bytes()[256 + ns * 112: 256 + ns * 112 + 8].decode()
    _patch(psg, 256 + ns * 104, pmax.strip(), 8)
    with pytest.raises(InputFileError, match="physical minimum equals physical maximum"):
        open_recording(psg)


def test_corrupt_numeric_field(psg):
    _patch(psg, 252, "xx", 4)
    with pytest.raises(InputFileError, match="numeric field is unreadable"):
        open_recording(psg)


def test_digital_min_not_below_max(psg):
    ns = int(psg.read_bytes()[252:256])
    _patch(psg, 256 + ns * 120, "40000", 8)  # digital minimum of signal 0 above its maximum
    with pytest.raises(InputFileError, match="digital minimum 40000 is not below"):
        open_recording(psg)


@pytest.mark.realdata
def test_dreams_excerpt3_falls_back_to_mne_and_matches_text_export():
    edf = shared_path("dreams", "excerpt3.edf")
    txt = shared_path("dreams", "excerpt3.txt")
    with open_recording(edf) as rec:
        assert rec.reader == "mne"
        assert any("pyedflib refused" in w for w in rec.warnings)
        assert any("digital range" in w for w in rec.warnings)
        assert rec.header.duration_s == 1800
        x, fs = rec.read_channel("C3-A1")
    ref = np.loadtxt(txt, skiprows=1)
    assert fs == 50 and x.shape == ref.shape
    np.testing.assert_allclose(x, ref, atol=1e-3)


@pytest.mark.parametrize("block", [None, 700])  # 700 samples: many blocks, a short last one
@pytest.mark.parametrize("kind", ["edf", "bdf", "plain"])
def test_memory_mapped_signals_equal_pyedflib(tmp_path, kind, block, monkeypatch):
    """Signals of files pyedflib opens are read from the mapped records: same values as pyedflib,
    whether the records are converted in one block or in many."""
    if block is not None:
        monkeypatch.setattr(edf_module, "_BLOCK_SAMPLES", block)
    rng = np.random.default_rng(3)
    chans = {"C4-M1": (rng.normal(0, 40, 256 * 90), 256, "uV"),
             "Chin1-Chin2": (rng.normal(0, 5, 200 * 90), 200, "uV"),
             "SpO2": (95 + rng.normal(0, 1, 90), 1, "%")}
    ft = {"edf": pyedflib.FILETYPE_EDFPLUS, "bdf": pyedflib.FILETYPE_BDFPLUS, "plain": pyedflib.FILETYPE_EDF}[kind]
    p = write_edf(tmp_path / f"r.{'bdf' if kind == 'bdf' else 'edf'}", chans, file_type=ft)
    ref = pyedflib.EdfReader(str(p))  # pyedflib opens a file once at a time: read it first
    try:
        expected = {label: (ref.readSignal(i).astype(np.float32), ref.getSampleFrequency(i))
                    for i, label in enumerate(ref.getSignalLabels())}
    finally:
        ref.close()
    with open_recording(p) as rec:
        assert rec.reader == "pyedflib" and rec._records is not None
        for label, (x, fs) in expected.items():
            y, sf = rec.read_channel(label)
            assert sf == fs
            np.testing.assert_array_equal(y, x)
