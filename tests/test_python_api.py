"""The documented Python API: ``import s2v_core``, nights from paths and MNE Raw objects, results.

The README's "Python API" section is run here block by block (so the README and the code cannot
drift apart); the rest checks what those examples rely on: an ``mne.io.Raw`` loads like its file
(channels, types, units, start time, annotations), the result objects' frames and YASA objects,
and :func:`s2v_core.load_classifier`'s named 3-tuple.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mne
import numpy as np
import pytest
import yasa

import s2v_core
from s2v_core.errors import ChannelMappingError, InputFileError, S2VError
from s2v_core.evaluation.results import StagingResult
from s2v_core.evaluation.staging import staging_metrics
from s2v_core.inference.embed import pool_epochs
from s2v_core.inference.predict import Prediction, predict_night
from s2v_core.night import Night, NightMeta, yasa_hypnogram
from s2v_core.recording.channels import TYPE_RANK, map_channels
from s2v_core.shipped import shipped_night

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIOPOTENTIALS = ("eeg", "eog", "emg", "ecg")


def readme_python_blocks() -> list[str]:
    """The ```python blocks of the README's "## Python API" section, in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Python API\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


@pytest.fixture(scope="module")
def sample():
    return shipped_night()


@pytest.fixture(scope="module")
def night(sample):
    return s2v_core.load_night(*sample)


@pytest.fixture(scope="module")
def classifier():
    return s2v_core.load_classifier()


def _raw(
    data_v: np.ndarray, names: list[str], types: list[str], sfreq: float = 100.0, meas_date=None
):
    info = mne.create_info(names, sfreq, types)
    raw = mne.io.RawArray(data_v, info, verbose="error")
    if meas_date is not None:
        raw.set_meas_date(meas_date)
    return raw


def _eeg_like(n: int, sfreq: float, seed: int = 0) -> np.ndarray:
    """An EEG-sized signal in volts: a 10 Hz rhythm plus noise, about 30 µV."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sfreq
    return (30e-6 * np.sin(2 * np.pi * 10 * t) + 10e-6 * rng.standard_normal(n)).astype(np.float64)


# --- the README --------------------------------------------------------------------------------


def test_readme_has_a_python_api_section_before_what_it_reads():
    text = README.read_text(encoding="utf-8")
    assert text.index("\n## Python API\n") < text.index("\n## What it reads\n")
    blocks = readme_python_blocks()
    assert len(blocks) >= 3
    joined = "\n".join(blocks)
    for call in ("load_night(", "mne.io.read_raw_edf(", "load_classifier(", "stage(", "embed(",
                 "evaluate(", "to_frame()", "to_yasa("):  # fmt: skip
        assert call in joined, call


def test_readme_python_api_examples_run(capsys):
    ns: dict = {"__name__": "readme_python_api"}
    for i, block in enumerate(readme_python_blocks()):
        try:
            exec(compile(block, f"README.md (Python API block {i + 1})", "exec"), ns)
        except Exception as exc:  # name the block in the failure
            pytest.fail(
                f"README Python API block {i + 1} failed: {type(exc).__name__}: {exc}\n{block}"
            )
    out = capsys.readouterr().out
    assert "kappa" in out
    # what the examples claim
    assert isinstance(ns["night"], s2v_core.Night) and ns["night"].n_epochs == 120
    assert isinstance(ns["classifier"], tuple) and len(ns["classifier"]) == 3
    assert ns["model"] is ns["classifier"].model
    assert isinstance(ns["staging"], s2v_core.StagingResult)
    assert list(ns["table"]["stage"]) == ns["staging"].stages.tolist()
    assert isinstance(ns["agreement"], s2v_core.AgreementResult)
    assert ns["embedding"].epochs.shape[0] == 120 and ns["embedding"].staging.modalities == (
        "eeg",
        "eog",
    )
    assert isinstance(ns["raw"], mne.io.BaseRaw)
    assert ns["raw_night"].provenance["eog"].source == "LOC"
    assert ns["raw_night"].start_time == ns["night"].start_time
    assert ns["raw_staging"].modalities == ("eeg", "eog", "emg")
    assert isinstance(ns["hyp"], yasa.Hypnogram) and ns["hyp"].proba is not None


# --- import cost -------------------------------------------------------------------------------


def test_import_s2v_core_imports_no_torch():
    code = (
        "import sys, s2v_core\n"
        "assert 'torch' not in sys.modules, 'import s2v_core imported torch'\n"
        "s2v_core.load_night, s2v_core.Night, s2v_core.default_model_dir\n"
        "heavy = [m for m in ('torch', 'mne', 'yasa', 'streamlit') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "s2v_core.stage\n"
        "assert 'torch' in sys.modules\n"  # the check above can fail: the model code does import it
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr


def test_loading_the_classifier_builds_it_without_importing_torch_dynamo():
    # the checkpoint is built on the meta device; an out-of-place op there pulled in torch._dynamo
    # (~0.8 s of every cold start). The in-place init must give the values the old one gave.
    code = (
        "import sys, torch\n"
        "from s2v_core.inference.predict import load_classifier\n"
        "from s2v_core.shipped import MODEL_DIR\n"
        "load_classifier(MODEL_DIR / 'classifier')\n"
        "late = [m for m in ('torch._dynamo', 'torch.fx.experimental.symbolic_shapes', 'sympy') if m in sys.modules]\n"
        "assert not late, f'loading a classifier imported {late}'\n"
        "from s2v_core.model.encoder import SharedEncoder\n"
        "torch.manual_seed(3)\n"
        "torch.nn.Linear(16, 32)\n"  # the input projection, drawn first
        "expected = torch.randn(32) * 0.02\n"
        "torch.manual_seed(3)\n"
        "enc = SharedEncoder(16, 32, 1, 2, 2, 0.0, True)\n"
        "assert torch.equal(enc.cls.detach(), expected)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr


def test_the_public_names_resolve_to_the_result_types():
    assert s2v_core.load_classifier.__module__ == "s2v_core.evaluation.results"
    for name in (
        "stage",
        "embed",
        "evaluate",
        "StagingResult",
        "EmbeddingResult",
        "AgreementResult",
        "Classifier",
    ):
        assert name in s2v_core.__all__ and getattr(s2v_core, name) is not None


# --- load_night with an MNE Raw ----------------------------------------------------------------


def test_raw_from_edf_loads_like_the_file(sample, night):
    psg, hyp = sample
    raw = mne.io.read_raw_edf(psg, preload=False, verbose="error")
    from_raw = s2v_core.load_night(raw, hyp)
    assert from_raw.modalities == night.modalities
    assert from_raw.start_time == night.start_time == datetime(2000, 1, 11, 22, 8)
    assert from_raw.meta == night.meta and from_raw.source_file == night.source_file
    np.testing.assert_array_equal(from_raw.stages, night.stages)
    for m in night.signals:
        assert from_raw.provenance[m].source == night.provenance[m].source, m
        assert from_raw.provenance[m].unit_scale == night.provenance[m].unit_scale, m
    for m in (*BIOPOTENTIALS, "ibi"):  # read at the file's rate: the same samples
        np.testing.assert_allclose(
            from_raw.signals[m], night.signals[m], rtol=1e-6, atol=1e-6, err_msg=m
        )
        np.testing.assert_array_equal(from_raw.epoch_valid[m], night.epoch_valid[m])
    for m in ("effort", "airflow", "spo2", "resp"):  # MNE upsamples slower channels on read
        a, b = night.signals[m].ravel(), from_raw.signals[m].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.999, m
        assert np.median(np.abs(a - b)) < 1e-3 * np.std(a), m
    assert night.provenance["eeg"].unit_in == "uV" and from_raw.provenance["eeg"].unit_in == "µV"
    assert night.provenance["ecg"].unit_in == from_raw.provenance["ecg"].unit_in == "mV"


def test_raw_in_volts_becomes_microvolts():
    sfreq, n = 128.0, 128 * 300
    x = _eeg_like(n, sfreq)
    night = s2v_core.load_night(_raw(x[None], ["C3-M2"], ["eeg"], sfreq))
    assert night.modalities[0] == "eeg"
    prov = night.provenance["eeg"]
    assert prov.unit_in == "V" and prov.unit_scale == 1e6 and prov.reader == "mne"
    assert 20 < np.std(night.signals["eeg"]) < 40  # about 23 µV, not 23e-6
    assert not any("implausible" in w for w in night.warnings)


def test_raw_edf_units_round_trip_through_mne_scaling(sample):
    psg, _ = sample
    raw = mne.io.read_raw_edf(psg, preload=True, verbose="error")
    raw.rename_channels(
        {"C4:M1": "C4-M1"}
    )  # renamed: MNE's own bookkeeping of the file is bypassed
    raw.pick(["C4-M1", "ECG", "VTH"])
    night = s2v_core.load_night(raw)
    file_night = s2v_core.load_night(psg)
    np.testing.assert_allclose(
        night.signals["eeg"], file_night.signals["eeg"], rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        night.signals["ecg"], file_night.signals["ecg"], rtol=1e-6, atol=1e-3
    )
    assert night.provenance["effort"].unit_in == "mV"  # belts stay in the file's unit (mV), not V
    assert 0.05 < np.nanstd(night.signals["effort"]) < 5


def test_raw_channel_types_are_respected():
    sfreq, n = 100.0, 100 * 120
    data = np.stack([_eeg_like(n, sfreq, s) for s in range(6)])
    names = ["C4-M1", "Fp1", "Ch3", "Heart", "Leg L", "STI 014"]
    types = ["eeg", "eog", "emg", "ecg", "emg", "stim"]
    raw = _raw(data, names, types, sfreq)
    cmap = map_channels(raw.ch_names, types=dict(zip(names, types, strict=True)))
    assert cmap.as_dict() == {"eeg": "C4-M1", "eog": "Fp1", "emg": "Ch3", "ecg": "Heart"}
    assert (
        cmap.choices["eog"].rank == TYPE_RANK
    )  # "Fp1" names EEG, its type says EOG: the type wins
    assert any("Leg L" in note for note in cmap.notes)  # a typed limb EMG is no chin EMG
    assert "STI 014" not in cmap.unmapped
    # the same labels from a file (no types): only the EEG is found
    assert map_channels(names).as_dict() == {"eeg": "C4-M1"}
    night = s2v_core.load_night(raw, modalities=("eeg", "eog", "emg", "ecg"))
    assert {m: night.provenance[m].source for m in night.signals} == cmap.as_dict()
    # the name still decides when the type carries no information (MNE's default "eeg")
    plain = _raw(data[:2], ["EEG Fpz-Cz", "EOG horizontal"], ["eeg", "eeg"], sfreq)
    assert set(s2v_core.load_night(plain).signals) == {"eeg", "eog"}


def test_raw_start_time_from_meas_date_and_first_sample():
    sfreq, n = 100.0, 100 * 240
    date = datetime(2024, 3, 1, 23, 15, 0, tzinfo=UTC)
    raw = _raw(_eeg_like(n, sfreq)[None], ["C4"], ["eeg"], sfreq, meas_date=date)
    assert s2v_core.load_night(raw).start_time == datetime(2024, 3, 1, 23, 15, 0)
    cropped = raw.copy().crop(tmin=60.0)
    night = s2v_core.load_night(cropped)
    assert night.start_time == datetime(2024, 3, 1, 23, 16, 0) and night.n_epochs == 6
    undated = _raw(_eeg_like(n, sfreq)[None], ["C4"], ["eeg"], sfreq)
    no_date = s2v_core.load_night(undated)
    assert no_date.start_time is None and any("meas_date" in w for w in no_date.warnings)


def test_raw_annotations_are_stages_only_when_given_as_the_hypnogram():
    sfreq, n = 100.0, 100 * 300  # 10 epochs
    date = datetime(2024, 3, 1, 23, 0, 0, tzinfo=UTC)
    raw = _raw(_eeg_like(n, sfreq)[None], ["C4"], ["eeg"], sfreq, meas_date=date)
    labels = ["Sleep stage W"] * 4 + ["Sleep stage 1", "Sleep stage 2", "Sleep stage 2", "Sleep stage 3",
                                      "Sleep stage R", "Sleep stage R"]  # fmt: skip
    raw.set_annotations(mne.Annotations(np.arange(10) * 30.0, [30.0] * 10, labels, orig_time=date))
    raw.annotations.append(45.0, 10.0, "Obstructive Apnea")
    assert (s2v_core.load_night(raw).stages == -1).all()
    scored = s2v_core.load_night(raw, raw.annotations)
    assert scored.stages.tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 4, 4]
    assert "mne.Annotations" in scored.hypnogram_source
    later = s2v_core.load_night(raw.copy().crop(tmin=60.0), raw.annotations, allow_mismatch=True)
    assert later.stages.tolist()[:8] == [0, 0, 1, 2, 2, 3, 4, 4]
    with pytest.raises(TypeError, match="mne.Annotations"):
        s2v_core.load_night(shipped_night()[0], raw.annotations)


def test_load_night_refuses_other_types_clearly():
    with pytest.raises(
        TypeError, match=r"path to a recording.*mne\.io\.BaseRaw.*numpy\.ndarray.*RawArray"
    ):
        s2v_core.load_night(np.zeros((2, 100)))
    with pytest.raises(TypeError, match="not builtins.int"):
        s2v_core.load_night(42)
    raw = _raw(_eeg_like(100 * 120, 100.0)[None], ["C4"], ["eeg"], 100.0)
    epochs = mne.make_fixed_length_epochs(raw, duration=30.0, verbose="error")
    with pytest.raises(TypeError, match="pass the Raw"):
        s2v_core.load_night(epochs)
    with pytest.raises(TypeError, match="hypnogram must be a path"):
        s2v_core.load_night(raw, np.zeros(4))


def test_raw_that_cannot_be_a_night_is_refused():
    short = _raw(_eeg_like(1000, 100.0)[None], ["C4"], ["eeg"], 100.0)
    with pytest.raises(InputFileError, match="shorter than one 30-s epoch"):
        s2v_core.load_night(short)
    unknown = _raw(_eeg_like(100 * 60, 100.0)[None], ["Ch1"], ["misc"], 100.0)
    with pytest.raises(ChannelMappingError, match="Ch1"):
        s2v_core.load_night(unknown)


# --- YASA hypnograms ---------------------------------------------------------------------------


def test_yasa_hypnogram_labels_start_and_merges():
    start = datetime(2024, 1, 1, 22, 0)
    hyp = yasa_hypnogram([0, 1, 2, 3, 4, -1], start, scorer="me")
    assert isinstance(hyp, yasa.Hypnogram) and hyp.n_stages == 5 and hyp.freq == "30s"
    assert hyp.hypno.tolist() == ["WAKE", "N1", "N2", "N3", "REM", "UNS"]
    assert hyp.hypno.index[0] == start and hyp.hypno.index[1] - hyp.hypno.index[0] == timedelta(
        seconds=30
    )
    assert hyp.hypno.name == "me"
    assert yasa_hypnogram([0, 1, 2, 3, 4, -1], n_stages=4).hypno.tolist() == [
        "WAKE",
        "LIGHT",
        "LIGHT",
        "DEEP",
        "REM",
        "UNS",
    ]
    assert yasa_hypnogram([0, 1, 2, 3, 4, -1], n_stages=3).hypno.tolist() == [
        "WAKE",
        "NREM",
        "NREM",
        "NREM",
        "REM",
        "UNS",
    ]
    for bad in ({"n_stages": 2}, {"n_stages": 6}):
        with pytest.raises(ValueError, match="n_stages"):
            yasa_hypnogram([0, 1], **bad)
    with pytest.raises(ValueError, match="codes -1..4"):
        yasa_hypnogram([0, 5])


def test_night_to_frame_and_to_yasa(night):
    frame = night.to_frame()
    assert len(frame) == night.n_epochs
    assert frame["stage"].tolist() == night.stages.tolist()
    assert frame["clock_time"].iloc[1] == "2000-01-11T22:08:30"
    assert {f"valid_{m}" for m in night.signals} <= set(frame.columns)
    hyp = night.to_yasa()
    codes = hyp.as_int().to_numpy()
    np.testing.assert_array_equal(np.where(codes < 0, -1, codes), night.stages)
    unscored = Night(NightMeta("x"), {}, {}, np.array([-1, -1, 2], np.int8))
    assert unscored.to_frame()["label"].tolist() == ["unscored", "unscored", "N2"]
    assert unscored.to_yasa().hypno.tolist() == ["UNS", "UNS", "N2"]


def test_staging_to_yasa_merges_probabilities_like_prediction_merged():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5) * 0.7, size=200).astype(np.float32)
    pred = Prediction(
        probs.argmax(1).astype(np.int8),
        probs,
        ("eeg",),
        {"eeg": 1.0},
        np.ones((200, 1), np.float32),
    )
    result = StagingResult(pred, Night(NightMeta("x"), {}, {}, np.full(200, -1, np.int8)))
    for n, labels in (
        (5, ("WAKE", "N1", "N2", "N3", "REM")),
        (4, ("WAKE", "LIGHT", "DEEP", "REM")),
        (3, ("WAKE", "NREM", "REM")),
    ):
        hyp = result.to_yasa(n)
        merged, merged_probs = pred.merged(n)
        assert hyp.hypno.tolist() == [labels[k] for k in merged]
        np.testing.assert_allclose(hyp.proba.to_numpy(), merged_probs, atol=1e-5)
        assert list(hyp.proba.columns) == list(labels)


# --- classifier, stage, embed, evaluate ---------------------------------------------------------


def test_load_classifier_is_a_named_three_tuple(classifier):
    model, config, extra = classifier
    assert len(classifier) == 3 and tuple(classifier) == (model, config, extra)
    assert classifier.model is model and classifier.config is config and classifier.extra is extra
    assert classifier.path == s2v_core.default_model_dir()
    assert classifier.modalities == tuple(config.modalities)
    assert classifier.model_id.startswith("classifier-")
    assert not model.training and "feature_ranges" in extra
    again = pickle.loads(pickle.dumps(classifier))
    assert (
        isinstance(again, s2v_core.Classifier) and again.path == classifier.path and len(again) == 3
    )
    with pytest.raises(S2VError, match="no such model folder"):
        s2v_core.load_classifier(ROOT / "no-such-model")


def test_stage_matches_predict_night(night, classifier):
    staging = s2v_core.stage(night, classifier, ("eeg", "eog", "emg"))
    pred = predict_night(classifier.model, night, ("eeg", "eog", "emg"))
    np.testing.assert_array_equal(staging.stages, pred.stages)
    np.testing.assert_allclose(staging.probabilities, pred.probabilities, atol=1e-6)
    assert staging.prediction.model_id == classifier.model_id
    frame = staging.to_frame()
    assert frame.columns.tolist() == pred.to_frame(night.start_time).columns.tolist()
    assert frame["clock_time"].iloc[0] == night.start_time.isoformat()
    hyp = staging.to_yasa()
    assert hyp.hypno.name == classifier.model_id and hyp.proba.shape == (night.n_epochs, 5)
    assert hyp.hypno.index[0] == night.start_time
    # a path or a raw is loaded first; a bare model or the old 3-tuple are accepted too
    from_path = s2v_core.stage(shipped_night()[0], tuple(classifier), ("eeg",))
    assert from_path.night.n_epochs == night.n_epochs and from_path.modalities == ("eeg",)
    with pytest.raises(TypeError, match="classifier must be"):
        s2v_core.stage(night, 3.5)
    with pytest.raises(S2VError, match="no modality to predict from"):
        s2v_core.stage(Night(NightMeta("x"), {}, {}, np.zeros(3, np.int8)), classifier)
    with pytest.raises(S2VError, match="cannot use"):
        s2v_core.stage(night, classifier, ("eeg", "nonsense"))


def test_stage_and_embed_leave_out_unfamiliar_modalities_unless_named_or_kept(night, classifier):
    import dataclasses

    noisy = dataclasses.replace(night, signals={**night.signals, "eeg": np.random.default_rng(3).normal(
        0, 20, night.signals["eeg"].shape).astype(np.float32)})  # fmt: skip
    default = s2v_core.stage(noisy, classifier)
    assert default.prediction.left_out == ("eeg",) and "eeg" not in default.modalities
    assert any(w.startswith("eeg left out") for w in default.warnings)
    assert "eeg" in s2v_core.stage(noisy, classifier, keep_unfamiliar=True).modalities
    assert s2v_core.stage(noisy, classifier, ("eeg", "eog")).modalities == ("eeg", "eog")
    emb = s2v_core.embed(noisy, classifier)
    assert emb.staging.prediction.left_out == ("eeg",)
    np.testing.assert_array_equal(emb.staging.stages, default.stages)
    assert s2v_core.stage(night, classifier).prediction.left_out == ()  # a familiar night loses nothing


def test_embed_matches_the_same_pass(night, classifier):
    emb = s2v_core.embed(night, classifier, ("eeg", "eog"), pooling="mean+std")
    pred = predict_night(classifier.model, night, ("eeg", "eog"), with_embeddings=True)
    np.testing.assert_allclose(emb.epochs, pred.embeddings, atol=1e-5)
    np.testing.assert_allclose(
        emb.night_vector, pool_epochs(pred.embeddings, pred.coverage, "mean+std"), atol=1e-5
    )
    assert emb.night_vector.shape == (2 * emb.epochs.shape[1],)
    frame = emb.to_frame()
    assert len(frame) == night.n_epochs and frame["night"].iloc[0] == night.meta.night_id
    assert (
        frame["predicted"].tolist() == pred.stages.tolist()
        and frame["stage"].tolist() == night.stages.tolist()
    )
    assert [c for c in frame.columns if c.startswith("emb_")] == [
        f"emb_{i}" for i in range(emb.epochs.shape[1])
    ]
    assert emb.to_yasa().hypno.tolist() == emb.staging.to_yasa().hypno.tolist()


def test_evaluate_against_every_kind_of_reference(sample, night, classifier):
    staging = s2v_core.stage(night, classifier)
    expected = staging_metrics(night.stages, staging.stages)
    agreement = staging.evaluate()
    assert agreement.kappa == pytest.approx(expected.kappa) and agreement.accuracy == pytest.approx(
        expected.accuracy
    )
    assert agreement.confusion.to_numpy().tolist() == expected.confusion.tolist()
    assert agreement.confusion.index.name == "reference"
    for reference in (sample[1], night, night.stages, night.to_yasa()):
        assert s2v_core.evaluate(staging, reference).kappa == pytest.approx(expected.kappa)
    three = staging.evaluate(n_classes=3)
    assert three.kappa == pytest.approx(
        staging_metrics(night.stages, staging.prediction.merged_as_five(3), n_classes=3).kappa
    )
    assert set(three.to_frame()["predicted"]) <= {"W", "NREM", "REM"}
    frame = agreement.to_frame()
    assert frame["agree"].mean() == pytest.approx(
        expected.accuracy
    )  # the sample night is fully scored
    yasa_agreement = agreement.to_yasa().get_agreement()
    assert yasa_agreement["kappa"] == pytest.approx(expected.kappa, abs=1e-6)
    assert yasa_agreement["accuracy"] == pytest.approx(100 * expected.accuracy)
    assert three.to_yasa().get_agreement()["kappa"] == pytest.approx(three.kappa, abs=1e-6)
    d = agreement.to_dict()
    assert d["kappa"] == pytest.approx(expected.kappa) and "TST_min" in d["sleep_statistics"]
    assert agreement.sleep_statistics.loc["TIB_min", "reference"] == 60.0
    # plain arrays, and what cannot be compared
    assert s2v_core.evaluate([0, 2, 2, 4], [0, 2, 1, 4]).accuracy == 0.75
    with pytest.raises(ValueError, match="same number of epochs"):
        s2v_core.evaluate(staging, night.stages[:-5])
    unscored = s2v_core.load_night(sample[0])
    with pytest.raises(S2VError, match="no scored epoch"):
        s2v_core.stage(unscored, classifier, ("eeg",)).evaluate()
    with pytest.raises(ValueError, match="n_classes"):
        staging.evaluate(n_classes=2)
