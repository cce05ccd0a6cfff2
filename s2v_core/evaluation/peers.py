"""Other sleep stagers on the same night, and how everyone agrees: ``s2v predict --compare``.

A researcher's first question about a new stager is "how does it compare with YASA on my night?".
This module runs the peers that apply to a recording on the same 30-s epochs as our model and
scores agreement for every pair among ours, each peer and the expert hypnogram.

Peers
-----
``yasa``
    YASA's ``SleepStaging`` (LightGBM on EEG features, plus EOG and EMG when the recording has them;
    5 stages). It takes EEG sampled at more than 80 Hz only, so it applies when the EEG channel's
    rate *in the file* is at least :data:`YASA_MIN_SFREQ`; a 50-Hz EEG is refused, never upsampled.
    It is given the channels at their rate in the file when the file can be read again, else the
    night's canonical 128-Hz copies (also for an EEG at exactly 80 Hz, which YASA's own check
    refuses); in volts either way (canonical biopotentials are in µV).
``sleepecg``
    sleepecg's bundled ``wrn-gru-mesa`` classifier (a recurrent network on heart-rate-variability
    features, through Keras on the PyTorch backend; 3 classes W/NREM/REM). It reads heartbeat
    times: the R peaks of the recording's ECG (:func:`s2v_core.signals.cardio.detect_rpeaks`, i.e.
    ``sleepecg.detect_heartbeats``), or the beat annotations of a WFDB record (``.ecg``).

Stage codes are the project's (W=0, N1=1, N2=2, N3=3, REM=4, unscored=-1); sleepecg's NREM is
written as 2 (N2) and the peer is marked 3-class. Any comparison that involves a 3-class stager is
made after merging both sides into W/NREM/REM (ours through its summed probabilities when given).

A peer that does not apply, is not installed, or refuses the night gives a :class:`PeerResult`
with ``refused`` set to a plain sentence; nothing here raises for a peer's sake.

Examples
--------
>>> comparison = compare_with_peers(night, pred.stages, ("yasa", "sleepecg"),
...                                 ours_3class=pred.merged_as_five(3), path="night.edf")  # doctest: +SKIP
>>> comparison.peers["yasa"].refused  # doctest: +SKIP
'EEG sampled at 50 Hz; YASA needs >= 80 Hz'
>>> [(p["a"], p["b"], round(p["kappa"], 2)) for p in comparison.pairs]  # doctest: +SKIP
[('ours', 'sleepecg', 0.41), ('ours', 'expert', 0.58), ('sleepecg', 'expert', 0.37)]
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import numpy as np

from s2v_core.errors import S2VError
from s2v_core.evaluation.staging import check_stages, staging_metrics
from s2v_core.io.dreams import read_dreams_signal
from s2v_core.io.edf import open_recording
from s2v_core.io.wfdb_beats import read_wfdb_beats
from s2v_core.modalities import EPOCH_SECONDS, SFREQ
from s2v_core.night import Night
from s2v_core.recording.registry import recording_kind
from s2v_core.signals.cardio import detect_rpeaks
from s2v_core.signals.resampling import resample
from s2v_core.stages import N2, REM, UNSCORED, W, class_names, merge_stages

__all__ = [
    "EXPERT",
    "OURS",
    "PEERS",
    "PEER_CLASSES",
    "SLEEPECG_CLASSIFIER",
    "YASA_MIN_SFREQ",
    "PeerComparison",
    "PeerResult",
    "agreement_pairs",
    "compare_with_peers",
    "load_sleepecg",
    "parse_peers",
    "peer_labels",
    "run_peer",
    "run_peers",
    "run_sleepecg",
    "run_yasa",
    "sleepecg_stages_from_beats",
    "yasa_stage",
]

log = logging.getLogger(__name__)

PEERS: dict[str, str] = {
    "yasa": "YASA SleepStaging: EEG (+EOG, +EMG) at > 80 Hz, 5 stages",
    "sleepecg": "sleepecg wrn-gru-mesa: heartbeats from ECG or beat annotations, 3 stages W/NREM/REM",
}
"""Peer stagers ``--compare`` accepts: name -> what it reads and gives."""

PEER_CLASSES: dict[str, int] = {"yasa": 5, "sleepecg": 3}
"""Classes each peer stages (3: W/NREM/REM, NREM written as N2)."""

OURS = "ours"
EXPERT = "expert"
"""Names of our model's and the expert's stages in :attr:`PeerComparison.pairs`."""

YASA_MIN_SFREQ = 80.0
"""Lowest EEG rate in the file (Hz) for which YASA is run (YASA itself asserts > 80 Hz)."""

SLEEPECG_CLASSIFIER = "wrn-gru-mesa"
"""sleepecg's bundled classifier used (trained on ~1,900 MESA nights; W/NREM/REM)."""

_MIN_VALID_FRACTION = 0.5  # an epoch with less signal than this is left unscored in the peer's output


# --- results ----------------------------------------------------------------------------------
@dataclass
class PeerResult:
    """One peer's stages on a night, or why it gave none.

    Attributes
    ----------
    name : str
        A key of :data:`PEERS`.
    n_classes : int
        5, or 3 (W/NREM/REM with NREM written as N2 = 2).
    stages : np.ndarray or None
        ``(n_epochs,)`` int8 project codes on the night's epochs (-1: the peer gave no stage);
        None when refused.
    refused : str or None
        Why the peer does not apply or refused, in one sentence; None when it staged the night.
    used : str
        What the peer was given (channels, rates, units; or beats and their source).
    seconds : float
        Wall time of the peer's own staging (its model loading included).
    notes : list of str
        Things worth knowing about the run (channels left out, epochs left unscored).
    version : str
        The peer package's version, when it could be imported.
    """

    name: str
    n_classes: int
    stages: np.ndarray | None = None
    refused: str | None = None
    used: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    version: str = ""

    @property
    def applied(self) -> bool:
        return self.stages is not None and self.refused is None

    def labels(self) -> list[str]:
        """Stage names per epoch (``""`` for unscored; W/NREM/REM for a 3-class peer)."""
        return peer_labels(self.stages, self.n_classes) if self.stages is not None else []

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"refused": ...}`` or the stages with what the peer was given."""
        out: dict[str, Any] = {"n_classes": self.n_classes, "three_class": self.n_classes == 3}
        if self.version:
            out["version"] = self.version
        if not self.applied:
            out["refused"] = self.refused or "no stages"
            return out
        if self.n_classes == 3:
            out["stage_codes"] = {"W": W, "NREM": N2, "REM": REM, "unscored": UNSCORED}
        out.update({
            "used": self.used,
            "seconds": round(float(self.seconds), 3),
            "stages": [int(s) for s in self.stages],
            "notes": list(self.notes),
        })  # fmt: skip
        return out


@dataclass
class PeerComparison:
    """Peers' results on one night and the agreement of every pair of stagers.

    ``pairs`` holds one dict per pair, in the order ours, each peer (as asked), expert: ``a``,
    ``b`` (names: :data:`OURS`, a peer, :data:`EXPERT`), ``n_classes`` (5, or 3 when either side
    is 3-class), ``kappa`` (Cohen's), ``accuracy`` and ``n_epochs`` (epochs scored by both; kappa
    and accuracy are None when there is none).
    """

    n_epochs: int
    peers: dict[str, PeerResult]
    pairs: list[dict[str, Any]]

    def warnings(self) -> list[str]:
        """One line per peer that gave no stages: ``"<peer>: <why>"``."""
        return [f"{name}: {r.refused}" for name, r in self.peers.items() if not r.applied]

    def to_dict(self) -> dict[str, Any]:
        """``{"peers": {name: PeerResult.to_dict()}, "peer_agreement": pairs}`` (JSON-ready)."""
        return {"peers": {name: r.to_dict() for name, r in self.peers.items()},
                "peer_agreement": [dict(p) for p in self.pairs]}  # fmt: skip


def peer_labels(stages: np.ndarray, n_classes: int) -> list[str]:
    """Names of stage codes: W N1 N2 N3 REM (5-class) or W NREM REM (3-class); ``""`` for unscored."""
    s = check_stages("stages", stages)
    names = np.asarray(("", *class_names(n_classes)), dtype=object)
    return names[merge_stages(s, n_classes).astype(np.int64) + 1].tolist()


def parse_peers(text: str | None) -> tuple[str, ...]:
    """``"yasa,sleepecg"`` -> ``("yasa", "sleepecg")`` (case and spaces ignored, repeats dropped).

    Raises
    ------
    S2VError
        An empty list or an unknown name (the message lists the peers).
    """
    if text is None:
        return ()
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not names:
        raise S2VError(f"--compare is empty; give one or more of {', '.join(PEERS)}, e.g. --compare yasa,sleepecg")
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise S2VError(f"unknown peer {', '.join(map(repr, unknown))} for --compare; "
                       f"known: {', '.join(PEERS)}")  # fmt: skip
    return tuple(dict.fromkeys(names))


# --- YASA ------------------------------------------------------------------------------------
def yasa_stage(raw: Any, eeg: str, eog: str | None = None, emg: str | None = None,
               metadata: dict | None = None) -> dict:  # fmt: skip
    """YASA's 5-stage prediction on an MNE Raw, or the reason it refused.

    Returns ``{"stages": int64 codes (-1 for YASA's artefact/unscored), "seconds": float}`` or
    ``{"refused": "<exception type>: <message>"}`` (YASA validates its input with ``assert``).
    """
    import yasa

    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # its classifiers were pickled with an older scikit-learn: a version warning only
            warnings.filterwarnings("ignore", message=".*unpickle estimator.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
            hyp = yasa.SleepStaging(raw, eeg_name=eeg, eog_name=eog, emg_name=emg, metadata=metadata).predict()
    except (AssertionError, ValueError) as exc:
        return {"refused": f"{type(exc).__name__}: {exc}"}
    codes = np.asarray(hyp.as_int().to_numpy(), dtype=np.int64)
    return {"stages": np.where(codes < 0, UNSCORED, codes), "seconds": time.perf_counter() - t}


def run_yasa(night: Night, path: str | Path | None = None) -> PeerResult:
    """YASA on the night's EEG (with EOG and EMG when they too are sampled at >= 80 Hz).

    Parameters
    ----------
    night : Night
        Its provenance gives each channel's label and rate in the file.
    path : path, optional
        The recording the night was read from (EDF/BDF or DREAMS text): its channels are read
        again at their own rate. Without it, or when it cannot be read, the canonical 128-Hz copies
        are used.
    """
    result = PeerResult("yasa", 5)
    if "eeg" not in night.modalities:
        result.refused = "no usable EEG channel in this recording; YASA stages from EEG"
        return result
    eeg_rate = _original_rate(night, "eeg")
    if eeg_rate is not None and eeg_rate < YASA_MIN_SFREQ:
        result.refused = f"EEG sampled at {eeg_rate:g} Hz; YASA needs >= {YASA_MIN_SFREQ:g} Hz"
        return result
    mods = ["eeg"]
    for m in ("eog", "emg"):
        if m not in night.modalities:
            continue
        rate = _original_rate(night, m)
        if rate is not None and rate < YASA_MIN_SFREQ:
            result.notes.append(f"{m.upper()} left out: sampled at {rate:g} Hz (< {YASA_MIN_SFREQ:g} Hz)")
        else:
            mods.append(m)
    try:
        import mne
        import yasa
    except ImportError as exc:
        result.refused = f"YASA is not installed ({exc}); pip install yasa"
        return result
    result.version = str(getattr(yasa, "__version__", ""))
    t = time.perf_counter()
    try:
        data, fs, how = _yasa_signals(night, mods, path)
        n = night.n_epochs
        width = int(round(EPOCH_SECONDS * fs))
        data = data[:, : n * width]
        missing = ~np.isfinite(data[0])  # EEG gaps: zero for YASA, its epochs unscored below
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
        names = [m.upper() for m in mods]
        info = mne.create_info(names, float(fs), ch_types=mods)
        metadata = _yasa_metadata(night)
        with mne.utils.use_log_level("error"):
            raw = mne.io.RawArray(data * 1e-6, info, verbose="error")  # µV -> V
            res = yasa_stage(raw, "EEG", "EOG" if "eog" in mods else None, "EMG" if "emg" in mods else None,
                             metadata)  # fmt: skip
    except Exception as exc:  # a peer failing must not stop our own prediction: reported, not raised
        log.info("YASA failed on %s", night.source_file, exc_info=True)
        result.refused = f"YASA failed: {type(exc).__name__}: {exc}"
        return result
    if "refused" in res:
        result.refused = f"YASA refused this recording ({res['refused']})"
        return result
    stages = _on_grid(res["stages"], n)
    gap = _gap_epochs(missing, width, n)
    if gap.any():
        stages[gap] = UNSCORED
        result.notes.append(f"{int(gap.sum())} epochs with less than half their EEG left unscored")
    result.stages = stages
    result.seconds = time.perf_counter() - t
    extra = " with age and sex" if metadata else ""
    result.used = f"{', '.join(f'{m.upper()} {_label(night, m)!r}' for m in mods)} {how}, in V{extra}"
    return result


def _original_rate(night: Night, modality: str) -> float | None:
    prov = night.provenance.get(modality)
    return None if prov is None or prov.original_sfreq is None else float(prov.original_sfreq)


def _label(night: Night, modality: str) -> str:
    prov = night.provenance.get(modality)
    return prov.source if prov is not None else modality


def _yasa_metadata(night: Night) -> dict | None:
    age, sex = night.meta.age, night.meta.sex
    if age is None or sex not in ("M", "F") or not 0 < float(age) < 120:
        return None
    return {"age": float(age), "male": int(sex == "M")}


def _yasa_signals(night: Night, mods: list[str], path: str | Path | None) -> tuple[np.ndarray, float, str]:
    """``(channels x samples in µV, rate, how they were obtained)`` for YASA."""
    if path is not None:
        try:
            original = _original_signals(night, mods, Path(path))
        except Exception as exc:  # the night is loaded already: fall back to its canonical copies
            log.info("re-reading %s for YASA failed (%s); using the canonical signals", path, exc)
            original = None
        if original is not None and original[1] > YASA_MIN_SFREQ:
            return original
        if original is not None:  # exactly 80 Hz: YASA's own check takes > 80 Hz only
            log.info("EEG at %g Hz: YASA is given the canonical copy", original[1])
    fs = float(SFREQ["eeg"])
    data = np.stack([np.asarray(night.signals[m], dtype=np.float64).reshape(-1) for m in mods])
    return data, fs, f"at the canonical {fs:g} Hz"


def _original_signals(night: Night, mods: list[str], path: Path) -> tuple[np.ndarray, float, str] | None:
    """The channels at their rate in the file, in µV, on the EEG's rate (None: not re-readable)."""
    kind = recording_kind(path)
    if kind == "dreams-text":
        if mods != ["eeg"] or night.provenance["eeg"].reader != "dreams-text":
            return None
        prov = night.provenance["eeg"]
        sig = read_dreams_signal(path)
        x = np.asarray(sig.data, dtype=np.float64) * prov.unit_scale
        return x[None, :], float(prov.original_sfreq), f"read from the file at {prov.original_sfreq:g} Hz"
    if kind != "edf":
        return None
    rows, fs_eeg = [], None
    with open_recording(path) as rec:
        for m in mods:
            prov = night.provenance[m]
            x, fs = rec.read_channel(prov.source)
            x = np.asarray(x, dtype=np.float64) * prov.unit_scale
            if fs_eeg is None:
                fs_eeg = float(fs)
            elif abs(fs - fs_eeg) > 1e-9:
                x = resample(x, float(fs), fs_eeg).astype(np.float64)
            rows.append(x)
    n = min(len(r) for r in rows)
    rates = {m: night.provenance[m].original_sfreq for m in mods}
    how = f"read from the file at {fs_eeg:g} Hz"
    if any(r != fs_eeg for r in rates.values()):
        how += " (rates in the file: " + ", ".join(f"{m.upper()} {r:g} Hz" for m, r in rates.items()) + ")"
    return np.stack([r[:n] for r in rows]), fs_eeg, how


def _on_grid(stages: np.ndarray, n_epochs: int) -> np.ndarray:
    """A peer's stages trimmed or padded (unscored) to the night's epochs, int8."""
    out = np.full(n_epochs, UNSCORED, dtype=np.int8)
    s = np.asarray(stages, dtype=np.int64)[:n_epochs]
    out[: s.size] = np.where((s >= 0) & (s <= 4), s, UNSCORED)
    return out


def _gap_epochs(missing: np.ndarray, width: int, n_epochs: int) -> np.ndarray:
    """Epochs of which less than half holds signal (missing samples past the end count as missing)."""
    full = np.ones(n_epochs * width, dtype=bool)
    full[: min(missing.size, full.size)] = missing[: full.size]
    return full.reshape(n_epochs, width).mean(axis=1) > 1 - _MIN_VALID_FRACTION


# --- sleepecg --------------------------------------------------------------------------------
@functools.cache
def load_sleepecg() -> Any:
    """sleepecg's bundled :data:`SLEEPECG_CLASSIFIER` (Keras on the PyTorch backend), loaded once per process.

    Raises
    ------
    ImportError
        sleepecg or Keras is missing, or Keras cannot start its backend (the message says which).
    """
    os.environ.setdefault("KERAS_BACKEND", "torch")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from sleepecg import load_classifier as load_peer

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            clf = load_peer(SLEEPECG_CLASSIFIER, "SleepECG")
        except (ImportError, ModuleNotFoundError) as exc:
            raise ImportError(f"sleepecg's {SLEEPECG_CLASSIFIER} needs Keras on the PyTorch backend "
                              f"(KERAS_BACKEND={os.environ.get('KERAS_BACKEND')}): {exc}; "
                              "pip install keras") from exc  # fmt: skip
    if clf.stages_mode != "wake-rem-nrem":
        raise RuntimeError(f"unexpected sleepecg stages mode {clf.stages_mode!r}")
    return clf


def sleepecg_stages_from_beats(beat_times_s: np.ndarray, n_epochs: int, clf: Any, *,
                               start: clock_time | None = None, age: float | None = None,
                               sex: str | None = None, record_id: str = "") -> tuple[np.ndarray, int]:  # fmt: skip
    """sleepecg 3-class staging from heartbeat times, on our epoch grid, as project codes.

    Parameters
    ----------
    beat_times_s : np.ndarray
        Heartbeat (R-peak) times in seconds from the recording start.
    n_epochs : int
        Our 30-s epochs; sleepecg's epoch i starts at 30 i s like ours.
    clf
        :func:`load_sleepecg`.
    start, age, sex
        Clock time of the recording start, age in years, ``"M"``/``"F"``: features of the
        classifier when known.

    Returns
    -------
    stages : np.ndarray, shape (n_epochs,), int8
        W=0, NREM written as N2=2, REM=4.
    n_undefined : int
        Epochs whose most probable output was sleepecg's UNDEFINED class; they are given the most
        probable defined class instead (in the peer's favour).
    """
    from sleepecg import SleepRecord, SubjectData, stage

    rec = SleepRecord(
        sleep_stages=np.zeros(n_epochs, dtype=int),  # only its length is used: our epoch grid
        sleep_stage_duration=EPOCH_SECONDS,
        id=record_id,
        recording_start_time=start,
        heartbeat_times=np.asarray(beat_times_s, dtype=np.float64),
        subject_data=SubjectData(gender={"M": 1, "F": 0}.get(sex or ""), age=None if age is None else int(age)),
    )
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # "window too short for VLF": the peer's own design
        prob = np.asarray(stage(clf, rec, return_mode="prob"))  # (n, 4): UNDEFINED, NREM, REM, WAKE
    if prob.shape[0] != n_epochs:
        raise RuntimeError(f"sleepecg returned {prob.shape[0]} epochs, expected {n_epochs}")
    n_undefined = int((prob.argmax(axis=1) == 0).sum())
    codes = np.array([N2, REM, W], dtype=np.int8)  # wake-rem-nrem: 1 NREM, 2 REM, 3 WAKE
    return codes[prob[:, 1:].argmax(axis=1)], n_undefined


def run_sleepecg(night: Night, path: str | Path | None = None, clf: Any = None) -> PeerResult:
    """sleepecg on the night's heartbeats: WFDB beat annotations, else R peaks of its ECG.

    Parameters
    ----------
    night : Night
    path : path, optional
        The recording: a WFDB record gives its annotated beats; an EDF/BDF its ECG at the rate in
        the file. Without it, the canonical 128-Hz ECG is used.
    clf : optional
        A classifier from :func:`load_sleepecg` (loaded here when None).
    """
    result = PeerResult("sleepecg", 3)
    t = time.perf_counter()
    try:
        beats, used, start = _heartbeats(night, path)
    except Exception as exc:  # unreadable beats: reported as the peer's refusal
        log.info("heartbeats for sleepecg failed on %s", night.source_file, exc_info=True)
        result.refused = f"no heartbeats for sleepecg ({type(exc).__name__}: {exc})"
        return result
    if beats is None:
        result.refused = "no ECG channel or beat annotations in this recording; sleepecg stages from heartbeats"
        return result
    if beats.size < 2:
        result.refused = f"{used}: {beats.size} heartbeats found; sleepecg needs a heartbeat series"
        return result
    try:
        import sleepecg

        result.version = str(getattr(sleepecg, "__version__", ""))
        clf = clf if clf is not None else load_sleepecg()
    except ImportError as exc:
        result.refused = f"sleepecg cannot run: {exc}"
        return result
    try:
        stages, undefined = sleepecg_stages_from_beats(beats, night.n_epochs, clf, start=start,
                                                       age=night.meta.age, sex=night.meta.sex,
                                                       record_id=night.meta.night_id)  # fmt: skip
    except Exception as exc:  # a peer failing must not stop our own prediction: reported, not raised
        log.info("sleepecg failed on %s", night.source_file, exc_info=True)
        result.refused = f"sleepecg failed: {type(exc).__name__}: {exc}"
        return result
    after = beats[-1] if beats.size else 0.0
    stages = stages.astype(np.int8)
    no_beats = _epochs_without_beats(beats, night.n_epochs)
    if no_beats.any():
        stages[no_beats] = UNSCORED
        result.notes.append(f"{int(no_beats.sum())} epochs without a heartbeat left unscored")
    if undefined:
        result.notes.append(f"{undefined} epochs were most probably UNDEFINED for sleepecg; given its "
                            "most probable defined class")  # fmt: skip
    result.stages = stages
    result.seconds = time.perf_counter() - t
    demo = [k for k, v in (("age", night.meta.age), ("sex", night.meta.sex)) if v is not None]
    result.used = f"{beats.size} heartbeats ({used}) over {after / 3600:.2f} h" + (
        f"; {' and '.join(demo)} given" if demo else "")  # fmt: skip
    return result


def _heartbeats(night: Night, path: str | Path | None) -> tuple[np.ndarray | None, str, clock_time | None]:
    """``(beat times in s, where they come from, start clock)``; beats None without ECG or beats."""
    start = night.start_time.time() if night.start_time is not None else None
    kind = None
    if path is not None:
        try:
            kind = recording_kind(path)
        except (S2VError, OSError, TypeError):  # not a file we read again: the night's own ECG
            kind = None
    if kind == "wfdb" and Path(path).with_suffix(".ecg").is_file():  # beats, not only .dat signals
        beats = read_wfdb_beats(path)
        return (np.asarray(beats.beat_times_s, dtype=np.float64), f"beat annotations {Path(beats.record).name}.ecg",
                beats.start_clock or start)  # fmt: skip
    if "ecg" not in night.modalities:
        return None, "", start
    prov = night.provenance.get("ecg")
    label = prov.source if prov is not None else "ecg"
    if kind == "edf" and prov is not None:
        try:
            with open_recording(path) as rec:
                x, fs = rec.read_channel(prov.source)
            return detect_rpeaks(x, fs) / float(fs), f"R peaks of ECG {label!r} at {fs:g} Hz", start
        except Exception as exc:  # fall back to the night's canonical ECG
            log.info("re-reading the ECG of %s failed (%s); using the canonical ECG", path, exc)
    ecg = np.asarray(night.signals["ecg"], dtype=np.float64).reshape(-1)
    ecg[np.repeat(~night.epoch_valid["ecg"], SFREQ["ecg"] * EPOCH_SECONDS)] = np.nan
    fs = float(SFREQ["ecg"])
    return detect_rpeaks(ecg, fs) / fs, f"R peaks of ECG {label!r} at the canonical {fs:g} Hz", start


def _epochs_without_beats(beats: np.ndarray, n_epochs: int) -> np.ndarray:
    idx = np.floor(np.asarray(beats) / EPOCH_SECONDS).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n_epochs)]
    return np.bincount(idx, minlength=n_epochs)[:n_epochs] == 0


# --- running and comparing -------------------------------------------------------------------
def run_peer(name: str, night: Night, path: str | Path | None = None) -> PeerResult:
    """Run one peer of :data:`PEERS` on ``night`` (``path``: the recording it was read from)."""
    if name == "yasa":
        return run_yasa(night, path)
    if name == "sleepecg":
        return run_sleepecg(night, path)
    raise S2VError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


def run_peers(night: Night, peers: tuple[str, ...] | list[str],
              path: str | Path | None = None) -> dict[str, PeerResult]:  # fmt: skip
    """:func:`run_peer` for each of ``peers``, in order (they do not depend on our model: cache these)."""
    out = {}
    for name in peers:
        out[name] = run_peer(name, night, path)
        if out[name].applied:
            log.info("%s staged %s in %.1f s", name, night.source_file, out[name].seconds)
    return out


def agreement_pairs(stagers: dict[str, tuple[np.ndarray, int]],
                    three_class: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Cohen's kappa, accuracy and epochs compared for every pair of stagers.

    Parameters
    ----------
    stagers : dict
        Name -> ``(stages, n_classes)``, in the order the pairs are listed; stages in project codes.
    three_class : dict, optional
        Name -> the stager's own 3-class stages (as 5-class codes), used instead of merging its
        5-class stages when it is compared in 3 classes (ours: summed probabilities).

    Returns
    -------
    list of dict
        ``{"a", "b", "n_classes", "kappa", "accuracy", "n_epochs"}`` per pair (3 classes when either
        side is 3-class); kappa and accuracy None, with a ``note``, when no epoch is scored by both.
    """
    three_class = three_class or {}
    names = list(stagers)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            k = min(stagers[a][1], stagers[b][1])
            sa = three_class.get(a, stagers[a][0]) if k == 3 else stagers[a][0]
            sb = three_class.get(b, stagers[b][0]) if k == 3 else stagers[b][0]
            row: dict[str, Any] = {"a": a, "b": b, "n_classes": k}
            try:
                m = staging_metrics(check_stages(b, sb), check_stages(a, sa), n_classes=k)
                row.update(kappa=float(m.kappa), accuracy=float(m.accuracy), n_epochs=int(m.n_epochs))
            except ValueError:
                row.update(kappa=None, accuracy=None, n_epochs=0, note=f"no epoch staged by both {a} and {b}")
            out.append(row)
    return out


def compare_with_peers(night: Night, ours: np.ndarray, peers: tuple[str, ...] | list[str], *,
                       ours_3class: np.ndarray | None = None, path: str | Path | None = None,
                       results: dict[str, PeerResult] | None = None) -> PeerComparison:  # fmt: skip
    """Run ``peers`` on ``night`` and score every pair among ours, each peer and the expert.

    Parameters
    ----------
    night : Night
        The expert is part of the pairs when it has at least one scored epoch.
    ours : np.ndarray
        Our model's 5-class stages, ``(n_epochs,)``.
    peers : sequence of str
        Keys of :data:`PEERS` (see :func:`parse_peers`).
    ours_3class : np.ndarray, optional
        Our 3-class stages as 5-class codes (``Prediction.merged_as_five(3)``: summed
        probabilities); default: ``ours`` merged.
    path : path, optional
        The recording ``night`` was read from (see :func:`run_yasa`, :func:`run_sleepecg`).
    results : dict, optional
        Peer results already computed (e.g. cached by the app); peers missing from it are run.

    Raises
    ------
    ValueError
        ``ours`` does not hold one stage code per epoch of ``night``.
    """
    ours = check_stages(OURS, ours)
    if ours.size != night.n_epochs:
        raise ValueError(f"ours has {ours.size} stages for a night of {night.n_epochs} epochs")
    done = dict(results or {})
    done.update(run_peers(night, [name for name in peers if name not in done], path))
    got = {name: done[name] for name in peers}
    stagers: dict[str, tuple[np.ndarray, int]] = {OURS: (ours, 5)}
    stagers.update({name: (r.stages, r.n_classes) for name, r in got.items() if r.applied})
    if (np.asarray(night.stages) >= 0).any():
        stagers[EXPERT] = (np.asarray(night.stages, dtype=np.int64), 5)
    three = {OURS: check_stages(OURS, ours_3class)} if ours_3class is not None else None
    return PeerComparison(night.n_epochs, got, agreement_pairs(stagers, three))
