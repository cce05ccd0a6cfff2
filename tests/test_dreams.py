"""DREAMS single-channel text excerpts: reader, rate inference, canonical night, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2v_core.errors import ChannelMappingError, HypnogramError, InputFileError
from s2v_core.io.dreams import infer_sfreq, read_dreams_signal
from s2v_core.recording.dreams import load_dreams_night
from s2v_core.recording.loading import load_night
from tests.conftest import shared_path


def _write_signal(path: Path, x: np.ndarray, label: str = "C3-A1") -> Path:
    path.write_text(f"[{label}]\n" + "\n".join(f"{v:10.4f}" for v in x) + "\n")
    return path


def _write_hypnogram(path: Path, codes: list[int]) -> Path:
    path.write_text("[Hypnogram]\n" + "\n".join(str(c) for c in codes) + "\n")
    return path


def _eeg(seconds: float, fs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    return 30 * np.sin(2 * np.pi * 10 * t) + rng.normal(0, 10, t.size)


def test_read_signal_label_and_samples(tmp_path):
    x = _eeg(2, 50)
    rec = read_dreams_signal(_write_signal(tmp_path / "excerptX.txt", x, "CZ-A1"))
    assert rec.label == "CZ-A1" and rec.n_samples == 100
    np.testing.assert_allclose(rec.data, np.round(x, 4), atol=1e-9)


def test_night_rate_from_hypnogram_and_majority_stages(tmp_path):
    fs = 100
    sig = _write_signal(tmp_path / "excerptX.txt", _eeg(90, fs))
    # three 30-s epochs: W W W S2 S2 S2 (tie -> earliest, W); S4 x4 + REM x2 (N3); six unscored
    codes = [5, 5, 5, 2, 2, 2, 0, 0, 1, 1, 4, 4, -1, -1, -1, -1, -1, -1]
    night = load_dreams_night(sig, _write_hypnogram(tmp_path / "Hypnogram_excerptX.txt", codes))
    assert night.modalities == ("eeg",) and night.n_epochs == 3
    assert night.stages.tolist() == [0, 3, -1]
    assert night.signals["eeg"].shape == (3, 128 * 30)
    prov = night.provenance["eeg"]
    assert prov.original_sfreq == fs and prov.source == "C3-A1" and "100 -> 128" in prov.method
    # resampled, the 10-Hz sine keeps its amplitude (about 30 µV) and its frequency
    e = night.signals["eeg"][1]
    spec = np.abs(np.fft.rfft(e - e.mean()))
    assert abs(np.fft.rfftfreq(e.size, 1 / 128)[spec.argmax()] - 10) < 0.1
    assert night.epoch_valid["eeg"].all() and night.meta.night_id == "excerptX"


def test_night_with_explicit_rate_and_no_hypnogram(tmp_path):
    sig = _write_signal(tmp_path / "e.txt", _eeg(65, 200))
    night = load_dreams_night(sig, sfreq=200)
    assert night.n_epochs == 2 and (night.stages == -1).all()  # partial last epoch dropped
    with pytest.raises(InputFileError, match=r"e\.txt: the file has no sampling rate"):
        load_dreams_night(sig)


def test_modality_from_label_or_given(tmp_path):
    sig = _write_signal(tmp_path / "x.txt", _eeg(30, 100), label="Channel 7")
    with pytest.raises(ChannelMappingError, match=r"'Channel 7' maps to no modality"):
        load_dreams_night(sig, sfreq=100)
    assert load_dreams_night(sig, sfreq=100, modality="eog").modalities == ("eog",)
    with pytest.raises(ChannelMappingError, match="unknown modality 'brain'"):
        load_dreams_night(sig, sfreq=100, modality="brain")
    with pytest.raises(ChannelMappingError, match="not one"):
        load_dreams_night(sig, sfreq=100, modality="spo2")


def test_infer_sfreq():
    assert infer_sfreq(90_000, 1800.0) == 50
    assert infer_sfreq(180_010, 1800.0) == 100  # within 0.5 %
    with pytest.raises(InputFileError, match="not a whole number of Hz"):
        infer_sfreq(123_456, 1800.0)
    with pytest.raises(InputFileError, match="empty"):
        infer_sfreq(0, 1800.0)


def test_hypnogram_span_must_fit(tmp_path):
    sig = _write_signal(tmp_path / "e.txt", _eeg(60, 100))
    hyp = _write_hypnogram(tmp_path / "h.txt", [2] * 6 * 6)  # 180 s of scoring for 60 s
    with pytest.raises(HypnogramError):
        load_dreams_night(sig, hyp, sfreq=100)
    night = load_dreams_night(sig, hyp, sfreq=100, allow_mismatch=True)
    assert night.stages.tolist() == [2, 2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("C3-A1\n1.0\n", r"line 1: 'C3-A1' is not a '\[LABEL\]' line"),
        ("[]\n1.0\n", "is not a '\\[LABEL\\]' line"),
        ("[C3-A1]\n", r"no sample after the label line '\[C3-A1\]'"),
        ("[C3-A1]\n1.0\n2,5\n3.0\n", r"line 3: '2,5' is not one number"),
        ("[C3-A1]\n1.0\n\n1 2\n", r"line 4: '1 2' is not one number"),
        ("[C3-A1]\n1.0\ninf\n", "line 3: infinite sample value"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad_excerpt.txt"
    path.write_text(content)
    with pytest.raises(InputFileError, match=message) as err:
        read_dreams_signal(path)
    assert str(err.value).startswith("bad_excerpt.txt: ")


def test_missing_binary_and_short(tmp_path):
    with pytest.raises(InputFileError, match="nope.txt: cannot read the file"):
        read_dreams_signal(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"[C3]\n\xff\xfe\x00\x01")
    with pytest.raises(InputFileError, match="not a text file"):
        read_dreams_signal(tmp_path / "bin.txt")
    with pytest.raises(InputFileError, match="shorter than one 30-s epoch"):
        load_dreams_night(_write_signal(tmp_path / "s.txt", _eeg(20, 100)), sfreq=100)


@pytest.mark.realdata
def test_excerpt3_text_matches_the_edf_channel():
    """excerpt3.txt is the C3-A1 channel of excerpt3.edf: same canonical signal and stages."""
    txt = shared_path("dreams", "excerpt3.txt")
    edf = shared_path("dreams", "excerpt3.edf")
    hyp = shared_path("dreams", "Hypnogram_excerpt3.txt")
    a = load_dreams_night(txt, hyp)
    b = load_night(edf, hyp, modalities=("eeg",), mapping={"eeg": "C3-A1"})
    assert a.provenance["eeg"].original_sfreq == 50 and a.n_epochs == b.n_epochs == 60
    assert a.stages.tolist() == b.stages.tolist()
    x, y = a.signals["eeg"].ravel(), b.signals["eeg"].ravel()
    assert np.corrcoef(x, y)[0, 1] > 0.999
    assert np.median(np.abs(x - y)) < 0.01 * np.median(np.abs(y))
