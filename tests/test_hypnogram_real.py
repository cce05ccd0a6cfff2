"""Hypnogram readers on the real files in ../shared/data, checked against independent readers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from s2v_core.io.hypnogram import read_hypnogram, trim_to_sleep_period
from tests.conftest import shared_path

pytestmark = pytest.mark.realdata

SLPDB = [
    "slp01a",
    "slp01b",
    "slp02a",
    "slp02b",
    "slp04",
    "slp14",
    "slp32",
    "slp37",
    "slp48",
    "slp59",
    "slp60",
    "slp67x",
]
SLEEP_EDF = [
    "SC4001EC",
    "SC4002EC",
    "SC4011EH",
    "SC4012EC",
    "SC4021EH",
    "SC4022EJ",
    "SC4031EC",
    "SC4032EP",
    "SC4041EC",
    "SC4042EC",
    "SC4051EC",
    "SC4052EC",
    "SC4061EC",
    "SC4062EC",
    "SC4071EC",
    "SC4072EH",
    "SC4081EC",
    "SC4082EP",
    "SC4091EC",
    "SC4092EC",
]
# first token of a slpdb aux note -> stage name (R&K 3 and 4 merge into N3; MT/M unscored)
SLPDB_STAGE = {
    "W": "W",
    "1": "N1",
    "2": "N2",
    "3": "N3",
    "4": "N3",
    "R": "REM",
    "MT": "unscored",
    "M": "unscored",
}
SLEEP_EDF_STAGE = {
    "Sleep stage W": "W",
    "Sleep stage 1": "N1",
    "Sleep stage 2": "N2",
    "Sleep stage 3": "N3",
    "Sleep stage 4": "N3",
    "Sleep stage R": "REM",
    "Sleep stage ?": "unscored",
    "Movement time": "unscored",
}


@pytest.mark.parametrize("record", SLPDB)
def test_slpdb_counts_match_wfdb_aux_notes(record):
    import wfdb

    path = shared_path("slpdb", f"{record}.st")
    ann = wfdb.rdann(str(path.with_suffix("")), "st")
    samples_per_epoch = 30 * int(ann.fs)
    epochs = np.asarray(ann.sample) // samples_per_epoch  # first annotation at sample 1
    assert np.all(np.diff(epochs) == 1)  # one annotation per epoch, contiguous
    leading = int(epochs[0])
    expected = Counter(SLPDB_STAGE[note.split()[0]] for note in ann.aux_note)
    expected["unscored"] += leading  # epochs before the first annotation are unscored
    hyp = read_hypnogram(path)
    assert hyp.format == "wfdb"
    assert hyp.n_epochs == len(ann.sample) + leading
    assert hyp.counts() == {
        k: expected.get(k, 0) for k in ("W", "N1", "N2", "N3", "REM", "unscored")
    }
    n_events = sum(len(note.split()) - 1 for note in ann.aux_note)
    assert len(hyp.events) == n_events
    header = (path.with_suffix(".hea")).read_text().split()
    n_signal_epochs = int(header[3]) // samples_per_epoch
    assert hyp.aligned(n_signal_epochs, tolerance_epochs=0).n_epochs == n_signal_epochs


def test_slpdb_first_record_exact():
    hyp = read_hypnogram(shared_path("slpdb", "slp01a.st"))
    assert hyp.n_epochs == 240
    assert hyp.counts() == {"W": 7, "N1": 1, "N2": 105, "N3": 113, "REM": 13, "unscored": 1}


@pytest.mark.parametrize("record", SLEEP_EDF)
def test_sleep_edf_matches_mne_annotations(record):
    import mne

    path = shared_path("sleep-edf", f"{record}-Hypnogram.edf")
    ann = mne.read_annotations(path)
    onset, duration = np.asarray(ann.onset), np.asarray(ann.duration)
    assert np.allclose(onset[1:], onset[:-1] + duration[:-1])  # contiguous, starts at 0
    expected = Counter()
    for label, seconds in zip(ann.description, duration, strict=True):
        expected[SLEEP_EDF_STAGE[label]] += int(round(seconds / 30))
    hyp = read_hypnogram(path)
    assert hyp.format == "sleep-edf" and hyp.warnings == []
    assert hyp.n_epochs == round(duration.sum() / 30)
    assert hyp.counts() == {
        k: expected.get(k, 0) for k in ("W", "N1", "N2", "N3", "REM", "unscored")
    }
    night, first = trim_to_sleep_period(hyp, pad_minutes=30)
    sleep = np.flatnonzero(hyp.stages > 0)
    assert (
        first == max(0, sleep[0] - 60)
        and night.n_epochs == min(hyp.n_epochs, sleep[-1] + 61) - first
    )
    assert {k: night.counts()[k] for k in ("N1", "N2", "N3", "REM")} == {
        k: hyp.counts()[k] for k in ("N1", "N2", "N3", "REM")
    }


@pytest.mark.parametrize("excerpt", [1, 2, 3, 4])
def test_dreams_excerpts_majority_of_six(excerpt):
    path = shared_path("dreams", f"Hypnogram_excerpt{excerpt}.txt")
    codes = np.array([int(x) for x in path.read_text().split()[1:]])
    assert codes.size == 360
    table = {5: 0, 4: 4, 3: 1, 2: 2, 1: 3, 0: 3}
    expected = []
    for six in codes.reshape(-1, 6):  # independent majority: most common, earliest on ties
        stages = [table[c] for c in six if c >= 0]
        if len(stages) < 3:
            expected.append(-1)
            continue
        counts = Counter(stages)
        best = max(counts.values())
        expected.append(next(s for s in stages if counts[s] == best))
    hyp = read_hypnogram(path)
    assert hyp.format == "dreams" and hyp.n_epochs == codes.size // 6 == 60
    assert hyp.stages.tolist() == expected
