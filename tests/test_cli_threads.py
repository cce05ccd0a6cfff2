"""``--threads N`` caps every pool the staging path uses: torch, channel reading, numpy/scipy BLAS."""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from s2v_core.cli.options import apply_threads
from s2v_core.errors import S2VError
from s2v_core.recording import loading


@pytest.fixture
def restore_pools():
    torch_before, read_before = torch.get_num_threads(), loading.READ_THREADS
    pools_before = {info["prefix"]: info["num_threads"] for info in threadpool_info()}
    yield
    torch.set_num_threads(torch_before)
    loading.set_read_threads(read_before)
    threadpool_limits(limits=pools_before)


def test_threads_caps_torch_reading_and_blas(restore_pools):
    assert threadpool_info(), "numpy's BLAS should be loaded by now"
    apply_threads(1)
    assert torch.get_num_threads() == 1 and loading.READ_THREADS == 1
    assert {info["num_threads"] for info in threadpool_info()} == {1}


def test_threads_none_changes_nothing_and_zero_is_refused(restore_pools):
    before = [(info["prefix"], info["num_threads"]) for info in threadpool_info()]
    apply_threads(None)
    assert [(info["prefix"], info["num_threads"]) for info in threadpool_info()] == before
    with pytest.raises(S2VError, match="--threads must be >= 1"):
        apply_threads(0)
