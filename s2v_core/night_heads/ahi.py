"""Apnea-hypopnea index from scored events.

AHI (:func:`ahi_from_events`): apneas plus hypopneas that start in a sleep epoch (N1, N2, N3, REM),
divided by the hours of sleep. Events starting in wake or unscored epochs are counted separately and
left out, as in AASM scoring.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import InputFileError, S2VError
from s2v_core.io.edf import open_recording
from s2v_core.io.hypnogram.labels import classify_event
from s2v_core.io.hypnogram.reader import detect_format, read_hypnogram
from s2v_core.io.text_limits import (
    MAX_TABLE_BYTES,
    check_file_size,
    check_table_cells,
    clip_message,
)
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.night_heads.tasks import NightHeadError
from s2v_core.sanitize.cells import read_csv

__all__ = [
    "AHIResult",
    "SEVERITY_EDGES",
    "SEVERITY_NAMES",
    "ahi_from_events",
    "ahi_from_files",
    "cohort_ahi",
    "severity_class",
]

log = logging.getLogger(__name__)
SEVERITY_EDGES = (5.0, 15.0, 30.0)
SEVERITY_NAMES = ("normal", "mild", "moderate", "severe")
"""AHI severity classes: < 5, 5-15, 15-30, >= 30 events per hour of sleep."""
APNEA_KIND, HYPOPNEA_KIND = "apnea", "hypopnea"


# --- AHI from scored events -----------------------------------------------------------------
@dataclass(frozen=True)
class AHIResult:
    """Apnea-hypopnea index of one night.

    Attributes
    ----------
    ahi : float or None
        Events per hour of sleep; None when the night has no sleep epoch.
    n_apneas, n_hypopneas : int
        Events counted (starting in a sleep epoch).
    n_outside_sleep : int
        Apneas and hypopneas starting in wake, unscored epochs or outside the hypnogram; not
        counted.
    sleep_hours : float
        Epochs scored N1, N2, N3 or REM, in hours.
    source : str
        Where the events came from.
    """

    ahi: float | None
    n_apneas: int
    n_hypopneas: int
    n_outside_sleep: int
    sleep_hours: float
    source: str = ""

    @property
    def severity(self) -> str | None:
        """``normal`` (< 5), ``mild`` (5-15), ``moderate`` (15-30) or ``severe`` (>= 30)."""
        return None if self.ahi is None else SEVERITY_NAMES[int(severity_class(self.ahi))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ahi": None if self.ahi is None else round(self.ahi, 3),
            "severity": self.severity,
            "n_apneas": self.n_apneas,
            "n_hypopneas": self.n_hypopneas,
            "n_outside_sleep": self.n_outside_sleep,
            "sleep_hours": round(self.sleep_hours, 4),
            "source": self.source,
        }


def severity_class(ahi: float | np.ndarray) -> np.ndarray:
    """Severity class codes 0..3 (:data:`SEVERITY_NAMES`) of AHI values (events/h)."""
    return np.digitize(np.asarray(ahi, dtype=float), SEVERITY_EDGES).astype(np.int64)


def ahi_from_events(
    stages: np.ndarray,
    events: pd.DataFrame,
    *,
    epoch_seconds: float = EPOCH_SECONDS,
    source: str = "",
) -> AHIResult:
    """AHI from a hypnogram and a table of scored events.

    Parameters
    ----------
    stages : np.ndarray, shape (n_epochs,)
        Project stage codes (W=0 N1=1 N2=2 N3=3 REM=4, unscored=-1).
    events : pandas.DataFrame
        Columns ``onset_s`` (seconds from the start of epoch 0) and ``kind`` (``"apnea"``,
        ``"hypopnea"``, others ignored), as in :attr:`s2v_core.io.hypnogram.core.Hypnogram.events`.
        Each row is one event; WFDB ``.st`` notes give one row per event token.
    epoch_seconds : float
        Epoch length of ``stages``.
    source : str
        Stored in the result.

    Returns
    -------
    AHIResult
    """
    stages = np.asarray(stages)
    missing = [c for c in ("onset_s", "kind") if c not in events.columns]
    if missing:
        raise NightHeadError(f"event table lacks column(s) {', '.join(missing)}")
    asleep = (stages >= 1) & (stages <= 4)
    sleep_hours = float(asleep.sum()) * epoch_seconds / 3600.0
    kinds = events["kind"].astype(str).str.lower().to_numpy()
    resp = np.isin(kinds, (APNEA_KIND, HYPOPNEA_KIND))
    onset = pd.to_numeric(events["onset_s"], errors="coerce").to_numpy(dtype=float)[resp]
    kinds = kinds[resp]
    epoch = np.floor(onset / epoch_seconds + 1e-9)
    inside = np.isfinite(epoch) & (epoch >= 0) & (epoch < len(stages))
    in_sleep = np.zeros(len(onset), dtype=bool)
    in_sleep[inside] = asleep[epoch[inside].astype(np.int64)]
    n_apneas = int(np.sum(in_sleep & (kinds == APNEA_KIND)))
    n_hypopneas = int(np.sum(in_sleep & (kinds == HYPOPNEA_KIND)))
    ahi = (n_apneas + n_hypopneas) / sleep_hours if sleep_hours > 0 else None
    return AHIResult(
        ahi=ahi,
        n_apneas=n_apneas,
        n_hypopneas=n_hypopneas,
        n_outside_sleep=int(np.sum(~in_sleep)),
        sleep_hours=sleep_hours,
        source=source,
    )


_EVENT_FORMATS = ("nsrr-xml", "profusion-xml", "edf-annotations", "wfdb")
"""Hypnogram formats that carry scored events (no event row there means no event)."""


def _edf_events(path: Path) -> pd.DataFrame | None:
    """Apnea/hypopnea-classified EDF+ annotations of a recording; None when it has none."""
    with open_recording(path) as rec:
        onsets, durations, texts = rec.read_annotations()
    if len(texts) == 0:
        return None
    return pd.DataFrame(
        {
            "onset_s": np.asarray(onsets, dtype=float),
            "duration_s": np.asarray(durations, dtype=float),
            "label": list(texts),
            "kind": [classify_event(t) for t in texts],
        }
    )


def ahi_from_files(
    hypnogram: str | Path, events_file: str | Path | None = None, *, fmt: str = "auto"
) -> AHIResult:
    """AHI of one night from its hypnogram file, with the events it holds or another file's.

    Parameters
    ----------
    hypnogram : path
        Any format :func:`s2v_core.io.hypnogram.read_hypnogram` reads. For a WFDB record the
        ``.st`` file (``.ecg`` and ``.hea`` are accepted and point to the ``.st`` beside them);
        its aux notes carry one event token per event (H HA hypopneas; OA X CA CAA apneas).
    events_file : path, optional
        EDF+ recording whose annotations hold the scored events (e.g. a PSG whose hypnogram is
        a plain CSV). Without it, the hypnogram's own events are used.
    fmt : str
        Hypnogram format key, or "auto".

    Raises
    ------
    NightHeadError
        Neither file holds scored events (a CSV hypnogram without ``events_file``, or an EDF+
        file without annotations): the AHI is unknown, not zero.
    """
    path = Path(hypnogram)
    if path.suffix.lower() in (".ecg", ".hea"):
        path = path.with_suffix(".st")
    if not path.is_file():
        raise InputFileError(path, "no such hypnogram file")
    kind = "wfdb" if path.suffix.lower() == ".st" else (fmt if fmt != "auto" else detect_format(path))
    hyp = read_hypnogram(path, kind)
    if events_file is not None:
        events = _edf_events(Path(events_file))
        if events is None:
            raise NightHeadError(
                f"{Path(events_file).name}: no EDF+ annotations, so no scored events: AHI unknown"
            )
        source = Path(events_file).name
    else:
        if kind not in _EVENT_FORMATS and (hyp.events is None or hyp.events.empty):
            raise NightHeadError(
                f"{path.name}: a {kind} hypnogram holds no scored events: give the file that "
                "does (an EDF+ recording with event annotations) to compute the AHI"
            )
        events = hyp.events if hyp.events is not None else pd.DataFrame(columns=["onset_s", "kind"])
        source = path.name
    return ahi_from_events(hyp.stages, events, epoch_seconds=hyp.epoch_seconds, source=source)


def cohort_ahi(folder: str | Path) -> pd.DataFrame:
    """AHI from the scored events of every night of a cohort folder with ``metadata.csv``.

    Each row's hypnogram (``hypnogram_file``) gives the stages; its events are used when its
    format carries events (NSRR or Profusion XML), otherwise the EDF+ annotations of
    ``psg_file``. Nights whose files hold no scored event get ``ahi`` NaN and the reason in
    ``error``.

    Returns
    -------
    pandas.DataFrame
        Columns night, ahi, severity, n_apneas, n_hypopneas, n_outside_sleep, sleep_hours,
        source, error; plus ``ahi_table`` when ``metadata.csv`` has an ``ahi`` column.
    """
    folder = Path(folder)
    table_path = folder / "metadata.csv"
    if not table_path.is_file():
        raise InputFileError(folder, "no metadata.csv with psg_file and hypnogram_file columns")
    try:
        check_file_size(table_path, MAX_TABLE_BYTES, "tables", hypnogram=False)
        table = read_csv(table_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas parser errors: ValueError
        raise InputFileError(table_path, f"cannot read the metadata table: {clip_message(exc)}") from None
    check_table_cells(table_path, table)  # s2v_core.io.text_limits
    for col in ("night", "hypnogram_file"):
        if col not in table.columns:
            raise InputFileError(table_path, f"metadata table lacks the {col!r} column")
    rows = []
    for rec in table.to_dict("records"):
        row: dict[str, Any] = {"night": rec["night"]}
        try:
            if not rec["hypnogram_file"]:
                raise NightHeadError("no hypnogram_file")
            hyp = folder / rec["hypnogram_file"]
            psg = folder / rec["psg_file"] if rec.get("psg_file") else None
            events_file = None
            if hyp.suffix.lower() != ".st" and detect_format(hyp) not in _EVENT_FORMATS:
                events_file = psg
            row.update(ahi_from_files(hyp, events_file).to_dict())
            row["error"] = ""
        except S2VError as exc:
            row.update({"ahi": math.nan, "error": str(exc)})
        if "ahi" in table.columns:
            row["ahi_table"] = pd.to_numeric(rec["ahi"], errors="coerce")
        rows.append(row)
    cols = ["night", "ahi", "severity", "n_apneas", "n_hypopneas", "n_outside_sleep"]
    cols += ["sleep_hours", "source", "error"] + (["ahi_table"] if "ahi" in table.columns else [])
    return pd.DataFrame(rows).reindex(columns=cols)
