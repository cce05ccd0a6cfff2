"""Hand-written code against the well-kept library that does the same (issue 14, point 6).

Each test runs ours and the library on the same input and pins what the module docstrings say:
where the two agree, and the documented difference where they do not. A test skips when its
library is not installed (tsdownsample and edfio are not dependencies) or the real data is absent.

======================================  ==========================================================
ours                                    library
======================================  ==========================================================
evaluation.sleep_stats                  yasa.Hypnogram.sleep_statistics
evaluation.staging (agreement)          yasa.EpochByEpochAgreement
evaluation.staging.bootstrap_ci         scipy.stats.bootstrap
io.wfdb_header                          wfdb.rdheader
io.wfdb_beats / wfdb_stages (slpdb)     sleepecg.read_slpdb
views.viewer.minmax_envelope            tsdownsample
io.edf (EDF+D records)                  edfio
synth.hypnogram                         yasa.simulate_hypnogram
======================================  ==========================================================
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from datetime import date, datetime, time

import numpy as np
import pytest

from s2v_core.errors import InputFileError
from s2v_core.evaluation.sleep_stats import sleep_statistics
from s2v_core.evaluation.staging import (
    bootstrap_ci,
    confusion_counts,
    metrics_from_confusion,
    staging_metrics,
)
from s2v_core.io.hypnogram.reader import read_hypnogram
from s2v_core.io.wfdb_beats import read_wfdb_beats
from s2v_core.io.wfdb_header import MAX_HEADER_BYTES, read_wfdb_header
from s2v_core.synth.hypnogram import synth_hypnogram
from tests.conftest import shared_path

SLPDB = ("slp01a", "slp01b", "slp02a", "slp02b", "slp04", "slp14", "slp32", "slp37", "slp48",
         "slp59", "slp60", "slp67x")  # fmt: skip
YASA_NAMES = np.array(["WAKE", "N1", "N2", "N3", "REM"])


def _trim(stages: np.ndarray, pad: int) -> np.ndarray:
    """Sleep period +- ``pad`` epochs (the Sleep-EDF files span about 24 h)."""
    asleep = np.flatnonzero(stages >= 1)
    return stages[max(asleep[0] - pad, 0) : asleep[-1] + pad + 1]


def _sleep_edf(pad: int = 60) -> list[np.ndarray]:
    folder = shared_path("sleep-edf")
    files = sorted(folder.glob("*-Hypnogram.edf"))
    if not files:
        pytest.skip("no Sleep-EDF hypnograms")
    return [_trim(read_hypnogram(f).stages.astype(int), pad) for f in files]


def _slpdb() -> list[np.ndarray]:
    return [read_hypnogram(shared_path("slpdb", f"{r}.st")).stages.astype(int) for r in SLPDB]


def _dreams() -> list[np.ndarray]:
    return [
        read_hypnogram(shared_path("dreams", f"Hypnogram_excerpt{i}.txt")).stages.astype(int)
        for i in range(1, 5)
    ]


def _yasa_hypnogram(yasa, stages: np.ndarray, scorer: str | None = None):
    """Project codes -> yasa.Hypnogram (unscored -1 -> ART, which YASA also leaves out)."""
    values = np.where(stages == -1, "ART", YASA_NAMES[np.clip(stages, 0, 4)])
    return yasa.Hypnogram(values, freq="30s", scorer=scorer)


# --------------------------------------------------------------------------- sleep statistics
SHARED_STATS = {
    "TIB_min": "TIB", "SPT_min": "SPT", "TST_min": "TST", "SE_pct": "SE", "SOL_min": "SOL",
    "WASO_min": "WASO", "W_min": "WAKE", "N1_min": "N1", "N2_min": "N2", "N3_min": "N3",
    "REM_min": "REM", "N1_pct": "%N1", "N2_pct": "%N2", "N3_pct": "%N3", "REM_pct": "%REM",
}  # fmt: skip


@pytest.mark.realdata
def test_sleep_statistics_equal_yasa_but_rem_latency_counts_from_sleep_onset():
    yasa = pytest.importorskip("yasa")
    nights = _sleep_edf() + _slpdb() + _dreams()
    assert len(nights) == 36 and sum(int((h == -1).sum()) for h in nights) > 0  # unscored too
    shifted = 0
    for h in nights:
        ours = sleep_statistics(h)
        theirs = _yasa_hypnogram(yasa, h).sleep_statistics()  # YASA rounds to 4 decimals
        for mine, yours in SHARED_STATS.items():
            np.testing.assert_allclose(ours[mine], theirs[yours], atol=1e-4, equal_nan=True)
        # REM latency: AASM (from sleep onset) here, from the start of the recording in YASA
        np.testing.assert_allclose(
            ours["REM_latency_min"], theirs["Lat_REM"] - theirs["SOL"], atol=1e-4, equal_nan=True
        )
        if ours["SOL_min"] > 0 and np.isfinite(ours["REM_latency_min"]):
            assert theirs["Lat_REM"] - ours["REM_latency_min"] == pytest.approx(ours["SOL_min"])
            shifted += 1
        # SFI counts every sleep -> wake step, the final awakening included; n_awakenings counts
        # those inside the sleep period. Equal up to the final one where nothing is unscored.
        last = int(np.flatnonzero(h >= 1)[-1])
        if not np.any(h[np.flatnonzero(h >= 1)[0] : last + 1] == -1):
            to_wake = round(theirs["SFI"] * theirs["TST"] / 60)
            final = int(last + 1 < h.size and h[last + 1] == 0)
            assert ours["n_awakenings"] == to_wake - final
    assert shifted >= 20  # every trimmed Sleep-EDF night starts 30 min before sleep onset


def test_sleep_statistics_rem_latency_example():
    yasa = pytest.importorskip("yasa")
    h = np.array([0, 0, 0, 0, 1, 2, 2, 4, 4, 0, 2, 0])  # 2 min awake, REM 1.5 min after onset
    ours = sleep_statistics(h)
    theirs = _yasa_hypnogram(yasa, h).sleep_statistics()
    assert (ours["SOL_min"], ours["REM_latency_min"]) == (2.0, 1.5)
    assert theirs["Lat_REM"] == 3.5  # from lights off
    assert ours["n_awakenings"] == 1 and round(theirs["SFI"] * theirs["TST"] / 60) == 2


# --------------------------------------------------------------------------- agreement, bootstrap
def _perturbed(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible prediction: one epoch late, 15 % of epochs relabelled at random."""
    pred = np.roll(ref, 1)
    flip = rng.random(ref.size) < 0.15
    pred[flip] = rng.integers(0, 5, int(flip.sum()))
    return pred


@pytest.mark.realdata
def test_agreement_equals_yasa_epoch_by_epoch():
    yasa = pytest.importorskip("yasa")
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    refs = _slpdb() + _sleep_edf()[:4]
    pairs = [(r, _perturbed(r, rng)) for r in refs]
    ours = [staging_metrics(r, p) for r, p in pairs]
    scorers = {
        "accuracy": lambda t, p, w: skm.accuracy_score(t, p),
        "kappa": lambda t, p, w: skm.cohen_kappa_score(t, p),
        "mcc": lambda t, p, w: skm.matthews_corrcoef(t, p),
        "macro_f1": lambda t, p, w: skm.f1_score(t, p, average="macro"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ebe = yasa.EpochByEpochAgreement(
            [_yasa_hypnogram(yasa, r, "ref") for r, _ in pairs],
            [_yasa_hypnogram(yasa, p, "pred") for _, p in pairs],
        )
        theirs = ebe.get_agreement(scorers=scorers)
        default = ebe.get_agreement()
    assert sum(m.n_excluded for m in ours) > 0  # unscored epochs left out on both sides
    for name in scorers:
        np.testing.assert_allclose(theirs[name].to_numpy(), [getattr(m, name) for m in ours], atol=1e-12)
    for i, m in enumerate(ours):
        cm = ebe.get_confusion_matrix(sleep_id=i + 1)
        cm = cm.reindex(index=YASA_NAMES, columns=YASA_NAMES, fill_value=0).to_numpy()
        np.testing.assert_array_equal(cm, m.confusion)
    # YASA's default f1 is support-weighted, in percent: not our macro-F1
    assert default["f1"].mean() > 100 * np.mean([m.macro_f1 for m in ours]) + 5


def test_agreement_degenerate_night_differs_from_yasa_by_convention():
    yasa = pytest.importorskip("yasa")
    same = np.full(40, 2)
    ours = staging_metrics(same, same)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = yasa.EpochByEpochAgreement(
            [_yasa_hypnogram(yasa, same, "a")], [_yasa_hypnogram(yasa, same, "b")]
        ).get_agreement()
    assert ours.kappa == 1.0 and ours.mcc == 1.0
    assert np.isnan(theirs["kappa"]) and theirs["mcc"] == 0.0


def _synthetic_cohort(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(r, _perturbed(r, rng)) for r in (synth_hypnogram(600, 40.0, rng) for _ in range(n))]


def test_bootstrap_ci_equals_scipy_percentile_bootstrap():
    from scipy import stats

    pairs = _synthetic_cohort(12)
    kappas = np.array([staging_metrics(r, p).kappa for r, p in pairs])
    ours = bootstrap_ci(kappas, "mean", n_boot=2000, seed=3, level=0.9)
    theirs = stats.bootstrap((kappas,), np.mean, n_resamples=2000, method="percentile",
                             confidence_level=0.9, rng=np.random.default_rng(3))  # fmt: skip
    np.testing.assert_allclose(ours, tuple(theirs.confidence_interval), rtol=1e-12)

    # a metric pooled over the epochs of the resampled nights: scipy resamples night indices
    conf = np.stack([confusion_counts(r, p) for r, p in pairs])

    def pooled_kappa(idx, axis=-1):
        counts = np.stack([np.bincount(row, minlength=len(pairs)) for row in idx.reshape(-1, idx.shape[-1])])
        return metrics_from_confusion(np.einsum("bn,nij->bij", counts, conf))["kappa"].reshape(idx.shape[:-1])

    ours = bootstrap_ci(pairs, "kappa", n_boot=1000, seed=5)
    theirs = stats.bootstrap((np.arange(len(pairs)),), pooled_kappa, n_resamples=1000,
                             method="percentile", vectorized=True, rng=np.random.default_rng(5))  # fmt: skip
    np.testing.assert_allclose(ours, tuple(theirs.confidence_interval), rtol=1e-12)


def test_bootstrap_ci_keeps_what_scipy_refuses():
    from scipy import stats

    assert bootstrap_ci([0.7], "mean") == (0.7, 0.7)  # one night: a degenerate interval
    with pytest.raises(ValueError):
        stats.bootstrap((np.array([0.7]),), np.mean, n_resamples=100, rng=np.random.default_rng(0))
    values = [0.6, 0.7, 0.8, 0.75, 0.65, 0.72]

    def nan_when_first_night_drawn(nights):
        return float("nan") if 0.6 in nights else float(np.mean(nights))

    low, high = bootstrap_ci(values, nan_when_first_night_drawn, n_boot=400, seed=0)
    assert 0.65 <= low < high <= 0.8  # the finite replicates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.array(values),), lambda x: np.nan if 0.6 in x else np.mean(x),
                              n_resamples=400, method="percentile", vectorized=False,
                              rng=np.random.default_rng(0))  # fmt: skip
    assert np.isnan(res.confidence_interval.low)  # one NaN replicate: no interval at all


# --------------------------------------------------------------------------- WFDB headers
@pytest.mark.realdata
def test_wfdb_header_equals_rdheader_on_slpdb_except_two_digit_year():
    import wfdb

    for record in SLPDB:
        path = shared_path("slpdb", f"{record}.hea")
        ours = read_wfdb_header(path)
        if record == "slp32":  # "20/7/89"
            with pytest.raises(ValueError, match="20/7/89"):
                wfdb.rdheader(str(path.with_suffix("")))
            assert ours.start == datetime(1989, 7, 20, 1, 5, 30)
            continue
        theirs = wfdb.rdheader(str(path.with_suffix("")))
        assert (ours.record_name, ours.n_signals, ours.fs, ours.sig_len) == (
            theirs.record_name, theirs.n_sig, float(theirs.fs), theirs.sig_len)  # fmt: skip
        assert (ours.base_time, ours.base_date) == (theirs.base_time, theirs.base_date)
        assert list(ours.comments) == list(theirs.comments)
    assert read_wfdb_header(shared_path("slpdb", "slp67x.hea")).start is None  # time, no date


@pytest.mark.parametrize(("rate", "wfdb_reads"), [("nan", 250), ("-250", 250), ("1e-06", 1)])
def test_wfdb_header_refuses_a_rate_rdheader_replaces(tmp_path, rate, wfdb_reads):
    import wfdb

    (tmp_path / "r.hea").write_text(f"r 1 {rate} 1000\n")
    assert float(wfdb.rdheader(str(tmp_path / "r")).fs) == wfdb_reads  # silently another rate
    if rate == "1e-06":
        assert read_wfdb_header(tmp_path / "r.hea").fs == 1e-06  # then refused by check_rate
    else:
        with pytest.raises(InputFileError, match="r.hea: WFDB header has no valid sampling rate"):
            read_wfdb_header(tmp_path / "r.hea")


def test_wfdb_header_fields_and_refusals(tmp_path):
    hea = tmp_path / "r.hea"
    hea.write_text("r/2 3 128/0.5(7) 3840 1:05:30.5 20/7/89\nr.dat 16 1/uV 16 0 0 0 0 EEG\n# 61 F x\n")
    h = read_wfdb_header(hea)
    assert (h.record_name, h.n_signals, h.fs, h.sig_len) == ("r", 3, 128.0, 3840)
    assert h.start == datetime(1989, 7, 20, 1, 5, 30, 500000) and h.comments == ("61 F x",)
    assert h.signal_lines == (("r.dat", "16", "1/uV", "16", "0", "0", "0", "0", "EEG"),)
    hea.write_text("r 1\n")
    assert read_wfdb_header(hea).fs == 250.0 and read_wfdb_header(hea).sig_len is None  # WFDB default
    hea.write_text("r 1 250 1000 25:61:00 31/2/1989\n")
    h = read_wfdb_header(hea)
    assert h.start is None and h.base_time is None and "25:61:00" in h.time_problem
    hea.write_text("r 1 250 1000 1:00:00 31/2/1989\n")
    assert read_wfdb_header(hea).time_problem and read_wfdb_header(hea).base_time is None
    for text in ("", "\x00\xff junk\n", "r x 250\n", "r 1 250 lots\n", "r 1 250 -5\n"):
        hea.write_text(text, encoding="latin-1")
        with pytest.raises(InputFileError, match="r.hea: cannot read the WFDB header"):
            read_wfdb_header(hea)
    with open(hea, "wb") as fh:  # rdheader reads all of it (100 MB: 300 MiB, 0.3 s)
        fh.write(b"r 1 250 1000\n# " + b"x" * MAX_HEADER_BYTES + b"\n")
    with pytest.raises(InputFileError, match="over 1 MiB"):
        read_wfdb_header(hea)


def test_beats_reader_refuses_an_unreadable_start_as_before(tmp_path):
    from tests.test_wfdb_beats import write_record

    path = write_record(tmp_path, "rec", [100, 300], ["N", "N"], record_line_tail="25:61:00 19/01/1989")
    with pytest.raises(InputFileError, match=r"rec.hea: cannot read the WFDB header: unreadable start .25:61:00 19/01/1989. \(hour must be"):
        read_wfdb_beats(path)


# --------------------------------------------------------------------------- slpdb
@pytest.mark.realdata
def test_slpdb_stages_equal_sleepecg_which_needs_signals_and_fails_on_slp32(tmp_path):
    sleepecg = pytest.importorskip("sleepecg")
    source = shared_path("slpdb", "slp01a.hea").parent
    db = tmp_path / "slpdb"
    db.mkdir()
    for record in ("slp01a", "slp32"):
        for ext in ("hea", "st"):
            shutil.copy(source / f"{record}.{ext}", db / f"{record}.{ext}")
    # sleepecg reads the signals (none in our copy of slpdb): noise in slp01a's 4 x 1.8 M samples
    noise = np.random.default_rng(0).integers(0, 256, 4 * 1_800_000 * 3 // 2, dtype=np.uint8)
    (db / "slp01a.dat").write_bytes(noise.tobytes())
    # and the PhysioNet index files, which it downloads even with offline=True
    (db / "RECORDS").write_text("slp01a\nslp32\n")
    digest = hashlib.sha256((db / "RECORDS").read_bytes()).hexdigest()
    (db / "SHA256SUMS.txt").write_text(f"{digest} RECORDS\n")

    record = next(sleepecg.read_slpdb("slp01a", offline=True, data_dir=tmp_path))
    to_ours = {int(sleepecg.SleepStage.WAKE): 0, int(sleepecg.SleepStage.N1): 1,
               int(sleepecg.SleepStage.N2): 2, int(sleepecg.SleepStage.N3): 3,
               int(sleepecg.SleepStage.REM): 4, int(sleepecg.SleepStage.UNDEFINED): -1}  # fmt: skip
    theirs = np.array([to_ours[int(s)] for s in record.sleep_stages])
    ours = read_hypnogram(source / "slp01a.st").stages
    np.testing.assert_array_equal(theirs, ours)
    beats = read_wfdb_beats(source / "slp01a.ecg")
    assert record.subject_data.age == beats.age == 44
    assert record.recording_start_time == beats.start_clock == time(23, 7)
    assert beats.start_time == datetime(1989, 1, 19, 23, 7)  # sleepecg keeps no date

    with pytest.raises(ValueError, match="20/7/89"):
        next(sleepecg.read_slpdb("slp32", offline=True, data_dir=tmp_path))
    assert read_wfdb_beats(source / "slp32.ecg").start_time.date() == date(1989, 7, 20)


# --------------------------------------------------------------------------- min/max envelope
def _trace_with_spikes_and_gaps(seed: int = 0):
    """121 epochs of 128-Hz EEG (the viewer's largest window), 40 spikes each next to a dropout."""
    rng = np.random.default_rng(seed)
    fs = 128.0
    n = int(121 * 30 * fs)
    x = (rng.standard_normal(n) * 20).astype(np.float32)
    spikes = np.sort(rng.choice(np.arange(2000, n - 3000, 4000), 40, replace=False)) + rng.integers(0, 500, 40)
    gaps = []
    for s in spikes:
        x[s] = 1e4
        start = int(s + rng.integers(1, 5))
        x[start : start + int(rng.integers(1, 3))] = np.nan
        gaps.append((start, int(np.flatnonzero(~np.isnan(x[start:]))[0]) + start))
    for k in range(10):  # longer dropouts, away from the spikes
        start = int(spikes[4 * k]) + 2000
        stop = start + int(rng.integers(50, 1500))
        x[start:stop] = np.nan
        gaps.append((start, stop))
    return np.arange(n) / fs, x, spikes, gaps, fs


def _envelope_score(idx: np.ndarray, x: np.ndarray, spikes, gaps) -> tuple[int, int]:
    idx = np.unique(idx)
    nan_points = idx[np.isnan(x[idx])]
    kept = int(np.isin(spikes, idx).sum())
    broken = sum(bool(np.any((nan_points >= a) & (nan_points < b))) for a, b in gaps)
    return kept, broken


def test_minmax_envelope_against_tsdownsample():
    tsdownsample = pytest.importorskip("tsdownsample")
    from s2v_core.views.viewer import minmax_envelope

    t, x, spikes, gaps, fs = _trace_with_spikes_and_gaps()
    clean = np.nan_to_num(x, nan=0.0)
    t_ours, x_ours = minmax_envelope(t, clean, 2000)
    idx = tsdownsample.MinMaxDownsampler().downsample(clean, n_out=2000)
    assert x_ours.size <= 2000 and idx.size == 2000
    assert (x_ours.max(), x_ours.min()) == (clean[idx].max(), clean[idx].min()) == (clean.max(), clean.min())

    t_ours, _ = minmax_envelope(t, x, 2000)
    ours = _envelope_score(np.round(t_ours * fs).astype(int), x, spikes, gaps)
    minmax = _envelope_score(tsdownsample.MinMaxDownsampler().downsample(x, n_out=2000), x, spikes, gaps)
    nan_minmax = _envelope_score(tsdownsample.NaNMinMaxDownsampler().downsample(x, n_out=2000), x, spikes, gaps)
    assert ours == (40, 50)  # every spike kept, every gap breaks the line
    assert minmax[0] == 40 and minmax[1] <= 25  # peaks kept, most gaps bridged
    assert nan_minmax[0] <= 5 and nan_minmax[1] == 50  # gaps kept, spikes next to them lost
    with pytest.raises(ValueError, match="even"):
        tsdownsample.MinMaxDownsampler().downsample(clean, n_out=2001)


# --------------------------------------------------------------------------- EDF+D
def test_edf_plus_d_records_against_edfio(tmp_path):
    edfio = pytest.importorskip("edfio")
    from s2v_core.io.edf import open_recording
    from tests.edf_bytes import Signal, contiguous_onsets, write_edf_bytes

    eeg = np.random.default_rng(1).integers(-3000, 3000, 30 * 32)  # 16 Hz, 2-s records
    onsets = contiguous_onsets(30, 2.0, {10: 7.5, 20: 12.0})
    path = write_edf_bytes(tmp_path / "gaps.edf", [Signal("EEG Fpz-Cz", eeg, 32)], record_duration=2.0,
                           record_onsets=onsets, file_type="EDF+D", annotations=[(70.0, 5.0, "Arousal")])  # fmt: skip
    with open_recording(path) as rec:
        x, fs = rec.read_channel("EEG Fpz-Cz")
        assert rec.header.duration_s == 79.5 and rec.header.gaps == [(20.0, 7.5), (47.5, 12.0)]
    edf = edfio.read_edf(path)
    y = edf.signals[0].data
    assert x.size == 1272 and y.size == 960  # edfio closes the gaps
    assert not edf.is_continuous and edf.duration == 60.0
    assert [a.onset for a in edf.annotations] == [70.0]  # past its own end
    placed = np.flatnonzero(~np.isnan(x))
    assert placed[10 * 32] / fs == 27.5  # record 10 where its time-keeping TAL says; edfio: 20.0
    np.testing.assert_allclose(x[placed], y, atol=1e-3)  # same values where ours places them


# --------------------------------------------------------------------------- synthetic hypnograms
def _thirds(stages: np.ndarray, stage: int) -> tuple[float, float]:
    period = _trim(np.asarray(stages, dtype=int), 0)
    parts = np.array_split(period, 3)
    return float(np.mean(parts[0] == stage)), float(np.mean(parts[2] == stage))


@pytest.mark.realdata
def test_synth_hypnogram_keeps_n3_early_where_yasa_simulate_does_not():
    yasa = pytest.importorskip("yasa")
    real = _sleep_edf(pad=0)
    real = [np.concatenate([np.zeros(20, int), h, np.zeros(6, int)]) for h in real]  # lights off/on
    rng = np.random.default_rng(0)
    ours = [synth_hypnogram(len(h), 30.0, rng) for h in real]
    theirs = [yasa.simulate_hypnogram(tib=len(h) / 2, seed=i).as_int().to_numpy() for i, h in enumerate(real)]
    n3 = {name: np.median([_thirds(h, 3) for h in hs], axis=0)
          for name, hs in (("real", real), ("ours", ours), ("yasa", theirs))}  # fmt: skip
    assert n3["real"][0] > 0.15 and n3["real"][1] < 0.05
    assert n3["ours"][0] > 0.15 and n3["ours"][1] < 0.05  # N3 early, almost none late
    assert n3["yasa"][1] > 0.05 and n3["yasa"][0] / n3["yasa"][1] < 3  # N3 spread over the night
