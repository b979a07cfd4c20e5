"""``torch.distributed`` data-parallel training set up from ``torchrun``'s environment.

``torchrun --nproc_per_node N -m crunet train --config X.yaml`` starts N processes
with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init_distributed` reads them and joins the process group (``gloo`` on CPU,
``nccl`` on CUDA, one GPU per local rank). Without those variables (or with
``WORLD_SIZE=1``) it returns a single-process context and touches nothing.

The model is wrapped in ``DistributedDataParallel`` (gradients all-reduced and
averaged every step); the on-the-fly data stream is sharded by
:func:`recon.train.data.global_index`; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from recon.errors import InputError


@dataclass
class DistContext:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum a list of floats over ranks (identity without DDP)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def max_param_difference(self, model: torch.nn.Module) -> float:
        """Largest ``|p_rank - p_rank0|`` over all parameters and ranks (0.0 without DDP).

        Rank 0's parameters are broadcast and compared on every rank: DDP keeps the
        replicas identical, so anything but 0 is a bug.
        """
        if not self.enabled:
            return 0.0
        worst = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
        for p in model.parameters():
            ref = p.detach().clone()
            dist.broadcast(ref, src=0)
            worst = torch.maximum(worst, (p.detach() - ref).abs().max().double())
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        return float(worst)

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group described by torchrun's environment variables.

    ``device`` is the device the run asked for; on CUDA the process is bound to
    ``cuda:LOCAL_RANK`` (use :func:`process_device` for the device to train on).
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise InputError(f"WORLD_SIZE={world} but {name} is not set: launch with torchrun")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local, enabled=True)


def process_device(device: torch.device, ctx: DistContext) -> torch.device:
    """``cuda:LOCAL_RANK`` for a distributed CUDA run, else ``device`` unchanged."""
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap_model(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else the model itself."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
