"""Text read from files, made safe where people look at it: spreadsheets, terminals, Markdown.

* :mod:`s2v_core.sanitize.cells`: CSV/TSV cells a spreadsheet would run as formulas get a
  leading ``'`` (CSV injection), reversibly; every CSV the project writes goes through it.
* :mod:`s2v_core.sanitize.text`: control characters, escape sequences and bidi overrides
  written as visible ``\\uXXXX`` escapes (terminal output), and Markdown/HTML syntax escaped
  (text shown by the app).

Layer 0: imports nothing else of the package, so every layer can use it.
"""

__all__ = []  # import from s2v_core.sanitize.cells and s2v_core.sanitize.text
