"""Combining stores and the real-data adaptation stage (s2v_core.train.adapt)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from s2v_core.cohort.prepare import combine_stores, prepare_store
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.inference.predict import load_classifier
from s2v_core.signals.features import FEATURE_VERSION
from s2v_core.synth.cohort import generate_cohort
from s2v_core.train.adapt import ADAPTATION, adapt_to_real, real_site_weights
from s2v_core.train.finetune import FinetuneConfig, finetune

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    generate_cohort(4, root / "synth", seed=1, hours=0.5, progress=False)
    prepare_store(root / "synth", root / "s", progress=False)
    generate_cohort(3, root / "lab", seed=2, hours=0.5, progress=False)
    meta = pd.read_csv(root / "lab" / "metadata.csv")
    meta["site"], meta["night"] = "lab", "lab-" + meta["night"]
    meta["subject"] = "lab-" + meta["subject"]
    meta.to_csv(root / "lab" / "metadata.csv", index=False)
    prepare_store(root / "lab", root / "r", progress=False)
    return root / "s", root / "r"


def test_combined_store_links_nights_drops_subjects_and_resplits(stores, tmp_path):
    s, r = stores
    drop = CohortStore(r).entry(CohortStore(r).nights()[0]).subject
    out = combine_stores([s, r], tmp_path / "c", drop_subjects=[drop], split_of=lambda e: "train")
    c = CohortStore(out)
    assert len(c) == len(CohortStore(s)) + len(CohortStore(r)) - sum(
        CohortStore(r).entry(n).subject == drop for n in CohortStore(r).nights())
    assert set(c.manifest["split"]) == {"train"}
    assert all((out / "nights" / n).is_symlink() for n in c.nights())
    assert c.night(c.nights()[0]).n_epochs > 0
    with pytest.raises(S2VError, match="more than one"):
        combine_stores([s, s], tmp_path / "twice")
    with pytest.raises(S2VError, match="already a store"):
        combine_stores([s], out)


def test_real_sites_get_the_asked_share_of_draws(stores):
    s, r = stores
    w = real_site_weights(CohortStore(s), CohortStore(r), 0.4)
    assert set(w) == {"lab"}
    n_synth = sum(-(-CohortStore(s).entry(n).n_epochs // 120) for n in CohortStore(s).nights())
    n_real = sum(-(-CohortStore(r).entry(n).n_epochs // 120) for n in CohortStore(r).nights())
    share = w["lab"] * n_real / (w["lab"] * n_real + n_synth)
    assert share == pytest.approx(0.4)
    with pytest.raises(S2VError, match="both the synthetic and the real"):
        real_site_weights(CohortStore(s), CohortStore(s))


def synthetic_classifier(store, out):
    """A tiny feature-input classifier fine-tuned on ``store``: where adaptation starts."""
    cfg = FinetuneConfig(epochs=1, batch_size=4, window_epochs=20, preset="tiny", freeze_tokenizers=False,
                         model_overrides={"raw_branch": False, "features": FEATURE_VERSION})  # fmt: skip
    return finetune(store, out, cfg)


def test_adaptation_starts_from_the_classifier_and_keeps_the_last_pass(stores, tmp_path):
    s, r = stores
    base = synthetic_classifier(s, tmp_path / "base")
    cfg = dataclasses.replace(ADAPTATION, epochs=2, batch_size=4, window_epochs=20)
    res = adapt_to_real(s, r, tmp_path / "adapt", base.checkpoint, cfg=cfg)
    assert len(res.history) == 2 and res.best["epoch"] == 2  # no validation nights: the last pass
    _, _, extra = load_classifier(res.checkpoint)
    assert extra["finetune_config"]["init_head"] is True
    assert extra["finetune_config"]["site_weights"]["lab"] > 0


def test_adapt_soup_averages_the_weights_of_two_seeds(stores, tmp_path):
    """bench/adapt_soup.py's weight average of two adaptation seeds (what its "soup" column scores)."""
    adapt_soup = pytest.importorskip("adapt_soup")
    s, r = stores
    base = synthetic_classifier(s, tmp_path / "base")
    runs = [adapt_to_real(s, r, tmp_path / f"seed{k}", base.checkpoint,
                          cfg=dataclasses.replace(ADAPTATION, epochs=1, batch_size=4, window_epochs=20, seed=k))
            for k in (0, 1)]  # fmt: skip
    out = adapt_soup.average_checkpoints([run.checkpoint for run in runs], tmp_path / "soup")
    sa, sb = (load_classifier(run.checkpoint)[0].state_dict() for run in runs)
    avg, _, extra = load_classifier(out)
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)  # the seeds did train differently
    for key, value in avg.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (sa[key] + sb[key]) / 2, rtol=0, atol=1e-6)
    assert extra["averaged_from"][0].endswith("seed0/best") and "feature_ranges" in extra
    other = finetune(s, tmp_path / "other", FinetuneConfig(epochs=1, batch_size=4, window_epochs=20, preset="tiny",
                                                           model_overrides={"raw_branch": True, "features": 0}))  # fmt: skip
    with pytest.raises(S2VError, match="another model"):
        adapt_soup.average_checkpoints([runs[0].checkpoint, other.checkpoint], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
