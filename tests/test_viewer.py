"""Signal viewer, spectrogram and sensor-dropout simulation (s2v_core.views.viewer, plots_signals)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from s2v_core.errors import S2VError
from s2v_core.modalities import samples_per_epoch
from s2v_core.night import Night, NightMeta
from s2v_core.views.plots_signals import dropout_hypnogram_figure, signal_figure, spectrogram_figure
from s2v_core.views.viewer import (
    ViewerError,
    dropout_agreement,
    minmax_envelope,
    signal_window,
    simulate_dropout,
    spectrogram,
)

N_EPOCHS = 40
START = datetime(2024, 3, 1, 22, 30, 0)
SINE_HZ = 10.0
SINE_UV = 20.0


def _night(start: datetime | None = START) -> Night:
    rng = np.random.default_rng(0)
    t = np.arange(N_EPOCHS * samples_per_epoch("eeg")) / 128.0
    eeg = (SINE_UV * np.sin(2 * np.pi * SINE_HZ * t)).astype(np.float32).reshape(N_EPOCHS, -1)
    emg = rng.normal(0, 5, (N_EPOCHS, samples_per_epoch("emg"))).astype(np.float32)
    spo2 = np.full((N_EPOCHS, samples_per_epoch("spo2")), 96.0, dtype=np.float32)
    emg[7, 100:200] = np.nan  # a short gap inside an epoch
    emg[9] = np.nan  # a whole epoch missing
    stages = np.tile(np.array([0, 1, 2, 2, 3, 4, -1, 2], dtype=np.int8), N_EPOCHS // 8)
    return Night(meta=NightMeta("synthetic"), signals={"eeg": eeg, "emg": emg, "spo2": spo2},
                 epoch_valid={}, stages=stages, start_time=start)


# --- min/max envelope ------------------------------------------------------------------------
def test_envelope_keeps_every_bins_extremes_and_fits_max_points():
    rng = np.random.default_rng(1)
    x = rng.normal(size=11_520).astype(np.float32)
    x[4321] = 250.0
    x[9876] = -300.0
    t = np.arange(x.size) / 128.0
    ts, xs = minmax_envelope(t, x, 2000)
    assert xs.size <= 2000 and ts.size == xs.size
    assert np.all(np.diff(ts) >= 0)
    assert xs.max() == 250.0 and ts[xs.argmax()] == t[4321]
    assert xs.min() == -300.0 and ts[xs.argmin()] == t[9876]
    # every kept sample is a real sample at its own time
    idx = np.round(ts * 128).astype(int)
    assert np.array_equal(x[idx], xs)
    # each bin's minimum and maximum survive
    size = int(np.ceil(x.size / (2000 // 2)))
    for b in range(0, x.size, size):
        seg = x[b:b + size]
        inside = (idx >= b) & (idx < b + size)
        assert xs[inside].max() == seg.max() and xs[inside].min() == seg.min()


def test_envelope_leaves_short_trace_alone_and_keeps_gaps():
    t = np.arange(10.0)
    x = np.arange(10.0, dtype=np.float32)
    ts, xs = minmax_envelope(t, x, 100)
    assert np.array_equal(xs, x) and np.array_equal(ts, t)
    x = np.sin(np.arange(20_000) / 50.0).astype(np.float32)
    x[5000:6000] = np.nan  # long gap: whole bins missing
    x[12_001:12_004] = np.nan  # 3-sample gap, much shorter than one bin
    t = np.arange(x.size, dtype=float)
    ts, xs = minmax_envelope(t, x, 600)
    assert xs.size <= 600
    gaps = ts[np.isnan(xs)]
    assert np.any((gaps >= 5000) & (gaps < 6000))
    assert np.any((gaps >= 12_001) & (gaps < 12_004))
    assert not np.any(np.isnan(xs[(ts < 5000) | ((ts >= 6000) & (ts < 11_900))]))


@pytest.mark.parametrize("bad", [2, 0, 2.5, True])
def test_envelope_rejects_bad_max_points(bad):
    with pytest.raises(S2VError):
        minmax_envelope(np.arange(10.0), np.zeros(10), bad)


# --- signal window ---------------------------------------------------------------------------
def test_signal_window_shapes_times_units_and_gaps():
    night = _night()
    win = signal_window(night, 8, before=1, after=2, modalities=["spo2", "emg"], max_points=1000)
    assert (win.first_epoch, win.last_epoch, win.epoch) == (7, 11, 8)
    assert list(win.traces) == ["emg", "spo2"]  # canonical order
    emg, spo2 = win.traces["emg"], win.traces["spo2"]
    assert emg.unit == "µV" and spo2.unit == "%"
    assert emg.n_samples == 4 * 3840 and emg.values.size <= 1000 and emg.downsampled
    assert spo2.values.size == 4 * 120 and not spo2.downsampled
    assert 7 * 30 <= emg.seconds[0] < 7 * 30 + 1 and spo2.seconds[0] == 7 * 30
    assert spo2.clock[0] == np.datetime64("2024-03-01T22:33:30")
    offset_ms = np.round((emg.seconds - 7 * 30) * 1000).astype("timedelta64[ms]")
    assert np.array_equal(emg.clock, np.datetime64("2024-03-01T22:33:30") + offset_ms)
    assert list(win.stages) == list(night.stages[7:11])
    assert np.array_equal(emg.valid, [True, True, False, True])
    in_missing_epoch = (emg.seconds >= 9 * 30) & (emg.seconds < 10 * 30)
    assert in_missing_epoch.any() and np.isnan(emg.values[in_missing_epoch]).all()
    assert np.isnan(emg.values[(emg.seconds >= 7 * 30 + 100 / 128) & (emg.seconds < 7 * 30 + 200 / 128)]).any()
    assert np.isfinite(emg.values[emg.seconds < 9 * 30 - 1]).sum() > 100


def test_signal_window_clips_at_the_edges_and_defaults_to_all_modalities():
    night = _night(start=None)
    first = signal_window(night, 0, before=3, after=0)
    last = signal_window(night, N_EPOCHS - 1, before=0, after=5)
    assert (first.first_epoch, first.last_epoch) == (0, 1)
    assert (last.first_epoch, last.last_epoch) == (N_EPOCHS - 1, N_EPOCHS)
    assert tuple(first.traces) == night.modalities and first.traces["eeg"].clock is None


@pytest.mark.parametrize("kwargs", [{"epoch": N_EPOCHS}, {"epoch": -1}, {"epoch": 2.0}, {"epoch": True},
                                    {"epoch": 3, "before": 61}, {"epoch": 3, "after": -1},
                                    {"epoch": 3, "modalities": ["eog"]}, {"epoch": 3, "modalities": ["xyz"]}])
def test_signal_window_errors_are_clear(kwargs):
    night = _night()
    epoch = kwargs.pop("epoch")
    with pytest.raises(ViewerError) as err:
        signal_window(night, epoch, **kwargs)
    assert isinstance(err.value, S2VError) and str(err.value)


def test_epoch_out_of_range_message_names_the_range():
    with pytest.raises(ViewerError, match="0 to 39"):
        signal_window(_night(), 40)


# --- spectrogram -----------------------------------------------------------------------------
@pytest.mark.parametrize("whole_night", [False, True])
def test_spectrogram_peaks_at_the_sine_frequency(whole_night):
    spec = spectrogram(_night(), "eeg", 10, whole_night=whole_night)
    assert spec.freqs[0] >= 0.3 and spec.freqs[-1] <= 35.0
    assert spec.power_db.shape == (spec.freqs.size, spec.seconds.size)
    profile = np.nanmedian(spec.power_db, axis=1)
    assert abs(spec.freqs[profile.argmax()] - SINE_HZ) <= 0.5
    assert "µV²/Hz" in spec.unit
    if whole_night:
        assert spec.seconds.size == N_EPOCHS and spec.seconds[0] == 15.0
    else:
        assert spec.seconds[0] >= 8 * 30 and spec.seconds[-1] <= 13 * 30


def test_whole_night_power_integrates_to_the_sine_power():
    spec = spectrogram(_night(), "eeg", 0, whole_night=True, fmin=0.0, fmax=64.0)
    df = spec.freqs[1] - spec.freqs[0]
    power = (10 ** (spec.power_db.astype(float) / 10)).sum(axis=0) * df  # µV² per epoch
    assert np.allclose(power, SINE_UV ** 2 / 2, rtol=0.05)


def test_spectrogram_blanks_missing_signal_and_groups_long_nights():
    night = simulate_dropout(_night(), "eeg", 5, 7)
    local = spectrogram(night, "eeg", 6, context_epochs=2)
    missing = (local.seconds > 5 * 30 + 1) & (local.seconds < 7 * 30 - 1)
    assert np.isnan(local.power_db[:, missing]).all()
    assert np.isfinite(local.power_db[:, local.seconds < 5 * 30 - 1]).all()
    whole = spectrogram(night, "eeg", 6, whole_night=True, max_columns=10)
    assert whole.seconds.size == 10 and whole.column_seconds == 120.0
    assert np.isfinite(whole.power_db).all()  # a group with some valid epochs keeps their mean
    nightly = spectrogram(night, "eeg", 6, whole_night=True)
    assert np.isnan(nightly.power_db[:, 5:7]).all() and np.isfinite(nightly.power_db[:, 4]).all()


@pytest.mark.parametrize("kwargs, match", [({"modality": "spo2"}, "4 Hz"), ({"fmax": 80.0}, "0-64 Hz"),
                                           ({"fmin": 20.0, "fmax": 10.0}, "band"),
                                           ({"modality": "eog"}, "no eog"),
                                           ({"epoch": 99}, "outside the night")])
def test_spectrogram_errors(kwargs, match):
    args = {"modality": "eeg", "epoch": 3} | kwargs
    with pytest.raises(ViewerError, match=match):
        spectrogram(_night(), args.pop("modality"), args.pop("epoch"), **args)


# --- sensor dropout --------------------------------------------------------------------------
def test_dropout_returns_a_new_night_and_leaves_the_input_alone():
    night = _night()
    before = {m: x.copy() for m, x in night.signals.items()}
    valid_before = {m: v.copy() for m, v in night.epoch_valid.items()}
    warnings_before = list(night.warnings)
    dropped = simulate_dropout(night, "eeg", 10, 20)
    assert dropped is not night
    for m in night.signals:
        np.testing.assert_array_equal(night.signals[m], before[m])
        np.testing.assert_array_equal(night.epoch_valid[m], valid_before[m])
    assert night.warnings == warnings_before
    assert not dropped.epoch_valid["eeg"][10:20].any()
    assert dropped.epoch_valid["eeg"][:10].all() and dropped.epoch_valid["eeg"][20:].all()
    assert np.isnan(dropped.signals["eeg"][10:20]).all() and np.isfinite(dropped.signals["eeg"][20:]).all()
    np.testing.assert_array_equal(dropped.epoch_valid["emg"], night.epoch_valid["emg"])
    assert "eeg" in dropped.warnings[-1] and "10-19" in dropped.warnings[-1]
    whole = simulate_dropout(night, "spo2", 0, N_EPOCHS)
    assert "spo2" not in whole.modalities and "spo2" in night.modalities


@pytest.mark.parametrize("modality, start, end", [("eeg", 5, 5), ("eeg", 6, 2), ("eeg", -1, 4),
                                                   ("eeg", 0, N_EPOCHS + 1), ("eog", 0, 3), ("eeg", 0.5, 3)])
def test_dropout_rejects_bad_spans_and_modalities(modality, start, end):
    with pytest.raises(ViewerError):
        simulate_dropout(_night(), modality, start, end)


def test_dropout_agreement_table():
    base = np.array([0, 2, 2, 2, 3, 3, 4, 4, 2, 0], dtype=np.int8)
    dropped = base.copy()
    dropped[3:6] = 1
    ref = base.copy()
    table = dropout_agreement(base, dropped, 3, 6, ref)
    assert list(table.index) == ["whole night", "dropout span", "outside the span"]
    assert table.loc["dropout span", "epochs changed"] == 3
    assert table.loc["outside the span", "epochs changed"] == 0
    assert table.loc["outside the span", "kappa dropout vs all sensors"] == 1.0
    assert table.loc["whole night", "kappa vs expert (all sensors)"] == 1.0
    assert table.loc["whole night", "kappa change vs expert"] < 0
    no_ref = dropout_agreement(base, dropped, 0, 10, None)
    assert list(no_ref.index) == ["whole night", "dropout span"]
    assert "kappa vs expert (dropout)" not in no_ref.columns
    with pytest.raises(ViewerError):
        dropout_agreement(base, dropped[:5], 0, 3)


# --- figures ---------------------------------------------------------------------------------
def test_figures_mark_the_selection_and_use_one_palette():
    night = _night()
    win = signal_window(night, 4, before=2, after=2)
    fig = signal_figure(win, predicted=night.stages)
    assert [t.name for t in fig.data] == list(win.traces)
    assert any(s.type == "rect" for s in fig.layout.shapes)
    labels = [a.text for a in fig.layout.annotations]
    assert "expert N3" in labels and "model N3" in labels
    spec = spectrogram(night, "eeg", 4)
    heat = spectrogram_figure(spec).data[0]
    assert heat.type == "heatmap" and heat.colorscale[0][1] == "#440154"  # viridis
    dfig = dropout_hypnogram_figure(night.stages, night.stages, 5, 9, modality="eeg", start=night.start_time)
    assert any(s.type == "rect" for s in dfig.layout.shapes)
