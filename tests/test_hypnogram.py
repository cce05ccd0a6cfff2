"""Hypnogram readers: every format written small in tmp_path, exact stage arrays, errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyedflib
import pytest
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2v_core.errors import HypnogramError
from s2v_core.io.hypnogram import (
    FORMATS,
    Hypnogram,
    detect_format,
    hypnogram_from_annotations,
    read_hypnogram,
    regrid_stages,
    trim_to_sleep_period,
)
from s2v_core.io.hypnogram import formats as hypno_formats
from tests.edf_bytes import Signal, contiguous_onsets, write_edf_bytes
from tests.fuzz_corpus.targets import run_bounded

START = datetime(2001, 2, 3, 22, 0, 0)
NSRR = {
    0: "Wake|0",
    1: "Stage 1 sleep|1",
    2: "Stage 2 sleep|2",
    3: "Stage 3 sleep|3",
    4: "REM sleep|5",
    -1: "Unscored|9",
}
PROFUSION = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5, -1: 9}
DREAMS = {0: 5, 1: 3, 2: 2, 3: 1, 4: 4, -1: -1}
LABELS = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM", -1: "?"}
stage_lists = st.lists(st.integers(-1, 4), min_size=1, max_size=80)
PROPERTY = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --- writers ------------------------------------------------------------------------------


def write_annotation_edf(path: Path, annotations, start: datetime = START) -> Path:
    """Annotation-only EDF+ (like Sleep-EDF *-Hypnogram.edf), written byte by byte."""
    tals = b"+0\x14\x14\x00"
    for onset, duration, text in annotations:
        tal = f"+{onset:g}".encode()
        if duration is not None:
            tal += b"\x15" + f"{duration:g}".encode()
        tals += tal + b"\x14" + text.encode() + b"\x14\x00"
    tals += b"\x00" * (len(tals) % 2)
    recording = f"Startdate {start.strftime('%d-%b-%Y').upper()} X X X"
    header = (
        f"{'0':<8}{'X X X X':<80}{recording:<80}{start:%d.%m.%y}{start:%H.%M.%S}"
        f"{512:<8}{'EDF+C':<44}{1:<8}{0:<8}{1:<4}"
    )
    signal = f"{'EDF Annotations':<16}{'':<80}{'':<8}{-1:<8}{1:<8}{-32768:<8}{32767:<8}{'':<80}{len(tals) // 2:<8}{'':<32}"
    path.write_bytes(header.encode("ascii") + signal.encode("ascii") + tals)
    return path


def write_psg_edf(path: Path, annotations, seconds: int = 300) -> Path:
    """EDF+ with one EEG signal and annotations, written by pyedflib."""
    writer = pyedflib.EdfWriter(str(path), 1, pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeader(
        0,
        {
            "label": "EEG Fpz-Cz",
            "dimension": "uV",
            "sample_frequency": 10,
            "physical_max": 100.0,
            "physical_min": -100.0,
            "digital_max": 32767,
            "digital_min": -32768,
        },
    )
    writer.setStartdatetime(START)
    writer.writeSamples([np.zeros(10 * seconds)])
    for onset, duration, text in annotations:
        writer.writeAnnotation(onset, duration, text)
    writer.close()
    return path


def nsrr_xml(stage_events, other=()) -> str:
    rows = [
        "<ScoredEvent><EventType/><EventConcept>Recording Start Time</EventConcept><Start>0</Start><Duration>99999.0</Duration><ClockTime>00.00.00 23.00.00</ClockTime></ScoredEvent>"
    ]
    rows += [
        f"<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>{c}</EventConcept><Start>{s}</Start><Duration>{d}</Duration></ScoredEvent>"
        for s, d, c in stage_events
    ]
    rows += [
        f"<ScoredEvent><EventType>{t}</EventType><EventConcept>{c}</EventConcept><Start>{s}</Start><Duration>{d}</Duration></ScoredEvent>"
        for t, c, s, d in other
    ]
    body = "\n".join(rows)
    return f'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<PSGAnnotation>\n<SoftwareVersion>Compumedics</SoftwareVersion>\n<EpochLength>30</EpochLength>\n<ScoredEvents>\n{body}\n</ScoredEvents>\n</PSGAnnotation>\n'


def profusion_xml(codes, epoch_length=30, events=()) -> str:
    stages = "".join(f"<SleepStage>{c}</SleepStage>" for c in codes)
    scored = "".join(
        f"<ScoredEvent><Name>{n}</Name><Start>{s}</Start><Duration>{d}</Duration><Input>SpO2</Input></ScoredEvent>"
        for n, s, d in events
    )
    return f'<?xml version="1.0" encoding="utf-8"?>\n<CMPStudyConfig><EpochLength>{epoch_length}</EpochLength><ScoredEvents>{scored}</ScoredEvents><SleepStages>{stages}</SleepStages></CMPStudyConfig>'


def write_wfdb(tmp: Path, notes: list[str], *, first_sample: int = 1, fs: int = 250) -> Path:
    samples = first_sample + np.arange(len(notes)) * 30 * fs
    wfdb.wrann(
        "rec", "st", samples, symbol=['"'] * len(notes), aux_note=notes, fs=fs, write_dir=str(tmp)
    )
    (tmp / "rec.hea").write_text(
        f"rec 1 {fs} {len(notes) * 30 * fs} 22:00:00 03/02/2001\nrec.dat 212 200 12 0 0 0 0 ECG\n"
    )
    return tmp / "rec.st"


def run_lengths(stages, splits):
    """Merge consecutive identical epochs into (start_s, duration_s, stage) events; split where asked."""
    events, start = [], 0
    for i in range(1, len(stages) + 1):
        if i == len(stages) or stages[i] != stages[start] or splits[i % len(splits)]:
            events.append((30.0 * start, 30.0 * (i - start), stages[start]))
            start = i
    return events


# --- the epoch grid ---------------------------------------------------------------------------


def test_regrid_dreams_majority_ties_and_half_rule():
    five = np.array([2, 2, 2, 3, 3, 3, 0, 0, 0, 0, -1, -1, 4, 4, -1, -1, -1, -1, 1])
    # epoch 0: 3 N2 vs 3 N3 -> earliest (N2); epoch 1: 4 W; epoch 2: 10 s scored < 15 -> -1;
    # epoch 3 holds one 5-s code -> -1
    assert regrid_stages(five, 5.0).tolist() == [2, 0, -1, -1]


def test_regrid_20s_epochs_by_overlap():
    # 20-s epochs A B C D E F over 120 s -> [0,30): A20 B10; [30,60): B10 C20; ...
    assert regrid_stages(np.array([0, 1, 2, 3, 4, 4]), 20.0).tolist() == [0, 2, 3, 4]
    assert regrid_stages(np.array([2, 2, 3]), 30.0).tolist() == [2, 2, 3]


@given(
    st.lists(st.tuples(st.integers(-1, 4), st.integers(1, 5)), min_size=1, max_size=30),
    st.sampled_from([1.0, 5.0, 10.0, 15.0, 30.0]),
)
@settings(max_examples=60, deadline=None)
def test_regrid_constant_blocks_is_identity(blocks, src):
    dst = 30.0
    per_block = int(dst / src)
    stages = np.repeat([b for b, _ in blocks], [n for _, n in blocks])
    fine = np.repeat(stages, per_block)
    assert regrid_stages(fine, src, dst).tolist() == stages.tolist()


def test_annotations_off_grid_overlap_and_unknown_labels():
    hyp = hypnogram_from_annotations([0, 45, 100], [45, 55, 50], ["W", "N2", "Sleep stage 3"])
    # [0,30) W; [30,60) W15 N2 15 -> tie, earliest W; [60,90) N2; [90,120) N2 10 N3 20 -> N3; [120,150) N3 30
    assert hyp.stages.tolist() == [0, 0, 2, 3, 3]
    with pytest.raises(
        HypnogramError, match=r"2 unknown stage labels in 3 annotations: 'Stage X' \(2x\), 'N5'"
    ) as err:
        hypnogram_from_annotations(
            [0, 30, 60, 90], [30] * 4, ["W", "Stage X", "N5", "Stage X"], source="/x/night.csv"
        )
    assert "night.csv" in str(err.value)


def test_annotations_events_overlaps_and_missing_durations():
    hyp = hypnogram_from_annotations(
        [0, 30, 60, 40, 90, 100, 150],
        [30, 60, 30, 20, np.nan, 10, np.nan],
        ["W", "N2", "REM", "Obstructive apnea", "N3", "Lights off", "N1"],
    )
    assert hyp.stages.tolist() == [0, 2, 4, 3, 3, 1]
    assert hyp.events[["label", "kind"]].values.tolist() == [
        ["Obstructive apnea", "apnea"],
        ["Lights off", "other"],
    ]
    assert any("overlap a different stage" in w for w in hyp.warnings)
    assert any("2 stage annotations have no duration" in w for w in hyp.warnings)


def test_hypnogram_counts_frame_and_alignment():
    hyp = Hypnogram(np.array([0, 1, 2, 3, 4, -1, 2, -1, -1]), source="/d/a.edf")
    assert hyp.counts() == {"W": 1, "N1": 1, "N2": 2, "N3": 1, "REM": 1, "unscored": 3}
    frame = hyp.to_frame()
    assert frame["label"].tolist() == ["W", "N1", "N2", "N3", "REM", "?", "N2", "?", "?"]
    assert frame["onset_s"].tolist()[:3] == [0.0, 30.0, 60.0]
    assert hyp.aligned(7).stages.tolist() == [0, 1, 2, 3, 4, -1, 2]  # trailing -1 dropped
    assert hyp.aligned(7).warnings == []
    fixed = hyp.aligned(6)
    assert (
        fixed.stages.tolist() == [0, 1, 2, 3, 4, -1]
        and "1 of them were scored" in fixed.warnings[0]
    )
    assert (
        hyp.aligned(8).stages.tolist() == [0, 1, 2, 3, 4, -1, 2, -1]
        and hyp.aligned(8).warnings == []
    )
    assert hyp.aligned(10).stages.tolist()[-1] == -1 and "padded 1 " in hyp.aligned(10).warnings[0]
    with pytest.raises(
        HypnogramError,
        match=r"a\.edf: the hypnogram has 7 epochs \(3\.5 min\) but the signal has 3 epochs \(1\.5 min\).*allow_mismatch",
    ):
        hyp.aligned(3)
    with pytest.raises(
        HypnogramError, match="difference of 2 epochs is more than the tolerance of 1"
    ):
        hyp.aligned(5)
    assert hyp.aligned(5, tolerance_epochs=2).stages.tolist() == [0, 1, 2, 3, 4]
    forced = hyp.aligned(3, allow_mismatch=True)
    assert (
        forced.stages.tolist() == [0, 1, 2]
        and "trimmed 4 epochs" in forced.warnings[0]
        and "3 of them were scored" in forced.warnings[0]
    )
    assert hyp.aligned(20, allow_mismatch=True).stages.size == 20


@given(stage_lists, st.integers(0, 120), st.integers(0, 3), st.booleans())
@settings(max_examples=80, deadline=None)
def test_aligned_keeps_leading_epochs(stages, n, tolerance, allow):
    hyp = Hypnogram(np.array(stages))
    scored = [i for i, s in enumerate(stages) if s != -1 and i >= n]
    effective = scored[-1] + 1 if scored else min(n, len(stages))  # trailing -1 beyond n dropped
    if abs(effective - n) > tolerance and not allow:
        with pytest.raises(HypnogramError, match=f"the hypnogram has {effective} epochs"):
            hyp.aligned(n, tolerance_epochs=tolerance, allow_mismatch=allow)
        return
    out = hyp.aligned(n, tolerance_epochs=tolerance, allow_mismatch=allow)
    assert (len(out.warnings) == 1) == (effective != n)
    keep = min(n, len(stages))
    assert out.stages.size == n and out.stages[:keep].tolist() == stages[:keep]


def test_trim_to_sleep_period():
    stages = np.array([0] * 100 + [2, 2, 4] + [0] * 100 + [-1] * 5)
    hyp = Hypnogram(
        stages, events=hypnogram_from_annotations([3000, 0], [10, 30], ["Hypopnea", "W"]).events
    )
    night, first = trim_to_sleep_period(hyp, pad_minutes=5)
    assert first == 90 and night.stages.tolist() == [0] * 10 + [2, 2, 4] + [0] * 10
    assert night.events["onset_s"].tolist() == [3000 - 90 * 30]


# --- formats ----------------------------------------------------------------------------------


def test_sleep_edf_annotation_file(tmp_path):
    ann = [
        (0, 90, "Sleep stage W"),
        (90, 30, "Sleep stage 1"),
        (120, 60, "Sleep stage 2"),
        (180, 30, "Sleep stage 3"),
        (210, 30, "Sleep stage 4"),
        (240, 60, "Sleep stage R"),
        (300, 30, "Movement time"),
        (330, 60, "Sleep stage ?"),
    ]
    path = write_annotation_edf(tmp_path / "SC4001E0-Hypnogram.edf", ann)
    assert detect_format(path) == "sleep-edf"
    hyp = read_hypnogram(path)
    assert hyp.format == "sleep-edf" and hyp.stages.dtype == np.int8
    assert hyp.stages.tolist() == [0, 0, 0, 1, 2, 2, 3, 3, 4, 4, -1, -1, -1]
    late = read_hypnogram(
        path, recording_start=datetime(2001, 2, 3, 21, 59, 0)
    )  # file starts 60 s later
    assert late.stages.tolist() == [-1, -1] + hyp.stages.tolist()
    early = read_hypnogram(path, recording_start=datetime(2001, 2, 3, 22, 1, 0))
    assert (
        early.stages.tolist() == hyp.stages.tolist()[2:]
        and "before the recording" in early.warnings[0]
    )


def test_edf_annotations_inside_psg(tmp_path):
    ann = [
        (0, 30, "Sleep stage W"),
        (30, 60, "Sleep stage 2"),
        (45, 12.5, "Obstructive Apnea"),
        (90, 30, "Sleep stage R"),
        (100, 3, "Arousal"),
        (120, -1, "Sleep stage 3"),
        (150, -1, "Lights on"),
    ]
    path = write_psg_edf(tmp_path / "psg.edf", ann)
    assert detect_format(path) == "edf-annotations"
    hyp = read_hypnogram(path)
    assert hyp.stages.tolist() == [0, 2, 2, 4, 3]  # no duration: one epoch
    assert hyp.events[["onset_s", "duration_s", "kind"]].values.tolist()[:2] == [
        [45.0, 12.5, "apnea"],
        [100.0, 3.0, "arousal"],
    ]
    assert hyp.events["label"].tolist()[-1] == "Lights on"


def test_nsrr_xml(tmp_path):
    stages = [
        (0, 60, "Wake|0"),
        (60, 30, "Stage 1 sleep|1"),
        (90, 90, "Stage 2 sleep|2"),
        (180, 30, "Stage 4 sleep|4"),
        (210, 30, "Stage 3 sleep|3"),
        (240, 60, "REM sleep|5"),
        (300, 30, "Movement|6"),
        (330, 30, "Unscored|9"),
    ]
    other = [
        ("Respiratory|Respiratory", "Obstructive apnea|Obstructive Apnea", 95.5, 12),
        ("Respiratory|Respiratory", "Hypopnea|Hypopnea", 130, 15),
        ("Respiratory|Respiratory", "SpO2 desaturation|SpO2 desaturation", 140, 20),
        ("Arousals|Arousals", "Arousal|Arousal ()", 200, 5),
        ("Limb Movement|Limb Movement", "Limb Movement (Left)|Limb Movement (Left)", 250, 2),
    ]
    path = tmp_path / "shhs1-200001-nsrr.xml"
    path.write_text(nsrr_xml(stages, other))
    assert detect_format(path) == "nsrr-xml"
    hyp = read_hypnogram(path)
    assert hyp.stages.tolist() == [0, 0, 1, 2, 2, 2, 3, 3, 4, 4, -1, -1]
    assert hyp.events["kind"].tolist() == ["apnea", "hypopnea", "desaturation", "arousal", "limb"]
    assert hyp.events["label"].tolist()[0] == "Obstructive apnea"
    # NSRR times are relative to the recording start by convention: no warning for that
    assert read_hypnogram(path, recording_start=START).warnings == []


def test_profusion_xml(tmp_path):
    path = tmp_path / "study.xml"
    path.write_text(
        profusion_xml(
            [0, 0, 1, 2, 3, 4, 5, 9, 2],
            events=[("Obstructive Apnea", 120.5, 14), ("SpO2 desaturation", 130, 20)],
        )
    )
    assert detect_format(path) == "profusion-xml"
    hyp = read_hypnogram(path)
    assert hyp.stages.tolist() == [0, 0, 1, 2, 3, 3, 4, -1, 2]
    assert hyp.events["kind"].tolist() == ["apnea", "desaturation"]
    path.write_text(profusion_xml([0, 1, 2, 2, 2, 5], epoch_length=20))
    hyp20 = read_hypnogram(path)
    assert hyp20.stages.tolist() == [0, 2, 2, 4] and "re-gridded" in hyp20.warnings[0]


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("W\nN1\nN2\nN3\nR\nREM\n?\n", {}, [0, 1, 2, 3, 4, 4, -1]),
        ("Stage\nW\nN2\nN2\n", {}, [0, 2, 2]),
        ("0\n1\n2\n3\n4\n-1\n", {}, [0, 1, 2, 3, 4, -1]),
        ("0\n1\n2\n4\n5\n9\n", {}, [0, 1, 2, 3, 4, -1]),  # a 5 -> R&K codes, warned
        ("0\n1\n2\n4\n", {"codes": "rk"}, [0, 1, 2, 3]),
        ("epoch,stage\n1,W\n2,N1\n4,N2\n", {}, [0, 1, -1, 2]),
        ("1\tW\n2\tW\n3\tN3\n", {}, [0, 0, 3]),
        ("W\nW\nW\nN2\nN2\nN2\n", {"epoch_seconds": 20.0}, [0, 0, 2, 2]),
        (
            "Onset,Duration,Annotation\n+0.0000000,60.0000000,Sleep stage W\n+60.0000000,30.0000000,Sleep stage 2\n+70.0,5.0,Lights off\n+90.0000000,30.0000000,Sleep stage R\n",
            {},
            [0, 0, 2, 4],
        ),
        ("onset;duration;stage\n0;30,0;W\n30;60,0;N3\n", {}, [0, 3, 3]),
        ("Time\tStage\n23:59:00\tW\n23:59:30\tN1\n00:00:00\tN2\n00:00:30\tN2\n", {}, [0, 1, 2, 2]),
        ("0 30 Sleep stage W\n30 30 Sleep stage 2\n", {}, [0, 2]),
    ],
)
def test_csv_layouts(tmp_path, text, kwargs, expected):
    path = tmp_path / "hyp.txt"
    path.write_text(text)
    assert detect_format(path) == "csv"
    hyp = read_hypnogram(path, **kwargs)
    assert hyp.format == "csv" and hyp.stages.tolist() == expected


def test_csv_rk_warning_and_clock_alignment(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("0\n5\n")
    assert "R&K" in read_hypnogram(path).warnings[0]
    with pytest.raises(HypnogramError, match="codes.csv: 1 unknown stage labels in 1 rows.*'5'"):
        read_hypnogram(path, codes="project")
    clock = tmp_path / "clock.csv"
    clock.write_text("time,stage\n22:01:00,W\n22:01:30,N2\n")
    assert read_hypnogram(clock, recording_start=START).stages.tolist() == [-1, -1, 0, 2]


def test_dreams(tmp_path):
    path = tmp_path / "Hypnogram_excerptX.txt"
    path.write_text(
        "[Hypnogram]\n"
        + "\n".join(map(str, [5] * 6 + [3] * 4 + [2] * 2 + [0, 1, 1, 0, -2, -2] + [4] * 6))
        + "\n"
    )
    assert detect_format(path) == "dreams"
    assert read_hypnogram(path).stages.tolist() == [0, 1, 3, 4]
    assert read_hypnogram(path, epoch_seconds=30.0).stages.size == 24


def test_wfdb_stage_annotations(tmp_path):
    path = write_wfdb(tmp_path, ["W", "1", "2 OA", "3 H X", "4", "R LA", "MT", "M A", "2"])
    assert detect_format(path) == "wfdb"
    hyp = read_hypnogram(path)
    assert hyp.stages.tolist() == [0, 1, 2, 3, 3, 4, -1, -1, 2]
    assert hyp.events[["onset_s", "label", "kind"]].values.tolist() == [
        [60.0, "OA", "apnea"],
        [90.0, "H", "hypopnea"],
        [90.0, "X", "apnea"],
        [150.0, "LA", "limb"],
        [210.0, "A", "arousal"],
    ]
    shifted = read_hypnogram(path, recording_start=datetime(2001, 2, 3, 21, 59, 30))
    assert shifted.stages.tolist() == [-1] + hyp.stages.tolist()
    gap = write_wfdb(tmp_path, ["W", "2"], first_sample=2 * 7500 + 1)
    assert read_hypnogram(gap).stages.tolist() == [-1, -1, 0, 2]


# --- round trips ------------------------------------------------------------------------------


@given(stages=stage_lists, as_codes=st.booleans(), header=st.booleans())
@PROPERTY
def test_csv_round_trip(tmp_path, stages, as_codes, header):
    path = tmp_path / "prop.csv"
    cells = [str(s) for s in stages] if as_codes else [LABELS[s] for s in stages]
    path.write_text(("stage\n" if header else "") + "\n".join(cells) + "\n")
    assert read_hypnogram(path, fmt="csv").stages.tolist() == stages


@given(stages=stage_lists)
@PROPERTY
def test_csv_rk_codes_round_trip(tmp_path, stages):
    path = tmp_path / "rk.csv"
    path.write_text("\n".join(str(PROFUSION[s]) for s in stages) + "\n")
    assert read_hypnogram(path, codes="rk").stages.tolist() == stages


@given(stages=stage_lists, splits=st.lists(st.booleans(), min_size=1, max_size=7))
@PROPERTY
def test_nsrr_and_annotation_csv_round_trip(tmp_path, stages, splits):
    events = run_lengths(stages, splits)
    xml = tmp_path / "prop.xml"
    xml.write_text(nsrr_xml([(s, d, NSRR[c]) for s, d, c in events]))
    assert read_hypnogram(xml).stages.tolist() == stages
    table = tmp_path / "prop_events.csv"
    table.write_text(
        "onset,duration,label\n" + "".join(f"{s},{d},{LABELS[c]}\n" for s, d, c in events)
    )
    assert read_hypnogram(table).stages.tolist() == stages


@given(stages=stage_lists, s4=st.booleans())
@PROPERTY
def test_profusion_and_dreams_round_trip(tmp_path, stages, s4):
    xml = tmp_path / "prop_cmp.xml"
    xml.write_text(profusion_xml([4 if (s == 3 and s4) else PROFUSION[s] for s in stages]))
    assert read_hypnogram(xml).stages.tolist() == stages
    dreams = tmp_path / "prop_dreams.txt"
    five = [0 if (s == 3 and s4) else DREAMS[s] for s in stages for _ in range(6)]
    dreams.write_text("[Hypnogram]\n" + "\n".join(map(str, five)) + "\n")
    assert read_hypnogram(dreams).stages.tolist() == stages


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty file"),
        ("blank.csv", b"\n\n  \n", "empty file"),
        ("junk.bin", bytes(range(256)) * 4, "not a hypnogram file.*supported formats: sleep-edf"),
        (
            "broken.xml",
            b"<PSGAnnotation>\n<ScoredEvents>\n<ScoredEvent></Scored>\n",
            "malformed XML at line 3",
        ),
        (
            "other.xml",
            b"<Annotations><a/></Annotations>",
            "root <Annotations> is not a known hypnogram",
        ),
        (
            "entity.xml",
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><PSGAnnotation>&a;</PSGAnnotation>',
            "declare entities",
        ),
        ("labels.csv", b"W\nN2\nStage 5\nX\n", "2 unknown stage labels in 2 rows.*'Stage 5', 'X'"),
        (
            "negative.csv",
            b"onset,duration,stage\n0,30,W\n30,-30,N2\n",
            r"1 annotations have a negative duration \(first: 'N2' at 30 s, duration -30 s\)",
        ),
        ("long.csv", b"onset,duration,stage\n0,30,W\n1e9,30,N2\n", "spans 277778 h"),
        (
            "tz.csv",
            b"time,stage\n2024-01-01T22:00:00,W\n2024-01-01T22:00:30+01:00,N2\n",
            "time zone",
        ),
        ("header_only.csv", b"onset,duration,stage\n", "header but no rows"),
        ("dreams.txt", b"[Hypnogram]\n5\nfive\n", "line 3: 'five' is not an integer"),
        ("dreams7.txt", b"[Hypnogram]\n5\n7\n", r"unknown DREAMS codes \[7\]"),
        (
            "codes.xml",
            profusion_xml([0, 1, 8, 11]).encode(),
            "2 unknown Profusion sleep-stage codes in 2 epochs: '11', '8'",
        ),
        (
            "nostages.xml",
            nsrr_xml([], [("Respiratory|Respiratory", "Hypopnea|Hypopnea", 0, 10)]).encode(),
            "no 'Stages\\|Stages'",
        ),
        (
            "badconcept.xml",
            nsrr_xml([(0, 30, "Stage 9 sleep|9")]).encode(),
            "unknown stage labels.*Stage 9 sleep",
        ),
        ("nsrrneg.xml", nsrr_xml([(0, -30, "Wake|0")]).encode(), "negative duration"),
        (
            "onsets.csv",
            b"onset,stage\n0,W\nlater,N2\n",
            "onset 'later' is neither seconds nor a clock time",
        ),
    ],
)
def test_bad_files_raise_with_file_name(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(HypnogramError, match=message) as err:
        read_hypnogram(path)
    assert str(err.value).startswith(f"{name}: ")


def test_more_bad_inputs(tmp_path, monkeypatch):
    with pytest.raises(HypnogramError, match="missing.edf: file not found"):
        read_hypnogram(tmp_path / "missing.edf")
    good = tmp_path / "ok.csv"
    good.write_text("W\n")
    with pytest.raises(HypnogramError, match="unknown format 'edf'.*sleep-edf, edf-annotations"):
        read_hypnogram(good, fmt="edf")
    with pytest.raises(HypnogramError, match="codes must be one of auto, project, rk"):
        read_hypnogram(good, codes="aasm")
    big = tmp_path / "big.xml"
    big.write_text(nsrr_xml([(0, 30, "Wake|0")]))
    monkeypatch.setattr(hypno_formats, "MAX_XML_BYTES", 100)
    with pytest.raises(
        HypnogramError, match="big.xml: the XML file is 0 MB; hypnogram XML over 200 MB is refused"
    ):
        read_hypnogram(big, fmt="nsrr-xml")
    signal_only = tmp_path / "signals.edf"
    writer = pyedflib.EdfWriter(str(signal_only), 1, pyedflib.FILETYPE_EDF)
    writer.setSignalHeader(
        0,
        {
            "label": "hypnogram",
            "dimension": "",
            "sample_frequency": 1,
            "physical_max": 5.0,
            "physical_min": 0.0,
            "digital_max": 32767,
            "digital_min": -32768,
        },
    )
    writer.writeSamples([np.zeros(30)])
    writer.close()
    with pytest.raises(
        HypnogramError, match="signals.edf: EDF file without an 'EDF Annotations' signal.*hypnogram"
    ):
        read_hypnogram(signal_only)
    wf = write_wfdb(tmp_path, ["W", "Q 2"])
    with pytest.raises(HypnogramError, match="rec.st: 1 unknown stage codes in the aux notes: 'Q'"):
        read_hypnogram(wf)
    assert set(FORMATS) == {
        "sleep-edf",
        "edf-annotations",
        "nsrr-xml",
        "profusion-xml",
        "csv",
        "dreams",
        "wfdb",
    }


# --- fuzz findings: regression tests ---------------------------------------------------------


def test_edf_plus_d_annotations_read_by_the_recording_reader(tmp_path, monkeypatch):
    """EDF+D (pyedflib refuses it) goes through s2v_core.io.edf, not the MNE fallback."""
    onsets = contiguous_onsets(6, 30.0, {3: 60.0})  # records at 0 30 60 | 150 180 210 s
    stages = ["W", "1", "2", "3", "R", "2"]
    ann = [(float(t), 30.0, f"Sleep stage {s}") for t, s in zip(onsets, stages, strict=True)]
    path = write_edf_bytes(
        tmp_path / "gap.edf",
        [Signal("EEG", np.zeros(6 * 30), 30)],
        record_duration=30.0,
        record_onsets=onsets,
        file_type="EDF+D",
        annotations=[*ann, (160.0, 10.0, "Obstructive apnea")],
    )

    def no_mne(path):
        raise AssertionError("EDF+D annotations must not go through MNE")

    monkeypatch.setattr(hypno_formats, "_mne_annotation_arrays", no_mne)
    assert detect_format(path) == "edf-annotations"
    hyp = read_hypnogram(path)
    assert hyp.stages.tolist() == [0, 1, 2, -1, -1, 3, 4, 2]  # the 60-s gap is unscored
    assert hyp.events[["onset_s", "duration_s", "kind"]].values.tolist() == [[160.0, 10.0, "apnea"]]
    broken = bytearray(path.read_bytes())
    broken[-700:] = b"\xff" * 700  # time-keeping TALs of the last records destroyed
    (tmp_path / "broken.edf").write_bytes(bytes(broken))
    try:
        read_hypnogram(tmp_path / "broken.edf")
    except HypnogramError as err:
        assert "broken.edf" in str(err)


def test_nul_padded_annotation_label_is_the_annotation_signal(tmp_path):
    ann = [(0, 60, "Sleep stage W"), (60, 30, "Sleep stage 2"), (90, 30, "Sleep stage R")]
    path = write_annotation_edf(tmp_path / "SC-Hypnogram.edf", ann)
    data = bytearray(path.read_bytes())
    assert data[256:272] == b"EDF Annotations "
    data[256:272] = b"EDF Annotations\x00"
    path.write_bytes(bytes(data))
    assert detect_format(path) == "sleep-edf"
    assert read_hypnogram(path).stages.tolist() == [0, 0, 2, 4]


@pytest.mark.parametrize("value", ["0", "-30", "601", "inf", "nan", "1e999"])
def test_profusion_epoch_length_out_of_range(tmp_path, value):
    path = tmp_path / "study.xml"
    path.write_text(profusion_xml([0, 1, 2], epoch_length=value))
    with pytest.raises(HypnogramError, match=r"study.xml: <EpochLength> must be .* \(0, 600\]"):
        read_hypnogram(path)
    path.write_text(profusion_xml([0, 2], epoch_length=600))
    assert read_hypnogram(path).stages.tolist() == [0] * 20 + [2] * 20


def test_dreams_codes_of_any_size(tmp_path):
    path = tmp_path / "dreams.txt"
    path.write_text("[Hypnogram]\n-" + "9" * 5000 + "\n5\n5\n5\n5\n5\n")  # int() refuses 5000
    assert read_hypnogram(path, fmt="dreams").stages.tolist() == [0]  # 25 s W of 30
    path.write_text("[Hypnogram]\n5\n" + "9" * 5000 + "\n")
    with pytest.raises(HypnogramError, match=r"dreams.txt: unknown DREAMS codes \[10{18}\]"):
        read_hypnogram(path, fmt="dreams")
    path.write_text("[Hypnogram]\n5\n000000000000000000000000004\n")  # leading zeros: code 4
    assert read_hypnogram(path, fmt="dreams", epoch_seconds=30.0).stages.tolist() == [0, 4]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("epoch,stage\n0,W\n" + "9" * 5000 + ",N2\n", "is not an integer of up to 15 digits"),
        ("epoch,stage\n0,W\n20160,N2\n", "span 20161 epochs, more than 7 days"),
        ("epoch,stage\n0,W\n1,N2\n2," + "9" * 400 + "\n", "unknown stage labels"),
        ("1,W\n" + "9" * 5000 + ",N2\n", "some annotation onsets are not numbers"),
    ],
)
def test_csv_huge_numbers_are_refused(tmp_path, content, message):
    path = tmp_path / "big.csv"
    path.write_text(content)
    with pytest.raises(HypnogramError, match=f"big.csv: .*{message}"):
        read_hypnogram(path)


def test_csv_huge_negative_stage_code_is_unscored(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("stage\n0\n-" + "9" * 400 + "\n2\n")  # float() of it is -inf
    assert read_hypnogram(path).stages.tolist() == [0, -1, 2]


def test_csv_epoch_numbers_at_the_seven_day_limit(tmp_path):
    path = tmp_path / "week.csv"
    path.write_text("epoch,stage\n0,W\n20159,N2\n")
    hyp = read_hypnogram(path)
    assert hyp.n_epochs == 20160 and hyp.stages[[0, 1, -1]].tolist() == [0, -1, 2]


def _wfdb_notes(tmp: Path, notes: list[bytes]) -> Path:
    """A ``.st`` file of NOTE annotations at sample 0, one aux note each, written by hand."""
    body = b"".join(b"\x00\x58" + bytes([len(n), 0xFC]) + n + b"\x00" * (len(n) % 2) for n in notes)
    (tmp / "defs.hea").write_text("defs 1 250 7500\ndefs.dat 16 200 16 0 0 0 0 ECG\n")
    (tmp / "defs.st").write_bytes(body + b"\x00\x00")
    return tmp / "defs.st"


@pytest.mark.parametrize(
    "notes",
    [
        [b"## x"],
        [b"## time resolution: 250", b"## time resolution: 100"],
        [b"## time resolution: x"],
        [b"## end of definitions", b"## annotation type definitions"],
        [b"## annotation type definitionsX", b"## end of definitions"],
        [b"W", b"## annotation type definitions", b"1 A a", b"## end of definitions", b"## y"],
    ],
)
def test_wfdb_definition_notes_that_hang_wfdb_are_refused(tmp_path, notes):
    """wfdb 4.3.1's rdann loops forever on these; they must be refused within the CPU bound."""
    path = _wfdb_notes(tmp_path, notes)
    with pytest.raises(HypnogramError, match="defs.st: corrupt WFDB annotation file"):
        run_bounded(2.0, read_hypnogram, path, "wfdb")


def test_wfdb_definition_notes_written_by_wfdb_are_read(tmp_path):
    samples, notes = np.array([1, 7501]), ["W", "2 ## not a definition"]
    custom = {"label_store": [42], "symbol": ["Z"], "description": ["custom"]}
    wfdb.wrann(
        "rec", "st", samples, symbol=['"'] * 2, aux_note=notes, fs=250,
        custom_labels=pd.DataFrame(custom), write_dir=str(tmp_path),
    )  # fmt: skip
    path = tmp_path / "rec.st"
    raw = path.read_bytes()
    assert b"## time resolution: 250" in raw and b"## annotation type definitions" in raw
    hyp = read_hypnogram(path)
    assert hyp.stages.tolist() == [0, 2] and hyp.events["label"].tolist() == [
        "##",
        "not",
        "a",
        "definition",
    ]
