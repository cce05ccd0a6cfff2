"""One-hour windows over a cohort store, and the pair-first batch sampler of DASH-InfoNCE.

Pretraining sees non-overlapping windows of :data:`WINDOW_EPOCHS` 30-s epochs; the last window
of a night is zero-padded and masked. A contrastive batch compares ONE modality pair (a, b)
across N windows (METHOD.md section 4), so the pair is sampled first and the batch is filled
with windows that have both.

Design: :class:`PairFirstBatchSampler` yields lists of :class:`PairIndex` ``(index, a, b)``;
:class:`WindowDataset` reads only modalities ``a`` and ``b`` for such a key, and
:func:`collate_pair` stacks the items into one batch dict that names the pair. The batch
therefore carries its own pair through worker processes, and no sampler state is shared.

Examples
--------
>>> ds = WindowDataset(CohortStore("store/"), "train")  # doctest: +SKIP
>>> loader = make_loader(ds, PairFirstBatchSampler(ds, 32, seed=0))  # doctest: +SKIP
>>> batch = next(iter(loader)); batch["pair"], batch["a"].shape  # doctest: +SKIP
(('eeg', 'ecg'), torch.Size([32, 120, 3840]))
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from s2v_core.cohort.store import CohortStore
from s2v_core.modalities import MODALITIES, check_modality, samples_per_epoch
from s2v_core.night import apply_scaling
from s2v_core.signals.features import epoch_features, features_from_raw, n_features

__all__ = [
    "MIN_VALID_FRACTION",
    "PAIR_WEIGHTINGS",
    "WINDOW_EPOCHS",
    "PairFirstBatchSampler",
    "PairIndex",
    "WindowDataset",
    "WindowRef",
    "collate_pair",
    "make_loader",
]

log = logging.getLogger(__name__)

WINDOW_EPOCHS = 120
"""Epochs per pretraining window (one hour of 30-s tokens)."""

MIN_VALID_FRACTION = 0.1
"""Default share of a window's real epochs a modality needs to count as present in it."""


@dataclass(frozen=True)
class WindowRef:
    """Epochs ``[start, start + length)`` of one night; ``length < WINDOW_EPOCHS`` only at the end."""

    night: str
    start: int
    length: int


class PairIndex(NamedTuple):
    """A dataset key asking for window ``index`` with modalities ``a`` and ``b`` only."""

    index: int
    a: str
    b: str


class WindowDataset(Dataset):
    """Non-overlapping windows over the nights of one split of a :class:`CohortStore`.

    Parameters
    ----------
    store : CohortStore or path
    split : {"train", "val", "test"} or None
        Nights of this split (all nights when None).
    modalities : tuple of str, optional
        Only these modalities are read and counted as present (default: all nine).
    window_epochs : int
        Epochs per window.
    min_valid_fraction : float
        A modality is present in a window when at least ``max(1, ceil(min_valid_fraction *
        real_epochs))`` of its epochs are valid (see :meth:`windows_with`).

    Notes
    -----
    ``dataset[i]`` (or ``dataset[PairIndex(i, a, b)]`` for two modalities) returns a dict:

    - ``"inputs"``: {modality: FloatTensor ``(window_epochs, samples_per_epoch)``}, robustly
      scaled with the night's ``scaling.json``; zero on padding and invalid epochs.
    - ``"valid"``: {modality: BoolTensor ``(window_epochs,)``}; ``"pad_valid"``: BoolTensor,
      False on padding; ``"stages"``: LongTensor, -1 on padding and unscored epochs.
    - ``"age"`` (float, NaN unknown), ``"sex"`` (0 F, 1 M, -1 unknown), ``"site"`` (index into
      ``store.site_index()``, -1 unknown), ``"night_index"`` (position of the night in
      :attr:`night_ids`), ``"index"`` (the window), and ``"pair"`` for a :class:`PairIndex` key.

    Only the rows of the window are read from the memory-mapped arrays.
    """

    def __init__(
        self,
        store: CohortStore | str | Path,
        split: str | None = None,
        *,
        modalities: tuple[str, ...] | None = None,
        window_epochs: int = WINDOW_EPOCHS,
        min_valid_fraction: float = MIN_VALID_FRACTION,
        raw: bool = True,
        features: int = 0,
        feature_crops: bool = False,
        crop_seed: int = 0,
    ):
        self.store = store if isinstance(store, CohortStore) else CohortStore(store)
        if not (raw or features):
            raise ValueError("a window needs the raw samples, the features or both")
        self.raw, self.features = bool(raw), int(features)
        self.feature_crops, self.crop_seed = bool(feature_crops) and bool(features), int(crop_seed)
        self._raw_features: dict[tuple[int, str], np.ndarray] = {}
        self._night_features: dict[tuple[int, str], np.ndarray] = {}
        self._draws: dict[int, int] = {}
        wanted = MODALITIES if modalities is None else tuple(check_modality(m) for m in modalities)
        self.modalities: tuple[str, ...] = tuple(m for m in MODALITIES if m in wanted)
        if window_epochs < 1:
            raise ValueError(f"window_epochs must be >= 1, got {window_epochs}")
        if not 0 <= min_valid_fraction <= 1:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
        self.window_epochs = int(window_epochs)
        self.min_valid_fraction = float(min_valid_fraction)
        self.night_ids: list[str] = self.store.nights(split)
        sites = self.store.site_index()
        cols = [MODALITIES.index(m) for m in self.modalities]
        self._folders, self._scaling, self._present = [], [], []
        n = len(self.night_ids)
        self._age = np.full(n, np.nan, np.float32)
        self._sex = np.full(n, -1, np.int64)
        self._site = np.full(n, -1, np.int64)
        starts, lengths, owners, counts = [], [], [], []
        for k, night in enumerate(self.night_ids):
            entry = self.store.entry(night)
            self._age[k] = np.nan if entry.age is None else entry.age
            self._sex[k] = self.store.sex_code(entry.sex)
            self._site[k] = sites.get(entry.site, -1) if entry.site else -1
            folder = self.store.folder(night)
            scaling = {m: s for m, s in self.store.scaling(night).items() if m in self.modalities}
            self._folders.append(folder)
            self._scaling.append(scaling)
            self._present.append(tuple(m for m in self.modalities if m in scaling))
            valid = np.load(folder / "valid.npy")  # (n_epochs, 9) bool, small
            first = np.arange(0, len(valid), self.window_epochs)
            c = np.zeros((len(first), len(MODALITIES)), np.int32)
            keep = [j for j in cols if MODALITIES[j] in scaling]
            if len(first):
                c[:, keep] = np.add.reduceat(valid[:, keep].astype(np.int32), first, axis=0)
            starts.append(first)
            lengths.append(np.minimum(self.window_epochs, len(valid) - first))
            owners.append(np.full(len(first), k))
            counts.append(c)
        self._start = np.concatenate(starts or [np.zeros(0, int)]).astype(np.int64)
        self._length = np.concatenate(lengths or [np.zeros(0, int)]).astype(np.int64)
        self._night = np.concatenate(owners or [np.zeros(0, int)]).astype(np.int64)
        self.valid_counts = np.concatenate(counts or [np.zeros((0, len(MODALITIES)), np.int32)])
        """``(n_windows, 9)`` int: valid epochs per window and modality (columns in MODALITIES order)."""
        need = np.maximum(1, np.ceil(self.min_valid_fraction * self._length - 1e-9)).astype(
            np.int64
        )
        self._present_mask = self.valid_counts >= need[:, None]

    # --- indexing ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._start)

    def ref(self, index: int) -> WindowRef:
        """Which night and epochs window ``index`` covers."""
        return WindowRef(
            self.night_ids[self._night[index]], int(self._start[index]), int(self._length[index])
        )

    @property
    def window_night_index(self) -> np.ndarray:
        """``(n_windows,)`` int: the night (position in :attr:`night_ids`) of each window."""
        return self._night.copy()

    def windows_with(self, modality: str, min_valid: int | None = None) -> np.ndarray:
        """Indices of windows where ``modality`` is present.

        Parameters
        ----------
        modality : str
        min_valid : int, optional
            Valid epochs required; default ``max(1, ceil(min_valid_fraction * real_epochs))``.
        """
        j = MODALITIES.index(check_modality(modality))
        if min_valid is None:
            return np.flatnonzero(self._present_mask[:, j])
        return np.flatnonzero(self.valid_counts[:, j] >= max(1, int(min_valid)))

    def presence(self) -> np.ndarray:
        """``(n_windows, 9)`` bool: the modality is present (default threshold) in the window."""
        return self._present_mask.copy()

    def signal(self, night_index: int, modality: str) -> np.memmap:
        """The whole ``(n_epochs, spe)`` array of one night's modality, memory-mapped, physical units."""
        return np.load(self._folders[night_index] / f"{modality}.npy", mmap_mode="r")

    def present(self, night_index: int) -> tuple[str, ...]:
        """Modalities (of this dataset's) that night ``night_index`` has."""
        return self._present[night_index]

    def token_width(self, modality: str) -> int:
        """Width of one epoch's input of ``modality``: scaled samples, then features."""
        return (samples_per_epoch(modality) if self.raw else 0) + (n_features(modality) if self.features else 0)

    def raw_features(self, night_index: int, modality: str) -> np.ndarray:
        """Unnormalised base features of a whole night (computed once per night and kept)."""
        key = (night_index, modality)
        if key not in self._raw_features:
            valid = np.load(self._folders[night_index] / "valid.npy")[:, MODALITIES.index(modality)]
            self._raw_features[key] = epoch_features(modality, self.signal(night_index, modality), valid)
        return self._raw_features[key]

    def night_features(self, night_index: int, modality: str) -> np.ndarray:
        """The engineered features of a whole night, normalised within it (kept once computed)."""
        key = (night_index, modality)
        if key not in self._night_features:
            valid = np.load(self._folders[night_index] / "valid.npy")[:, MODALITIES.index(modality)]
            self._night_features[key] = features_from_raw(self.raw_features(night_index, modality), valid, modality)
        return self._night_features[key]

    def _crop(self, index: int, length: int) -> tuple[int, int] | None:
        """The stretch a training window's features are normalised over (None: the whole night).

        With ``feature_crops``, each draw of a window picks one of: the whole night (40 %), the
        window itself (30 %, a 1-h recording), or a random 60-epoch part of it with the rest
        padded (30 %, a 30-min recording such as the DREAMS excerpts). Draws are reproducible:
        they follow ``crop_seed``, the window and how often it was drawn before.
        """
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

    def _window_features(self, k: int, m: str, start: int, stop: int, crop, ok: np.ndarray) -> np.ndarray:
        """Features of the window's rows, normalised over the whole night or over ``crop``."""
        if crop is None:
            return self.night_features(k, m)[start:stop]
        a, b = crop
        out = np.zeros((stop - start, n_features(m)), np.float32)
        out[a:b] = features_from_raw(self.raw_features(k, m)[start + a : start + b], ok[a:b], m)
        return out

    # --- items ---------------------------------------------------------------------------------
    def __getitem__(self, key: int | PairIndex | tuple) -> dict:
        if isinstance(key, tuple):
            index, a, b = key
            item = self.item(int(index), (a, b))
            item["pair"] = (a, b)
            return item
        return self.item(int(key))

    def item(self, index: int, modalities: tuple[str, ...] | None = None) -> dict:
        """Window ``index`` with the given modalities (default: those the night has).

        A requested modality the night lacks comes back as zeros with ``valid`` all False.
        """
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
        keep = np.zeros(w, bool)  # epochs of the window the item shows (the rest is padding)
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
                    rows = self.signal(k, m)[start:stop]  # reads only this window's rows
                    x[:length, :spe] = apply_scaling(rows, *self._scaling[k][m], ok[:length])
                if self.features:
                    x[:length, spe:] = self._window_features(k, m, start, stop, crop, ok[:length])
                ok &= keep
                x[~keep] = 0.0
            inputs[m], valid[m] = x, ok
        if crop is not None and crop[0] > 0:  # a crop starts the window, as a short recording would
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


PAIR_WEIGHTINGS = ("windows", "balanced", "sqrt")
"""How the pair-first sampler chooses the modality pair of each batch."""


class PairFirstBatchSampler(Sampler[list[PairIndex]]):
    """Batches of windows that all have one modality pair (a, b), the pair drawn first.

    Each batch: draw a pair with probability proportional to the number of windows that have
    both modalities (only pairs with at least ``batch_size`` such windows take part), then take
    ``batch_size`` distinct windows having both. Per pair, windows are consumed from a shuffled
    permutation (every eligible window is used once before any is reused).

    Parameters
    ----------
    dataset : WindowDataset
    batch_size : int
        Windows per batch (N of the contrastive loss).
    pairs : sequence of (str, str), optional
        Candidate pairs; default all pairs of ``dataset.modalities``.
    seed : int
        Together with the epoch (:meth:`set_epoch`) fixes the whole sequence of batches.
    drop_last : bool
        Batches per epoch ``len(dataset) // batch_size`` (True) or rounded up (False). Batches
        are always full.
    rank, world_size : int
        Distributed share: every rank builds the same global sequence and keeps batches
        ``rank, rank + world_size, ...``, so ranks get disjoint batches and equal counts.
    n_batches : int, optional
        Global batches per epoch, overriding the default.
    min_valid : int, optional
        Valid epochs a modality needs in a window (default: the dataset's fraction rule).

    Yields
    ------
    list of PairIndex
        ``batch_size`` keys for the dataset, all with the same pair.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        batch_size: int,
        *,
        pairs: list[tuple[str, str]] | None = None,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        n_batches: int | None = None,
        min_valid: int | None = None,
        pair_weighting: str = "windows",
    ):
        if pair_weighting not in PAIR_WEIGHTINGS:
            raise ValueError(f"pair_weighting must be one of {', '.join(PAIR_WEIGHTINGS)}, got {pair_weighting!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        self.batch_size, self.seed, self.rank, self.world_size = (
            int(batch_size),
            int(seed),
            rank,
            world_size,
        )
        self.epoch = 0
        candidates = list(itertools.combinations(dataset.modalities, 2)) if pairs is None else pairs
        self.pair_counts: dict[tuple[str, str], int] = {}
        """Windows having both modalities, for every candidate pair."""
        self._pairs, self._windows = [], []
        for a, b in candidates:
            check_modality(a), check_modality(b)
            if a == b:
                raise ValueError(f"a pair needs two different modalities, got ({a!r}, {b!r})")
            both = np.intersect1d(
                dataset.windows_with(a, min_valid), dataset.windows_with(b, min_valid)
            )
            self.pair_counts[(a, b)] = len(both)
            if len(both) >= self.batch_size:
                self._pairs.append((a, b))
                self._windows.append(both)
        if not self._pairs:
            raise ValueError(
                f"no modality pair is present in at least batch_size={batch_size} windows; "
                f"windows per pair: {self.pair_counts}"
            )
        sizes = np.array([len(w) for w in self._windows], float)
        # "windows": pairs drawn in proportion to their windows (rare pairs get few batches);
        # "balanced": every eligible pair equally often; "sqrt": in between.
        weights = {"windows": sizes, "balanced": np.ones_like(sizes), "sqrt": np.sqrt(sizes)}[pair_weighting]
        self.pair_probabilities = weights / weights.sum()
        rounding = math.floor if drop_last else math.ceil
        total = n_batches if n_batches is not None else rounding(len(dataset) / self.batch_size)
        self.batches_per_rank = int(rounding(total / world_size))
        if self.batches_per_rank == 0:
            log.warning(
                "pair sampler: 0 batches per rank (%d windows, batch_size %d, world_size %d)",
                len(dataset),
                batch_size,
                world_size,
            )

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Pairs that can be sampled (at least ``batch_size`` windows have both)."""
        return list(self._pairs)

    def set_epoch(self, epoch: int) -> None:
        """Reseed for a new epoch (call on every rank with the same value, as for DDP)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_rank

    def _draw(self, k: int, state: dict, rng: np.random.Generator) -> np.ndarray:
        windows = self._windows[k]
        perm, pos = state.get(k) or (rng.permutation(windows), 0)
        out = perm[pos : pos + self.batch_size]
        if len(out) == self.batch_size:
            state[k] = (perm, pos + self.batch_size)
            return out
        fresh = rng.permutation(windows)
        fresh = fresh[~np.isin(fresh, out)]  # distinct within the batch across the reshuffle
        take = self.batch_size - len(out)
        state[k] = (fresh, take)
        return np.concatenate([out, fresh[:take]])

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.batches_per_rank * self.world_size
        choices = rng.choice(len(self._pairs), size=total, p=self.pair_probabilities)
        state: dict = {}
        for j, k in enumerate(choices):
            idx = self._draw(int(k), state, rng)  # every rank draws every batch: same rng stream
            if j % self.world_size == self.rank:
                a, b = self._pairs[k]
                yield [PairIndex(int(i), a, b) for i in idx]


def collate_pair(items: list[dict]) -> dict:
    """Stack dataset items fetched with :class:`PairIndex` keys into one contrastive batch.

    Returns
    -------
    dict
        ``"pair"``: (a, b); ``"a"``, ``"b"``: FloatTensor ``(N, T, spe_a)``, ``(N, T, spe_b)``;
        ``"valid"``: BoolTensor ``(N, T)`` = ``pad_valid & valid_a & valid_b``; ``"valid_a"``,
        ``"valid_b"``, ``"pad_valid"``: BoolTensor ``(N, T)``; ``"stages"``: LongTensor
        ``(N, T)``; ``"age"``: FloatTensor ``(N,)`` (NaN unknown); ``"sex"``, ``"site"``,
        ``"night_index"``, ``"index"``: LongTensor ``(N,)``.
    """
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


def make_loader(
    dataset: WindowDataset,
    sampler: PairFirstBatchSampler,
    num_workers: int = 0,
    *,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader whose batches are :func:`collate_pair` dicts, one modality pair per batch."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_pair,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
