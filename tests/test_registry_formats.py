"""One reader registry for every input (issue 14.2): each reader path, folder walking and pairing by
layout, one-line refusals, the BIDS events export, and the real slpdb / DREAMS folders."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import s2v_core
from s2v_core.cli.main import main
from s2v_core.cohort.sources import discover_rows, night_sources
from s2v_core.errors import InputFileError
from s2v_core.io.hypnogram.reader import read_hypnogram
from s2v_core.io.wfdb_signals import open_wfdb_signals
from s2v_core.recording.loading import load_night
from s2v_core.recording.pairing import hypnogram_for
from s2v_core.recording.registry import (
    find_recordings,
    load_recording,
    recording_kind,
    recording_labels,
    single_recording,
)
from s2v_core.shipped import shipped_night
from s2v_core.views.exports import bids_events, bids_events_name
from tests.conftest import shared_path, write_tiny_classifier
from tests.format_writers import (
    START,
    montage,
    write_brainvision,
    write_eeglab,
    write_fif,
    write_wfdb_record,
)
from tests.test_dreams import _write_hypnogram, _write_signal

pytestmark = pytest.mark.usefixtures("torch_one_thread")
MAPPED = {"eeg": "C3-A2", "eog": "EOG-L", "emg": "EMG chin", "ecg": "ECG"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier"))


def _sources(night) -> dict[str, str]:
    return {m: p.source for m, p in night.provenance.items() if p.reader != "derived"}


# --- MNE formats ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["night_raw.fif", "night_raw.fif.gz"])
def test_a_fif_file_loads_as_its_raw_does(tmp_path, name):
    import mne

    path = write_fif(tmp_path / name)
    assert recording_kind(path) == "mne"
    night = load_recording(path)
    raw_night = load_night(mne.io.read_raw(path, verbose="error"))
    assert night.meta.night_id == "night_raw" and night.source_file == name
    assert _sources(night) == MAPPED and night.start_time == START
    for m in MAPPED:
        np.testing.assert_array_equal(night.signals[m], raw_night.signals[m])
    assert night.provenance["eeg"].unit_in == "V" and night.provenance["eeg"].unit_scale == 1e6
    assert (night.stages == -1).all() and night.hypnogram_source == ""


def test_stage_annotations_inside_a_file_mne_reads_score_the_night(tmp_path):
    path = write_fif(tmp_path / "scored_raw.fif", minutes=3, stages=True)
    night = load_recording(path)
    assert night.stages.tolist() == [0, 1, 2, 2, 3, 4]
    assert night.hypnogram_source == "scored_raw.fif (annotations)"
    csv = tmp_path / "other.csv"
    csv.write_text("onset,duration,stage\n" + "".join(f"{30 * i},30,N2\n" for i in range(6)))
    assert (load_recording(path, csv).stages == 2).all()  # a given hypnogram wins


def test_brainvision_is_read_from_its_vhdr_and_its_companions_name_it(tmp_path):
    vhdr = write_brainvision(tmp_path / "bv")
    night = load_recording(vhdr)
    assert _sources(night) == MAPPED and night.start_time == START and night.n_epochs == 6
    assert night.provenance["eeg"].original_sfreq == 128 and night.source_file == "bv.vhdr"
    # the samples were written in µV: the loader must not rescale a plausible EEG
    assert 5 < np.nanmedian(np.abs(night.signals["eeg"])) < 100
    for companion in ("bv.eeg", "bv.vmrk"):
        with pytest.raises(InputFileError, match=r"^" + re.escape(companion) + r": is read with its header file: give bv\.vhdr"):
            recording_kind(tmp_path / companion)
    assert recording_labels(vhdr) == tuple(MAPPED.values())


def test_eeglab_set_loads(tmp_path):
    night = s2v_core.load_night(write_eeglab(tmp_path / "night.set"))  # the Python API goes through the registry
    assert _sources(night) == MAPPED and night.n_epochs == 6
    assert any("EEGLAB file gives no start date" in w for w in night.warnings)


def test_a_file_mne_cannot_read_is_one_line(tmp_path):
    bad = tmp_path / "broken_raw.fif"
    bad.write_bytes(b"not a fif file at all" * 10)
    with pytest.raises(InputFileError, match=r"^broken_raw\.fif: MNE cannot read it as FIF: ") as err:
        load_recording(bad)
    assert "\n" not in str(err.value)
    vhdr = write_brainvision(tmp_path / "lost")
    (tmp_path / "lost.eeg").unlink()
    with pytest.raises(InputFileError, match=r"^lost\.vhdr: MNE cannot read it as BrainVision"):
        load_recording(vhdr)


def test_unknown_files_are_refused_naming_what_is_read(tmp_path):
    odd = tmp_path / "night.xyz"
    odd.write_bytes(b"\x00" * 300)
    with pytest.raises(InputFileError, match=r"^night\.xyz: not a recording this tool reads; it reads EDF, EDF\+ "):
        recording_kind(odd)
    psg, _ = shipped_night()
    renamed = tmp_path / "night.data"
    shutil.copy(psg, renamed)
    assert recording_kind(renamed) == "edf"  # an EDF header is recognised whatever the suffix


# --- WFDB signal records ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["16", "212", "80", "24", "32"])
def test_wfdb_signals_decode_as_wfdb_reads_them(tmp_path, fmt):
    import wfdb

    hea = write_wfdb_record(tmp_path, f"r{fmt}", fmt=fmt)
    ref = wfdb.rdrecord(str(hea.with_suffix("")), physical=True)
    with open_wfdb_signals(hea) as rec:
        assert rec.header.labels == ["EEG (C4-A1)", "ECG", "Resp (sum)"]
        assert rec.header.start_time == START
        for i, label in enumerate(rec.header.labels):
            x, fs = rec.read_channel(label)
            assert fs == 128 and x.dtype == np.float32
            np.testing.assert_allclose(x, ref.p_signal[:, i], atol=1e-6 * max(1.0, np.abs(ref.p_signal[:, i]).max()))


def test_big_endian_and_multi_frequency_wfdb_signals(tmp_path):
    import wfdb

    hea = write_wfdb_record(tmp_path, "le", fmt="16")
    be = tmp_path / "be"
    (tmp_path / "be.dat").write_bytes(np.fromfile(tmp_path / "le.dat", "<i2").astype(">i2").tobytes())
    text = hea.read_text().replace("le.dat 16", "be.dat 61").replace("le ", "be ", 1)
    be.with_suffix(".hea").write_text(text)
    with open_wfdb_signals(hea) as a, open_wfdb_signals(be.with_suffix(".hea")) as b:
        np.testing.assert_array_equal(a.read_channel("ECG")[0], b.read_channel("ECG")[0])
    multi = write_wfdb_record(tmp_path, "multi", fmt="16", spf=2)
    ref = wfdb.rdrecord(str(multi.with_suffix("")), physical=True, smooth_frames=False)
    with open_wfdb_signals(multi) as rec:
        x, fs = rec.read_channel("EEG (C4-A1)")
        assert fs == 256 and x.size == ref.e_p_signal[0].size
        np.testing.assert_allclose(x, ref.e_p_signal[0], atol=1e-6)
        assert rec.read_channel("ECG")[1] == 128


def test_a_wfdb_record_with_signals_beats_and_stages_is_one_night(tmp_path):
    hea = write_wfdb_record(tmp_path, "slp99", beats=True, stages=True)
    assert {p.name for p, _ in find_recordings(tmp_path)} == {"slp99.hea"}
    for given in ("slp99.hea", "slp99.dat", "slp99.st", "slp99"):
        assert recording_kind(tmp_path / given) == "wfdb"
    night = load_recording(tmp_path / "slp99.dat")
    assert night.source_file == "slp99.hea" and night.hypnogram_source == "slp99.st"
    assert night.stages.tolist() == [0, 1, 2, 2, 3, 4]
    assert _sources(night) == {"eeg": "EEG (C4-A1)", "ecg": "ECG", "ibi": "beat annotations slp99.ecg",
                               "effort": "Resp (sum)"}  # fmt: skip
    assert night.meta.age == 44 and night.meta.sex == "M" and night.start_time == START
    only_signals = load_recording(hea, modalities=("eeg",))
    assert only_signals.modalities == ("eeg",)
    with pytest.raises(InputFileError, match="own .st stage annotations"):
        load_recording(hea, tmp_path / "x.csv")


def test_wfdb_records_that_cannot_be_read_say_why_in_one_line(tmp_path):
    hea = write_wfdb_record(tmp_path, "cut", fmt="16")
    data = (tmp_path / "cut.dat").read_bytes()
    (tmp_path / "cut.dat").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputFileError, match=r"^cut\.hea: the WFDB header declares \d+ samples \(.*\) but cut\.dat holds .*, not the"):
        load_recording(hea)
    (tmp_path / "alone.dat").write_bytes(b"\x00" * 64)
    with pytest.raises(InputFileError, match=r"^alone\.dat: a \.dat file without its WFDB header"):
        recording_kind(tmp_path / "alone.dat")
    odd = write_wfdb_record(tmp_path, "odd", fmt="16")
    odd.write_text(odd.read_text().replace("odd.dat 16", "odd.dat 310"))
    with pytest.raises(InputFileError, match=r"signal format 310 is not read here"):
        load_recording(odd)


# --- folders, pairing, uploads --------------------------------------------------------------
def test_a_mixed_folder_finds_every_kind_once_and_pairs_each_hypnogram(tmp_path):
    write_fif(tmp_path / "a_raw.fif")
    write_brainvision(tmp_path / "b")
    write_eeglab(tmp_path / "c.set")
    write_wfdb_record(tmp_path, "d", beats=True, stages=True)
    psg, _ = shipped_night()
    shutil.copy(psg, tmp_path / "SC4001E0-PSG.edf")
    (tmp_path / "SC4001EC-Hypnogram.edf").write_bytes(b"0       ")  # found by name, read later
    _write_signal(tmp_path / "excerpt9.txt", np.zeros(100))
    _write_hypnogram(tmp_path / "Hypnogram_excerpt9.txt", [2])
    (tmp_path / "b_events.tsv").write_text("onset\tduration\tstage\n0\t30\tW\n")
    (tmp_path / "notes.txt").write_text("nothing\n")
    found = {p.name: k for p, k in find_recordings(tmp_path)}
    assert found == {"a_raw.fif": "mne", "b.vhdr": "mne", "c.set": "mne", "d.hea": "wfdb",
                     "SC4001E0-PSG.edf": "edf", "excerpt9.txt": "dreams-text"}  # fmt: skip
    rows = {r["night"]: r["hypnogram_file"] for r in discover_rows(tmp_path)}
    assert rows == {"a_raw": None, "b": None, "c": None, "d": None, "SC4001E0-PSG": "SC4001EC-Hypnogram.edf",
                    "excerpt9": "Hypnogram_excerpt9.txt"}  # fmt: skip


@pytest.mark.parametrize(("recording", "files", "expected"), [
    ("excerpt3.edf", ["excerpt3.txt*", "Hypnogram_excerpt3.txt"], "Hypnogram_excerpt3.txt"),
    ("excerpt3.txt*", ["excerpt3.edf", "Hypnogram_excerpt3.txt"], "Hypnogram_excerpt3.txt"),
    ("subject1.edf", ["HypnogramR&K_subject1.txt", "HypnogramAASM_subject1.txt"], "HypnogramAASM_subject1.txt"),
    ("SC4012E0-PSG.edf", ["SC4011EH-Hypnogram.edf", "SC4012EC-Hypnogram.edf"], "SC4012EC-Hypnogram.edf"),
    ("SC4012E0-PSG.edf", ["SC4012EC-Hypnogram.edf", "SC4012EH-Hypnogram.edf"], None),  # two fit: none taken
    ("sub-01_ses-2_task-sleep_eeg.vhdr", ["sub-01_ses-2_task-sleep_events.tsv", "sub-01_ses-1_task-sleep_events.tsv"],
     "sub-01_ses-2_task-sleep_events.tsv"),
    ("shhs1-200001.edf", ["shhs1-200001-profusion.xml", "shhs1-200001-nsrr.xml"], "shhs1-200001-nsrr.xml"),
    ("night.fif.gz", ["night.csv", "night-Hypnogram.edf"], "night-Hypnogram.edf"),
    ("night.edf", ["night_hypnogram.tsv"], "night_hypnogram.tsv"),
])  # fmt: skip
def test_pairing_follows_one_rule_per_layout(tmp_path, recording, files, expected):
    for name in [recording, *files]:
        if name.endswith("*"):  # a DREAMS signal text: never a hypnogram
            _write_signal(tmp_path / name[:-1], np.zeros(10))
        else:
            (tmp_path / name).write_text("x\n")
    found = hypnogram_for(tmp_path / recording.rstrip("*"))
    assert (found.name if found else None) == expected


def test_a_bids_dataset_is_walked_with_its_events_and_participants(tmp_path):
    (tmp_path / "dataset_description.json").write_text('{"Name": "sleep", "BIDSVersion": "1.9.0"}')
    (tmp_path / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t61\tF\nsub-02\tn/a\tM\n")
    one = tmp_path / "sub-01" / "ses-1" / "eeg"
    one.mkdir(parents=True)
    write_brainvision(one / "sub-01_ses-1_task-sleep_eeg")
    (one / "sub-01_ses-1_task-sleep_events.tsv").write_text(
        "onset\tduration\ttrial_type\n" + "".join(f"{30 * i}\t30\tSleep stage N2\n" for i in range(6)))
    two = tmp_path / "sub-02" / "eeg"
    two.mkdir(parents=True)
    write_fif(two / "sub-02_task-sleep_eeg.fif")
    rows = {r["night"]: r for r in discover_rows(tmp_path)}
    assert set(rows) == {"sub-01_ses-1_task-sleep_eeg", "sub-02_task-sleep_eeg"}
    first = rows["sub-01_ses-1_task-sleep_eeg"]
    assert first["subject"] == "sub-01" and first["age"] == 61 and first["sex"] == "F"
    assert first["hypnogram_file"] == "sub-01/ses-1/eeg/sub-01_ses-1_task-sleep_events.tsv"
    assert rows["sub-02_task-sleep_eeg"]["hypnogram_file"] is None
    sources = {s.night_id: s for s in night_sources(tmp_path)}
    assert (sources["sub-01_ses-1_task-sleep_eeg"].load().stages == 2).all()


@pytest.mark.parametrize("argv", [["prepare", "{d}", "--out", "{t}/s"], ["evaluate", "{d}", "--out", "{t}/o"],
                                  ["embed", "{d}", "--out", "{t}/e.parquet"]])  # fmt: skip
def test_a_folder_without_recordings_says_so_in_one_line(tmp_path, capsys, argv):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here\n")
    (empty / "Hypnogram_excerpt1.txt").write_text("[Hypnogram]\n2\n")
    code = main([a.format(d=empty, t=tmp_path) for a in argv] + ["--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert re.search(r"empty: no recording found \(subfolders are searched only in an NSRR or BIDS tree\); "
                     r"this tool reads EDF, EDF\+ and BDF, WFDB records", err), err  # fmt: skip


def test_one_upload_folder_holds_one_recording(tmp_path):
    write_wfdb_record(tmp_path, "rec", beats=True, stages=True)
    assert single_recording(tmp_path) == (tmp_path / "rec.hea", "wfdb")
    write_fif(tmp_path / "other_raw.fif")
    with pytest.raises(InputFileError, match=r"^the files hold 2 recordings \(other_raw\.fif, rec\.hea\); give the files of one"):
        single_recording(tmp_path)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tmp_path / "rec.hea", lone)
    shutil.copy(tmp_path / "rec.st", lone)
    with pytest.raises(InputFileError, match=r"^rec\.hea: a WFDB record needs its \.hea header with its \.dat"):
        single_recording(lone)
    vmrk = tmp_path / "bv"
    vmrk.mkdir()
    write_brainvision(vmrk / "x")
    (vmrk / "x.vhdr").unlink()
    with pytest.raises(InputFileError, match=r"x\.(eeg|vmrk): is read with its header file: give x\.vhdr"):
        single_recording(vmrk)


# --- the command line on each reader path -------------------------------------------------------
def test_info_predict_and_embed_read_every_format(tmp_path, capsys, tiny_model):
    files = [write_fif(tmp_path / "f_raw.fif"), write_brainvision(tmp_path / "b"), write_eeglab(tmp_path / "e.set"),
             write_wfdb_record(tmp_path, "w", beats=True, stages=True)]  # fmt: skip
    for path in files:
        assert main(["info", str(path), "--json"]) == 0, path
        summary = json.loads(capsys.readouterr().out)
        assert summary["n_epochs"] == 6 and summary["source_file"] == path.name
    out = tmp_path / "pred.csv"
    assert main(["predict", str(files[1]), "--model", tiny_model, "--out", str(out), "--bids-out", str(tmp_path / "bids"),
                 "--threads", "1"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "b.vhdr: 6 epochs staged from eeg, eog, emg, ecg, ibi, resp" in printed and "BIDS events:" in printed
    tsv = tmp_path / "bids" / "b_events.tsv"
    assert tsv.is_file() and tsv.with_suffix(".json").is_file()
    assert main(["embed", str(tmp_path), "--model", tiny_model, "--out", str(tmp_path / "e.parquet"), "--quiet",
                 "--threads", "1"]) == 0  # fmt: skip
    assert "4 night(s), 24 epochs" in capsys.readouterr().out


# --- BIDS export ----------------------------------------------------------------------------------
def test_bids_events_round_trip_and_describe_every_column(tmp_path):
    from s2v_core.inference.predict import Prediction

    psg = write_brainvision(tmp_path / "sub-07_task-sleep_eeg")
    hyp = tmp_path / "h.csv"
    labels = ["W", "W", "N1", "N2", "?", "R"]
    hyp.write_text("onset,duration,stage\n" + "".join(f"{30 * i},30,{s}\n" for i, s in enumerate(labels)))
    night = load_recording(psg, hyp, allow_mismatch=True)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=night.n_epochs).astype(np.float32)
    pred = Prediction(stages=probs.argmax(1).astype(np.int8), probabilities=probs, modalities=("eeg",),
                      global_gates={"eeg": 1.0}, epoch_gates=np.ones((night.n_epochs, 1), np.float32),
                      model_id="m-1", coverage=np.ones(night.n_epochs, np.int8))  # fmt: skip
    text, sidecar = bids_events(pred, night)
    name = bids_events_name(night.source_file)
    assert name == "sub-07_task-sleep_events.tsv"
    (tmp_path / name).write_text(text)
    lines = text.splitlines()
    header = lines[0].split("\t")
    assert header[:4] == ["onset", "duration", "trial_type", "stage"] and "expert_stage" in header
    assert set(header) == set(sidecar)  # every column described
    assert lines[1].split("\t")[:2] == ["0.0", "30.0"] and len(lines) == night.n_epochs + 1
    assert "n/a" in text  # the unscored expert epoch
    back = read_hypnogram(tmp_path / name)
    assert back.stages.tolist() == pred.stages.tolist()
    assert sidecar["onset"]["Units"] == "s" and "m-1" in sidecar["trial_type"]["Description"]
    assert set(sidecar["trial_type"]["Levels"]) == {f"Sleep stage {s}" for s in ("W", "N1", "N2", "N3", "R")}
    assert "left out" not in sidecar["trial_type"]["Description"]
    import dataclasses

    _, without = bids_events(dataclasses.replace(pred, left_out=("eog", "emg")), night)
    assert "from eeg (eog, emg left out: unlike the model's training data)" in without["trial_type"]["Description"]


# --- real data (../shared/data) ----------------------------------------------------------------
@pytest.mark.realdata
def test_real_dreams_folder_pairs_each_recording_with_its_hypnogram(tmp_path, capsys, tiny_model):
    dreams = shared_path("dreams")
    rows = {r["night"]: r["hypnogram_file"] for r in discover_rows(dreams)}
    assert rows == {"excerpt1": "Hypnogram_excerpt1.txt", "excerpt2": "Hypnogram_excerpt2.txt",
                    "excerpt3.edf": "Hypnogram_excerpt3.txt", "excerpt3.txt": "Hypnogram_excerpt3.txt",
                    "excerpt4": "Hypnogram_excerpt4.txt"}  # fmt: skip
    assert main(["evaluate", str(dreams), "--model", tiny_model, "--out", str(tmp_path / "ev"), "--n-boot", "10",
                 "--quiet", "--json", "--threads", "1"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_nights"] == 5 and not summary.get("skipped")
    import pandas as pd

    per_night = pd.read_csv(tmp_path / "ev" / "per_night.csv").set_index("night")
    assert per_night.loc["excerpt3.edf", "n_epochs"] == per_night.loc["excerpt3.txt", "n_epochs"] == 60


@pytest.mark.realdata
def test_real_slpdb_folder_reads_the_same_in_prepare_embed_and_info(tmp_path, capsys, tiny_model):
    slpdb = shared_path("slpdb")
    assert len(find_recordings(slpdb)) == 12
    assert main(["embed", str(slpdb), "--model", tiny_model, "--out", str(tmp_path / "e.parquet"), "--quiet",
                 "--threads", "1"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("12 night(s), ")
    assert main(["info", str(slpdb / "slp01a.hea"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hypnogram"] == "slp01a.st" and info["modalities"]["ibi"]["available"]
    assert any("slp01a.dat, not beside it" in w for w in info["warnings"])
    out = tmp_path / "p.csv"
    assert main(["predict", str(slpdb / "slp01a.ecg"), "--model", tiny_model, "--out", str(out), "--bids-out",
                 str(tmp_path / "bids"), "--threads", "1"]) == 0  # fmt: skip
    events = read_hypnogram(tmp_path / "bids" / "slp01a_events.tsv")
    assert events.n_epochs == len(out.read_text().splitlines()) - 1


@pytest.mark.realdata
def test_real_dreams_excerpt3_edf_and_text_hold_the_same_night():
    dreams = shared_path("dreams")
    edf = load_recording(dreams / "excerpt3.edf", dreams / "Hypnogram_excerpt3.txt")
    text = load_recording(dreams / "excerpt3.txt", dreams / "Hypnogram_excerpt3.txt")
    assert edf.n_epochs == text.n_epochs == 60
    assert edf.stages.tolist() == text.stages.tolist()
    assert recording_labels(dreams / "excerpt3.txt") == ("C3-A1",)
    assert "C3-A1" in recording_labels(dreams / "excerpt3.edf")


def test_montage_writers_are_deterministic():
    a, _, _ = montage(1.0)
    b, _, _ = montage(1.0)
    np.testing.assert_array_equal(a, b)
