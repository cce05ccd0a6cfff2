"""Evaluate a staging model against expert hypnograms over a cohort (``s2v evaluate``).

The cohort is a prepared store (``s2v prepare``), or a folder of recordings with their
hypnograms: EDF/BDF files with a hypnogram next to them or listed in ``metadata.csv``, and
WFDB records (``.ecg`` beats + ``.st`` stages, as in PhysioNet slpdb). Every night is staged
from the modality subsets asked for, and compared epoch by epoch with its expert hypnogram:

* per night and subset: accuracy, Cohen's kappa, macro-F1, MCC, per-class F1;
* pooled over nights, per subset: the same on all epochs together, the confusion matrix, and
  percentile-bootstrap 95 % intervals that resample nights (never epochs);
* sleep statistics (TST, SE, SOL, WASO, REM latency, stage minutes) predicted vs expert, per
  night, for the main subset;
* with ``all_subsets``, every non-empty subset of the modalities each night has (each subset
  predicted once per night and reused for every figure; each modality is encoded once per night
  and only the fusion and the staging head run per subset), and the modality importance.

The 4- and 3-class figures merge stages after the model: the probabilities of merged stages
are summed (:meth:`~s2v_core.inference.predict.Prediction.merged`). :func:`evaluate_cohort` returns
frames; :meth:`CohortEvaluation.write` writes them as CSV plus one ``summary.json``.

Examples
--------
>>> res = evaluate_cohort("store/", split="test", n_classes=3)  # doctest: +SKIP
>>> res.pooled[["subset", "n_nights", "kappa", "kappa_lo", "kappa_hi"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.cohort.sources import NightSource, night_sources
from s2v_core.errors import S2VError
from s2v_core.evaluation.robustness import all_subsets, modality_importance, subset_label
from s2v_core.evaluation.sleep_stats import compare_sleep_statistics
from s2v_core.evaluation.staging import bootstrap_ci, staging_metrics
from s2v_core.inference.predict import (
    REPRESENTATIVE_STAGE,
    Prediction,
    load_classifier,
    model_id,
    model_modalities,
)
from s2v_core.inference.subsets import predict_subsets
from s2v_core.io.atomic import write_atomic, write_text_atomic
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.sanitize.cells import to_csv
from s2v_core.shipped import default_model_dir
from s2v_core.stages import UNSCORED, class_names, merge_stages

__all__ = [
    "CI_METRICS",
    "MAIN",
    "CohortEvaluation",
    "evaluate_cohort",
    "format_table",
]

log = logging.getLogger(__name__)

MAIN = "all"
"""Subset label of the main evaluation when no ``modalities`` are given: each night staged from
every modality it shares with the model (``modalities`` column of the per-night table)."""

CI_METRICS: tuple[str, ...] = ("kappa", "accuracy", "macro_f1")
"""Pooled metrics that get a bootstrap interval over nights."""

_DROPPED_STATS: dict[int, tuple[str, ...]] = {
    5: (),
    4: ("N1_min", "N1_pct", "N2_min", "N2_pct"),
    3: ("N1_min", "N1_pct", "N2_min", "N2_pct", "N3_min", "N3_pct"),
}
"""Sleep statistics that a merged hypnogram cannot give (N1+N2 or all NREM in one class)."""


@dataclass
class CohortEvaluation:
    """What :func:`evaluate_cohort` measured. Every frame is plain pandas.

    Attributes
    ----------
    per_night : DataFrame
        One row per (night, subset): ``night``, ``subject``, ``site``, ``subset``,
        ``modalities``, ``n_modalities``, ``n_epochs``, ``n_excluded``, ``accuracy``,
        ``kappa``, ``macro_f1``, ``mcc``, ``f1_<class>``.
    pooled : DataFrame
        One row per subset (main subset first): ``subset``, ``n_nights``, ``n_epochs``, the
        metrics on all epochs together, ``<metric>_lo`` / ``<metric>_hi`` (bootstrap over
        nights) for :data:`CI_METRICS`, ``mean_night_kappa`` and ``f1_<class>``.
    confusion : DataFrame
        Pooled confusion counts, long: ``subset``, ``reference``, ``predicted``, ``count``.
    sleep_stats : DataFrame
        Main subset: ``night``, ``statistic``, ``reference``, ``predicted``, ``difference``.
    predictions : DataFrame
        Main subset, one row per epoch: ``night``, ``epoch``, ``onset_s``, ``reference``,
        ``predicted`` (class names; ``""`` when unscored) and ``p_<class>``.
    importance : DataFrame or None
        :func:`~s2v_core.evaluation.modality_importance` of the pooled kappa per subset (only
        with ``all_subsets``).
    skipped : list of dict
        ``{"night", "reason"}`` for nights that could not be read or scored.
    info : dict
        Model id, source, split, classes, class names, bootstrap settings, seconds.
    """

    per_night: pd.DataFrame
    pooled: pd.DataFrame
    confusion: pd.DataFrame
    sleep_stats: pd.DataFrame
    predictions: pd.DataFrame
    importance: pd.DataFrame | None = None
    skipped: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def sleep_stats_summary(self) -> pd.DataFrame:
        """Per statistic over nights: mean expert, mean predicted, mean difference (bias), MAE."""
        if self.sleep_stats.empty:
            return pd.DataFrame(columns=["reference", "predicted", "bias", "mae", "n_nights"])
        g = self.sleep_stats.groupby("statistic", sort=False)
        return pd.DataFrame(
            {
                "reference": g["reference"].mean(),
                "predicted": g["predicted"].mean(),
                "bias": g["difference"].mean(),
                "mae": g["difference"].apply(_mean_abs),
                "n_nights": g["difference"].apply(lambda d: int(np.isfinite(d).sum())),
            }
        )

    def summary(self) -> dict:
        """JSON-ready: info, pooled rows with confusion matrices, sleep-statistic bias, skips."""
        names = self.info.get("class_names", [])
        pooled = []
        for row in self.pooled.to_dict("records"):
            conf = self.confusion[self.confusion["subset"] == row["subset"]]
            matrix = (
                conf.pivot(index="reference", columns="predicted", values="count")
                .reindex(index=names, columns=names, fill_value=0)
                .to_numpy()
                .tolist()
            )
            pooled.append({**_json_safe(row), "confusion": matrix})
        stats = self.sleep_stats_summary()
        return {
            **self.info,
            "pooled": pooled,
            "sleep_statistics": {k: _json_safe(v) for k, v in stats.to_dict("index").items()},
            "modality_importance": None
            if self.importance is None
            else {k: _json_safe(v) for k, v in self.importance.to_dict("index").items()},
            "skipped": self.skipped,
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write every table as CSV and :meth:`summary` as JSON into ``out_dir``.

        Each file is replaced atomically: a failure (a full disk) leaves the previous one whole.

        Returns
        -------
        dict of str to Path
            ``per_night``, ``pooled``, ``confusion``, ``sleep_stats``, ``predictions``,
            ``summary`` and, with all subsets, ``importance``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frames = {
            "per_night": self.per_night,
            "pooled": self.pooled,
            "confusion": self.confusion,
            "sleep_stats": self.sleep_stats,
            "predictions": self.predictions,
        }
        paths = {}
        for name, frame in frames.items():
            paths[name] = out / f"{name}.csv"
            # night ids and sites come from files: no formulas
            write_atomic(paths[name], lambda tmp, f=frame: to_csv(f, tmp, index=False))
        if self.importance is not None:
            paths["importance"] = out / "importance.csv"
            write_atomic(paths["importance"], lambda tmp: to_csv(self.importance, tmp))
        paths["summary"] = out / "summary.json"
        write_text_atomic(paths["summary"], json.dumps(self.summary(), indent=1, allow_nan=False) + "\n")
        return paths


# --- evaluation --------------------------------------------------------------------------------
def _subsets_for(
    night_mods: tuple[str, ...], modalities: tuple[str, ...] | None, every_subset: bool
) -> tuple[tuple[str, ...] | None, list[tuple[str, ...]], str | None]:
    """(main subset or None, extra subsets, reason the main subset is impossible or None)."""
    if modalities is not None:
        missing = [m for m in modalities if m not in night_mods]
        main = None if missing else modalities
        why = (
            f"lacks {', '.join(missing)} (has {', '.join(night_mods) or 'none'})"
            if missing
            else None
        )
        pool = tuple(m for m in modalities if m in night_mods) if every_subset else ()
    else:
        main, why = (night_mods, None) if night_mods else (None, "no modality the model knows")
        pool = night_mods if every_subset else ()
    return main, (all_subsets(pool) if pool else []), why


def _merged_reference(stages: np.ndarray, n_classes: int) -> np.ndarray:
    """Expert stages merged to ``n_classes`` and written back as representative stage codes."""
    merged = merge_stages(stages, n_classes).astype(np.int64)
    rep = np.asarray(REPRESENTATIVE_STAGE[n_classes], dtype=np.int8)
    return np.where(merged >= 0, rep[np.clip(merged, 0, None)], UNSCORED).astype(np.int8)


def _metric_row(ref: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    m = staging_metrics(ref, pred, n_classes=n_classes)
    return {
        "n_epochs": m.n_epochs,
        "n_excluded": m.n_excluded,
        "accuracy": m.accuracy,
        "kappa": m.kappa,
        "macro_f1": m.macro_f1,
        "mcc": m.mcc,
        **{f"f1_{k}": v for k, v in m.per_stage_f1.items()},
    }


def evaluate_cohort(
    source: str | Path,
    model: str | Path | Any | None = None,
    *,
    split: str | None = None,
    modalities: tuple[str, ...] | None = None,
    every_subset: bool = False,
    max_subsets: int | None = None,
    n_classes: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[int, int, str], None] | None = None,
) -> CohortEvaluation:
    """Stage every night of a cohort and compare it with the expert hypnogram.

    Parameters
    ----------
    source : path
        Cohort store folder, or a folder of recordings with hypnograms (see module docstring).
    model : path or Sleep2VecClassifier, optional
        Classifier folder or a loaded classifier (default: the shipped model).
    split : {"train", "val", "test"}, optional
        Only this split of a store.
    modalities : tuple of str, optional
        The main subset; nights lacking one of them are skipped (default: each night with
        every modality it shares with the model, subset label :data:`MAIN`).
    every_subset : bool
        Also every non-empty subset of the night's modalities (of ``modalities`` when given).
    max_subsets : int, optional
        With ``every_subset``, only the first ``max_subsets`` subsets (smallest first).
    n_classes : {5, 4, 3}
        5 stages, 4 (W, N1+N2, N3, REM) or 3 (W, NREM, REM).
    n_boot, seed
        Bootstrap resamples over nights and their seed.
    device : str
        "cpu", "cuda" or "auto".
    progress : callable, optional
        ``progress(done, total, night_id)`` after each night.

    Returns
    -------
    CohortEvaluation

    Raises
    ------
    S2VError
        Bad arguments, an unreadable source, or no night that could be scored (the message
        gives the first reasons).
    """
    t0 = time.perf_counter()
    _check_arguments(n_classes, n_boot, max_subsets)
    clf, info = _classifier(model, device, n_classes)
    modalities = _main_modalities(clf, modalities)
    items = _night_items(source, split)
    main_label = subset_label(modalities) if modalities is not None else MAIN
    acc = _Accumulator()
    for i, item in enumerate(items):
        try:
            _evaluate_night(
                item, clf, modalities, every_subset, max_subsets, n_classes, main_label, device, acc
            )
        except _Skip as why:
            acc.skipped.append({"night": item.night_id, "reason": str(why)})
            log.warning("night %s skipped: %s", item.night_id, why)
        except (S2VError, OSError, ValueError) as exc:
            acc.skipped.append({"night": item.night_id, "reason": str(exc) or type(exc).__name__})
            log.warning("night %s skipped: %s", item.night_id, exc)
        if progress is not None:
            progress(i + 1, len(items), item.night_id)
    if not acc.rows:
        first = "; ".join(f"{s['night']}: {s['reason']}" for s in acc.skipped[:3])
        raise S2VError(f"{source}: no night could be evaluated ({first})")
    per_night = pd.DataFrame(acc.rows)
    pooled, confusion = _pooled(acc.pairs, main_label, n_classes, n_boot, seed)
    importance = _importance(pooled) if every_subset else None
    info.update(
        {
            "source": str(source),
            "split": split,
            "n_classes": n_classes,
            "class_names": list(class_names(n_classes)),
            "main_subset": main_label,
            "all_subsets": every_subset,
            "n_nights": int(per_night.loc[per_night["subset"] == main_label, "night"].nunique()),
            "n_skipped": len(acc.skipped),
            "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "unit": "night"},
            "seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return CohortEvaluation(
        per_night=per_night,
        pooled=pooled,
        confusion=confusion,
        sleep_stats=pd.concat(acc.stats, ignore_index=True) if acc.stats else _empty_stats(),
        predictions=pd.concat(acc.preds, ignore_index=True) if acc.preds else pd.DataFrame(),
        importance=importance,
        skipped=acc.skipped,
        info=info,
    )


def _check_arguments(n_classes: int, n_boot: int, max_subsets: int | None) -> None:
    """Refuse class counts, bootstrap sizes and subset caps :func:`evaluate_cohort` cannot use."""
    if n_classes not in (5, 4, 3):
        raise S2VError(f"classes must be 5, 4 or 3, got {n_classes!r}")
    if n_boot < 1:
        raise S2VError(f"n_boot must be >= 1, got {n_boot}")
    if max_subsets is not None and max_subsets < 1:
        raise S2VError(f"max_subsets must be >= 1, got {max_subsets}")


def _classifier(model: str | Path | Any | None, device: str, n_classes: int) -> tuple[Any, dict]:
    """The classifier to evaluate, and the run info it starts (``model``, maybe ``warning``).

    A folder (or None: the shipped model) is loaded; anything else is taken as a loaded
    classifier. A model trained on fewer classes than ``n_classes`` gets a logged warning.
    """
    info: dict = {}
    if model is None or isinstance(model, str | Path):
        folder = Path(model) if model is not None else default_model_dir()
        clf, _, extra = load_classifier(folder, device=device)
        info["model"] = model_id(folder)
        trained = (extra.get("finetune_config") or {}).get("n_classes", 5)
        if trained < n_classes:
            info["warning"] = (
                f"the model was trained on the {trained}-class problem; its {n_classes}-class "
                "split within merged classes is not trained"
            )
            log.warning(info["warning"])
    else:
        clf, info["model"] = model, getattr(model, "name", type(model).__name__)
    return clf, info


def _main_modalities(clf: Any, modalities: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """``modalities`` checked against the model's and put in its order (None stays None)."""
    if modalities is None:
        return None
    known = model_modalities(clf)
    unknown = [m for m in modalities if m not in known]
    if unknown:
        raise S2VError(f"the model has no {', '.join(unknown)}; it knows {', '.join(known)}")
    modalities = tuple(m for m in known if m in modalities)
    if not modalities:
        raise S2VError("modalities is empty: give at least one")
    return modalities


def _night_items(source: str | Path, split: str | None) -> list[NightSource]:
    """The nights of a store or a folder of recordings; a single file is refused."""
    src = Path(source)
    if src.is_file():
        raise S2VError(
            f"{src.name}: s2v evaluate needs a cohort store or a folder of recordings with "
            "hypnograms; for one recording use s2v predict FILE --hypnogram HYP"
        )
    return night_sources(src, split)


def _importance(pooled: pd.DataFrame) -> pd.DataFrame | None:
    """Modality importance of the pooled kappa over the exact subsets (None with fewer than two)."""
    exact = pooled[pooled["subset"] != MAIN]
    if len(exact) > 1:
        return modality_importance(exact, metric="kappa")
    return None


class _Skip(Exception):
    """A night that cannot be scored; the message is the reason."""


@dataclass
class _Accumulator:
    """What :func:`_evaluate_night` appends to, night after night.

    Attributes
    ----------
    rows : list of dict
        Per-night metric rows, one per (night, subset).
    pairs : dict
        Per subset label, the (reference, prediction) stage arrays of each night.
    stats : list of DataFrame
        Per night, its sleep statistics (main subset).
    preds : list of DataFrame
        Per night, its epoch-by-epoch predictions (main subset).
    skipped : list of dict
        ``{"night", "reason"}`` of skipped nights, and of nights left out of the main subset.
    """

    rows: list[dict] = field(default_factory=list)
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    stats: list[pd.DataFrame] = field(default_factory=list)
    preds: list[pd.DataFrame] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def _evaluate_night(
    item: NightSource,
    clf: Any,
    modalities: tuple[str, ...] | None,
    every_subset: bool,
    max_subsets: int | None,
    n_classes: int,
    main_label: str,
    device: str,
    acc: _Accumulator,
) -> None:
    """Predict one night's subsets (each once) and append its rows to the accumulator."""
    night = item.load()
    ref = np.asarray(night.stages, dtype=np.int8)
    if not (ref >= 0).any():
        raise _Skip("no scored epoch in the expert hypnogram")
    known = model_modalities(clf)
    night_mods = tuple(m for m in night.modalities if m in known)
    main, extra, why = _night_subsets(night_mods, modalities, every_subset, max_subsets, main_label)
    if main is None and not extra:
        raise _Skip(why or "nothing to evaluate")
    if main is None:  # its smaller subsets are still scored
        log.warning("night %s left out of the main subset: %s", item.night_id, why)
        acc.skipped.append({"night": item.night_id, "reason": f"main subset only: {why}"})
    # each subset staged once; the night's modalities are encoded once for all of them and only
    # the gated fusion and the staging head run per subset (s2v_core.inference.subsets)
    predicted = predict_subsets(clf, night, ([main] if main is not None else []) + list(extra), device=device)
    base = {
        "night": item.night_id,
        "subject": item.subject or night.meta.subject or item.night_id,
        "site": item.site or night.meta.site,
    }
    todo = ([(main_label, main)] if main is not None else []) + [
        (subset_label(s), s) for s in extra
    ]
    for label, subset in todo:
        pred = predicted[subset]
        pred5 = pred.merged_as_five(n_classes)
        try:
            metrics = _metric_row(ref, pred5, n_classes)
        except ValueError as exc:  # no epoch scored on both sides
            raise _Skip(str(exc)) from None
        acc.rows.append(
            {
                **base,
                "subset": label,
                "modalities": "+".join(subset),
                "n_modalities": len(subset),
                **metrics,
            }
        )
        acc.pairs.setdefault(label, []).append((ref, pred5))
    if main is None:
        return
    pred = predicted[main]
    acc.preds.append(_epoch_predictions(item.night_id, night.n_epochs, ref, pred, n_classes))
    acc.stats.append(_night_sleep_stats(item.night_id, ref, pred, n_classes))


def _night_subsets(
    night_mods: tuple[str, ...],
    modalities: tuple[str, ...] | None,
    every_subset: bool,
    max_subsets: int | None,
    main_label: str,
) -> tuple[tuple[str, ...] | None, list[tuple[str, ...]], str | None]:
    """:func:`_subsets_for`, the extra subsets capped at ``max_subsets`` and without the main one.

    With the cap, the largest subset is kept after the ``max_subsets`` smallest.
    """
    main, extra, why = _subsets_for(night_mods, modalities, every_subset)
    if max_subsets is not None and len(extra) > max_subsets:
        extra = extra[:max_subsets] + ([extra[-1]] if extra[-1] not in extra[:max_subsets] else [])
    if main is not None and main_label != MAIN:
        extra = [s for s in extra if s != main]  # the main subset is already the full one
    return main, extra, why


def _epoch_predictions(
    night_id: str, n_epochs: int, ref: np.ndarray, pred: Prediction, n_classes: int
) -> pd.DataFrame:
    """One row per epoch: expert and predicted class names and the merged probabilities."""
    stages, probs = pred.merged(n_classes)
    names = np.asarray(class_names(n_classes), dtype=object)
    ref_merged = merge_stages(ref, n_classes).astype(np.int64)
    frame = pd.DataFrame(
        {
            "night": night_id,
            "epoch": np.arange(n_epochs),
            "onset_s": np.arange(n_epochs) * float(EPOCH_SECONDS),
            "reference": np.where(ref_merged >= 0, names[np.clip(ref_merged, 0, None)], ""),
            "predicted": names[stages.astype(int)],
        }
    )
    for k, name in enumerate(names):
        frame[f"p_{name}"] = np.round(probs[:, k], 5)
    return frame


def _night_sleep_stats(
    night_id: str, ref: np.ndarray, pred: Prediction, n_classes: int
) -> pd.DataFrame:
    """Sleep statistics predicted vs expert, without those the merged classes cannot give."""
    cmp = compare_sleep_statistics(
        _merged_reference(ref, n_classes), pred.merged_as_five(n_classes)
    )
    cmp = cmp.drop(index=list(_DROPPED_STATS[n_classes])).reset_index()
    cmp.insert(0, "night", night_id)
    return cmp


def _pooled(
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    main_label: str,
    n_classes: int,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled metrics with night-bootstrap intervals, and long confusion counts, per subset."""
    names = class_names(n_classes)
    order = [main_label] + sorted(
        (k for k in pairs if k != main_label), key=lambda s: (s.count("+"), s)
    )
    rows, conf_rows = [], []
    for label in (k for k in order if k in pairs):
        nights = pairs[label]
        ref = np.concatenate([r for r, _ in nights])
        pred = np.concatenate([p for _, p in nights])
        m = staging_metrics(ref, pred, n_classes=n_classes)
        row: dict = {
            "subset": label,
            "n_modalities": np.nan if label == MAIN else label.count("+") + 1,
            "n_nights": len(nights),
            "n_epochs": m.n_epochs,
            "accuracy": m.accuracy,
            "kappa": m.kappa,
            "macro_f1": m.macro_f1,
            "mcc": m.mcc,
        }
        for metric in CI_METRICS:
            lo, hi = bootstrap_ci(nights, metric, n_boot=n_boot, seed=seed, n_classes=n_classes)
            row[f"{metric}_lo"], row[f"{metric}_hi"] = lo, hi
        night_kappas = [staging_metrics(r, p, n_classes=n_classes).kappa for r, p in nights]
        row["mean_night_kappa"] = float(np.mean(night_kappas))
        row.update({f"f1_{k}": v for k, v in m.per_stage_f1.items()})
        rows.append(row)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                conf_rows.append(
                    {
                        "subset": label,
                        "reference": a,
                        "predicted": b,
                        "count": int(m.confusion[i, j]),
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(conf_rows)


def _mean_abs(values: pd.Series) -> float:
    """Mean absolute value over the finite entries (NaN when none is finite)."""
    v = np.abs(values.to_numpy(dtype=np.float64))
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _empty_stats() -> pd.DataFrame:
    return pd.DataFrame(columns=["night", "statistic", "reference", "predicted", "difference"])


def _json_safe(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.floating):
            v = float(v)
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


def format_table(res: CohortEvaluation, max_rows: int = 15) -> str:
    """The compact pooled table ``s2v evaluate`` prints (main subset, then best subsets)."""
    names = res.info["class_names"]
    pooled = res.pooled
    if len(pooled) > max_rows:
        head = pooled.iloc[:1]
        rest = pooled.iloc[1:].sort_values("kappa", ascending=False).head(max_rows - 1)
        pooled = pd.concat([head, rest])
    width = max(12, min(40, int(pooled["subset"].str.len().max())))
    f1_head = "".join(f"{'F1 ' + n:>9}" for n in names)
    lines = [
        f"{'subset':<{width}} {'nights':>6} {'epochs':>7} {'acc':>6} {'kappa':>6} "
        f"{'95% CI':<17} {'macroF1':>7}{f1_head}"
    ]

    def num(v: float) -> str:
        return "   nan" if v is None or not math.isfinite(v) else f"{v:6.3f}"

    for r in pooled.to_dict("records"):
        ci = f"[{r['kappa_lo']:.3f}, {r['kappa_hi']:.3f}]" if math.isfinite(r["kappa_lo"]) else "-"
        f1 = "".join(f"{num(r[f'f1_{n}']):>9}" for n in names)
        lines.append(
            f"{r['subset'][:width]:<{width}} {r['n_nights']:>6} {r['n_epochs']:>7} "
            f"{num(r['accuracy'])} {num(r['kappa'])} {ci:<17} {num(r['macro_f1']):>7}{f1}"
        )
    if len(res.pooled) > max_rows:
        lines.append(f"({len(res.pooled) - 1} subsets; the {max_rows - 1} best by kappa shown)")
    return "\n".join(lines)
