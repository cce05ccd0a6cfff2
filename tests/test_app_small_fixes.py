"""Issue 14, "Small things": gate weights explained, the viewer and the Night page follow the
sidebar's modality toggles, and the Night page's epoch slider starts at a sensible epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from s2v_core.night import Night, NightMeta  # noqa: E402
from s2v_core.views.plots import gates_bar_figure, mean_epoch_gates  # noqa: E402
from s2v_core.views.viewer import (  # noqa: E402
    default_epoch,
    switched_off_note,
    usable_epoch,
    viewer_modalities,
)
from tests.conftest import write_tiny_classifier  # noqa: E402
from tests.edf_factory import psg_channels, write_edf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
EXCERPT = "Shipped 1-h excerpt"
UPLOAD = "Upload a recording"
ALL = ("eeg", "eog", "emg", "ecg", "ibi", "resp", "effort", "airflow", "spo2")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("S2V_CACHE", str(tmp_path_factory.getbasetemp() / "s2v-cache"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier"))


def _run(at: AppTest) -> AppTest:
    at.run(timeout=180)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _app(page: str, model_dir: str | None = None, source: str = EXCERPT) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["night_source"] = source
    if model_dir is not None:
        at.session_state["model_dir"] = model_dir
    at.switch_page(f"pages/{page}.py")
    return at


def _chart(at: AppTest, key: str) -> dict:
    for chart in at.get("plotly_chart"):
        if chart.proto.id.endswith(key) or key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no chart {key!r} on the page")


def _night(n_epochs: int, modalities: tuple[str, ...], stages: np.ndarray | None = None) -> Night:
    from s2v_core.modalities import SFREQ

    signals = {m: np.zeros((n_epochs, 30 * SFREQ[m]), dtype=np.float32) for m in modalities}
    return Night(meta=NightMeta("small"), signals=signals,
                 epoch_valid={m: np.ones(n_epochs, dtype=bool) for m in modalities},
                 stages=np.full(n_epochs, -1, dtype=np.int8) if stages is None else np.asarray(stages, dtype=np.int8))


# --- 1. gates -------------------------------------------------------------------------------
def test_mean_epoch_gates_leaves_out_epochs_without_any_modality():
    gates = np.array([[0.2, 0.8], [0.6, 0.4], [0.0, 0.0], [np.nan, np.nan]])
    means = mean_epoch_gates(gates, ("eeg", "spo2"))
    assert means == pytest.approx({"eeg": 0.4, "spo2": 0.6})
    assert mean_epoch_gates(np.zeros((3, 2)), ("eeg", "spo2")) == {"eeg": 0.0, "spo2": 0.0}


def test_gates_bar_figure_puts_the_night_mean_beside_the_global_weight():
    fig = gates_bar_figure({"eeg": 0.5, "eog": 0.5}, {"eeg": 0.9, "eog": 0.1})
    assert [tr.name for tr in fig.data] == ["global (learned, same every night)", "mean per-epoch gate, this night"]
    assert list(fig.data[1].y) == [0.9, 0.1] and fig.layout.barmode == "group"
    assert fig.layout.yaxis.range[1] >= 0.9
    assert len(gates_bar_figure({"eeg": 1.0}).data) == 1


def test_gates_page_explains_the_uniform_global_weights_of_the_shipped_model():
    """The issue's case: the shipped model's global weights all read 0.11 (softmax of learned
    numbers that stayed near 0), while its per-epoch gates differ a lot between modalities."""
    import torch

    from s2v_core.inference.predict import load_classifier, predict_night
    from s2v_core.recording.loading import load_night
    from s2v_core.shipped import MODEL_DIR, shipped_night

    at = _run(_app("gates"))
    assert not at.error, [e.value for e in at.error]
    assert any(c.value.startswith("Every global weight is about 1/9 = 0.11 because it is a softmax over one "
                                  "learned number per modality") for c in at.caption), [c.value for c in at.caption]
    spec = _chart(at, "global_gates_chart")
    glob, mean = spec["data"]
    assert glob["x"] == list(ALL) and mean["x"] == list(ALL)
    # what the page shows equals the model: the global weights are the softmax of its gate logits,
    # the night mean is the mean of the per-epoch gates over the night's epochs (no padding)
    model, _, _ = load_classifier(MODEL_DIR / "classifier")
    expected_glob = torch.softmax(model.fusion.logits.detach().float(), dim=0).numpy()
    np.testing.assert_allclose(glob["y"], expected_glob, atol=1e-6)
    psg, hyp = shipped_night()
    pred = predict_night(model, load_night(psg, hyp, allow_mismatch=True))
    np.testing.assert_allclose(mean["y"], pred.epoch_gates.mean(axis=0), atol=1e-5)
    assert sum(mean["y"]) == pytest.approx(1.0, abs=1e-4)
    assert max(glob["y"]) - min(glob["y"]) < 0.01 < max(mean["y"]) - min(mean["y"])
    table = at.dataframe[0].value
    assert {"whole night", "global"} <= set(table.index)
    np.testing.assert_allclose(table.loc["whole night"].to_numpy(), mean["y"], atol=1e-6)


def test_gates_page_with_unequal_global_weights_and_a_subset(tiny_model):
    at = _run(_app("gates", tiny_model))
    captions = [c.value for c in at.caption]
    assert not any("Every global weight is about" in c for c in captions)
    assert any(c.startswith("The global weight is a softmax over one learned number per modality") for c in captions)
    for m in ("eeg", "eog", "emg"):
        at.toggle(key=f"toggle_{m}").set_value(False)
    _run(at)
    glob, mean = _chart(at, "global_gates_chart")["data"]
    assert glob["x"] == list(ALL[3:]) == mean["x"]
    assert sum(glob["y"]) == pytest.approx(1.0, abs=1e-5) and sum(mean["y"]) == pytest.approx(1.0, abs=1e-4)


# --- 2. the signal viewer shows only the modalities switched on ------------------------------
def test_viewer_modalities_split_by_the_toggles():
    night = _night(4, ("eeg", "spo2"))
    assert viewer_modalities(night, ("spo2", "eog")) == (("spo2",), ("eeg",))
    assert viewer_modalities(night, ALL) == (("eeg", "spo2"), ())
    assert switched_off_note(()) == ""
    assert switched_off_note(("eeg",)) == ("Not shown: eeg has a channel in this recording but is switched off "
                                           "in the sidebar.")
    assert "eeg, eog have channels" in switched_off_note(("eeg", "eog"))


def test_signal_viewer_lists_only_the_active_modalities(tiny_model):
    at = _app("hypnogram", tiny_model)
    at.session_state["selected_epoch"] = 40
    _run(at)
    assert at.multiselect(key="viewer_modalities").value == list(ALL)
    assert not any(c.value.startswith("Not shown") for c in at.caption)
    for m in ("eeg", "eog"):
        at.toggle(key=f"toggle_{m}").set_value(False)
    _run(at)
    shown = at.multiselect(key="viewer_modalities")
    assert list(shown.options) == list(ALL[2:]) and shown.value == list(ALL[2:])
    assert any(c.value == "Not shown: eeg, eog have channels in this recording but are switched off in the sidebar."
               for c in at.caption)
    traces = [tr["name"] for tr in _chart(at, "signal_viewer")["data"] if tr.get("name") in ALL]
    assert "eeg" not in traces and "eog" not in traces and "emg" in traces
    assert list(at.selectbox(key="spectrogram_modality").options) == ["emg", "ecg"]
    # the user hides spo2 in the viewer; switching eeg back on shows eeg again and keeps spo2 hidden
    shown.set_value([m for m in ALL[2:] if m != "spo2"])
    _run(at)
    at.toggle(key="toggle_eeg").set_value(True)
    _run(at)
    shown = at.multiselect(key="viewer_modalities")
    assert shown.value == ["eeg", "emg", "ecg", "ibi", "resp", "effort", "airflow"]
    assert any(c.value.startswith("Not shown: eog has a channel") for c in at.caption)
    assert not at.error


def test_the_spectrogram_choice_follows_the_toggles(tiny_model):
    at = _app("hypnogram", tiny_model)
    at.session_state["selected_epoch"] = 10
    _run(at)
    at.selectbox(key="spectrogram_modality").set_value("eog")
    _run(at)
    at.toggle(key="toggle_eog").set_value(False)
    _run(at)
    assert at.selectbox(key="spectrogram_modality").value == "eeg"
    for m in ("eeg", "emg", "ecg"):
        at.toggle(key=f"toggle_{m}").set_value(False)
    _run(at)
    assert any("No 128-Hz signal (EEG, EOG, EMG or ECG) is switched on" in i.value for i in at.info)
    assert not at.error


# --- 3. the Night page has the modality toggles ----------------------------------------------
def test_night_page_has_the_sidebar_toggles_and_they_apply_everywhere(tiny_model):
    at = _run(_app("night", tiny_model))
    assert [t.label for t in at.sidebar.toggle] == list(ALL)
    assert [tr["name"] for tr in _chart(at, "night_signals")["data"]] == list(ALL)
    at.toggle(key="toggle_eeg").set_value(False)
    at.toggle(key="toggle_spo2").set_value(False)
    _run(at)
    assert at.session_state["active_modalities"] == ALL[1:-1]
    assert [tr["name"] for tr in _chart(at, "night_signals")["data"]] == list(ALL[1:-1])
    assert any(c.value.startswith("Not shown: eeg, spo2 have channels") for c in at.caption)
    at.switch_page("pages/gates.py")  # the choice made on the Night page holds on the other pages
    _run(at)
    assert at.toggle(key="toggle_eeg").value is False
    assert _chart(at, "global_gates_chart")["data"][0]["x"] == list(ALL[1:-1])
    at.switch_page("pages/night.py")
    _run(at)
    assert at.toggle(key="toggle_eeg").value is False and at.toggle(key="toggle_eog").value is True
    for m in ALL:
        at.toggle(key=f"toggle_{m}").set_value(False)
    _run(at)
    assert any("No modality is switched on" in i.value for i in at.info) and not at.error


# --- 4. the epoch slider starts at a sensible epoch and stays valid --------------------------
def test_default_and_usable_epoch():
    night = _night(6, ("eeg",), np.array([-1, -1, 2, 2, 3, -1]))
    assert default_epoch(night) == 2
    assert default_epoch(_night(6, ("eeg",))) == 0
    assert usable_epoch(night, 5) == 5 and usable_epoch(night, np.int64(0)) == 0 and usable_epoch(night, 3.0) == 3
    for bad in (None, 6, -1, 2.5, float("nan"), True, "3"):
        assert usable_epoch(night, bad) is None


@pytest.fixture(scope="module")
def short_recording(tmp_path_factory):
    """A 10-min recording (20 epochs) and a hypnogram whose scoring starts at epoch 3."""
    folder = tmp_path_factory.mktemp("short")
    psg = write_edf(folder / "short.edf", psg_channels(minutes=10))
    hyp = folder / "short_hyp.csv"
    hyp.write_text("onset,duration,label\n" + "".join(f"{30 * e},30,{'W' if e < 8 else 'N2'}\n" for e in range(3, 20)))
    return psg, hyp


def _upload(at: AppTest, *files: Path) -> None:
    uploaders = {u.label.split(" ")[0]: u for u in at.file_uploader}
    for f, label in zip(files, ("EDF", "Hypnogram"), strict=False):
        uploaders[label].set_value((f.name, f.read_bytes(), "application/octet-stream"))


def test_epoch_slider_starts_at_the_first_epoch_of_a_short_recording(short_recording):
    psg, hyp = short_recording
    at = _run(_app("night", source=UPLOAD))
    _upload(at, psg)
    _run(at)
    assert {m.label: m.value for m in at.metric}["Epochs (30 s)"] == "20"
    slider = at.slider(key="night_epoch_slider")
    assert (slider.min, slider.max, slider.value) == (0, 19, 0)  # was 19: the default of 60 clipped
    _upload(at, psg, hyp)
    _run(at)
    assert at.slider(key="night_epoch_slider").value == 3  # the first scored epoch
    at.slider(key="night_epoch_slider").set_value(12)
    _run(at)
    assert at.session_state["selected_epoch"] == 12 and at.slider(key="night_epoch_slider").value == 12
    assert not at.error


def test_epoch_slider_stays_valid_when_the_recording_changes(short_recording):
    psg, hyp = short_recording
    at = _run(_app("night"))
    slider = at.slider(key="night_epoch_slider")
    assert (slider.max, slider.value) == (119, 0)
    slider.set_value(100)  # an epoch the short recording does not have
    _run(at)
    assert at.session_state["selected_epoch"] == 100
    at.radio(key="night_source_radio").set_value(UPLOAD)
    _run(at)
    _upload(at, psg, hyp)
    _run(at)
    slider = at.slider(key="night_epoch_slider")
    assert (slider.max, slider.value) == (19, 3) and not at.error
    at.session_state["selected_epoch"] = None  # what the Hypnogram page stores before any click
    _run(at)
    assert at.slider(key="night_epoch_slider").value == 3


# --- a modality unlike the training data starts switched off ----------------------------------
def test_an_unfamiliar_modality_starts_switched_off_with_the_reason(tmp_path):
    """With the shipped model, an uploaded PSG whose EEG is white noise: EEG starts off (as ``s2v
    predict`` leaves it out), the sidebar and the Hypnogram page say why, and it can be switched on."""
    from s2v_core.shipped import shipped_night
    from tests.edf_factory import with_noise_channel

    psg = with_noise_channel(shipped_night()[0], tmp_path / "noisy-eeg.edf")
    at = _run(_app("night", source=UPLOAD))  # the shipped model (no model_dir)
    _upload(at, psg)
    _run(at)
    assert at.toggle(key="toggle_eeg").value is True  # the Night page stages nothing: no check yet
    at.switch_page("pages/hypnogram.py")
    _run(at)
    assert at.toggle(key="toggle_eeg").value is False and at.toggle(key="toggle_eog").value is True
    assert any(c.value.startswith("eeg: the signals look unlike") for c in at.sidebar.caption)
    assert any(i.value.startswith("Staged without eeg") for i in at.info)
    staged = next(c.value for c in at.caption if c.value.startswith("Model "))
    assert " on eog, " in staged and "eeg" not in staged.split(";")[0]
    at.toggle(key="toggle_eeg").set_value(True)  # the user's choice wins
    _run(at)
    assert at.toggle(key="toggle_eeg").value is True and not any(i.value.startswith("Staged without") for i in at.info)
    assert any(w.value.startswith("eeg looks unlike") for w in at.warning)
    at.toggle(key="toggle_eeg").set_value(False)  # switched on and off again: now the user's choice
    _run(at)
    at.switch_page("pages/night.py")  # the next night, a familiar one: the user's choice stays
    _run(at)
    at.radio(key="night_source_radio").set_value(EXCERPT)
    _run(at)
    assert [m for m in ALL if not at.toggle(key=f"toggle_{m}").value] == ["eeg"]
    assert not any(c.value.startswith("eeg: the signals") for c in at.sidebar.caption)


def test_what_the_rule_switched_off_comes_back_on_the_next_familiar_night(tmp_path):
    from s2v_core.shipped import shipped_night
    from tests.edf_factory import with_noise_channel

    psg = with_noise_channel(shipped_night()[0], tmp_path / "noisy-eeg.edf")
    at = _run(_app("night", source=UPLOAD))
    _upload(at, psg)
    _run(at)
    at.switch_page("pages/hypnogram.py")
    _run(at)
    at.toggle(key="toggle_emg").set_value(False)  # the user's own choice
    _run(at)
    assert [m for m in ALL if not at.toggle(key=f"toggle_{m}").value] == ["eeg", "emg"]
    at.switch_page("pages/night.py")
    _run(at)
    at.radio(key="night_source_radio").set_value(EXCERPT)
    _run(at)
    at.switch_page("pages/hypnogram.py")
    _run(at)
    assert [m for m in ALL if not at.toggle(key=f"toggle_{m}").value] == ["emg"]


def test_a_recording_the_model_was_trained_on_is_flagged(tmp_path):
    """A model whose extra lists the shipped excerpt's file among its training recordings: the
    Hypnogram page warns that its agreement overstates what to expect; another model does not."""
    from s2v_core.inference.familiarity import file_fingerprint
    from s2v_core.shipped import shipped_night

    psg = shipped_night()[0]
    record = {**file_fingerprint(psg), "night": "sub-001_night1", "subject": "sub-001"}
    trained_on = write_tiny_classifier(tmp_path / "seen", extra={"training_recordings": [record]})
    at = _run(_app("hypnogram", model_dir=str(trained_on)))
    assert any(w.value.startswith("this recording was part of this model's training data (sub-001_night1")
               for w in at.warning), [w.value for w in at.warning]  # fmt: skip
    other = write_tiny_classifier(tmp_path / "other", extra={"training_recordings": [{**record, "sha256": "0" * 64}]})
    at = _run(_app("hypnogram", model_dir=str(other)))
    assert not any("training data" in w.value for w in at.warning)
