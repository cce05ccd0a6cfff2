"""Shared fixtures: where the real recordings live, and a skip when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("S2V_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test when it does not exist."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not available: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models run fastest on one torch thread, which also keeps a busy CI box from
    oversubscribing; modules opt in with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_store(root: Path, n_nights: int, *, seed: int = 0, hours: float = 0.5,
                    split_seed: int = 0) -> tuple[Path, Path]:
    """A synthetic cohort as EDF files under ``root/cohort`` and the same nights as a store."""
    from s2v_core.cohort.prepare import prepare_store
    from s2v_core.synth.cohort import generate_cohort

    generate_cohort(n_nights, root / "cohort", seed=seed, hours=hours)
    prepare_store(root / "cohort", root / "store", seed=split_seed, progress=False)
    return root / "cohort", root / "store"


def write_tiny_classifier(folder: Path, *, seed: int = 0, spread_gates: bool = True,
                          vary_epoch_gates: bool = False, extra: dict | None = None) -> Path:
    """A tiny staging classifier with random weights saved to ``folder``; it predicts varied stages, badly.

    ``spread_gates`` gives the modalities different global gate weights (so subsets change the
    output in a checkable way); ``vary_epoch_gates`` also makes the per-epoch gates vary.
    """
    import torch

    from s2v_core.model.checkpoint import save_checkpoint
    from s2v_core.model.config import HeadConfig, get_preset
    from s2v_core.model.fusion import Sleep2VecClassifier

    cfg = get_preset("tiny")
    clf = Sleep2VecClassifier(cfg, HeadConfig(), seed=seed)
    with torch.no_grad():
        if spread_gates:
            clf.fusion.logits.copy_(torch.linspace(-1, 1, len(cfg.modalities)))
        if vary_epoch_gates:
            for gate in clf.fusion.epoch_gates.values():
                gate.weight.normal_(0, 0.3)
    return save_checkpoint(folder, clf, cfg, extra=extra)


def pytest_sessionfinish(session, exitstatus):
    """Let app.py's background model loading finish before the interpreter exits.

    AppTest runs app.py in this process, and app.py starts loading the shipped model in a daemon
    thread; torch aborts the process ("terminate called without an active exception", exit 134)
    when the interpreter shuts down under that thread, which would turn a green run red.
    """
    import threading

    for t in threading.enumerate():
        if t.name == "s2v-model-warm-up":
            t.join(timeout=300)
