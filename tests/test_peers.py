"""Peers side by side (issue 14, point 3): ``s2v predict FILE --compare yasa,sleepecg``.

YASA and sleepecg run on the same 30-s epochs as our model; their stages go into the CSV and the
JSON, with kappa, accuracy and the epochs compared for every pair among ours, each peer and the
expert. A peer that does not apply says why (JSON ``refused``, a warning on stderr, no CSV column).
Real recordings in ../shared/data are used when present (skipped otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from s2v_core.cli.main import main
from s2v_core.errors import S2VError
from s2v_core.evaluation import peers as peers_mod
from s2v_core.evaluation.peers import (
    EXPERT,
    OURS,
    PEERS,
    PeerComparison,
    PeerResult,
    agreement_pairs,
    compare_with_peers,
    parse_peers,
    peer_labels,
    run_sleepecg,
    run_yasa,
)
from s2v_core.io.hypnogram.reader import read_hypnogram
from s2v_core.recording.registry import load_recording
from s2v_core.sanitize.cells import read_csv
from s2v_core.views.peers import (
    agreement_table,
    kappa_matrix_figure,
    peer_columns,
    peer_status_table,
    peers_hypnogram_figure,
    with_peer_columns,
)
from tests.conftest import shared_path, write_tiny_classifier
from tests.edf_factory import psg_channels, write_edf

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 10  # 20 epochs
STAGE_CYCLE = ("Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage 2", "Sleep stage R")


def run_cli(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _annotations(n_epochs: int) -> list[tuple[float, float, str]]:
    return [(30.0 * i, 30.0, STAGE_CYCLE[(i // 3) % len(STAGE_CYCLE)]) for i in range(n_epochs)]


def _resampled(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    t_out = np.arange(int(len(x) * fs_out / fs_in)) / fs_out
    return np.interp(t_out, np.arange(len(x)) / fs_in, x)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier")


@pytest.fixture(scope="module")
def psg(tmp_path_factory) -> Path:
    """10 min of PSG, with stage annotations: EEG/EOG at 256 Hz, EMG at 200 Hz, ECG at 256 Hz."""
    ch = psg_channels(minutes=MINUTES)
    emg, _, dim = ch["Chin1-Chin2"]
    ch["Chin1-Chin2"] = (_resampled(emg, 256, 200), 200, dim)
    return write_edf(tmp_path_factory.mktemp("psg") / "night.edf", ch, annotations=_annotations(MINUTES * 2))


@pytest.fixture(scope="module")
def slow_eeg(tmp_path_factory) -> Path:
    """The same night with its EEG at 64 Hz (YASA refuses) and no ECG (sleepecg does not apply)."""
    ch = psg_channels(minutes=MINUTES)
    eeg, _, dim = ch["EEG C4-M1"]
    ch["EEG C4-M1"] = (_resampled(eeg, 256, 64), 64, dim)
    del ch["ECG II"]
    return write_edf(tmp_path_factory.mktemp("slow") / "slow.edf", ch, annotations=_annotations(MINUTES * 2))


@pytest.fixture(scope="module")
def compared(psg, tiny_model, tmp_path_factory) -> dict:
    """``s2v predict psg --compare yasa,sleepecg --json`` once: exit code, JSON, stderr, CSV path."""
    out = tmp_path_factory.mktemp("out") / "pred.csv"
    code, stdout, stderr = run_cli(["predict", psg, "--model", tiny_model, "--out", out, "--json",
                                    "--compare", "yasa,sleepecg", "--threads", "1"])  # fmt: skip
    assert code == 0, stderr
    return {"summary": json.loads(stdout), "stderr": stderr, "csv": out}


# --- the option -----------------------------------------------------------------------------
def test_parse_peers_accepts_known_names_once_and_refuses_others():
    assert parse_peers("yasa,sleepecg") == ("yasa", "sleepecg")
    assert parse_peers(" SleepECG , yasa,sleepecg") == ("sleepecg", "yasa")
    assert parse_peers(None) == ()
    with pytest.raises(S2VError, match="unknown peer 'usleep'.*known: yasa, sleepecg"):
        parse_peers("yasa,usleep")
    with pytest.raises(S2VError, match="--compare is empty"):
        parse_peers(" , ")


def test_unknown_peer_is_one_line_before_anything_is_read(tmp_path):
    code, out, err = run_cli(["predict", tmp_path / "missing.edf", "--out", tmp_path / "o.csv", "--compare", "yasa,zzz"])
    assert code == 2 and out == "" and not (tmp_path / "o.csv").exists()
    assert err.count("\n") == 1 and "unknown peer 'zzz'" in err and "Traceback" not in err


def test_help_lists_every_peer(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--compare PEERS" in text and all(name in text for name in PEERS)


# --- agreement of every pair ----------------------------------------------------------------
def test_agreement_pairs_are_kappa_and_accuracy_on_epochs_both_scored():
    ours = np.array([0, 1, 2, 2, 3, 4, 4, 2, 0, 2])
    peer = np.array([0, 2, 2, 2, 3, 4, 0, 2, -1, 3])
    expert = np.array([0, 1, 2, 3, 3, 4, 4, -1, 0, 2])
    pairs = agreement_pairs({OURS: (ours, 5), "yasa": (peer, 5), EXPERT: (expert, 5)})
    assert [(p["a"], p["b"]) for p in pairs] == [(OURS, "yasa"), (OURS, EXPERT), ("yasa", EXPERT)]
    for p, (a, b) in zip(pairs, [(ours, peer), (ours, expert), (peer, expert)], strict=True):
        both = (a >= 0) & (b >= 0)
        assert p["n_classes"] == 5 and p["n_epochs"] == int(both.sum())
        assert p["accuracy"] == pytest.approx(np.mean(a[both] == b[both]))
        assert p["kappa"] == pytest.approx(cohen_kappa_score(a[both], b[both]))


def test_a_three_class_peer_is_compared_after_merging_both_sides():
    ours = np.array([0, 1, 2, 3, 4, 4, 1, 0])
    ours3 = np.array([0, 2, 2, 2, 4, 2, 2, 0])  # our own 3-class answer (summed probabilities)
    ecg = np.array([0, 2, 2, 2, 4, 4, 0, 0])  # NREM written as 2
    expert = np.array([0, 1, 3, 3, 4, 4, 2, 0])
    pairs = {(p["a"], p["b"]): p for p in agreement_pairs(
        {OURS: (ours, 5), "sleepecg": (ecg, 3), EXPERT: (expert, 5)}, {OURS: ours3})}  # fmt: skip
    assert pairs[(OURS, EXPERT)]["n_classes"] == 5
    assert pairs[(OURS, EXPERT)]["accuracy"] == pytest.approx(np.mean(ours == expert))
    merge = np.array([0, 1, 1, 1, 2])
    p = pairs[(OURS, "sleepecg")]
    assert p["n_classes"] == 3 and p["accuracy"] == pytest.approx(np.mean(merge[ours3] == merge[ecg]))
    p = pairs[("sleepecg", EXPERT)]
    assert p["n_classes"] == 3 and p["kappa"] == pytest.approx(cohen_kappa_score(merge[ecg], merge[expert]))
    assert p["accuracy"] == pytest.approx(7 / 8)


def test_a_pair_without_a_common_scored_epoch_has_no_kappa():
    pairs = agreement_pairs({OURS: (np.array([0, 2, -1]), 5), "yasa": (np.array([-1, -1, 2]), 5)})
    assert pairs == [{"a": OURS, "b": "yasa", "n_classes": 5, "kappa": None, "accuracy": None, "n_epochs": 0,
                      "note": "no epoch staged by both ours and yasa"}]  # fmt: skip


def test_three_class_labels_never_say_n2():
    assert peer_labels(np.array([0, 2, 4, -1]), 3) == ["W", "NREM", "REM", ""]
    assert peer_labels(np.array([0, 1, 3, 4, -1]), 5) == ["W", "N1", "N3", "REM", ""]


# --- the CLI on a synthetic PSG -------------------------------------------------------------
def test_compare_adds_both_peers_stages_and_every_pair(compared, psg):
    s = compared["summary"]
    n = s["n_epochs"]
    assert n == MINUTES * 2 and compared["stderr"] == ""
    yasa, ecg = s["peers"]["yasa"], s["peers"]["sleepecg"]
    assert "refused" not in yasa and "refused" not in ecg
    assert yasa["n_classes"] == 5 and not yasa["three_class"] and len(yasa["stages"]) == n
    assert set(yasa["stages"]) <= {-1, 0, 1, 2, 3, 4}
    # EEG, EOG and EMG at their rates in the file (EMG 200 Hz put on the EEG's 256 Hz), in volts
    assert "EEG 'EEG C4-M1'" in yasa["used"] and "EOG 'E1-M2'" in yasa["used"] and "EMG 'Chin1-Chin2'" in yasa["used"]
    assert "read from the file at 256 Hz" in yasa["used"] and "EMG 200 Hz" in yasa["used"]
    assert ecg["n_classes"] == 3 and ecg["three_class"] and ecg["stage_codes"] == {"W": 0, "NREM": 2, "REM": 4,
                                                                                  "unscored": -1}  # fmt: skip
    assert set(ecg["stages"]) <= {-1, 0, 2, 4} and len(ecg["stages"]) == n
    assert "R peaks of ECG 'ECG II' at 256 Hz" in ecg["used"]
    beats = int(ecg["used"].split()[0])
    assert abs(beats - MINUTES * 62) <= 3  # the synthetic heart beats at 62 bpm
    pairs = {(p["a"], p["b"]): p for p in s["peer_agreement"]}
    assert list(pairs) == [("ours", "yasa"), ("ours", "sleepecg"), ("ours", "expert"),
                           ("yasa", "sleepecg"), ("yasa", "expert"), ("sleepecg", "expert")]  # fmt: skip
    assert [p["n_classes"] for p in pairs.values()] == [5, 3, 5, 3, 5, 3]
    for p in pairs.values():
        assert 0 < p["n_epochs"] <= n and -1 <= p["kappa"] <= 1 and 0 <= p["accuracy"] <= 1
    assert list(s)[-4:] == ["agreement", "peers", "peer_agreement", "warnings"]


def test_the_csv_holds_the_peers_and_still_reads_as_our_hypnogram(compared):
    s = compared["summary"]
    frame = read_csv(compared["csv"])
    cols = list(frame.columns)
    assert cols[cols.index("reference_label") + 1:][:4] == ["yasa_stage", "yasa_label", "sleepecg_stage", "sleepecg_label"]
    np.testing.assert_array_equal(frame["yasa_stage"], s["peers"]["yasa"]["stages"])
    np.testing.assert_array_equal(frame["sleepecg_stage"], s["peers"]["sleepecg"]["stages"])
    assert set(frame["sleepecg_label"].dropna()) <= {"W", "NREM", "REM"}
    labels = np.array(["W", "N1", "N2", "N3", "REM"], dtype=object)
    scored = frame["yasa_stage"] >= 0
    assert (frame.loc[scored, "yasa_label"] == labels[frame.loc[scored, "yasa_stage"]]).all()
    # the pairs' numbers are those of the CSV's columns
    both = (frame["reference"] >= 0) & scored
    pair = next(p for p in s["peer_agreement"] if (p["a"], p["b"]) == ("yasa", "expert"))
    assert pair["n_epochs"] == int(both.sum())
    assert pair["accuracy"] == pytest.approx(np.mean(frame.loc[both, "yasa_stage"] == frame.loc[both, "reference"]))
    # our reader of hypnograms still takes the CSV as our stages (the `stage` column)
    hyp = read_hypnogram(compared["csv"])
    np.testing.assert_array_equal(hyp.stages, frame["stage"])


def test_text_output_lists_the_peers_and_pairs(psg, tiny_model, tmp_path, monkeypatch):
    # the peers themselves are exercised above; here only how their results are printed
    fake = {"yasa": PeerResult("yasa", 5, np.zeros(MINUTES * 2, np.int8), used="EEG 'X' at 256 Hz", seconds=1.0),
            "sleepecg": PeerResult("sleepecg", 3, refused="no ECG here")}  # fmt: skip
    monkeypatch.setattr(peers_mod, "run_peers", lambda night, names, path=None: {k: fake[k] for k in names})
    code, out, err = run_cli(["predict", psg, "--model", tiny_model, "--out", tmp_path / "p.csv",
                              "--compare", "yasa,sleepecg"])  # fmt: skip
    assert code == 0
    assert "peer yasa: 5-class, 1.0 s; EEG 'X' at 256 Hz" in out and "peer sleepecg: refused" in out
    assert "ours vs yasa (5-class): kappa" in out and "yasa vs expert (5-class): kappa" in out
    assert err == "warning: sleepecg: no ECG here\n"
    assert "sleepecg_stage" not in pd.read_csv(tmp_path / "p.csv").columns


def test_a_slow_eeg_is_refused_plainly_and_nothing_crashes(slow_eeg, tiny_model, tmp_path):
    out = tmp_path / "p.csv"
    code, stdout, err = run_cli(["predict", slow_eeg, "--model", tiny_model, "--out", out, "--json",
                                 "--compare", "yasa,sleepecg"])  # fmt: skip
    assert code == 0
    s = json.loads(stdout)
    assert s["peers"]["yasa"] == {"n_classes": 5, "three_class": False,
                                  "refused": "EEG sampled at 64 Hz; YASA needs >= 80 Hz"}  # fmt: skip
    assert s["peers"]["sleepecg"]["refused"].startswith("no ECG channel or beat annotations")
    assert err.splitlines() == ["warning: yasa: EEG sampled at 64 Hz; YASA needs >= 80 Hz",
                                "warning: sleepecg: " + s["peers"]["sleepecg"]["refused"]]  # fmt: skip
    assert [(p["a"], p["b"]) for p in s["peer_agreement"]] == [("ours", "expert")]
    cols = pd.read_csv(out).columns
    assert not [c for c in cols if c.startswith(("yasa", "sleepecg"))]


def test_without_compare_nothing_changes(psg, tiny_model, tmp_path):
    code, stdout, err = run_cli(["predict", psg, "--model", tiny_model, "--out", tmp_path / "p.csv", "--json"])
    assert code == 0 and "peers" not in json.loads(stdout) and "peer_agreement" not in json.loads(stdout)
    assert not [c for c in pd.read_csv(tmp_path / "p.csv").columns if c.startswith(("yasa", "sleepecg"))]


# --- the library: inputs, fallbacks, failures -------------------------------------------------
def test_canonical_signals_when_the_file_is_gone_and_gaps_left_unscored(psg):
    """Without the file (an app upload is deleted after reading): the night's 128-Hz copies in V."""
    night = load_recording(psg)
    eeg = np.array(night.signals["eeg"], copy=True)
    eeg[4:6] = np.nan  # two epochs without EEG
    gappy = dataclasses.replace(night, signals={**night.signals, "eeg": eeg})
    r = run_yasa(gappy, path=None)
    assert r.applied and "at the canonical 128 Hz, in V" in r.used
    assert (r.stages[4:6] == -1).all() and (np.delete(r.stages, [4, 5]) >= 0).all()
    assert r.notes == ["2 epochs with less than half their EEG left unscored"]
    e = run_sleepecg(night, path=None)
    assert e.applied and "at the canonical 128 Hz" in e.used and set(e.stages.tolist()) <= {0, 2, 4}


def test_a_slow_eog_is_left_out_of_yasa(tmp_path):
    ch = {k: v for k, v in psg_channels(minutes=5).items() if k in ("EEG C4-M1", "E1-M2")}
    eog, _, dim = ch["E1-M2"]
    ch["E1-M2"] = (_resampled(eog, 256, 64), 64, dim)
    path = write_edf(tmp_path / "eog64.edf", ch)
    r = run_yasa(load_recording(path), path)
    assert r.applied and r.notes == ["EOG left out: sampled at 64 Hz (< 80 Hz)"]
    assert r.used.startswith("EEG 'EEG C4-M1' read from the file at 256 Hz") and "EOG" not in r.used


def test_an_eeg_at_exactly_80_hz_goes_to_yasa_as_its_canonical_copy(tmp_path):
    eeg, _, dim = psg_channels(minutes=5)["EEG C4-M1"]
    path = write_edf(tmp_path / "eeg80.edf", {"C3-M2": (_resampled(eeg, 256, 80), 80, dim)})
    r = run_yasa(load_recording(path), path)  # YASA itself asserts > 80 Hz on what it is given
    assert r.applied and r.used == "EEG 'C3-M2' at the canonical 128 Hz, in V" and len(r.stages) == 10


def test_a_failing_or_missing_peer_is_a_refusal_not_a_crash(psg, monkeypatch):
    night = load_recording(psg)

    def broken(*a, **k):
        raise RuntimeError("lightgbm exploded")

    monkeypatch.setattr(peers_mod, "yasa_stage", broken)
    r = run_yasa(night, psg)
    assert not r.applied and r.refused == "YASA failed: RuntimeError: lightgbm exploded"
    monkeypatch.setitem(sys.modules, "yasa", None)  # as if it were not installed
    r = run_yasa(night, psg)
    assert not r.applied and r.refused.startswith("YASA is not installed")
    c = compare_with_peers(night, np.zeros(night.n_epochs, np.int64), ("yasa",), path=psg)
    assert c.warnings() == [f"yasa: {c.peers['yasa'].refused}"] and [p["b"] for p in c.pairs] == [EXPERT]


def test_compare_refuses_stages_of_another_length(psg):
    night = load_recording(psg)
    with pytest.raises(ValueError, match="3 stages for a night of 20 epochs"):
        compare_with_peers(night, np.zeros(3, np.int64), ())


# --- views for the app page -----------------------------------------------------------------
def _comparison(n: int = 8) -> tuple[np.ndarray, np.ndarray, PeerComparison]:
    ours = np.array([0, 1, 2, 2, 3, 4, 4, 0])[:n]
    expert = np.array([0, 1, 2, 3, 3, 4, -1, 0])[:n]
    got = {"yasa": PeerResult("yasa", 5, np.array([0, 2, 2, 2, 3, 4, 4, 0], np.int8), used="EEG", seconds=2.0,
                              version="0.8.1"),
           "sleepecg": PeerResult("sleepecg", 3, np.array([0, 2, 2, 2, 2, 4, 2, -1], np.int8), used="beats",
                                  notes=["1 epochs without a heartbeat left unscored"]),
           "other": PeerResult("yasa", 5, refused="EEG sampled at 50 Hz; YASA needs >= 80 Hz")}  # fmt: skip
    stagers = {OURS: (ours, 5), "yasa": (got["yasa"].stages, 5), "sleepecg": (got["sleepecg"].stages, 3),
               EXPERT: (expert, 5)}  # fmt: skip
    return ours, expert, PeerComparison(n, got, agreement_pairs(stagers))


def test_views_tables_for_the_page():
    _, _, c = _comparison()
    status = peer_status_table(c)
    assert status["status"].tolist() == ["staged", "staged", "refused"]
    assert status.loc[0, "peer"] == "YASA 0.8.1" and status.loc[1, "classes"] == "W/NREM/REM"
    assert "left unscored" in status.loc[1, "detail"] and status.loc[2, "detail"].startswith("EEG sampled at 50 Hz")
    table = agreement_table(c)
    assert table["stagers"].tolist() == ["ours vs YASA", "ours vs sleepecg", "ours vs expert", "YASA vs sleepecg",
                                         "YASA vs expert", "sleepecg vs expert"]  # fmt: skip
    assert table["classes"].tolist()[:2] == ["W/N1/N2/N3/REM", "W/NREM/REM"]
    assert table["epochs"].tolist() == [8, 7, 7, 7, 7, 6]
    assert list(peer_columns(c)) == ["yasa_stage", "yasa_label", "sleepecg_stage", "sleepecg_label"]
    assert peer_columns(c)["sleepecg_label"][-2:] == ["NREM", ""]


def test_with_peer_columns_places_them_after_the_expert_or_our_label():
    _, _, c = _comparison()
    frame = pd.DataFrame({"epoch": range(8), "stage": 0, "label": "W", "reference": 0, "reference_label": "W",
                          "confidence": 1.0})  # fmt: skip
    out = with_peer_columns(frame, c)
    assert list(out.columns) == ["epoch", "stage", "label", "reference", "reference_label", "yasa_stage",
                                 "yasa_label", "sleepecg_stage", "sleepecg_label", "confidence"]  # fmt: skip
    assert list(frame.columns)[-1] == "confidence"  # the input is not changed
    plain = with_peer_columns(frame.drop(columns=["reference", "reference_label"]), c)
    assert list(plain.columns)[3:5] == ["yasa_stage", "yasa_label"]
    with pytest.raises(ValueError, match="7 rows for 8 epochs"):
        with_peer_columns(frame.iloc[:7], c)


def test_views_figures_for_the_page():
    ours, expert, c = _comparison()
    fig = kappa_matrix_figure(c)
    z = np.array(fig.data[0].z, dtype=float)
    assert z.shape == (4, 4) and np.allclose(z, z.T) and np.allclose(np.diag(z), 1)
    assert list(fig.data[0].x) == ["ours", "YASA", "sleepecg", "expert"]
    assert "(3)" in fig.data[0].text[0][2] and "(3)" not in fig.data[0].text[0][1]
    hyp = peers_hypnogram_figure(ours, c, expert=expert)
    names = [t.name for t in hyp.data if t.showlegend is not False]
    assert names == ["ours", "YASA", "sleepecg (W/NREM/REM)", "expert"]
    ecg_track = next(t for t in hyp.data if t.name == "sleepecg (W/NREM/REM)")
    assert list(ecg_track.customdata) == ["W", "NREM", "NREM", "NREM", "NREM", "REM", "NREM", "?"]
    assert "NREM" in hyp.layout.yaxis.ticktext and hyp.layout.yaxis.ticktext.count("N2") == 3


# --- the bench scripts use the library's peers ---------------------------------------------------
@pytest.mark.parametrize("script, names", [("bench_dreams", ["yasa_stage"]),
                                           ("bench_slpdb", ["load_sleepecg", "sleepecg_stages"])])  # fmt: skip
def test_bench_scripts_import_the_library_peers(script, names):
    spec = importlib.util.spec_from_file_location(script, ROOT / "bench" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in names:
        assert callable(getattr(module, name))
    if script == "bench_dreams":
        assert module.yasa_stage is peers_mod.yasa_stage
    else:
        assert module.sleepecg_stages_from_beats is peers_mod.sleepecg_stages_from_beats


# --- real recordings (../shared/data; skipped when absent) -----------------------------------------
@pytest.mark.realdata
def test_dreams_excerpt1_yasa_applies_with_the_bench_numbers(tmp_path):
    rec = shared_path("dreams", "excerpt1.txt")
    hyp = shared_path("dreams", "Hypnogram_excerpt1.txt")
    out = tmp_path / "e1.csv"
    code, stdout, err = run_cli(["predict", rec, "--hypnogram", hyp, "--out", out, "--json",
                                 "--compare", "yasa,sleepecg", "--threads", "1"])  # fmt: skip
    assert code == 0
    s = json.loads(stdout)
    y = s["peers"]["yasa"]
    assert y["used"] == "EEG 'C3-A1' read from the file at 100 Hz, in V" and len(y["stages"]) == 60
    pair = next(p for p in s["peer_agreement"] if (p["a"], p["b"]) == ("yasa", "expert"))
    # bench/RESULTS.md (issue 4): YASA on excerpt 1, accuracy 0.700, kappa 0.531
    assert pair["n_epochs"] == 60 and pair["accuracy"] == pytest.approx(0.700, abs=1e-3)
    assert pair["kappa"] == pytest.approx(0.531, abs=1e-3)
    assert s["peers"]["sleepecg"]["refused"].startswith("no ECG channel or beat annotations")
    assert err == f"warning: sleepecg: {s['peers']['sleepecg']['refused']}\n"
    assert [(p["a"], p["b"]) for p in s["peer_agreement"]] == [("ours", "yasa"), ("ours", "expert"), ("yasa", "expert")]
    frame = read_csv(out)
    assert "yasa_stage" in frame.columns and "sleepecg_stage" not in frame.columns
    np.testing.assert_array_equal(read_hypnogram(out).stages, frame["stage"])


@pytest.mark.realdata
def test_dreams_excerpt3_edf_yasa_refuses_50_hz_sleepecg_applies():
    rec = shared_path("dreams", "excerpt3.edf")
    night = load_recording(rec, shared_path("dreams", "Hypnogram_excerpt3.txt"))
    c = compare_with_peers(night, night.stages.astype(np.int64), ("yasa", "sleepecg"), path=rec)
    assert c.peers["yasa"].refused == "EEG sampled at 50 Hz; YASA needs >= 80 Hz"
    e = c.peers["sleepecg"]
    assert e.applied and e.used.startswith("1780 heartbeats (R peaks of ECG 'ECG' at 50 Hz)")
    assert [(p["a"], p["b"], p["n_classes"]) for p in c.pairs] == [
        ("ours", "sleepecg", 3), ("ours", "expert", 5), ("sleepecg", "expert", 3)]


@pytest.mark.realdata
def test_slpdb_beats_sleepecg_applies_yasa_has_no_eeg():
    rec = shared_path("slpdb", "slp01a.ecg")
    night = load_recording(rec)
    c = compare_with_peers(night, night.stages.astype(np.int64), ("yasa", "sleepecg"), path=rec)
    assert c.peers["yasa"].refused == "no usable EEG channel in this recording; YASA stages from EEG"
    e = c.peers["sleepecg"]
    assert e.applied and e.used.startswith("7806 heartbeats (beat annotations slp01a.ecg)") and "age and sex" in e.used
    pair = next(p for p in c.pairs if (p["a"], p["b"]) == ("sleepecg", "expert"))
    # bench/results/real/per_recording.csv: sleepecg on slp01a, 3-class kappa 0.0061 over 239 epochs
    assert pair["n_classes"] == 3 and pair["n_epochs"] == 239 and pair["kappa"] == pytest.approx(0.0061155, abs=1e-6)
