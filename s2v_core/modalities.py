"""The nine canonical modalities, their sampling rates and token sizes (METHOD.md section 2)."""

from __future__ import annotations

__all__ = [
    "EPOCH_SECONDS",
    "MODALITIES",
    "NAMED_SUBSETS",
    "SFREQ",
    "UNITS",
    "check_modality",
    "parse_modality_list",
    "samples_per_epoch",
]

EPOCH_SECONDS = 30
"""Length of one token / scoring epoch, in seconds."""

MODALITIES: tuple[str, ...] = (
    "eeg",
    "eog",
    "emg",
    "ecg",
    "ibi",
    "resp",
    "effort",
    "airflow",
    "spo2",
)
"""Canonical modality names, in the fixed order used for masks and model inputs."""

SFREQ: dict[str, int] = {
    "eeg": 128,
    "eog": 128,
    "emg": 128,
    "ecg": 128,
    "ibi": 4,
    "resp": 4,
    "effort": 4,
    "airflow": 4,
    "spo2": 4,
}
"""Canonical sampling rate of each modality, in Hz."""

UNITS: dict[str, str] = {
    "eeg": "uV",
    "eog": "uV",
    "emg": "uV",
    "ecg": "uV",
    "ibi": "s",
    "resp": "a.u.",
    "effort": "a.u.",
    "airflow": "a.u.",
    "spo2": "%",
}
"""Physical unit of each modality in a canonical night (before robust scaling)."""

NAMED_SUBSETS: dict[str, tuple[str, ...]] = {
    "FULL": MODALITIES,
    "EEG only": ("eeg",),
    "IBI & RESP": ("ibi", "resp"),
    "ECG & effort": ("ecg", "effort"),
}
"""Subsets the paper reports, by the names the app shows."""


def samples_per_epoch(modality: str) -> int:
    """Samples in one 30-s token of ``modality`` (3840 at 128 Hz, 120 at 4 Hz)."""
    check_modality(modality)
    return SFREQ[modality] * EPOCH_SECONDS


def check_modality(modality: str) -> str:
    """Return ``modality`` if it is canonical, else raise ``ValueError`` naming the allowed ones."""
    if modality not in SFREQ:
        raise ValueError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}")
    return modality


def parse_modality_list(text: str | None) -> tuple[str, ...] | None:
    """Parse ``"eeg,eog"`` into a tuple in canonical order; ``None`` or ``""`` means all."""
    if text is None or not text.strip():
        return None
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    for n in names:
        check_modality(n)
    return tuple(m for m in MODALITIES if m in names)
