"""Hypothesis strategies for fuzz inputs: seed mutations, spliced EDF fields, random XML and tables.

Used by ``tests/test_fuzz_properties.py``; the seeds are the files beside this module.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from hypothesis import strategies as st

from tests.fuzz_corpus.make_seeds import (
    HEADER_FIELDS,
    NUMBER_TOKENS,
    SIGNAL_FIELDS,
    set_field,
    signal_field_span,
)

CORPUS = Path(__file__).parent
SEEDS: dict[str, list[Path]] = {
    target: sorted(p for d in dirs for p in (CORPUS / d).iterdir())
    for target, dirs in {
        "edf": ("edf",),
        "hypnogram": ("hypnogram", "edf"),
        "metadata": ("metadata",),
    }.items()
}
"""Target -> its seed files (as ``SEED_DIRS`` in bench/fuzz_parsers.py)."""


def fit8(value: float) -> str:
    """``value`` as the most precise text that fits an 8-character EDF field."""
    for digits in range(7, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 8:
            return text
    return f"{value:.0e}"[:8]


ascii_numbers = st.one_of(
    st.sampled_from(NUMBER_TOKENS),
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.6g}"),
    st.text("0123456789+-.eE", min_size=1, max_size=8),
)


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """1-5 byte-level edits of ``data``: flip, set, insert, delete, truncate, splice a number."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "number")))
        pos = draw(st.integers(0, len(buf)))
        if op == "flip" and pos < len(buf):
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(buf):
            buf[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "number":
            token = draw(ascii_numbers).encode()
            buf[pos : pos + len(token)] = token
    return bytes(buf)


def seed_mutations(target: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from(SEEDS[target]).flatmap(lambda p: mutations(p.read_bytes()))


EDF_FIELDS = [("fixed", name) for name in HEADER_FIELDS if name != "version"] + [
    ("signal", name) for name, _ in SIGNAL_FIELDS
]


@st.composite
def spliced_edf(draw) -> bytes:
    """An EDF seed with one header field (fixed, or of one signal) set to a random ASCII number."""
    path = draw(st.sampled_from([p for p in SEEDS["edf"] if p.suffix in (".edf", ".bdf")]))
    data = path.read_bytes()
    kind, name = draw(st.sampled_from(EDF_FIELDS))
    if kind == "fixed":
        span = HEADER_FIELDS[name]
    else:
        n_signals = int(data[252:256])
        span = signal_field_span(name, draw(st.integers(0, n_signals - 1)), n_signals)
    return set_field(data, *span, draw(ascii_numbers))


XML_TAGS = ("PSGAnnotation", "CMPStudyConfig", "ScoredEvents", "ScoredEvent", "EventType",
            "EventConcept", "Start", "Duration", "EpochLength", "SleepStages", "SleepStage",
            "Name", "x:Start")  # fmt: skip
XML_TEXT = st.one_of(
    ascii_numbers,
    st.sampled_from(("Stages|Stages", "Wake|0", "Stage 2 sleep|2", "REM sleep|5", "Apnea", "")),
    st.text(max_size=12),
)
xml_elements = st.recursive(
    st.builds(
        lambda tag, text: f"<{tag}>{escape(text)}</{tag}>", st.sampled_from(XML_TAGS), XML_TEXT
    ),
    lambda children: st.builds(
        lambda tag, kids: f"<{tag}>{''.join(kids)}</{tag}>",
        st.sampled_from(XML_TAGS),
        st.lists(children, max_size=6),
    ),
    max_leaves=25,
)


@st.composite
def random_xml(draw) -> bytes:
    """A random document under an NSRR or Profusion root (or another), sometimes broken.

    The declaration may name an encoding, valid or not; the body is UTF-8 either way.
    """
    root = draw(st.sampled_from(("PSGAnnotation", "CMPStudyConfig", "Other")))
    body = "".join(draw(st.lists(xml_elements, max_size=5)))
    encoding = draw(st.sampled_from(("", "UTF-8", "latin-1", "ascii", "UTF-9", "utf-32")))
    declared = f' encoding="{encoding}"' if encoding else ""
    text = f'<?xml version="1.0"{declared}?>\n<{root}>{body}</{root}>'
    if draw(st.booleans()):  # cut or corrupt it
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(("", "<", "&bogus;", "]]>", "\x00")))
    return text.encode("utf-8")


CELLS = st.one_of(
    ascii_numbers,
    st.sampled_from(
        (
            "W",
            "N1",
            "N2",
            "N3",
            "R",
            "REM",
            "?",
            "MT",
            "Sleep stage 4",
            "Apnea",
            "22:30:00",
            "23:59:59.5",
            "2024-03-01T22:30:00",
            "2024-03-01T22:30:00+01:00",
            "onset",
            "duration",
            "stage",
            "epoch",
            "",
        )
    ),  # fmt: skip
    st.text(max_size=6),
)


@st.composite
def random_table(draw) -> bytes:
    """Random rows of stage labels, numbers and times joined by one random delimiter."""
    sep = draw(st.sampled_from((",", ";", "\t", " ")))
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), min_size=1, max_size=12))
    return "\n".join(sep.join(r) for r in rows).encode("utf-8", "surrogatepass")


@st.composite
def random_dreams(draw) -> bytes:
    codes = draw(
        st.lists(st.one_of(st.integers(-9, 9), st.integers(-(10**30), 10**30)), max_size=40)
    )
    return ("[Hypnogram]\n" + "\n".join(map(str, codes)) + "\n").encode()


METADATA_NAMES = ("night", "subject", "site", "age", "sex", "nsrrid", "gender", "male", "female",
                  "age_s1", "clinic", "Night", "x")  # fmt: skip


@st.composite
def random_metadata(draw) -> bytes:
    sep = draw(st.sampled_from((",", ";", "\t")))
    names = draw(st.lists(st.sampled_from(METADATA_NAMES), min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(CELLS, min_size=len(names), max_size=len(names)), max_size=8))
    text = "\n".join(sep.join(r) for r in [names, *rows])
    return text.encode("utf-8", "surrogatepass")
