"""Measured per-rank memory of one training step under FSDP2 (gloo, CPU), for bench/scale.py.

Each of N spawned ranks builds the decoder, shards it (``whole``: one FSDP unit for the model, the old behaviour;
``per_block``: each block copy and each large top-level layer its own unit, then the root; N = 1: the plain
module, no FSDP), runs one AdamW
step (so the optimizer state exists), then measures a second step:

* ``params`` / ``grads`` / ``optim``: bytes of this rank's local shards (``DTensor.to_local``) of the parameters,
  of their gradients after backward, and of AdamW's two moments -- what stays resident between steps (grads until
  ``zero_grad``);
* ``gathered``: the peak, over every aten op of the step's forward and backward (a ``TorchDispatchMode`` samples
  before each op), of the bytes of the unsharded parameters FSDP has all-gathered at that moment plus the
  unsharded gradients not yet reduce-scattered (distinct storages, freed ones are 0 bytes);
* ``step_peak``: the peak of all tensor bytes allocated during the step (torch's profiler memory events:
  gathered weights, gradients, activations, communication buffers, temporaries) on top of the resident shards.

Rank 0 writes its numbers as JSON to the path it is given.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode


def _local_bytes(t: Any) -> int:
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def _fsdp_params(model: torch.nn.Module) -> list[Any]:
    """The FSDPParam records of every FSDP unit in ``model`` (torch's FSDP2 internals: what was gathered)."""
    from torch.distributed.fsdp import FSDPModule

    out = []
    for m in model.modules():
        if isinstance(m, FSDPModule):
            for group in m._get_fsdp_state()._fsdp_param_groups:
                out.extend(group.fsdp_params)
    return out


def _gathered_bytes(fsdp_params: list[Any]) -> tuple[int, int]:
    """Bytes of the unsharded (all-gathered) parameters and of the unsharded gradients alive now (distinct
    storages)."""
    params: dict[int, int] = {}
    grads: dict[int, int] = {}
    for fp in fsdp_params:
        unsharded = getattr(fp, "_unsharded_param", None)
        for seen, tensors in ((params, getattr(fp, "all_gather_outputs", None) or []),
                              (grads, [unsharded.grad] if unsharded is not None and unsharded.grad is not None else [])):
            for t in tensors:
                st = t.untyped_storage()
                if st.nbytes():
                    seen[st.data_ptr()] = st.nbytes()
    return sum(params.values()), sum(grads.values())


class _PeakGathered(TorchDispatchMode):
    """Samples :func:`_gathered_bytes` before every aten op; ``peak``: (params, grads) where their sum peaked."""

    def __init__(self, fsdp_params: list[Any]):
        super().__init__()
        self.fsdp_params, self.peak = fsdp_params, (0, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        now = _gathered_bytes(self.fsdp_params)
        if sum(now) > sum(self.peak):
            self.peak = now
        return func(*args, **(kwargs or {}))


def measure(rank: int, world: int, port: int, mode: str, spec: str, sets: list[str], out: str) -> None:
    """One rank's numbers (see the module docstring); rank 0 writes them to ``out``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _timing import ROOT, peak_tensor_bytes

    from nngraph.compilers.torch import build_module
    from nngraph.compilers.train.fsdp import shard
    from nngraph.spec import load_spec

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = build_module(load_spec(ROOT / "specs" / spec, sets), seed=0).train()
    total = sum(p.numel() for p in model.parameters())
    if world > 1:
        shard(model, per_block=mode == "per_block")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, 100, (1, 32), generator=torch.Generator().manual_seed(rank))

    def step() -> None:
        out = model(tokens)
        (out if isinstance(out, torch.Tensor) else next(iter(out.values()))).float().mean().backward()

    step()
    opt.step()
    opt.zero_grad(set_to_none=True)
    tracker = _PeakGathered(_fsdp_params(model))
    resident = sum(_local_bytes(p) for p in model.parameters()) + sum(
        _local_bytes(v) for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim())

    def tracked() -> None:
        with tracker:
            step()

    step_peak = peak_tensor_bytes(tracked)
    row = {"ranks": world, "mode": mode if world > 1 else "one process", "params_total": total,
           "params": sum(_local_bytes(p) for p in model.parameters()),
           "grads": sum(_local_bytes(p.grad) for p in model.parameters() if p.grad is not None),
           "optim": sum(_local_bytes(v) for s in opt.state.values() for v in s.values()
                        if isinstance(v, torch.Tensor) and v.dim()),
           "gathered": sum(tracker.peak), "gathered_params": tracker.peak[0], "gathered_grads": tracker.peak[1],
           "resident": resident, "step_peak": step_peak}
    if rank == 0:
        Path(out).write_text(json.dumps(row))
    dist.barrier()
    dist.destroy_process_group()
