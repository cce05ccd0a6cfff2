"""From a recording file to a canonical :class:`~s2v_core.night.Night`: channel mapping and loading.

:func:`load_recording` (the registry) reads every supported kind; :func:`load_night` is the
EDF/BDF and ``mne.io.Raw`` path it uses.
"""

from s2v_core.recording.channels import ChannelMapping, map_channels
from s2v_core.recording.dreams import load_dreams_night
from s2v_core.recording.loading import load_night, load_wfdb_night, with_hypnogram
from s2v_core.recording.pairing import hypnogram_for
from s2v_core.recording.registry import find_recordings, load_recording, recording_kind

__all__ = [
    "ChannelMapping",
    "find_recordings",
    "hypnogram_for",
    "load_dreams_night",
    "load_night",
    "load_recording",
    "load_wfdb_night",
    "map_channels",
    "recording_kind",
    "with_hypnogram",
]
