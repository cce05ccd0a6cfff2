"""Readers of the file formats: EDF/EDF+/BDF, hypnograms, WFDB beats, DREAMS text, metadata tables.

Each reader returns plain data and validates what it reads; building a canonical night from it is
the job of :mod:`s2v_core.recording`.
"""

from s2v_core.io.dreams import read_dreams_signal
from s2v_core.io.edf import open_recording
from s2v_core.io.edf_header import check_header
from s2v_core.io.hypnogram.reader import read_hypnogram
from s2v_core.io.metadata import read_metadata_csv
from s2v_core.io.wfdb_beats import read_wfdb_beats

__all__ = [
    "check_header",
    "open_recording",
    "read_dreams_signal",
    "read_hypnogram",
    "read_metadata_csv",
    "read_wfdb_beats",
]
