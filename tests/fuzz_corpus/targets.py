"""The fuzz targets: the parser contract, shared by ``bench/fuzz_parsers.py`` and the property tests.

Contract: for any input bytes, ``check_header`` / ``open_recording`` (then reading every channel
and the annotations), ``detect_format`` / ``read_hypnogram`` (every format) and
``read_metadata_csv`` either return or raise :class:`s2v_core.errors.S2VError` whose message
names the file, within :data:`SLOW_S` seconds per call. A broken contract surfaces as the
foreign exception itself or as :class:`ContractViolation`.

Importing this module imports no ``s2v_core`` module (the fuzzer instruments them first).
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

SLOW_S = 2.0
"""Bound on one parser call on a <= 10 kB input, seconds."""
MAX_MESSAGE_CHARS = 500
"""Longest message of a hypnogram or metadata refusal: one line quoting short excerpts only."""
RECORDING_START = datetime(2024, 3, 1, 22, 30)
WFDB_HEADER = "fuzz 1 250 7500 22:30:00 01/03/2024\nfuzz.dat 16 200 16 0 0 0 0 ECG\n"
"""Header written beside ``fuzz.st``: 250 Hz, a start date, so WFDB stages can be timed."""


LOW_LIMITS: dict[str, int] = {
    "MAX_TEXT_ROWS": 1_000,
    "MAX_ANNOTATIONS": 50,
    "MAX_XML_ELEMENTS": 1_000,
    "MAX_EDF_ANNOTATION_BYTES": 4_096,
    "MAX_WFDB_BYTES": 8_192,
    "MAX_TEXT_BYTES": 9_000,
    "MAX_XML_BYTES": 9_000,
    "MAX_TABLE_BYTES": 9_000,
}
"""Limits of :mod:`s2v_core.io.text_limits` lowered for the fuzzer (:func:`lower_limits`).

The fuzzer's inputs are at most 10 kB, below the real row, annotation, element and size limits
(the label, field and depth limits, 512 and 8,192 characters and 32 levels, are reached as
they are). Lowered, the inputs reach every limit check, and a refusal by a limit is, like any
:class:`~s2v_core.errors.S2VError` naming the file, an accepted outcome.
"""
LIMIT_REFUSAL = re.compile(r"are refused|are not accepted")
"""What the message of a refusal by a limit says (the refusals are counted in :data:`REFUSALS`)."""
REFUSALS = {"limits": 0}
"""Calls that ended in a refusal by a limit, since the process started."""


@contextlib.contextmanager
def lowered_limits(values: dict[str, int] | None = None) -> Iterator[list[str]]:
    """:data:`LOW_LIMITS` set while the block runs (:func:`lower_limits`), then the real ones."""
    saved = lower_limits(values)
    try:
        yield [name for name, _, _ in saved]
    finally:
        for name, key, value in saved:
            setattr(sys.modules[name], key, value)


def lower_limits(values: dict[str, int] | None = None) -> list[tuple[str, str, int]]:
    """Set :data:`LOW_LIMITS` in every ``s2v_core`` module that holds them.

    The readers import the limits by name, so each module's copy is set. Returns (module,
    name, previous value) for each, to restore them (:func:`lowered_limits` does); the fuzzer's
    child processes keep the low limits, tests keep the real ones.
    """
    import s2v_core.io.hypnogram  # noqa: F401 - every reader module is loaded before setting
    import s2v_core.io.hypnogram.wfdb_stages  # noqa: F401
    import s2v_core.io.metadata  # noqa: F401

    values = LOW_LIMITS if values is None else values
    changed = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("s2v_core") or module is None:
            continue
        for key, value in values.items():
            previous = getattr(module, key, None)
            if isinstance(previous, int):
                setattr(module, key, value)
                changed.append((name, key, previous))
    return changed


class ContractViolation(Exception):
    """A parser broke the contract without a foreign exception: too slow, or file not named."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Hang(BaseException):
    """A call used more CPU time than allowed (a BaseException: ``except Exception`` misses it)."""


def _raise_hang(_signum, _frame):
    raise Hang("more CPU time than allowed for one input")


def run_bounded(seconds: float, call: Callable, *args, **kwargs):
    """``call(*args, **kwargs)``, interrupted by :class:`Hang` after ``seconds`` of CPU time.

    A CPU timer (SIGVTALRM), since libFuzzer keeps SIGALRM for its own ``-timeout``; the Python
    traceback of the hang then locates it like any exception. Main thread only.
    """
    previous = signal.signal(signal.SIGVTALRM, _raise_hang)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        return call(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def expect_contract(path: Path, call: Callable, *args, max_message: int | None = None, **kwargs):
    """Run one parser call under the contract.

    Returns the call's result, or None when it raised an :class:`S2VError` naming ``path``.
    Any other exception propagates; an unnamed file, a call over :data:`SLOW_S` or (when
    ``max_message`` is given) a message longer than that or on several lines raises
    :class:`ContractViolation`.
    """
    from s2v_core.errors import S2VError

    started = time.perf_counter()
    try:
        result = call(*args, **kwargs)
    except S2VError as exc:
        if path.name not in str(exc):
            raise ContractViolation(
                "unnamed", f"{call.__name__}: message lacks {path.name}: {exc}"
            ) from exc
        if max_message is not None and (len(str(exc)) > max_message or "\n" in str(exc)):
            raise ContractViolation(
                "long-message", f"{call.__name__}: a message of {len(str(exc))} characters"
            ) from exc
        if LIMIT_REFUSAL.search(str(exc)):  # a refusal by a limit: accepted, and counted
            REFUSALS["limits"] += 1
        result = None
    elapsed = time.perf_counter() - started
    if elapsed > SLOW_S:
        raise ContractViolation(f"slow@{call.__name__}", f"{call.__name__}: {elapsed:.1f} s")
    return result


def read_everything(path: Path) -> int:
    """Open an EDF/BDF, read every channel and the annotations; returns the samples read."""
    from s2v_core.io.edf import open_recording

    n = 0
    with open_recording(path) as rec:
        for info in rec.header.channels:
            n += rec.read_channel(info.label)[0].size
        rec.read_annotations()
    return n


def build_night(path: Path) -> int:
    """``load_night``: map, read, resample and epoch every channel; returns the epochs.

    This is where the budget of :mod:`s2v_core.limits` (samples produced against the file's size)
    is checked, so the target exercises every limit; a refusal is an ``InputFileError`` naming
    the file, which the contract accepts like any other.
    """
    from s2v_core.recording.loading import load_night

    return load_night(path).n_epochs


def run_edf(data: bytes, scratch: Path) -> None:
    """``check_header``, then ``open_recording`` and read every channel and the annotations, then
    (when the header was accepted) build the canonical night."""
    from s2v_core.io.edf_header import check_header

    path = scratch / ("fuzz.bdf" if data[:1] == b"\xff" else "fuzz.edf")
    path.write_bytes(data)
    header = expect_contract(path, check_header, path)
    expect_contract(path, read_everything, path)
    if header is not None:
        expect_contract(path, build_night, path)


def run_hypnogram(data: bytes, scratch: Path) -> None:
    """``detect_format``; ``read_hypnogram`` with "auto" and with every format of ``FORMATS``."""
    from s2v_core.io.hypnogram import FORMATS, detect_format, read_hypnogram

    is_edf, is_xml = data[:8] == b"0       ", data.lstrip()[:1] == b"<"
    path = scratch / ("fuzz.edf" if is_edf else "fuzz.xml" if is_xml else "fuzz.txt")
    path.write_bytes(data)
    expect = functools.partial(expect_contract, max_message=MAX_MESSAGE_CHARS)
    expect(path, detect_format, path)
    expect(path, read_hypnogram, path)
    for fmt in FORMATS:
        if fmt != "wfdb":
            expect(path, read_hypnogram, path, fmt, recording_start=RECORDING_START)
    st = scratch / "fuzz.st"  # WFDB record "fuzz" with a fixed header beside it
    st.write_bytes(data)
    if not (scratch / "fuzz.hea").exists():
        (scratch / "fuzz.hea").write_text(WFDB_HEADER)
    expect(st, read_hypnogram, st, "wfdb", recording_start=RECORDING_START)


def run_metadata(data: bytes, scratch: Path) -> None:
    """``read_metadata_csv``, then ``meta_for`` on the first three nights."""
    from s2v_core.io.metadata import meta_for, read_metadata_csv

    path = scratch / "metadata.csv"
    path.write_bytes(data)
    result = expect_contract(path, read_metadata_csv, path, max_message=MAX_MESSAGE_CHARS)
    if result is not None:
        for night in result[0].index[:3]:
            meta_for(result[0], night)


RUNNERS: dict[str, Callable[[bytes, Path], None]] = {
    "edf": run_edf,
    "hypnogram": run_hypnogram,
    "metadata": run_metadata,
}
"""Target name -> function(input bytes, scratch folder)."""


def _where(exc: BaseException, lines: bool = True) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "s2v_core" in f.filename] or frames[-1:]
    if not ours:
        return "?"
    return f"{Path(ours[-1].filename).name}:{ours[-1].lineno if lines else ours[-1].name}"


def signature(exc: BaseException, lines: bool = True) -> str:
    """Finding key: exception type and innermost ``s2v_core`` frame.

    ``ValueError@edf.py:42`` with ``lines``, else ``ValueError@edf.py:read_channel``, which
    survives edits elsewhere in the file.
    """
    if isinstance(exc, ContractViolation):
        if exc.__cause__ is not None:
            return f"{exc.key.split('@')[0]}@{_where(exc.__cause__, lines)}"
        return exc.key
    return f"{type(exc).__name__}@{_where(exc, lines)}"


def describe(exc: BaseException) -> dict:
    """A JSON-able record of one finding: signature, error text, traceback tail."""
    text = "".join(traceback.format_exception(exc))
    return {
        "signature": signature(exc),
        "error": f"{type(exc).__name__}: {exc}"[:500],
        "traceback": text[-3000:],
    }


def preload() -> None:
    """Import the heavy readers up front so that no input pays for them; silence warnings."""
    warnings.simplefilter("ignore")
    import mne.io  # noqa: F401
    import pandas  # noqa: F401
    import pyedflib  # noqa: F401
    import wfdb  # noqa: F401
