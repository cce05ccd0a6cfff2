"""The training data path as it was before issue 15, frozen: the reference the fast path must equal.

:class:`ReferenceWindowDataset` reads every window the old way (one ``np.load`` memory map per file
and item, :func:`s2v_core.night.apply_scaling`, one array per item), :func:`reference_collate_pair`
stacks items, and :func:`reference_make_loader` builds the old DataLoader (workers restarted every
epoch, no batched fetch). ``tests/test_windows_fast.py`` compares batches from this path and from
:mod:`s2v_core.train.windows` byte for byte; ``bench/bench_dataloader.py`` times both.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from s2v_core.modalities import MODALITIES, samples_per_epoch
from s2v_core.night import apply_scaling
from s2v_core.train.windows import WindowDataset

__all__ = [
    "ReferenceWindowDataset",
    "reference_collate_pair",
    "reference_make_loader",
    "reference_train_step",
]


class ReferenceWindowDataset(WindowDataset):
    """:class:`WindowDataset` with the item code of before issue 15 (same windows, same sampler)."""

    __getitems__ = None  # the DataLoader then fetches item by item, as before

    def _crop(self, index, length, draw=None):  # noqa: ARG002 - the old counter only
        if not self.feature_crops:
            return None
        count = self._draws.get(index, 0)
        self._draws[index] = count + 1
        rng = np.random.default_rng([self.crop_seed, index, count])
        u = rng.random()
        if u < 0.4:
            return None
        if u < 0.7 or length <= 60:
            return 0, length
        first = int(rng.integers(0, length - 60 + 1))
        return first, first + 60

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, a, b = key[:3]
            item = self.item(int(index), (a, b))
            item["pair"] = (a, b)
            return item
        return self.item(int(key))

    def item(self, index: int, modalities: tuple[str, ...] | None = None) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        index %= len(self)
        k, start, length = (
            int(self._night[index]),
            int(self._start[index]),
            int(self._length[index]),
        )
        stop, w = start + length, self.window_epochs
        folder = self._folders[k]
        crop = self._crop(index, length)
        keep = np.zeros(w, bool)
        keep[slice(*crop) if crop else slice(0, length)] = True
        valid_rows = np.load(folder / "valid.npy", mmap_mode="r")[start:stop]
        stages = np.full(w, -1, np.int64)
        stages[:length] = np.load(folder / "stages.npy", mmap_mode="r")[start:stop]
        stages[~keep] = -1
        pad_valid = keep.copy()
        inputs, valid = {}, {}
        for m in self._present[k] if modalities is None else modalities:
            x = np.zeros((w, self.token_width(m)), np.float32)
            ok = np.zeros(w, bool)
            if m in self._scaling[k]:
                ok[:length] = valid_rows[:, MODALITIES.index(m)]
                spe = samples_per_epoch(m) if self.raw else 0
                if self.raw:
                    rows = np.load(folder / f"{m}.npy", mmap_mode="r")[start:stop]
                    x[:length, :spe] = apply_scaling(rows, *self._scaling[k][m], ok[:length])
                if self.features:
                    x[:length, spe:] = self._window_features(k, m, start, stop, crop, ok[:length])
                ok &= keep
                x[~keep] = 0.0
            inputs[m], valid[m] = x, ok
        if crop is not None and crop[0] > 0:
            shift = -crop[0]
            stages, pad_valid = np.roll(stages, shift), np.roll(pad_valid, shift)
            inputs = {m: np.roll(v, shift, axis=0) for m, v in inputs.items()}
            valid = {m: np.roll(v, shift) for m, v in valid.items()}
        inputs = {m: torch.from_numpy(v) for m, v in inputs.items()}
        valid = {m: torch.from_numpy(v) for m, v in valid.items()}
        return {
            "inputs": inputs,
            "valid": valid,
            "pad_valid": torch.from_numpy(pad_valid),
            "stages": torch.from_numpy(stages),
            "age": float(self._age[k]),
            "sex": int(self._sex[k]),
            "site": int(self._site[k]),
            "night_index": k,
            "index": index,
        }


def reference_collate_pair(items: list[dict]) -> dict:
    """The old ``collate_pair``: one ``torch.stack`` per field."""
    if not items:
        raise ValueError("empty batch")
    pair = items[0].get("pair")
    if pair is None or any(it.get("pair") != pair for it in items):
        raise ValueError("collate_pair needs items fetched with PairIndex keys sharing one pair")
    a, b = pair
    pad = torch.stack([it["pad_valid"] for it in items])
    valid_a = torch.stack([it["valid"][a] for it in items])
    valid_b = torch.stack([it["valid"][b] for it in items])
    return {
        "pair": (a, b),
        "a": torch.stack([it["inputs"][a] for it in items]),
        "b": torch.stack([it["inputs"][b] for it in items]),
        "valid": pad & valid_a & valid_b,
        "valid_a": valid_a,
        "valid_b": valid_b,
        "pad_valid": pad,
        "stages": torch.stack([it["stages"] for it in items]),
        "age": torch.tensor([it["age"] for it in items], dtype=torch.float32),
        "sex": torch.tensor([it["sex"] for it in items], dtype=torch.long),
        "site": torch.tensor([it["site"] for it in items], dtype=torch.long),
        "night_index": torch.tensor([it["night_index"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


def reference_make_loader(dataset, sampler, num_workers: int = 0, *, pin_memory: bool = False):
    """The old ``make_loader``: workers restarted every epoch, default prefetch."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=reference_collate_pair,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def reference_train_step(
    net: nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    *,
    lr: float,
    grad_clip: float,
    device: torch.device,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The old ``s2v_core.train.pretrain.train_step``: masks combined on the host, blocking copies,
    and the loss and gradient norm read on the host every step (the wait kept as it was).

    Returns
    -------
    loss, grad_norm : torch.Tensor
        0-dim CPU tensors holding the values read (the current loop's types); grad_norm is NaN
        when ``grad_clip`` is 0.
    """
    a, b = batch["pair"]
    pad = batch["pad_valid"]
    moved = {k: batch[k].to(device, non_blocking=True) for k in ("a", "b", "valid")}
    valid_a = (batch["valid_a"] & pad).to(device)
    valid_b = (batch["valid_b"] & pad).to(device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if bf16 and device.type == "cuda"
        else contextlib.nullcontext()
    )
    with autocast:
        za, zb = net(a, moved["a"], valid_a, b, moved["b"], valid_b)  # (N, T, P) each
    meta = [batch[k].to(device) for k in ("age", "sex", "site", "night_index")]
    loss = loss_fn(za.float(), zb.float(), moved["valid"], *meta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = float("nan")
    if grad_clip > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return torch.tensor(float(loss.detach())), torch.tensor(grad_norm)
