"""scripts/export_model.py: the model card's real-data lines and the recipe's wall time."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export_model():
    spec = importlib.util.spec_from_file_location("export_model", REPO / "scripts" / "export_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(tmp_path: Path, *, with_previous: bool = True) -> Path:
    fig = {"kappa": 0.5, "lo": 0.4, "hi": 0.6, "n_subjects": 4, "n_epochs": 240}
    pooled = {
        "dreams_1-4 EEG 5-class | ours LOSO": {**fig, "kappa": 0.612},
        "dreams_1-4 EEG 5-class | ours zero-shot": {**fig, "kappa": 0.281},
        "dreams_1,2,4 EEG 5-class | ours LOSO": {**fig, "kappa": 0.633},
        "dreams_1,2,4 EEG 5-class | YASA": {**fig, "kappa": 0.664},
        "dreams_3 (50 Hz) EEG 5-class | ours LOSO": {"kappa": 0.31, "lo": float("nan"), "hi": float("nan")},
        "dreams_3 PSG (50 Hz) unfamiliar left out | ours LOSO": {"kappa": 0.417, "lo": float("nan"), "hi": float("nan")},
        "slpdb IBI 3-class | ours LOSO": {**fig, "kappa": 0.377},
        "slpdb IBI 3-class | sleepecg": {**fig, "kappa": 0.041},
    }
    held = [{"subset": "FULL (all each night has)", "shipped": 0.95, "previous": 0.93},
            {"subset": "ibi", "shipped": 0.60, "previous": 0.70}]
    if not with_previous:
        held = [{k: v for k, v in r.items() if k != "previous"} for r in held]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"pooled": pooled, "synthetic_held_out": held, "previous_commit": "abc1234"}))
    return path


def test_real_lines_quote_ours_next_to_the_peers(export_model, tmp_path):
    text = "\n".join(export_model.real_lines(_summary(tmp_path)))
    assert "| DREAMS EEG, excerpts 1-4, 5-class | 0.61 [0.40, 0.60] | 0.28 [0.40, 0.60] | - |" in text
    assert "YASA 0.66 [0.40, 0.60]" in text
    # YASA has no figure on the 50-Hz excerpt: it refuses it, and the card says so
    assert "| DREAMS excerpt 3 (50 Hz) EEG, 5-class | 0.31 | n/a | YASA refuses it |" in text
    assert "sleepecg 0.04" in text
    # the PSG as s2v predict stages it; a row the benchmark did not score is left out
    assert "as `s2v predict` stages it (modalities unlike the training data left out) | 0.42 | n/a | - |" in text
    assert "all modalities" not in text
    # held-out synthetic subjects: shipped vs previous, with the difference
    assert "| ibi | 0.600 | 0.700 | -0.100 |" in text
    assert "commit `abc1234`" in text


def test_real_lines_without_a_previous_model_or_a_benchmark(export_model, tmp_path):
    text = "\n".join(export_model.real_lines(_summary(tmp_path, with_previous=False)))
    assert "previous model" not in text
    missing = export_model.real_lines(tmp_path / "absent.json")
    assert len(missing) == 1 and "python bench/bench_real.py" in missing[0]


def test_recipe_minutes_from_the_stamps(export_model, tmp_path):
    assert export_model.recipe_minutes(tmp_path) is None
    (tmp_path / "recipe_started").write_text("1000\n")
    (tmp_path / "recipe_finished").write_text("2500\n")
    assert export_model.recipe_minutes(tmp_path) == pytest.approx(25.0)
    (tmp_path / "recipe_finished").unlink()  # still running: up to now
    (tmp_path / "recipe_started").write_text(f"{time.time() - 600}\n")
    assert export_model.recipe_minutes(tmp_path) == pytest.approx(10.0, abs=0.5)
    (tmp_path / "recipe_started").write_text("not a time")
    assert export_model.recipe_minutes(tmp_path) is None
    meta = {"minutes": 9.4, "recipe_minutes": 24.6}
    assert export_model._recipe_time(meta) == (
        "25 min wall time here on 2 cores, of which training (DASH pretraining, fine-tuning, adaptation) 9 min"
    )
    assert export_model._recipe_time({"minutes": 9.4}).endswith("9 min here")


def test_card_only_reuses_the_test_table_of_the_same_classifier(export_model, tmp_path, monkeypatch):
    (tmp_path / "classifier").mkdir()
    assert export_model.stored_test_table(tmp_path) is None  # no metrics.json yet
    doc = {"meta": {"model_id": "classifier-00000000"}, "test": [{"subset": "FULL", "kappa": 0.9}]}
    (tmp_path / "metrics.json").write_text(json.dumps(doc))
    monkeypatch.setattr(export_model, "model_id", lambda folder: "classifier-00000000")
    assert export_model.stored_test_table(tmp_path)["kappa"].tolist() == [0.9]
    monkeypatch.setattr(export_model, "model_id", lambda folder: "classifier-11111111")  # another classifier: measure again
    assert export_model.stored_test_table(tmp_path) is None


def test_seed_lines_put_the_shipped_run_next_to_the_recipes_other_seeds(export_model, tmp_path):
    assert export_model.seed_lines(tmp_path) == []  # no benchmark at all
    (tmp_path / "real").mkdir()
    _summary(tmp_path / "real")
    assert export_model.seed_lines(tmp_path) == []  # the shipped run alone: no table
    for seed, dreams in ((10, 0.30), (2, 0.50), ("2_old", 0.9)):  # sorted by number; other names are not runs
        (tmp_path / f"real_seed{seed}").mkdir()
        doc = json.loads((tmp_path / "real" / "summary.json").read_text())
        doc["pooled"]["dreams_1-4 EEG 5-class | ours LOSO"]["kappa"] = dreams
        del doc["pooled"]["slpdb IBI 3-class | ours LOSO"]
        (tmp_path / f"real_seed{seed}" / "summary.json").write_text(json.dumps(doc))
    text = "\n".join(export_model.seed_lines(tmp_path))
    assert "| data | shipped (seed 0) | seed 2 | seed 10 | mean |" in text
    assert "| DREAMS EEG 1-4, LOSO | 0.612 | 0.500 | 0.300 | 0.471 |" in text
    assert "| slpdb IBI 3-class, LOSO | 0.377 | - | - | 0.377 |" in text  # a run without a figure
    assert "zero-shot" not in text.split("| mean |")[1]  # no run has slpdb zero-shot: no row


def test_the_card_states_the_fine_tuning_dropout_and_single_modality_loss(export_model):
    text = export_model._dropout_text({"modality_dropout": 0.5})
    assert text == "modality dropout 0.5 (each modality of a window dropped on its own)"
    sized = export_model._dropout_text({"modality_dropout": 0.9, "dropout_mode": "size", "single_loss": 1.0})
    assert sized.startswith("modality dropout by subset size (90% of windows")
    assert sized.endswith(", plus the single-modality loss (weight 1: each kept modality also staged alone)")
    assert export_model._single_loss_text({"single_loss": 0.0}) == ""
    assert export_model._single_loss_text({}) == ""
    chosen = export_model._single_loss_text({"single_loss": 1.0, "single_loss_modalities": ["spo2", "emg"]})
    assert chosen == ", plus the single-modality loss (weight 1: spo2, emg, when kept, also staged alone)"
