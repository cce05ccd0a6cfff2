"""Read any common hypnogram file into project stage codes per 30-s epoch.

Epoch 0 starts at the recording start; codes are W=0 N1=1 N2=2 N3=3 REM=4, unscored=-1
(R&K S3 and S4 -> N3; movement time and "?" -> unscored; R&K/NSRR/Profusion REM = 5 is
mapped explicitly). Every problem with a file raises
:class:`~s2v_core.errors.HypnogramError`, whose message names the file.

Rules shared by every format (see :mod:`s2v_core.io.hypnogram.grid`): an epoch takes the
stage with the largest time overlap, ties go to the stage that starts first, and an epoch
scored for under 15 s is unscored. Overlapping stage annotations that disagree: the one
that starts later wins where they overlap (warned). Non-stage annotations (apneas,
arousals, "Lights off") become ``Hypnogram.events``. Hypnograms over 7 days, XML over
200 MB, XML declaring entities or a DOCTYPE, and files over the limits of
:mod:`s2v_core.io.text_limits` (size, rows, annotations, label and field length, XML elements
and depth) are refused.

Examples
--------
>>> hyp = read_hypnogram("SC4001EC-Hypnogram.edf")  # doctest: +SKIP
>>> night, first = trim_to_sleep_period(hyp)  # doctest: +SKIP
>>> night.aligned(n_epochs=signal_epochs).counts()  # doctest: +SKIP
"""

from s2v_core.io.hypnogram.core import Hypnogram, hypnogram_from_annotations
from s2v_core.io.hypnogram.grid import regrid_stages
from s2v_core.io.hypnogram.reader import (
    FORMATS,
    detect_format,
    read_hypnogram,
    trim_to_sleep_period,
)

__all__ = ["FORMATS", "Hypnogram", "detect_format", "hypnogram_from_annotations", "read_hypnogram", "regrid_stages", "trim_to_sleep_period"]
