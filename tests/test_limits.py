"""What a file may cost is decided before anything is allocated (issue 16).

Each resource class has several members, and each member goes through every path that reads it:

- EDF/EDF+/BDF headers that declare a huge record duration, record count or samples per record,
  a tiny duration with an enormous rate, a rate too low to resample, or a length far beyond the
  bytes in the file (continuous, MNE fallback, native EDF+D): ``s2v info`` exits 2 with one line,
  and ``load_night`` refuses with an :class:`InputFileError` while numpy has allocated (traced by
  ``tracemalloc``) less than :data:`SMALL`;
- DREAMS text excerpts with an explicit rate that is absurd or far too low for the samples;
- WFDB records whose header declares an absurd rate or length, or more than its ``.dat`` holds;
- :func:`s2v_core.signals.resample` itself;
- JSON from user-supplied places (checkpoint ``config.json`` and optimizer state, night heads,
  saved nights, training configs): nesting, size, numbers and encodings that the parser cannot
  take give one line (CLI, library and the Model page), never a ``RecursionError``;
- the EDF reader choice comes from the header check's structured record-count outcome, not from
  the text of a warning.
"""

from __future__ import annotations

import contextlib
import io
import re
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from s2v_core.cli.main import main
from s2v_core.errors import InputFileError, S2VError
from s2v_core.io.edf import open_recording
from s2v_core.io.edf_header import check_header
from s2v_core.limits.bounds import (
    EXPANSION_FLOOR_BYTES,
    MAX_EXPANSION,
    MAX_JSON_DEPTH,
    MAX_RECORDING_S,
    MIN_SFREQ_HZ,
    allocation_budget,
)
from s2v_core.recording.loading import load_night
from tests.edf_bytes import Signal, write_edf_bytes

SMALL = 8 * 2**20
"""Most bytes numpy may allocate (tracemalloc peak) while a hostile file is refused."""

ROOT = Path(__file__).resolve().parents[1]


# --- building hostile EDF files ------------------------------------------------------------------
def _edf(path: Path, *, spr: int = 128, n_records: int = 60, record_duration: float = 1.0,
         file_type: str = "EDF", onsets=None, header_n_records: int | None = None) -> Path:
    """One EEG channel of ``n_records`` records with ``spr`` samples each (a few µV of noise)."""
    rng = np.random.default_rng(0)
    n = n_records if onsets is None else len(onsets)
    eeg = Signal("EEG C4-M1", rng.integers(-300, 300, n * spr), spr, physical_min=-500, physical_max=500)
    if file_type.startswith("BDF"):
        eeg.digital_min, eeg.digital_max = -(2**23), 2**23 - 1
    return write_edf_bytes(path, [eeg], record_duration=record_duration, file_type=file_type,
                           record_onsets=onsets, header_n_records=header_n_records)


def _patch(path: Path, offset: int, text: str, width: int = 8) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + width] = text.ljust(width).encode("ascii")
    path.write_bytes(bytes(raw))
    return path


def _samples_field(path: Path) -> int:
    """Byte offset of signal 0's samples-per-record field."""
    ns = int(path.read_bytes()[252:256])
    return 256 + ns * 216


def huge_record_duration(d):  # issue 16: a 712-byte file, one record of 99,999,999 s
    return _patch(_edf(d / "huge-duration.edf", spr=100, n_records=1), 244, "99999999")


def huge_record_duration_bdf(d):
    return _patch(_edf(d / "huge-duration.bdf", spr=100, n_records=1, file_type="BDF"), 244, "99999999")


def record_just_over_72_h(d):
    return _patch(_edf(d / "one-record.edf", spr=1, n_records=1), 244, str(int(MAX_RECORDING_S) + 1))


def records_add_up_over_72_h(d):  # each record plausible (300 s, 1 sample), 865 of them: 72.08 h
    return _edf(d / "many-records.edf", spr=1, n_records=865, record_duration=300)


def huge_samples_per_record(d):
    p = _edf(d / "huge-spr.edf")
    return _patch(p, _samples_field(p), "99999999")


def huge_samples_per_record_edf_plus(d):
    p = _edf(d / "huge-spr-plus.edf", file_type="EDF+C")
    return _patch(p, _samples_field(p), "99999999")


def tiny_duration_enormous_rate(d):  # 128 samples per 10 µs: 12.8 MHz
    return _patch(_edf(d / "fast.edf"), 244, "0.00001")


def rate_too_low(d):  # one sample per hour
    return _edf(d / "slow.edf", spr=1, n_records=10, record_duration=3600)


def length_beyond_bytes(d):  # 9 KB that claim 72 h of EEG (one sample a minute): 133 MB at 128 Hz
    return _edf(d / "sparse.edf", spr=1, n_records=4320, record_duration=60)


def length_beyond_bytes_mne(d):  # the same, with a record count that sends it to MNE
    return _edf(d / "sparse-mne.edf", spr=1, n_records=4320, record_duration=60, header_n_records=9999)


def edf_d_long_gap(d):  # 2 s of data, 70 h apart: a 129-MB timeline per channel
    return _edf(d / "gap.edf", file_type="EDF+D", onsets=[0.0, 70 * 3600.0])


def edf_d_span_over_72_h(d):
    return _edf(d / "gap80.edf", file_type="EDF+D", onsets=[0.0, 80 * 3600.0])


@dataclass(frozen=True)
class Member:
    """One member of the resource class: how to make it, where it is refused, what is said."""

    id: str
    make: object
    stage: str  # "header": check_header refuses it; "load": load_night refuses it before reading
    message: str  # regex


MEMBERS = [
    Member("huge_record_duration", huge_record_duration, "header",
           r"huge-duration\.edf: corrupt EDF header: one data record lasts 27,777\.8 h; "
           r"recordings over 72 h are refused"),
    Member("huge_record_duration_bdf", huge_record_duration_bdf, "header",
           r"huge-duration\.bdf: corrupt EDF header: one data record lasts 27,777\.8 h"),
    Member("record_just_over_72_h", record_just_over_72_h, "header", r"one data record lasts 72\.0 h"),
    Member("records_add_up_over_72_h", records_add_up_over_72_h, "header",
           r"865 data records of 300 s: the recording lasts 72\.1 h; recordings over 72 h are refused"),
    Member("huge_samples_per_record", huge_samples_per_record, "header",
           r"no complete data record: one record takes 200 MB \(channel 'EEG C4-M1' declares 99999999 "
           r"samples per record\) but the file holds 15\.4 KB of data"),
    Member("huge_samples_per_record_edf_plus", huge_samples_per_record_edf_plus, "header",
           r"one record takes 200 MB"),
    Member("tiny_duration_enormous_rate", tiny_duration_enormous_rate, "header",
           r"record duration 1e-05 s gives channel 'EEG C4-M1' 1\.28e\+07 Hz \(over 1e\+06 Hz\)"),
    Member("rate_too_low", rate_too_low, "header",
           r"channel 'EEG C4-M1' \(1 samples per 1\.0 h record\) is sampled at 0\.000278 Hz, below one "
           r"sample per 300 s"),
    Member("length_beyond_bytes", length_beyond_bytes, "load",
           r"sparse\.edf: 1 channel over 72\.0 h at their own and the model's rates would take 133 MB of "
           r"memory for a file of 9\.15 KB \(the most allowed is 16\.8 MB: 32x the file size, at least 16\.8 MB\)"),
    Member("length_beyond_bytes_mne", length_beyond_bytes_mne, "load", r"would take 133 MB of memory"),
    Member("edf_d_long_gap", edf_d_long_gap, "load",
           r"gap\.edf: 1 channel over 70\.0 h at their own and the model's rates would take 258 MB"),
    Member("edf_d_span_over_72_h", edf_d_span_over_72_h, "header",
           r"EDF\+D: from the first record's start to the last one's end, the recording lasts 80\.0 h"),
]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def traced_peak():
    """Yields a dict whose ``"peak"`` is the largest traced allocation total inside the block."""
    import mne.io  # noqa: F401 - imported outside the trace: imports are not what we measure

    result = {}
    tracemalloc.start()
    try:
        yield result
    finally:
        result["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


@pytest.mark.parametrize("member", MEMBERS, ids=[m.id for m in MEMBERS])
def test_hostile_edf_is_refused_before_allocating(member: Member, tmp_path):
    path = member.make(tmp_path)
    assert path.stat().st_size < 20_000  # every member is a small file
    if member.stage == "header":
        with pytest.raises(InputFileError, match=member.message):
            check_header(path)
    else:
        check_header(path)  # the header alone is consistent; what it implies is not
    with traced_peak() as mem, pytest.raises(InputFileError, match=member.message) as info:
        load_night(path)
    assert mem["peak"] < SMALL, f"{mem['peak'] / 2**20:.0f} MiB allocated before the refusal"
    assert "\n" not in str(info.value) and str(tmp_path) not in str(info.value)


@pytest.mark.parametrize("member", MEMBERS, ids=[m.id for m in MEMBERS])
def test_hostile_edf_is_one_line_in_the_cli(member: Member, tmp_path):
    path = member.make(tmp_path)
    for command in ("info", "predict"):
        extra = ["--out", str(tmp_path / "o.csv")] if command == "predict" else []
        code, out, err = run_cli([command, str(path), *extra])
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"s2v {command}: error: {path.name}: ") and re.search(member.message, err), err
        assert "Traceback" not in err and str(tmp_path) not in err


def test_huge_record_count_in_a_tiny_file_reads_only_what_is_there(tmp_path):
    path = _edf(tmp_path / "count.edf", n_records=60, header_n_records=99999999)
    header = check_header(path)
    assert header.n_records == 60 and header.duration_s == 60 and header.record_count == "truncated"
    with traced_peak() as mem:
        with open_recording(path) as rec:
            x, fs = rec.read_channel("EEG C4-M1")
    assert rec.reader == "mne" and x.shape == (60 * 128,) and fs == 128
    assert mem["peak"] < SMALL


def test_limits_leave_real_recordings_alone(tmp_path):
    """At the limits, and just inside them, files are read as before."""
    at_limit = _patch(_edf(tmp_path / "72h.edf", spr=1000, n_records=1), 244, str(int(MAX_RECORDING_S)))
    assert check_header(at_limit).duration_s == MAX_RECORDING_S
    slowest = _edf(tmp_path / "slowest.edf", spr=1, n_records=4, record_duration=1 / MIN_SFREQ_HZ)
    assert check_header(slowest).channels[0].sfreq == pytest.approx(MIN_SFREQ_HZ)
    night = load_night(_edf(tmp_path / "ok.edf", n_records=120))
    assert night.n_epochs == 4 and night.signals["eeg"].shape == (4, 3840)
    # an SpO2 recording at 1 Hz produces 10x its size: far inside the budget
    assert allocation_budget(0) == EXPANSION_FLOOR_BYTES and allocation_budget(2**30) == MAX_EXPANSION * 2**30


# --- the reader choice comes from the header check, not from warning text -------------------------
def test_a_digital_range_with_minus_one_is_not_an_inconsistent_record_count(tmp_path):
    rng = np.random.default_rng(0)
    eeg = Signal("EEG C4-M1", rng.integers(-300, 300, 60 * 128), 128, physical_min=-500, physical_max=500,
                 digital_min=-1000000, digital_max=32767)
    path = write_edf_bytes(tmp_path / "digital.edf", [eeg], file_type="EDF+C")
    header = check_header(path)
    assert header.record_count == "ok" and any("-1000000" in w for w in header.warnings)
    with open_recording(path) as rec:
        notes = " ".join(rec.warnings)
    assert "inconsistent record count" not in notes
    # pyedflib was tried first (it refuses a digital minimum outside the 16-bit range itself)
    assert "pyedflib refused the file" in notes and "Digital Minimum" in notes


def test_a_warning_text_alone_never_picks_the_reader(tmp_path, monkeypatch):
    import s2v_core.io.edf as edf

    path = _edf(tmp_path / "plain.edf", file_type="EDF+C")

    def with_misleading_warnings(p):
        h = check_header(p)
        h.warnings += ["channel 'A-1': digital range -1..1 is odd", "truncated text in a label"]
        return h

    monkeypatch.setattr(edf, "check_header", with_misleading_warnings)
    with open_recording(path) as rec:
        assert rec.reader == "pyedflib" and "inconsistent record count" not in " ".join(rec.warnings)


@pytest.mark.parametrize(("declared", "state", "reader"), [
    (None, "ok", "pyedflib"), (99999999, "truncated", "mne"), (-1, "unknown", "mne"), (30, "extra", "mne"),
])
def test_record_count_states_choose_the_reader(declared, state, reader, tmp_path):
    path = _edf(tmp_path / "r.edf", file_type="EDF+C", header_n_records=declared)
    assert check_header(path).record_count == state
    with open_recording(path) as rec:
        assert rec.reader == reader
        notes = " ".join(rec.warnings)
    assert ("inconsistent record count" in notes) == (state != "ok")


# --- DREAMS text excerpts -------------------------------------------------------------------------------
def _dreams(path: Path, n: int) -> Path:
    values = np.random.default_rng(0).normal(0, 20, n)
    path.write_text("[C3-A1]\n" + "\n".join(f"{v:.3f}" for v in values) + "\n")
    return path


@pytest.mark.parametrize(("n", "sfreq", "message"), [
    (100, 1e-4, r"channel 'C3-A1' is sampled at 0\.0001 Hz, below one sample per 300 s"),
    (100, 1e7, r"channel 'C3-A1' is sampled at 1e\+07 Hz, over 1e\+06 Hz"),
    (3000, 0.01, r"3000 samples at 0\.01 Hz: the recording lasts 83\.3 h; recordings over 72 h are refused"),
    (2000, 0.01, r"channel 'C3-A1' over 55\.6 h would take 102 MB of memory for a file of 1\d\.\d KB"),
])
def test_dreams_rate_and_length_are_checked_before_resampling(n, sfreq, message, tmp_path):
    from s2v_core.recording.dreams import load_dreams_night

    path = _dreams(tmp_path / "excerpt1.txt", n)
    with traced_peak() as mem, pytest.raises(InputFileError, match=message):
        load_dreams_night(path, sfreq=sfreq)
    assert mem["peak"] < SMALL
    code, out, err = run_cli(["info", str(path), "--sfreq", str(sfreq)])
    assert code == 2 and err.count("\n") == 1 and re.search(message, err), err


def test_dreams_at_a_real_rate_still_reads(tmp_path):
    from s2v_core.recording.dreams import load_dreams_night

    night = load_dreams_night(_dreams(tmp_path / "excerpt2.txt", 200 * 60), sfreq=200)
    assert night.n_epochs == 2 and night.signals["eeg"].shape == (2, 3840)


# --- WFDB beat annotations ------------------------------------------------------------------------------
def _wfdb(folder: Path, **kwargs) -> Path:
    """A WFDB record ``rec`` (header and ``.ecg`` beats); ``hea_fs`` rewrites the header's rate."""
    from tests.test_wfdb_beats import write_record

    samples = kwargs.pop("samples", np.arange(100, 250 * 119, 200))
    hea_fs = kwargs.pop("hea_fs", None)
    path = write_record(folder, "rec", samples, ["N"] * len(samples), **kwargs)
    if hea_fs is not None:  # wfdb writes 1e-06, which it then reads back as 1 Hz
        hea = folder / "rec.hea"
        first, rest = hea.read_text().split("\n", 1)
        tokens = first.split()
        tokens[2] = hea_fs
        hea.write_text(" ".join(tokens) + "\n" + rest)
    return path


@pytest.mark.parametrize(("kwargs", "dat_bytes", "message"), [
    ({"hea_fs": "0.000001", "sig_len": 10}, None,
     r"rec\.hea: the WFDB header: the signal is sampled at 1e-06 Hz, below one sample per 300 s"),
    ({"hea_fs": "9000000", "sig_len": 10}, None, r"rec\.hea: the WFDB header: the signal is sampled at 9e\+06 Hz"),
    ({"sig_len": 10**12}, None,
     r"rec\.hea: the WFDB header declares 1000000000000 samples at 250 Hz: the record lasts 1\.11e\+06 h"),
    ({}, 10, r"rec\.hea: the WFDB header declares 30000 samples \(8\.3 h\)|holds 10 bytes, not the 45 KB"),
    ({"sig_len": "", "record_line_tail": "", "samples": [100, 300, 10**12]}, None,
     r"rec\.ecg: without a signal length in the header, the last beat says the record lasts 1\.11e\+06 h"),
])
def test_wfdb_declared_rate_and_length_are_checked(kwargs, dat_bytes, message, tmp_path):
    from s2v_core.io.wfdb_beats import read_wfdb_beats

    path = _wfdb(tmp_path, **kwargs)
    if dat_bytes is not None:
        (tmp_path / "rec.dat").write_bytes(b"\0" * dat_bytes)
    with traced_peak() as mem, pytest.raises(InputFileError, match=message):
        read_wfdb_beats(path)
    assert mem["peak"] < SMALL
    code, out, err = run_cli(["info", str(path)])
    assert code == 2 and err.count("\n") == 1 and re.search(message, err), err


def test_wfdb_with_a_matching_dat_file_still_reads(tmp_path):
    from s2v_core.io.wfdb_beats import read_wfdb_beats

    path = _wfdb(tmp_path)
    (tmp_path / "rec.dat").write_bytes(b"\0" * (250 * 120 * 3 // 2))  # format 212: 12 bits a sample
    assert read_wfdb_beats(path).duration_s == 120.0


# --- resampling itself --------------------------------------------------------------------------------
def test_resample_refuses_absurd_lengths_and_factors():
    from s2v_core.signals import resample

    with pytest.raises(ValueError, match="more than 72 h at 128 Hz"):
        resample(np.ones(3), 1e-6, 128)  # would be 384 M samples
    with pytest.raises(ValueError, match="needs a filter of over"):
        resample(np.ones(1), 1e-5, 128)  # 12.8 M samples, but a factor of 12.8 M
    assert resample(np.ones(10), MIN_SFREQ_HZ, 128).shape == (384_000,)  # the slowest accepted rate
    assert resample(np.ones(256), 256, 128).shape == (128,)


@pytest.mark.parametrize("sfreq", [0.250833, 0.0333337, 1 / 299.9, 0.7777771])
def test_slow_channels_at_odd_rates_still_resample(sfreq):
    """Fuzz finding: 0.250833 Hz -> 128 Hz is 153600/301, a factor beyond the polyphase bound."""
    from s2v_core.signals import resample
    from s2v_core.signals.resampling import MAX_POLYPHASE_FACTOR, rational_ratio

    up, down = rational_ratio(sfreq, 128)
    assert max(up, down) <= MAX_POLYPHASE_FACTOR
    assert up / down == pytest.approx(128 / sfreq, rel=1e-5)  # a 0.3-s drift over 8 h at worst
    t = np.arange(200) / sfreq
    period = 40 / sfreq  # 40 input samples per cycle, far below the channel's Nyquist rate
    y = resample(np.sin(2 * np.pi * t / period).astype(np.float32), sfreq, 128)
    assert y.shape == (round(200 * 128 / sfreq),)
    t_out = np.arange(y.size) / 128
    edge = int(10 * 128 / sfreq)  # ten input samples at each end, where the filter sees padding
    np.testing.assert_allclose(y[edge:-edge], np.sin(2 * np.pi * t_out / period)[edge:-edge], atol=0.02)


# --- JSON from user-supplied places ---------------------------------------------------------------------
DEEP = "[" * 100_000 + "]" * 100_000


def _json_error(path: Path, text: str | bytes) -> str:
    from s2v_core.limits.jsonfile import read_json

    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(InputFileError) as info:
        read_json(path)
    return info.value.problem


@pytest.mark.parametrize(("text", "message"), [
    (DEEP, r"^JSON nested 100000 levels deep; at most 64 levels are accepted$"),
    ('{"a": ' * 65 + "1" + "}" * 65, r"^JSON nested 65 levels deep"),
    ("[" * 100_000, r"^JSON nested 100000 levels deep"),  # unterminated as well
    ("1" * 5000, r"^not valid JSON \(Exceeds the limit \(4300 digits\) for integer string conversion"),
    ('{"model": {"n_layers": 2,}}', r"^not valid JSON \(Expecting property name .* line 1, column 26\)$"),
    (b'{"a": "\xff\xfe"}', r"^not valid JSON \(not UTF-8 text at byte 7\)$"),
    ("", r"^not valid JSON \(Expecting value at line 1, column 1\)$"),
])
def test_read_json_gives_one_line_for_what_the_parser_cannot_take(text, message, tmp_path):
    assert re.search(message, _json_error(tmp_path / "config.json", text))


def test_read_json_caps_the_size_and_accepts_what_is_inside_the_caps(tmp_path):
    from s2v_core.limits.jsonfile import json_depth, read_json

    big = tmp_path / "big.json"
    big.write_text('{"extra": "' + "x" * 200 + '"}')
    with pytest.raises(InputFileError, match=r"big\.json: the JSON file is over 100 bytes, the most accepted"):
        read_json(big, max_bytes=100)
    assert read_json(big)["extra"] == "x" * 200
    nested = '{"a": ' * (MAX_JSON_DEPTH - 1) + '["]]]]{{{{"]' + "}" * (MAX_JSON_DEPTH - 1)
    big.write_text(nested)
    assert json_depth(nested) == MAX_JSON_DEPTH and read_json(big) is not None
    secret = '{"note": "' + "patient Jane Doe " * 100 + '", oops}'
    problem = _json_error(tmp_path / "s.json", secret)
    assert "Jane" not in problem and len(problem) < 200


def _checkpoint(tmp_path: Path) -> Path:
    from s2v_core.model import HeadConfig, Sleep2VecClassifier, get_preset
    from s2v_core.model.checkpoint import save_checkpoint

    cfg = get_preset("tiny")
    return save_checkpoint(tmp_path / "clf", Sleep2VecClassifier(cfg, HeadConfig(), seed=0), cfg)


@pytest.mark.parametrize(("content", "message"), [
    (DEEP, r"clf/config\.json: JSON nested 100000 levels deep; at most 64 levels are accepted"),
    ('{"format_version": ' + "[" * 3000 + "]" * 3000 + "}", r"clf/config\.json: JSON nested 3001 levels deep"),
    (" " * (5 * 2**20), r"clf/config\.json: the JSON file is over 4\.19 MB, the most accepted"),
    ('{"format_version": ' + "9" * 5000 + "}", r"clf/config\.json: not valid JSON \(Exceeds the limit"),
])
def test_checkpoint_config_json_is_capped(content, message, tmp_path):
    from s2v_core.model.checkpoint import CheckpointError, load_checkpoint

    folder = _checkpoint(tmp_path)
    (folder / "config.json").write_text(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(folder)
    assert str(tmp_path) not in str(info.value)
    edf = _edf(tmp_path / "night.edf", n_records=120, file_type="EDF+C")
    code, out, err = run_cli(["predict", str(edf), "--model", str(folder), "--out", str(tmp_path / "o.csv")])
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(message, err), err


def test_optimizer_state_json_is_capped(tmp_path):
    import torch

    from s2v_core.model import Sleep2Vec, get_preset
    from s2v_core.model.checkpoint import CheckpointError, load_optimizer_state, save_checkpoint

    cfg = get_preset("tiny")
    model = Sleep2Vec(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters())
    folder = save_checkpoint(tmp_path / "run", model, cfg, optimizer=opt)
    (folder / "optimizer.json").write_text(DEEP)
    with pytest.raises(CheckpointError, match=r"run/optimizer\.json: cannot read optimizer state \(JSON nested"):
        load_optimizer_state(folder, opt)


def test_other_user_supplied_json_is_capped(tmp_path):
    from s2v_core.model.config import ConfigError
    from s2v_core.night import Night
    from s2v_core.night_heads.linear import HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE, NightHead
    from s2v_core.night_heads.tasks import NightHeadError
    from s2v_core.train.config import TrainConfig

    head = tmp_path / "head"
    head.mkdir()
    (head / HEAD_CONFIG_FILE).write_text(DEEP)
    (head / HEAD_WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(NightHeadError, match=r"head/head\.json: JSON nested 100000 levels deep"):
        NightHead.load(head)
    saved = tmp_path / "night"
    saved.mkdir()
    (saved / "night.json").write_text(DEEP)
    with pytest.raises(InputFileError, match=r"night\.json: JSON nested 100000 levels deep"):
        Night.load(saved)
    (tmp_path / "train.json").write_text(DEEP)
    with pytest.raises(ConfigError, match=r"train\.json: JSON nested 100000 levels deep"):
        TrainConfig.load_json(tmp_path / "train.json")
    assert all(issubclass(e, S2VError) for e in (NightHeadError, ConfigError))


def test_model_page_upload_of_a_deep_config_is_one_message(tmp_path):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    folder = _checkpoint(tmp_path)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/model.py")
    at.run(timeout=120)
    uploads = [("config.json", DEEP.encode(), "application/json"),
               ("model.safetensors", (folder / "model.safetensors").read_bytes(), "application/octet-stream")]
    at.file_uploader(key="model_upload").set_value(uploads)
    at.run(timeout=120)
    at.button(key="model_upload_load").click()
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert any(re.search(r"JSON nested 100000 levels deep; at most 64 levels are accepted", e) for e in errors), errors
    assert all("\n" not in e and "Traceback" not in e and str(tmp_path) not in e for e in errors)


# --- a real server: hostile uploads of every resource class (slow) -------------------------------------
RSS_ALLOWANCE_MB = 300
"""The server's resident memory may grow at most this much over its warmed-up baseline."""
PSG_LABEL = "EDF / EDF+ / BDF, WFDB, DREAMS text, FIF, BrainVision or EEGLAB recording (all files of one record at once)"
HYP_LABEL = "Hypnogram (optional): Sleep-EDF/EDF+, NSRR or Profusion XML, CSV/TSV, DREAMS, WFDB"
MAX_MESSAGE_CHARS = 600
"""A message quotes at most a short excerpt of the file."""


def _hostile_uploads(d: Path) -> list[tuple[str, Path | None, Path | None, str]]:
    """(id, recording or None for the good one, hypnogram or None, regex one message must match)."""
    count = _edf(d / "count.edf", n_records=60, header_n_records=99999999)
    label = d / "label.csv"
    label.write_text("stage\nW\n" + "N" * 2_000_000 + "\nW\nW\n")  # one label of 2 MB
    field = d / "field.csv"
    field.write_text('onset,duration,stage\n0,30,"' + "x" * 200_000 + '"\n30,30,W\n60,30,W\n90,30,W\n')
    return [
        ("huge_declared_duration", huge_record_duration(d), None, r"one data record lasts 27,777\.8 h"),
        ("huge_record_count", count, None, r"declares 99999999 data records but only 60 are complete"),
        ("huge_samples_per_record", huge_samples_per_record(d), None, r"one record takes 200 MB"),
        ("tiny_duration_enormous_rate", tiny_duration_enormous_rate(d), None, r"over 1e\+06 Hz"),
        ("length_beyond_bytes", length_beyond_bytes(d), None, r"would take 133 MB of memory"),
        ("edf_d_long_gap", edf_d_long_gap(d), None, r"would take 258 MB of memory"),
        ("hypnogram_2_MB_label", None, label, r"label\.csv: "),
        ("csv_field_over_128_KB", None, field, r"field\.csv: "),
    ]


@pytest.mark.slow
def test_hostile_uploads_keep_the_server_small_and_working(tmp_path):
    pytest.importorskip("websockets")
    psutil = pytest.importorskip("psutil")
    import threading
    import time

    from app_session import AppSession, start_server, stop_server

    good = _edf(tmp_path / "good.edf", n_records=120, file_type="EDF+C")
    uploads = _hostile_uploads(tmp_path)
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    proc, url = start_server({"TMPDIR": str(server_tmp), "OMP_NUM_THREADS": "1"}, log_path=tmp_path / "server.log")
    server = psutil.Process(proc.pid)
    peak, stop = [0], threading.Event()

    def watch() -> None:  # sample the server's RSS between the page runs as well
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], server.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def visit(psg: Path, hyp: Path | None) -> tuple[list[str], list[str], dict]:
        with AppSession(url, timeout=300) as s:
            s.rerun()
            s.set_radio("Recording", "Upload a recording")
            s.rerun()
            s.upload(PSG_LABEL, psg.name, psg.read_bytes())
            if hyp is not None:
                s.upload(HYP_LABEL, hyp.name, hyp.read_bytes())
            run = s.rerun()
            alerts = [a.body for a in run.of("alert") if a.format in (1, 2)]  # errors and warnings
            return alerts, run.exceptions, run.metrics

    try:
        alerts, exceptions, metrics = visit(good, None)  # warm up: imports, caches, the model
        assert not exceptions and metrics.get("Epochs (30 s)") == "4", (alerts, exceptions, metrics)
        time.sleep(2)
        baseline = server.memory_info().rss
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        problems = []  # every case is tried; all that failed are reported together
        for case, psg, hyp, pattern in uploads:
            alerts, exceptions, _ = visit(psg or good, hyp)
            shown = [(len(a), a[:160]) for a in alerts]
            if exceptions or not any(re.search(pattern, a) for a in alerts):
                problems.append((case, "no such message", exceptions, shown))
            elif not all("\n" not in a.strip() and len(a) <= MAX_MESSAGE_CHARS for a in alerts):
                problems.append((case, "message not one short line", shown))
            elif any(str(tmp_path) in a or "Traceback" in a for a in alerts):
                problems.append((case, "message shows a path or a traceback", shown))
        stop.set()
        watcher.join(timeout=5)
        grown_mb = (max(peak[0], server.memory_info().rss) - baseline) / 2**20
        print(f"\nbaseline RSS {baseline / 2**20:.0f} MB, peak growth {grown_mb:.0f} MB over "
              f"{len(uploads)} hostile uploads")
        assert grown_mb <= RSS_ALLOWANCE_MB, f"server RSS grew {grown_mb:.0f} MB over {baseline / 2**20:.0f} MB"
        alerts, exceptions, metrics = visit(good, None)  # another session still works
        assert not exceptions and metrics.get("Epochs (30 s)") == "4", (alerts, exceptions, metrics)
        assert not problems, problems
    finally:
        stop.set()
        stop_server(proc)
