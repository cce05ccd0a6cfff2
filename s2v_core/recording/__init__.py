"""From a recording file to a canonical :class:`~s2v_core.night.Night`: channel mapping and loading."""

from s2v_core.recording.channels import ChannelMapping, map_channels
from s2v_core.recording.dreams import load_dreams_night
from s2v_core.recording.loading import load_night, load_wfdb_night, with_hypnogram

__all__ = [
    "ChannelMapping",
    "load_dreams_night",
    "load_night",
    "load_wfdb_night",
    "map_channels",
    "with_hypnogram",
]
