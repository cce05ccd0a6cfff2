"""Build the tiny seed files of the fuzz corpus (every byte made here, nothing copied).

Run ``python bench/fuzz_parsers.py --write-seeds tests/fuzz_corpus`` to regenerate them.
The EDF helpers (:func:`edf_bytes`, :func:`set_field`, :func:`signal_field_span`) are also
used by ``tests/test_fuzz_properties.py`` to splice values into single header fields.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER_FIELDS: dict[str, tuple[int, int]] = {
    "version": (0, 8),
    "patient": (8, 80),
    "recording": (88, 80),
    "start_date": (168, 8),
    "start_time": (176, 8),
    "header_bytes": (184, 8),
    "reserved": (192, 44),
    "n_records": (236, 8),
    "record_duration": (244, 8),
    "n_signals": (252, 4),
}
"""Fixed EDF header field -> (byte offset, width)."""

SIGNAL_FIELDS: tuple[tuple[str, int], ...] = (
    ("label", 16),
    ("transducer", 80),
    ("dimension", 8),
    ("physical_min", 8),
    ("physical_max", 8),
    ("digital_min", 8),
    ("digital_max", 8),
    ("prefilter", 80),
    ("n_samples", 8),
    ("reserved", 32),
)
"""Per-signal header fields in file order, each stored for all signals before the next."""


def _pad(text: str, width: int) -> bytes:
    return text.encode("latin-1")[:width].ljust(width, b" ")


def set_field(data: bytes, offset: int, width: int, text: str) -> bytes:
    """``data`` with the ASCII field at ``offset`` replaced by ``text`` (space-padded, cut)."""
    return data[:offset] + _pad(text, width) + data[offset + width :]


def signal_field_span(name: str, index: int, n_signals: int) -> tuple[int, int]:
    """(byte offset, width) of field ``name`` of signal ``index`` in a file of ``n_signals``."""
    offset = 256
    for field, width in SIGNAL_FIELDS:
        if field == name:
            return offset + index * width, width
        offset += width * n_signals
    raise KeyError(name)


def samples(values: np.ndarray, bdf: bool = False) -> bytes:
    """Little-endian 16-bit (EDF) or 24-bit (BDF) two's-complement samples."""
    ints = np.asarray(values, dtype="<i4")
    if not bdf:
        return ints.astype("<i2").tobytes()
    return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def tal(record_onset: float, annotations=(), size: int = 64) -> bytes:
    """One EDF+ annotation block: the time-keeping TAL, then ``(onset, duration, text)`` TALs."""
    text = f"+{record_onset:g}\x14\x14\x00"
    for onset, duration, label in annotations:
        dur = f"\x15{duration:g}" if duration is not None else ""
        text += f"+{onset:g}{dur}\x14{label}\x14\x00"
    raw = text.encode("latin-1")
    if len(raw) > size:
        raise ValueError(f"annotations need {len(raw)} bytes, the block holds {size}")
    return raw.ljust(size, b"\x00")


def edf_bytes(
    signals, record_s: float, *, plus: bool = False, bdf: bool = False, discontinuous: bool = False
) -> bytes:
    """A whole EDF, EDF+C, EDF+D or BDF file.

    Parameters
    ----------
    signals : list of tuple
        ``(label, dimension, physical_min, physical_max, digital_min, digital_max, records)``
        where ``records`` is one bytes block per data record (samples, or TAL text for an
        annotation signal); every signal has the same number of records.
    record_s : float
        Data record duration in seconds (0 for annotation-only files).
    """
    width = 3 if bdf else 2
    n_signals, n_records = len(signals), len(signals[0][-1])
    head = (b"\xffBIOSEMI" if bdf else _pad("0", 8)) + _pad("X X X X" if plus else "seed", 80)
    head += _pad("Startdate 01-MAR-2024 X X X" if plus else "seed", 80)
    head += _pad("01.03.24", 8) + _pad("22.30.00", 8) + _pad(str(256 * (n_signals + 1)), 8)
    kind = ("BDF+" if bdf else "EDF+") + ("D" if discontinuous else "C") if plus else ""
    kind = kind or ("24BIT" if bdf else "")
    head += _pad(kind, 44) + _pad(str(n_records), 8) + _pad(f"{record_s:g}", 8)
    head += _pad(str(n_signals), 4)
    rows = [
        [
            lab,
            "",
            dim,
            f"{pmin:g}",
            f"{pmax:g}",
            str(dmin),
            str(dmax),
            "",
            str(len(recs[0]) // width),
            "",
        ]
        for lab, dim, pmin, pmax, dmin, dmax, recs in signals
    ]
    for j, (_name, field_width) in enumerate(SIGNAL_FIELDS):
        head += b"".join(_pad(row[j], field_width) for row in rows)
    body = b"".join(sig[-1][k] for k in range(n_records) for sig in signals)
    return head + body


def _wave(n: int, amplitude: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(amplitude * np.sin(np.arange(n) / 3.0) + rng.normal(0, amplitude / 10, n))


def _psg(record_onsets: tuple[float, ...], discontinuous: bool = False) -> bytes:
    """EDF+ with EEG (4 Hz), SpO2 (1 Hz) and annotations in three 10-s records."""
    stages = [
        ((0, 30, "Sleep stage W"),),
        ((30, 30, "Sleep stage 2"),),
        ((12, 3, "Obstructive apnea"),),
    ]
    eeg, spo2 = _wave(120, 800, 1), np.round(96 + _wave(30, 1, 2))
    eeg_records = [samples(eeg[40 * k : 40 * k + 40]) for k in range(3)]
    spo2_records = [samples(spo2[10 * k : 10 * k + 10]) for k in range(3)]
    tals = [tal(onset, stages[k]) for k, onset in enumerate(record_onsets)]
    signals = [
        ("EEG C4-M1", "uV", -250, 250, -32768, 32767, eeg_records),
        ("SpO2", "%", 0, 100, 0, 100, spo2_records),
        ("EDF Annotations", "", -1, 1, -32768, 32767, tals),
    ]
    return edf_bytes(signals, 10, plus=True, discontinuous=discontinuous)


def edf_seeds() -> dict[str, bytes]:
    """EDF-family seeds: plain EDF, EDF+C and EDF+D (with a gap) with annotations, BDF, record
    count -1, and a Sleep-EDF style annotation-only EDF+."""
    eeg = _wave(16, 1000, 0)
    plain = edf_bytes(
        [("EEG Fpz-Cz", "uV", -200, 200, -2048, 2047, [samples(eeg[:8]), samples(eeg[8:])])], 1
    )
    psg, psg_d = _psg((0, 10, 20)), _psg((0, 10, 30), discontinuous=True)
    bdf = edf_bytes(
        [("C3-M2", "uV", -300, 300, -8388608, 8388607, [samples(eeg * 999, True)])], 2, bdf=True
    )
    open_count = set_field(plain, *HEADER_FIELDS["n_records"], "-1")
    hypnogram = [
        (0, 60, "Sleep stage W"), (60, 30, "Sleep stage 1"), (90, 60, "Sleep stage 2"),
        (150, 30, "Sleep stage 3"), (180, 30, "Sleep stage 4"), (210, 60, "Sleep stage R"),
        (270, 30, "Movement time"), (300, 30, "Sleep stage ?"),
    ]  # fmt: skip
    sleep_edf = edf_bytes(
        [("EDF Annotations", "", -1, 1, -32768, 32767, [tal(0, hypnogram, size=320)])], 0, plus=True
    )
    return {
        "edf/plain.edf": plain,
        "edf/psg_plus.edf": psg,
        "edf/psg_discontinuous.edf": psg_d,
        "edf/plain.bdf": bdf,
        "edf/open_record_count.edf": open_count,
        "hypnogram/SC-Hypnogram.edf": sleep_edf,
        **resource_seeds(plain, eeg),
    }


def resource_seeds(plain: bytes, eeg: np.ndarray) -> dict[str, bytes]:
    """Seeds at and beyond the limits of :mod:`s2v_core.limits` (issue 16): huge declared fields,
    the slowest and fastest rates, and small files whose declared length is far beyond their bytes."""
    field = HEADER_FIELDS
    sparse = edf_bytes(  # 108 records of 2400 s, 8 samples each (the slowest rate): 72 h in 2 KB
        [("EEG Fpz-Cz", "uV", -200, 200, -2048, 2047, [samples(eeg[:8])] * 108)], 2400
    )
    return {
        "edf/huge_record_duration.edf": set_field(plain, *field["record_duration"], "99999999"),
        "edf/huge_record_count.edf": set_field(plain, *field["n_records"], "99999999"),
        "edf/huge_samples_per_record.edf": set_field(plain, *signal_field_span("n_samples", 0, 1), "99999999"),
        "edf/fastest_rate.edf": set_field(plain, *field["record_duration"], "0.000008"),  # 1 MHz
        "edf/sparse_72_hours.edf": sparse,
        "edf/discontinuous_70_hours.edf": _psg((0, 10, 70 * 3600), discontinuous=True),
    }


NSRR_XML = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<PSGAnnotation><SoftwareVersion>Compumedics</SoftwareVersion><EpochLength>30</EpochLength>
<ScoredEvents>
<ScoredEvent><EventType/><EventConcept>Recording Start Time</EventConcept><Start>0</Start><Duration>90.0</Duration><ClockTime>01.03.24 22.30.00</ClockTime></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Wake|0</EventConcept><Start>0.0</Start><Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 2 sleep|2</EventConcept><Start>60.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>REM sleep|5</EventConcept><Start>90.0</Start><Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Respiratory|Respiratory</EventType><EventConcept>Obstructive apnea|Obstructive Apnea</EventConcept><Start>70.5</Start><Duration>12.1</Duration><SignalLocation>Airflow</SignalLocation></ScoredEvent>
</ScoredEvents></PSGAnnotation>
"""

PROFUSION_XML = """<?xml version="1.0" encoding="UTF-8"?>
<CMPStudyConfig><EpochLength>30</EpochLength>
<ScoredEvents><ScoredEvent><Name>Hypopnea</Name><Start>45.5</Start><Duration>11</Duration><Input>Airflow</Input></ScoredEvent>
<ScoredEvent><Name>Arousal (ASDA)</Name><Start>80</Start><Duration>4</Duration></ScoredEvent></ScoredEvents>
<SleepStages><SleepStage>0</SleepStage><SleepStage>1</SleepStage><SleepStage>2</SleepStage><SleepStage>3</SleepStage><SleepStage>5</SleepStage><SleepStage>9</SleepStage></SleepStages>
</CMPStudyConfig>
"""

TEXT_SEEDS: dict[str, str] = {
    "hypnogram/nsrr.xml": NSRR_XML,
    "hypnogram/profusion.xml": PROFUSION_XML,
    "hypnogram/stages.txt": "W\nW\nN1\nN2\nN2\nN3\nR\n?\n",
    "hypnogram/epochs.csv": "epoch,stage\n1,W\n2,N1\n3,N2\n5,N3\n6,REM\n",
    "hypnogram/annotations.csv": "onset,duration,stage\n0,60,W\n60,30,N1\n90,90.5,N2\n180,,REM\n",
    "hypnogram/edfbrowser.txt": (
        "Onset,Duration,Annotation\n+0.0000000,30.000,Sleep stage W\n"
        "+30.0000000,60.000,Sleep stage 2\n+45.0000000,10.000,Arousal\n"
    ),
    "hypnogram/clock.txt": "22:30:00 W\n22:30:30 N1\n23:59:30 N2\n00:00:00 N3\n00:00:30 R\n",
    "hypnogram/iso.tsv": (
        "time\tstage\n2024-03-01T22:30:00\t0\n2024-03-01T22:30:30\t2\n2024-03-01T22:31:00\t5\n"
    ),
    "hypnogram/european.csv": "onset;duration;stage\n0,0;30,0;W\n30,0;30,0;N2\n",
    "hypnogram/dreams.txt": "[Hypnogram]\n" + "5\n" * 6 + "3\n" * 6 + "2\n" * 5 + "-1\n" + "0\n4\n",
    "metadata/metadata.csv": "night,subject,site,age,sex\nn1,s1,A,54,M\nn2,s1,A,54.5,M\nn3,s2,B,,F\n",
    "metadata/nsrr.csv": "nsrrid,age_s1,gender,clinic\n200001,63,1,Pitt\n200002,71,2,Pitt\n200003,,0,UMN\n",
    "metadata/semicolon.csv": "Record;Age;Male;Cohort\nr1;40;1;x\nr2;33;0;y\n",
}


def text_limit_seeds() -> dict[str, bytes]:
    """Hypnogram and metadata seeds at and beyond the limits of :mod:`s2v_core.io.text_limits`.

    Issue 16: long labels and fields, XML entities and document types (late in the file),
    billion laughs, deep nesting, and more rows, events, elements and EDF+ annotations than the
    fuzzer's lowered limits (``tests.fuzz_corpus.targets.LOW_LIMITS``) allow; each under the
    fuzzer's 10 kB.
    """
    pad = "<!-- " + "p" * 6000 + " -->"
    laughs = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + ("" if i == 1 else str(i - 1)) + ";") * 10}">' for i in range(1, 10)
    )
    event = (
        "<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Wake|0</EventConcept>"
        "<Start>{}</Start><Duration>30</Duration></ScoredEvent>"
    )
    body = NSRR_XML.split("\n", 1)[1]
    long_label = [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage " + "y" * 600)]
    many = [(30 * i, 30, "Sleep stage W") for i in range(60)]
    annotations = [("EDF Annotations", "", -1, 1, -32768, 32767, [tal(0, long_label, size=720)])]
    crowded = [("EDF Annotations", "", -1, 1, -32768, 32767, [tal(0, many, size=1600)])]
    text = {
        "hypnogram/limit_long_label.csv": "onset,duration,stage\n0,30,W\n30,30,Stage " + "y" * 600 + "\n",
        "hypnogram/limit_long_line.txt": "W\n" + "N2" * 4500 + "\n",
        "hypnogram/limit_quoted_field.csv": 'onset,duration,stage,note\n0,30,W,"' + "aaaaaaaaaa,\n" * 800 + '"\n',
        "hypnogram/limit_rows.txt": "W\n" * 1500,
        "hypnogram/limit_dreams_rows.txt": "[Hypnogram]\n" + "5\n" * 1500,
        "hypnogram/limit_entity_late.xml": f'<?xml version="1.0"?>\n{pad}\n<!DOCTYPE PSGAnnotation [<!ENTITY a "b">]>\n{body}',
        "hypnogram/limit_billion_laughs.xml": f'<?xml version="1.0"?>\n<!DOCTYPE PSGAnnotation [{laughs}]>\n<PSGAnnotation>&lol9;</PSGAnnotation>',
        "hypnogram/limit_doctype.xml": f'<?xml version="1.0"?>\n<!DOCTYPE PSGAnnotation SYSTEM "psg.dtd">\n{body}',
        "hypnogram/limit_deep.xml": "<PSGAnnotation>" + "<a>" * 40 + "</a>" * 40 + "</PSGAnnotation>",
        "hypnogram/limit_long_text.xml": NSRR_XML.replace("Wake|0", "Wake|" + "z" * 8500),
        "hypnogram/limit_many_events.xml": "<PSGAnnotation><ScoredEvents>"
        + "".join(event.format(30 * i) for i in range(60)) + "</ScoredEvents></PSGAnnotation>",
        "hypnogram/limit_many_stages.xml": "<CMPStudyConfig><SleepStages>"
        + "<SleepStage>0</SleepStage>" * 60 + "</SleepStages></CMPStudyConfig>",
        "hypnogram/limit_elements.xml": "<CMPStudyConfig>" + "<x/>" * 1100 + "</CMPStudyConfig>",
        "metadata/limit_long_field.csv": "night,site\nn1," + "q" * 9000 + "\nn2,b\n",
        "metadata/limit_quoted_field.csv": 'night,site\nn1,"' + "q\n" * 4300 + '"\nn2,b\n',
        "metadata/limit_long_column.csv": "night," + "c" * 8500 + "\nn1,1\n",
    }
    return {
        **{name: content.encode() for name, content in text.items()},
        "hypnogram/limit_long_annotation.edf": edf_bytes(annotations, 0, plus=True),
        "hypnogram/limit_many_annotations.edf": edf_bytes(crowded, 0, plus=True),
    }


NUMBER_TOKENS = (
    "nan",
    "inf",
    "-inf",
    "1e999",
    "1e308",
    "1e-300",
    "-1",
    "-0",
    "0",
    "99999999",
    "4097",
)
"""Field values that break naive number parsing (overflow, NaN, signs, off-by-one counts)."""
LIMIT_TOKENS = ("259200", "259201", "2400", "2401", "0.000008", "0.000007", "300", "3600", "108")
"""Field values at and just beyond :mod:`s2v_core.limits` (72 h, the slowest and fastest rates)."""
# fmt: off
DICTIONARIES: dict[str, tuple[str, ...]] = {
    "edf": (*NUMBER_TOKENS, "0       ", "\xffBIOSEMI", "EDF+C", "EDF+D", "BDF+C",
            "EDF Annotations ", "BDF Annotations ", "+0\x14\x14\x00", "\x15", "\x14", "-32768",
            "32767", "-8388608", "8388607", "01.03.24", "22.30.00", "Sleep stage W", *LIMIT_TOKENS),
    "hypnogram": (*NUMBER_TOKENS, "0       ", "EDF Annotations ", "EDF+C", "+0\x14\x14\x00",
                  "\x15", "<ScoredEvent>", "</ScoredEvent>", "<EventType>Stages|Stages</EventType>",
                  "<EventConcept>", "<Start>", "<Duration>", "<EpochLength>", "<SleepStage>",
                  "<PSGAnnotation>", "<CMPStudyConfig>", "<!ENTITY", "<!DOCTYPE", "[Hypnogram]",
                  "onset", "duration", "stage", "epoch", "22:30:00", "2024-03-01T22:30:00+01:00",
                  "Sleep stage ?", "Movement time", "REM", "N3", "MT", "OA", "Apnea", "\t", ";",
                  '<!ENTITY a "b">', "<!DOCTYPE PSGAnnotation [", "]>", "&a;", "<!--", "-->",
                  "<a>", "</a>", '"', "\r"),
    "metadata": (*NUMBER_TOKENS, "night", "subject", "nsrrid", "age_s1", "gender", "male",
                 "female", "clinic", "site", "sex", ";", "\t", '"', "NaN", "\r\n", "\n", "\x00"),
}
# fmt: on
"""libFuzzer dictionary tokens per target (written as ``<target>.dict``)."""


def _dict_line(token: str) -> str:
    raw = token.encode("latin-1")
    escaped = "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in raw)
    return f'"{escaped}"\n'


def _wfdb_seed(folder: Path) -> Path:
    import wfdb

    notes = ["W", "W OA", "1", "2 H", "2", "3", "4 LA", "R", "MT", "R X"]
    wfdb.wrann(
        "slp", "st", np.arange(len(notes)) * 7500, symbol=["\""] * len(notes),
        aux_note=notes, fs=250, write_dir=str(folder),
    )  # fmt: skip
    return folder / "slp.st"


def write_seeds(root: str | Path) -> list[Path]:
    """Write every seed file under ``root`` (sub-folders edf/, hypnogram/, metadata/) and the dictionaries."""
    root = Path(root)
    files = {**edf_seeds(), **{k: v.encode() for k, v in TEXT_SEEDS.items()}, **text_limit_seeds()}
    written = []
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    written.append(_wfdb_seed(root / "hypnogram"))
    for target, tokens in DICTIONARIES.items():
        path = root / f"{target}.dict"
        path.write_text("".join(_dict_line(t) for t in tokens))
        written.append(path)
    return written
