"""Turn annotation texts into stage codes or event kinds.

Text labels go through :func:`s2v_core.stages.label_to_stage`; integer labels through a
code table chosen by ``codes`` (project codes 0..4 with REM = 4, or R&K/NSRR codes with
REM = 5). What is not a stage is either an event kind (apnea, hypopnea, arousal,
desaturation, limb, other) or, when it looks like a stage label, an error.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from s2v_core.errors import HypnogramError
from s2v_core.stages import PROJECT_CODES, RK_CODES, UNSCORED, label_to_stage

__all__ = [
    "CODE_TABLES",
    "EVENT_KINDS",
    "NOT_STAGE",
    "UNKNOWN",
    "as_text_array",
    "classify_event",
    "looks_like_stage",
    "map_stage_labels",
]

log = logging.getLogger(__name__)

NOT_STAGE = -8
"""Sentinel code: the label is not a stage (an event or a marker such as "Lights off")."""
UNKNOWN = -9
"""Sentinel code: the label looks like a stage label but is not a known one."""

CODE_TABLES = ("auto", "project", "rk")
EVENT_KINDS: tuple[str, ...] = ("apnea", "hypopnea", "arousal", "desaturation", "limb", "other")

# A label that matches this but is not in the stage table is reported as unknown rather
# than silently treated as a non-stage marker.
_STAGE_LIKE = re.compile(r"stage|\bn?rem\b|^(n|s|nrem)? ?\d+$|^[a-z?]$|^[+-]?\d+(\.\d*)?$")
_INT = re.compile(r"^[+-]?\d+(\.0*)?$")


def as_text_array(labels) -> np.ndarray:
    """``(K,)`` object array of Python ``str`` from any label sequence.

    Unlike ``astype(str)``, which makes every element as wide as the longest label (one 2 MB
    label among a thousand short ones took 8 GB), each label keeps its own size.
    """
    flat = np.asarray(labels, dtype=object).ravel()
    out = np.empty(flat.size, dtype=object)
    out[:] = [x if type(x) is str else str(x) for x in flat]
    return out


def classify_event(label: str) -> str:
    """Event kind of a non-stage annotation text.

    Returns one of :data:`EVENT_KINDS`.

    Examples
    --------
    >>> classify_event("Obstructive apnea|Obstructive Apnea"), classify_event("Lights off")
    ('apnea', 'other')
    """
    text = label.lower()
    if "hypopn" in text:
        return "hypopnea"
    if "apn" in text:  # apnea, apnoea
        return "apnea"
    if "arous" in text:
        return "arousal"
    if "desat" in text:
        return "desaturation"
    if re.search(r"\blimb|\bleg\b|\bplm|\blm\b", text):
        return "limb"
    return "other"


def looks_like_stage(label: str) -> bool:
    """True when an unrecognised label is probably a misspelt or unsupported stage."""
    text = re.sub(r"[\s_\-:/]+", " ", label.strip().lower())
    return bool(_STAGE_LIKE.search(text))


def _integer_table(values: list[int], codes: str, source: str) -> tuple[dict[int, int], list[str]]:
    if codes not in CODE_TABLES:
        raise HypnogramError(
            source or None, f"codes must be one of {', '.join(CODE_TABLES)}, got {codes!r}"
        )
    if codes == "project":
        return PROJECT_CODES, []
    if codes == "rk":
        return RK_CODES, []
    high = [v for v in values if v > 4]
    if not high:
        return PROJECT_CODES, []
    return RK_CODES, [
        f"integer stage codes go up to {max(high)}: read as R&K/NSRR codes (4 = S4 -> N3, "
        "5 = REM, 9 = unscored); pass codes='project' if 0..4 were W/N1/N2/N3/REM"
    ]


def _as_int(text: str) -> int | None:
    stripped = text.strip()
    return int(float(stripped)) if _INT.match(stripped) else None


def map_stage_labels(
    labels: np.ndarray, codes: str = "auto", *, source: str = ""
) -> tuple[np.ndarray, list[str]]:
    """Map annotation texts to project stage codes.

    Parameters
    ----------
    labels : np.ndarray
        ``(K,)`` label texts.
    codes : {"auto", "project", "rk"}
        Table for integer labels: "project" (0..4, REM = 4), "rk" (R&K/NSRR/Profusion:
        0 W, 1-3 N1-N3, 4 S4 -> N3, 5 REM, 6/7/9 unscored), or "auto" = project unless some
        integer label is above 4, then R&K with a warning. Negative integers are unscored.
    source : str
        File path, for messages.

    Returns
    -------
    stage : np.ndarray
        ``(K,)`` int64 codes -1..4, or :data:`NOT_STAGE` / :data:`UNKNOWN`.
    warnings : list of str
    """
    texts = as_text_array(labels)
    uniq, inverse = np.unique(texts, return_inverse=True)
    as_int = [_as_int(u) for u in uniq]
    table, warnings = _integer_table([v for v in as_int if v is not None], codes, source)
    mapped = np.empty(uniq.size, dtype=np.int64)
    for j, (text, value) in enumerate(zip(uniq, as_int, strict=True)):  # unique labels only
        if value is not None:
            mapped[j] = UNSCORED if value < 0 else table.get(value, UNKNOWN)
            continue
        try:
            mapped[j] = label_to_stage(text)
        except KeyError:
            mapped[j] = (
                UNKNOWN if looks_like_stage(text) and classify_event(text) == "other" else NOT_STAGE
            )
    return mapped[inverse.ravel()], warnings
