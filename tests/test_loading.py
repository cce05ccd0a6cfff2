"""File -> canonical night: mapping, units, rates, derivations, stages, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s2v_core.cli.main import main
from s2v_core.errors import ChannelMappingError, HypnogramError, InputFileError
from s2v_core.modalities import MODALITIES, samples_per_epoch
from s2v_core.night import Night
from s2v_core.recording.loading import load_night, resolve_biopotential_unit
from tests.conftest import shared_path
from tests.edf_factory import psg_channels, write_edf


@pytest.fixture(scope="module")
def psg(tmp_path_factory):
    d = tmp_path_factory.mktemp("psg")
    ann = [(0, 60, "Sleep stage W"), (60, 90, "Sleep stage 2"), (150, 30, "Sleep stage R"),
           (180, 120, "Sleep stage 3"), (200, 20, "Obstructive apnea")]
    return write_edf(d / "night.edf", psg_channels(minutes=10), annotations=ann)


def test_canonical_shapes_rates_and_provenance(psg):
    night = load_night(psg)
    assert night.n_epochs == 20
    assert night.modalities == MODALITIES  # seven channels + ibi and resp derived
    for m, x in night.signals.items():
        assert x.shape == (20, samples_per_epoch(m)) and x.dtype == np.float32
    assert night.provenance["eeg"].source == "EEG C4-M1"
    assert night.provenance["eeg"].original_sfreq == 256
    assert "256 -> 128" in night.provenance["eeg"].method
    assert night.provenance["ibi"].reader == "derived" and "ECG II" in night.provenance["ibi"].source
    assert "THOR RES" in night.provenance["resp"].source
    # 62 bpm synthetic ECG -> IBI ~0.968 s
    ibi = night.signals["ibi"][night.epoch_valid["ibi"]]
    assert abs(np.nanmedian(ibi) - 60 / 62) < 0.02
    assert abs(np.nanmedian(night.signals["spo2"]) - 96) < 0.5
    # 10 Hz EEG sine survives resampling: dominant frequency stays at 10 Hz
    spec = np.abs(np.fft.rfft(night.signals["eeg"][3]))
    assert abs(np.argmax(spec[1:]) + 1 - 10 * 30) <= 1


def test_stages_from_edf_annotations(psg):
    night = load_night(psg)
    expected = [0, 0, 2, 2, 2, 4, 3, 3, 3, 3] + [-1] * 10
    assert night.stages.tolist() == expected
    assert night.stage_counts() == {"W": 2, "N1": 0, "N2": 3, "N3": 4, "REM": 1, "unscored": 10}


def test_subset_and_overrides(psg):
    night = load_night(psg, modalities=("eeg", "ibi"))
    assert night.modalities == ("eeg", "ibi")
    night = load_night(psg, mapping={"eeg": None, "spo2": None})
    assert "eeg" not in night.signals and "spo2" not in night.signals
    with pytest.raises(ChannelMappingError, match="no such channel"):
        load_night(psg, mapping={"eeg": "Fpz"})


def test_unit_confusion_volts_detected(tmp_path):
    ch = psg_channels(minutes=2)
    x, fs, _ = ch["EEG C4-M1"]
    ch["EEG C4-M1"] = (x * 1e-6, fs, "uV")  # values are volts but the header says uV
    night = load_night(write_edf(tmp_path / "v.edf", ch))
    assert night.provenance["eeg"].unit_scale == 1e6
    assert any("read as V" in w for w in night.warnings)
    assert 5 < np.nanstd(night.signals["eeg"]) < 100


def test_resolve_unit_keeps_plausible_declared():
    x = np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 30
    assert resolve_biopotential_unit("eeg", x, "uV") == (1.0, [])
    scale, w = resolve_biopotential_unit("eeg", x / 1000, "mV")
    assert scale == 1e3 and w == []


def test_no_usable_channel(tmp_path):
    p = write_edf(tmp_path / "odd.edf", {"Light": (np.ones(60) * 3 + np.arange(60) % 2, 1, ""),
                                        "Position": (np.arange(60.0) % 4, 1, "")})
    with pytest.raises(ChannelMappingError, match="odd.edf: no channel could be mapped"):
        load_night(p)


def test_shorter_than_one_epoch(tmp_path):
    p = write_edf(tmp_path / "tiny.edf", {"C4-M1": (np.sin(np.arange(256 * 20)), 256, "uV")})
    with pytest.raises(InputFileError, match="shorter than one 30-s epoch"):
        load_night(p)


def test_flat_channel_is_not_available(tmp_path):
    ch = psg_channels(minutes=2)
    ch["E1-M2"] = (np.zeros(256 * 120), 256, "uV")
    night = load_night(write_edf(tmp_path / "flat.edf", ch))
    assert "eog" not in night.modalities
    assert any("eog" in w for w in night.warnings)


def test_hypnogram_length_mismatch(psg, tmp_path):
    hyp = tmp_path / "long.csv"
    hyp.write_text("stage\n" + "\n".join(["N2"] * 40))
    with pytest.raises(HypnogramError, match="long.csv"):
        load_night(psg, hyp)
    night = load_night(psg, hyp, allow_mismatch=True)
    assert night.n_epochs == 20 and (night.stages == 2).all()
    assert any("hypnogram" in w for w in night.warnings)


def test_save_load_roundtrip(psg, tmp_path):
    night = load_night(psg)
    night.save(tmp_path / "n")
    back = Night.load(tmp_path / "n")
    assert back.modalities == night.modalities
    np.testing.assert_array_equal(back.stages, night.stages)
    for m in night.signals:
        np.testing.assert_array_equal(back.signals[m], night.signals[m])
    assert back.provenance["eeg"] == night.provenance["eeg"]


def test_model_inputs_are_robustly_scaled(psg):
    inputs, valid = load_night(psg).model_inputs()
    for m, x in inputs.items():
        assert np.isfinite(x).all()
        v = x[valid[m]]
        assert abs(np.median(v)) < 0.05, m


def test_cli_info_json(psg, capsys):
    assert main(["info", str(psg), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_epochs"] == 20 and out["modalities"]["eeg"]["source"] == "EEG C4-M1"
    assert out["available"] == list(MODALITIES)


def test_cli_bad_file_is_one_clear_line(tmp_path, capsys):
    p = tmp_path / "notes.edf"
    p.write_text("this is not a recording\n" * 30)
    assert main(["info", str(p)]) == 2
    err = capsys.readouterr().err
    assert "notes.edf: not an EDF/BDF file" in err and "Traceback" not in err


@pytest.mark.realdata
def test_dreams_excerpt3_info(capsys):
    edf = shared_path("dreams", "excerpt3.edf")
    assert main(["info", str(edf), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    mods = out["modalities"]
    for m in ("eeg", "eog", "emg", "ecg", "airflow", "effort", "ibi", "resp"):
        assert mods[m]["available"], m
    assert mods["eeg"]["source"] == "C3-A1" and mods["airflow"]["source"] == "NAF1"
    assert mods["ibi"]["source"].startswith("derived from ECG")
    assert mods["resp"]["source"].startswith("derived from effort")
    assert mods["eeg"]["original_sfreq"] == 50
    assert out["n_epochs"] == 60
    spo2_warn = " ".join(mods["spo2"]["warnings"]).lower()
    assert "spo2" in spo2_warn and "implausible" in spo2_warn
    assert any("pyedflib refused" in w for w in out["warnings"])
    assert "1957" not in json.dumps(out)  # birth date in the header is never exported


@pytest.mark.realdata
def test_dreams_excerpt3_with_hypnogram():
    edf = shared_path("dreams", "excerpt3.edf")
    hyp = shared_path("dreams", "Hypnogram_excerpt3.txt")
    night = load_night(edf, hyp)
    assert night.n_epochs == 60 and (night.stages >= 0).sum() > 50


@pytest.mark.realdata
def test_slpdb_night_has_ibi_age_sex_and_stages():
    st = shared_path("slpdb", "slp01a.st")
    night = load_night(st.with_suffix(".ecg"))
    assert night.modalities == ("ibi",)
    assert night.meta.age == 44 and night.meta.sex == "M"
    assert night.n_epochs == 240  # 1,800,000 samples at 250 Hz = 2 h
    import wfdb

    ann = wfdb.rdann(str(st.with_suffix("")), "st")
    first = [a.split()[0] for a in ann.aux_note]
    assert (night.stages == 2).sum() == first.count("2")
    assert (night.stages == 3).sum() == first.count("3") + first.count("4")
    assert (night.stages == 4).sum() == first.count("R")


def test_with_hypnogram_equals_loading_with_it(tmp_path):
    """The app reads an upload's signals once and re-scores them when a hypnogram arrives."""
    from s2v_core.recording.loading import with_hypnogram
    from s2v_core.synth.cohort import generate_cohort

    frame = generate_cohort(1, tmp_path / "c", seed=5, hours=0.5, sites=["eu_clinic"])
    psg = tmp_path / "c" / frame.iloc[0]["psg_file"]
    hyp = tmp_path / "c" / frame.iloc[0]["hypnogram_file"]
    bare = load_night(psg, None)
    both = load_night(psg, hyp)
    scored = with_hypnogram(bare, hyp)
    np.testing.assert_array_equal(scored.stages, both.stages)
    assert scored.hypnogram_source == both.hypnogram_source == hyp.name
    assert scored.signals["eeg"] is bare.signals["eeg"]  # shared, not read again
    assert bare.hypnogram_source != hyp.name or (bare.stages == both.stages).all()  # input untouched


def test_threaded_channel_reading_equals_serial(tmp_path, monkeypatch):
    from s2v_core.recording import loading
    from s2v_core.synth.cohort import generate_cohort

    frame = generate_cohort(1, tmp_path / "c", seed=9, hours=0.5, sites=["us_hospital"])
    psg = tmp_path / "c" / frame.iloc[0]["psg_file"]
    threaded = load_night(psg)
    monkeypatch.setattr(loading, "READ_THREADS", 1)
    serial = load_night(psg)
    assert threaded.modalities == serial.modalities and len(threaded.modalities) == 9
    for m in serial.modalities:
        np.testing.assert_array_equal(threaded.signals[m], serial.signals[m])
        np.testing.assert_array_equal(threaded.epoch_valid[m], serial.epoch_valid[m])
        assert threaded.provenance[m] == serial.provenance[m]
    assert threaded.warnings == serial.warnings
