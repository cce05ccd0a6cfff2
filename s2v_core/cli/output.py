"""What ``s2v`` prints is safe for the terminal, whatever the files it reads contain.

Two layers (:mod:`s2v_core.sanitize.text` has the escaping):

* :func:`safe_output` wraps ``sys.stdout`` and ``sys.stderr`` for the whole command, so no
  escape sequence, C1 control or bidi override read from a file reaches the terminal, whichever
  path printed it (print, logging, warnings, argparse, a progress bar). Newline, tab and carriage
  return pass there: the program's own lines and progress bars need them.
* :func:`field` (and :func:`fields`) escape one value read from a file completely, newlines and
  carriage returns included, so a label or a file name cannot start or overwrite a line of the
  text output. The commands use them where they format such values.

JSON output (``--json``) stays valid JSON that decodes to the exact values: ``json.dumps``
escapes control characters and, with its default ``ensure_ascii``, every non-ASCII character
(bidi overrides and C1 included); the stream guard writes DEL as ``\\u007f``, also a JSON
escape of the same character.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterator
from typing import Any

from s2v_core.sanitize.text import TerminalSafeStream, safe_tree, terminal_safe

__all__ = ["SafeFormatter", "field", "fields", "safe_output"]


def field(value: Any) -> str:
    """One value from a file (label, annotation, file name, message), escaped for a terminal line."""
    return terminal_safe(value)


def fields(obj: Any) -> Any:
    """Every string in ``obj`` (dicts, lists, tuples) escaped like :func:`field`."""
    return safe_tree(obj)


class SafeFormatter(logging.Formatter):
    """A log formatter whose message part is escaped like :func:`field` (one line per record)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record = copy.copy(record)
        record.message = terminal_safe(record.message)
        return super().formatMessage(record)


@contextlib.contextmanager
def safe_output() -> Iterator[None]:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`TerminalSafeStream` meanwhile."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, TerminalSafeStream):
        sys.stdout = TerminalSafeStream(sys.stdout)
    if not isinstance(sys.stderr, TerminalSafeStream):
        sys.stderr = TerminalSafeStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
