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
    # the stage also trains the head on SpO2 alone (bench/RESULTS.md), recorded with the model
    assert extra["finetune_config"]["single_loss"] == 1.0
    assert extra["finetune_config"]["single_loss_modalities"] == ["spo2"]


def test_the_real_files_trained_on_are_recorded_and_recognised(stores, tmp_path, monkeypatch, capsys):
    """With the real store's sources.json, the adapted checkpoint lists the files of the real nights
    it trained on (not those of a dropped subject), and staging one of them says so."""
    import json
    import shutil

    from s2v_core.cli.main import main
    from s2v_core.inference.familiarity import file_fingerprint, seen_in_training
    from s2v_core.train.adapt import SOURCES_FILE, training_recordings

    s, r = stores
    real = tmp_path / "real"
    shutil.copytree(r, real, symlinks=True)
    lab = Path(r).parent / "lab"
    meta = pd.read_csv(lab / "metadata.csv")
    files = {row.night: lab / row.psg_file for row in meta.itertuples()}
    assert training_recordings(real) == []  # a store without sources.json records nothing
    (real / SOURCES_FILE).write_text(json.dumps({n: file_fingerprint(p) for n, p in files.items()}))
    store = CohortStore(real)
    dropped = store.entry(store.nights()[0]).subject
    kept = [n for n in store.nights() if store.entry(n).subject != dropped]
    base = synthetic_classifier(s, tmp_path / "base")
    cfg = dataclasses.replace(ADAPTATION, epochs=1, batch_size=4, window_epochs=20)
    res = adapt_to_real(s, real, tmp_path / "adapt", base.checkpoint, cfg=cfg, drop_subjects=[dropped])
    _, _, extra = load_classifier(res.checkpoint)
    recorded = extra["training_recordings"]
    assert [e["night"] for e in recorded] == kept and extra["feature_ranges"]  # finetune's own entries stay
    seen = files[kept[0]]
    assert seen_in_training(extra, path=seen)["night"] == kept[0]
    fp = file_fingerprint(seen)
    assert seen_in_training(extra, size=fp["size"], sha256=fp["sha256"])["night"] == kept[0]
    assert seen_in_training(extra, path=files[store.nights()[0]]) is None  # the dropped subject's file
    changed = tmp_path / "changed.edf"
    changed.write_bytes(seen.read_bytes()[:-1] + b"x")  # same size, other content
    assert seen_in_training(extra, path=changed) is None and seen_in_training(extra, path=tmp_path / "none") is None
    assert main(["predict", str(seen), "--model", str(res.checkpoint), "--out", str(tmp_path / "p.csv"), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["model_warnings"]
    assert any(w.startswith(f"this recording was part of this model's training data ({kept[0]}") for w in warnings)


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
