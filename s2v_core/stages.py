"""Sleep stage codes used everywhere in the project.

W=0, N1=1, N2=2, N3=3, REM=4, unscored=-1. REM is 4 here but 5 in R&K, NSRR and Profusion
codes: every reader maps explicitly through :func:`label_to_stage`, never by position.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = [
    "DREAMS_CODES",
    "PROJECT_CODES",
    "RK_CODES",
    "STAGE_NAMES",
    "UNSCORED",
    "class_names",
    "label_to_stage",
    "merge_stages",
]

W, N1, N2, N3, REM = 0, 1, 2, 3, 4
UNSCORED = -1
STAGE_NAMES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
"""Index = stage code."""

# Normalised label -> stage. Keys are lower-case with runs of separators collapsed to one
# space (see _normalise). R&K stages 3 and 4 both become N3; movement and "?" are unscored.
_LABELS: dict[str, int] = {
    # plain names
    "w": W, "wake": W, "awake": W, "n1": N1, "n2": N2, "n3": N3, "n4": N3,
    "r": REM, "rem": REM, "s1": N1, "s2": N2, "s3": N3, "s4": N3,
    "stage 1": N1, "stage 2": N2, "stage 3": N3, "stage 4": N3,
    "stage w": W, "stage r": REM, "stage rem": REM, "stage n1": N1, "stage n2": N2,
    "stage n3": N3, "nrem1": N1, "nrem2": N2, "nrem3": N3, "nrem4": N3,
    # Sleep-EDF EDF+ annotations
    "sleep stage w": W, "sleep stage 1": N1, "sleep stage 2": N2, "sleep stage 3": N3,
    "sleep stage 4": N3, "sleep stage r": REM, "sleep stage n1": N1, "sleep stage n2": N2,
    "sleep stage n3": N3, "sleep stage ?": UNSCORED, "movement time": UNSCORED,
    "sleep stage n4": N3, "sleep stage rem": REM, "sleep stage wake": W,
    "stage n4": N3, "stage wake": W, "stage 0": W, "s0": W, "nrem 1": N1, "nrem 2": N2,
    "nrem 3": N3, "nrem 4": N3, "paradoxical sleep": REM,
    # NSRR EventConcept text (the part before "|"); "wake" is listed above
    "stage 1 sleep": N1, "stage 2 sleep": N2, "stage 3 sleep": N3,
    "stage 4 sleep": N3, "rem sleep": REM, "unscored": UNSCORED, "movement": UNSCORED,
    # unscored / artefact markers
    "?": UNSCORED, "mt": UNSCORED, "m": UNSCORED, "u": UNSCORED, "unknown": UNSCORED,
    "art": UNSCORED, "artefact": UNSCORED, "artifact": UNSCORED, "nan": UNSCORED,
    "-1": UNSCORED, "": UNSCORED, "l": UNSCORED,
}

# Integer code tables for formats that store numbers. R&K/NSRR/Profusion: 5 = REM.
RK_CODES: dict[int, int] = {0: W, 1: N1, 2: N2, 3: N3, 4: N3, 5: REM, 6: UNSCORED, 7: UNSCORED, 9: UNSCORED}
"""NSRR / Profusion / R&K integer codes -> project codes (5 = REM, 4 = S4 -> N3, 9 = unscored)."""

PROJECT_CODES: dict[int, int] = {W: W, N1: N1, N2: N2, N3: N3, REM: REM, UNSCORED: UNSCORED}
"""Already in project codes (YASA convention: REM = 4)."""

DREAMS_CODES: dict[int, int] = {5: W, 4: REM, 3: N1, 2: N2, 1: N3, 0: N3}
"""DREAMS 5-s codes: 5=W 4=REM 3=S1 2=S2 1=S3 0=S4; negative codes are unscored."""


def _normalise(label: str) -> str:
    text = label.strip().lower()
    text = re.sub(r"[\s_\-:/]+", " ", text)
    return text.strip()


def label_to_stage(label: str) -> int:
    """Map a textual stage label to a project stage code.

    Parameters
    ----------
    label : str
        Any common spelling: ``"W"``, ``"N2"``, ``"Sleep stage 4"``, ``"REM sleep|5"``,
        ``"Stage 2 sleep|2"``, ``"MT"``, ``"?"``.

    Returns
    -------
    int
        0..4, or -1 for unscored / movement / unknown-but-declared-unscored labels.

    Raises
    ------
    KeyError
        If the label is not recognised. Callers turn this into a message naming the file.

    Examples
    --------
    >>> label_to_stage("Sleep stage R"), label_to_stage("Stage 4 sleep|4"), label_to_stage("?")
    (4, 3, -1)
    """
    text = label
    if "|" in text:  # NSRR "Stage 2 sleep|2": the text before the bar is authoritative
        text = text.split("|", 1)[0]
    key = _normalise(text)
    if key in _LABELS:
        return _LABELS[key]
    raise KeyError(label)


def merge_stages(stages: np.ndarray, n_classes: int) -> np.ndarray:
    """Merge 5-class codes into 4 classes (W, N1+N2, N3, REM) or 3 (W, NREM, REM).

    Unscored (-1) stays -1. Returned codes are contiguous: 4-class 0..3, 3-class 0..2.
    """
    s = np.asarray(stages)
    if n_classes == 5:
        return s.copy()
    if n_classes == 4:
        table = np.array([0, 1, 1, 2, 3])
    elif n_classes == 3:
        table = np.array([0, 1, 1, 1, 2])
    else:
        raise ValueError(f"n_classes must be 5, 4 or 3, got {n_classes}")
    out = np.full(s.shape, UNSCORED, dtype=np.int8)
    ok = s >= 0
    out[ok] = table[s[ok]]
    return out


def class_names(n_classes: int) -> tuple[str, ...]:
    """Names of the classes produced by :func:`merge_stages`."""
    return {5: STAGE_NAMES, 4: ("W", "N1+N2", "N3", "REM"), 3: ("W", "NREM", "REM")}[n_classes]
