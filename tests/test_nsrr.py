"""NSRR download layouts (SHHS, MESA, MrOS, CFS, WSC) -> store rows and a prepared store."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2v_core.cli.main import main as s2v
from s2v_core.cohort.nsrr import discover_nsrr, is_nsrr_layout, normalise_id
from s2v_core.cohort.prepare import prepare_store
from s2v_core.cohort.sources import discover_rows
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import InputFileError
from tests.edf_factory import psg_channels, write_edf

# NSRR XML stage concepts (REM is 5 in NSRR files)
CONCEPT = {0: "Wake|0", 1: "Stage 1 sleep|1", 2: "Stage 2 sleep|2", 3: "Stage 3 sleep|3",
           4: "REM sleep|5"}  # fmt: skip


def nsrr_xml(path: Path, stages: list[int]) -> Path:
    """A minimal NSRR ``PSGAnnotation`` file with one ``Stages|Stages`` event per epoch."""
    root = ET.Element("PSGAnnotation")
    ET.SubElement(root, "EpochLength").text = "30"
    events = ET.SubElement(root, "ScoredEvents")
    for i, s in enumerate(stages):
        ev = ET.SubElement(events, "ScoredEvent")
        ET.SubElement(ev, "EventType").text = "Stages|Stages"
        ET.SubElement(ev, "EventConcept").text = CONCEPT[s]
        ET.SubElement(ev, "Start").text = f"{30.0 * i:.1f}"
        ET.SubElement(ev, "Duration").text = "30.0"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def edf(path: Path, seed: int, minutes: float = 5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_edf(path, psg_channels(minutes=minutes, seed=seed))


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


STAGES_A = [0, 0, 1, 2, 2, 3, 3, 2, 4, 4]  # 10 epochs = 5 min


@pytest.fixture(scope="module")
def nsrr_root(tmp_path_factory) -> Path:
    """A folder that will hold two cohort trees, ``shhs/`` and ``mesa/``."""
    return tmp_path_factory.mktemp("nsrr")


@pytest.fixture(scope="module")
def shhs(nsrr_root) -> Path:
    """Participant 200001 at both SHHS visits, 200002 at visit 1 only."""
    root = nsrr_root / "shhs"
    psg = root / "polysomnography"
    for visit, pid, seed in ((1, "200001", 1), (1, "200002", 2), (2, "200001", 3)):
        stem = f"shhs{visit}-{pid}"
        edf(psg / "edfs" / f"shhs{visit}" / f"{stem}.edf", seed)
        nsrr_xml(psg / "annotations-events-nsrr" / f"shhs{visit}" / f"{stem}-nsrr.xml", STAGES_A)
    # a profusion file exists too; the NSRR XML must win
    touch(psg / "annotations-events-profusion" / "shhs1" / "shhs1-200001-profusion.xml")
    ds = root / "datasets"
    csv(ds / "shhs1-dataset-0.21.0.csv", [
        {"nsrrid": 200001, "age_s1": 63, "gender": 1, "clinic": 3, "bmi_s1": 27.1},
        {"nsrrid": 200002, "age_s1": 71, "gender": 2, "clinic": 5, "bmi_s1": 31.0},
    ])  # fmt: skip
    csv(ds / "shhs2-dataset-0.21.0.csv", [{"nsrrid": 200001, "age_s2": 68, "gender": 1}])
    csv(ds / "shhs-harmonized-dataset-0.21.0.csv", [
        {"nsrrid": 200001, "visitnumber": 1, "nsrr_age": 63, "nsrr_sex": "male",
         "nsrr_ahi_hp3r_aasm15": 12.5},
        {"nsrrid": 200001, "visitnumber": 2, "nsrr_age": 68, "nsrr_sex": "male",
         "nsrr_ahi_hp3r_aasm15": 20.0},
        {"nsrrid": 200002, "visitnumber": 1, "nsrr_age": None, "nsrr_sex": "not reported",
         "nsrr_ahi_hp3r_aasm15": None},
    ])  # fmt: skip
    csv(ds / "shhs-cvd-summary-dataset-0.21.0.csv", [{"nsrrid": 200001, "vital": 1}])
    return root


@pytest.fixture(scope="module")
def mesa(nsrr_root) -> Path:
    root = nsrr_root / "mesa"
    psg = root / "polysomnography"
    for pid, seed in (("0001", 4), ("0002", 5)):
        edf(psg / "edfs" / f"mesa-sleep-{pid}.edf", seed)
        nsrr_xml(psg / "annotations-events-nsrr" / f"mesa-sleep-{pid}-nsrr.xml", STAGES_A)
    ds = root / "datasets"
    csv(ds / "mesa-sleep-dataset-0.7.0.csv", [
        {"mesaid": 1, "sleepage5c": 66, "gender1": 0, "site5c": 4},
        {"mesaid": 2, "sleepage5c": 80, "gender1": 1, "site5c": 6},
    ])  # fmt: skip
    # the harmonised sex (text) is preferred; it agrees here except for an unreported value
    csv(ds / "mesa-sleep-harmonized-dataset-0.7.0.csv", [
        {"mesaid": 1, "examnumber": 5, "nsrr_age": 66, "nsrr_sex": "female"},
        {"mesaid": 2, "examnumber": 5, "nsrr_age": 80, "nsrr_sex": "not reported"},
    ])  # fmt: skip
    return root


# --- discovery -------------------------------------------------------------------------------------
def test_shhs_rows_visits_subjects_and_demographics(shhs):
    rows = {r["night"]: r for r in discover_nsrr(shhs)}
    assert sorted(rows) == ["shhs1-200001", "shhs1-200002", "shhs2-200001"]
    a, b, c = rows["shhs1-200001"], rows["shhs2-200001"], rows["shhs1-200002"]
    assert a["subject"] == b["subject"] == "shhs-200001" != c["subject"]
    assert (a["visit"], b["visit"], a["cohort"]) == (1, 2, "shhs")
    assert (a["age"], b["age"]) == (63.0, 68.0)  # each visit its own age
    assert (a["sex"], b["sex"], c["sex"]) == ("M", "M", "F")  # c: nsrr_sex unreported -> gender
    assert c["age"] == 71.0  # nsrr_age empty -> age_s1 of the visit-1 dataset
    assert (a["site"], b["site"], c["site"]) == ("shhs-3", "shhs-3", "shhs-5")
    assert (a["ahi"], b["ahi"], c["ahi"]) == (12.5, 20.0, None)
    assert a["psg_file"] == "polysomnography/edfs/shhs1/shhs1-200001.edf"
    assert a["hypnogram_file"].endswith("annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml")


def test_mesa_ids_without_zeros_and_gender1_coding(mesa):
    rows = {r["night"]: r for r in discover_nsrr(mesa)}
    one, two = rows["mesa-sleep-0001"], rows["mesa-sleep-0002"]
    assert (one["subject"], one["visit"]) == ("mesa-0001", None)
    assert (one["age"], one["sex"], one["site"]) == (66.0, "F", "mesa-4")
    assert (two["age"], two["sex"], two["site"]) == (80.0, "M", "mesa-6")  # gender1 1 = male
    assert two["hypnogram_file"] == "polysomnography/annotations-events-nsrr/mesa-sleep-0002-nsrr.xml"


def test_mros_cfs_wsc_conventions(tmp_path):
    mros, cfs, wsc = tmp_path / "mros", tmp_path / "cfs", tmp_path / "wsc"
    touch(mros / "polysomnography/edfs/visit1/mros-visit1-aa0001.edf")
    touch(mros / "polysomnography/edfs/visit2/mros-visit2-aa0001.edf")
    touch(mros / "polysomnography/annotations-events-nsrr/visit2/mros-visit2-aa0001-nsrr.xml")
    csv(mros / "datasets/mros-visit1-dataset-0.6.0.csv",
        [{"nsrrid": "AA0001", "vsage1": 77, "gender": 2, "site": 3}])  # fmt: skip
    csv(mros / "datasets/mros-visit2-dataset-0.6.0.csv", [{"nsrrid": "AA0001", "vs2age1": 81}])
    touch(cfs / "polysomnography/edfs/cfs-visit5-800002.edf")
    csv(cfs / "datasets/cfs-visit5-dataset-0.7.0.csv",
        [{"nsrrid": 800002, "age": 41, "male": 0}])  # fmt: skip
    touch(wsc / "polysomnography/wsc-visit1-10119-nsrr.edf")
    touch(wsc / "polysomnography/wsc-visit3-10119-nsrr.edf")
    touch(wsc / "polysomnography/wsc-visit3-10119-nsrr.xml")
    csv(wsc / "datasets/wsc-dataset-0.8.0.csv", [
        {"wsc_id": 10119, "wsc_vst": 1, "age": 50, "sex": "F"},
        {"wsc_id": 10119, "wsc_vst": 3, "age": 58, "sex": "F"},
    ])  # fmt: skip
    rows = {r["night"]: r for r in discover_nsrr(tmp_path)}  # a folder of three trees
    m1, m2 = rows["mros-visit1-aa0001"], rows["mros-visit2-aa0001"]
    assert m1["subject"] == m2["subject"] == "mros-aa0001"
    assert (m1["age"], m2["age"], m1["sex"], m2["sex"]) == (77.0, 81.0, "M", "M")
    assert m1["site"] == "mros-PA" and m2["site"] == "mros-PA"  # site code 3 = Palo Alto
    assert m1["hypnogram_file"] is None and m2["hypnogram_file"].endswith("-nsrr.xml")
    assert m1["psg_file"] == "mros/polysomnography/edfs/visit1/mros-visit1-aa0001.edf"
    c = rows["cfs-visit5-800002"]
    assert (c["subject"], c["visit"], c["age"], c["sex"], c["site"]) == (
        "cfs-800002", 5, 41.0, "F", "cfs")
    w1, w3 = rows["wsc-visit1-10119-nsrr"], rows["wsc-visit3-10119-nsrr"]
    assert w1["subject"] == w3["subject"] == "wsc-10119"
    assert (w1["age"], w3["age"], w3["sex"], w3["site"]) == (50.0, 58.0, "F", "wsc")
    assert w3["hypnogram_file"] == "wsc/polysomnography/wsc-visit3-10119-nsrr.xml"


def test_unknown_names_are_kept_with_a_warning(tmp_path, caplog):
    touch(tmp_path / "polysomnography/edfs/night-a.edf")
    with caplog.at_level(logging.WARNING):
        rows = discover_nsrr(tmp_path)
    assert rows[0]["night"] == rows[0]["subject"] == "night-a"
    assert "not named like any known cohort" in caplog.text


def test_ids_and_layout_detection(tmp_path, shhs):
    assert normalise_id("0001") == normalise_id(1) == normalise_id("1.0") == "1"
    assert normalise_id(" aa0001 ") == "AA0001" and normalise_id(float("nan")) is None
    assert is_nsrr_layout(shhs) and is_nsrr_layout(shhs.parent) and not is_nsrr_layout(tmp_path)
    with pytest.raises(InputFileError, match="no polysomnography"):
        discover_nsrr(tmp_path)
    with pytest.raises(ValueError, match="unknown layout"):
        discover_rows(shhs, layout="psg")
    with pytest.raises(ValueError, match="does not apply"):
        discover_rows(shhs, tmp_path / "m.csv", layout="nsrr")
    # a folder with its own metadata.csv stays flat even if it has polysomnography/
    flat = tmp_path / "flat"
    touch(flat / "polysomnography" / "x.edf")
    csv(flat / "metadata.csv", [{"night": "x", "psg_file": "polysomnography/x.edf"}])
    assert discover_rows(flat)[0]["psg_file"] == "polysomnography/x.edf"
    assert "cohort" not in discover_rows(flat)[0]


# --- prepare ---------------------------------------------------------------------------------------
def test_prepare_nsrr_cohorts_into_one_store(shhs, mesa, tmp_path, capsys):
    store = tmp_path / "store"
    assert s2v(["prepare", str(shhs.parent), "--out", str(store), "--quiet"]) == 0  # auto layout
    s = CohortStore(store)
    assert sorted(s.nights()) == ["mesa-sleep-0001", "mesa-sleep-0002", "shhs1-200001",
                                  "shhs1-200002", "shhs2-200001"]  # fmt: skip
    m = s.manifest
    assert m.loc["shhs1-200001", "split"] == m.loc["shhs2-200001", "split"]  # one subject
    assert m.loc["shhs2-200001", "subject"] == "shhs-200001"
    assert s.entry("mesa-sleep-0001").sex == "F" and s.entry("shhs1-200001").ahi == 12.5
    night = s.night("shhs1-200001")
    np.testing.assert_array_equal(night.stages, STAGES_A)  # NSRR REM 5 -> 4
    assert {"eeg", "eog", "emg", "ecg", "spo2"} <= set(night.modalities)
    assert set(s.site_index()) == {"mesa-4", "mesa-6", "shhs-3", "shhs-5"}
    again = prepare_store(shhs.parent, store, progress=False)  # resumable: nothing redone
    assert again.attrs["summary"] == {"done": 0, "skipped": 5, "failed": 0}


def test_layout_nsrr_on_a_plain_folder_is_a_clear_error(tmp_path, capsys):
    touch(tmp_path / "a.edf")
    assert s2v(["prepare", str(tmp_path), "--out", str(tmp_path / "s"), "--layout", "nsrr"]) == 2
    assert "not an NSRR download" in capsys.readouterr().err
