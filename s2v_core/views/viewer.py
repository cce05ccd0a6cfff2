"""Signal viewer, spectrograms and sensor-dropout simulation for one canonical night.

Pure functions on a :class:`~s2v_core.night.Night`; the app draws their results with
:mod:`s2v_core.views.plots_signals`. Nothing here mutates the night it is given (the app caches
nights and shares them between pages).

* :func:`signal_window` cuts the epochs around one epoch out of every chosen modality and
  downsamples each trace on the server with a min/max envelope, so a 128-Hz EEG trace of any
  length reaches the browser as at most ``max_points`` points with its peaks intact and its
  gaps (NaN) still gaps.
* :func:`spectrogram` gives the power spectral density in dB around an epoch (short-time
  Fourier transform, Hann windows) or over the whole night (Welch per 30-s epoch, the usual
  sleep-lab overview), limited to a band such as 0.3-35 Hz.
* :func:`simulate_dropout` returns a new night in which one modality is missing over a span of
  epochs, and :func:`dropout_agreement` tells how staging changed because of it.

Why not ``tsdownsample``
------------------------
tsdownsample 0.1.5 (Rust) was run against :func:`minmax_envelope` on the viewer's largest window
(121 epochs of 128-Hz EEG, 464,640 samples, 2,000 points; tests/test_library_review.py). On a
trace without gaps its ``MinMaxDownsampler`` keeps the same extremes (both keep every bin's
minimum and maximum; the bin edges differ) in 0.1 ms against 1 ms here. With dropouts neither
of its min/max downsamplers keeps both guarantees of the viewer: ``MinMaxDownsampler`` drew a
line across 44 of 50 gaps, and ``NaNMinMaxDownsampler`` returns only the NaN of a bin that has
one, so it lost all 40 spikes that sat next to a one-sample dropout (ours: 50 of 50 gaps broken,
40 of 40 spikes kept). It also accepts only an even number of points. A millisecond per trace
does not justify a compiled dependency that gets gaps or peaks wrong.

Examples
--------
>>> win = signal_window(night, 100, before=1, after=1)  # doctest: +SKIP
>>> win.traces["eeg"].values.size <= 2000  # doctest: +SKIP
True
>>> spec = spectrogram(night, "eeg", 100, whole_night=True)  # doctest: +SKIP
>>> dropped = simulate_dropout(night, "eeg", 300, 420)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from numbers import Integral

import numpy as np
import pandas as pd
from scipy import signal as sps

from s2v_core.errors import S2VError
from s2v_core.evaluation.staging import staging_metrics
from s2v_core.modalities import EPOCH_SECONDS, MODALITIES, SFREQ, UNITS
from s2v_core.night import Night

__all__ = [
    "DISPLAY_UNITS",
    "MAX_CONTEXT_EPOCHS",
    "SPECTRAL_MODALITIES",
    "SignalWindow",
    "Spectrogram",
    "Trace",
    "ViewerError",
    "check_span",
    "clock_times",
    "default_epoch",
    "dropout_agreement",
    "minmax_envelope",
    "signal_window",
    "simulate_dropout",
    "spectrogram",
    "switched_off_note",
    "usable_epoch",
    "viewer_modalities",
]

MAX_CONTEXT_EPOCHS = 60
"""Most epochs the signal viewer shows on either side of the selected one (30 min)."""

SPECTRAL_MODALITIES: tuple[str, ...] = tuple(m for m in MODALITIES if SFREQ[m] >= 64)
"""Modalities stored fast enough for a spectrogram (the 128-Hz biopotentials)."""

DISPLAY_UNITS: dict[str, str] = {m: u.replace("uV", "µV") for m, u in UNITS.items()}
"""Canonical unit of each modality as it is printed on an axis."""


class ViewerError(S2VError):
    """A viewer or dropout request names an epoch, span, modality or band that cannot be used."""


# --- helpers ---------------------------------------------------------------------------------
def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ViewerError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _check_epoch(night: Night, epoch: object) -> int:
    e = _check_int("epoch", epoch)
    if night.n_epochs == 0:
        raise ViewerError("the night has no epochs to show")
    if not 0 <= e < night.n_epochs:
        raise ViewerError(f"epoch {e} is outside the night: epochs run from 0 to {night.n_epochs - 1}")
    return e


def _check_night_modality(night: Night, modality: str) -> str:
    if modality not in SFREQ:
        raise ViewerError(f"unknown modality {modality!r}; allowed: {', '.join(MODALITIES)}")
    if modality not in night.signals:
        have = ", ".join(m for m in MODALITIES if m in night.signals) or "none"
        raise ViewerError(f"this night has no {modality} signal (it has: {have})")
    return modality


def clock_times(start: datetime | None, seconds: np.ndarray) -> np.ndarray | None:
    """Wall-clock times ``start + seconds`` as ``datetime64[ms]`` (``None`` without a start).

    A time-zone-aware start is written in its own local wall time (the time on the lab clock).
    """
    if start is None:
        return None
    origin = np.datetime64(start.replace(tzinfo=None), "ms")
    return origin + np.round(np.asarray(seconds, dtype=np.float64) * 1000.0).astype("timedelta64[ms]")


def minmax_envelope(t: np.ndarray, x: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Downsample a trace to at most ``max_points`` points, keeping every bin's minimum and maximum.

    The trace is cut into equal bins; each bin contributes its minimum and its maximum sample
    (in time order, at their own times), so no peak is lost. A bin that is entirely NaN gives a
    NaN point, and a bin that is partly NaN also gives a NaN point where its gap starts, so gaps
    of any length still break the drawn line. Fully vectorised (no loop over samples).

    Parameters
    ----------
    t, x : np.ndarray, shape (n,)
        Sample times and values (NaN where missing).
    max_points : int
        Upper bound on the output length (at least 3). Traces that already fit are returned
        unchanged (as copies).

    Returns
    -------
    t_out, x_out : np.ndarray
        The kept samples, in time order.
    """
    max_points = _check_int("max_points", max_points)
    if max_points < 3:
        raise ViewerError(f"max_points must be at least 3, got {max_points}")
    t = np.asarray(t)
    x = np.asarray(x, dtype=np.float32)
    if t.shape != x.shape or x.ndim != 1:
        raise ViewerError(f"times and values must be 1-D and of equal length, got {t.shape} and {x.shape}")
    n = x.size
    if n <= max_points:
        return t.copy(), x.copy()
    finite_all = np.isfinite(x)
    has_gaps = not finite_all.all()
    per_bin = 3 if has_gaps else 2
    n_bins = max(1, max_points // per_bin)
    size = math.ceil(n / n_bins)
    n_bins = math.ceil(n / size)
    pad = n_bins * size - n
    xp = np.concatenate([x, np.full(pad, np.nan, dtype=np.float32)]).reshape(n_bins, size)
    finite = np.concatenate([finite_all, np.zeros(pad, dtype=bool)]).reshape(n_bins, size)
    i_lo = np.where(finite, xp, np.inf).argmin(axis=1)
    i_hi = np.where(finite, xp, -np.inf).argmax(axis=1)
    any_finite = finite.any(axis=1)
    base = np.arange(n_bins) * size
    cols = [np.minimum(i_lo, i_hi), np.maximum(i_lo, i_hi)]
    keep = [any_finite, any_finite & (i_lo != i_hi)]
    if has_gaps:
        has_nan = ~finite.all(axis=1)
        # First missing sample of each bin (the padding of the last bin counts only as the end).
        first_nan = (~finite).argmax(axis=1)
        real_nan = has_nan & (base + first_nan < n)
        cols.append(first_nan)
        keep.append(real_nan | ~any_finite)
    idx = np.stack(cols, axis=1) + base[:, None]
    mask = np.stack(keep, axis=1)
    order = np.argsort(idx, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)[np.take_along_axis(mask, order, axis=1)]
    idx = np.minimum(idx, n - 1)
    return t[idx], x[idx]


# --- what the viewer offers --------------------------------------------------------------------
def viewer_modalities(night: Night, active: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The night's modalities split by the app's modality switches, both in canonical order.

    Returns ``(shown, switched_off)``: the modalities of the night (those with a usable signal)
    that are in ``active``, and those that are not although the recording has them.
    """
    on = set(active)
    have = night.modalities
    return tuple(m for m in have if m in on), tuple(m for m in have if m not in on)


def switched_off_note(switched_off: tuple[str, ...] | list[str]) -> str:
    """A line telling the user which of the night's modalities are hidden by the switches ("" for none)."""
    if not switched_off:
        return ""
    names = ", ".join(switched_off)
    verb = "has a channel" if len(switched_off) == 1 else "have channels"
    return f"Not shown: {names} {verb} in this recording but {'is' if len(switched_off) == 1 else 'are'} " \
           "switched off in the sidebar."


def default_epoch(night: Night) -> int:
    """Where an epoch selector starts: the first scored epoch, else the first epoch (0)."""
    scored = np.flatnonzero(np.asarray(night.stages) >= 0)
    return int(scored[0]) if scored.size else 0


def usable_epoch(night: Night, epoch: object) -> int | None:
    """``epoch`` as an int when it is a whole number inside ``night``, else None (e.g. left from another night)."""
    if isinstance(epoch, bool) or not isinstance(epoch, Integral | float) or epoch != epoch:
        return None
    if isinstance(epoch, float) and not epoch.is_integer():
        return None
    e = int(epoch)
    return e if 0 <= e < night.n_epochs else None


# --- signal viewer ---------------------------------------------------------------------------
@dataclass
class Trace:
    """One modality's samples over the viewer window, ready to draw."""

    modality: str
    seconds: np.ndarray  # seconds from the recording start, float64
    clock: np.ndarray | None  # datetime64[ms] wall-clock times, or None without a start time
    values: np.ndarray  # float32 physical values, NaN where missing
    unit: str  # e.g. "µV", "%", "s", "a.u."
    sfreq: int  # canonical rate in Hz
    n_samples: int  # samples in the window before downsampling
    source: str = ""  # channel label or derivation (provenance)
    valid: np.ndarray | None = None  # (n_window_epochs,) bool: epoch had a usable signal

    @property
    def downsampled(self) -> bool:
        return self.values.size < self.n_samples


@dataclass
class SignalWindow:
    """The epochs around one selected epoch, for every requested modality."""

    epoch: int  # the selected epoch
    first_epoch: int  # first shown epoch (inclusive)
    last_epoch: int  # last shown epoch (exclusive)
    epoch_starts_s: np.ndarray  # start of each shown epoch, seconds from the recording start
    epoch_clock: np.ndarray | None  # the same as datetime64[ms], or None
    stages: np.ndarray  # expert stage of each shown epoch (-1 unscored)
    traces: dict[str, Trace]

    @property
    def n_epochs(self) -> int:
        return self.last_epoch - self.first_epoch


def signal_window(
    night: Night,
    epoch: int,
    *,
    before: int = 1,
    after: int = 1,
    modalities: tuple[str, ...] | list[str] | None = None,
    max_points: int = 2000,
) -> SignalWindow:
    """Every chosen modality around ``epoch``, downsampled for display.

    Parameters
    ----------
    night : Night
    epoch : int
        The selected epoch (0-based).
    before, after : int
        Epochs to show before and after it (0 to :data:`MAX_CONTEXT_EPOCHS`); the window is cut
        at the start and end of the night.
    modalities : sequence of str, optional
        Which modalities to show (default: every modality of the night with a usable signal),
        drawn in canonical order.
    max_points : int
        Most points per trace after min/max downsampling (:func:`minmax_envelope`).

    Returns
    -------
    SignalWindow

    Raises
    ------
    ViewerError
        Epoch outside the night, a context out of range, or a modality the night lacks.
    """
    e = _check_epoch(night, epoch)
    b, a = _check_int("before", before), _check_int("after", after)
    for name, v in (("before", b), ("after", a)):
        if not 0 <= v <= MAX_CONTEXT_EPOCHS:
            raise ViewerError(f"{name} must be between 0 and {MAX_CONTEXT_EPOCHS} epochs, got {v}")
    wanted = night.modalities if modalities is None else tuple(modalities)
    for m in wanted:
        _check_night_modality(night, m)
    wanted = tuple(m for m in MODALITIES if m in wanted)
    first, last = max(0, e - b), min(night.n_epochs, e + a + 1)
    starts = np.arange(first, last, dtype=np.float64) * EPOCH_SECONDS
    traces = {}
    for m in wanted:
        fs = SFREQ[m]
        x = np.asarray(night.signals[m][first:last], dtype=np.float32).reshape(-1)
        t = first * EPOCH_SECONDS + np.arange(x.size, dtype=np.float64) / fs
        valid = np.asarray(night.epoch_valid[m][first:last], dtype=bool)
        if not valid.all():  # an epoch marked unusable is a gap, whatever numbers it holds
            x = np.where(np.repeat(valid, x.size // len(valid)), x, np.float32(np.nan))
        ts, xs = minmax_envelope(t, x, max_points)
        prov = night.provenance.get(m)
        traces[m] = Trace(modality=m, seconds=ts, clock=clock_times(night.start_time, ts), values=xs,
                          unit=DISPLAY_UNITS[m], sfreq=fs, n_samples=int(x.size),
                          source=prov.source if prov else "", valid=valid)
    return SignalWindow(epoch=e, first_epoch=first, last_epoch=last, epoch_starts_s=starts,
                        epoch_clock=clock_times(night.start_time, starts),
                        stages=np.asarray(night.stages[first:last]).astype(np.int8), traces=traces)


# --- spectrogram -----------------------------------------------------------------------------
@dataclass
class Spectrogram:
    """Power spectral density over time, in dB."""

    modality: str
    freqs: np.ndarray  # (n_freqs,) Hz
    seconds: np.ndarray  # (n_times,) centre of each column, seconds from the recording start
    clock: np.ndarray | None  # datetime64[ms] of the same, or None
    power_db: np.ndarray  # (n_freqs, n_times) float32, NaN where the signal is missing
    unit: str  # e.g. "dB re 1 µV²/Hz"
    whole_night: bool
    first_epoch: int
    last_epoch: int  # exclusive
    epoch: int  # the selected epoch
    column_seconds: float  # time covered by one column


def _check_band(modality: str, fmin: float, fmax: float) -> tuple[float, float]:
    nyq = SFREQ[modality] / 2
    try:
        lo, hi = float(fmin), float(fmax)
    except (TypeError, ValueError):
        raise ViewerError(f"the frequency band must be numbers, got {fmin!r} to {fmax!r}") from None
    if not (0 <= lo < hi <= nyq):
        raise ViewerError(f"frequency band {lo:g}-{hi:g} Hz is not within 0-{nyq:g} Hz (half the "
                          f"{SFREQ[modality]}-Hz rate of {modality}) with the lower edge below the upper")
    return lo, hi


def _to_db(power: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def spectrogram(
    night: Night,
    modality: str,
    epoch: int,
    *,
    context_epochs: int = 2,
    whole_night: bool = False,
    fmin: float = 0.3,
    fmax: float = 35.0,
    segment_s: float | None = None,
    max_columns: int = 1200,
) -> Spectrogram:
    """Spectrogram of a 128-Hz modality around ``epoch``, or over the whole night.

    Around an epoch: short-time Fourier transform with 2-s Hann windows every 0.25 s (0.5-Hz
    resolution) over ``epoch +- context_epochs``. Whole night: Welch's method in each 30-s epoch
    (4-s Hann windows, 50 % overlap, 0.25-Hz resolution), one column per epoch, columns averaged
    in groups (in linear power) when the night has more than ``max_columns`` epochs.

    Parameters
    ----------
    night : Night
    modality : str
        One of :data:`SPECTRAL_MODALITIES` (eeg, eog, emg, ecg).
    epoch : int
        The selected epoch (centre of the local view; marked in the whole-night view).
    context_epochs : int
        Epochs on either side in the local view (0 to :data:`MAX_CONTEXT_EPOCHS`).
    whole_night : bool
        The whole-night overview instead of the local view.
    fmin, fmax : float
        Band kept, in Hz (default 0.3-35 Hz, the band sleep scorers read).
    segment_s : float, optional
        Length of one FFT window in seconds (default 2 s local, 4 s whole night).
    max_columns : int
        Most time columns of the whole-night view.

    Returns
    -------
    Spectrogram
        Power in dB re 1 unit²/Hz (µV²/Hz for the biopotentials); columns whose window touched a
        missing sample (or an epoch marked unusable) are NaN.

    Raises
    ------
    ViewerError
        A slow (4-Hz) modality, a modality the night lacks, an epoch outside the night or a band
        beyond the Nyquist frequency.
    """
    _check_night_modality(night, modality)
    if modality not in SPECTRAL_MODALITIES:
        raise ViewerError(
            f"no spectrogram for {modality}: it is stored at {SFREQ[modality]} Hz, so its content lies "
            f"below {SFREQ[modality] / 2:g} Hz and is read as a trace; spectrograms are drawn for the "
            f"128-Hz signals ({', '.join(SPECTRAL_MODALITIES)})"
        )
    e = _check_epoch(night, epoch)
    lo, hi = _check_band(modality, fmin, fmax)
    fs = SFREQ[modality]
    valid = np.asarray(night.epoch_valid[modality], dtype=bool)
    unit = f"dB re 1 {DISPLAY_UNITS[modality]}²/Hz"
    seg_s = (4.0 if whole_night else 2.0) if segment_s is None else float(segment_s)
    nperseg = int(round(seg_s * fs))
    if not 8 <= nperseg <= EPOCH_SECONDS * fs:
        raise ViewerError(f"segment_s must be between {8 / fs:g} and {EPOCH_SECONDS} s, got {seg_s:g}")
    if whole_night:
        return _night_spectrogram(night, modality, e, valid, fs, nperseg, lo, hi, unit,
                                  _check_int("max_columns", max_columns))
    c = _check_int("context_epochs", context_epochs)
    if not 0 <= c <= MAX_CONTEXT_EPOCHS:
        raise ViewerError(f"context_epochs must be between 0 and {MAX_CONTEXT_EPOCHS}, got {c}")
    first, last = max(0, e - c), min(night.n_epochs, e + c + 1)
    x = np.array(night.signals[modality][first:last], dtype=np.float64)
    x[~valid[first:last]] = np.nan
    x = x.reshape(-1)
    step = max(1, fs // 4)
    missing = ~np.isfinite(x)
    freqs, t, power = sps.spectrogram(np.where(missing, 0.0, x), fs=fs, window="hann", nperseg=nperseg,
                                      noverlap=nperseg - step, detrend="constant", scaling="density")
    touched = np.lib.stride_tricks.sliding_window_view(missing, nperseg)[::step].any(axis=1)[: len(t)]
    band = (freqs >= lo) & (freqs <= hi)
    db = _to_db(power[band])
    db[:, touched] = np.nan
    seconds = first * EPOCH_SECONDS + t
    return Spectrogram(modality=modality, freqs=freqs[band], seconds=seconds,
                       clock=clock_times(night.start_time, seconds), power_db=db, unit=unit,
                       whole_night=False, first_epoch=first, last_epoch=last, epoch=e,
                       column_seconds=step / fs)


def _night_spectrogram(night: Night, modality: str, epoch: int, valid: np.ndarray, fs: int, nperseg: int,
                       lo: float, hi: float, unit: str, max_columns: int) -> Spectrogram:
    if max_columns < 1:
        raise ViewerError(f"max_columns must be at least 1, got {max_columns}")
    n = night.n_epochs
    group = math.ceil(n / max_columns)
    x_all = night.signals[modality]
    freqs = np.fft.rfftfreq(nperseg, 1.0 / fs)
    band = (freqs >= lo) & (freqs <= hi)
    power = np.full((n, int(band.sum())), np.nan, dtype=np.float64)
    chunk = 256  # epochs per Welch call: bounded memory on 24-h recordings
    for s in range(0, n, chunk):
        x = np.asarray(x_all[s:s + chunk], dtype=np.float64)
        ok = valid[s:s + chunk] & np.isfinite(x).all(axis=1)
        if ok.any():
            _, p = sps.welch(x[ok], fs=fs, window="hann", nperseg=nperseg, noverlap=nperseg // 2,
                             detrend="constant", scaling="density", axis=-1)
            rows = np.flatnonzero(ok) + s
            power[rows] = p[:, band]
    n_cols = math.ceil(n / group)
    pad = n_cols * group - n
    grouped = np.concatenate([power, np.full((pad, power.shape[1]), np.nan)]).reshape(n_cols, group, -1)
    counts = np.isfinite(grouped[..., 0]).sum(axis=1)
    sums = np.nansum(grouped, axis=1)
    mean = np.divide(sums, counts[:, None], out=np.full_like(sums, np.nan), where=counts[:, None] > 0)
    seconds = (np.arange(n_cols) * group + min(group, n) / 2.0) * EPOCH_SECONDS
    return Spectrogram(modality=modality, freqs=freqs[band], seconds=seconds,
                       clock=clock_times(night.start_time, seconds), power_db=_to_db(mean.T), unit=unit,
                       whole_night=True, first_epoch=0, last_epoch=n, epoch=epoch,
                       column_seconds=float(group * EPOCH_SECONDS))


# --- sensor dropout --------------------------------------------------------------------------
def check_span(night: Night, start_epoch: object, end_epoch: object) -> tuple[int, int]:
    """Validate an epoch span ``[start_epoch, end_epoch)`` of ``night`` and return it as ints."""
    s, t = _check_int("start_epoch", start_epoch), _check_int("end_epoch", end_epoch)
    if not 0 <= s < t <= night.n_epochs:
        raise ViewerError(f"span {s}-{t} is not a non-empty range of epochs within 0-{night.n_epochs} "
                          "(start included, end excluded)")
    return s, t


def simulate_dropout(night: Night, modality: str, start_epoch: int, end_epoch: int) -> Night:
    """A new night in which ``modality`` is missing over epochs ``[start_epoch, end_epoch)``.

    The dropped span becomes NaN and its epochs are marked unusable, as a detached electrode or
    a failed sensor would look after loading. The input night is left untouched: the changed
    modality gets new arrays; the other arrays are shared with the input, not copied, so treat
    them as read-only.

    Parameters
    ----------
    night : Night
    modality : str
        A modality the night has.
    start_epoch, end_epoch : int
        First dropped epoch (included) and the epoch after the last dropped one (excluded).

    Returns
    -------
    Night
        With a warning that names the simulation.

    Raises
    ------
    ViewerError
        Unknown or absent modality, or a span that is empty or leaves the night.
    """
    _check_night_modality(night, modality)
    s, t = check_span(night, start_epoch, end_epoch)
    x = np.array(night.signals[modality], dtype=np.float32, copy=True)
    x[s:t] = np.nan
    ok = np.array(night.epoch_valid[modality], dtype=bool, copy=True)
    ok[s:t] = False
    signals = dict(night.signals)
    signals[modality] = x
    valid = dict(night.epoch_valid)
    valid[modality] = ok
    note = f"simulated dropout: {modality} removed over epochs {s}-{t - 1} ({(t - s) * EPOCH_SECONDS / 60:g} min)"
    return dataclasses.replace(night, signals=signals, epoch_valid=valid,
                               provenance=dict(night.provenance), warnings=[*night.warnings, note])


def _kappa(reference: np.ndarray, predicted: np.ndarray, n_classes: int) -> tuple[float, float]:
    try:
        m = staging_metrics(reference, predicted, n_classes=n_classes)
    except ValueError:
        return float("nan"), float("nan")
    return m.kappa, m.accuracy


def dropout_agreement(
    base: np.ndarray,
    dropped: np.ndarray,
    start_epoch: int,
    end_epoch: int,
    reference: np.ndarray | None = None,
    *,
    n_classes: int = 5,
) -> pd.DataFrame:
    """How staging changes when a sensor drops out over ``[start_epoch, end_epoch)``.

    Parameters
    ----------
    base, dropped : np.ndarray, shape (n_epochs,)
        Predicted stages with all sensors, and with the simulated dropout.
    start_epoch, end_epoch : int
        The dropped span (end excluded).
    reference : np.ndarray, optional
        Expert stages; the expert columns are left out when it is ``None`` or all unscored.
    n_classes : {5, 4, 3}

    Returns
    -------
    pandas.DataFrame
        Rows ``whole night``, ``dropout span`` and ``outside the span`` (when not empty); columns
        ``epochs``, ``epochs changed``, ``kappa dropout vs all sensors`` and, with an expert
        hypnogram, ``kappa vs expert (all sensors)``, ``kappa vs expert (dropout)`` and
        ``kappa change vs expert``. Kappa is NaN where no epoch can be compared.
    """
    a = np.asarray(base)
    b = np.asarray(dropped)
    if a.shape != b.shape or a.ndim != 1:
        raise ViewerError(f"the two predictions differ in shape: {a.shape} and {b.shape}")
    s, t = _check_int("start_epoch", start_epoch), _check_int("end_epoch", end_epoch)
    if not 0 <= s < t <= a.size:
        raise ViewerError(f"span {s}-{t} is not within the {a.size} predicted epochs")
    ref = None
    if reference is not None:
        ref = np.asarray(reference)
        if ref.shape != a.shape:
            raise ViewerError(f"the expert hypnogram has {ref.size} epochs, the prediction {a.size}")
        if not (ref >= 0).any():
            ref = None
    inside = np.zeros(a.size, dtype=bool)
    inside[s:t] = True
    parts = {"whole night": np.ones(a.size, dtype=bool), "dropout span": inside, "outside the span": ~inside}
    rows = {}
    for name, sel in parts.items():
        if not sel.any():
            continue
        row: dict[str, float] = {"epochs": int(sel.sum()), "epochs changed": int((a[sel] != b[sel]).sum()),
                                 "kappa dropout vs all sensors": _kappa(a[sel], b[sel], n_classes)[0]}
        if ref is not None:
            k_a, k_b = _kappa(ref[sel], a[sel], n_classes)[0], _kappa(ref[sel], b[sel], n_classes)[0]
            row.update({"kappa vs expert (all sensors)": k_a, "kappa vs expert (dropout)": k_b,
                        "kappa change vs expert": k_b - k_a})
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
