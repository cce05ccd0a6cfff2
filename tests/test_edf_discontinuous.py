"""EDF+D recordings with gaps, record-onset defects, duplicate labels and annotation edge cases.

Files come from the hand-rolled writer in ``tests/edf_bytes.py`` (pyedflib cannot write EDF+D with
gaps); where pyedflib can write or read the same thing, it is the independent reference.
"""

from __future__ import annotations

import numpy as np
import pyedflib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2v_core.errors import InputFileError
from s2v_core.io.edf import open_recording
from s2v_core.io.edf_header import check_header
from s2v_core.recording.loading import load_night
from tests.conftest import shared_path
from tests.edf_bytes import Signal, contiguous_onsets, write_edf_bytes
from tests.edf_factory import write_edf


def _expected_timeline(values: np.ndarray, n: int, onsets: np.ndarray, sfreq: float) -> np.ndarray:
    """Reference placement, record by record: NaN everywhere, each record at round(onset * sfreq)."""
    rel = onsets - onsets[0]
    total = int(round((rel[-1] + n / sfreq) * sfreq))
    out = np.full(total, np.nan, np.float32)
    for r, t in enumerate(rel):
        i = int(round(t * sfreq))
        out[i : i + n] = values[r * n : (r + 1) * n]
    return out


@pytest.fixture
def two_gaps(tmp_path):
    """30 records of 2 s; 7.5 s missing before record 10, 12 s before record 20."""
    rng = np.random.default_rng(1)
    eeg = rng.integers(-3000, 3000, 30 * 32)  # 16 Hz, integers read back exactly (gain 1)
    resp = np.arange(30 * 8) * 7 - 800  # 4 Hz
    onsets = contiguous_onsets(30, 2.0, {10: 7.5, 20: 12.0})
    path = write_edf_bytes(
        tmp_path / "gaps.edf",
        [Signal("EEG Fpz-Cz", eeg, 32), Signal("Resp chest", resp, 8, dimension="")],
        record_duration=2.0,
        record_onsets=onsets,
        file_type="EDF+D",
        annotations=[
            (0.0, None, "Lights off"),
            (25.0, 30.0, "Sleep stage 2"),
            (70.0, 5.0, "Arousal"),
        ],
    )
    return path, {"EEG Fpz-Cz": (eeg, 32, 16.0), "Resp chest": (resp, 8, 4.0)}, onsets


def test_edf_plus_d_header_gaps_and_duration(two_gaps):
    path, _, _ = two_gaps
    h = check_header(path)
    assert h.file_type == "EDF+D"
    assert h.n_records == 30
    assert h.duration_s == pytest.approx(30 * 2.0 + 7.5 + 12.0)
    assert h.gaps == [(20.0, 7.5), (47.5, 12.0)]
    assert h.warnings == ["EDF+D: 2 gaps totalling 19.5 s; samples there are missing (NaN)"]
    assert h.labels == ["EEG Fpz-Cz", "Resp chest"]


def test_edf_plus_d_samples_on_timeline_with_nan_gaps(two_gaps):
    path, chans, onsets = two_gaps
    with open_recording(path) as rec:
        assert rec.reader == "native"
        for label, (values, n, fs) in chans.items():
            x, sfreq = rec.read_channel(label)
            assert sfreq == fs and x.dtype == np.float32
            assert x.shape == (int(round(rec.header.duration_s * fs)),)
            np.testing.assert_array_equal(x, _expected_timeline(values, n, onsets, fs))
            # the gaps, in samples, hold NaN and nothing else does
            nan = np.isnan(x)
            assert nan.sum() == int(round(19.5 * fs))
            assert nan[int(20.0 * fs) : int(27.5 * fs)].all() and not nan[: int(20.0 * fs)].any()
            assert nan[int(47.5 * fs) : int(59.5 * fs)].all() and not nan[int(59.5 * fs) :].any()


def test_edf_plus_d_annotations_on_the_same_timeline(two_gaps):
    path, _, _ = two_gaps
    with open_recording(path) as rec:
        onsets, durations, texts = rec.read_annotations()
    assert texts == ["Lights off", "Sleep stage 2", "Arousal"]
    np.testing.assert_array_equal(onsets, [0.0, 25.0, 70.0])
    np.testing.assert_array_equal(durations, [np.nan, 30.0, 5.0])


def test_why_not_pyedflib_or_mne_for_edf_plus_d(two_gaps):
    """pyedflib refuses EDF+D; MNE closes the gaps and drops annotations past the shortened end."""
    import mne

    path, _, _ = two_gaps
    with pytest.raises(OSError, match="discontinuous"):
        pyedflib.EdfReader(str(path))
    with pytest.warns(RuntimeWarning, match="outside data range"):
        raw = mne.io.read_raw_edf(path, preload=False, verbose="warning")
    assert raw.n_times == 30 * 32  # concatenated: 60 s of records, the 19.5 s of gaps gone
    assert "Arousal" not in list(raw.annotations.description)


def test_first_record_after_the_start_second_sets_time_zero(tmp_path):
    onsets = contiguous_onsets(6, 1.0, {3: 2.0}) + 0.5  # EDF+: first record may start at +0.X
    p = write_edf_bytes(
        tmp_path / "sub.edf",
        [Signal("EEG", np.arange(24), 4)],
        record_onsets=onsets,
        file_type="EDF+D",
        annotations=[(3.5, 1.0, "Sleep stage W")],
    )
    with open_recording(p) as rec:
        assert rec.header.duration_s == 8.0 and rec.header.gaps == [(3.0, 2.0)]
        x, _ = rec.read_channel("EEG")
        onsets_s, _, _ = rec.read_annotations()
    np.testing.assert_array_equal(x[:12], np.arange(12))
    assert np.isnan(x[12:20]).all()
    np.testing.assert_array_equal(x[20:], np.arange(12, 24))
    assert onsets_s.tolist() == [3.0]


def test_load_night_marks_gap_epochs_invalid(tmp_path):
    """10 min EDF+D night, EEG C4-M1 at 256 Hz, 2 min missing from 4 to 6 min."""
    rng = np.random.default_rng(0)
    t = np.arange(480 * 256) / 256
    eeg = 20 * np.sin(2 * np.pi * 10 * t) + 10 * rng.standard_normal(t.size)
    p = write_edf_bytes(
        tmp_path / "night.edf",
        [Signal("EEG C4-M1", eeg, 256, physical_min=-500, physical_max=500)],
        record_onsets=contiguous_onsets(480, 1.0, {240: 120.0}),
        file_type="EDF+D",
        # the N2 annotation starts after 480 s: a reader that closes the gap would lose it
        annotations=[(0.0, 240.0, "Sleep stage W"), (360.0, 240.0, "Sleep stage 2")],
    )
    night = load_night(p)
    assert night.signals["eeg"].shape[0] == 20
    expected_valid = np.r_[np.ones(8, bool), np.zeros(4, bool), np.ones(8, bool)]
    np.testing.assert_array_equal(night.epoch_valid["eeg"], expected_valid)
    assert np.isnan(night.signals["eeg"][8:12]).all()
    # resampling 256 -> 128 Hz may mark the one output sample touching the gap edge as missing
    assert np.isnan(night.signals["eeg"][expected_valid]).sum() <= 2
    np.testing.assert_array_equal(night.stages, np.r_[[0] * 8, [-1] * 4, [2] * 8])
    assert any("1 gap totalling 2.0 min" in w for w in night.warnings)


# --- the byte writer against pyedflib; EDF+D without gaps reads like EDF+C --------------------
def _montage(record_duration: float, bdf: bool = False) -> list[Signal]:
    rng = np.random.default_rng(3)
    n_rec = int(round(12 / record_duration))
    dig = (-(2**23), 2**23 - 1) if bdf else (-32768, 32767)
    fast, slow = int(round(64 * record_duration)), int(round(2 * record_duration))
    return [
        Signal("EEG C3-A2", rng.normal(0, 40, n_rec * fast), fast, "uV", -500.5, 499.5, *dig),
        Signal("SpO2", 90 + rng.random(n_rec * slow) * 8, slow, "%", 0, 100, *dig),
    ]


def test_byte_writer_edf_plus_c_matches_pyedflib_writer(tmp_path):
    signals = _montage(1.0)
    ours = write_edf_bytes(
        tmp_path / "ours.edf", signals, annotations=[(30.0, 30.0, "Sleep stage 1")]
    )
    ref = write_edf(
        tmp_path / "ref.edf",
        {s.label: (s.samples, s.samples_per_record, s.dimension) for s in signals},
        annotations=[(30.0, 30.0, "Sleep stage 1")],
    )
    with open_recording(ours) as a, open_recording(ref) as b:
        assert a.reader == b.reader == "pyedflib"
        for key in (
            "file_type",
            "start_time",
            "n_records",
            "record_duration",
            "duration_s",
            "labels",
        ):
            assert getattr(a.header, key) == getattr(b.header, key), key
        for s in signals:
            x, fs_a = a.read_channel(s.label)
            y, fs_b = b.read_channel(s.label)
            assert fs_a == fs_b and x.shape == y.shape
            # ours rounds to the nearest digital value, pyedflib's writer truncates (up to a step)
            for rec, z, steps in ((a, x, 0.5), (b, y, 1.0)):
                c = rec.header.channel(s.label)
                step = (c.physical_max - c.physical_min) / (c.digital_max - c.digital_min)
                assert np.max(np.abs(z - s.samples)) <= steps * step + 1e-4
        for got, want in zip(a.read_annotations(), b.read_annotations(), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("record_duration", "kind"), [(1.0, "EDF"), (0.5, "EDF"), (6.0, "EDF"), (1.0, "BDF")]
)
def test_contiguous_edf_plus_d_reads_like_pyedflib_on_edf_plus_c(tmp_path, record_duration, kind):
    signals = _montage(record_duration, bdf=kind == "BDF")
    notes = [(0.0, None, "Lights off"), (6.0, 6.0, "Sleep stage 2")]
    c = write_edf_bytes(
        tmp_path / "c.edf",
        signals,
        record_duration=record_duration,
        file_type=f"{kind}+C",
        annotations=notes,
    )
    d = write_edf_bytes(
        tmp_path / "d.edf",
        signals,
        record_duration=record_duration,
        file_type=f"{kind}+D",
        annotations=notes,
    )
    with open_recording(c) as rc, open_recording(d) as rd:
        assert (rc.reader, rd.reader) == ("pyedflib", "native")
        assert rd.header.gaps == [] and rd.warnings == [] and rc.warnings == []
        assert rd.header.duration_s == rc.header.duration_s == 12.0
        for s in signals:
            x, fs_c = rc.read_channel(s.label)
            y, fs_d = rd.read_channel(s.label)
            assert fs_c == fs_d == s.samples_per_record / record_duration
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)
        for got, want in zip(rd.read_annotations(), rc.read_annotations(), strict=True):
            np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(
    n_per_record=st.integers(1, 7),
    record_duration=st.sampled_from([0.25, 0.5, 1.0, 3.0]),
    gaps=st.lists(st.floats(0.0, 4.0, allow_nan=False), min_size=5, max_size=5),
)
def test_any_gaps_keep_every_sample_once_and_in_order(
    tmp_path_factory, n_per_record, record_duration, gaps
):
    values = np.arange(6 * n_per_record)
    onsets = contiguous_onsets(6, record_duration, {r + 1: g for r, g in enumerate(gaps)})
    p = write_edf_bytes(
        tmp_path_factory.mktemp("h") / "g.edf",
        [Signal("X", values, n_per_record)],
        record_duration=record_duration,
        record_onsets=onsets,
        file_type="EDF+D",
    )
    with open_recording(p) as rec:
        x, fs = rec.read_channel("X")
        duration = rec.header.duration_s
        gap_total = sum(g for _, g in rec.header.gaps)
    assert x.shape == (int(round(duration * fs)),)
    np.testing.assert_array_equal(x[~np.isnan(x)], values)  # every sample once, in order
    assert duration == pytest.approx(6 * record_duration + gap_total)
    # steps under 1 ms are jitter, but they cannot add up to more than 1 ms of drift
    assert abs(gap_total - sum(gaps)) <= 1e-3 + 1e-9
    first = np.flatnonzero(~np.isnan(x))[::n_per_record]  # first sample of each record
    assert np.all(np.abs(first / fs - (onsets - onsets[0])) <= 0.5 / fs + 1e-3 + 1e-9)


def test_onset_jitter_below_a_millisecond_is_not_a_gap(tmp_path):
    onsets = np.arange(10.0) + np.r_[0, 4e-4, -3e-4, 0, 8e-4, 0, 0, 0, 0, 0]
    p = write_edf_bytes(
        tmp_path / "j.edf", [Signal("X", np.arange(40), 4)], record_onsets=onsets, file_type="EDF+D"
    )
    with open_recording(p) as rec:
        assert rec.header.gaps == [] and rec.header.duration_s == 10.0
        np.testing.assert_array_equal(rec.read_channel("X")[0], np.arange(40))


# --- record onsets that cannot be right --------------------------------------------------------
@pytest.mark.parametrize(
    ("shift", "message"),
    [
        (
            -4.0,
            "data record 6 starts at 1.000 s, before data record 5 \\(from 4.000 s\\) ends at 5.000 s",
        ),
        (-0.5, "data record 6 starts at 4.500 s, before data record 5"),
    ],
)
def test_backwards_or_overlapping_onsets_raise(tmp_path, shift, message):
    onsets = np.arange(10.0)
    onsets[5:] += shift
    p = write_edf_bytes(
        tmp_path / "back.edf",
        [Signal("X", np.arange(40), 4)],
        record_onsets=onsets,
        file_type="EDF+D",
    )
    with pytest.raises(
        InputFileError,
        match="back.edf: EDF\\+D record start times go backwards or overlap: " + message,
    ):
        open_recording(p)


def test_implausibly_long_gaps_raise(tmp_path):
    onsets = np.arange(10.0)
    onsets[5:] += 40 * 86400  # 40 days missing from a 10-s recording at 256 Hz
    p = write_edf_bytes(
        tmp_path / "far.edf",
        [Signal("X", np.arange(2560) % 100, 256)],
        record_onsets=onsets,
        file_type="EDF+D",
    )
    with pytest.raises(InputFileError, match="far.edf: EDF\\+D record start times span 960 h"):
        open_recording(p)


def test_overflowing_header_number_is_a_clear_error(tmp_path):
    p = write_edf_bytes(tmp_path / "big.edf", [Signal("X", np.arange(40), 4)], file_type="EDF+D")
    data = bytearray(p.read_bytes())
    data[256 + 2 * 120 : 256 + 2 * 120 + 8] = b"1e999   "  # digital minimum of signal 0
    p.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="big.edf: corrupt EDF header: channel 'X'"):
        open_recording(p)


def test_record_without_time_keeping_tal_raises(tmp_path):
    p = write_edf_bytes(tmp_path / "tk.edf", [Signal("X", np.arange(40), 4)], file_type="EDF+D")
    h = check_header(p)
    data = bytearray(p.read_bytes())
    at = h.header_bytes + 3 * h.record_bytes + h.annotation_span[0]  # record 4's annotation bytes
    data[at : at + 4] = b"x3\x14\x14"
    p.write_bytes(bytes(data))
    with pytest.raises(
        InputFileError,
        match="tk.edf: EDF\\+D data record 4 of 10 does not begin with a time-keeping",
    ):
        open_recording(p)


def test_edf_plus_d_without_annotation_signal_reads_contiguous(tmp_path):
    p = write_edf_bytes(tmp_path / "na.edf", [Signal("X", np.arange(40), 4)], file_type="EDF")
    data = bytearray(p.read_bytes())
    data[192:197] = b"EDF+D"  # claims EDF+D but has no record onsets to read
    p.write_bytes(bytes(data))
    with open_recording(p) as rec:
        assert rec.header.file_type == "EDF+D" and rec.header.gaps == []
        assert any("record start times are unknown" in w for w in rec.warnings)
        np.testing.assert_array_equal(rec.read_channel("X")[0], np.arange(40))


def test_truncated_edf_plus_d_keeps_complete_records(tmp_path):
    onsets = contiguous_onsets(10, 1.0, {4: 3.0})
    p = write_edf_bytes(
        tmp_path / "cut.edf",
        [Signal("X", np.arange(40), 4)],
        record_onsets=onsets,
        file_type="EDF+D",
    )
    h = check_header(p)
    p.write_bytes(p.read_bytes()[: h.header_bytes + 7 * h.record_bytes + 5])
    with open_recording(p) as rec:
        assert rec.header.n_records == 7 and rec.header.duration_s == 10.0
        assert any("truncated" in w for w in rec.warnings)
        x, _ = rec.read_channel("X")
    np.testing.assert_array_equal(x, np.r_[np.arange(16), [np.nan] * 12, np.arange(16, 28)])


# --- labels and annotation-only files -----------------------------------------------------------
@pytest.mark.parametrize("variant", ["EDF+C", "truncated", "EDF+D"])
def test_duplicate_labels_read_the_first_channel(tmp_path, variant):
    first, second = np.arange(40), np.arange(40) * -2 + 7
    p = write_edf_bytes(
        tmp_path / "dup.edf",
        [Signal("EEG", first, 4), Signal("EEG", second, 4), Signal("EOG", second, 4)],
        file_type="EDF+D" if variant == "EDF+D" else "EDF+C",
    )
    if variant == "truncated":  # sends the file to MNE, which renames duplicates EEG-0, EEG-1
        p.write_bytes(p.read_bytes()[:-3])
    with open_recording(p) as rec:
        assert rec.reader == {"EDF+C": "pyedflib", "truncated": "mne", "EDF+D": "native"}[variant]
        assert rec.header.labels == ["EEG", "EEG", "EOG"]
        x, _ = rec.read_channel("EEG")
        y, _ = rec.read_channel("EOG")
    n = x.size
    np.testing.assert_allclose(x, first[:n], atol=1e-3)
    np.testing.assert_allclose(y, second[:n], atol=1e-3)


def test_annotation_only_edf_plus_is_refused(tmp_path):
    p = write_edf_bytes(
        tmp_path / "ann.edf",
        [],
        record_onsets=np.arange(5.0),
        annotations=[(1.0, 30.0, "Sleep stage W")],
    )
    with pytest.raises(InputFileError, match="ann.edf: the file has no signal channels"):
        open_recording(p)


@pytest.mark.realdata
def test_sleep_edf_hypnogram_file_is_refused_as_a_recording():
    """Annotation-only EDF+ with 0-s records (allowed by EDF+ when there are no signals)."""
    path = shared_path("sleep-edf", "SC4001EC-Hypnogram.edf")
    with pytest.raises(
        InputFileError, match="SC4001EC-Hypnogram.edf: the file has no signal channels"
    ):
        open_recording(path)


def test_stage_annotations_without_duration_are_used(tmp_path):
    """pyedflib reports a missing duration as -1; it must reach the hypnogram as 'no duration'."""
    t = np.arange(90 * 256) / 256
    eeg = 20 * np.sin(2 * np.pi * 10 * t) + 5 * np.sin(2 * np.pi * 3 * t)
    p = write_edf_bytes(
        tmp_path / "nodur.edf",
        [Signal("EEG C4-M1", eeg, 256, physical_min=-100, physical_max=100)],
        annotations=[
            (0.0, None, "Sleep stage W"),
            (30.0, None, "Sleep stage 1"),
            (60.0, None, "Sleep stage 2"),
        ],
    )
    with open_recording(p) as rec:
        assert rec.reader == "pyedflib"
        _, durations, _ = rec.read_annotations()
    assert np.isnan(durations).all()
    np.testing.assert_array_equal(load_night(p).stages, [0, 1, 2])
