"""Cohort store: subject splits, resumable atomic preparation, manifest, memory-mapped reads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2v_core.cohort import prepare as prepare_mod
from s2v_core.cohort.prepare import prepare_one, prepare_store
from s2v_core.cohort.sources import discover_rows
from s2v_core.cohort.store import CohortStore, StoreEntry, split_for_subject
from s2v_core.errors import InputFileError
from s2v_core.modalities import MODALITIES, samples_per_epoch
from s2v_core.night import Night, NightMeta
from tests.edf_factory import psg_channels, write_edf

# --- helpers shared with test_windows ------------------------------------------------------------


def random_night(
    night_id: str,
    n_epochs: int,
    modalities: tuple[str, ...] = ("eeg", "ecg", "spo2"),
    *,
    seed: int = 0,
    offset: float = 50.0,
    scale: float = 10.0,
    invalid: dict[str, np.ndarray] | None = None,
) -> Night:
    """A canonical night of random signals ``offset + scale * N(0, 1)`` (physical units)."""
    rng = np.random.default_rng(seed)
    signals = {
        m: (offset + scale * rng.standard_normal((n_epochs, samples_per_epoch(m)))).astype(
            np.float32
        )
        for m in modalities
    }
    valid = {m: np.ones(n_epochs, bool) for m in modalities}
    for m, mask in (invalid or {}).items():
        valid[m] = ~np.asarray(mask, bool)
        signals[m][~valid[m]] = np.nan
    stages = rng.integers(-1, 5, n_epochs).astype(np.int8)
    return Night(
        meta=NightMeta(night_id=night_id), signals=signals, epoch_valid=valid, stages=stages
    )


def build_store(
    tmp: Path, nights: dict[str, tuple[Night, dict]], monkeypatch, *, seed: int = 0
) -> Path:
    """Prepare a store from in-memory nights through the real prepare_store (loader stubbed).

    ``nights``: night id -> (Night, metadata row fields such as subject, site, age, sex).
    """
    source, store = tmp / "source", tmp / "store"
    source.mkdir(parents=True, exist_ok=True)
    rows = [{"night": k, "psg_file": f"{k}.edf", **extra} for k, (_, extra) in nights.items()]
    pd.DataFrame(rows).to_csv(source / "metadata.csv", index=False)

    def fake_load(path, hypnogram=None, *, meta=None, **kw):
        night = nights[Path(path).stem][0]
        night.meta = meta
        return night

    monkeypatch.setattr(prepare_mod, "load_recording", fake_load)
    prepare_store(source, store, seed=seed, progress=False)
    return store


# --- splits ----------------------------------------------------------------------------------------


def test_split_is_deterministic_and_stable():
    subjects = [f"s{i:04d}" for i in range(300)]
    first = [split_for_subject(s) for s in subjects]
    assert first == [split_for_subject(s) for s in reversed(subjects)][::-1]
    assert first == [split_for_subject(s, seed=0) for s in subjects]
    # pinned: the hash scheme must never change, or existing stores would silently reshuffle
    assert first[:12] == [
        "val",
        "train",
        "train",
        "train",
        "test",
        "train",
        "train",
        "train",
        "train",
        "val",
        "train",
        "train",
    ]
    assert Counter(first) == {"train": 230, "val": 28, "test": 42}
    other = [split_for_subject(s, seed=1) for s in subjects]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 30  # a new seed reshuffles


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5, 0.0)])
def test_split_fractions_within_three_percent(fractions):
    splits = Counter(
        split_for_subject(f"subject-{i}", seed=3, fractions=fractions) for i in range(2000)
    )
    for name, share in zip(("train", "val", "test"), fractions, strict=True):
        assert abs(splits[name] / 2000 - share) < 0.03
    if fractions[2] == 0:
        assert splits["test"] == 0


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_for_subject("a", fractions=fractions)


# --- prepare_store with real EDF files -------------------------------------------------------------


@pytest.fixture(scope="module")
def edf_cohort(tmp_path_factory):
    """Six 2-minute EDF+ nights (3 subjects x 2 nights) plus a broken 'EDF' (a text file)."""
    src = tmp_path_factory.mktemp("cohort")
    rows = []
    for i in range(6):
        name = f"n{i}"
        write_edf(src / f"{name}.edf", psg_channels(minutes=2, seed=i))
        (src / f"{name}.csv").write_text("W\nN1\nN2\nREM\n")
        rows.append(
            {
                "night": name,
                "subject": f"subj{i // 2}",
                "site": "AB"[i % 2],
                "age": 40 + i,
                "sex": "MF"[i % 2],
                "ahi": 5.0 * i,
                "psg_file": f"{name}.edf",
                "hypnogram_file": f"{name}.csv",
                "hours": 2 / 60,
            }
        )
    (src / "broken.edf").write_text("this is not a recording\n")
    rows.append(
        {
            "night": "broken",
            "subject": "subj9",
            "site": "A",
            "age": 50,
            "sex": "M",
            "ahi": 1.0,
            "psg_file": "broken.edf",
            "hypnogram_file": "",
            "hours": 0.1,
        }
    )
    pd.DataFrame(rows).to_csv(src / "metadata.csv", index=False)
    return src


def _mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


def test_prepare_store_manifest_failures_and_idempotence(edf_cohort, tmp_path):
    store = tmp_path / "store"
    run = prepare_store(edf_cohort, store, progress=False)
    assert run.attrs["summary"] == {"done": 6, "skipped": 0, "failed": 1}
    manifest = pd.read_csv(store / "manifest.csv", dtype={"night": str})
    expected_cols = [
        "night",
        "subject",
        "site",
        "age",
        "sex",
        "ahi",
        "n_epochs",
        "modalities",
        "split",
        "psg_file",
        "labelled_epochs",  # scored epochs of the night (issue 16: 0 = no hypnogram paired)
    ]
    assert list(manifest.columns) == expected_cols
    assert sorted(manifest["night"]) == [f"n{i}" for i in range(6)]
    assert (manifest["n_epochs"] == 4).all()
    assert set(manifest["modalities"]) == {";".join(MODALITIES)}
    assert manifest.set_index("night").loc["n3", "ahi"] == 15.0
    # no subject straddles splits, and each split is the subject's hash split
    assert (manifest.groupby("subject")["split"].nunique() == 1).all()
    for _, r in manifest.iterrows():
        assert r["split"] == split_for_subject(r["subject"])
    failures = pd.read_csv(store / "failures.csv")
    assert failures["night"].tolist() == ["broken"]
    assert "not an EDF/BDF file" in failures["error"].iloc[0]
    assert not (store / "nights" / "broken").exists()
    folder = store / "nights" / "n2"
    scaling = json.loads((folder / "scaling.json").read_text())
    assert list(scaling) == list(MODALITIES)
    assert abs(scaling["spo2"][0] - 96) < 1  # median of the SpO2 channel, in %
    assert np.load(folder / "stages.npy").tolist() == [0, 1, 2, 4]  # the CSV hypnogram was used
    assert json.loads((folder / "night.json").read_text())["meta"]["age"] == 42

    before = _mtimes(store / "nights")
    again = prepare_store(edf_cohort, store, progress=False)
    assert again.attrs["summary"] == {"done": 0, "skipped": 6, "failed": 1}
    assert _mtimes(store / "nights") == before  # nothing rewritten
    manifest2 = pd.read_csv(store / "manifest.csv", dtype={"night": str})
    pd.testing.assert_frame_equal(manifest2, manifest)


def test_interrupted_night_is_redone(edf_cohort, tmp_path):
    store = tmp_path / "store"
    prepare_store(edf_cohort, store, progress=False)
    nights = store / "nights"
    # a night whose folder lost its completion marker, and a temp folder left by a killed run
    (nights / "n1" / "scaling.json").unlink()
    stale = nights / ".tmp-n4-abc123"
    stale.mkdir()
    (stale / "night.json").write_text("{}")
    run = prepare_store(edf_cohort, store, progress=False).set_index("night")
    assert run.loc["n1", "status"] == "done"
    assert run.loc[["n0", "n2", "n3", "n4", "n5"], "status"].eq("skipped").all()
    assert (nights / "n1" / "scaling.json").is_file()
    assert not list(nights.glob(".tmp-*"))
    assert CohortStore(store).night("n1").n_epochs == 4


def test_folder_scan_finds_hypnograms_and_joins_demographics(edf_cohort, tmp_path):
    src = tmp_path / "scan"
    src.mkdir()
    for name in ("n0", "n1"):
        (src / f"{name}.edf").write_bytes((edf_cohort / f"{name}.edf").read_bytes())
    (src / "n0.csv").write_text("N3\nN3\nW\nW\n")
    (src / "n1-Hypnogram.edf").write_bytes(b"")  # a hypnogram file is never taken for a recording
    demo = tmp_path / "demographics.csv"
    pd.DataFrame({"nsrrid": ["n0"], "age_s1": [63], "gender": [2], "clinic": ["X"]}).to_csv(
        demo, index=False
    )
    rows = discover_rows(src, demo)
    assert [r["night"] for r in rows] == ["n0", "n1"]
    assert rows[0]["hypnogram_file"] == "n0.csv" and rows[1]["hypnogram_file"] == "n1-Hypnogram.edf"
    rows[1]["hypnogram_file"] = None  # the empty placeholder above is not readable
    out = prepare_one(rows[0], src, tmp_path / "store")
    assert out["status"] == "done" and out["error"] == ""
    assert (out["age"], out["sex"], out["site"], out["subject"]) == (63.0, "F", "X", "n0")
    assert np.load(tmp_path / "store" / "nights" / "n0" / "stages.npy").tolist() == [3, 3, 0, 0]
    out = prepare_one(rows[1], src, tmp_path / "store")
    assert out["status"] == "done" and out["age"] is None and out["sex"] is None
    assert out["subject"] == "n1"  # unknown subject: one night per subject


# --- prepare_one with in-memory nights --------------------------------------------------------------


def test_prepare_one_reports_failures_and_never_raises(tmp_path, monkeypatch):
    assert (
        prepare_one({"night": "../evil", "psg_file": "x.edf"}, tmp_path, tmp_path)["status"]
        == "failed"
    )
    out = prepare_one({"night": "a"}, tmp_path, tmp_path / "s")
    assert out["status"] == "failed" and "psg_file" in out["error"]

    def boom(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(prepare_mod, "load_recording", boom)
    out = prepare_one({"night": "a", "psg_file": "a.edf"}, tmp_path, tmp_path / "s")
    assert out == {
        "night": "a",
        "psg_file": "a.edf",
        "status": "failed",
        "error": "decoder exploded",
    }
    assert not (tmp_path / "s" / "nights" / "a").exists()


def test_prepare_one_is_atomic_when_interrupted(tmp_path, monkeypatch):
    night = random_night("a", 6)
    monkeypatch.setattr(prepare_mod, "load_recording", lambda *a, **k: night)

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Night, "scaling_stats", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_one({"night": "a", "psg_file": "a.edf"}, tmp_path, tmp_path / "s")
    nights = tmp_path / "s" / "nights"
    assert not (nights / "a").exists() and not list(nights.iterdir())
    monkeypatch.undo()
    monkeypatch.setattr(prepare_mod, "load_recording", lambda *a, **k: night)
    out = prepare_one(
        {"night": "a", "psg_file": "a.edf", "split": "test"}, tmp_path, tmp_path / "s"
    )
    assert (
        out["status"] == "done"
        and out["split"] == "test"
        and out["modalities"] == ("eeg", "ecg", "spo2")
    )
    mtime = (nights / "a" / "eeg.npy").stat().st_mtime_ns
    assert (
        prepare_one({"night": "a", "psg_file": "a.edf"}, tmp_path, tmp_path / "s")["status"]
        == "skipped"
    )
    redo = prepare_one(
        {"night": "a", "psg_file": "a.edf"}, tmp_path, tmp_path / "s", overwrite=True
    )
    assert redo["status"] == "done" and (nights / "a" / "eeg.npy").stat().st_mtime_ns >= mtime


def test_cohort_store_reads_memory_mapped_nights(tmp_path, monkeypatch):
    nights = {
        f"n{i}": (
            random_night(f"n{i}", 5 + i, seed=i),
            {
                "subject": f"s{i // 2}",
                "site": ["B", "A", ""][i % 3],
                "age": 30 + i,
                "sex": "FMx"[i % 3],
            },
        )
        for i in range(6)
    }
    nights["n5"][0].signals.pop("spo2")
    nights["n5"][0].epoch_valid.pop("spo2")
    store = CohortStore(build_store(tmp_path, nights, monkeypatch))
    assert len(store) == 6 and store.nights() == [f"n{i}" for i in range(6)]
    assert sorted(sum((store.nights(s) for s in ("train", "val", "test")), [])) == store.nights()
    assert store.site_index() == {"A": 0, "B": 1}
    assert [store.sex_code(store.entry(n).sex) for n in store.nights()] == [0, 1, -1, 0, 1, -1]
    entry = store.entry("n5")
    assert isinstance(entry, StoreEntry)
    assert (entry.n_epochs, entry.modalities, entry.site, entry.age) == (
        10,
        ("eeg", "ecg"),
        None,
        35.0,
    )
    night = store.night("n3")
    assert isinstance(night.signals["eeg"], np.memmap)
    np.testing.assert_array_equal(night.signals["eeg"], nights["n3"][0].signals["eeg"])
    med, iqr = store.scaling("n3")["eeg"]
    assert abs(med - 50) < 0.5 and abs(iqr - 13.49) < 0.5  # IQR of N(0, 10) = 13.49
    with pytest.raises(ValueError, match="unknown night 'zz'"):
        store.night("zz")
    with pytest.raises(ValueError, match="unknown split"):
        store.nights("training")


def test_cohort_store_validates_its_folder(tmp_path, monkeypatch):
    with pytest.raises(InputFileError, match="no manifest.csv"):
        CohortStore(tmp_path)
    path = build_store(
        tmp_path, {"a": (random_night("a", 3), {}), "b": (random_night("b", 3), {})}, monkeypatch
    )
    (path / "nights" / "b" / "scaling.json").unlink()
    with pytest.raises(InputFileError, match=r"missing or unfinished.*\bb\b"):
        CohortStore(path)


def test_manifest_keeps_nights_of_earlier_runs(tmp_path, monkeypatch):
    path = build_store(tmp_path / "one", {"a": (random_night("a", 3), {})}, monkeypatch)
    build_store(tmp_path / "two", {"b": (random_night("b", 3), {})}, monkeypatch)
    # prepare a second source into the first store: both nights end up in the manifest
    prepare_store(tmp_path / "two" / "source", path, progress=False)
    assert CohortStore(path).nights() == ["a", "b"]


# --- a tiny synthetic cohort through the real loader -----------------------------------------------


def test_prepare_synthetic_cohort(tmp_path):
    cohort = pytest.importorskip("s2v_core.synth.cohort")
    from s2v_core.train.windows import PairFirstBatchSampler, WindowDataset, make_loader

    src = tmp_path / "cohort"
    cohort.generate_cohort(3, src, seed=0, hours=0.3)
    run = prepare_store(src, tmp_path / "store", progress=False)
    assert run.attrs["summary"] == {"done": 3, "skipped": 0, "failed": 0}
    store = CohortStore(tmp_path / "store")
    meta = pd.read_csv(src / "metadata.csv", dtype={"night": str, "subject": str})
    assert store.nights() == meta["night"].tolist()
    for _, row in meta.iterrows():
        e = store.entry(row["night"])
        assert (e.subject, e.site, e.age, e.sex, e.ahi) == (
            row["subject"],
            row["site"],
            row["age"],
            row["sex"],
            row["ahi"],
        )
        assert e.n_epochs == 36  # 0.3 h of 30-s epochs
        assert e.split == split_for_subject(e.subject)
        assert {"ecg", "ibi"} <= set(e.modalities)
        assert (np.asarray(store.night(e.night).stages) >= 0).mean() > 0.5  # hypnogram was read
    # end to end: one contrastive batch over the three nights
    ds = WindowDataset(store)
    batch = next(iter(make_loader(ds, PairFirstBatchSampler(ds, 3, pairs=[("ecg", "ibi")]))))
    assert batch["a"].shape == (3, 120, 3840) and batch["b"].shape == (3, 120, 120)
    assert batch["pad_valid"].sum(dim=1).tolist() == [36, 36, 36]
    assert (batch["valid"].sum(dim=1) >= 30).all()  # ECG and IBI usable in nearly every epoch
    assert sorted(batch["night_index"].tolist()) == [0, 1, 2]
