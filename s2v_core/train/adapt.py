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
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from s2v_core.cohort.prepare import combine_stores
from s2v_core.cohort.store import CohortStore
from s2v_core.errors import S2VError
from s2v_core.limits.jsonfile import read_json
from s2v_core.train.finetune import FinetuneConfig, FinetuneResult, finetune, refuse_unlabelled
from s2v_core.train.windows import WINDOW_EPOCHS

__all__ = ["ADAPTATION", "REAL_SHARE", "SOURCES_FILE", "adapt_to_real", "real_site_weights", "training_recordings"]

SOURCES_FILE = "sources.json"
"""In a real store: ``{night: {"file", "size", "sha256"}}`` of the file each night was read from."""

ADAPTATION = FinetuneConfig(
    epochs=4,
    batch_size=16,
    lr=3e-4,
    modality_dropout=0.5,
    freeze_tokenizers=False,
    init_head=True,
    class_weighted=True,
    single_loss=1.0,
    single_loss_modalities=("spo2",),
    seed=0,
)
"""Settings of the adaptation stage (the recipe and the leave-one-subject-out benchmark share them).

The single-modality loss on SpO2 (the head also stages every window that keeps SpO2 from SpO2
alone) lifts SpO2-only staging of held-out synthetic nights from 0.30 to 0.39 kappa over three
recipe seeds with the real-data figures within 0.02 (``bench/RESULTS.md``, "A loss on SpO2 alone")."""

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


def training_recordings(real_store: str | Path, drop_subjects: Iterable[str] = ()) -> list[dict]:
    """``[{"night", "subject", "file", "size", "sha256"}]`` of the real store's nights not dropped,
    from its :data:`SOURCES_FILE` (empty when the store has none)."""
    path = Path(real_store) / SOURCES_FILE
    if not path.is_file():
        return []
    store, dropped = CohortStore(real_store), set(drop_subjects)
    sources = read_json(path)
    out = []
    for night in store.nights():
        entry, src = store.entry(night), sources.get(night) if isinstance(sources, dict) else None
        if entry.subject in dropped or not isinstance(src, dict):
            continue
        out.append({"night": night, "subject": entry.subject, "file": str(src.get("file", "")),
                    "size": int(src.get("size", -1)), "sha256": str(src.get("sha256", ""))})  # fmt: skip
    return out


def adapt_to_real(
    synthetic_store: str | Path,
    real_store: str | Path,
    out_dir: str | Path,
    pretrained: str | Path,
    *,
    drop_subjects: Iterable[str] = (),
    cfg: FinetuneConfig = ADAPTATION,
    real_share: float = REAL_SHARE,
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

    The files of the real nights trained on (the store's ``sources.json``, when it has one) go
    into the checkpoint's ``extra["training_recordings"]``, so that staging one of them later says
    it was seen in training (:func:`s2v_core.inference.familiarity.seen_in_training`).
    """
    drop = tuple(drop_subjects)
    synth, real = CohortStore(synthetic_store), CohortStore(real_store)
    recordings = training_recordings(real_store, drop)
    weights = real_site_weights(synth, real, real_share, drop)
    # before anything is built: real nights without hypnograms would be drawn often and teach nothing
    kept = [n for n in real.nights() if real.entry(n).subject not in set(drop)]
    refuse_unlabelled(real, None, f"{Path(real_store).name}: nothing to adapt on", nights=kept)
    work = Path(tempfile.mkdtemp(prefix="s2v-adapt-"))
    try:
        combined = combine_stores([synthetic_store, real_store], work / "store", drop_subjects=drop,
                                  split_of=lambda entry: "train")  # fmt: skip
        return finetune(combined, out_dir, replace(cfg, site_weights=weights), pretrained=pretrained,
                        extra={"training_recordings": recordings} if recordings else None)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
