"""Distributed data parallel (DDP) helpers for pretraining, launched with ``torchrun``.

:func:`s2v_core.train.pretrain.pretrain` calls :func:`init_distributed`; when the environment
says ``WORLD_SIZE > 1`` (torchrun sets it) it joins the process group (gloo on CPU, nccl on
CUDA), each process trains on its own share of the batches and only rank 0 writes files.
Negatives stay per process, as in the paper: the contrastive loss of a process sees only its
own batch; only gradients are averaged.

Single machine, two processes (CPU or two GPUs)::

    torchrun --standalone --nproc-per-node 2 -m s2v_core.cli.train pretrain \
        --data store/ --preset small --out runs/ddp

Two machines with 8 GPUs each (run the same command on both; ``HOST`` is any reachable
address of the first machine, ``JOB`` any id shared by the two)::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \
        --rdzv-endpoint HOST:29500 --rdzv-id JOB \
        -m s2v_core.cli.train pretrain --data /shared/store --preset dense --lr 5e-5 \
        --out /shared/runs/dense

The store and the output folder must be visible to every node (rank 0 writes the checkpoints).

Only the tokenizers of the batch's two modalities get gradients in a step, and different
processes draw different pairs, so the model is wrapped with ``find_unused_parameters=True``:
DDP then averages every gradient that exists on some process and leaves parameters that no
process used without a gradient (AdamW skips them), exactly as a single process would.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from s2v_core.model.device import resolve_device

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "broadcast_flag",
    "cleanup",
    "init_distributed",
    "state_sha256",
    "wrap_model",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int  # global rank, 0 .. world_size - 1
    world_size: int  # number of processes
    local_rank: int  # rank on this machine (selects the GPU)
    device: torch.device  # where this process computes
    owns_group: bool  # this process created the process group (and destroys it at the end)

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that writes files and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; otherwise a single process.

    Parameters
    ----------
    device : str or torch.device
        The requested device; under DDP on CUDA each process takes ``cuda:LOCAL_RANK``.

    Returns
    -------
    DistContext
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world_size <= 1:
        return DistContext(0, 1, 0, dev, owns_group=False)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank()
    log.info("DDP rank %d of %d on %s (%s)", rank, world_size, dev, dist.get_backend())
    return DistContext(rank, dist.get_world_size(), local_rank, dev, owns_group=owns)


def wrap_model(module: nn.Module, ctx: DistContext) -> nn.Module:
    """Wrap in :class:`DistributedDataParallel` under DDP (see module docstring); else as is."""
    if not ctx.distributed:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of ``values`` over all processes (the values themselves when alone)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's ``flag`` on every process (e.g. a stop request from a callback)."""
    if not ctx.distributed:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=ctx.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def cleanup(ctx: DistContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def state_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes, in key order).

    Two processes holding bit-identical weights give the same digest; used to check that DDP
    ranks stay in sync.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
