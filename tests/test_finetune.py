import numpy as np
import pytest
import torch

from s2v_core.finetune import FinetuneConfig, drop_modalities, finetune
from s2v_core.inference import load_classifier, predict_night
from s2v_core.loading import load_night
from s2v_core.store import prepare_store
from s2v_core.synth.cohort import generate_cohort


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    frame = generate_cohort(5, root / "cohort", seed=2, hours=1.0)
    prepare_store(root / "cohort", root / "store", progress=False)
    return root, frame


def test_drop_modalities_keeps_one():
    g = torch.Generator().manual_seed(0)
    present = torch.tensor([[True, True, False], [True, False, False], [False, True, True]] * 50)
    for _ in range(20):
        keep = drop_modalities(present, 0.9, g)
        assert keep.any(dim=1).all() and not (keep & ~present).any()
    assert not drop_modalities(present, 0.0, g).ne(present).any()


def test_finetune_writes_a_loadable_classifier(store, tmp_path):
    root, frame = store
    cfg = FinetuneConfig(epochs=2, batch_size=4, preset="tiny", lr=3e-3, max_batches_per_epoch=6)
    res = finetune(root / "store", tmp_path / "clf", cfg)
    assert list(res.history["epoch"]) == [1, 2]
    assert np.isfinite(res.history["train_loss"]).all()
    model, config, extra = load_classifier(tmp_path / "clf" / "best")
    assert extra["finetune_config"]["preset"] == "tiny"
    row = frame.iloc[0]
    night = load_night(root / "cohort" / row.psg_file, root / "cohort" / row.hypnogram_file)
    pred = predict_night(model, night)
    assert pred.stages.shape == (night.n_epochs,)


def test_overfitting_a_small_store_lowers_the_loss(store, tmp_path):
    root, _ = store
    cfg = FinetuneConfig(epochs=6, batch_size=4, preset="tiny", lr=3e-3, max_batches_per_epoch=4,
                         modality_dropout=0.0, seed=1)
    hist = finetune(root / "store", tmp_path / "o", cfg).history
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
