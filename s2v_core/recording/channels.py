"""Channel-label to modality mapping: a documented alias table plus label normalisation.

Real recordings name the same sensor in many ways ("EEG Fpz-Cz", "C4-A1", "C4:M1", "EEG(sec)",
"LOC", "Chin1-Chin2", "THOR RES", "VTH", "SaO2", ...). Every label is normalised (upper case,
separators and brackets dropped) and matched against :data:`ALIASES`, an ordered list of
``(modality, rank, pattern, note)``; a lower rank is preferred. For each modality the channel with
the best rank wins; ties go to the channel that comes first in the file, and every tie is
reported so the choice is never silent. Users can override any choice.

``ibi`` and ``resp`` are normally derived (from ECG R-peaks, and from effort/airflow/ECG); a
channel that already holds them (e.g. "RR", "IBI") is mapped directly.

Recordings that come with channel types (an ``mne.io.Raw``) are mapped by the same table; a type
that says what the sensor is (:data:`TYPE_MODALITIES`: ``eog``, ``emg``, ``ecg``, ``resp``) limits
the channel to those modalities and makes it a candidate even when its label is not in the table
(rank :data:`TYPE_RANK`, after every alias). MNE's ``eeg`` type says nothing: it is what MNE gives
every channel of an EDF file, so the label decides as for files. ``stim`` channels are never mapped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from s2v_core.errors import ChannelMappingError
from s2v_core.modalities import MODALITIES

__all__ = [
    "ALIASES",
    "IGNORED_TYPES",
    "TYPE_MODALITIES",
    "TYPE_RANK",
    "ChannelChoice",
    "ChannelMapping",
    "classify_label",
    "map_channels",
    "normalise_label",
]

# (modality, rank, regex on the normalised label, why). The normalised label is upper case with
# every non-alphanumeric character removed, e.g. "EEG C4-A1" -> "EEGC4A1", "Chin1-Chin2" -> "CHIN1CHIN2".
_REF = r"(M1|M2|A1|A2|REF|LE|AVG|CLE|M|A)?"
ALIASES: tuple[tuple[str, int, str, str], ...] = (
    # EEG: central derivations preferred (METHOD.md), then frontal-central, then any EEG.
    ("eeg", 0, rf"^(EEG)?C4{_REF}$", "C4 (central, preferred)"),
    ("eeg", 1, rf"^(EEG)?C3{_REF}$", "C3 (central)"),
    ("eeg", 2, r"^EEG$", "SHHS 'EEG' (C4-A1)"),
    ("eeg", 3, r"^EEGSEC$|^EEG2$", "SHHS 'EEG(sec)' (C3-A2)"),
    ("eeg", 4, rf"^(EEG)?CZ{_REF}$|^(EEG)?CZ(O1|O2|PZ|FZ)$", "Cz"),
    ("eeg", 5, r"^(EEG)?FPZCZ$", "Fpz-Cz (Sleep-EDF)"),
    ("eeg", 6, rf"^(EEG)?(F3|F4|FZ|FP1|FP2|FPZ){_REF}$", "frontal"),
    ("eeg", 7, rf"^(EEG)?(O1|O2|PZOZ|PZ|P3|P4|T3|T4){_REF}$", "occipital/parietal/temporal"),
    ("eeg", 8, r"^EEG.+", "any channel labelled EEG"),
    # EOG: left first (E1/LOC), then right.
    ("eog", 0, rf"^(EOG)?(E1|LOC|EOGL|LEOG|EOG1|EOGLEFT|LEFTEOG|EL){_REF}$", "left EOG"),
    ("eog", 1, rf"^(EOG)?(E2|ROC|EOGR|REOG|EOG2|EOGRIGHT|RIGHTEOG|ER){_REF}$", "right EOG"),
    ("eog", 2, r"^EOG(HORIZONTAL|HORIZ|H)?$", "horizontal EOG"),
    ("eog", 3, r"^EOG.+", "any channel labelled EOG"),
    # chin EMG (never leg EMG).
    ("emg", 0, r"^(EMG)?(CHIN|CHIN1CHIN2|CHIN1CHIN3|CHIN2CHIN3|CHINEMG|LCHINRCHIN|CCHIN|SUBMENTAL|EMGSUBMENTAL)\d?$", "chin"),
    ("emg", 1, r"^(EMG)?(CHIN|LCHIN|RCHIN)\w*$|^EMGCHIN\w*$|^SUBMENTAL\w*$", "chin (other reference)"),
    ("emg", 2, r"^EMG\d?$", "plain 'EMG' (SHHS chin EMG)"),
    ("emg", 3, r"^EMG(?!.*(LEG|LAT|RAT|TIB|ARM|INTERCOST|DIAPH)).+$", "any EMG that is not a limb"),
    # ECG.
    ("ecg", 0, r"^(ECG|EKG)(II|2|L2|LEADII)$", "ECG lead II"),
    ("ecg", 1, r"^(ECG|EKG)(I|1|L1|LA|RA|L|R|LARA|RALA)?$", "ECG"),
    ("ecg", 2, r"^(ECG|EKG)\w*$", "any ECG"),
    # Derived series stored as channels.
    ("ibi", 0, r"^(IBI|RRI|RR|RRINTERVAL|NN|NNI)$", "inter-beat intervals"),
    # Effort belts: thoracic first, then abdominal, then generic respiration belts.
    ("effort", 0, r"^(THOR|THORAX|THORACIC|THO|CHEST|VTH|RIPTHOR|RIPTHORAX|THORRES|THOREFFORT|EFFORTTHO|EFFORTTHOR|RESPCHEST|RESPTHORAX|THORRIP)\w*$", "thoracic belt"),
    ("effort", 1, r"^(ABD|ABDO|ABDOMEN|ABDOMINAL|VAB|RIPABDOM|RIPABD|ABDORES|ABDOEFFORT|EFFORTABD|RESPABDOMEN|RESPABD|ABDRIP)\w*$", "abdominal belt"),
    ("effort", 2, r"^(RIPSUM|SUM|RESPSUM|EFFORT|RESPEFFORT)$", "summed / generic effort"),
    ("effort", 3, r"^(RESP|RESPIRATION|RESPIRATORY)\d?$", "generic respiration channel (assumed belt)"),
    # Airflow: nasal pressure first, then thermistor / generic flow.
    ("airflow", 0, r"^(NASALPRESSURE|NASALPRES|PFLOW|PRESSURE|CANNULA|NASAL|NAF\d?|NPRES|NASALFLOW|FLOWPATIENT\d?|FLOWPT|RESPNASAL)$", "nasal pressure"),
    ("airflow", 1, r"^(FLOW|AIRFLOW|AIRFLOW\d|NEWAIR|NEWAIRFLOW|ORONASAL|RESPORONASAL|THERM|THERMISTOR|ORONASALTHERM|AUX\w*FLOW|FLOW\d)$", "oro-nasal flow / thermistor"),
    ("airflow", 2, r"\w*FLOW\w*$", "any flow channel"),
    # SpO2 (not pulse rate or pleth).
    ("spo2", 0, r"^(SPO2|SAO2|SO2|SPO|OSAT|OXSAT|SAT|SATURATION|OXYGENSATURATION|SPO2PCT|SAO2PCT|SPO2\d)$", "oxygen saturation"),
)

_COMPILED = tuple((m, r, re.compile(p), note) for m, r, p, note in ALIASES)

TYPE_MODALITIES: dict[str, tuple[str, ...]] = {
    "eog": ("eog",),
    "emg": ("emg",),
    "ecg": ("ecg",),
    "resp": ("effort", "airflow"),
}
"""MNE channel type -> the modalities such a channel may serve (the first when its label is unknown)."""
TYPE_RANK = 1 + max(rank for _, rank, _, _ in ALIASES)
"""Rank of a channel chosen by its type alone: after every alias of the table."""
IGNORED_TYPES = frozenset({"stim"})
"""MNE channel types never mapped automatically (trigger channels)."""
# A typed EMG channel whose label names a limb or a breathing muscle is no chin EMG (as in the
# table's last EMG alias).
_NOT_CHIN = re.compile(r"LEG|LAT|RAT|TIB|ARM|INTERCOST|DIAPH")


def normalise_label(label: str) -> str:
    """Upper-case ``label`` and drop everything that is not a letter or digit.

    >>> normalise_label("EEG C4-A1"), normalise_label("Chin1-Chin2"), normalise_label("EEG(sec)")
    ('EEGC4A1', 'CHIN1CHIN2', 'EEGSEC')
    """
    text = label.upper().replace("µ", "U")
    return re.sub(r"[^A-Z0-9]", "", text)


def classify_label(label: str) -> list[tuple[str, int, str]]:
    """All ``(modality, rank, note)`` that ``label`` matches, best rank first per modality."""
    key = normalise_label(label)
    found: dict[str, tuple[str, int, str]] = {}
    for modality, rank, pattern, note in _COMPILED:
        if modality in found:
            continue
        if pattern.search(key):
            found[modality] = (modality, rank, note)
    return sorted(found.values(), key=lambda t: t[1])


@dataclass
class ChannelChoice:
    """The channel chosen for one modality, and how."""

    modality: str
    channel: str  # label as written in the file
    rank: int  # alias rank (lower is better); -1 for a user override
    reason: str
    alternatives: list[str] = field(default_factory=list)  # other channels that also matched


@dataclass
class ChannelMapping:
    """Modality -> chosen channel, plus notes on ties and ignored channels."""

    choices: dict[str, ChannelChoice]
    notes: list[str]
    unmapped: list[str]  # channel labels that matched no modality

    def channel_for(self, modality: str) -> str | None:
        c = self.choices.get(modality)
        return None if c is None else c.channel

    def as_dict(self) -> dict[str, str]:
        return {m: c.channel for m, c in self.choices.items()}


def map_channels(
    labels: Sequence[str],
    overrides: Mapping[str, str | None] | None = None,
    *,
    exclude: Sequence[str] = (),
    types: Mapping[str, str] | None = None,
) -> ChannelMapping:
    """Choose one channel per modality from a file's channel labels.

    Parameters
    ----------
    labels : sequence of str
        Channel labels in file order.
    overrides : mapping, optional
        ``{modality: channel_label}`` to force a choice, or ``{modality: None}`` to leave the
        modality out. Unknown modalities or channels raise :class:`ChannelMappingError`.
    exclude : sequence of str
        Labels never to map automatically (e.g. annotation channels).
    types : mapping, optional
        ``{label: channel type}`` as MNE writes them (``raw.get_channel_types()``); see the
        module docstring for how a type is used. Files have no types: ``None``.

    Returns
    -------
    ChannelMapping

    Examples
    --------
    >>> m = map_channels(["EEG Fpz-Cz", "EOG horizontal", "EMG submental", "Resp oro-nasal"])
    >>> m.as_dict()
    {'eeg': 'EEG Fpz-Cz', 'eog': 'EOG horizontal', 'emg': 'EMG submental', 'airflow': 'Resp oro-nasal'}
    >>> map_channels(["C4-M1", "Ch7"], types={"C4-M1": "eeg", "Ch7": "emg"}).as_dict()
    {'eeg': 'C4-M1', 'emg': 'Ch7'}
    """
    overrides = dict(overrides or {})
    types = dict(types or {})
    label_list = list(labels)
    dupes = sorted({lab for lab in label_list if label_list.count(lab) > 1})
    notes: list[str] = []
    if dupes:
        notes.append(f"duplicate channel labels {dupes}: the first of each is used")
    for modality, channel in overrides.items():
        if modality not in MODALITIES:
            raise ChannelMappingError(
                f"override names unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}"
            )
        if channel is not None and channel not in label_list:
            raise ChannelMappingError(
                f"override {modality}={channel!r}: no such channel; channels in the file: "
                + ", ".join(repr(x) for x in label_list)
            )

    candidates: dict[str, list[tuple[int, int, str, str]]] = {m: [] for m in MODALITIES}
    unmapped: list[str] = []
    seen: set[str] = set()
    for pos, label in enumerate(label_list):
        if label in seen or label in exclude or types.get(label) in IGNORED_TYPES:
            continue
        seen.add(label)
        matches = _typed_matches(label, types.get(label), notes)
        if not matches:
            unmapped.append(label)
        for modality, rank, note in matches:
            candidates[modality].append((rank, pos, label, note))

    choices: dict[str, ChannelChoice] = {}
    used: set[str] = set()
    # Modalities with a user override first, then in canonical order; a channel serves one modality.
    for modality in MODALITIES:
        if modality in overrides:
            channel = overrides[modality]
            if channel is not None:
                choices[modality] = ChannelChoice(modality, channel, -1, "set by the user")
                used.add(channel)
    for modality in MODALITIES:
        if modality in overrides:
            continue
        cands = sorted(c for c in candidates[modality] if c[2] not in used)
        if not cands:
            continue
        rank, _, label, note = cands[0]
        others = [c[2] for c in cands[1:]]
        tied = [c[2] for c in cands[1:] if c[0] == rank]
        if tied:
            notes.append(
                f"{modality}: {label!r} chosen over equally ranked {tied} because it comes first "
                "in the file (override to change)"
            )
        choices[modality] = ChannelChoice(modality, label, rank, note, others)
        used.add(label)
    return ChannelMapping(choices=choices, notes=notes, unmapped=unmapped)


def _typed_matches(label: str, ch_type: str | None, notes: list[str]) -> list[tuple[str, int, str]]:
    """:func:`classify_label`, limited by a channel type of :data:`TYPE_MODALITIES` when there is one."""
    matches = classify_label(label)
    allowed = TYPE_MODALITIES.get((ch_type or "").lower())
    if allowed is None:
        return matches
    kept = [m for m in matches if m[0] in allowed]
    if kept:
        return kept
    if allowed == ("emg",) and _NOT_CHIN.search(normalise_label(label)):
        notes.append(f"{label!r} is typed 'emg' but its label names a limb or breathing muscle: "
                     "not used as chin EMG (override to use it)")
        return []
    return [(allowed[0], TYPE_RANK, f"channel type {ch_type!r} (label not in the alias table)")]
