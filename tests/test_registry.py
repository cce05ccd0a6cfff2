"""One reader for every recording kind (s2v_core.recording.registry) and folders of mixed kinds."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from s2v_core.cli.main import main
from s2v_core.cohort.sources import discover_rows, night_sources
from s2v_core.errors import InputFileError, S2VError
from s2v_core.night import NightMeta
from s2v_core.recording.registry import is_dreams_text, load_recording, recording_kind
from s2v_core.shipped import shipped_night
from tests.conftest import shared_path
from tests.test_dreams import _write_hypnogram, _write_signal


def _excerpt(folder, name="excerptX", sfreq=100, minutes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 20, int(sfreq * 60 * minutes))
    sig = _write_signal(folder / f"{name}.txt", x, "C3-A1")
    hyp = _write_hypnogram(folder / f"Hypnogram_{name}.txt", [2] * (12 * minutes))
    return sig, hyp


def test_kinds_are_recognised(tmp_path):
    sig, hyp = _excerpt(tmp_path)
    psg, _ = shipped_night()
    assert recording_kind(sig) == "dreams-text" and is_dreams_text(sig)
    assert not is_dreams_text(hyp)  # "[Hypnogram]" is not a channel
    assert recording_kind(psg) == "edf"
    assert recording_kind(tmp_path / "rec.ecg") == "wfdb"
    (tmp_path / "notes.txt").write_text("hello\n1\n2\n")
    with pytest.raises(InputFileError, match="not a DREAMS excerpt"):
        recording_kind(tmp_path / "notes.txt")
    with pytest.raises(InputFileError, match="is a folder"):
        recording_kind(tmp_path)
    with pytest.raises(InputFileError, match="file not found"):
        recording_kind(tmp_path / "missing.edf")


def test_a_dreams_excerpt_loads_with_the_rate_from_its_hypnogram_or_given(tmp_path):
    sig, hyp = _excerpt(tmp_path, sfreq=100)
    night = load_recording(sig, hyp)
    assert night.modalities == ("eeg",) and night.n_epochs == 6
    assert night.provenance["eeg"].original_sfreq == 100
    again = load_recording(sig, sfreq=100)
    assert again.n_epochs == 6 and (again.stages == -1).all()
    with pytest.raises(S2VError, match="sfreq"):
        load_recording(sig)
    with pytest.raises(InputFileError, match="sfreq applies to DREAMS text excerpts only"):
        load_recording(shipped_night()[0], sfreq=100)


def test_predict_and_info_accept_a_dreams_excerpt(tmp_path, capsys):
    sig, hyp = _excerpt(tmp_path)
    assert main(["info", str(sig), "--sfreq", "100", "--json"]) == 0
    assert '"n_epochs": 6' in capsys.readouterr().out
    out = tmp_path / "pred.csv"
    assert main(["predict", str(sig), "--hypnogram", str(hyp), "--out", str(out)]) == 0
    assert out.is_file() and "6 epochs staged from eeg" in capsys.readouterr().out


def test_a_wfdb_record_refuses_another_hypnogram(tmp_path):
    with pytest.raises(InputFileError, match="own .st stage annotations"):
        load_recording(tmp_path / "rec.ecg", tmp_path / "h.csv")


def test_a_folder_with_the_same_recording_as_edf_and_text_keeps_both_and_pairs_hypnograms(tmp_path):
    """The DREAMS layout: excerpt3.edf and excerpt3.txt are one night; Hypnogram_excerpt3.txt is
    the hypnogram of both, and the text file of samples is never taken as a hypnogram."""
    psg, _ = shipped_night()
    shutil.copy(psg, tmp_path / "excerpt3.edf")
    _excerpt(tmp_path, "excerpt3", minutes=60)
    _excerpt(tmp_path, "excerpt1", seed=1)
    rows = {r["night"]: r for r in discover_rows(tmp_path)}
    assert set(rows) == {"excerpt1", "excerpt3.edf", "excerpt3.txt"}
    assert rows["excerpt3.edf"]["hypnogram_file"] == "Hypnogram_excerpt3.txt"
    assert rows["excerpt3.txt"]["hypnogram_file"] == "Hypnogram_excerpt3.txt"
    assert rows["excerpt1"]["hypnogram_file"] == "Hypnogram_excerpt1.txt"
    sources = night_sources(tmp_path)
    assert [s.night_id for s in sources] == ["excerpt1", "excerpt3.edf", "excerpt3.txt"]
    assert sources[0].load().n_epochs == 6


def test_night_sources_refuses_options_that_do_not_apply(tmp_path):
    _excerpt(tmp_path)
    with pytest.raises(S2VError, match="apply to a single recording"):
        night_sources(tmp_path, sfreq=100)
    with pytest.raises(S2VError, match="--split needs a cohort store"):
        night_sources(tmp_path, "test")
    with pytest.raises(S2VError, match="no such store, folder or recording"):
        night_sources(tmp_path / "missing")


@pytest.mark.realdata
def test_the_real_slpdb_and_dreams_folders_prepare_into_one_store(tmp_path):
    slpdb, dreams = shared_path("slpdb"), shared_path("dreams")
    if not (slpdb.is_dir() and dreams.is_dir()):
        pytest.skip("../shared/data not here")
    assert main(["prepare", str(slpdb), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert main(["prepare", str(dreams), "--out", str(tmp_path / "s"), "--quiet"]) == 0
    import pandas as pd

    m = pd.read_csv(tmp_path / "s" / "manifest.csv").set_index("night")
    assert m.loc["slp01a", "subject"] == m.loc["slp01b", "subject"] == "slp01"  # from the WFDB header
    assert m.loc["slp01a", "sex"] == "M" and m.loc["slp01a", "age"] == 44
    assert {"excerpt1", "excerpt3.edf", "excerpt3.txt"} <= set(m.index)
    assert m.loc["excerpt1", "modalities"] == "eeg" and m.loc["excerpt1", "n_epochs"] == 60


def test_meta_given_to_a_wfdb_record_keeps_what_the_header_adds(tmp_path):
    slpdb = shared_path("slpdb")
    if not (slpdb / "slp01a.ecg").is_file():
        pytest.skip("../shared/data not here")
    night = load_recording(slpdb / "slp01a.ecg", meta=NightMeta(night_id="x", site="lab"))
    assert night.meta.site == "lab" and night.meta.subject == "slp01" and night.meta.sex == "M"
