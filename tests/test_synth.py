"""Tests for the synthetic cohort generator (s2v_core.synth)."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pyedflib
import pytest
from scipy import signal as sps

from s2v_core.stages import N1, N2, N3, REM, W
from s2v_core.synth import (
    METADATA_COLUMNS,
    SITES,
    NightSpec,
    generate_cohort,
    generate_night,
    load_transitions,
    plan_cohort,
    synth_hypnogram,
    transition_matrix,
)
from s2v_core.synth.hypnogram import sleep_hours, tertile_fractions
from s2v_core.synth.writers import physical_range
from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[1]


def read_edf(path: Path) -> dict:
    """Everything a test needs from an EDF, read with pyedflib."""
    with pyedflib.EdfReader(str(path)) as r:
        return {
            "labels": r.getSignalLabels(),
            "rates": [float(x) for x in r.getSampleFrequencies()],
            "dims": [r.getPhysicalDimension(i) for i in range(r.signals_in_file)],
            "prefilters": [r.getPrefilter(i) for i in range(r.signals_in_file)],
            "duration": float(r.getFileDuration()),
            "patient": r.getPatientCode(),
            "equipment": r.getEquipment(),
            "start": r.getStartdatetime(),
            "data": [r.readSignal(i) for i in range(r.signals_in_file)],
            "annotations": r.readAnnotations(),
            "pmin": [r.getPhysicalMinimum(i) for i in range(r.signals_in_file)],
            "pmax": [r.getPhysicalMaximum(i) for i in range(r.signals_in_file)],
        }


# ----------------------------------------------------------------------------- cohort files


@pytest.fixture(scope="module")
def cohort_a(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("cohort_a")
    return out, generate_cohort(3, out, seed=3, hours=0.25, sites=["us_hospital", "wearable"])


def test_same_seed_same_files_different_seed_different(cohort_a, tmp_path):
    out_a, meta_a = cohort_a
    meta_b = generate_cohort(
        3, tmp_path / "b", seed=3, hours=0.25, sites=["us_hospital", "wearable"]
    )
    pd.testing.assert_frame_equal(meta_a, meta_b)
    for name in list(meta_a.psg_file) + list(meta_a.hypnogram_file) + ["metadata.csv"]:
        assert filecmp.cmp(out_a / name, tmp_path / "b" / name, shallow=False), name
    first_a, first_b = (
        read_edf(out_a / meta_a.psg_file[0]),
        read_edf(tmp_path / "b" / meta_b.psg_file[0]),
    )
    for xa, xb in zip(first_a["data"], first_b["data"], strict=True):
        np.testing.assert_array_equal(xa, xb)
    meta_c = generate_cohort(
        3, tmp_path / "c", seed=4, hours=0.25, sites=["us_hospital", "wearable"]
    )
    first_c = read_edf(tmp_path / "c" / meta_c.psg_file[0])
    if first_c["labels"] == first_a["labels"]:
        assert not np.array_equal(first_c["data"][0], first_a["data"][0])
    assert not meta_c[["age", "ahi"]].equals(meta_a[["age", "ahi"]])


def test_metadata_columns_and_files(cohort_a):
    out, meta = cohort_a
    assert tuple(meta.columns) == METADATA_COLUMNS
    on_disk = pd.read_csv(out / "metadata.csv")
    assert list(on_disk.columns) == list(METADATA_COLUMNS)
    assert len(on_disk) == 3 and set(on_disk.sex) <= {"M", "F"}
    assert np.allclose(on_disk.hours, 0.25)
    for row in on_disk.itertuples():
        assert (out / row.psg_file).exists() and (out / row.hypnogram_file).exists()
        assert row.night.startswith(row.subject + "_night")
        assert row.hypnogram_file.endswith(SITES[row.site].hypnogram_ext)


def test_some_subjects_have_two_nights():
    plan = plan_cohort(60, seed=0, hours=0.1)
    per_subject = pd.Series([p.spec.subject_id for p in plan]).value_counts()
    assert per_subject.max() == 2 and (per_subject == 2).sum() >= 8
    twice = per_subject[per_subject == 2].index[0]
    nights = [p.spec for p in plan if p.spec.subject_id == twice]
    assert [s.night_id for s in nights] == [f"{twice}_night1", f"{twice}_night2"]
    assert nights[0].age == nights[1].age and nights[0].site == nights[1].site
    # The first nights of a cohort do not depend on how many nights are asked for.
    assert [p.spec for p in plan_cohort(10, seed=0, hours=0.1)] == [p.spec for p in plan[:10]]


def test_small_cohort_covers_every_site_then_follows_weights():
    plan = plan_cohort(400, seed=1, hours=0.1)
    subjects = pd.DataFrame(
        [(p.spec.subject_id, p.spec.site) for p in plan], columns=["subject", "site"]
    ).drop_duplicates("subject")
    assert set(subjects.site[: len(SITES)]) == set(SITES)
    share = subjects.site.value_counts(normalize=True)
    weights = pd.Series({n: s.weight for n, s in SITES.items()})
    assert np.allclose(share[weights.index], weights / weights.sum(), atol=0.07)
    assert {p.spec.site for p in plan_cohort(6, seed=1, sites=["wearable"])} == {"wearable"}


@pytest.mark.parametrize("site", list(SITES))
def test_edf_read_back_matches_site_spec_and_memory(site, tmp_path):
    meta = generate_cohort(1, tmp_path, seed=11, hours=0.25, sites=[site])
    edf = read_edf(tmp_path / meta.psg_file[0])
    spec = SITES[site]
    assert edf["labels"] == [c.label for c in spec.channels]
    assert edf["rates"] == [float(c.sfreq) for c in spec.channels]
    assert edf["dims"] == [c.unit for c in spec.channels]
    assert edf["prefilters"] == [c.prefilter for c in spec.channels]
    assert edf["duration"] == pytest.approx(0.25 * 3600)
    assert edf["patient"] == meta.subject[0]
    assert edf["equipment"].replace(" ", "_") == spec.device
    # The values read back equal the in-memory night within one digital step.
    planned = plan_cohort(1, seed=11, hours=0.25, sites=[site])[0]
    night = generate_night(planned.spec, np.random.default_rng(list(planned.seed)))
    assert edf["start"] == planned.start
    for ch, x, lo, hi in zip(spec.channels, edf["data"], edf["pmin"], edf["pmax"], strict=True):
        mem = night.signals[ch.label]
        assert len(x) == len(mem) == int(0.25 * 3600 * ch.sfreq)
        step = (hi - lo) / 65535
        np.testing.assert_allclose(x, mem, atol=step * 0.51 + 1e-4 * (hi - lo))
        assert lo < mem.min() and mem.max() < hi  # headroom: nothing clips
    n_annot = len(edf["annotations"][0])
    assert n_annot == (len(night.events) if spec.annotate_events else 0)


def test_physical_range_fits_edf_header_and_has_headroom():
    for lo, hi in [(-123.456789, 98.7654321), (0.00123, 0.0456), (85.2, 98.9), (-3.2e4, 1.5e4)]:
        pmin, pmax = physical_range(np.array([lo, hi]))
        assert pmin < lo and pmax > hi
        assert len(np.format_float_positional(pmin, trim="-")) <= 8
        assert len(np.format_float_positional(pmax, trim="-")) <= 8


def test_metadata_ahi_equals_annotated_events_per_sleep_hour(tmp_path):
    meta = generate_cohort(2, tmp_path, seed=2, hours=0.5, sites=["us_hospital"])
    for row in meta.itertuples():
        n_events = len(read_edf(tmp_path / row.psg_file)["annotations"][0])
        root = ET.parse(tmp_path / row.hypnogram_file).getroot()
        asleep_s = sum(
            float(ev.findtext("Duration"))
            for ev in root.iter("ScoredEvent")
            if ev.findtext("EventType") == "Stages|Stages"
            and ev.findtext("EventConcept") != "Wake|0"
        )
        expected = n_events / (asleep_s / 3600) if asleep_s else 0.0
        assert row.ahi == pytest.approx(expected, abs=0.01)


# ----------------------------------------------------------------------------- hypnogram files


def _stages_from_file(path: Path, fmt: str) -> np.ndarray:
    """Parse the four formats independently of s2v_core.io (to pin the written format)."""
    if fmt == "nsrr_xml":
        code = {
            "Wake|0": W,
            "Stage 1 sleep|1": N1,
            "Stage 2 sleep|2": N2,
            "Stage 3 sleep|3": N3,
            "REM sleep|5": REM,
        }
        out = []
        root = ET.parse(path).getroot()
        assert root.tag == "PSGAnnotation" and root.findtext("EpochLength") == "30"
        for ev in root.find("ScoredEvents"):
            if ev.findtext("EventType") == "Stages|Stages":
                assert float(ev.findtext("Start")) == len(out) * 30
                out += [code[ev.findtext("EventConcept")]] * int(
                    float(ev.findtext("Duration")) / 30
                )
        return np.array(out)
    if fmt == "profusion_xml":
        root = ET.parse(path).getroot()
        assert root.tag == "CMPStudyConfig" and root.findtext("EpochLength") == "30"
        codes = [int(s.text) for s in root.find("SleepStages")]
        return np.array([{0: W, 1: N1, 2: N2, 3: N3, 5: REM}[c] for c in codes])
    table = pd.read_csv(path)
    if fmt == "csv_events":
        assert list(table.columns) == ["onset", "duration", "label"]
        assert np.allclose(
            table.onset.to_numpy()[1:], (table.onset + table.duration).to_numpy()[:-1]
        )
        lab = {"W": W, "N1": N1, "N2": N2, "N3": N3, "R": REM}
        return np.repeat([lab[x] for x in table.label], (table.duration / 30).astype(int))
    assert list(table.columns) == ["stage"]
    return np.array([{"W": W, "N1": N1, "N2": N2, "N3": N3, "REM": REM}[x] for x in table.stage])


@pytest.mark.parametrize("site", list(SITES))
def test_hypnogram_file_holds_the_generated_stages(site, tmp_path):
    meta = generate_cohort(1, tmp_path, seed=5, hours=0.5, sites=[site])
    planned = plan_cohort(1, seed=5, hours=0.5, sites=[site])[0]
    night = generate_night(planned.spec, np.random.default_rng(list(planned.seed)))
    fmt = SITES[site].hypnogram_format
    np.testing.assert_array_equal(
        _stages_from_file(tmp_path / meta.hypnogram_file[0], fmt), night.stages
    )
    if fmt in ("nsrr_xml", "profusion_xml"):
        root = ET.parse(tmp_path / meta.hypnogram_file[0]).getroot()
        texts = [e.findtext("EventConcept") or e.findtext("Name") for e in root.iter("ScoredEvent")]
        n_resp = sum(
            t.split("|")[0].lower() in ("obstructive apnea", "hypopnea", "central apnea")
            for t in texts
        )
        assert n_resp == len(night.events)


# ----------------------------------------------------------------------------- physiology


@pytest.fixture(scope="module")
def long_night():
    spec = NightSpec("sub-900_night1", "sub-900", "us_hospital", 40.0, "M", 25.0, 2.5)
    night = generate_night(spec, np.random.default_rng(6))
    assert all(np.any(night.stages == s) for s in (W, N1, N2, N3, REM))
    return night


def _epochs(night, label: str) -> tuple[np.ndarray, int]:
    fs = next(c.sfreq for c in night.channels if c.label == label)
    return night.signals[label].reshape(len(night.stages), -1), fs


def _mean_by_stage(values: np.ndarray, stages: np.ndarray) -> dict[int, float]:
    return {s: float(np.mean(values[stages == s])) for s in (W, N1, N2, N3, REM)}


def test_eeg_spectra_follow_stages(long_night):
    x, fs = _epochs(long_night, "C4-M1")
    f, p = sps.welch(x, fs=fs, nperseg=4 * fs, axis=1)

    def band(lo, hi):
        return p[:, (f >= lo) & (f < hi)].sum(axis=1)

    st = long_night.stages
    rel_delta = _mean_by_stage(band(0.5, 4) / band(0.5, 30), st)
    rel_alpha, sigma = _mean_by_stage(band(8, 12) / band(0.5, 30), st), _mean_by_stage(band(11, 16), st)
    assert rel_delta[N3] > rel_delta[N2] > rel_delta[W]
    assert rel_delta[N3] > 0.7  # calibrated against DREAMS N3 (tests/test_synth_calibration.py)
    assert rel_alpha[W] > 1.5 * rel_alpha[N2]  # DREAMS: 0.12 vs 0.057 of the power (absolute alpha is lower in W)
    assert sigma[N2] > 1.3 * sigma[N3] and sigma[N2] > 2 * sigma[REM]
    # N3 carries high-amplitude slow waves: peak-to-peak above 75 uV in most N3 epochs.
    n3 = x[st == N3]
    assert np.mean(np.ptp(n3, axis=1) > 75) > 0.9


def test_emg_tone_wake_above_nrem_above_rem(long_night):
    x, _ = _epochs(long_night, "Chin1-Chin2")
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1))
    st = long_night.stages
    nrem = np.isin(st, (N1, N2, N3))
    assert rms[st == W].mean() > rms[nrem].mean() > 1.3 * rms[st == REM].mean()


def test_heart_rate_and_ecg(long_night):
    beats, st = long_night.beats, long_night.stages
    hr = 60.0 / np.diff(beats)
    stage_of_beat = st[np.minimum((beats[1:] // 30).astype(int), len(st) - 1)]
    by_stage = _mean_by_stage(hr, stage_of_beat)
    assert by_stage[N3] < by_stage[N2] < by_stage[W]
    assert 45 < by_stage[N3] < 90
    # Heart rate is steadier within N3 epochs than within REM epochs.
    epoch_sd = pd.Series(hr).groupby(np.minimum((beats[1:] // 30).astype(int), len(st) - 1)).std()
    sd_by_stage = _mean_by_stage(epoch_sd.to_numpy(), st[epoch_sd.index.to_numpy()])
    assert sd_by_stage[REM] > 1.3 * sd_by_stage[N3]
    # R peaks of the ECG sit at the beat times (largest sample within +-20 ms).
    ecg, fs = long_night.signals["ECG II"], 256
    idx = np.round(beats[10:-10] * fs).astype(int)
    win = idx[:, None] + np.arange(-5, 6)[None, :]
    assert np.mean(np.abs(np.argmax(ecg[win], axis=1) - 5) <= 2) > 0.95


def test_breathing_rate_and_events(long_night):
    x, fs = long_night.signals["Thor"], 32
    peaks, _ = sps.find_peaks(x, distance=int(fs * 2.5), prominence=0.1 * np.std(x))
    per_min = len(peaks) / (len(x) / fs / 60)
    assert 10 < per_min < 20
    assert np.all((long_night.resp_rate > 10) & (long_night.resp_rate < 20))
    ev = long_night.events
    assert len(ev) > 10
    assert ev.duration.between(10, 40).all()
    assert long_night.ahi == pytest.approx(len(ev) / sleep_hours(long_night.stages))
    flow, thor = long_night.signals["Nasal Pressure"], long_night.signals["Thor"]
    prev_end = np.concatenate([[-1e9], (ev.onset + ev.duration).to_numpy()[:-1]])
    isolated = ev[ev.onset.to_numpy() - prev_end > 30]  # clean 15-s baseline before the event
    assert len(isolated) >= 5
    hypopnea_ratios = []
    for row in isolated.itertuples():
        a, b = int((row.onset + 3) * fs), int((row.onset + row.duration - 3) * fs)
        pre = slice(int((row.onset - 15) * fs), int(row.onset * fs))
        flow_ratio = np.std(flow[a:b]) / np.std(flow[pre])
        if row.type == "Obstructive Apnea":  # airflow ~0 while effort continues
            assert flow_ratio < 0.2 and np.std(thor[a:b]) / np.std(thor[pre]) > 0.6
        elif row.type == "Hypopnea":
            hypopnea_ratios.append(flow_ratio)
    assert 0.45 < np.median(hypopnea_ratios) < 0.75  # a 30-50 % reduction


def test_spo2_drops_after_events(long_night):
    sat, fs = long_night.signals["SpO2"], 4
    assert 90 < np.median(sat) < 99.5
    ev = long_night.events
    before, after = [], []
    for row in ev.itertuples():
        end = row.onset + row.duration
        before.append(sat[int((row.onset - 10) * fs) : int(row.onset * fs)].mean())
        after.append(sat[int((end + 20) * fs) : int((end + 40) * fs)].mean())
    drops = np.array(before) - np.array(after)
    assert np.mean(drops) > 1.0 and np.mean(drops > 0) > 0.7
    # Where the previous desaturation has recovered before this event, the drop is clear.
    recovered = np.concatenate(
        [[True], ev.nadir.to_numpy()[:-1] + 12 < ev.onset.to_numpy()[1:] - 10]
    )
    assert recovered.sum() >= 5
    assert np.mean(drops[recovered]) > 2.0 and np.all(drops[recovered] > 0)


# ----------------------------------------------------------------------------- sites


def _line_ratio(x: np.ndarray, fs: int, f0: float) -> float:
    f, p = sps.welch(x, fs=fs, nperseg=2 * fs)
    near = (np.abs(f - f0) > 2) & (np.abs(f - f0) < 8)
    return float(p[np.argmin(np.abs(f - f0))] / np.median(p[near]))


def test_site_mains_signatures_differ():
    def eeg(site):
        night = generate_night(
            NightSpec("n", "s", site, 50.0, "F", 5.0, 0.1), np.random.default_rng(0)
        )
        ch = night.channel("eeg")
        return night.signals[ch.label], ch.sfreq

    x_us, fs_us = eeg("us_hospital")
    x_eu, fs_eu = eeg("eu_clinic")
    assert _line_ratio(x_us, fs_us, 60) > 20 and _line_ratio(x_us, fs_us, 50) < 3
    assert _line_ratio(x_eu, fs_eu, 50) > 20 and _line_ratio(x_eu, fs_eu, 60) < 3


def test_sites_differ_in_sensors_units_and_population():
    assert len(SITES) >= 4
    assert not SITES["home_test"].has("eeg") and not SITES["wearable"].has("eeg")
    assert SITES["us_hospital"].has("eeg") and SITES["us_hospital"].has("spo2")
    units = {name: [c.unit for c in s.channels if c.modality == "ecg"] for name, s in SITES.items()}
    assert units["us_hospital"] == ["uV"] and units["home_test"] == ["mV"]
    night = generate_night(
        NightSpec("n", "s", "home_test", 60.0, "M", 30.0, 0.1), np.random.default_rng(1)
    )
    assert 0.3 < np.percentile(night.signals["ECG"], 99.9) < 3.0  # R waves of ~1 mV
    ages = {n: s.age_mean for n, s in SITES.items()}
    assert ages["us_hospital"] > ages["eu_research"] + 15
    assert SITES["home_test"].ahi_median > SITES["eu_research"].ahi_median
    labels = [c.label for s in SITES.values() for c in s.channels]
    assert len(set(labels)) > 25


# ----------------------------------------------------------------------------- hypnograms


def _nights(age: float, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [synth_hypnogram(int(rng.uniform(6.5, 9.0) * 120), age, rng) for _ in range(n)]


@pytest.fixture(scope="module")
def young_nights() -> list[np.ndarray]:
    return _nights(30.0, 50, seed=0)


def test_hypnogram_basic_shape(young_nights):
    h = young_nights[0]
    assert h.dtype == np.int8 and h[0] == W and set(np.unique(h)) <= {W, N1, N2, N3, REM}
    assert len(synth_hypnogram(1, 30.0, np.random.default_rng(0))) == 1
    with pytest.raises(ValueError, match="n_epochs"):
        synth_hypnogram(0, 30.0, np.random.default_rng(0))


def test_hypnogram_cycles_n3_early_rem_late(young_nights):
    n3 = np.mean([tertile_fractions(h, N3) for h in young_nights], axis=0)
    rem = np.mean([tertile_fractions(h, REM) for h in young_nights], axis=0)
    assert n3[0] > 2 * n3[2]
    assert rem[2] > 2 * rem[0]
    fractions = np.mean([np.bincount(h, minlength=5) / len(h) for h in young_nights], axis=0)
    assert 0.4 < fractions[N2] < 0.6 and 0.1 < fractions[N3] < 0.25 and 0.12 < fractions[REM] < 0.3


def test_hypnogram_age_effects(young_nights):
    old = _nights(75.0, 50, seed=1)

    def frac(nights, stage):
        return np.mean([np.mean(h == stage) for h in nights])

    assert frac(old, N3) < 0.5 * frac(young_nights, N3)
    assert frac(old, W) > frac(young_nights, W) + 0.03  # more wake -> lower sleep efficiency
    assert frac(old, N1) > frac(young_nights, N1)


def test_hypnogram_transitions_close_to_fitted(young_nights):
    periods = []
    for h in young_nights:
        asleep = np.flatnonzero(h != W)
        periods.append(h[asleep[0] : asleep[-1] + 1])
    fitted = load_transitions().sleep_period
    assert np.abs(transition_matrix(periods) - fitted).max() < 0.1


def test_transition_json_is_row_stochastic_and_sourced():
    data = json.loads((REPO / "s2v_core" / "data" / "synth_transitions.json").read_text())
    assert "Sleep-EDF" in data["source"] and data["n_nights"] == 20
    for part in ("night", "sleep_period"):
        p = np.array(data[part]["probabilities"])
        assert p.shape == (5, 5) and np.allclose(p.sum(axis=1), 1.0, atol=1e-4)
        assert np.allclose(
            np.array(data[part]["tertile_probabilities"]).sum(axis=2), 1.0, atol=1e-4
        )
        counts = np.array(data[part]["counts"])
        assert counts.sum() == np.array(data[part]["tertile_counts"]).sum()


@pytest.mark.realdata
def test_transition_json_reproduces_from_sleep_edf():
    data_dir = shared_path("sleep-edf")
    spec = importlib.util.spec_from_file_location(
        "fit_transitions", REPO / "scripts" / "fit_transitions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fitted = module.fit(data_dir)
    stored = json.loads((REPO / "s2v_core" / "data" / "synth_transitions.json").read_text())
    assert fitted["night"]["counts"] == stored["night"]["counts"]
    assert fitted["sleep_period"]["tertile_counts"] == stored["sleep_period"]["tertile_counts"]


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="n_nights"):
        generate_cohort(0, tmp_path)
    with pytest.raises(ValueError, match="allowed: us_hospital"):
        generate_cohort(1, tmp_path, sites=["mars_lab"])
    with pytest.raises(ValueError, match="hours"):
        generate_cohort(1, tmp_path, hours=0.0)


@pytest.mark.slow
def test_eight_hour_full_psg_night_is_fast(tmp_path):
    import time

    from s2v_core.synth import write_edf, write_hypnogram

    spec = NightSpec("sub-001_night1", "sub-001", "us_hospital", 55.0, "M", 15.0, 8.0)
    t0 = time.process_time()
    night = generate_night(spec, np.random.default_rng(0))
    start = plan_cohort(1, seed=0, hours=8.0)[0].start
    write_edf(night, tmp_path / "n.edf", start)
    write_hypnogram(night, tmp_path / "n.xml", start)
    assert time.process_time() - t0 < 10.0
    assert read_edf(tmp_path / "n.edf")["duration"] == 8 * 3600
