"""Nothing lost (issue 16): crash-safe checkpoint swaps, --overwrite, one writer per folder, full disks.

Four fault classes, each with several members:

1. a process killed in the middle of replacing a checkpoint folder (``last/``, ``best/``;
   pretraining and fine-tuning): simulated by making the N-th ``os.replace`` / ``shutil.rmtree``
   (...) raise :class:`Crash` and every later file-system change fail too, as if the process
   had died there; every intermediate state is also built by hand;
2. a command run again into an ``--out`` that holds a previous run;
3. two writers of one store or run folder (two real processes), and stale locks;
4. a full disk (``OSError(ENOSPC)``) while a file or folder is written.

Runs use the tiny preset on four half-hour synthetic nights, all in the train split (so that
fine-tuning keeps every pass), and take a second or two each.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from s2v_core.cli.main import main
from s2v_core.cohort import prepare as prepare_mod
from s2v_core.cohort.prepare import prepare_store
from s2v_core.errors import S2VError
from s2v_core.inference.embed import load_backbone
from s2v_core.io import atomic
from s2v_core.io.atomic import (
    COMPLETE_MARKER,
    atomic_file,
    is_complete,
    mark_complete,
    old_dir,
    readable_dir,
    recover_dir,
    replace_dir,
    staged_dir,
    tmp_dir,
    write_text_atomic,
)
from s2v_core.io.lock import LOCK_NAME, FolderInUseError, FolderLock, read_lock
from s2v_core.model import checkpoint as checkpoint_mod
from s2v_core.model.checkpoint import load_checkpoint
from s2v_core.synth.cohort import generate_cohort
from s2v_core.train.config import TrainConfig
from s2v_core.train.finetune import FinetuneConfig, finetune
from s2v_core.train.pretrain import pretrain
from s2v_core.train.runfiles import RunFiles, TrainCallback, resolve_resume
from tests.conftest import write_tiny_classifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
CKPT_NAMES = {"last", ".last.old", ".last.tmp", "best", ".best.old", ".best.tmp"}
BEST_NAMES = {"best", ".best.old", ".best.tmp"}


# --- helpers ---------------------------------------------------------------------------------------


class Crash(BaseException):
    """The process dies here (a BaseException: no ``except Exception`` cleanup catches it)."""


class CrashAt:
    """Make the ``n``-th file-system change raise :class:`Crash`, and every later one too.

    Patched: ``os.replace``, ``os.rename``, ``os.unlink``, ``os.remove``, ``os.rmdir`` and
    ``shutil.rmtree``. Only top-level calls on paths named in ``names`` are counted (calls made
    inside a patched call, e.g. rmtree's unlinks, are not); ``n=0`` only counts. After the crash
    nothing changes the disk any more, cleanup handlers included: what is left is what a killed
    process leaves.
    """

    CALLS = [(os, "replace"), (os, "rename"), (os, "unlink"), (os, "remove"), (os, "rmdir"),
             (shutil, "rmtree")]  # fmt: skip

    def __init__(self, n: int, names: set[str]):
        self.n, self.names = n, names
        self.calls, self.depth, self.crashed, self.log = 0, 0, False, []
        self.mp = pytest.MonkeyPatch()

    def __enter__(self) -> CrashAt:
        for mod, attr in self.CALLS:
            self.mp.setattr(mod, attr, self._wrap(getattr(mod, attr)))
        return self

    def __exit__(self, *exc) -> None:
        self.mp.undo()

    def _names(self, args) -> list[str]:
        return [Path(a).name for a in args if isinstance(a, str | os.PathLike)]

    def _wrap(self, fn):
        def inner(*args, **kwargs):
            if self.crashed:
                raise Crash("the process is dead")
            if self.depth == 0 and set(self._names(args)) & self.names:
                self.calls += 1
                self.log.append(f"{fn.__name__}({', '.join(self._names(args))})")
                if self.calls == self.n:
                    self.crashed = True
                    raise Crash(f"killed at {self.log[-1]}")
            self.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1

        return inner


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same_weights(a: dict, b: dict, atol: float = 1e-6) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)


def leftovers(folder: Path) -> list[str]:
    """Temporary and half-replaced things under ``folder`` (hidden ones included)."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if p.name.endswith((".tmp", ".old")) or ".tmp-" in p.name or p.name.endswith(".takeover")
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tiny(**changes) -> TrainConfig:
    base = dict(preset="tiny", epochs=2, batch_size=3, window_epochs=20, batches_per_epoch=2,
                val_batches=1, lr=1e-3, device="cpu", log_every=1)  # fmt: skip
    return TrainConfig(**(base | changes))


QUICK = dict(preset="tiny", window_epochs=30, batch_size=4, lr=3e-3, max_batches_per_epoch=1)


class StopAfter(TrainCallback):
    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, info):
        return info.epoch + 1 >= self.epochs


def enospc_after(path, partial: bytes = b"half a fi") -> None:
    """What a full disk does: some bytes reach the file, then the write fails."""
    if isinstance(path, str | os.PathLike):
        Path(path).write_bytes(partial)
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def run_s2v(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``s2v ARGV`` as a separate process."""
    return subprocess.run([sys.executable, "-m", "s2v_core.cli", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lost")
    meta = generate_cohort(4, root / "source", seed=3, hours=0.5, progress=False)
    meta["split"] = "train"  # no val windows: fine-tuning keeps every pass, pretraining the lowest loss
    meta.to_csv(root / "source" / "metadata.csv", index=False)
    prepare_store(root / "source", root / "store", progress=False)
    return root / "store"


@pytest.fixture(scope="module")
def straight(store, tmp_path_factory) -> Path:
    """Two uninterrupted pretraining epochs: what every interrupted run must end equal to."""
    out = tmp_path_factory.mktemp("straight") / "run"
    pretrain(store, out, tiny())
    return out


@pytest.fixture(scope="module")
def one_epoch(store, tmp_path_factory) -> Path:
    """The same run stopped after its first epoch (``last/`` and ``best/`` = epoch 1)."""
    out = tmp_path_factory.mktemp("one") / "run"
    pretrain(store, out, tiny(), callbacks=[StopAfter(1)])
    return out


@pytest.fixture(scope="module")
def ft_refs(store, tmp_path_factory) -> dict[int, dict]:
    """Weights of the kept fine-tuned model after 1 and after 2 uninterrupted passes."""
    root = tmp_path_factory.mktemp("ftref")
    refs = {}
    for n in (1, 2):
        res = finetune(store, root / f"p{n}", FinetuneConfig(epochs=n, **QUICK))
        refs[n] = weights(res.checkpoint)
    assert not same_weights(refs[1], refs[2])
    return refs


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp("clf") / "classifier")


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(LOCK_NAME))
    return dst


# === 1. killed while replacing a checkpoint folder ==================================================


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_text(text * 50)
    (path / "config.json").write_text(json.dumps({"v": text}))
    (path / "resume").mkdir()
    (path / "resume" / "optimizer.json").write_text(text)
    return path


def _version(folder: Path) -> str:
    return json.loads((folder / "config.json").read_text())["v"]


def _count(fn, names) -> int:
    with CrashAt(0, names) as probe:
        fn()
    return probe.calls


@pytest.mark.parametrize("name", ["last", "best"])
def test_replace_dir_killed_at_every_step_recovers_a_complete_copy(tmp_path, name):
    """Plain folders, every crash point of a swap: the reader and the writer find a whole copy."""

    def swap(root: Path) -> None:
        with staged_dir(root / name) as tmp:
            shutil.copytree(root / "new", tmp, dirs_exist_ok=True)

    def fresh(n: int) -> Path:
        root = tmp_path / f"n{n}"
        _folder(root / name, "old")
        _folder(root / "new", "new")
        return root

    names = {name, f".{name}.old", f".{name}.tmp"}
    steps = _count(lambda: swap(fresh(0)), names)
    assert steps == 3  # final -> .old, .tmp -> final, rmtree .old
    for n in range(1, steps + 1):
        root = fresh(n)
        with CrashAt(n, names), pytest.raises(Crash):
            swap(root)
        seen = readable_dir(root / name)  # a reader changes nothing
        assert _version(seen) == "new" or (n == 1 and _version(seen) in ("old", "new"))
        assert recover_dir(root / name) is not None
        assert _version(root / name) == "new"  # the staged copy was complete: the swap completes
        assert (root / name / "resume" / "optimizer.json").read_text() == "new"
        assert not old_dir(root / name).exists() and not tmp_dir(root / name).exists()


def test_replace_dir_killed_while_writing_keeps_the_previous_copy(tmp_path):
    """Killed before the staged folder is complete (no marker): the previous copy stays."""
    root = tmp_path
    _folder(root / "last", "old")
    with CrashAt(1, {".last.tmp"}), pytest.raises(Crash):  # its cleanup is the first change: dead
        with staged_dir(root / "last") as tmp:
            (tmp / "model.safetensors").write_text("half")
            raise Crash("killed while writing")
    assert tmp_dir(root / "last").is_dir() and not is_complete(tmp_dir(root / "last"))
    assert readable_dir(root / "last") == root / "last"
    recover_dir(root / "last")
    assert _version(root / "last") == "old" and leftovers(root) == []


@pytest.mark.parametrize(
    "state",
    ["old_only", "old_and_incomplete_tmp", "old_and_complete_tmp", "complete_tmp_only",
     "final_and_old", "final_and_complete_tmp", "final_and_incomplete_tmp"],
)  # fmt: skip
def test_every_intermediate_state_is_completed_or_rolled_back(tmp_path, state):
    final = tmp_path / "last"
    old, tmp = old_dir(final), tmp_dir(final)
    if state.startswith("final"):
        _folder(final, "final")
    if "old" in state:
        _folder(old, "old")
    if "tmp" in state:
        _folder(tmp, "tmp")
        if "incomplete" not in state:
            mark_complete(tmp)
    expected = {"old_only": "old", "old_and_incomplete_tmp": "old", "old_and_complete_tmp": "tmp",
                "complete_tmp_only": "tmp", "final_and_old": "final", "final_and_complete_tmp": "tmp",
                "final_and_incomplete_tmp": "final"}[state]  # fmt: skip
    before = snapshot(tmp_path)
    assert _version(readable_dir(final)) in (expected, "final")  # readers: a complete copy, no change
    assert snapshot(tmp_path) == before
    recover_dir(final)
    assert _version(final) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_marker_that_does_not_match_the_files_is_not_trusted(tmp_path):
    folder = _folder(tmp_path / ".last.tmp", "x")
    mark_complete(folder)
    assert is_complete(folder)
    (folder / "model.safetensors").write_text("truncated")
    assert not is_complete(folder)
    (folder / COMPLETE_MARKER).write_text('{"files": ')
    assert not is_complete(folder)


def test_run_files_copy_best_killed_at_every_step(tmp_path):
    """``best/`` of a pretraining run (RunFiles.copy_best), every crash point."""

    def fresh(n: int) -> RunFiles:
        out = tmp_path / f"n{n}"
        _folder(out / "best", "old")
        _folder(out / "last", "new")
        return RunFiles(out)

    steps = _count(lambda: fresh(0).copy_best(), BEST_NAMES)
    assert steps == 3
    for n in range(1, steps + 1):
        files = fresh(n)
        with CrashAt(n, BEST_NAMES), pytest.raises(Crash):
            files.copy_best()
        assert _version(readable_dir(files.best_dir)) in ("old", "new")
        recover_dir(files.best_dir)
        assert _version(files.best_dir) == "new" and not (files.best_dir / "resume").exists()


def test_pretrain_killed_at_every_step_of_the_epoch_2_swaps_resumes_to_the_same_weights(
    store, straight, one_epoch, tmp_path
):
    """End to end: epoch 2's swaps of last/ (and best/ when epoch 2 is the best), each crash
    point; ``--resume`` then ends with the weights and history of the uninterrupted run."""
    probe_run = copy_run(one_epoch, tmp_path / "probe")
    with CrashAt(0, CKPT_NAMES) as probe:
        pretrain(store, probe_run, tiny(), resume_from=probe_run)
    assert probe.calls >= 3, probe.log  # at least last/'s three steps
    for n in range(1, probe.calls + 1):
        run = copy_run(one_epoch, tmp_path / f"n{n}")
        with CrashAt(n, CKPT_NAMES) as crash, pytest.raises(Crash):
            pretrain(store, run, tiny(), resume_from=run)
        ckpt, run_dir = resolve_resume(run)  # never "no resumable checkpoint here"
        assert run_dir == run and (ckpt / "resume").is_dir(), crash.log
        pretrain(store, run, tiny(), resume_from=run)
        assert same_weights(weights(run / "last" / "resume"), weights(straight / "last" / "resume")), crash.log
        assert same_weights(weights(run / "last"), weights(straight / "last"))
        assert same_weights(weights(run / "best"), weights(straight / "best")), crash.log
        assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0, 1]
        assert leftovers(run) == [] and not (run / LOCK_NAME).exists(), crash.log


def test_pretrain_killed_while_writing_the_checkpoint(store, straight, one_epoch, tmp_path, monkeypatch):
    """Killed inside save_checkpoint (the staged .last.tmp half written): epoch 1 is kept."""
    run = copy_run(one_epoch, tmp_path / "run")
    real, calls = checkpoint_mod.save_file, []
    crash = CrashAt(10**9, CKPT_NAMES)

    def dying_save(tensors, filename, *a, **k):
        calls.append(filename)
        if len(calls) == 2:  # the resume/ weights of epoch 2
            Path(filename).write_bytes(b"half")
            crash.crashed = True  # dead: no cleanup reaches the disk
            raise Crash("killed while writing")
        return real(tensors, filename, *a, **k)

    monkeypatch.setattr(checkpoint_mod, "save_file", dying_save)
    with crash, pytest.raises(Crash):
        pretrain(store, run, tiny(), resume_from=run)
    monkeypatch.setattr(checkpoint_mod, "save_file", real)
    assert (run / ".last.tmp").is_dir()  # what the killed process left
    ckpt, _ = resolve_resume(run)
    assert ckpt == run / "last" and json.loads((ckpt / "config.json").read_text())["extra"]["epoch"] == 1
    pretrain(store, run, tiny(), resume_from=run)
    assert same_weights(weights(run / "last"), weights(straight / "last"))
    assert leftovers(run) == []


@pytest.mark.parametrize("name", ["last", "best"])
@pytest.mark.parametrize("state", ["old_only", "old_and_incomplete_tmp", "old_and_complete_tmp",
                                   "complete_tmp_only"])  # fmt: skip
def test_pretrain_run_left_mid_swap_resumes_and_is_never_started_afresh(
    store, straight, one_epoch, tmp_path, capsys, name, state
):
    """The issue's case: ``last`` renamed ``.last.old`` and nothing renamed back. ``--resume``
    finds it, ``--out`` without ``--overwrite`` refuses (one line naming both) and deletes
    nothing, and the resumed run ends equal to the uninterrupted one."""
    run = copy_run(one_epoch, tmp_path / "run")
    final = run / name
    history = (run / "history.csv").read_bytes()
    if state == "complete_tmp_only":
        os.replace(final, tmp_dir(final))
        mark_complete(tmp_dir(final))
    else:
        os.replace(final, old_dir(final))
        if state != "old_only":
            shutil.copytree(old_dir(final), tmp_dir(final))
            if state == "old_and_complete_tmp":
                mark_complete(tmp_dir(final))
            else:
                (tmp_dir(final) / "model.safetensors").write_bytes(b"half")  # an old-style tmp
    assert load_checkpoint(run / name)[2]["epoch"] == 1  # every loader reads the complete copy
    assert load_backbone(run / name).config.to_dict() == load_checkpoint(run / name)[1].to_dict()
    if name == "last":
        ckpt, _ = resolve_resume(run)
        assert ckpt.name in (".last.old", ".last.tmp")
    argv = ["pretrain", "--data", store, "--out", run, "--preset", "tiny", "--epochs", "2",
            "--batch-size", "3", "--window-epochs", "20", "--batches-per-epoch", "2", "--device",
            "cpu", "--quiet"]  # fmt: skip
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "--overwrite" in err, err
    assert (run / "history.csv").read_bytes() == history
    assert (run / name).is_dir() and leftovers(run) == []  # the refusal repaired the swap
    pretrain(store, run, tiny(), resume_from=run)
    assert same_weights(weights(run / "last"), weights(straight / "last"))
    assert same_weights(weights(run / "best"), weights(straight / "best"))
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0, 1]


def test_resume_copies_best_again_when_killed_before_best_was_swapped(store, straight, one_epoch, tmp_path):
    """last/ says epoch 1 is the best, best/ never got it (killed while copying): resume fixes it."""
    run = copy_run(one_epoch, tmp_path / "run")
    shutil.rmtree(run / "best")
    shutil.copytree(run / "last", run / ".best.tmp", ignore=shutil.ignore_patterns("resume"))
    (run / ".best.tmp" / "model.safetensors").write_bytes(b"half")  # unfinished copy: discarded
    pretrain(store, run, tiny(), resume_from=run)
    assert same_weights(weights(run / "best"), weights(straight / "best"))
    assert leftovers(run) == []


def test_finetune_killed_at_every_step_of_the_pass_2_swap_of_best(store, ft_refs, tmp_path, capsys):
    """Fine-tuning keeps best/ after every pass here; each crash point of pass 2's swap leaves a
    best/ that loads whole (pass 1 or pass 2), a rerun without --overwrite is refused and repairs
    it, and ``--overwrite`` replaces it."""
    cfg = FinetuneConfig(epochs=2, **QUICK)
    probe = CrashAt(0, BEST_NAMES)

    def arm(crash):
        return lambda row: crash.__enter__() if row["epoch"] == 1 else None

    try:
        finetune(store, tmp_path / "probe", cfg, on_epoch=arm(probe))
    finally:
        probe.__exit__()
    assert probe.calls == 3, probe.log
    for n in range(1, probe.calls + 1):
        out = tmp_path / f"n{n}"
        crash = CrashAt(n, BEST_NAMES)
        try:
            with pytest.raises(Crash):
                finetune(store, out, cfg, on_epoch=arm(crash))
        finally:
            crash.__exit__()
        kept = weights(readable_dir(out / "best"))
        assert same_weights(kept, ft_refs[1]) or same_weights(kept, ft_refs[2]), crash.log
        assert same_weights(load_checkpoint(out / "best")[0].state_dict(), kept)
        with pytest.raises(S2VError, match="already holds a fine-tuning run.*--overwrite"):
            finetune(store, out, cfg)
        assert (out / "best").is_dir() and leftovers(out) == [], crash.log
    out = tmp_path / "n1"
    argv = ["finetune", "--data", store, "--out", out, "--preset", "tiny", "--epochs", "2",
            "--batch-size", "4", "--lr", "3e-3", "--window-epochs", "30", "--batches-per-epoch", "1",
            "--quiet"]  # fmt: skip
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert main([str(a) for a in [*argv, "--overwrite"]]) == 0
    assert same_weights(weights(out / "best"), ft_refs[2])
    assert len(pd.read_csv(out / "history.csv")) == 2 and leftovers(out) == []


# === 2. a command run again into a filled --out ======================================================


def test_pretrain_overwrite(store, one_epoch, tmp_path, capsys):
    run = copy_run(one_epoch, tmp_path / "run")
    with pytest.raises(S2VError, match=r"already holds a run \(last/, best/\).*--resume.*--overwrite"):
        pretrain(store, run, tiny())
    with pytest.raises(S2VError, match="--overwrite would delete the run being resumed"):
        pretrain(store, run, tiny(), resume_from=run, overwrite=True)
    other = copy_run(one_epoch, tmp_path / "other")
    with pytest.raises(S2VError, match="already holds a run"):  # resuming A into a filled B
        pretrain(store, other, tiny(), resume_from=run)
    argv = ["pretrain", "--data", store, "--out", run, "--preset", "tiny", "--epochs", "1",
            "--batch-size", "3", "--window-epochs", "20", "--batches-per-epoch", "1", "--device",
            "cpu", "--seed", "7", "--quiet", "--overwrite"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [0] and history["step"].tolist() == [1]  # the new run only
    assert json.loads((run / "last" / "config.json").read_text())["extra"]["train_config"]["seed"] == 7
    assert leftovers(run) == [] and not list(run.rglob(COMPLETE_MARKER))  # finished folders as before


def test_embed_evaluate_synth_and_night_heads_refuse_a_filled_out(store, classifier, tmp_path, capsys):
    def s2v(*argv) -> tuple[int, str]:
        code = main([str(a) for a in argv])
        return code, capsys.readouterr().err.strip()

    # embed: the per-epoch and per-night tables
    out = tmp_path / "e.parquet"
    embed = ["embed", store, "--model", classifier, "--out", out, "--threads", "1", "--quiet"]
    assert s2v(*embed)[0] == 0
    before = {p: p.read_bytes() for p in (out, tmp_path / "e_nights.parquet")}
    code, err = s2v(*embed)
    assert code == 2 and len(err.splitlines()) == 1 and "--overwrite" in err and "e.parquet" in err
    assert {p: p.read_bytes() for p in before} == before
    assert s2v(*embed, "--overwrite", "--split", "train")[0] == 0
    assert not (tmp_path / ".e.parquet.lock").exists()

    # evaluate: the tables and summary.json
    ev_out = tmp_path / "ev"
    evaluate = ["evaluate", store, "--model", classifier, "--out", ev_out, "--n-boot", "5", "--quiet",
                "--threads", "1"]  # fmt: skip
    assert s2v(*evaluate)[0] == 0
    summary = (ev_out / "summary.json").read_bytes()
    code, err = s2v(*evaluate, "--classes", "3")
    assert code == 2 and "--overwrite" in err and "summary.json" in err and len(err.splitlines()) == 1
    assert (ev_out / "summary.json").read_bytes() == summary
    assert s2v(*evaluate, "--classes", "3", "--overwrite")[0] == 0
    assert json.loads((ev_out / "summary.json").read_text())["n_classes"] == 3
    assert not (ev_out / LOCK_NAME).exists()

    # synth: a cohort folder
    cohort = tmp_path / "cohort"
    synth = ["synth", "--nights", "1", "--hours", "0.1", "--out", cohort, "--quiet"]
    assert s2v(*synth)[0] == 0
    meta = (cohort / "metadata.csv").read_bytes()
    code, err = s2v(*synth, "--seed", "5")
    assert code == 2 and "--overwrite" in err and (cohort / "metadata.csv").read_bytes() == meta

    # night-heads train: a head folder (refused before any embedding is computed)
    head = tmp_path / "head"
    head.mkdir()
    (head / "head.json").write_text("{}")
    code, err = s2v("night-heads", "train", "--data", store, "--task", "age", "--out", head)
    assert code == 2 and "--overwrite" in err and (head / "head.json").read_text() == "{}"


def test_prepare_again_resumes_and_deletes_nothing(store, tmp_path):
    """``s2v prepare`` into a filled store is its resume: finished nights are kept as they are."""
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    before = {p: p.stat().st_mtime_ns for p in (copy / "nights").rglob("*") if p.is_file()}
    run = prepare_store(store.parent / "source", copy, progress=False)
    assert run.attrs["summary"]["skipped"] == 4 and run.attrs["summary"]["done"] == 0
    assert {p: p.stat().st_mtime_ns for p in (copy / "nights").rglob("*") if p.is_file()} == before


# === 3. two writers of one folder ===================================================================

_SLOW_PREPARE = """
import sys, time, pathlib
from s2v_core.cohort import prepare as prepare_mod
from s2v_core.night import Night

source, store, gate = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
real_save = Night.save

def save(self, folder):  # hold the run inside its first night's temporary folder
    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    while not gate.exists():
        time.sleep(0.05)
    return real_save(self, folder)

Night.save = save
run = prepare_mod.prepare_store(source, store, progress=False)
print(run.attrs["summary"])
"""

_HOLDER = """
import sys
from s2v_core.io.lock import FolderLock
lock = FolderLock(sys.argv[1], "holder test", name=sys.argv[2]).acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


def _wait_for(check, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the first process ended early: {proc.communicate()}")
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_two_prepare_processes_the_second_is_refused_the_first_completes(store, tmp_path):
    source, target, gate = store.parent / "source", tmp_path / "store", tmp_path / "gate"
    script = tmp_path / "slow_prepare.py"
    script.write_text(_SLOW_PREPARE)
    first = subprocess.Popen([sys.executable, str(script), str(source), str(target), str(gate)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(lambda: list((target / "nights").glob(".tmp-*")), proc=first)
        in_progress = list((target / "nights").glob(".tmp-*"))
        owner = read_lock(target / LOCK_NAME)
        assert owner["pid"] == first.pid and owner["host"] == socket.gethostname()
        second = run_s2v("prepare", source, "--out", target, "--quiet")
        err = second.stderr.strip()
        assert second.returncode == 2, second
        assert len(err.splitlines()) == 1 and f"pid {first.pid} on host {socket.gethostname()}" in err, err
        assert "in use by s2v prepare" in err
        assert all(p.is_dir() for p in in_progress)  # the first run's folder was not touched
    finally:
        gate.touch()
        out, errs = first.communicate(timeout=300)
    assert first.returncode == 0, errs
    assert "'done': 4" in out and "'failed': 0" in out
    assert len(pd.read_csv(target / "manifest.csv")) == 4
    assert len(pd.read_csv(target / "failures.csv")) == 0
    assert leftovers(target) == [] and not (target / LOCK_NAME).exists()


@pytest.fixture
def holder(tmp_path):
    """A real second process that holds a lock until the test lets it go."""
    procs = []

    def hold(folder: Path, name: str = LOCK_NAME) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), name], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.communicate("\n", timeout=60)


def test_pretrain_finetune_embed_evaluate_refuse_a_folder_another_process_writes(
    store, classifier, tmp_path, holder, capsys
):
    run = tmp_path / "run"
    proc = holder(run)
    with pytest.raises(FolderInUseError, match=f"in use by holder test \\(pid {proc.pid} on host"):
        pretrain(store, run, tiny())
    with pytest.raises(FolderInUseError, match=f"pid {proc.pid}"):
        finetune(store, run, FinetuneConfig(epochs=1, **QUICK))
    assert main(["evaluate", str(store), "--model", str(classifier), "--out", str(run)]) == 2
    assert f"pid {proc.pid}" in capsys.readouterr().err
    out = tmp_path / "e.parquet"
    holder(tmp_path, ".e.parquet.lock")
    assert main(["embed", str(store), "--model", str(classifier), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "e.parquet is in use by holder test" in err and not out.exists()
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written meanwhile


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, **owner) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"pid": 1, "host": socket.gethostname(), "started": "then", "started_unix": time.time(),
           "command": "s2v prepare", "token": "x"} | owner  # fmt: skip
    (folder / LOCK_NAME).write_text(json.dumps(doc))
    return folder / LOCK_NAME


def test_stale_locks_are_taken_over_with_a_warning(store, tmp_path, caplog):
    source = store.parent / "source"
    cases = {
        "dead pid": {"pid": _dead_pid()},
        "pid reused by a newer process": {"pid": os.getppid(), "started_unix": 1_000.0},
        "our own pid, not held by us": {"pid": os.getpid()},
    }
    for i, (why, owner) in enumerate(cases.items()):
        target = tmp_path / f"s{i}"
        shutil.copytree(store, target)
        _write_lock(target, **owner)
        caplog.clear()
        run = prepare_store(source, target, progress=False)
        assert run.attrs["summary"]["skipped"] == 4, why
        assert "taking over a stale lock" in caplog.text, why
        assert not (target / LOCK_NAME).exists(), why
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LOCK_NAME).write_text("")  # killed between creating and writing it
    os.utime(empty / LOCK_NAME, (time.time() - 60, time.time() - 60))
    with FolderLock(empty, "test"):
        assert read_lock(empty / LOCK_NAME)["pid"] == os.getpid()
    assert not (empty / LOCK_NAME).exists()


def test_live_and_foreign_locks_are_refused(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    try:
        _write_lock(tmp_path / "a", pid=live.pid, started_unix=time.time() + 5)
        with pytest.raises(FolderInUseError, match=f"pid {live.pid} on host {socket.gethostname()}"):
            FolderLock(tmp_path / "a", "test").acquire()
    finally:
        live.communicate(b"\n")
    _write_lock(tmp_path / "b", pid=os.getpid(), host="elsewhere.example")
    with pytest.raises(FolderInUseError, match=r"host elsewhere.example.*cannot be checked.*delete"):
        FolderLock(tmp_path / "b", "test").acquire()
    assert read_lock(tmp_path / "b" / LOCK_NAME)["host"] == "elsewhere.example"  # left alone


def test_the_lock_is_released_on_success_error_and_ctrl_c(store, tmp_path, monkeypatch):
    source = store.parent / "source"
    target = tmp_path / "store"
    prepare_store(source, target, progress=False)
    assert not (target / LOCK_NAME).exists()
    with pytest.raises(S2VError, match="augment must be >= 0"):
        prepare_store(source, target, progress=False, augment=-1)
    assert not (target / LOCK_NAME).exists()

    def interrupted(*a, **k):
        assert read_lock(target / LOCK_NAME)["pid"] == os.getpid()  # held while it works
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_mod, "load_recording", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(source, target, progress=False, overwrite=True)
    assert not (target / LOCK_NAME).exists()
    with FolderLock(target, "outer"), FolderLock(target, "nested"):  # re-entrant in one process
        pass
    assert not (target / LOCK_NAME).exists()


# === 4. a full disk ===================================================================================


def test_full_disk_while_writing_manifest_or_failures_keeps_them(store, tmp_path, monkeypatch):
    target = tmp_path / "store"
    shutil.copytree(store, target)
    real = prepare_mod.to_csv
    for victim in ("manifest.csv", "failures.csv"):
        before = (target / victim).read_bytes()

        def full(frame, path, *a, victim=victim, **k):
            if victim in Path(path).name:
                enospc_after(path)
            return real(frame, path, *a, **k)

        monkeypatch.setattr(prepare_mod, "to_csv", full)
        with pytest.raises(OSError, match="No space left"):
            prepare_store(store.parent / "source", target, progress=False)
        assert (target / victim).read_bytes() == before, victim
        assert len(pd.read_csv(target / "manifest.csv")) == 4
        assert leftovers(target) == [] and not (target / LOCK_NAME).exists(), victim


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(
    store, straight, one_epoch, ft_refs, tmp_path, monkeypatch
):
    real = checkpoint_mod.save_file
    calls = []

    def full(tensors, filename, *a, **k):
        calls.append(filename)
        if len(calls) == 2:
            enospc_after(filename)
        return real(tensors, filename, *a, **k)

    # pretraining: epoch 2's last/ cannot be written
    run = copy_run(one_epoch, tmp_path / "run")
    last = snapshot(run / "last")
    monkeypatch.setattr(checkpoint_mod, "save_file", full)
    with pytest.raises(OSError, match="No space left"):
        pretrain(store, run, tiny(), resume_from=run)
    monkeypatch.setattr(checkpoint_mod, "save_file", real)
    assert snapshot(run / "last") == last and leftovers(run) == []
    pretrain(store, run, tiny(), resume_from=run)  # once there is room again
    assert same_weights(weights(run / "last"), weights(straight / "last"))

    # fine-tuning: pass 2's best/ cannot be written (the first save_file of pass 2)
    calls.clear()  # pass 1 saves once, pass 2's save fails
    out = tmp_path / "ft"
    monkeypatch.setattr(checkpoint_mod, "save_file", full)
    with pytest.raises(OSError, match="No space left"):
        finetune(store, out, FinetuneConfig(epochs=2, **QUICK))
    monkeypatch.setattr(checkpoint_mod, "save_file", real)
    assert same_weights(weights(out / "best"), ft_refs[1]) and leftovers(out) == []
    assert not (out / LOCK_NAME).exists()


def test_full_disk_while_writing_embeddings_keeps_the_previous_tables(
    store, classifier, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "e.parquet"
    embed = ["embed", str(store), "--model", str(classifier), "--out", str(out), "--quiet"]
    assert main(embed) == 0
    before = snapshot(tmp_path)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, path, *a, **k: enospc_after(path))
    assert main([*embed, "--overwrite"]) == 2
    assert "No space left" in capsys.readouterr().err
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_full_disk_while_writing_metrics_json_and_logs(store, classifier, tmp_path, monkeypatch):
    from s2v_core.evaluation.cohort import evaluate_cohort

    res = evaluate_cohort(store, classifier, n_boot=5)
    out = tmp_path / "ev"
    res.write(out)
    before = snapshot(out)
    real_write_text = Path.write_text

    def full(self, data, *a, **k):
        if self.name.endswith(".tmp"):
            enospc_after(self)
        return real_write_text(self, data, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space left"):
        res.write(out)  # the CSVs are replaced whole; summary.json fails
    with pytest.raises(OSError):
        write_text_atomic(tmp_path / "metrics.json", "{}")
    monkeypatch.undo()
    assert (out / "summary.json").read_bytes() == before["summary.json"]
    assert leftovers(tmp_path) == [] and not (tmp_path / "metrics.json").exists()

    # the pretraining logs (history.csv ...) are never truncated either
    files = RunFiles(tmp_path / "logs")
    files.out_dir.mkdir()
    files.history = [{"epoch": 0}]
    files.write_logs()
    history = (files.out_dir / "history.csv").read_bytes()
    files.history.append({"epoch": 1})
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path, *a, **k: enospc_after(path))
    with pytest.raises(OSError):
        files.write_logs()
    monkeypatch.undo()
    assert (files.out_dir / "history.csv").read_bytes() == history
    assert leftovers(files.out_dir) == []


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "full"), KeyboardInterrupt(), ValueError("bug")])
def test_atomic_file_and_staged_dir_remove_their_temporaries_on_any_failure(tmp_path, failure):
    target = tmp_path / "manifest.csv"
    target.write_text("previous")
    with pytest.raises(type(failure)):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise failure
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]
    _folder(tmp_path / "best", "previous")
    with pytest.raises(type(failure)):
        with staged_dir(tmp_path / "best") as staged:
            (staged / "model.safetensors").write_text("half")
            raise failure
    assert _version(tmp_path / "best") == "previous" and leftovers(tmp_path) == []
    # a failure inside the swap itself (the marker cannot be written) is rolled back too
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(atomic, "mark_complete", lambda folder: enospc_after(Path(folder) / COMPLETE_MARKER))
        with pytest.raises(OSError), staged_dir(tmp_path / "best") as staged:
            (staged / "model.safetensors").write_text("new")
            (staged / "config.json").write_text(json.dumps({"v": "new"}))
    assert _version(tmp_path / "best") == "previous" and leftovers(tmp_path) == []
    replace_dir(_folder(tmp_path / "x", "new"), tmp_path / "best")  # and it still works afterwards
    assert _version(tmp_path / "best") == "new" and not (tmp_path / "best" / COMPLETE_MARKER).exists()
