"""Windows over a cohort store and the pair-first batch sampler."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from s2v_core.cohort.store import CohortStore
from s2v_core.modalities import MODALITIES
from s2v_core.night import apply_scaling
from s2v_core.train.windows import (
    WINDOW_EPOCHS,
    PairFirstBatchSampler,
    PairIndex,
    WindowDataset,
    WindowRef,
    collate_pair,
    make_loader,
)
from tests.test_store import build_store, random_night


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Nights with different modality sets and lengths.

    - ``long``: 250 epochs of eeg/ecg/spo2 (3 windows, the last with 10 real epochs)
    - ``wear0..wear3``: 130 epochs of ibi/resp only (2 windows each)
    - ``sparse``: 240 epochs; eeg valid in 5 epochs of window 0 (below 10%) and 30 of window 1
    """
    mp = pytest.MonkeyPatch()
    eeg_invalid = np.ones(240, bool)
    eeg_invalid[:5] = False
    eeg_invalid[120:150] = False
    nights = {
        "long": (
            random_night("long", 250, ("eeg", "ecg", "spo2"), seed=1),
            {"subject": "p1", "site": "S2", "age": 61.5, "sex": "M", "split": "train"},
        ),
        "sparse": (
            random_night("sparse", 240, ("eeg", "spo2"), seed=2, invalid={"eeg": eeg_invalid}),
            {"subject": "p2", "site": "S1", "sex": "F", "split": "train"},
        ),
    }
    for i in range(4):
        nights[f"wear{i}"] = (
            random_night(f"wear{i}", 130, ("ibi", "resp"), seed=10 + i, offset=1.0, scale=0.1),
            {"subject": f"w{i}", "split": "train"},
        )
    nights["heldout"] = (
        random_night("heldout", 50, ("eeg",), seed=5),
        {"subject": "h", "split": "test"},
    )
    path = build_store(tmp_path_factory.mktemp("win"), nights, mp)
    mp.undo()
    return {"store": CohortStore(path), "nights": {k: v[0] for k, v in nights.items()}}


@pytest.fixture(scope="module")
def train(cohort):
    return WindowDataset(cohort["store"], "train")


def test_window_counts_and_refs(train):
    assert train.night_ids == ["long", "sparse", "wear0", "wear1", "wear2", "wear3"]
    assert len(train) == 3 + 2 + 4 * 2
    assert [train.ref(i) for i in range(3)] == [
        WindowRef("long", 0, 120),
        WindowRef("long", 120, 120),
        WindowRef("long", 240, 10),
    ]
    assert train.ref(4) == WindowRef("sparse", 120, 120)
    assert train.window_night_index.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [train[i]["night_index"] for i in (0, 2, 3, 12)] == [0, 0, 1, 5]
    assert len(WindowDataset(train.store, "test")) == 1
    assert len(WindowDataset(train.store, None)) == 14


def test_last_window_is_padded_and_masked(train, cohort):
    item = train[2]  # long, epochs 240..249
    night = cohort["nights"]["long"]
    assert set(item["inputs"]) == {"eeg", "ecg", "spo2"}
    assert (
        item["inputs"]["eeg"].shape == (WINDOW_EPOCHS, 3840)
        and item["inputs"]["eeg"].dtype == torch.float32
    )
    assert item["inputs"]["spo2"].shape == (WINDOW_EPOCHS, 120)
    assert item["pad_valid"].dtype == torch.bool and int(item["pad_valid"].sum()) == 10
    assert item["pad_valid"][:10].all() and not item["pad_valid"][10:].any()
    assert item["valid"]["eeg"][:10].all() and not item["valid"]["eeg"][10:].any()
    assert torch.count_nonzero(item["inputs"]["eeg"][10:]) == 0
    assert item["stages"].dtype == torch.long
    assert item["stages"][:10].tolist() == night.stages[240:].tolist()
    assert (item["stages"][10:] == -1).all()


def test_inputs_are_scaled_with_the_nights_scaling(train, cohort):
    scaling = cohort["store"].scaling("long")
    night = cohort["nights"]["long"]
    item = train[1]
    expected = apply_scaling(night.signals["ecg"][120:240], *scaling["ecg"])
    np.testing.assert_allclose(item["inputs"]["ecg"].numpy(), expected, rtol=1e-6)
    x = torch.cat([train[i]["inputs"]["eeg"][train[i]["pad_valid"]] for i in range(3)]).numpy()
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    assert abs(q50) < 0.01 and abs((q75 - q25) - 1) < 0.01  # robust scaling: median 0, IQR 1
    wear = train[5]["inputs"][
        "ibi"
    ].numpy()  # a different night, its own scaling (offset 1, scale 0.1)
    assert abs(np.median(wear)) < 0.02


def test_invalid_epochs_are_zero_and_flagged(train):
    item = train[3]  # sparse, window 0: eeg valid only in epochs 0..4
    assert item["valid"]["eeg"].tolist() == [True] * 5 + [False] * 115
    assert torch.count_nonzero(item["inputs"]["eeg"][5:]) == 0
    assert item["valid"]["spo2"].all()


def test_metadata_fields(train):
    assert train[0]["age"] == 61.5 and train[0]["sex"] == 1 and train[0]["site"] == 1  # S2 -> 1
    assert math.isnan(train[3]["age"]) and train[3]["sex"] == 0 and train[3]["site"] == 0
    assert train[6]["sex"] == -1 and train[6]["site"] == -1


def test_reads_only_the_windows_rows(train, monkeypatch):
    """Each file of a window is read once, its rows only (issue 15: no memory map per item)."""
    from s2v_core.train import windows

    assert isinstance(train.signal(0, "eeg"), np.memmap)
    calls = []
    real_read = windows._read_npy_rows

    def spy(path, start, stop, layout):
        out = real_read(path, start, stop, layout)
        calls.append((str(path).rsplit("/", 1)[-1], start, stop, len(out)))
        return out

    monkeypatch.setattr(windows, "_read_npy_rows", spy)
    train[1]  # long, epochs 120..239
    assert sorted(calls) == sorted(
        (f"{name}.npy", 120, 240, 120) for name in ("valid", "stages", "eeg", "ecg", "spo2")
    )
    calls.clear()
    train[PairIndex(1, "eeg", "spo2")]  # a pair key reads only its two modalities
    assert {name for name, *_ in calls} == {"valid.npy", "stages.npy", "eeg.npy", "spo2.npy"}
    calls.clear()
    train[2]  # the last, 10-epoch window of long
    assert {(start, stop, n) for _, start, stop, n in calls} == {(240, 250, 10)}


def test_windows_with_threshold(train):
    assert train.windows_with("eeg").tolist() == [0, 1, 2, 4]  # sparse window 0: 5 < 12 valid
    assert train.windows_with("eeg", min_valid=5).tolist() == [0, 1, 2, 3, 4]
    assert train.windows_with("ibi").tolist() == list(range(5, 13))
    assert train.windows_with("eog").tolist() == []
    # a 10-epoch last window needs only 1 valid epoch (10%)
    assert train.valid_counts[2, MODALITIES.index("eeg")] == 10
    assert train.valid_counts[3, MODALITIES.index("eeg")] == 5


def test_modality_filter(cohort):
    ds = WindowDataset(cohort["store"], "train", modalities=("spo2", "eeg"))
    assert ds.modalities == ("eeg", "spo2")
    assert set(ds[0]["inputs"]) == {"eeg", "spo2"} and ds[6]["inputs"] == {}
    assert ds.windows_with("ecg").size == 0
    with pytest.raises(ValueError, match="unknown modality 'ppg'"):
        WindowDataset(cohort["store"], "train", modalities=("ppg",))


# --- sampler ---------------------------------------------------------------------------------------


def _batches(sampler):
    return [[tuple(k) for k in batch] for batch in sampler]


def test_every_batch_has_its_pair_in_every_window(train):
    sampler = PairFirstBatchSampler(train, 3, seed=0, n_batches=200)
    present = train.presence()
    assert set(sampler.pairs) == {("eeg", "ecg"), ("eeg", "spo2"), ("ecg", "spo2"), ("ibi", "resp")}
    assert sampler.pair_counts[("eeg", "ibi")] == 0 and sampler.pair_counts[("ibi", "resp")] == 8
    assert sampler.pair_counts[("eeg", "spo2")] == 4  # sparse window 0 lacks eeg
    seen = set()
    for batch in sampler:
        assert len(batch) == 3 and len({k.index for k in batch}) == 3
        (pair,) = {(k.a, k.b) for k in batch}
        seen.add(pair)
        cols = [MODALITIES.index(m) for m in pair]
        assert present[np.ix_([k.index for k in batch], cols)].all()
        if "eeg" in pair:
            assert 3 not in {k.index for k in batch}
    assert seen == set(sampler.pairs)


def test_pairs_are_drawn_in_proportion_to_their_windows(train):
    sampler = PairFirstBatchSampler(
        train, 2, seed=1, n_batches=4000, pairs=[("eeg", "ecg"), ("ibi", "resp")]
    )
    assert sampler.pair_probabilities.tolist() == [3 / 11, 8 / 11]
    counts = {p: 0 for p in sampler.pairs}
    for batch in sampler:
        counts[(batch[0].a, batch[0].b)] += 1
    assert abs(counts[("ibi", "resp")] / 4000 - 8 / 11) < 0.03


def test_windows_are_used_once_before_reuse(train):
    sampler = PairFirstBatchSampler(train, 4, seed=2, n_batches=2, pairs=[("ibi", "resp")])
    idx = [k.index for batch in sampler for k in batch]
    assert sorted(idx) == list(range(5, 13))
    sampler = PairFirstBatchSampler(train, 3, seed=2, n_batches=50, pairs=[("ibi", "resp")])
    for batch in sampler:  # the reshuffle after each pass never repeats a window within a batch
        assert len({k.index for k in batch}) == 3


def test_deterministic_and_reseeded_per_epoch(train):
    a = _batches(PairFirstBatchSampler(train, 2, seed=7))
    b = _batches(PairFirstBatchSampler(train, 2, seed=7))
    c = _batches(PairFirstBatchSampler(train, 2, seed=8))
    assert a == b and a != c
    assert len(a) == len(train) // 2 == 6
    s = PairFirstBatchSampler(train, 2, seed=7)
    s.set_epoch(1)
    assert _batches(s) != a
    s.set_epoch(0)
    assert _batches(s) == a
    assert len(PairFirstBatchSampler(train, 2, drop_last=False)) == 7


def test_ranks_get_disjoint_shares_of_one_sequence(train):
    full = _batches(PairFirstBatchSampler(train, 2, seed=3, n_batches=20))
    r0 = _batches(PairFirstBatchSampler(train, 2, seed=3, n_batches=20, rank=0, world_size=2))
    r1 = _batches(PairFirstBatchSampler(train, 2, seed=3, n_batches=20, rank=1, world_size=2))
    assert len(r0) == len(r1) == 10
    assert r0 == full[0::2] and r1 == full[1::2]
    odd = PairFirstBatchSampler(train, 2, seed=3, n_batches=21, rank=1, world_size=2)
    assert len(odd) == 10  # equal counts on every rank (DDP steps in lockstep)
    with pytest.raises(ValueError, match="rank"):
        PairFirstBatchSampler(train, 2, rank=2, world_size=2)


def test_sampler_refuses_when_no_pair_fills_a_batch(train):
    with pytest.raises(ValueError, match="batch_size=9"):
        PairFirstBatchSampler(train, 9)
    with pytest.raises(ValueError, match="two different"):
        PairFirstBatchSampler(train, 2, pairs=[("eeg", "eeg")])


# --- collate and loader ----------------------------------------------------------------------------


def test_loader_batches(train):
    sampler = PairFirstBatchSampler(train, 3, seed=0, n_batches=12)
    expected = _batches(sampler)
    batches = list(make_loader(train, sampler))
    assert len(batches) == 12
    for batch, keys in zip(batches, expected, strict=True):
        a, b = batch["pair"]
        assert (a, b) == keys[0][1:]
        assert batch["index"].tolist() == [k[0] for k in keys]
        n = 3
        assert batch["a"].shape == (n, 120, 3840 if a in ("eeg", "ecg") else 120)
        assert batch["b"].shape == (n, 120, 3840 if b in ("eeg", "ecg") else 120)
        assert batch["valid"].shape == batch["stages"].shape == (n, 120)
        assert torch.equal(batch["valid"], batch["pad_valid"] & batch["valid_a"] & batch["valid_b"])
        assert batch["age"].dtype == torch.float32 and batch["sex"].dtype == torch.long
        assert (
            batch["night_index"].tolist()
            == train.window_night_index[batch["index"].numpy()].tolist()
        )
        for j, i in enumerate(batch["index"].tolist()):
            torch.testing.assert_close(batch["a"][j], train[i]["inputs"][a])


def test_loader_with_worker_processes(train):
    sampler = PairFirstBatchSampler(train, 2, seed=4, n_batches=4, pairs=[("ibi", "resp")])
    single = [b["index"].tolist() for b in make_loader(train, sampler)]
    multi = [b["index"].tolist() for b in make_loader(train, sampler, num_workers=2)]
    assert single == multi and all(set(i) <= set(range(5, 13)) for i in single)


def test_collate_refuses_mixed_pairs(train):
    items = [train[PairIndex(5, "ibi", "resp")], train[PairIndex(0, "eeg", "ecg")]]
    with pytest.raises(ValueError, match="one pair"):
        collate_pair(items)
    with pytest.raises(ValueError, match="PairIndex"):
        collate_pair([train[0]])


def test_pair_key_for_a_missing_modality_gives_invalid_zeros(train):
    item = train[PairIndex(5, "ibi", "eeg")]
    assert item["pair"] == ("ibi", "eeg")
    assert not item["valid"]["eeg"].any() and torch.count_nonzero(item["inputs"]["eeg"]) == 0
    assert list(itertools.islice(item["inputs"], 2)) == ["ibi", "eeg"]


def test_pair_weighting_options_change_pair_frequencies():
    import types

    from s2v_core.train.windows import PairFirstBatchSampler

    class FakeDataset(types.SimpleNamespace):
        def __len__(self):
            return 1000

        def windows_with(self, m, min_valid=None):
            return np.arange(1000) if m in ("ibi", "spo2") else np.arange(40)

    ds = FakeDataset(modalities=("eeg", "ibi", "spo2"))
    prop = PairFirstBatchSampler(ds, 8, pair_weighting="windows")
    bal = PairFirstBatchSampler(ds, 8, pair_weighting="balanced")
    p_prop = dict(zip(prop.pairs, prop.pair_probabilities, strict=True))
    p_bal = dict(zip(bal.pairs, bal.pair_probabilities, strict=True))
    assert p_prop[("ibi", "spo2")] == pytest.approx(1000 / 1080)
    assert all(v == pytest.approx(1 / 3) for v in p_bal.values())
    with pytest.raises(ValueError, match="pair_weighting"):
        PairFirstBatchSampler(ds, 8, pair_weighting="rare-first")
