"""Limits on user-supplied text tables (issue 16): hypnograms of every format, metadata CSVs.

Each class of fault has several members, one per format or path. Every refusal must be the
project's error (:class:`HypnogramError` / :class:`InputFileError`), one short line (under 300
characters) that quotes none of the huge content, and come fast; the time bound (10 s) only
guards against a hang (before the limits, one 2 MB label took 44 s and 4.3 GB). Files of
every format within the limits still read. The limits are in :mod:`s2v_core.io.text_limits`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2v_core.errors import HypnogramError, InputFileError
from s2v_core.io import text_limits
from s2v_core.io.hypnogram import formats as hypno_formats
from s2v_core.io.hypnogram import read_hypnogram, wfdb_stages
from s2v_core.io.metadata import read_metadata_csv
from s2v_core.io.text_limits import (
    MAX_ANNOTATIONS,
    MAX_EDF_ANNOTATION_BYTES,
    MAX_FIELD_CHARS,
    MAX_LABEL_CHARS,
    MAX_TABLE_BYTES,
    MAX_TEXT_BYTES,
    MAX_TEXT_ROWS,
    MAX_WFDB_BYTES,
    excerpt,
)
from s2v_core.night_heads.tasks import join_metadata
from tests.edf_bytes import Signal, contiguous_onsets, write_edf_bytes
from tests.test_hypnogram import nsrr_xml, profusion_xml, write_psg_edf, write_wfdb

HANG_GUARD_S = 10.0
"""Only a guard against hangs and runaway work, not a timing goal."""
HUGE = 2_000_000
"""A huge label or field, in characters (the size that took 44 s and 4.3 GB before)."""
START = datetime(2001, 2, 3, 22, 0, 0)


def put(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def annotation_edf(path: Path, annotations, n_samples: int | None = None) -> Path:
    """Annotation-only EDF+ (Sleep-EDF ``*-Hypnogram.edf``), one data record, built in O(n)."""
    parts = [b"+0\x14\x14\x00"]
    for onset, duration, text in annotations:
        parts.append(f"+{onset:g}\x15{duration:g}\x14".encode() + text.encode() + b"\x14\x00")
    tals = b"".join(parts)
    tals += b"\x00" * (len(tals) % 2)
    samples = n_samples if n_samples is not None else len(tals) // 2
    recording = f"Startdate {START.strftime('%d-%b-%Y').upper()} X X X"
    header = (
        f"{'0':<8}{'X X X X':<80}{recording:<80}{START:%d.%m.%y}{START:%H.%M.%S}"
        f"{512:<8}{'EDF+C':<44}{1:<8}{0:<8}{1:<4}"
    )
    signal = (
        f"{'EDF Annotations':<16}{'':<80}{'':<8}{-1:<8}{1:<8}{-32768:<8}{32767:<8}{'':<80}"
        f"{samples:<8}{'':<32}"
    )
    path.write_bytes(header.encode("ascii") + signal.encode("ascii") + tals)
    return path


def psg_edf_with_annotation(path: Path, text: str, *, discontinuous: bool = False) -> Path:
    """EDF+C (pyedflib path) or EDF+D (native path): a 10-Hz EEG and one long annotation."""
    n_rec = 8
    eeg = Signal("EEG Fpz-Cz", np.zeros(n_rec * 300), 300)
    onsets = contiguous_onsets(n_rec, 30.0, {4: 60.0} if discontinuous else {})
    return write_edf_bytes(
        path,
        [eeg],
        record_duration=30.0,
        record_onsets=onsets,
        file_type="EDF+D" if discontinuous else "EDF+C",
        annotations=[(0.0, 30.0, "Sleep stage W"), (30.0, 30.0, text)],
    )


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no disk space (only its size is looked at)."""
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def refused(call: Callable, error: type[Exception], *, huge: str | None = None) -> str:
    """``call()`` must raise ``error``: one short line, none of ``huge`` in it, within the guard."""
    started = time.perf_counter()
    with pytest.raises(error) as info:
        call()
    elapsed = time.perf_counter() - started
    message = str(info.value)
    assert elapsed < HANG_GUARD_S, f"{elapsed:.1f} s"
    assert len(message) < 300, message
    assert "\n" not in message and "Traceback" not in message
    if huge:
        assert huge[:100] not in message, message[:300]
    return message


def hypnogram_refused(path: Path, *, fmt: str = "auto", huge: str | None = None) -> str:
    message = refused(lambda: read_hypnogram(path, fmt), HypnogramError, huge=huge)
    assert message.startswith(f"{path.name}: "), message  # names the file, never its folder
    return message


# --- a huge label, in every format that has labels ---------------------------------------------------
def _csv_epochs(d: Path, text: str) -> Path:
    return put(d / "epochs.csv", "W\nN1\n" + text + "\nN2\n")


def _csv_annotations(d: Path, text: str) -> Path:
    rows = "".join(f"{30 * i},30,W\n" for i in range(960))
    (d / "ann.csv").write_text("onset,duration,stage\n0,30,N2\n30,30," + text + "\n" + rows)
    return d / "ann.csv"


def _bids_events(d: Path, text: str) -> Path:
    (d / "sub-01_events.tsv").write_text("onset\tduration\tvalue\n0\t30\tW\n30\t30\t" + text + "\n")
    return d / "sub-01_events.tsv"


def _dreams(d: Path, text: str) -> Path:
    (d / "dreams.txt").write_text("[Hypnogram]\n5\n5\n" + text.replace("y", "5") + "\n4\n")
    return d / "dreams.txt"


def _sleep_edf(d: Path, text: str) -> Path:
    anns = [(30.0 * i, 30.0, "Sleep stage W") for i in range(200)] + [(6000.0, 30.0, text)]
    return annotation_edf(d / "SC-Hypnogram.edf", anns)


def _psg_edf(d: Path, text: str) -> Path:
    return psg_edf_with_annotation(d / "psg.edf", text[:100_000])  # 8 records of 100 kB each


def _psg_edf_d(d: Path, text: str) -> Path:
    return psg_edf_with_annotation(d / "psg-d.edf", text[:100_000], discontinuous=True)


def _nsrr(d: Path, text: str) -> Path:
    (d / "nsrr.xml").write_text(nsrr_xml([(0, 30, "Wake|0"), (30, 30, text)]))
    return d / "nsrr.xml"


def _nsrr_event(d: Path, text: str) -> Path:
    xml = nsrr_xml([(0, 30, "Wake|0")], other=[("Respiratory|Respiratory", text, 10, 12)])
    (d / "nsrr-event.xml").write_text(xml)
    return d / "nsrr-event.xml"


def _profusion_stage(d: Path, text: str) -> Path:
    (d / "profusion.xml").write_text(profusion_xml([0, 2, text]))
    return d / "profusion.xml"


def _profusion_event(d: Path, text: str) -> Path:
    (d / "profusion-ev.xml").write_text(profusion_xml([0, 2], events=[(text, 10, 12)]))
    return d / "profusion-ev.xml"


LABEL_FORMATS: dict[str, Callable[[Path, str], Path]] = {
    "csv_per_epoch": _csv_epochs,
    "csv_annotations": _csv_annotations,
    "bids_events_tsv": _bids_events,
    "dreams": _dreams,
    "sleep_edf": _sleep_edf,
    "edf_plus_psg": _psg_edf,
    "edf_plus_d_psg": _psg_edf_d,
    "nsrr_xml_stage": _nsrr,
    "nsrr_xml_event": _nsrr_event,
    "profusion_stage": _profusion_stage,
    "profusion_event": _profusion_event,
}
"""Format -> writer of a small valid file with ``text`` as one of its labels (or codes)."""


@pytest.mark.parametrize("fmt", LABEL_FORMATS)
def test_a_huge_label_is_refused_quickly_and_not_echoed(tmp_path, fmt):
    huge = "y" * HUGE
    message = hypnogram_refused(LABEL_FORMATS[fmt](tmp_path, huge), huge=huge)
    assert "are refused" in message or "not accepted" in message, message
    assert "yyyyyyyyyy" in message or "5555555555" in message, message  # a short excerpt


@pytest.mark.parametrize("fmt", [f for f in LABEL_FORMATS if f != "dreams"])
def test_a_label_just_over_the_limit_is_refused(tmp_path, fmt):
    text = "Stage " + "y" * MAX_LABEL_CHARS
    message = hypnogram_refused(LABEL_FORMATS[fmt](tmp_path, text), huge=text)
    assert f"over {MAX_LABEL_CHARS}" in message, message


@pytest.mark.parametrize("fmt", ["csv_annotations", "bids_events_tsv", "sleep_edf", "nsrr_xml_event"])
def test_an_event_label_at_the_limit_is_read(tmp_path, fmt):
    text = "Obstructive apnea " + "y" * (MAX_LABEL_CHARS - 18)
    hyp = read_hypnogram(LABEL_FORMATS[fmt](tmp_path, text))
    assert text in set(hyp.events["label"]), hyp.events


# --- a huge field (CSV cells, XML text and attributes) -------------------------------------------------
def _quoted_field(d: Path, lines: int) -> Path:
    body = "a,\n" * lines  # every line holds the delimiter, so the sniffer keeps the CSV reading
    (d / "notes.csv").write_text(f'onset,duration,stage,comment\n0,30,W,"{body}"\n30,30,N2,x\n')
    return d / "notes.csv"


FIELD_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "csv_quoted_field_over_the_limit": (lambda d: _quoted_field(d, 5_000), "a field of 10,000"),
    "csv_quoted_field_over_csv_limit": (lambda d: _quoted_field(d, 100_000), "over 131,072"),
    "csv_comment_column": (
        lambda d: put(d / "c.csv", "0,30,W," + "a" * HUGE + "\n"),
        "lines over",
    ),
    "xml_text": (
        lambda d: put(d / "t.xml", nsrr_xml([(0, 30, "Wake|0")]).replace("Compumedics", "a" * HUGE)),
        "XML fields over",
    ),
    "xml_attribute": (
        lambda d: put(d / "a.xml", f'<PSGAnnotation v="{"a" * HUGE}"/>'),
        "XML fields over",
    ),
    "xml_root_tag": (
        lambda d: put(d / "r.xml", f"<{'a' * HUGE}/>"),
        "XML fields over",
    ),
    "xml_epoch_length": (
        lambda d: put(d / "p.xml", profusion_xml([0, 2], epoch_length="a" * 5_000)),
        "is not a number",
    ),
}


@pytest.mark.parametrize("case", FIELD_CASES)
def test_a_huge_field_is_refused(tmp_path, case):
    make, expected = FIELD_CASES[case]
    message = hypnogram_refused(make(tmp_path), huge="a" * 1000)
    assert expected in message, message


# --- a huge file ---------------------------------------------------------------------------------------
def test_huge_files_are_refused_before_reading(tmp_path):
    text = sparse(tmp_path / "big.csv", MAX_TEXT_BYTES + 1, b"W\n")
    assert "text hypnograms over 33.2 MB" in hypnogram_refused(text, fmt="csv")
    dreams = sparse(tmp_path / "big.txt", MAX_TEXT_BYTES + 1, b"[Hypnogram]\n5\n")
    assert "text hypnograms over" in hypnogram_refused(dreams, fmt="dreams")
    st = sparse(tmp_path / "rec.st", MAX_WFDB_BYTES + 1)
    (tmp_path / "rec.hea").write_text("rec 1 250 7500 22:00:00 03/02/2001\n")
    assert "WFDB annotation files over 16 MB" in hypnogram_refused(st, fmt="wfdb")
    xml = sparse(tmp_path / "big.xml", hypno_formats.MAX_XML_BYTES + 1, b"<PSGAnnotation>")
    assert "hypnogram XML over 200 MB" in hypnogram_refused(xml)


def test_a_huge_edf_annotation_signal_is_refused_before_reading(tmp_path):
    head = annotation_edf(tmp_path / "h.edf", [(0, 30, "Sleep stage W")], n_samples=2**20)
    data = head.read_bytes()[:512]
    big = sparse(tmp_path / "big-Hypnogram.edf", 512 + (MAX_EDF_ANNOTATION_BYTES // 2**21 + 1) * 2**21, data)
    message = hypnogram_refused(big)
    assert f"over {MAX_EDF_ANNOTATION_BYTES // 2**20} MiB of annotations are refused" in message


def test_a_huge_metadata_table_is_refused_before_reading(tmp_path):
    table = sparse(tmp_path / "metadata.csv", MAX_TABLE_BYTES + 1, b"night,age\nn1,40\n")
    message = refused(lambda: read_metadata_csv(table), InputFileError)
    assert "tables over 67.1 MB are refused" in message


# --- too many rows / annotations / elements --------------------------------------------------------------
def test_too_many_rows_in_text_formats(tmp_path):
    rows = MAX_TEXT_ROWS + 10
    assert "more than 259,201" in hypnogram_refused(put(tmp_path / "a.csv", "W\n" * rows))
    (tmp_path / "b.txt").write_text("[Hypnogram]\n" + "5\n" * rows)
    assert "lines; more than" in hypnogram_refused(tmp_path / "b.txt")
    (tmp_path / "c.csv").write_bytes(b"W\r" * rows)  # old Mac line ends: counted too
    assert "lines; more than" in hypnogram_refused(tmp_path / "c.csv")
    (tmp_path / "d.tsv").write_text("onset\tduration\tvalue\n" + "0\t1\tW\n" * rows)
    assert "lines; more than" in hypnogram_refused(tmp_path / "d.tsv")


def test_too_many_edf_annotations(tmp_path):
    anns = [(30.0 * (i % 8000), 30.0, "Sleep stage W") for i in range(MAX_ANNOTATIONS + 1)]
    message = hypnogram_refused(annotation_edf(tmp_path / "many-Hypnogram.edf", anns))
    assert f"{MAX_ANNOTATIONS + 1:,} annotations; more than {MAX_ANNOTATIONS:,}" in message


def test_too_many_xml_events_and_elements(tmp_path, monkeypatch):
    """The XML counts, with the limits lowered (a file over the real ones takes seconds to write)."""
    monkeypatch.setattr(hypno_formats, "MAX_ANNOTATIONS", 100)
    (tmp_path / "n.xml").write_text(nsrr_xml([(30 * i, 30, "Wake|0") for i in range(150)]))
    assert "more than 100 scored events" in hypnogram_refused(tmp_path / "n.xml")
    (tmp_path / "p.xml").write_text(profusion_xml([0] * 150))
    assert "more than 100 <SleepStage> entries" in hypnogram_refused(tmp_path / "p.xml")
    (tmp_path / "e.xml").write_text(profusion_xml([0], events=[("Arousal", 1, 1)] * 150))
    assert "more than 100 scored events" in hypnogram_refused(tmp_path / "e.xml")
    monkeypatch.setattr(hypno_formats, "MAX_XML_ELEMENTS", 1_000)
    (tmp_path / "x.xml").write_text("<PSGAnnotation>" + "<x/>" * 2_000 + "</PSGAnnotation>")
    assert "more than 1,000 XML elements" in hypnogram_refused(tmp_path / "x.xml")


def test_too_many_wfdb_annotations(tmp_path, monkeypatch):
    monkeypatch.setattr(wfdb_stages, "MAX_ANNOTATIONS", 10)
    path = write_wfdb(tmp_path, ["W"] * 11)
    assert "11 annotations; more than 10" in hypnogram_refused(path, fmt="wfdb")


# --- XML structure: entities and document types anywhere, billion laughs, nesting --------------------------
PAD = "<!-- " + "p" * 70_000 + " -->"  # pushes what follows past the first 64 kB
XML_CASES: dict[str, str] = {
    "entity_after_64kB": f'<?xml version="1.0"?>\n{PAD}\n<!DOCTYPE PSGAnnotation [<!ENTITY a "b">]>'
    "<PSGAnnotation>&a;</PSGAnnotation>",
    "entity_inside_the_dtd_after_64kB": f'<?xml version="1.0"?>\n<!DOCTYPE PSGAnnotation [{PAD}'
    '<!ENTITY a "b">]><PSGAnnotation>&a;</PSGAnnotation>',
    "billion_laughs": '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + ("" if i == 1 else str(i - 1)) + ";") * 10}">' for i in range(1, 10))
    + "]><PSGAnnotation>&lol9;</PSGAnnotation>",
    "external_entity": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<PSGAnnotation>&x;</PSGAnnotation>",
    "parameter_entity": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p "x">]><PSGAnnotation/>',
    "doctype_only": '<?xml version="1.0"?><!DOCTYPE PSGAnnotation SYSTEM "psg.dtd"><PSGAnnotation/>',
}


@pytest.mark.parametrize("case", XML_CASES)
@pytest.mark.parametrize("fmt", ["auto", "nsrr-xml", "profusion-xml"])
def test_xml_entities_and_doctypes_are_refused_anywhere(tmp_path, case, fmt):
    (tmp_path / "ent.xml").write_text(XML_CASES[case])
    message = hypnogram_refused(tmp_path / "ent.xml", fmt=fmt, huge="p" * 1000)
    assert "XML files that declare entities are not accepted" in message


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deep_xml_nesting_is_refused(tmp_path, depth):
    body = "<a>" * depth + "</a>" * depth
    (tmp_path / "deep.xml").write_text(f"<PSGAnnotation>{body}</PSGAnnotation>")
    assert "nested over 32 levels" in hypnogram_refused(tmp_path / "deep.xml")


# --- metadata and other user tables ---------------------------------------------------------------------------
METADATA_CASES: dict[str, tuple[str, str]] = {
    "field_over_csv_limit": ("night,site\nn1," + "q" * 200_000 + "\nn2,b\n", "over 131,072"),
    "field_over_the_limit": ("night,site\nn1," + "q" * (MAX_FIELD_CHARS + 1) + "\nn2,b\n",
                             "row 1, column 'site': a field of 8,193"),
    "quoted_field_with_lines": ('night,site\nn1,"' + "q\n" * 5_000 + '"\nn2,b\n', "a field of 10,000"),
    "column_name": ("night," + "q" * 10_000 + "\nn1,a\n", "column 2: a column name of 10,000"),
    "night_id": ("night,site\n" + "q" * 10_000 + ",a\n", "a field of 10,000"),
}


@pytest.mark.parametrize("case", METADATA_CASES)
def test_metadata_csv_huge_field(tmp_path, case):
    content, expected = METADATA_CASES[case]
    path = tmp_path / "metadata.csv"
    path.write_text(content)
    message = refused(lambda: read_metadata_csv(path), InputFileError, huge="q" * 1000)
    assert message.startswith("metadata.csv: ") and expected in message, message
    with pytest.raises(InputFileError) as info:
        read_metadata_csv(path)
    assert not isinstance(info.value, HypnogramError)  # a table, not a hypnogram
    frame = pd.DataFrame({"night": ["n1"], "x": [1.0]})
    message = refused(lambda: join_metadata(frame, path), InputFileError, huge="q" * 1000)
    assert message.startswith("metadata.csv: "), message


# --- within the limits every format still reads -----------------------------------------------------------------
def _wfdb(d: Path) -> Path:
    return write_wfdb(d, ["W", "1", "2 OA", "3", "R", "W"])


NORMAL: dict[str, tuple[Callable[[Path], Path], list[int]]] = {
    "csv_per_epoch": (lambda d: _csv_epochs(d, "N3"), [0, 1, 3, 2]),
    "csv_annotations": (
        lambda d: put(d / "a.csv", "onset,duration,stage\n0,60,W\n60,30,N2\n90,30,R\n"),
        [0, 0, 2, 4],
    ),
    "bids_events_tsv": (lambda d: _bids_events(d, "N2"), [0, 2]),
    "dreams": (lambda d: put(d / "dreams.txt", "[Hypnogram]\n" + "5\n" * 6 + "3\n" * 6), [0, 1]),
    "sleep_edf": (
        lambda d: annotation_edf(d / "ok-Hypnogram.edf", [(0, 60, "Sleep stage W"), (60, 30, "Sleep stage 2")]),
        [0, 0, 2],
    ),
    "edf_plus_psg": (
        lambda d: write_psg_edf(d / "psg.edf", [(0, 60, "Sleep stage W"), (60, 30, "Sleep stage R")]),
        [0, 0, 4],
    ),
    "edf_plus_d_psg": (lambda d: psg_edf_with_annotation(d / "d.edf", "Sleep stage 2", discontinuous=True), [0, 2]),
    "nsrr_xml": (lambda d: _nsrr(d, "Stage 2 sleep|2"), [0, 2]),
    "profusion_xml": (lambda d: _profusion_stage(d, "5"), [0, 2, 4]),
    "wfdb": (_wfdb, [0, 1, 2, 3, 4, 0]),
}


@pytest.mark.parametrize("fmt", NORMAL)
def test_normal_files_of_every_format_still_read(tmp_path, fmt):
    make, stages = NORMAL[fmt]
    hyp = read_hypnogram(make(tmp_path))
    assert hyp.stages.tolist()[: len(stages)] == stages


def test_a_normal_metadata_csv_still_reads(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text("night,subject,site,age,sex\nn1,s1,A,54,M\nn2,s1,A,54.5,M\nn3,s2,B,,F\n")
    frame, used = read_metadata_csv(path)
    assert list(frame.index) == ["n1", "n2", "n3"] and used["site"] == "site"


def test_excerpt_is_short_and_escapes_control_characters():
    assert excerpt("W") == "'W'"
    shown = excerpt("\x1b[2J" + "x" * HUGE)
    assert shown.startswith("'\\x1b[2J") and "(2,000,004 characters)" in shown and len(shown) < 80
    assert len(excerpt("\U0010ffff" * 1000)) < 90  # escapes do not make it long
    assert text_limits.clip_message("a\nb\x00" + "c" * 500).startswith("a b\\x00c")


# --- the app's Night page shows the one line --------------------------------------------------------------------
APP_CASES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "huge_label": ("labels.csv", lambda: ("stage\nW\n" + "y" * HUGE + "\n").encode(), "lines over"),
    "field_over_csv_limit": (
        "fields.csv",
        lambda: ('onset,duration,stage,comment\n0,30,W,"' + "y,\n" * 100_000 + '"\n').encode(),
        "unreadable CSV: a quoted field is over",
    ),
    "entity_after_64kB": ("ent.xml", lambda: XML_CASES["entity_after_64kB"].encode(), "declare entities"),
}


@pytest.mark.parametrize("case", APP_CASES)
def test_app_night_page_shows_the_message(tmp_path, case):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from tests.edf_factory import psg_channels, write_edf

    root = Path(__file__).resolve().parents[1]
    psg = tmp_path / "night.edf"
    write_edf(psg, psg_channels(minutes=4))
    name, make, expected = APP_CASES[case]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.session_state["night_source"] = "Upload a recording"
    at.run(timeout=120)
    uploaders = {u.label.split(" ")[0]: u for u in at.file_uploader}
    uploaders["EDF"].set_value((psg.name, psg.read_bytes(), "application/octet-stream"))
    uploaders["Hypnogram"].set_value((name, make(), "text/plain"))
    at.run(timeout=120)
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and expected in errors[0] and len(errors[0]) < 300, errors
    assert "y" * 100 not in errors[0] and "p" * 100 not in errors[0]
