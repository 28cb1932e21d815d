"""Data-parallel training with ``torch.distributed``: gloo on the CPU, NCCL on CUDA.

``nngraph train --nproc-per-node N`` starts N workers through torch's elastic
launcher (the API behind ``torchrun``), each running the same training with
``RANK``/``WORLD_SIZE`` set; under ``torchrun`` directly those variables are
already there. Each rank takes its slice of the global batch (see
:mod:`.data.base`), DistributedDataParallel averages gradients, rank 0 writes
logs and checkpoints.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env() -> Dist:
    """Rank and world size from the environment torchrun / the elastic launcher set."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(d: Dist, device: torch.device) -> None:
    """Join the process group (once)."""
    if d.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=d.rank, world_size=d.world)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def mean_across(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """The average of a tensor over ranks (identity on one process)."""
    if not d.active:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / d.world


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, entry: Callable[..., Any], *args: Any) -> dict[int, Any]:
    """Run ``entry(*args)`` in ``nproc`` local workers with torch's elastic launcher; returns rank -> result."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"nngraph-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
                          monitor_interval=0.2, start_method="spawn")
    return elastic_launch(config, entry)(*args)
