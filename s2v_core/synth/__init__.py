"""Physiologically grounded synthetic cohort: sample data and pretraining corpus.

Public entry points: :func:`generate_cohort` (writes EDF+ files, hypnograms and
``metadata.csv``), :func:`generate_night` (one night in memory) and :func:`synth_hypnogram`.
"""

from s2v_core.synth.cohort import METADATA_COLUMNS, generate_cohort, plan_cohort
from s2v_core.synth.hypnogram import load_transitions, synth_hypnogram, transition_matrix
from s2v_core.synth.physiology import (
    NightSpec,
    SubjectTraits,
    SynthNight,
    draw_traits,
    generate_night,
)
from s2v_core.synth.sites import SITES, ChannelSpec, SiteSpec, get_site
from s2v_core.synth.writers import write_edf, write_hypnogram

__all__ = [
    "METADATA_COLUMNS",
    "SITES",
    "ChannelSpec",
    "NightSpec",
    "SiteSpec",
    "SubjectTraits",
    "SynthNight",
    "draw_traits",
    "generate_cohort",
    "generate_night",
    "get_site",
    "load_transitions",
    "plan_cohort",
    "synth_hypnogram",
    "transition_matrix",
    "write_edf",
    "write_hypnogram",
]
