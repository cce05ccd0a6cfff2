"""The Python API's calls on one night and the result objects they return.

:func:`stage`, :func:`embed` and :func:`evaluate` (exported by :mod:`s2v_core`) wrap
:func:`~s2v_core.inference.predict.predict_night`, :func:`~s2v_core.inference.embed.pool_epochs`
and :func:`~s2v_core.evaluation.staging.staging_metrics`. Their results know the night's clock
time, and each has ``to_frame()`` (a ``pandas.DataFrame``, one row per 30-s epoch) and, with YASA
installed, ``to_yasa()``:

* :class:`StagingResult` (:func:`stage`): ``to_frame()`` as ``s2v predict`` writes it (stage,
  confidence, probabilities, gates); ``to_yasa()`` a ``yasa.Hypnogram`` with the probabilities as
  its ``proba``.
* :class:`EmbeddingResult` (:func:`embed`): ``to_frame()`` as ``s2v embed`` writes it (predicted
  stage, ``emb_0 .. emb_{H-1}``); ``night_vector``; ``to_yasa()`` the same pass's hypnogram.
* :class:`AgreementResult` (:func:`evaluate`): kappa, accuracy, macro-F1, MCC, per-stage F1,
  confusion, sleep statistics of both sides; ``to_frame()`` reference and prediction per epoch;
  ``to_yasa()`` YASA's ``EpochByEpochAgreement`` of the two hypnograms.

:func:`load_classifier` returns a :class:`Classifier`, which unpacks as the 3-tuple
``model, config, extra`` of :func:`s2v_core.inference.predict.load_classifier`.

Examples
--------
>>> night = s2v_core.load_night("night.edf", "night.xml")  # doctest: +SKIP
>>> staging = s2v_core.stage(night)  # doctest: +SKIP
>>> staging.to_yasa().plot_hypnogram()  # doctest: +SKIP
>>> staging.evaluate().kappa  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2v_core.errors import S2VError
from s2v_core.evaluation.peers import PeerComparison, compare_with_peers, parse_peers
from s2v_core.evaluation.sleep_stats import compare_sleep_statistics
from s2v_core.evaluation.staging import StagingMetrics, check_stages, staging_metrics
from s2v_core.inference.embed import EMB_PREFIX, pool_epochs
from s2v_core.inference.familiarity import seen_in_training, seen_in_training_warning
from s2v_core.inference.predict import Prediction, model_id, model_modalities, predict_night
from s2v_core.inference.predict import load_classifier as _load_checkpoint
from s2v_core.modalities import EPOCH_SECONDS
from s2v_core.night import Night, yasa_hypnogram
from s2v_core.recording.pairing import pair_hypnogram
from s2v_core.recording.registry import load_recording
from s2v_core.shipped import default_model_dir
from s2v_core.stages import UNSCORED, class_names, merge_stages

__all__ = [
    "AgreementResult",
    "Classifier",
    "EmbeddingResult",
    "StagingResult",
    "embed",
    "evaluate",
    "load_classifier",
    "stage",
]

log = logging.getLogger(__name__)


class Classifier(tuple):
    """A fine-tuned staging model, as :func:`load_classifier` returns it.

    A tuple of three, so ``model, config, extra = s2v_core.load_classifier(...)`` works as it
    always did; the parts also have names.

    Attributes
    ----------
    model : Sleep2VecClassifier
        The PyTorch module, in eval mode (what :func:`~s2v_core.inference.predict.predict_night`
        takes).
    config : ModelConfig
        Its architecture: modalities, sizes, what its tokenizers read.
    extra : dict
        Fine-tuning metadata: ``finetune_config``, validation ``metrics``, training ``data``,
        ``class_names``, ``feature_ranges`` (the training inputs' ranges behind the "unlike the
        training data" warnings) and more.
    path : Path or None
        The checkpoint folder it was loaded from.
    """

    path: Path | None

    def __new__(
        cls, model: Any, config: Any, extra: dict, path: str | Path | None = None
    ) -> Classifier:
        obj = super().__new__(cls, (model, config, extra))
        obj.path = None if path is None else Path(path)
        return obj

    def __getnewargs__(self) -> tuple:
        return (*self, self.path)

    @property
    def model(self) -> Any:
        return self[0]

    @property
    def config(self) -> Any:
        return self[1]

    @property
    def extra(self) -> dict:
        return self[2]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities the model has tokenizers for, canonical order."""
        return model_modalities(self.model)

    @property
    def model_id(self) -> str:
        """Name and short hash of the checkpoint folder (``""`` when loaded from elsewhere)."""
        return "" if self.path is None else model_id(self.path)

    def __repr__(self) -> str:
        return f"Classifier(path={str(self.path) if self.path else None!r}, modalities={self.modalities})"


def load_classifier(path: str | os.PathLike | None = None, *, device: str = "cpu") -> Classifier:
    """Load a fine-tuned staging model (default: the shipped one), in eval mode.

    Parameters
    ----------
    path : path, optional
        Checkpoint folder (``config.json`` + ``model.safetensors``) written by ``s2v finetune``
        (``RUN/best``); default :func:`s2v_core.shipped.default_model_dir`.
    device : str
        "cpu" (default), "cuda" or "auto".

    Returns
    -------
    Classifier
        Unpacks as ``model, config, extra``.

    Raises
    ------
    S2VError
        No such folder, an unreadable checkpoint, or a pretrained encoder without a staging head.
    """
    folder = default_model_dir() if path is None else Path(path)
    model, config, extra = _load_checkpoint(folder, device=device)
    return Classifier(model, config, extra, folder)


def _classifier(classifier: Classifier | str | os.PathLike | Any | None, device: str) -> Classifier:
    if classifier is None or isinstance(classifier, str | os.PathLike):
        return load_classifier(classifier, device=device)
    if isinstance(classifier, Classifier):
        return classifier
    if (
        isinstance(classifier, tuple) and len(classifier) == 3
    ):  # inference.predict.load_classifier's tuple
        return Classifier(*classifier)
    if hasattr(classifier, "fusion"):  # a bare model
        return Classifier(classifier, getattr(classifier, "config", None), {})
    raise TypeError(
        "classifier must be None (the shipped model), a checkpoint folder, or what "
        f"s2v_core.load_classifier returns, not {type(classifier).__qualname__}"
    )


def _night(night: Night | str | os.PathLike | Any) -> Night:
    return night if isinstance(night, Night) else load_recording(night)


def _onsets_frame(n: int, start_time: datetime | None) -> pd.DataFrame:
    onset = np.arange(n) * float(EPOCH_SECONDS)
    df = pd.DataFrame({"epoch": np.arange(n), "onset_s": onset})
    if start_time is not None:
        df["clock_time"] = [(start_time + timedelta(seconds=float(s))).isoformat() for s in onset]
    return df


@dataclass
class StagingResult:
    """The stages the model gives one night (what :func:`stage` returns).

    Attributes
    ----------
    prediction : Prediction
        Per-epoch output: stages, probabilities, gates, coverage, warnings
        (:class:`s2v_core.inference.predict.Prediction`).
    night : Night
        The night staged; its stages, when scored, are the default reference of :meth:`evaluate`.
    """

    prediction: Prediction
    night: Night

    @property
    def stages(self) -> np.ndarray:
        """``(n_epochs,)`` int8, W=0 N1=1 N2=2 N3=3 REM=4."""
        return self.prediction.stages

    @property
    def probabilities(self) -> np.ndarray:
        """``(n_epochs, 5)`` float32, columns W N1 N2 N3 REM; rows sum to 1."""
        return self.prediction.probabilities

    @property
    def confidence(self) -> np.ndarray:
        """``(n_epochs,)`` float32: the probability of the predicted stage."""
        return self.prediction.confidence

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model used."""
        return self.prediction.modalities

    @property
    def warnings(self) -> list[str]:
        """Night-level cautions (inputs unlike the training data, low confidence)."""
        return self.prediction.warnings

    @property
    def start_time(self) -> datetime | None:
        return self.night.start_time

    @property
    def n_epochs(self) -> int:
        return self.prediction.n_epochs

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch, as ``s2v predict`` writes it.

        Columns: ``epoch``, ``onset_s``, ``clock_time`` (with a start time), ``stage``, ``label``,
        ``confidence``, ``p_W`` .. ``p_REM``, ``gate_<modality>``, ``n_valid_modalities``.
        """
        return self.prediction.to_frame(self.start_time)

    def to_yasa(self, n_stages: int = 5) -> Any:
        """The predicted hypnogram as a ``yasa.Hypnogram``, probabilities as its ``proba``.

        ``n_stages`` 4 or 3 sums the probabilities of merged stages first (see
        :func:`s2v_core.night.yasa_hypnogram`).
        """
        return yasa_hypnogram(self.stages, self.start_time, n_stages=n_stages,
                              probabilities=self.probabilities, scorer=self.prediction.model_id or "sleep2vec")  # fmt: skip

    def evaluate(self, reference: Any = None, **kwargs: Any) -> AgreementResult:
        """:func:`evaluate` this staging (against the night's own stages by default)."""
        return evaluate(self, reference, **kwargs)

    def compare(self, peers: Any = ("yasa", "sleepecg"), path: str | Path | None = None) -> PeerComparison:
        """Stage the same night with YASA and/or sleepecg and score every pair of stagers.

        Each peer runs only where it applies (YASA on EEG at >= 80 Hz, sleepecg on heartbeats);
        a peer that does not apply is in the result with the reason. ``path``: the recording the
        night was read from, so that YASA reads the EEG at the file's own rate (default: the
        night's 128-Hz copies). Returns :class:`s2v_core.evaluation.peers.PeerComparison`
        (``.pairs``: kappa, accuracy and epochs of every pair; ``.peers``: each peer's stages).
        """
        names = parse_peers(peers) if isinstance(peers, str) else tuple(peers)
        return compare_with_peers(self.night, self.stages, names, ours_3class=self.prediction.merged_as_five(3),
                                  path=path)  # fmt: skip


@dataclass
class EmbeddingResult:
    """Per-epoch and per-night embeddings of one night (what :func:`embed` returns).

    Attributes
    ----------
    epochs : np.ndarray, shape (n_epochs, H), float32
        The fused state of each 30-s epoch (the staging head's input).
    night_vector : np.ndarray, shape (H,) or (2 H,), float32
        The epochs pooled (:func:`s2v_core.inference.embed.pool_epochs`): mean, or mean then
        standard deviation.
    pooling : str
        ``"mean"`` or ``"mean+std"``.
    staging : StagingResult
        The stages of the same forward pass.
    """

    epochs: np.ndarray
    night_vector: np.ndarray
    pooling: str
    staging: StagingResult

    @property
    def night(self) -> Night:
        return self.staging.night

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch, as ``s2v embed`` writes them.

        Columns: ``night``, ``epoch``, ``onset_s``, ``clock_time`` (with a start time), ``stage``
        (the night's, -1 unscored), ``predicted``, ``modalities`` (used, comma-separated), then
        ``emb_0 .. emb_{H-1}``.
        """
        night = self.night
        df = _onsets_frame(night.n_epochs, night.start_time)
        df.insert(0, "night", night.meta.night_id)
        df["stage"] = np.asarray(night.stages).astype(int)
        df["predicted"] = self.staging.stages.astype(int)
        df["modalities"] = ",".join(self.staging.modalities)
        emb = pd.DataFrame(
            self.epochs, columns=[f"{EMB_PREFIX}{i}" for i in range(self.epochs.shape[1])]
        )
        return pd.concat([df, emb], axis=1)

    def to_yasa(self, n_stages: int = 5) -> Any:
        """The predicted hypnogram of the same pass (:meth:`StagingResult.to_yasa`)."""
        return self.staging.to_yasa(n_stages)


@dataclass
class AgreementResult:
    """A predicted hypnogram compared with a reference, epoch by epoch (what :func:`evaluate` returns).

    Attributes
    ----------
    metrics : StagingMetrics
        Accuracy, kappa, macro-F1, MCC, per-stage F1 and the confusion counts, over the epochs
        scored on both sides, in ``n_classes`` classes.
    sleep_statistics : pandas.DataFrame
        TST, SE, WASO, ... of both hypnograms (5 stages), columns ``reference``, ``predicted``,
        ``difference``.
    reference, predicted : np.ndarray, shape (n_epochs,)
        Stage codes in ``n_classes`` classes (:func:`s2v_core.stages.merge_stages`), -1 unscored.
    n_classes : int
        5, 4 (W, N1+N2, N3, REM) or 3 (W, NREM, REM).
    start_time : datetime or None
    """

    metrics: StagingMetrics
    sleep_statistics: pd.DataFrame
    reference: np.ndarray
    predicted: np.ndarray
    n_classes: int = 5
    start_time: datetime | None = None

    @property
    def accuracy(self) -> float:
        return self.metrics.accuracy

    @property
    def kappa(self) -> float:
        return self.metrics.kappa

    @property
    def macro_f1(self) -> float:
        return self.metrics.macro_f1

    @property
    def mcc(self) -> float:
        return self.metrics.mcc

    @property
    def per_stage_f1(self) -> dict[str, float]:
        return self.metrics.per_stage_f1

    @property
    def confusion(self) -> pd.DataFrame:
        """Counts; rows: reference class, columns: predicted class."""
        names = list(self.metrics.class_names)
        return pd.DataFrame(self.metrics.confusion, index=pd.Index(names, name="reference"),
                            columns=pd.Index(names, name="predicted"))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the metrics (:meth:`StagingMetrics.to_dict`) and the sleep statistics."""
        stats = self.sleep_statistics.astype(object).where(self.sleep_statistics.notna(), None)
        return {**self.metrics.to_dict(), "sleep_statistics": stats.to_dict(orient="index")}

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch: ``epoch``, ``onset_s``, ``clock_time`` (with a start time),
        ``reference``, ``predicted`` (class names, ``""`` unscored) and ``agree`` (bool; False
        where either side is unscored; those epochs are not in the metrics)."""
        df = _onsets_frame(len(self.reference), self.start_time)
        names = np.asarray((*class_names(self.n_classes), ""), dtype=object)  # -1 -> ""
        df["reference"] = names[self.reference.astype(int)]
        df["predicted"] = names[self.predicted.astype(int)]
        df["agree"] = (self.reference == self.predicted) & (self.reference != UNSCORED)
        return df

    def to_yasa(self) -> Any:
        """YASA's ``EpochByEpochAgreement`` of the two hypnograms (reference vs predicted).

        ``.get_agreement()``, ``.get_confusion_matrix()``, ``.plot_hypnograms()`` and the rest of
        YASA's evaluation work on it; YASA leaves unscored epochs out as the metrics here do.
        """
        ref = yasa_hypnogram(_five(self.reference, self.n_classes), self.start_time,
                             n_stages=self.n_classes, scorer="reference")  # fmt: skip
        pred = yasa_hypnogram(_five(self.predicted, self.n_classes), self.start_time,
                              n_stages=self.n_classes, scorer="predicted")  # fmt: skip
        return ref.evaluate(pred)


def _five(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Merged class codes as 5-class codes that merge back to them (-1 stays -1)."""
    table = merge_stages(np.arange(5), n_classes)
    first = np.array([int(np.flatnonzero(table == k)[0]) for k in range(n_classes)])
    return np.where(codes >= 0, first[np.clip(codes, 0, None)], UNSCORED)


def stage(
    night: Night | str | os.PathLike | Any,
    classifier: Classifier | str | os.PathLike | Any | None = None,
    modalities: tuple[str, ...] | None = None,
    *,
    device: str = "cpu",
    keep_unfamiliar: bool = False,
) -> StagingResult:
    """Stage every 30-s epoch of a night.

    Parameters
    ----------
    night : Night, path or mne.io.BaseRaw
        A night from :func:`s2v_core.load_night`, or what it reads (loaded with its defaults).
    classifier : Classifier, path or None
        From :func:`load_classifier`, a checkpoint folder, or None for the shipped model.
    modalities : tuple of str, optional
        The subset to stage from (default: every modality the night and the model share, less
        those whose signals look unlike the model's training data, as ``s2v predict`` does;
        ``.prediction.left_out`` and ``.warnings`` say which).
    device : str
        "cpu", "cuda" or "auto".
    keep_unfamiliar : bool
        Without ``modalities``: use every shared modality, unfamiliar ones included.

    Returns
    -------
    StagingResult

    Raises
    ------
    S2VError
        No modality in common, or ``modalities`` names one the night or the model lacks.
    """
    clf = _classifier(classifier, device)
    n = _night(night)
    pred = predict_night(clf.model, n, modalities, device=device, name=clf.model_id,
                         ranges=clf.extra.get("feature_ranges"),
                         leave_out_unfamiliar=modalities is None and not keep_unfamiliar)  # fmt: skip
    _warn_if_seen(pred, night, clf.extra)
    return StagingResult(pred, n)


def _warn_if_seen(pred: Prediction, night: Any, extra: dict) -> None:
    """A night given as a path to a file the model was trained on: say so in its warnings."""
    if isinstance(night, str | os.PathLike):
        seen = seen_in_training(extra, path=night)
        if seen is not None:
            pred.warnings.append(seen_in_training_warning(seen))


def embed(
    night: Night | str | os.PathLike | Any,
    classifier: Classifier | str | os.PathLike | Any | None = None,
    modalities: tuple[str, ...] | None = None,
    *,
    pooling: str = "mean",
    device: str = "cpu",
    keep_unfamiliar: bool = False,
) -> EmbeddingResult:
    """Embed a night: one fused vector per 30-s epoch and one for the night.

    Arguments as :func:`stage`; ``pooling`` is ``"mean"`` or ``"mean+std"``
    (:func:`s2v_core.inference.embed.pool_epochs`: epochs without a valid modality are left out).

    Returns
    -------
    EmbeddingResult
    """
    clf = _classifier(classifier, device)
    n = _night(night)
    pred = predict_night(clf.model, n, modalities, device=device, name=clf.model_id, with_embeddings=True,
                         ranges=clf.extra.get("feature_ranges"),
                         leave_out_unfamiliar=modalities is None and not keep_unfamiliar)  # fmt: skip
    _warn_if_seen(pred, night, clf.extra)
    vector = pool_epochs(pred.embeddings, pred.coverage, pooling)
    return EmbeddingResult(pred.embeddings, vector, pooling, StagingResult(pred, n))


def _yasa_codes(hyp: Any) -> np.ndarray:
    if getattr(hyp, "n_stages", 5) != 5:
        raise ValueError(
            f"a reference yasa.Hypnogram must have 5 stages, this one has {hyp.n_stages}"
        )
    codes = np.asarray(hyp.as_int(), dtype=np.int64)  # WAKE 0 .. REM 4, ART -1, UNS -2
    return np.where(codes < 0, UNSCORED, codes)


def _reference_codes(
    reference: Any, night: Night | None, allow_mismatch: bool, hypnogram_format: str
) -> np.ndarray:
    if reference is None:
        if night is None:
            raise ValueError(
                "reference is needed: a prediction without its night has no expert hypnogram"
            )
        if not (np.asarray(night.stages) != UNSCORED).any():
            raise S2VError(
                f"night {night.meta.night_id!r} has no scored epoch to compare with: load it with its "
                "hypnogram (load_night(path, hypnogram)) or pass reference= (a hypnogram file, a "
                "scored Night, stage codes or a yasa.Hypnogram)"
            )
        return np.asarray(night.stages)
    if isinstance(reference, Night):
        return np.asarray(reference.stages)
    if isinstance(reference, str | os.PathLike):
        if night is None:
            raise ValueError("a hypnogram file needs the night it scores: evaluate a StagingResult")
        hyp = pair_hypnogram(reference, night.n_epochs, night.start_time, fmt=hypnogram_format,
                             allow_mismatch=allow_mismatch)  # fmt: skip
        return hyp.stages
    yasa = sys.modules.get("yasa")
    if yasa is not None and isinstance(reference, yasa.Hypnogram):
        return _yasa_codes(reference)
    return reference


def evaluate(
    result: StagingResult | EmbeddingResult | Prediction | Any,
    reference: Any = None,
    *,
    n_classes: int = 5,
    allow_mismatch: bool = False,
    hypnogram_format: str = "auto",
) -> AgreementResult:
    """Compare predicted stages with a reference hypnogram, epoch by epoch.

    Parameters
    ----------
    result : StagingResult, EmbeddingResult, Prediction or array_like of int
        The prediction (stage codes 0..4 for an array).
    reference : optional
        Default: the stages of the night that was staged. Else a hypnogram file (any format
        :func:`s2v_core.read_hypnogram` reads; placed on the night by its start time as
        :func:`s2v_core.load_night` does), a scored :class:`Night`, a 5-stage ``yasa.Hypnogram``
        or stage codes (0=W 1=N1 2=N2 3=N3 4=REM -1=unscored).
    n_classes : {5, 4, 3}
        5 stages, or merged to 4 (W, N1+N2, N3, REM) or 3 (W, NREM, REM); a prediction with
        probabilities is merged by summing them first.
    allow_mismatch, hypnogram_format
        For a reference file, as in :func:`s2v_core.load_night`.

    Returns
    -------
    AgreementResult

    Raises
    ------
    ValueError
        Different lengths, codes outside -1..4, or no epoch scored on both sides.
    S2VError, HypnogramError
        No reference to compare with; a reference file that cannot be read or does not fit.
    """
    if n_classes not in (5, 4, 3):
        raise ValueError(f"n_classes must be 5, 4 or 3, got {n_classes!r}")
    staging = result.staging if isinstance(result, EmbeddingResult) else result
    night = staging.night if isinstance(staging, StagingResult) else None
    pred = staging.prediction if isinstance(staging, StagingResult) else staging
    ref5 = check_stages(
        "reference", _reference_codes(reference, night, allow_mismatch, hypnogram_format)
    )
    if isinstance(pred, Prediction):
        pred5 = pred.stages.astype(np.int64)
        pred_k = pred.merged_as_five(n_classes) if n_classes != 5 else pred5
    else:
        pred5 = pred_k = check_stages("predicted", pred)
    metrics = staging_metrics(ref5, pred_k, n_classes=n_classes)
    return AgreementResult(
        metrics=metrics,
        sleep_statistics=compare_sleep_statistics(ref5, pred5),
        reference=merge_stages(ref5, n_classes).astype(np.int8),
        predicted=merge_stages(pred_k, n_classes).astype(np.int8),
        n_classes=n_classes,
        start_time=None if night is None else night.start_time,
    )
