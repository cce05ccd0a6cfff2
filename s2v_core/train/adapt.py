"""The real-data adaptation stage: a synthetic-trained classifier fine-tuned on synthetic + real nights.

The shipped model is first trained on synthetic nights only; this stage then fine-tunes the whole
classifier (gates and staging head included) on the synthetic store and a store of real
recordings together, with the real nights drawn more often (each real site gets
``real_share / n_real_sites`` of the windows), so that it learns what real signals look like
without forgetting the modalities and subsets only the synthetic cohort has. Every night of both
stores is used for training and the last pass is kept (there is no real validation night to
choose by; the number of passes is fixed in :data:`ADAPTATION`).

For an honest figure on real data, the same stage is run once per real subject with that subject
left out (``drop_subjects``), and only the held-out subject is scored
(``bench/bench_real.py``).

With several ``seeds`` the stage is run once per seed from the same classifier and the runs'
weights are averaged into one classifier (a uniform "model soup"; :func:`average_checkpoints`):
the same cost at inference as one run, less of one draw's luck (``bench/adapt_soup.py``).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from s2v_core.cohort.prepare import combine_stores
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.io.atomic import staged_dir
from s2v_core.model.checkpoint import load_checkpoint, save_checkpoint
from s2v_core.train.finetune import FinetuneConfig, FinetuneResult, finetune, refuse_unlabelled
from s2v_core.train.windows import WINDOW_EPOCHS

__all__ = ["ADAPTATION", "REAL_SHARE", "adapt_to_real", "average_checkpoints", "real_site_weights"]

ADAPTATION = FinetuneConfig(
    epochs=4,
    batch_size=16,
    lr=3e-4,
    modality_dropout=0.5,
    freeze_tokenizers=False,
    init_head=True,
    class_weighted=True,
    seed=0,
)
"""Settings of the adaptation stage (the recipe and the leave-one-subject-out benchmark share them)."""

REAL_SHARE = 0.4
"""Share of the training windows drawn from real nights."""


def real_site_weights(synthetic: CohortStore, real: CohortStore, real_share: float = REAL_SHARE,
                      drop_subjects: Iterable[str] = ()) -> dict[str, float]:  # fmt: skip
    """``{site: weight}`` that gives the real sites ``real_share`` of the draws, equally between them."""
    dropped = set(drop_subjects)

    def windows(store: CohortStore) -> dict[str, float]:
        out: dict[str, float] = {}
        for n in store.nights():
            e = store.entry(n)
            if e.subject not in dropped:
                out[e.site or ""] = out.get(e.site or "", 0) + math.ceil(e.n_epochs / WINDOW_EPOCHS)
        return out

    synth, reals = windows(synthetic), windows(real)
    if not reals:
        raise S2VError("the real store has no night left to adapt on")
    overlap = set(synth) & set(reals)
    if overlap:
        raise S2VError(f"site(s) {', '.join(sorted(overlap))} are in both the synthetic and the real store")
    n_synth = sum(synth.values())
    per_site = real_share / (1 - real_share) * n_synth / len(reals)
    return {site: per_site / count for site, count in reals.items()}


def adapt_to_real(
    synthetic_store: str | Path,
    real_store: str | Path,
    out_dir: str | Path,
    pretrained: str | Path,
    *,
    drop_subjects: Iterable[str] = (),
    cfg: FinetuneConfig = ADAPTATION,
    real_share: float = REAL_SHARE,
    seeds: Sequence[int] | None = None,
) -> FinetuneResult:
    """Fine-tune ``pretrained`` (a classifier) on both stores; see the module docstring.

    Parameters
    ----------
    synthetic_store, real_store : path
        Prepared stores; their sites must differ (the real sites are weighted up).
    out_dir : path
        Run folder (``best/`` is the last pass).
    pretrained : path
        The synthetic-trained classifier to start from (its gates and head too).
    drop_subjects : iterable of str
        Real subjects left out (leave-one-subject-out evaluation).
    seeds : sequence of int, optional
        Default ``(cfg.seed,)``: one run. Several: one run per seed in ``out_dir/seed<k>/`` and
        ``out_dir/best/`` the average of their weights; ``history`` has a ``seed`` column.
    """
    seeds = (cfg.seed,) if seeds is None else tuple(int(k) for k in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise S2VError(f"seeds must be distinct and at least one, got {list(seeds)}")
    drop = tuple(drop_subjects)
    synth, real = CohortStore(synthetic_store), CohortStore(real_store)
    weights = real_site_weights(synth, real, real_share, drop)
    # before anything is built: real nights without hypnograms would be drawn often and teach nothing
    kept = [n for n in real.nights() if real.entry(n).subject not in set(drop)]
    refuse_unlabelled(real, None, f"{Path(real_store).name}: nothing to adapt on", nights=kept)
    work = Path(tempfile.mkdtemp(prefix="s2v-adapt-"))
    try:
        combined = combine_stores([synthetic_store, real_store], work / "store", drop_subjects=drop,
                                  split_of=lambda entry: "train")  # fmt: skip
        if len(seeds) == 1:
            return finetune(combined, out_dir, replace(cfg, site_weights=weights, seed=seeds[0]), pretrained=pretrained)
        runs = [finetune(combined, Path(out_dir) / f"seed{k}", replace(cfg, site_weights=weights, seed=k),
                         pretrained=pretrained) for k in seeds]  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    average_checkpoints([r.checkpoint for r in runs], Path(out_dir) / "best")
    history = pd.concat([r.history.assign(seed=k) for k, r in zip(seeds, runs, strict=True)], ignore_index=True)
    history.to_csv(Path(out_dir) / "history.csv", index=False)
    return FinetuneResult(Path(out_dir), history, dict(runs[0].best))


def average_checkpoints(checkpoints: Sequence[str | Path], out: str | Path) -> Path:
    """One classifier whose floating-point weights are the mean of ``checkpoints``' (same model).

    Meant for runs fine-tuned from one classifier with different seeds, which stay close enough
    for their average to be a good model. Everything else (integer buffers, the metadata such as
    the training feature ranges) must be equal and is taken from the first; ``extra`` records the
    averaged folders under ``"averaged_from"``. Written whole (a failure keeps ``out`` as it was).
    """
    if not checkpoints:
        raise S2VError("no checkpoint to average")
    loaded = [load_checkpoint(c) for c in checkpoints]
    model, config, extra = loaded[0]
    for path, (_, other_config, _) in zip(checkpoints[1:], loaded[1:], strict=True):
        if other_config.to_dict() != config.to_dict():
            raise S2VError(f"{path}: another model than {checkpoints[0]}; only runs of one model can be averaged")
    states = [m.state_dict() for m, _, _ in loaded]
    mean = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            total = torch.zeros_like(first, dtype=torch.float64)
            for state in states:
                total += state[key].double()
            mean[key] = (total / len(states)).to(first.dtype)
        elif any(not torch.equal(state[key], first) for state in states[1:]):
            raise S2VError(f"{key} differs between the checkpoints and cannot be averaged")
        else:
            mean[key] = first
    model.load_state_dict(mean)
    extra = {**extra, "averaged_from": [str(c) for c in checkpoints]}
    with staged_dir(out) as tmp:
        save_checkpoint(tmp, model, config, extra=extra)
    return Path(out)
