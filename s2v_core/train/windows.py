"""One-hour windows over a cohort store, and the pair-first batch sampler of DASH-InfoNCE.

Pretraining sees non-overlapping windows of :data:`WINDOW_EPOCHS` 30-s epochs; the last window
of a night is zero-padded and masked. A contrastive batch compares ONE modality pair (a, b)
across N windows (METHOD.md section 4), so the pair is sampled first and the batch is filled
with windows that have both.

Design: :class:`PairFirstBatchSampler` yields lists of :class:`PairIndex` ``(index, a, b)``;
:class:`WindowDataset` reads only modalities ``a`` and ``b`` for such a key, and
:func:`collate_pair` stacks the items into one batch dict that names the pair. The batch
therefore carries its own pair through worker processes, and no sampler state is shared.

Speed (issue 15): the DataLoader fetches a whole batch at once (:meth:`WindowDataset.__getitems__`),
and each window's rows are read with one positioned read per file straight into the batch
tensors (in shared memory inside a worker), scaled in place; :func:`make_loader` keeps its worker
processes across epochs and can pin batches for asynchronous copies to a GPU. The batches are
byte for byte those of the item-by-item path (``tests/test_windows_fast.py``).

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
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from numpy.lib import format as npy_format
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from s2v_core.cohort.store import CohortStore
from s2v_core.modalities import MODALITIES, check_modality, samples_per_epoch
from s2v_core.signals.features import epoch_features, features_from_raw, n_features

__all__ = [
    "MIN_VALID_FRACTION",
    "PAIR_WEIGHTINGS",
    "WINDOW_EPOCHS",
    "PairBatch",
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


class _DrawnIndex(NamedTuple):
    """A :class:`PairIndex` that also says how often the loader drew the window before (crops)."""

    index: int
    a: str
    b: str
    draw: int


_CLIP = 20.0  # the clip of s2v_core.night.apply_scaling (its default, as WindowDataset uses it)
_NPY_UNREADABLE = False  # cache marker: read this file through np.load (picklable, for spawned workers)


def _npy_layout(path: Path):
    """``(data offset, shape, dtype)`` of a C-ordered ``.npy`` file, or None for anything else."""
    try:
        with open(path, "rb") as fh:
            version = npy_format.read_magic(fh)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(fh)
            offset = fh.tell()
    except (OSError, ValueError):
        return None
    if fortran_order or dtype.hasobject or len(shape) not in (1, 2):
        return None
    return offset, tuple(int(n) for n in shape), dtype


def _read_npy_rows(path: Path, start: int, stop: int, layout) -> np.ndarray:
    """Rows ``[start, stop)`` of a ``.npy`` file (``layout`` from :func:`_npy_layout`), one read.

    Equal to ``np.load(path, mmap_mode="r")[start:stop]``, without parsing the header or mapping
    the file again: the window's bytes are read straight into a new array.
    """
    offset, shape, dtype = layout
    start, stop = max(0, min(start, shape[0])), max(0, min(stop, shape[0]))
    stop = max(start, stop)
    out = np.empty((stop - start, *shape[1:]), dtype)
    row = dtype.itemsize * math.prod(shape[1:])
    view = memoryview(out).cast("B")
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset + start * row)
        got = 0
        while got < len(view):
            n = fh.readinto(view[got:])
            if not n:
                raise OSError(f"{path}: file ends before row {stop} (truncated .npy)")
            got += n
    return out


def _scale_into(out: np.ndarray, rows: np.ndarray, median: float, iqr: float, ok: np.ndarray) -> None:
    """``out[:] = apply_scaling(rows, median, iqr, ok)`` in place, bit for bit, in fewer passes.

    Same float32 operations in the same order (subtract, divide, clip to +-20, NaN -> 0, invalid
    epochs -> 0); ``nan_to_num``'s infinity passes are skipped because nothing is infinite after
    the clip.
    """
    x = rows if rows.dtype == np.float32 else np.asarray(rows, dtype=np.float32)
    np.subtract(x, np.float32(median), out=out)
    np.divide(out, np.float32(iqr if iqr > 0 else 1.0), out=out)
    np.clip(out, -_CLIP, _CLIP, out=out)
    if out.size and np.isnan(np.max(out)):  # the max is NaN when any value is (one cheap pass)
        out[np.isnan(out)] = 0.0
    out[~ok] = 0.0


class _Recycler:
    """Large batch buffers of the loading process, used again once nothing refers to them.

    A fresh 30-MB buffer costs ~7,000 page faults (the allocator gives freed batches back to the
    system, which zeroes the pages again): more than reading and scaling the windows. A buffer is
    lent as ``torch.from_numpy(array)``; every tensor, view or NumPy view of it keeps ``array``
    referenced, so CPython's reference count says exactly when it is free again. At most
    ``keep`` buffers per shape are kept; beyond them, buffers are plain new ones.
    """

    MIN_BYTES = 1 << 20

    def __init__(self, keep: int = 4):
        self.keep, self.buffers, self.lock = keep, {}, threading.Lock()

    def tensor(self, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        dtype = np.dtype(dtype)
        if math.prod(shape) * dtype.itemsize < self.MIN_BYTES:
            return torch.from_numpy(np.empty(shape, dtype))
        with self.lock:
            kept = self.buffers.setdefault((shape, dtype.str), [])
            for array in kept:
                if sys.getrefcount(array) == 3:  # the list, ``array`` and the argument: free
                    return torch.from_numpy(array)
            array = np.empty(shape, dtype)
            if len(kept) < self.keep:
                kept.append(array)
            return torch.from_numpy(array)


_RECYCLER = _Recycler()


def _new_tensor(shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
    """An uninitialised tensor for a batch: in a DataLoader worker, in shared memory (no copy
    when sent back, as torch's default_collate does); else a recycled buffer (:class:`_Recycler`)."""
    if get_worker_info() is None:
        return _RECYCLER.tensor(shape, dtype)
    like = torch.from_numpy(np.empty(0, dtype))
    try:
        storage = like._typed_storage()._new_shared(math.prod(shape), device=like.device)
        return like.new(storage).view(shape)
    except (AttributeError, RuntimeError, TypeError):
        return torch.from_numpy(np.empty(shape, dtype))


class PairBatch(Sequence):
    """What :meth:`WindowDataset.__getitems__` returns for a batch of one pair: the batch, built at once.

    :func:`collate_pair` returns :attr:`batch` as it is; any other collate function sees a
    sequence of the usual item dicts (views into the batch), so the DataLoader contract holds.
    """

    def __init__(self, batch: dict):
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["index"])

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        b = self.batch
        (a, bb), j = b["pair"], range(len(self))[j]
        return {
            "inputs": {a: b["a"][j], bb: b["b"][j]},
            "valid": {a: b["valid_a"][j], bb: b["valid_b"][j]},
            "pad_valid": b["pad_valid"][j],
            "stages": b["stages"][j],
            "age": float(b["age"][j]),
            "sex": int(b["sex"][j]),
            "site": int(b["site"][j]),
            "night_index": int(b["night_index"][j]),
            "index": int(b["index"][j]),
            "pair": (a, bb),
        }


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

    Only the rows of the window are read (one positioned read per ``.npy`` file, its header
    parsed once per process).
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
        self._layouts: dict[Path, object] = {}  # .npy file -> (offset, shape, dtype) of its data
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

    def _crop(self, index: int, length: int, draw: int | None = None) -> tuple[int, int] | None:
        """The stretch a training window's features are normalised over (None: the whole night).

        With ``feature_crops``, each draw of a window picks one of: the whole night (40 %), the
        window itself (30 %, a 1-h recording), or a random 60-epoch part of it with the rest
        padded (30 %, a 30-min recording such as the DREAMS excerpts). Draws are reproducible:
        they follow ``crop_seed``, the window and how often it was drawn before (``draw``, given by
        :func:`make_loader`'s keys, so that worker processes draw what one process would; else
        counted here).
        """
        if not self.feature_crops:
            return None
        count = self._next_draw(index) if draw is None else int(draw)
        rng = np.random.default_rng([self.crop_seed, index, count])
        u = rng.random()
        if u < 0.4:
            return None
        if u < 0.7 or length <= 60:
            return 0, length
        first = int(rng.integers(0, length - 60 + 1))
        return first, first + 60

    def _next_draw(self, index: int) -> int:
        """How often window ``index`` was drawn before (and count this draw)."""
        count = self._draws.get(index, 0)
        self._draws[index] = count + 1
        return count

    def _window_features(self, k: int, m: str, start: int, stop: int, crop, ok: np.ndarray) -> np.ndarray:
        """Features of the window's rows, normalised over the whole night or over ``crop``."""
        if crop is None:
            return self.night_features(k, m)[start:stop]
        a, b = crop
        out = np.zeros((stop - start, n_features(m)), np.float32)
        out[a:b] = features_from_raw(self.raw_features(k, m)[start + a : start + b], ok[a:b], m)
        return out

    def _rows(self, k: int, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of ``<name>.npy`` of night ``k``: only the window is read."""
        path = self._folders[k] / f"{name}.npy"
        layout = self._layouts.get(path)
        if layout is None:
            layout = self._layouts[path] = _npy_layout(path) or _NPY_UNREADABLE
        if layout is _NPY_UNREADABLE:
            return np.load(path, mmap_mode="r")[start:stop]
        return _read_npy_rows(path, start, stop, layout)

    # --- items ---------------------------------------------------------------------------------
    def __getitem__(self, key: int | PairIndex | tuple) -> dict:
        if isinstance(key, tuple):
            index, a, b = key[:3]
            draw = key[3] if len(key) > 3 else None
            item = self._item(int(index), (a, b), draw)
            item["pair"] = (a, b)
            return item
        return self.item(int(key))

    def __getitems__(self, keys: list) -> list | PairBatch:
        """Many keys at once (the DataLoader's batched fetch).

        Keys that all ask for one pair (what :class:`PairFirstBatchSampler` yields) are read
        straight into the batch tensors: a :class:`PairBatch`, equal to stacking their items.
        """
        keys = list(keys)
        pairs = {tuple(k[1:3]) if isinstance(k, tuple) else None for k in keys}
        if not keys or len(pairs) != 1 or None in pairs:
            return [self[k] for k in keys]
        return PairBatch(self._pair_batch(keys))

    def item(self, index: int, modalities: tuple[str, ...] | None = None) -> dict:
        """Window ``index`` with the given modalities (default: those the night has).

        A requested modality the night lacks comes back as zeros with ``valid`` all False.
        """
        return self._item(index, modalities, None)

    def _item(self, index: int, modalities: tuple[str, ...] | None, draw: int | None) -> dict:
        k, index = self._locate(index)
        mods = self._present[k] if modalities is None else tuple(modalities)
        w = self.window_epochs
        inputs = {m: _RECYCLER.tensor((w, self.token_width(m)), np.float32) for m in mods}
        valid = {m: torch.from_numpy(np.empty(w, bool)) for m in mods}
        pad_valid, stages = np.empty(w, bool), np.empty(w, np.int64)
        self._fill(index, k, mods, [v.numpy() for v in inputs.values()], [v.numpy() for v in valid.values()],
                   pad_valid, stages, draw)  # fmt: skip
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

    def _pair_batch(self, keys: list) -> dict:
        """The :func:`collate_pair` batch of ``keys`` (one pair), each window read into its row."""
        a, b = keys[0][1], keys[0][2]
        n, w = len(keys), self.window_epochs
        xa = _new_tensor((n, w, self.token_width(a)), np.float32)
        xb = _new_tensor((n, w, self.token_width(b)), np.float32)
        valid_a, valid_b = _new_tensor((n, w), np.bool_), _new_tensor((n, w), np.bool_)
        pad, stages = _new_tensor((n, w), np.bool_), _new_tensor((n, w), np.int64)
        meta = {"age": np.empty(n, np.float32), "sex": np.empty(n, np.int64), "site": np.empty(n, np.int64),
                "night_index": np.empty(n, np.int64), "index": np.empty(n, np.int64)}  # fmt: skip
        arrays = [t.numpy() for t in (xa, xb, valid_a, valid_b, pad, stages)]
        for j, key in enumerate(keys):
            k, index = self._locate(int(key[0]))
            draw = key[3] if len(key) > 3 else None
            self._fill(index, k, (a, b), [arrays[0][j], arrays[1][j]], [arrays[2][j], arrays[3][j]],
                       arrays[4][j], arrays[5][j], draw)  # fmt: skip
            meta["age"][j], meta["sex"][j], meta["site"][j] = self._age[k], self._sex[k], self._site[k]
            meta["night_index"][j], meta["index"][j] = k, index
        return {
            "pair": (a, b),
            "a": xa,
            "b": xb,
            "valid": pad & valid_a & valid_b,
            "valid_a": valid_a,
            "valid_b": valid_b,
            "pad_valid": pad,
            "stages": stages,
            **{name: torch.from_numpy(v) for name, v in meta.items()},
        }

    def _locate(self, index: int) -> tuple[int, int]:
        """(night, window) of a window index, negative indices counted from the end."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        index %= len(self)
        return int(self._night[index]), index

    def _fill(self, index: int, k: int, mods: Sequence[str], xs: list[np.ndarray], oks: list[np.ndarray],
              pad_valid: np.ndarray, stages: np.ndarray, draw: int | None) -> None:  # fmt: skip
        """Write window ``index`` (of night ``k``) into the given arrays; every element is written.

        ``xs[i]`` ``(window_epochs, token_width)`` float32 and ``oks[i]`` ``(window_epochs,)`` bool
        receive modality ``mods[i]``; ``pad_valid`` bool and ``stages`` int64 ``(window_epochs,)``.
        """
        start, length = int(self._start[index]), int(self._length[index])
        stop, w = start + length, self.window_epochs
        crop = self._crop(index, length, draw)
        keep = np.zeros(w, bool)  # epochs of the window the item shows (the rest is padding)
        keep[slice(*crop) if crop else slice(0, length)] = True
        valid_rows = self._rows(k, "valid", start, stop)
        stages[:length] = self._rows(k, "stages", start, stop)
        stages[length:] = -1
        stages[~keep] = -1
        pad_valid[:] = keep
        for m, x, ok in zip(mods, xs, oks, strict=True):
            ok[:] = False
            if m not in self._scaling[k]:
                x[:] = 0.0
                continue
            ok[:length] = valid_rows[:, MODALITIES.index(m)]
            spe = samples_per_epoch(m) if self.raw else 0
            if self.raw:
                _scale_into(x[:length, :spe], self._rows(k, m, start, stop), *self._scaling[k][m], ok[:length])
            if self.features:
                x[:length, spe:] = self._window_features(k, m, start, stop, crop, ok[:length])
            x[length:] = 0.0
            ok &= keep
            x[~keep] = 0.0
        if crop is not None and crop[0] > 0:  # a crop starts the window, as a short recording would
            shift = -crop[0]
            for arr in (stages, pad_valid, *oks):
                arr[:] = np.roll(arr, shift)
            for x in xs:
                x[:] = np.roll(x, shift, axis=0)


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


def collate_pair(items: list[dict] | PairBatch) -> dict:
    """Stack dataset items fetched with :class:`PairIndex` keys into one contrastive batch.

    A :class:`PairBatch` (the DataLoader's batched fetch, :meth:`WindowDataset.__getitems__`) is
    already that batch and comes back as it is.

    Returns
    -------
    dict
        ``"pair"``: (a, b); ``"a"``, ``"b"``: FloatTensor ``(N, T, spe_a)``, ``(N, T, spe_b)``;
        ``"valid"``: BoolTensor ``(N, T)`` = ``pad_valid & valid_a & valid_b``; ``"valid_a"``,
        ``"valid_b"``, ``"pad_valid"``: BoolTensor ``(N, T)``; ``"stages"``: LongTensor
        ``(N, T)``; ``"age"``: FloatTensor ``(N,)`` (NaN unknown); ``"sex"``, ``"site"``,
        ``"night_index"``, ``"index"``: LongTensor ``(N,)``.
    """
    if isinstance(items, PairBatch):
        return items.batch
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


class _CountedDraws(Sampler[list[_DrawnIndex]]):
    """The batches of a pair sampler, each key told how often its window was drawn before.

    Counted here, in the loading process, in the order the batches are drawn: a window's crops
    are then the same with any number of worker processes, persistent or not, as with none.
    """

    def __init__(self, sampler: PairFirstBatchSampler, dataset: WindowDataset):
        self.sampler, self.dataset = sampler, dataset

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        n = len(self.dataset)
        for batch in self.sampler:
            yield [_DrawnIndex(int(k[0]), k[1], k[2], self.dataset._next_draw(int(k[0]) % n)) for k in batch]


def make_loader(
    dataset: WindowDataset,
    sampler: PairFirstBatchSampler,
    num_workers: int = 0,
    *,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    persistent_workers: bool = True,
) -> DataLoader:
    """A DataLoader whose batches are :func:`collate_pair` dicts, one modality pair per batch.

    Each batch is read straight into its tensors (:meth:`WindowDataset.__getitems__`). With
    ``num_workers > 0`` the workers live as long as the loader (``persistent_workers``: not
    restarted every epoch, their per-night feature caches kept) and each keeps
    ``prefetch_factor`` batches ready (torch's default, 2, when None). ``pin_memory`` (use it for
    CUDA) pins every batch so that ``tensor.to(device, non_blocking=True)`` copies asynchronously.
    The batches are the same whatever the number of workers (crops included).
    """
    if dataset.feature_crops:
        sampler = _CountedDraws(sampler, dataset)
    extra = {}
    if num_workers > 0:
        extra["persistent_workers"] = bool(persistent_workers)
        if prefetch_factor is not None:
            extra["prefetch_factor"] = int(prefetch_factor)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_pair,
        num_workers=num_workers,
        pin_memory=pin_memory,
        **extra,
    )
