"""The fast training data path (issue 15) gives the batches of the old one, byte for byte.

The old path is frozen in ``tests/windows_reference.py``; here both read the same tiny store:
items, pair items, loader batches over several epochs (with feature crops, whose draws must
not depend on worker processes), NaN inside valid epochs, files numpy would read differently.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from s2v_core.cohort.store import CohortStore
from s2v_core.train.windows import (
    PairBatch,
    PairFirstBatchSampler,
    PairIndex,
    WindowDataset,
    collate_pair,
    make_loader,
)
from tests.test_store import build_store, random_night
from tests.windows_reference import (
    ReferenceWindowDataset,
    reference_collate_pair,
    reference_make_loader,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Nights of different lengths and modalities; NaN in invalid and in some valid epochs."""
    mp = pytest.MonkeyPatch()
    eeg_invalid = np.zeros(200, bool)
    eeg_invalid[10:40] = True
    long = random_night("long", 200, ("eeg", "ecg", "ibi", "resp", "spo2"), seed=1,
                        invalid={"eeg": eeg_invalid})  # fmt: skip
    long.signals["ecg"][7, 100:110] = np.nan  # a gap inside a valid epoch: scaled to 0
    long.signals["spo2"][130, :] = np.inf  # clipped to +20
    nights = {
        "long": (long, {"subject": "p1", "site": "A", "age": 50.0, "sex": "M", "split": "train"}),
        "short": (random_night("short", 70, ("eeg", "ibi", "resp"), seed=2),
                  {"subject": "p2", "site": "B", "sex": "F", "split": "train"}),  # fmt: skip
    }
    for i in range(3):
        nights[f"w{i}"] = (random_night(f"w{i}", 130, ("ibi", "resp", "spo2"), seed=10 + i,
                                        offset=1.0, scale=0.1), {"subject": f"w{i}", "split": "train"})  # fmt: skip
    path = build_store(tmp_path_factory.mktemp("fast"), nights, mp)
    mp.undo()
    return CohortStore(path)


def assert_same(new, old, where="batch"):
    """Equal structure, dtypes, shapes and bytes (NaN == NaN, -0.0 != 0.0)."""
    if isinstance(old, dict):
        assert list(new) == list(old), f"{where}: keys {list(new)} != {list(old)}"
        for k in old:
            assert_same(new[k], old[k], f"{where}[{k!r}]")
    elif isinstance(old, torch.Tensor):
        assert isinstance(new, torch.Tensor), where
        assert (new.dtype, tuple(new.shape)) == (old.dtype, tuple(old.shape)), where
        assert new.contiguous().numpy().tobytes() == old.contiguous().numpy().tobytes(), where
    elif isinstance(old, float) and math.isnan(old):
        assert isinstance(new, float) and math.isnan(new), where
    else:
        assert type(new) is type(old) and new == old, f"{where}: {new!r} != {old!r}"


@pytest.mark.parametrize("spec", [{}, {"features": 2, "feature_crops": True, "crop_seed": 3},
                                  {"raw": False, "features": 2}])  # fmt: skip
def test_items_equal_the_reference(store, spec):
    mods = ("eeg", "ecg", "ibi", "resp", "spo2") if not spec else ("ibi", "resp", "spo2")
    new = WindowDataset(store, "train", modalities=mods, **spec)
    old = ReferenceWindowDataset(store, "train", modalities=mods, **spec)
    assert len(new) == len(old) == 2 + 1 + 3 * 2
    for _ in range(2):  # crops: the second pass draws again
        for i in range(-1, len(new)):
            assert_same(new[i], old[i], f"item {i}")
            for a, b in itertools.combinations(mods, 2):
                assert_same(new[PairIndex(i, a, b)], old[PairIndex(i, a, b)], f"item {i} {a}-{b}")
    assert new._draws == old._draws


def test_nan_and_inf_in_valid_epochs_are_scaled_like_before(store):
    item = WindowDataset(store, "train")[0]
    assert item["valid"]["ecg"][7] and torch.count_nonzero(item["inputs"]["ecg"][7, 100:110]) == 0
    later = WindowDataset(store, "train")[1]  # epochs 120..199: spo2 epoch 130 is +inf
    assert (later["inputs"]["spo2"][10] == 20.0).all()
    assert not item["valid"]["eeg"][10:40].any() and torch.count_nonzero(item["inputs"]["eeg"][10:40]) == 0


def test_batched_fetch_equals_stacked_items(store):
    new = WindowDataset(store, "train")
    old = ReferenceWindowDataset(store, "train")
    keys = [PairIndex(i, "ibi", "resp") for i in (5, 0, 3, -1)]
    fetched = new.__getitems__(keys)
    assert isinstance(fetched, PairBatch) and len(fetched) == 4
    expected = reference_collate_pair([old[k] for k in keys])
    assert_same(collate_pair(fetched), expected)
    assert_same(collate_pair([new[k] for k in keys]), expected)
    for j, k in enumerate(keys):  # a PairBatch is also the sequence of items it holds
        assert_same(fetched[j], old[k], f"item {j}")
    assert_same(default_collate(fetched)["inputs"], default_collate([old[k] for k in keys])["inputs"])
    mixed = new.__getitems__([PairIndex(0, "ibi", "resp"), 1])  # not one pair: items as before
    assert isinstance(mixed, list) and set(mixed[0]) == set(old[0]) | {"pair"}


@pytest.mark.parametrize("features", [0, 2])
def test_loader_batches_equal_the_reference_over_epochs(store, features):
    spec = {"features": features, "feature_crops": bool(features), "crop_seed": 1}
    new = WindowDataset(store, "train", **spec)
    old = ReferenceWindowDataset(store, "train", **spec)
    pairs = [("ibi", "resp"), ("ibi", "spo2"), ("eeg", "ecg")] if not features else [("ibi", "resp")]
    s_new = PairFirstBatchSampler(new, 2, seed=5, n_batches=6, pairs=pairs, drop_last=False)
    s_old = PairFirstBatchSampler(old, 2, seed=5, n_batches=6, pairs=pairs, drop_last=False)
    loader_new, loader_old = make_loader(new, s_new), reference_make_loader(old, s_old)
    assert len(loader_new) == len(loader_old) == 6
    for epoch in range(3):
        s_new.set_epoch(epoch), s_old.set_epoch(epoch)
        for j, (bn, bo) in enumerate(zip(loader_new, loader_old, strict=True)):
            assert_same(bn, bo, f"epoch {epoch} batch {j}")


def test_batch_buffers_are_reused_only_when_free(store):
    """Kept batches stay intact (more than the recycler keeps); dropped ones lend their memory."""
    new, old = WindowDataset(store, "train"), ReferenceWindowDataset(store, "train")
    pairs = [("eeg", "ecg")]  # 2 x 120 x 3840 float32: 3.7 MB, recycled
    s_new = PairFirstBatchSampler(new, 2, seed=1, n_batches=7, pairs=pairs)
    s_old = PairFirstBatchSampler(old, 2, seed=1, n_batches=7, pairs=pairs)
    kept = list(make_loader(new, s_new))
    views = [b["a"][0, :3] for b in make_loader(new, s_new)]  # a view keeps its buffer busy
    expected = list(reference_make_loader(old, s_old))
    for j, (bn, bo) in enumerate(zip(kept, expected, strict=True)):
        assert_same(bn, bo, f"kept batch {j}")
    assert len({b["a"].data_ptr() for b in kept}) == 7 and len({v.data_ptr() for v in views}) == 7
    del kept, views
    pointers = set()
    for epoch in range(3):
        s_new.set_epoch(epoch)
        for batch in make_loader(new, s_new):
            pointers.add(batch["a"].data_ptr())
    assert len(pointers) <= 4  # the previous batch is alive while the next one is read
    items = [new[PairIndex(i, "eeg", "ecg")] for i in (0, 1) * 4]  # 8 x 2 buffers of 1.8 MB, kept
    for j, item in enumerate(items):
        assert_same(item, old[PairIndex((0, 1)[j % 2], "eeg", "ecg")], f"kept item {j}")


def test_worker_processes_give_the_same_batches_as_one_process(store):
    """Persistent workers keep state across epochs; crops still follow the one-process draws."""
    spec = {"features": 2, "feature_crops": True, "crop_seed": 2}
    new = WindowDataset(store, "train", **spec)
    old = ReferenceWindowDataset(store, "train", **spec)
    s_new = PairFirstBatchSampler(new, 2, seed=9, n_batches=5, pairs=[("ibi", "resp")])
    s_old = PairFirstBatchSampler(old, 2, seed=9, n_batches=5, pairs=[("ibi", "resp")])
    loader = make_loader(new, s_new, num_workers=2, prefetch_factor=3)
    assert loader.persistent_workers and loader.prefetch_factor == 3
    reference = reference_make_loader(old, s_old)
    for epoch in range(3):
        s_new.set_epoch(epoch), s_old.set_epoch(epoch)
        for j, (bn, bo) in enumerate(zip(loader, reference, strict=True)):
            assert_same(bn, bo, f"epoch {epoch} batch {j}")


def test_files_numpy_reads_another_way_fall_back_to_np_load(store, tmp_path):
    """A Fortran-ordered or float64 array (not what Night.save writes) reads as np.load reads it."""
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store.path, copy)
    folder = copy / "nights" / "long"
    eeg = np.load(folder / "eeg.npy")
    np.save(folder / "eeg.npy", np.asfortranarray(eeg))
    np.save(folder / "ecg.npy", np.load(folder / "ecg.npy").astype(np.float64))
    new = WindowDataset(CohortStore(copy), "train")
    old = ReferenceWindowDataset(CohortStore(copy), "train")
    for i in (0, 1):
        assert_same(new[i], old[i], f"item {i}")
    (folder / "spo2.npy").write_bytes((folder / "spo2.npy").read_bytes()[:-1000])
    with pytest.raises(OSError, match="truncated"):
        WindowDataset(CohortStore(copy), "train")[1]


def test_make_loader_options():
    class Tiny(torch.utils.data.Dataset):
        feature_crops = False

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return i

    loader = make_loader(Tiny(), [[0, 1], [2, 3]], num_workers=0)
    assert not loader.persistent_workers and loader.prefetch_factor is None
    loader = make_loader(Tiny(), [[0, 1]], num_workers=1, persistent_workers=False)
    assert isinstance(loader, DataLoader) and not loader.persistent_workers
    assert loader.prefetch_factor == 2  # torch's default
