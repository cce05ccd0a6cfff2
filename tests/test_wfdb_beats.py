"""s2v_core.io.wfdb_beats: WFDB beat annotations -> beats, demographics, canonical IBI."""

from __future__ import annotations

from datetime import date, datetime, time

import numpy as np
import pytest
import wfdb

from s2v_core.errors import InputFileError
from s2v_core.io.wfdb_beats import WfdbBeats, beats_to_ibi, read_wfdb_beats
from tests.conftest import shared_path

SLPDB_RECORDS = ("slp01a", "slp01b", "slp02a", "slp02b", "slp04", "slp14", "slp32", "slp37",
                 "slp48", "slp59", "slp60", "slp67x")  # fmt: skip


def write_record(folder, name, samples, symbols, *, fs=250, sig_len=250 * 120,
                 record_line_tail="23:07:00 19/01/1989", comments=("44 M 89 32-01-89",)):  # fmt: skip
    """A header-only WFDB record with an ``.ecg`` beat annotation file."""
    lines = [f"{name} 1 {fs} {sig_len} {record_line_tail}".strip(),
             f"{name}.dat 212 200/mV 12 0 0 0 0 ECG"]  # fmt: skip
    lines += [f"# {c}" for c in comments]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    wfdb.wrann(name, "ecg", np.asarray(samples, dtype=np.int64), symbol=list(symbols), fs=fs,
               write_dir=str(folder))  # fmt: skip
    return folder / f"{name}.ecg"


# --------------------------------------------------------------------------- synthetic records


def test_reads_beats_demographics_and_start(tmp_path):
    samples = np.arange(100, 250 * 119, 200)  # 0.8 s apart
    symbols = ["N"] * samples.size
    symbols[20] = "V"
    symbols[30] = "+"  # rhythm annotation: not a beat
    path = write_record(tmp_path, "rec1", samples, symbols)
    beats = read_wfdb_beats(path)
    assert isinstance(beats, WfdbBeats)
    assert (beats.record, beats.fs, beats.duration_s) == ("rec1", 250.0, 120.0)
    assert beats.beat_times_s.size == samples.size - 1 and "+" not in beats.symbols
    np.testing.assert_allclose(beats.beat_times_s[:3], [0.4, 1.2, 2.0])
    assert beats.symbols[20] == "V" and beats.normal.sum() == samples.size - 2
    assert (beats.age, beats.sex) == (44.0, "M")
    assert beats.start_time == datetime(1989, 1, 19, 23, 7, 0)
    assert beats.start_clock == time(23, 7, 0)
    assert beats.mean_heart_rate_bpm == pytest.approx(75.0, rel=0.01)


def test_path_forms_give_the_same_record(tmp_path):
    path = write_record(tmp_path, "rec2", np.arange(50, 250 * 60, 250), ["N"] * 60)
    a = read_wfdb_beats(path)
    for other in (tmp_path / "rec2", tmp_path / "rec2.hea", str(tmp_path / "rec2")):
        b = read_wfdb_beats(other)
        np.testing.assert_array_equal(a.beat_times_s, b.beat_times_s)


@pytest.mark.parametrize(
    "comments, age, sex",
    [(("x M x 24-01-90",), None, "M"), (("61 F 70 01-01-90",), 61.0, "F"),
     (("39 M 125 22-08-89", "BP gain and baseline are guesses"), 39.0, "M"),
     (("no demographics here",), None, None), ((), None, None)],
)  # fmt: skip
def test_demographics_from_comments(tmp_path, comments, age, sex):
    path = write_record(tmp_path, "rec3", [100, 300], ["N", "N"], comments=comments)
    beats = read_wfdb_beats(path)
    assert (beats.age, beats.sex) == (age, sex)


def test_two_digit_year_and_missing_date(tmp_path):
    path = write_record(
        tmp_path, "rec4", [100, 300], ["N", "N"], record_line_tail="1:05:30 20/7/89"
    )
    beats = read_wfdb_beats(path)  # wfdb.rdheader refuses "20/7/89"; our fallback reads it
    assert beats.start_time == datetime(1989, 7, 20, 1, 5, 30) and beats.duration_s == 120.0
    path = write_record(tmp_path, "rec5", [100, 300], ["N", "N"], record_line_tail="1:06:00")
    beats = read_wfdb_beats(path)
    assert beats.start_time is None and beats.start_clock == time(1, 6, 0)


def test_beats_to_ibi_masks_ectopic_neighbourhood(tmp_path):
    samples = np.arange(125, 250 * 300, 250)  # 1 s apart, 5 min
    symbols = np.array(["N"] * samples.size)
    samples[100] -= 100  # premature V beat at 100.1 s
    symbols[100] = "V"
    symbols[200:203] = "V"  # a run of three ectopic beats -> 4-s hole
    beats = read_wfdb_beats(write_record(tmp_path, "rec6", samples, symbols, sig_len=250 * 305))
    ibi, ok = beats_to_ibi(beats)
    assert ibi.shape == ok.shape == (10, 120) and ibi.dtype == np.float32 and ok.dtype == bool
    t = np.arange(1200) / 4
    flat_ok = ok.ravel()
    np.testing.assert_allclose(ibi.ravel()[flat_ok], 1.0, atol=1e-6)
    assert flat_ok[(t > 99) & (t < 101.5)].all()  # single V beat: bridged
    assert not flat_ok[(t > 199.6) & (t < 203.4)].any()  # V run: masked
    assert not flat_ok[t < 0.5].any() and flat_ok[(t > 0.5) & (t < 199)].all()
    ibi, ok = beats_to_ibi(beats, n_epochs=12)  # longer than the record: NaN / False padding
    assert ibi.shape == (12, 120) and not ok[10:].any() and np.isnan(ibi[10:]).all()


def test_missing_or_corrupt_files_raise_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="header not found"):
        read_wfdb_beats(tmp_path / "nothing.ecg")
    path = write_record(tmp_path, "rec7", [100, 300], ["N", "N"])
    path.unlink()
    with pytest.raises(InputFileError, match="rec7.ecg: beat annotation file not found"):
        read_wfdb_beats(tmp_path / "rec7")
    path = write_record(tmp_path, "rec8", [100, 300], ["N", "N"])
    path.write_bytes(path.read_bytes() + b"\x07")  # truncated: odd number of bytes
    with pytest.raises(InputFileError, match="rec8.ecg: cannot read the WFDB annotations"):
        read_wfdb_beats(path)
    path = write_record(tmp_path, "rec10", [100, 300], ["+", "~"])
    with pytest.raises(InputFileError, match="rec10.ecg: no beat annotations"):
        read_wfdb_beats(path)
    (tmp_path / "rec9.hea").write_text("this is not a header\n")
    (tmp_path / "rec9.ecg").write_bytes(b"")
    with pytest.raises(InputFileError, match="rec9.hea: cannot read the WFDB header"):
        read_wfdb_beats(tmp_path / "rec9.ecg")


# --------------------------------------------------------------------------- real data (slpdb)


@pytest.mark.realdata
@pytest.mark.parametrize("record", SLPDB_RECORDS)
def test_slpdb_records_load_with_plausible_heart_rate_and_ibi(record):
    beats = read_wfdb_beats(shared_path("slpdb", f"{record}.ecg"))
    assert beats.record == record and beats.fs == 250.0
    assert beats.sex == "M" and beats.beat_times_s.size > 1000
    assert 40 <= beats.mean_heart_rate_bpm <= 110
    ibi, ok = beats_to_ibi(beats)
    n_epochs = int(beats.duration_s // 30)
    assert ibi.shape == ok.shape == (n_epochs, 120)
    # every slpdb record has >= 98.8 % valid IBI samples (curated annotations)
    assert ok.mean() > 0.95
    assert abs(float(np.nanmedian(ibi)) - 60 / beats.mean_heart_rate_bpm) < 0.1
    assert np.nanmin(ibi) >= 0.3 and np.nanmax(ibi) <= 2.0


@pytest.mark.realdata
def test_slpdb_demographics_and_dates():
    first = read_wfdb_beats(shared_path("slpdb", "slp01a.ecg"))
    assert (first.age, first.sex) == (44.0, "M") and first.duration_s == 7200.0
    assert first.start_time == datetime(1989, 1, 19, 23, 7)
    unknown = read_wfdb_beats(shared_path("slpdb", "slp67x.hea").with_suffix(""))
    assert unknown.age is None and unknown.sex == "M" and unknown.start_time is None
    assert unknown.start_clock == time(1, 6)
    two_digit_year = read_wfdb_beats(shared_path("slpdb", "slp32.ecg"))
    assert two_digit_year.start_time.date() == date(1989, 7, 20) and two_digit_year.age == 54.0
    ages = [read_wfdb_beats(shared_path("slpdb", f"{r}.ecg")).age for r in SLPDB_RECORDS]
    assert all(a is None or 32 <= a <= 56 for a in ages) and ages.count(None) == 1
