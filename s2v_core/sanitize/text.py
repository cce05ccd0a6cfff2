"""Text from files made safe to print on a terminal or to render as Markdown.

A recording controls much of what the tools show: channel labels, annotation texts, the file
name, and the warnings and error messages that quote them. An EDF label ``EEG\\x1b[2J`` would
clear the user's terminal, ``\\x1b]0;title\\x07`` retitle it, a C1 ``\\x9b`` start a control
sequence on terminals that honour 8-bit controls, and a bidi override (U+202E) make
``evil\\u202efdp.edf`` display as ``evilfde.pdf``. :func:`terminal_safe` writes every such
character as a visible ``\\uXXXX`` escape:

* C0 controls U+0000-U+001F (newline, tab and carriage return too, unless kept), DEL U+007F
  and C1 controls U+0080-U+009F. Escaping ESC (and CSI) makes every escape sequence inert.
* Bidi embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks U+200E,
  U+200F, U+061C, and the line and paragraph separators U+2028, U+2029.

The ``\\uXXXX`` form is also a valid JSON string escape that decodes to the same character, so
the command line's output guard (:class:`TerminalSafeStream`) can escape a whole stream, JSON
included: JSON stays valid and a JSON parser still gets the original label back.

:func:`markdown_safe` additionally backslash-escapes Markdown and HTML syntax, for text shown by
Streamlit elements that render Markdown (``st.warning``, ``st.error``, ``st.caption`` ...).

Examples
--------
>>> terminal_safe("EEG\\x1b[2J")
'EEG\\\\u001b[2J'
>>> terminal_safe("a\\nb"), terminal_safe("a\\nb", keep="\\n")
('a\\\\u000ab', 'a\\nb')
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "UNSAFE_CHARACTERS",
    "TerminalSafeStream",
    "has_unsafe",
    "markdown_safe",
    "safe_tree",
    "terminal_safe",
]

UNSAFE_CHARACTERS = (
    "\x00-\x1f\x7f\x80-\x9f"  # C0, DEL, C1
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings/overrides (LRE RLE PDF LRO RLO), isolates (LRI RLI FSI PDI)
    "\u200e\u200f\u061c"  # LRM, RLM, ALM
    "\u2028\u2029"  # line and paragraph separator
)
"""A regex character-class body of what :func:`terminal_safe` escapes."""

_UNSAFE = re.compile(f"[{UNSAFE_CHARACTERS}]")
_PATTERNS: dict[str, re.Pattern] = {"": _UNSAFE}


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def _pattern(keep: str) -> re.Pattern:
    pat = _PATTERNS.get(keep)
    if pat is None:
        kept = "".join(re.escape(c) for c in keep)
        pat = re.compile(f"(?![{kept}])[{UNSAFE_CHARACTERS}]")
        _PATTERNS[keep] = pat
    return pat


def terminal_safe(text: Any, keep: str = "") -> str:
    """``str(text)`` with control, bidi and separator characters written as ``\\uXXXX``.

    Parameters
    ----------
    text : object
        Usually a label, file name, annotation or message read from or about a file.
    keep : str
        Characters left as they are, e.g. ``"\\n"`` for a message whose lines the program made.
        A single field (a label, a name) should keep nothing, so it cannot start a new line.
    """
    return _pattern(keep).sub(_escape, text if isinstance(text, str) else str(text))


def has_unsafe(text: str, keep: str = "") -> bool:
    """True when :func:`terminal_safe` would change ``text``."""
    return _pattern(keep).search(text) is not None


def safe_tree(obj: Any) -> Any:
    """``obj`` with :func:`terminal_safe` applied to every string in it (dict keys included)."""
    if isinstance(obj, str):
        return terminal_safe(obj)
    if isinstance(obj, dict):
        return {safe_tree(k): safe_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [safe_tree(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(safe_tree(v) for v in obj)
    return obj


_MD_ANYWHERE = re.compile(r"([\\`*~$<])")  # active anywhere in a line, rare in messages
_MD_LINK = re.compile(r"\]\(")  # [text](url) and ![alt](url)
_MD_AUTOLINK = re.compile(r"(?i)(?<=[a-z]):(?=//)|(?<=www)\.")  # http://... and www. literals
_MD_DIRECTIVE = re.compile(r":(?=[A-Za-z-]+\[|material/)")  # Streamlit's :red[...], :material/x:
_MD_BLOCK_START = re.compile(r"^(\d*)([#>+\-=|_.)])")  # heading, quote, list (- + 1. 1)), rule, table


def markdown_safe(text: Any) -> str:
    """Text from a file (a label, a file name, a message quoting them) shown as itself in Markdown.

    For Streamlit elements that render Markdown (``st.warning``, ``st.error``, ``st.caption``,
    ``st.markdown``). :func:`terminal_safe` first (so newlines cannot start a heading, a list or
    a table), then backslash escapes, which Markdown renders as the character itself, where the
    text could otherwise add something: a link or an image that loads a remote URL (``](``),
    an autolink (``http://``, ``www.``, ``<...>``), code, emphasis, strike-through, ``$`` maths,
    Streamlit's colour and icon directives, or a block at the start of the message. Raw HTML is
    escaped by Streamlit itself. Ordinary messages (file names, ``'EEG C4-M1'``, ``['C4-M1']``,
    ``(NaN)``, ``1.5 min``) come back unchanged, so what the app shows equals what ``s2v``
    prints.
    """
    out = _MD_ANYWHERE.sub(r"\\\1", terminal_safe(text))
    out = _MD_LINK.sub(r"]\\(", out)
    out = _MD_AUTOLINK.sub(lambda m: "\\" + m.group(), out)
    out = _MD_DIRECTIVE.sub(r"\\:", out)
    return _MD_BLOCK_START.sub(r"\1\\\2", out)


class TerminalSafeStream:
    """A text stream that writes what it is given to ``stream`` made terminal-safe.

    Newline, tab and carriage return (``keep``) pass: the program's own lines, tables and
    progress bars use them. Everything else :func:`terminal_safe` escapes is escaped, wherever
    it comes from (a print, a log record, a warning, argparse). Other attributes are the
    wrapped stream's.
    """

    def __init__(self, stream: Any, keep: str = "\n\t\r"):
        self.stream = stream
        self.keep = keep

    def write(self, text: str) -> int:
        self.stream.write(terminal_safe(text, self.keep) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
