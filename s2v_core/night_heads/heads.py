"""Night-level heads on pooled embeddings of a frozen sleep2vec model, and AHI from scored events.

Tasks (:func:`parse_task`):

``age``
    Regression in years; metrics MAE (years) and Pearson r.
``sex``
    Binary (M = 1, F = 0); metrics AUROC and balanced accuracy.
``ahi``
    Regression on ``log1p(AHI)``, reported in events per hour: MAE, Pearson r, Spearman rho,
    and the severity classes < 5, 5-15, 15-30, >= 30 (accuracy, Cohen's kappa).
``outcome:COLUMN``
    Binary outcome from any metadata column holding 0/1, yes/no, true/false (y/n, t/f);
    blanks are unknown and left out.

Model choice. Each night is one mean-pooled embedding (the masked mean over epochs of the fused
per-epoch states, :func:`s2v_core.inference.predict.night_embedding`; optionally with the standard
deviation appended), and the head is a regularised linear model on standardised features: ridge
regression for ``age``/``ahi``, L2 logistic regression with balanced class weights for binary
tasks. Cohorts for night-level labels are small (tens to hundreds of nights for a 128-d or
larger embedding), where an MLP overfits and varies from seed to seed; a linear probe is convex,
deterministic, the usual way to read out frozen embeddings, and its strength is chosen by an
inner subject-level cross-validation inside each training fold.

Evaluation is subject-level: folds come from :class:`~sklearn.model_selection.GroupKFold`
(regression) or :class:`~sklearn.model_selection.StratifiedGroupKFold` (binary), grouped by
subject, so no subject has nights on both sides. Every metric is reported as the mean over
folds with a t-based 95% confidence interval, and on the pooled out-of-fold predictions,
next to a trivial baseline (training-fold mean, or training-fold prevalence) and, when the
nights come from several sites, a site-only linear model (the shortcut a head could learn).

A trained head is a folder ``head.json`` (task, settings, backbone id, CV metrics) plus
``head.safetensors`` (scaler mean and scale, coefficients, intercept); no pickle.

AHI from scored events (:func:`ahi_from_events`): apneas plus hypopneas that start in a sleep
epoch (N1, N2, N3, REM), divided by the hours of sleep. Events starting in wake or unscored
epochs are counted separately and left out, as in AASM scoring.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import InputFileError, S2VError
from s2v_core.modalities import EPOCH_SECONDS

log = logging.getLogger(__name__)

HEAD_FORMAT_VERSION = 1
HEAD_CONFIG_FILE = "head.json"
HEAD_WEIGHTS_FILE = "head.safetensors"
HEAD_KIND = "night_head"
POOLINGS = ("mean", "mean+std")
ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
"""Regularisation strengths tried by the inner cross-validation (ridge alpha; logistic 1/C)."""
DEFAULT_ALPHA = 10.0
"""Strength used when a training fold has too few subjects for an inner cross-validation."""
SEVERITY_EDGES = (5.0, 15.0, 30.0)
SEVERITY_NAMES = ("normal", "mild", "moderate", "severe")
"""AHI severity classes: < 5, 5-15, 15-30, >= 30 events per hour of sleep."""
APNEA_KIND, HYPOPNEA_KIND = "apnea", "hypopnea"
_TRUE = frozenset({"1", "1.0", "yes", "y", "true", "t"})
_FALSE = frozenset({"0", "0.0", "no", "n", "false", "f"})
_ID_COLUMNS = ("night", "night_id", "record", "recording", "file")
_SUBJECT_COLUMNS = ("subject", "subject_id", "participant", "patient", "nsrrid", "pptid")
_META_COLUMNS = ("night", "subject", "site", "age", "sex", "ahi", "split")


class NightHeadError(S2VError):
    """A night-level task cannot be set up, trained or applied; the message says why."""


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
    from s2v_core.io.edf import open_recording
    from s2v_core.io.hypnogram.labels import classify_event

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
    from s2v_core.io.hypnogram import detect_format, read_hypnogram

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
    from s2v_core.io.hypnogram import detect_format

    folder = Path(folder)
    table_path = folder / "metadata.csv"
    if not table_path.is_file():
        raise InputFileError(folder, "no metadata.csv with psg_file and hypnogram_file columns")
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
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


# --- tasks and targets ----------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSpec:
    """A night-level task.

    Attributes
    ----------
    name : str
        ``age``, ``sex``, ``ahi`` or ``outcome:COLUMN``.
    kind : str
        ``"regression"`` or ``"binary"``.
    column : str
        Metadata column holding the target.
    """

    name: str
    kind: str
    column: str

    @property
    def log_target(self) -> bool:
        """The head is fitted on ``log1p`` of the target (AHI)."""
        return self.name == "ahi"

    @property
    def label(self) -> str:
        """Short name used in output columns (``age``, ``sex``, ``ahi`` or the column)."""
        return self.column if self.name.startswith("outcome:") else self.name


def parse_task(text: str) -> TaskSpec:
    """``"age"``, ``"sex"``, ``"ahi"`` or ``"outcome:COLUMN"`` -> :class:`TaskSpec`."""
    t = (text or "").strip()
    low = t.lower()
    if low in ("age", "ahi"):
        return TaskSpec(low, "regression", low)
    if low == "sex":
        return TaskSpec("sex", "binary", "sex")
    if low.startswith("outcome:"):
        col = t.split(":", 1)[1].strip()
        if not col:
            raise NightHeadError("outcome:COLUMN needs a column name, e.g. outcome:hypertension")
        return TaskSpec(f"outcome:{col}", "binary", col)
    raise NightHeadError(f"unknown task {text!r}; allowed: age, sex, ahi, outcome:COLUMN")


def binary_values(values: Iterable[Any], column: str) -> np.ndarray:
    """A column of 0/1, yes/no, true/false (y/n, t/f; any case) -> float 1/0, NaN if blank.

    Raises
    ------
    NightHeadError
        Any other value: the message lists what the column holds.
    """
    out, bad = [], []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(math.nan)
            continue
        if isinstance(v, bool | np.bool_):
            out.append(float(v))
            continue
        text = str(v).strip().lower()
        if text in ("", "nan", "na", "none"):
            out.append(math.nan)
        elif text in _TRUE:
            out.append(1.0)
        elif text in _FALSE:
            out.append(0.0)
        else:
            out.append(math.nan)
            bad.append(str(v))
    if bad:
        shown = ", ".join(repr(b) for b in sorted(set(bad))[:6])
        raise NightHeadError(
            f"column {column!r} is not binary: it holds {shown}"
            f"{' ...' if len(set(bad)) > 6 else ''}; allowed values: 0/1, yes/no, true/false"
        )
    return np.asarray(out, dtype=float)


def task_targets(frame: pd.DataFrame, task: TaskSpec) -> np.ndarray:
    """Target per row of ``frame`` (NaN where unknown): years, events/h, or 1/0.

    Raises
    ------
    NightHeadError
        A missing column, non-numeric or negative values, or a non-binary outcome column.
    """
    if task.column not in frame.columns:
        have = [c for c in frame.columns if not c.startswith("emb_")]
        raise NightHeadError(
            f"no {task.column!r} column in the night metadata (columns: {', '.join(have)}); "
            "give a table with it through --metadata"
        )
    col = frame[task.column]
    if task.name == "sex":
        sex = col.astype(object).map(lambda v: str(v).strip().upper() if isinstance(v, str) else v)
        bad = sorted({str(v) for v in sex if isinstance(v, str) and v not in ("M", "F", "")})
        if bad:
            raise NightHeadError(f"sex must be M or F (blank: unknown), found {', '.join(bad[:5])}")
        return np.array([1.0 if v == "M" else 0.0 if v == "F" else math.nan for v in sex])
    if task.kind == "binary":
        return binary_values(col.tolist(), task.column)
    y = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad = col[np.isnan(y) & col.notna() & (col.astype(str).str.strip() != "")]
    if len(bad):
        raise NightHeadError(
            f"column {task.column!r} must be numeric, found {', '.join(map(repr, bad[:5]))}"
        )
    if np.nanmin(y, initial=0.0) < 0:
        raise NightHeadError(f"column {task.column!r} has negative values")
    return y


def join_metadata(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Add (or overwrite) columns from a CSV, joined by night id or, failing that, by subject.

    The id column is the first of night, night_id, record, recording, file (case-insensitive);
    without one, the first of subject, subject_id, participant, patient, nsrrid, pptid. Blank
    cells do not overwrite known values.
    """
    p = Path(path)
    try:
        table = pd.read_csv(p, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(p, f"cannot read the metadata table: {exc}") from None
    lower = {c.strip().lower(): c for c in table.columns}
    key = next((lower[c] for c in _ID_COLUMNS if c in lower), None)
    on = "night"
    if key is None:
        key, on = next((lower[c] for c in _SUBJECT_COLUMNS if c in lower), None), "subject"
    if key is None:
        raise InputFileError(
            p, "no id column: expected one of " + ", ".join(_ID_COLUMNS + _SUBJECT_COLUMNS)
        )
    table[key] = table[key].astype(str).str.strip()
    if table[key].duplicated().any():
        dup = table.loc[table[key].duplicated(), key].iloc[0]
        raise InputFileError(p, f"id {dup!r} appears more than once in column {key!r}")
    table = table.set_index(key)
    out = frame.copy()
    ids = out[on].astype(str)
    matched = ids.isin(table.index)
    if not matched.any():
        raise InputFileError(p, f"no row matches a {on} of the nights (column {key!r})")
    for col in table.columns:
        name = col.strip()
        canon = name.lower() if name.lower() in _META_COLUMNS else name
        vals = ids.map(table[col]).where(matched)
        vals = vals.where(vals.astype(str).str.strip() != "")
        if canon in ("age", "ahi"):
            vals = pd.to_numeric(vals, errors="coerce")
        if canon in out.columns:
            out[canon] = vals.where(vals.notna(), out[canon])
        else:
            out[canon] = vals
    return out


# --- embeddings -----------------------------------------------------------------------------
def pool_night(epoch_embeddings: np.ndarray, coverage: np.ndarray | None, pooling: str) -> np.ndarray:
    """One vector per night: the masked mean (``mean``) or mean and std (``mean+std``)."""
    from s2v_core.inference.predict import night_embedding

    if pooling not in POOLINGS:
        raise NightHeadError(f"unknown pooling {pooling!r}; allowed: {', '.join(POOLINGS)}")
    mean = night_embedding(epoch_embeddings, coverage)
    if pooling == "mean":
        return mean
    emb = np.asarray(epoch_embeddings, dtype=np.float32)
    if coverage is not None and np.any(np.asarray(coverage) > 0):
        emb = emb[np.asarray(coverage) > 0]
    return np.concatenate([mean, emb.std(axis=0)]).astype(np.float32)


def embedding_columns(frame: pd.DataFrame) -> list[str]:
    """``emb_0 .. emb_{D-1}`` columns, in numeric order."""
    cols = [c for c in frame.columns if c.startswith("emb_") and c[4:].isdigit()]
    return sorted(cols, key=lambda c: int(c[4:]))


def _frame(rows: list[dict], vectors: list[np.ndarray]) -> pd.DataFrame:
    emb = np.stack(vectors)
    return pd.concat(
        [
            pd.DataFrame(rows),
            pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(emb.shape[1])]),
        ],
        axis=1,
    )


def store_embeddings(
    store: str | Path,
    model: Any,
    *,
    model_name: str = "",
    modalities: tuple[str, ...] | None = None,
    split: str | None = None,
    pooling: str = "mean",
    device: str = "cpu",
    on_night: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Pooled embedding and metadata of every night of a cohort store.

    Nights lacking a requested modality are skipped with a warning (listed in
    ``frame.attrs["skipped"]``).

    Returns
    -------
    pandas.DataFrame
        Columns night, subject, site, age, sex, ahi, split, n_epochs, modalities, model_id,
        pooling, then ``emb_0..emb_{D-1}``.
    """
    from s2v_core.cohort.store import CohortStore
    from s2v_core.inference.predict import predict_night

    cs = CohortStore(store)
    nights = cs.nights(split)
    if not nights:
        raise NightHeadError(f"{store}: no night{f' in split {split!r}' if split else ''}")
    rows, vectors, skipped = [], [], []
    for i, night_id in enumerate(nights):
        e = cs.entry(night_id)
        try:
            pred = predict_night(model, cs.night(night_id), modalities, device=device, with_embeddings=True)
        except S2VError as exc:
            skipped.append(f"{night_id} ({exc})")
            continue
        vectors.append(pool_night(pred.embeddings, pred.coverage, pooling))
        rows.append(
            {
                "night": night_id,
                "subject": e.subject,
                "site": e.site,
                "age": math.nan if e.age is None else float(e.age),
                "sex": e.sex,
                "ahi": math.nan if e.ahi is None else float(e.ahi),
                "split": e.split,
                "n_epochs": e.n_epochs,
                "modalities": ",".join(pred.modalities),
                "model_id": model_name,
                "pooling": pooling,
            }
        )
        if on_night is not None:
            on_night(i + 1, len(nights), night_id)
    for s in skipped:
        log.warning("night heads: skipped %s", s)
    if not rows:
        raise NightHeadError(
            f"{store}: no night could be embedded" + (f" ({skipped[0]})" if skipped else "")
        )
    out = _frame(rows, vectors)
    out.attrs["skipped"] = skipped
    return out


def recording_embedding(
    path: str | Path,
    model: Any,
    *,
    model_name: str = "",
    modalities: tuple[str, ...] | None = None,
    pooling: str = "mean",
    device: str = "cpu",
    hypnogram: str | Path | None = None,
) -> pd.DataFrame:
    """Pooled embedding of one recording (EDF/BDF or WFDB beats), same columns as a store's."""
    from s2v_core.inference.predict import predict_night
    from s2v_core.recording.loading import load_night

    night = load_night(path, hypnogram)
    pred = predict_night(model, night, modalities, device=device, with_embeddings=True)
    m = night.meta
    row = {
        "night": m.night_id,
        "subject": m.subject,
        "site": m.site,
        "age": math.nan if m.age is None else float(m.age),
        "sex": m.sex,
        "ahi": math.nan,
        "split": None,
        "n_epochs": night.n_epochs,
        "modalities": ",".join(pred.modalities),
        "model_id": model_name,
        "pooling": pooling,
    }
    return _frame([row], [pool_night(pred.embeddings, pred.coverage, pooling)])


# --- linear heads ---------------------------------------------------------------------------
def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    return mean, scale


def _fit_linear(x: np.ndarray, y: np.ndarray, kind: str, alpha: float) -> tuple[np.ndarray, float]:
    """Coefficients and intercept on standardised ``x``."""
    if kind == "regression":
        from sklearn.linear_model import Ridge

        m = Ridge(alpha=alpha).fit(x, y)
        return np.asarray(m.coef_, dtype=float).ravel(), float(m.intercept_)
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=1.0 / alpha, class_weight="balanced", max_iter=2000).fit(x, y)
    return np.asarray(m.coef_, dtype=float).ravel(), float(np.ravel(m.intercept_)[0])


def _score(x: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    return x @ coef + intercept


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _splitter(kind: str, n_splits: int, seed: int):
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if kind == "binary":
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _n_splits(kind: str, y: np.ndarray, groups: np.ndarray, wanted: int) -> int:
    n = len(np.unique(groups))
    if kind == "binary":
        n = min(len(np.unique(groups[y == c])) for c in (0.0, 1.0))
    return min(wanted, n)


def choose_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str, seed: int = 0) -> float:
    """Regularisation strength by an inner subject-level CV (MSE or log-loss), from :data:`ALPHAS`.

    Falls back to :data:`DEFAULT_ALPHA` when fewer than 3 subjects (per class, for binary tasks)
    are available.
    """
    k = _n_splits(kind, y, groups, 3)
    if k < 3:
        return DEFAULT_ALPHA
    losses = np.zeros(len(ALPHAS))
    for tr, te in _splitter(kind, k, seed).split(x, y.astype(int) if kind == "binary" else y, groups):
        if kind == "binary" and len(np.unique(y[tr])) < 2:
            continue
        mean, scale = _standardise(x[tr])
        xtr, xte = (x[tr] - mean) / scale, (x[te] - mean) / scale
        for i, a in enumerate(ALPHAS):
            coef, b = _fit_linear(xtr, y[tr], kind, a)
            s = _score(xte, coef, b)
            if kind == "regression":
                losses[i] += float(np.sum((s - y[te]) ** 2))
            else:
                p = np.clip(_sigmoid(s), 1e-7, 1 - 1e-7)
                losses[i] += float(-np.sum(y[te] * np.log(p) + (1 - y[te]) * np.log(1 - p)))
    return float(ALPHAS[int(np.argmin(losses))])


@dataclass
class NightHead:
    """A fitted linear night-level head: ``score = ((x - mean) / scale) @ coef + intercept``.

    For regression the score is the target (``log1p`` of it for AHI); for binary tasks the
    probability of the positive class is ``sigmoid(score)``.
    """

    task: TaskSpec
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.coef.size)

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise NightHeadError(
                f"the head expects {self.n_features} features per night, got shape {x.shape}"
            )
        return _score((x - self.mean) / self.scale, self.coef, self.intercept)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Years (age), events/h (AHI, >= 0), or probability of the positive class."""
        s = self.score(x)
        if self.task.kind == "binary":
            return _sigmoid(s)
        return np.maximum(np.expm1(s), 0.0) if self.task.log_target else s

    def save(self, folder: str | Path) -> Path:
        """Write ``head.safetensors`` and ``head.json`` into ``folder``."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": HEAD_FORMAT_VERSION,
            "kind": HEAD_KIND,
            "task": self.task.name,
            "task_kind": self.task.kind,
            "column": self.task.column,
            "target_transform": "log1p" if self.task.log_target else None,
            "model": "ridge" if self.task.kind == "regression" else "logistic (balanced)",
            "alpha": self.alpha,
            "n_features": self.n_features,
            **self.info,
        }
        try:
            text = json.dumps(meta, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise NightHeadError(f"head metadata is not JSON-serialisable: {exc}") from None
        tensors = {
            "mean": self.mean.astype(np.float64),
            "scale": self.scale.astype(np.float64),
            "coef": self.coef.astype(np.float64),
            "intercept": np.array([self.intercept], dtype=np.float64),
        }
        save_file(tensors, str(folder / HEAD_WEIGHTS_FILE), metadata={"kind": HEAD_KIND})
        (folder / HEAD_CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> NightHead:
        """Read a head written by :meth:`save`; refuses pickles and checks every shape."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from s2v_core.model.checkpoint import PICKLE_SUFFIXES

        folder = Path(folder)
        if not folder.is_dir():
            raise NightHeadError(f"{folder}: no such head folder")
        pickled = [p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickled:
            raise NightHeadError(f"{folder}: refusing pickled file(s) {', '.join(pickled)}")
        cfg_path, w_path = folder / HEAD_CONFIG_FILE, folder / HEAD_WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise NightHeadError(
                f"{folder}: not a night head (needs {HEAD_CONFIG_FILE} and {HEAD_WEIGHTS_FILE}; "
                "train one with s2v night-heads train)"
            )
        try:
            meta = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NightHeadError(f"{cfg_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("kind") != HEAD_KIND:
            raise NightHeadError(f"{cfg_path}: not a night head (kind must be {HEAD_KIND!r})")
        if meta.get("format_version") != HEAD_FORMAT_VERSION:
            raise NightHeadError(
                f"{cfg_path}: head format {meta.get('format_version')}, this version reads "
                f"{HEAD_FORMAT_VERSION}"
            )
        try:
            t = load_file(str(w_path))
        except (SafetensorError, OSError) as exc:
            raise NightHeadError(f"{w_path}: cannot read weights ({exc})") from None
        task = parse_task(str(meta.get("task", "")))
        n = meta.get("n_features")
        want = {"mean": (n,), "scale": (n,), "coef": (n,), "intercept": (1,)}
        got = {k: tuple(v.shape) for k, v in t.items()}
        if not isinstance(n, int) or got != want:
            raise NightHeadError(f"{w_path}: tensors {got} do not fit n_features={n}")
        info = {
            k: v
            for k, v in meta.items()
            if k
            not in (
                "format_version",
                "kind",
                "task",
                "task_kind",
                "column",
                "target_transform",
                "model",
                "alpha",
                "n_features",
            )
        }
        return cls(
            task=task,
            mean=t["mean"],
            scale=t["scale"],
            coef=t["coef"],
            intercept=float(t["intercept"][0]),
            alpha=float(meta.get("alpha", DEFAULT_ALPHA)),
            info=info,
        )


def fit_head(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, task: TaskSpec, *, seed: int = 0
) -> NightHead:
    """Fit a head on all given nights; the strength comes from :func:`choose_alpha`."""
    x = np.asarray(x, dtype=float)
    target = np.log1p(y) if task.log_target else np.asarray(y, dtype=float)
    alpha = choose_alpha(x, target, groups, task.kind, seed)
    mean, scale = _standardise(x)
    coef, b = _fit_linear((x - mean) / scale, target, task.kind, alpha)
    return NightHead(task, mean, scale, coef, b, alpha)


# --- metrics and cross-validation -----------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    return _pearson(rankdata(a), rankdata(b))


def task_metrics(task: TaskSpec, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Metrics of one set of predictions (years, events/h, or probabilities).

    Regression: ``mae``, ``pearson_r``; AHI adds ``spearman_rho``, ``severity_accuracy`` and
    ``severity_kappa``. Binary: ``auroc`` (NaN with one class) and ``balanced_accuracy``
    (threshold 0.5). Undefined values (a constant prediction has no correlation) are NaN.
    """
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    if task.kind == "binary":
        from sklearn.metrics import balanced_accuracy_score, roc_auc_score

        both = len(np.unique(y)) == 2
        return {
            "auroc": float(roc_auc_score(y, pred)) if both else math.nan,
            "balanced_accuracy": float(balanced_accuracy_score(y, pred >= 0.5)) if both else math.nan,
        }
    out = {"mae": float(np.mean(np.abs(pred - y))), "pearson_r": _pearson(y, pred)}
    if task.log_target:
        from sklearn.metrics import cohen_kappa_score

        ct, cp = severity_class(y), severity_class(pred)
        out["spearman_rho"] = _spearman(y, pred)
        out["severity_accuracy"] = float(np.mean(ct == cp))
        agree = len(np.unique(np.concatenate([ct, cp]))) > 1
        out["severity_kappa"] = float(cohen_kappa_score(ct, cp)) if agree else math.nan
    return out


_BOUNDS = {
    "pearson_r": (-1.0, 1.0),
    "spearman_rho": (-1.0, 1.0),
    "severity_kappa": (-1.0, 1.0),
    "auroc": (0.0, 1.0),
    "balanced_accuracy": (0.0, 1.0),
    "severity_accuracy": (0.0, 1.0),
    "mae": (0.0, math.inf),
}
_RANKING = ("pearson_r", "spearman_rho", "auroc")
"""Metrics a constant prediction cannot have: left out for the trivial baseline."""


def summarise(
    values: Iterable[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> dict[str, Any]:
    """Mean over folds with a t-based 95% interval (finite values only), clipped to ``bounds``."""
    from scipy.stats import t as student

    values = [float(x) for x in values]
    v = np.array([x for x in values if np.isfinite(x)], dtype=float)
    out: dict[str, Any] = {
        "per_fold": [round(float(x), 4) if np.isfinite(x) else None for x in values]
    }
    if v.size == 0:
        return {**out, "mean": None, "ci95": None}
    mean = float(v.mean())
    if v.size < 2:
        return {**out, "mean": round(mean, 4), "ci95": None}
    half = float(student.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    lo, hi = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return {**out, "mean": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def _site_features(sites: np.ndarray) -> np.ndarray:
    names = sorted({str(s) for s in sites})
    return np.array([[1.0 if str(s) == n else 0.0 for n in names] for s in sites])


@dataclass
class CVReport:
    """Subject-level cross-validation of a night-level head.

    Attributes
    ----------
    task : TaskSpec
    n_nights, n_subjects, n_folds : int
    metrics : dict
        ``{metric: {"head": summary, "baseline": summary, "site_only": summary?}}``; a summary
        is :func:`summarise` plus ``pooled`` (the metric on all out-of-fold predictions).
    predictions : pandas.DataFrame
        Out-of-fold predictions: night, subject, site, fold, target, head, baseline
        (and site_only).
    alphas : list of float
        Strength chosen in each fold.
    """

    task: TaskSpec
    n_nights: int
    n_subjects: int
    n_folds: int
    metrics: dict[str, dict[str, dict[str, Any]]]
    predictions: pd.DataFrame
    alphas: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "n_nights": self.n_nights,
            "n_subjects": self.n_subjects,
            "n_folds": self.n_folds,
            "splitter": "StratifiedGroupKFold" if self.task.kind == "binary" else "GroupKFold",
            "alphas": self.alphas,
            "metrics": self.metrics,
        }


def labelled_rows(frame: pd.DataFrame, task: TaskSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with a known target, and the targets; checks there is something to learn."""
    y = task_targets(frame, task)
    keep = np.isfinite(y)
    rows, y = frame.loc[keep].reset_index(drop=True), y[keep]
    rows["subject"] = rows["subject"].where(rows["subject"].notna(), rows["night"]).astype(str)
    if len(rows) < 4:
        raise NightHeadError(
            f"task {task.name}: only {len(rows)} night(s) with a known {task.column}; need >= 4"
        )
    subjects = rows["subject"].to_numpy()
    if task.kind == "binary":
        names = ("M", "F") if task.name == "sex" else ("positive (1)", "negative (0)")
        for c, name in zip((1.0, 0.0), names, strict=True):
            n = len(np.unique(subjects[y == c]))
            if n < 2:
                raise NightHeadError(
                    f"task {task.name}: {n} subject(s) with {task.column} {name}; both classes "
                    "need >= 2 subjects for a subject-level evaluation"
                )
    elif np.std(y) == 0:
        raise NightHeadError(f"task {task.name}: every night has the same {task.column}")
    return rows, y


def cross_validate(
    frame: pd.DataFrame, task: TaskSpec, *, n_splits: int = 5, seed: int = 0
) -> CVReport:
    """Subject-level cross-validation of the head against a trivial and a site-only baseline.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`store_embeddings` (optionally :func:`join_metadata`): ``night``,
        ``subject``, ``site``, the target column and ``emb_*``.
    task : TaskSpec
    n_splits : int
        Folds (capped at the number of subjects, or of subjects per class).
    seed : int
        Fold assignment and inner CV.
    """
    rows, y = labelled_rows(frame, task)
    x = rows[embedding_columns(rows)].to_numpy(dtype=float)
    groups = rows["subject"].astype(str).to_numpy()
    k = _n_splits(task.kind, y, groups, n_splits)
    if k < 2:
        raise NightHeadError(f"task {task.name}: need >= 2 subjects for subject-level folds")
    target = np.log1p(y) if task.log_target else y
    sites = rows["site"].fillna("?").astype(str).to_numpy()
    with_site = len(np.unique(sites)) > 1
    xs = _site_features(sites) if with_site else None

    def back(s: np.ndarray) -> np.ndarray:
        if task.kind == "binary":
            return _sigmoid(s)
        return np.maximum(np.expm1(s), 0.0) if task.log_target else s

    preds = {"head": np.full(len(y), np.nan), "baseline": np.full(len(y), np.nan)}
    if with_site:
        preds["site_only"] = np.full(len(y), np.nan)
    fold_of = np.full(len(y), -1)
    per_fold: dict[str, list[dict[str, float]]] = {m: [] for m in preds}
    alphas = []
    strat = y.astype(int) if task.kind == "binary" else y
    for f, (tr, te) in enumerate(_splitter(task.kind, k, seed).split(x, strat, groups)):
        fold_of[te] = f
        alpha = choose_alpha(x[tr], target[tr], groups[tr], task.kind, seed)
        alphas.append(alpha)
        mean, scale = _standardise(x[tr])
        coef, b = _fit_linear((x[tr] - mean) / scale, target[tr], task.kind, alpha)
        preds["head"][te] = back(_score((x[te] - mean) / scale, coef, b))
        if task.kind == "binary":
            prev = float(np.mean(y[tr]))
            preds["baseline"][te] = prev
        else:
            preds["baseline"][te] = back(np.full(len(te), float(np.mean(target[tr]))))
        if xs is not None:
            a_site = choose_alpha(xs[tr], target[tr], groups[tr], task.kind, seed)
            sc, sb = _fit_linear(xs[tr], target[tr], task.kind, a_site)
            preds["site_only"][te] = back(_score(xs[te], sc, sb))
        for m in preds:
            per_fold[m].append(task_metrics(task, y[te], preds[m][te]))
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for name in per_fold["head"][0]:
        metrics[name] = {}
        for m in preds:
            s = summarise([fm[name] for fm in per_fold[m]], _BOUNDS.get(name, (-math.inf, math.inf)))
            pooled = task_metrics(task, y, preds[m])[name]
            if m == "baseline" and name in _RANKING:  # constant within folds: no ranking
                s, pooled = {"per_fold": [], "mean": None, "ci95": None}, math.nan
            s["pooled"] = None if not np.isfinite(pooled) else round(float(pooled), 4)
            metrics[name][m] = s
    table = pd.DataFrame(
        {
            "night": rows["night"].astype(str),
            "subject": groups,
            "site": sites,
            "fold": fold_of,
            "target": y,
            **{m: v for m, v in preds.items()},
        }
    )
    return CVReport(task, len(y), len(np.unique(groups)), k, metrics, table, alphas)


def predictions_frame(head: NightHead, frame: pd.DataFrame) -> pd.DataFrame:
    """Night id, metadata and the head's prediction for each row of an embedding frame."""
    cols = embedding_columns(frame)
    if not cols:
        raise NightHeadError("no emb_* columns: these are not night embeddings")
    pooling = head.info.get("pooling", "mean")
    if "pooling" in frame.columns and set(frame["pooling"].dropna()) - {pooling}:
        raise NightHeadError(
            f"the head was trained on {pooling!r} pooling, these embeddings use "
            f"{', '.join(sorted(set(frame['pooling'].dropna())))}"
        )
    p = head.predict(frame[cols].to_numpy(dtype=float))
    keep = [c for c in ("night", "subject", "site", "modalities") if c in frame.columns]
    out = frame[keep].copy().reset_index(drop=True)
    lab = head.task.label
    if head.task.kind == "binary":
        if head.task.name == "sex":
            out["p_male"] = np.round(p, 5)
            out["sex_pred"] = np.where(p >= 0.5, "M", "F")
        else:
            out[f"p_{lab}"] = np.round(p, 5)
            out[f"{lab}_pred"] = (p >= 0.5).astype(int)
    else:
        out[f"{lab}_pred"] = np.round(p, 3)
        if head.task.log_target:
            out["severity_pred"] = np.asarray(SEVERITY_NAMES, dtype=object)[severity_class(p)]
    return out


def train_night_head(
    frame: pd.DataFrame,
    task: TaskSpec,
    out: str | Path,
    *,
    n_splits: int = 5,
    seed: int = 0,
    backbone: dict[str, Any] | None = None,
    data: str = "",
) -> tuple[NightHead, CVReport]:
    """Cross-validate, then fit the head on every labelled night and save it to ``out``.

    ``out`` receives ``head.json`` (with the CV metrics), ``head.safetensors`` and
    ``cv_predictions.csv`` (out-of-fold predictions of the head and the baselines).
    """
    report = cross_validate(frame, task, n_splits=n_splits, seed=seed)
    rows, y = labelled_rows(frame, task)
    x = rows[embedding_columns(rows)].to_numpy(dtype=float)
    head = fit_head(x, y, rows["subject"].to_numpy(), task, seed=seed)
    mods = sorted(set(rows["modalities"].dropna())) if "modalities" in rows else []
    head.info = {
        "pooling": str(rows["pooling"].iloc[0]) if "pooling" in rows else "mean",
        "backbone": backbone or {},
        "modalities_seen": mods,
        "training": {
            "data": data,
            "n_nights": int(len(rows)),
            "n_subjects": int(rows["subject"].nunique()),
            "target_mean": round(float(np.mean(y)), 4),
            "seed": seed,
        },
        "cv": report.to_dict(),
    }
    head.save(out)
    report.predictions.to_csv(Path(out) / "cv_predictions.csv", index=False)
    return head, report
