import pytest

from s2v_core.errors import ChannelMappingError
from s2v_core.recording.channels import classify_label, map_channels, normalise_label


@pytest.mark.parametrize(
    "label, modality",
    [
        ("EEG Fpz-Cz", "eeg"), ("C4-A1", "eeg"), ("C4:M1", "eeg"), ("EEG(sec)", "eeg"), ("EEG", "eeg"),
        ("C3-A1", "eeg"), ("E1-M2", "eog"), ("LOC", "eog"), ("ROC", "eog"), ("EOG1-A1", "eog"),
        ("EOG horizontal", "eog"), ("Chin1-Chin2", "emg"), ("EMG submental", "emg"), ("EMG1", "emg"),
        ("ECG II", "ecg"), ("EKG", "ecg"), ("ECG", "ecg"), ("SaO2", "spo2"), ("SpO2", "spo2"),
        ("SAO2", "spo2"), ("SO2", "spo2"), ("Flow", "airflow"), ("NAF1", "airflow"),
        ("Nasal Pressure", "airflow"), ("Resp oro-nasal", "airflow"), ("Resp (nasal)", "airflow"),
        ("THOR RES", "effort"), ("VTH", "effort"), ("ABDO RES", "effort"), ("VAB", "effort"),
        ("Resp (chest)", "effort"), ("Resp (sum)", "effort"), ("RR", "ibi"),
    ],
)
def test_alias_table_maps_real_labels(label, modality):
    assert classify_label(label)[0][0] == modality


@pytest.mark.parametrize("label", ["PR", "PULSE", "POS", "PHONO", "Leg EMG L", "EMG Left Leg", "Event marker", "Temp rectal", "Light"])
def test_labels_that_are_not_modalities(label):
    mods = [m for m, _, _ in classify_label(label)]
    assert "emg" not in mods and "spo2" not in mods and "eeg" not in mods


def test_normalise_label():
    assert normalise_label(" eeg c4-a1 ") == "EEGC4A1"
    assert normalise_label("Chin1/Chin2") == "CHIN1CHIN2"


def test_central_eeg_preferred_and_deterministic():
    labels = ["EEG Fpz-Cz", "O1-A1", "C3-M2", "C4-M1", "E1-M2", "E2-M2"]
    m = map_channels(labels)
    assert m.channel_for("eeg") == "C4-M1"
    assert m.channel_for("eog") == "E1-M2"
    assert m.choices["eeg"].alternatives == ["C3-M2", "EEG Fpz-Cz", "O1-A1"]
    # order of the file does not change a ranked choice
    assert map_channels(list(reversed(labels))).channel_for("eeg") == "C4-M1"


def test_ties_are_reported():
    m = map_channels(["THOR RES", "Chest"])
    assert m.channel_for("effort") == "THOR RES"
    assert any("effort" in n and "Chest" in n for n in m.notes)


def test_dreams_montage():
    labels = ["O1-A1", "EMG1", "ECG", "NAF1", "VAB", "VTH", "C3-A1", "FP1-A1", "EOG2-A1", "EOG1-A1",
              "POS", "PHONO", "SAO2", "PR", "PULSE", "hypnogram"]
    m = map_channels(labels).as_dict()
    assert m == {"eeg": "C3-A1", "eog": "EOG1-A1", "emg": "EMG1", "ecg": "ECG", "effort": "VTH",
                 "airflow": "NAF1", "spo2": "SAO2"}


def test_overrides():
    labels = ["C4-M1", "C3-M2", "E1-M2"]
    m = map_channels(labels, {"eeg": "C3-M2", "eog": None})
    assert m.channel_for("eeg") == "C3-M2" and m.choices["eeg"].rank == -1
    assert m.channel_for("eog") is None
    with pytest.raises(ChannelMappingError, match="no such channel"):
        map_channels(labels, {"eeg": "Cz"})
    with pytest.raises(ChannelMappingError, match="unknown modality"):
        map_channels(labels, {"brain": "C4-M1"})


def test_one_channel_serves_one_modality():
    m = map_channels(["ECG"], {"eeg": "ECG"})
    assert m.channel_for("eeg") == "ECG" and m.channel_for("ecg") is None
