"""Cohort preparation and embedding on Dask: equal to the serial run, resumable, never fatal."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s2v_core.cli import options as cli_options
from s2v_core.cli.main import main as s2v
from s2v_core.cohort import prepare as prepare_mod
from s2v_core.cohort.cluster import ClusterSpec, open_client, run_tasks
from s2v_core.cohort.embed import embed_store
from s2v_core.cohort.prepare import prepare_store
from s2v_core.errors import S2VError
from tests.conftest import write_tiny_classifier

distributed = pytest.importorskip("distributed")

THREADS2 = ClusterSpec(workers=2, processes=False)


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Four short synthetic nights (one subject has two) plus one corrupt EDF."""
    from s2v_core.synth.cohort import generate_cohort

    root = tmp_path_factory.mktemp("cohort")
    meta = generate_cohort(4, root, seed=3, hours=0.25)
    (root / "broken.edf").write_bytes(b"0       this is not an EDF header" + b"\x00" * 300)
    bad = {c: None for c in meta.columns} | {"night": "broken", "subject": "sub-999",
                                              "psg_file": "broken.edf"}  # fmt: skip
    pd.concat([meta, pd.DataFrame([bad])], ignore_index=True).to_csv(
        root / "metadata.csv", index=False
    )
    return root


@pytest.fixture(scope="module")
def serial_store(cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "store"
    prepare_store(cohort, out, progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_classifier(tmp_path_factory.mktemp("model") / "classifier", spread_gates=False)


@pytest.fixture(scope="module")
def serial_embeddings(serial_store, model_dir, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("emb") / "serial.parquet"
    assert s2v(["embed", str(serial_store), "--model", str(model_dir), "--out", str(out),
                "--threads", "1"]) == 0  # fmt: skip
    return out, out.with_name("serial_nights.parquet")


def assert_same_store(a: Path, b: Path) -> None:
    """Same manifest, failures and byte-identical night files."""
    pd.testing.assert_frame_equal(pd.read_csv(a / "manifest.csv"), pd.read_csv(b / "manifest.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(a / "failures.csv"), pd.read_csv(b / "failures.csv"))
    nights = sorted(p.name for p in (a / "nights").iterdir())
    assert nights == sorted(p.name for p in (b / "nights").iterdir())
    for n in nights:
        files = sorted(p.name for p in (a / "nights" / n).iterdir())
        assert files == sorted(p.name for p in (b / "nights" / n).iterdir())
        for f in files:
            x, y = a / "nights" / n / f, b / "nights" / n / f
            if f.endswith(".npy"):
                np.testing.assert_array_equal(np.load(x), np.load(y))
            else:
                assert x.read_bytes() == y.read_bytes(), (n, f)


# --- prepare ---------------------------------------------------------------------------------------
def test_cluster_prepare_equals_serial_skips_bad_night_and_resumes(
    cohort, serial_store, tmp_path, monkeypatch
):
    out = tmp_path / "store"
    run = prepare_store(cohort, out, progress=False, cluster=THREADS2)
    assert run.attrs["summary"] == {"done": 4, "skipped": 0, "failed": 1}
    failures = pd.read_csv(out / "failures.csv")
    assert list(failures["night"]) == ["broken"] and failures["error"].iloc[0]
    assert_same_store(serial_store, out)

    shipped: list[str] = []
    real_run_tasks = prepare_mod.run_tasks

    def recording(client, fn, calls, *, names, **kw):
        shipped.extend(names)
        yield from real_run_tasks(client, fn, calls, names=names, **kw)

    monkeypatch.setattr(prepare_mod, "run_tasks", recording)
    again = prepare_store(cohort, out, progress=False, cluster=THREADS2)
    assert again.attrs["summary"] == {"done": 0, "skipped": 4, "failed": 1}
    assert shipped == ["broken"]  # finished nights are not sent again; the failure is retried
    assert_same_store(serial_store, out)


def test_a_task_that_raises_is_a_failed_night_not_a_crash(cohort, tmp_path, monkeypatch):
    real = prepare_mod.prepare_one

    def flaky(row, *args, **kwargs):
        if row["night"] == "sub-002_night1":
            raise RuntimeError("worker blew up")
        return real(row, *args, **kwargs)

    monkeypatch.setattr(prepare_mod, "prepare_one", flaky)
    run = prepare_store(cohort, tmp_path / "store", progress=False, cluster=THREADS2)
    by = run.set_index("night")
    assert by.loc["sub-002_night1", "status"] == "failed"
    assert "RuntimeError: worker blew up" in by.loc["sub-002_night1", "error"]
    assert run.attrs["summary"] == {"done": 3, "skipped": 0, "failed": 2}
    manifest = pd.read_csv(tmp_path / "store" / "manifest.csv")
    assert "sub-002_night1" not in set(manifest["night"])


def test_run_tasks_keeps_a_bounded_window_and_reports_exceptions():
    def square(x):
        if x == 3:
            raise ValueError("three")
        return x * x

    with open_client(ClusterSpec(workers=1, processes=False)) as client:
        calls = [((i,), {}) for i in range(7)]
        got = dict(run_tasks(client, square, calls, names=[str(i) for i in range(7)],
                             desc="t", progress=False, max_in_flight=2))  # fmt: skip
    assert isinstance(got.pop(3), ValueError)
    assert got == {i: i * i for i in range(7) if i != 3}


# --- embed -----------------------------------------------------------------------------------------
def test_embed_on_an_existing_scheduler_equals_serial_and_resumes(
    serial_store, model_dir, serial_embeddings, tmp_path
):
    epochs_ref, nights_ref = (pd.read_parquet(p) for p in serial_embeddings)
    out = tmp_path / "dist.parquet"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        spec = ClusterSpec(scheduler=cluster.scheduler_address)
        run = embed_store(serial_store, out, model_dir=model_dir, cluster=spec, progress=False)
        assert run.summary == {"done": 4, "resumed": 0, "skipped": 0, "failed": 0}
        pd.testing.assert_frame_equal(run.epochs, epochs_ref)
        pd.testing.assert_frame_equal(run.nights, nights_ref)

        parts = out.with_name(out.name + ".parts")
        (parts / "sub-001_night2.night.parquet").unlink()  # as if interrupted mid-night
        again = embed_store(serial_store, out, model_dir=model_dir, cluster=spec, progress=False)
        assert again.summary == {"done": 1, "resumed": 3, "skipped": 0, "failed": 0}
        pd.testing.assert_frame_equal(again.epochs, epochs_ref)

        # another modality subset must not reuse the parts; a night without eeg is skipped
        sub = embed_store(serial_store, out, model_dir=model_dir, cluster=spec, progress=False,
                          modalities=("eeg",))  # fmt: skip
        key = json.loads((parts / "_run.json").read_text())
        assert key["modalities"] == ["eeg"]
        assert sub.summary["resumed"] == 0
        assert set(sub.epochs["modalities"]) == {"eeg"}


@pytest.mark.slow
def test_cli_local_processes_prepare_and_embed_equal_serial(
    cohort, serial_store, model_dir, serial_embeddings, tmp_path, capsys
):
    """The real thing: ``--workers 2`` starts two worker processes (slower: ~10-40 s)."""
    store = tmp_path / "store"
    assert s2v(["prepare", str(cohort), "--out", str(store), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "4 done, 0 skipped, 1 failed" in text and "failed: broken" in text
    assert_same_store(serial_store, store)

    out = tmp_path / "emb.parquet"
    assert s2v(["embed", str(store), "--model", str(model_dir), "--out", str(out),
                "--workers", "2", "--quiet"]) == 0  # fmt: skip
    assert "4 done, 0 resumed, 0 skipped, 0 failed" in capsys.readouterr().out
    for ref, got in zip(serial_embeddings, (out, tmp_path / "emb_nights.parquet"), strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(got), pd.read_parquet(ref))
    assert not out.with_name(out.name + ".parts").exists()  # removed once the tables are written


# --- options and errors ------------------------------------------------------------------------------
def test_cluster_options_and_clear_errors(tmp_path, cohort, capsys):
    with pytest.raises(S2VError, match="choose one of"):
        ClusterSpec().validate()
    with pytest.raises(S2VError, match="choose one of"):
        ClusterSpec(workers=2, slurm=True).validate()
    with pytest.raises(S2VError, match=">= 1"):
        ClusterSpec(workers=0).validate()
    with pytest.raises(S2VError, match="address"):
        ClusterSpec(scheduler="nohost").validate()
    with pytest.raises(S2VError, match="cannot reach the Dask scheduler"):
        with open_client(ClusterSpec(scheduler="tcp://127.0.0.1:9", connect_timeout="1s")):
            pass
    assert s2v(["prepare", str(cohort), "--out", str(tmp_path / "s"), "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_embed_cluster_needs_a_store(tmp_path, capsys):
    edf = next(Path(__file__).parent.glob("*.py"))  # any existing file that is not a store
    assert s2v(["embed", str(edf), "--out", str(tmp_path / "e.parquet"), "--workers", "2"]) == 2
    assert "need a cohort store" in capsys.readouterr().err


def test_slurm_without_dask_jobqueue_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails
    with pytest.raises(S2VError, match="pip install dask-jobqueue"):
        with open_client(ClusterSpec(slurm=True)):
            pass


def test_slurm_options_reach_slurmcluster(cohort, serial_store, tmp_path, monkeypatch):
    """A stand-in SLURMCluster (a local cluster) records what s2v asks of dask-jobqueue."""
    seen: dict = {}

    class FakeSLURMCluster(distributed.LocalCluster):
        def __init__(self, **kwargs):
            seen["init"] = kwargs
            super().__init__(n_workers=0, threads_per_worker=1, processes=False,
                             dashboard_address=":0")  # fmt: skip

        def scale(self, n=None, jobs=0, memory=None, cores=None):
            seen.setdefault("jobs", []).append(jobs)
            return super().scale(jobs)

    monkeypatch.setitem(sys.modules, "dask_jobqueue",
                        types.SimpleNamespace(SLURMCluster=FakeSLURMCluster))  # fmt: skip
    p = argparse.ArgumentParser()
    cli_options.add_cluster_options(p)
    args = p.parse_args(["--slurm", "--slurm-queue", "short", "--slurm-cores", "2",
                         "--slurm-memory", "8GB", "--slurm-walltime", "00:30:00",
                         "--slurm-jobs", "2", "--slurm-account", "lab",
                         "--slurm-prologue", "source env/bin/activate"])  # fmt: skip
    spec = cli_options.cluster_from_args(args)
    run = prepare_store(cohort, tmp_path / "store", progress=False, cluster=spec)
    assert run.attrs["summary"]["done"] == 4
    assert seen["init"] == {"cores": 2, "processes": 2, "memory": "8GB", "walltime": "00:30:00",
                            "job_script_prologue": ["source env/bin/activate"],
                            "queue": "short", "account": "lab"}  # fmt: skip
    assert 2 in seen["jobs"]  # cluster.scale(jobs=2); closing scales to 0 afterwards
    assert_same_store(serial_store, tmp_path / "store")
