"""What the Modalities page needs to stage a night from many modality subsets, without Streamlit.

:class:`SubsetStages` keeps, for one night and one model, the encoded night (each modality
encoded once, :func:`~s2v_core.inference.subsets.encode_night`) and the stages of every subset
staged so far, so the quick set, then all subsets, then another class count cost only the
subsets not yet staged (and those only the gated fusion and the staging head).
:func:`time_left` and :func:`progress_text` give a progress bar its time estimate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from s2v_core.inference.predict import MAX_WINDOWS_PER_PASS, WINDOW_EPOCHS, resolve_subset
from s2v_core.inference.subsets import (
    EncodedNight,
    encode_night,
    fuses_subsets,
    predict_subsets,
    work_units,
)
from s2v_core.modalities import MODALITIES, NAMED_SUBSETS
from s2v_core.night import Night

__all__ = [
    "SubsetStages",
    "progress_text",
    "quick_subsets",
    "time_left",
]

log = logging.getLogger(__name__)

Subset = tuple[str, ...]


def quick_subsets(available: Iterable[str]) -> list[Subset]:
    """Single modalities, the paper's named subsets, every leave-one-out set and the full set.

    Each subset in canonical order, without duplicates or empty ones, in that order.
    """
    available = tuple(m for m in MODALITIES if m in set(available))
    subsets = [(m,) for m in available]
    subsets += [tuple(m for m in s if m in available) for s in NAMED_SUBSETS.values()]
    subsets += [tuple(x for x in available if x != m) for m in available]
    return list(dict.fromkeys(tuple(m for m in MODALITIES if m in s) for s in subsets if s))


def time_left(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left at the rate so far: ``elapsed * (total - done) / done`` (None before any work)."""
    if done <= 0 or total <= 0 or elapsed < 0:
        return None
    return max(0.0, elapsed * (total - min(done, total)) / done)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{max(s, 1)} s"
    return f"{s // 60} min {s % 60:02d} s"


def progress_text(what: str, done: float, total: float, elapsed: float) -> str:
    """``"<what>: 42 % (about 12 s left, 9 s so far)"``; the percentage alone while there is nothing
    to estimate from.

    The estimate is withheld during the first half second (too little to go on).
    """
    pct = 0.0 if total <= 0 else 100.0 * min(done, total) / total
    left = time_left(done, total, elapsed)
    text = f"{what}: {pct:.0f} %"
    if left is not None and elapsed >= 0.5:
        text += (
            f" (about {_duration(left)} left, {_duration(elapsed)} so far)"
            if done < total
            else " (done)"
        )
    return text


class SubsetStages:
    """Stages of one night by one model for any modality subsets, each subset staged once.

    Parameters
    ----------
    model : Sleep2VecClassifier
        Shared, never modified.
    night : Night
    name : str
        The model id (``Prediction.model_id``).
    window_epochs, device, max_windows
        As for :func:`~s2v_core.inference.predict.predict_night`.

    Safe to share between threads (one computes at a time).
    """

    def __init__(self, model: object, night: Night, *, name: str = "", window_epochs: int = WINDOW_EPOCHS,
                 device: str = "cpu", max_windows: int = MAX_WINDOWS_PER_PASS):  # fmt: skip
        self.model, self.night, self.name = model, night, name
        self.window_epochs, self.device, self.max_windows = window_epochs, device, max_windows
        self.encoded: EncodedNight | None = None
        self._stages: dict[Subset, np.ndarray] = {}
        self._lock = threading.Lock()

    def known(self) -> set[Subset]:
        """The subsets staged so far."""
        return set(self._stages.copy())  # a copy made at once: another thread may be adding

    def stages(
        self,
        subsets: Iterable[Iterable[str]],
        progress: Callable[[float, float], None] | None = None,
    ) -> dict[Subset, np.ndarray]:
        """Stage codes ``(n_epochs,)`` int8 of each subset (canonical order keys, in the order given).

        Only subsets not staged before are computed: the night is encoded once (all the
        modalities it shares with the model), then each new subset costs one fusion and head.

        Raises
        ------
        S2VError
            A subset that is empty or names modalities the night or the model lacks.
        """
        wanted = list(
            dict.fromkeys(resolve_subset(self.model, self.night, tuple(s)) for s in subsets)
        )
        with self._lock:
            missing = [s for s in wanted if s not in self._stages]
            if missing:
                t0 = time.perf_counter()
                kwargs = {
                    "window_epochs": self.window_epochs,
                    "device": self.device,
                    "max_windows": self.max_windows,
                }
                fuse = progress
                if self.encoded is None and fuses_subsets(self.model):
                    # every modality at once, so a later call for other subsets only fuses
                    everything = resolve_subset(self.model, self.night, None)
                    enc = work_units(self.night, len(everything), 0, self.window_epochs)
                    total = enc + work_units(self.night, 0, len(missing), self.window_epochs)

                    def encoding(done: float, _total: float) -> None:
                        if progress is not None:
                            progress(done, total)

                    def fusing(done: float, _total: float) -> None:
                        if progress is not None:
                            progress(enc + done, total)

                    self.encoded = encode_night(
                        self.model, self.night, everything, progress=encoding, **kwargs
                    )
                    fuse = fusing
                preds = predict_subsets(self.model, self.night, missing, encoded=self.encoded, name=self.name,
                                        progress=fuse, **kwargs)  # fmt: skip
                self._stages.update({s: p.stages for s, p in preds.items()})
                log.info("staged %d subsets in %.2f s", len(missing), time.perf_counter() - t0)
            return {s: self._stages[s] for s in wanted}
