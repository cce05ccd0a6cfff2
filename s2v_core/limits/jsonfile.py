"""Reading JSON from user-supplied places with a size cap and a nesting cap.

Python's ``json`` parser recurses once per level of nesting: a ``config.json`` of 100,000 ``[``
ends in a ``RecursionError`` (a traceback in ``s2v predict --model`` and on the Model page before
issue 16), and nothing stops it from reading a multi-GB file into memory. Every JSON file read from
a place a user chooses (checkpoint ``config.json`` and optimizer state, night-head configs, saved
nights, training configs, embedding site scores) goes through :func:`read_json`, which

- reads at most ``max_bytes`` + 1 bytes (:data:`~s2v_core.limits.bounds.MAX_JSON_BYTES`, 4 MiB) and
  refuses a larger file before parsing,
- measures the nesting depth with a scan that does not recurse and refuses more than
  ``max_depth`` levels (:data:`~s2v_core.limits.bounds.MAX_JSON_DEPTH`, 64),
- turns every parser failure (syntax, an integer too long to convert, invalid UTF-8, and, as a
  backstop, ``RecursionError``) into one line: by default an
  :class:`~s2v_core.errors.InputFileError` naming the file, or whatever ``error`` builds.

Messages quote at most a short excerpt of the file and name it by its folder and file name only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s2v_core.errors import InputFileError, S2VError
from s2v_core.limits.bounds import MAX_JSON_BYTES, MAX_JSON_DEPTH, describe_bytes

__all__ = ["json_depth", "loads_json", "read_json"]

# A JSON string (the only place brackets may appear without nesting): quote, then runs of plain
# characters or backslash escapes, then quote. Written so that the regex engine does not backtrack.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in ``text``, without recursion (0 for a scalar).

    Brackets inside strings do not count. For text that is not valid JSON the figure is only an
    estimate (the parser then refuses the text anyway).

    Examples
    --------
    >>> json_depth('{"a": [1, [2, "]]]"]]}'), json_depth("3")
    (3, 0)
    """
    stripped = _STRING.sub('""', text).encode("utf-8", "surrogatepass")
    raw = np.frombuffer(stripped, np.uint8)
    brackets = raw[np.isin(raw, list(_OPEN | _CLOSE))]
    if brackets.size == 0:
        return 0
    steps = np.where(np.isin(brackets, list(_OPEN)), 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max())


def _default_error(path: Path | None) -> Callable[[str], S2VError]:
    return lambda problem: InputFileError(path, problem)


def loads_json(
    text: str,
    *,
    error: Callable[[str], S2VError],
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """``json.loads(text)`` with the nesting cap; every failure is ``error(problem)``.

    Raises
    ------
    S2VError
        What ``error`` builds from a one-line problem.
    """
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"JSON nested {depth} levels deep; at most {max_depth} levels are accepted")
    try:
        return json.loads(text)
    except RecursionError:  # backstop: the depth scan is only an estimate for broken text
        raise error(f"JSON nested too deeply; at most {max_depth} levels are accepted") from None
    except json.JSONDecodeError as err:
        raise error(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise error(f"not valid JSON ({str(err).split(';')[0][:120]})") from None


def read_json(
    path: str | Path,
    *,
    error: Callable[[str], S2VError] | None = None,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Read a JSON file from a user-supplied place, within the size and nesting caps.

    Parameters
    ----------
    path : str or Path
        The file.
    error : callable, optional
        Builds the exception from a one-line problem (e.g. ``lambda p: CheckpointError(...)``);
        default :class:`InputFileError` naming the file.
    max_bytes, max_depth : int
        The caps (default :data:`~s2v_core.limits.bounds.MAX_JSON_BYTES`,
        :data:`~s2v_core.limits.bounds.MAX_JSON_DEPTH`).

    Raises
    ------
    S2VError
        Missing or unreadable file, over ``max_bytes``, not UTF-8, not JSON, nested too deeply.
    """
    p = Path(path)
    make = error or _default_error(p)
    try:
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # never more, whatever the file claims to be
    except FileNotFoundError:
        raise make("file not found") from None
    except OSError as exc:
        raise make(f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > max_bytes:
        raise make(f"the JSON file is over {describe_bytes(max_bytes)}, the most accepted")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise make(f"not valid JSON (not UTF-8 text at byte {err.start})") from None
    return loads_json(text, error=make, max_depth=max_depth)
