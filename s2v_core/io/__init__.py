"""Readers of the file formats: EDF/EDF+/BDF, hypnograms, WFDB beats, DREAMS text, metadata tables.

Each reader returns plain data and validates what it reads; building a canonical night from it is
the job of :mod:`s2v_core.recording`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from s2v_core.errors import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they load on first use
    from s2v_core.io.dreams import read_dreams_signal
    from s2v_core.io.edf import open_recording
    from s2v_core.io.edf_header import check_header
    from s2v_core.io.hypnogram.reader import read_hypnogram
    from s2v_core.io.metadata import read_metadata_csv
    from s2v_core.io.wfdb_beats import read_wfdb_beats

_WHERE = {
    "read_dreams_signal": "s2v_core.io.dreams",
    "open_recording": "s2v_core.io.edf",
    "check_header": "s2v_core.io.edf_header",
    "read_hypnogram": "s2v_core.io.hypnogram.reader",
    "read_metadata_csv": "s2v_core.io.metadata",
    "read_wfdb_beats": "s2v_core.io.wfdb_beats",
}
"""Where each public name is defined. Loaded on first use, so that importing one module (e.g.
``io.atomic`` for checkpoints) does not import every reader (pyedflib, defusedxml)."""

__all__ = [
    "check_header",
    "open_recording",
    "read_dreams_signal",
    "read_hypnogram",
    "read_metadata_csv",
    "read_wfdb_beats",
]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
