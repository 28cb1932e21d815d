"""Fully sharded data parallel (``train.distributed: fsdp``) and the full state of a possibly sharded model.

With ``fsdp`` on several processes the model is sharded with FSDP2
(``torch.distributed.fsdp.fully_shard``) per block copy, then the root: at rest
each process holds 1/N of every parameter, of its gradient and of the optimizer
state; forward and backward gather one block copy at a time (each block's
generated module is its own FSDP unit, freed again after its forward and after
its backward), and gradients are reduce-scattered (averaged) back into the
shards -- the same update as DDP and as one process with the N-times batch.
A large top-level layer (an embedding or head: at least 1/10 of the largest
block copy's parameters) is a unit of its own too, gathered only around its
calls: an untied one's one call, a tied table's lookup and its head's
``self.wte.attend(x)`` (a method FSDP2 is told gathers too); the root unit
keeps the rest (small norms, a table looked up twice). So the gathered peak is
the root's parameters plus the largest other unit's, not the whole model.

Checkpoints never hold shards: :func:`model_state` / :func:`optimizer_state`
gather the full tensors to rank 0 (a collective: every rank calls them), in the
layout a one-process run writes (spec keys; optimizer state by parameter
index), so a checkpoint from an FSDP run loads in one process and a DDP
checkpoint resumes under FSDP. :func:`load_model_state` /
:func:`load_optimizer_state` scatter a full state back into the shards.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def shard(model: nn.Module, per_block: bool = True, mp_policy: Any = None, mesh: Any = None) -> list[str]:
    """Shard ``model`` in place: each block copy and each large top-level layer its own FSDP unit
    (``per_block``, :func:`own_units`), then the root; the process group must be up. Call before making the
    optimizer. ``mp_policy``: FSDP2's ``MixedPrecisionPolicy`` (:func:`.amp.fsdp_policy`; None: fp32). ``mesh``:
    the (1-D) mesh to shard over (default: every process). Returns the names of the units sharded on their own."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    policy = mp_policy or MixedPrecisionPolicy()
    units = own_units(model) if per_block else {}
    for unit in units.values():
        fully_shard(unit, mesh=mesh, mp_policy=policy)
        for method in forward_methods(unit):  # a tied table's head: gathered around it as around forward
            register_fsdp_forward_method(unit, method)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return list(units)


#: a top-level layer is an FSDP unit of its own when it holds at least this share of the largest block copy's
#: parameters: a smaller one (a norm, learned positions) would cost two gathers and a reduce-scatter a step to
#: save less memory than a tenth of a block
TOP_LEVEL_SHARE = 0.1


def forward_methods(module: nn.Module) -> tuple[str, ...]:
    """The methods besides ``forward`` that read ``module``'s parameters (``Embedding.FORWARD_METHODS``:
    ``attend``, the tied head)."""
    return tuple(getattr(module, "FORWARD_METHODS", ()))


def own_units(model: nn.Module) -> dict[str, nn.Module]:
    """The modules that can be FSDP units of their own, by name (``h.0``, ``wte``): the block copies, then the
    large top-level layers (:data:`TOP_LEVEL_SHARE`) the model's forward only calls -- ``forward`` and each
    :func:`forward_methods` at most once (a tied table: ``self.wte(tokens)`` and ``self.wte.attend(x)``). Each
    one owns its parameters: none is also reached from outside it (a ``share: NAME`` use kept inline may hold
    another copy's module; it would run on the shards). A layer whose weight the forward reads outside a call,
    or calls twice (an embedding tied to another lookup), stays in the root: after a call the weight is the
    shard again."""
    from nngraph.compilers.torch.module import blocks

    owners: dict[int, set[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), set()).add(name)

    def owns(prefix: str, module: nn.Module) -> bool:
        return all(all(n.startswith(f"{prefix}.") for n in owners[id(p)]) for p in module.parameters())

    units: dict[str, nn.Module] = {b.nng_prefix: b for b in blocks(model) if owns(b.nng_prefix, b)}
    if not units:
        return units
    least = TOP_LEVEL_SHARE * max(sum(p.numel() for p in b.parameters()) for b in units.values())
    uses = _uses(model)
    for name, child in model.named_children():
        size = sum(p.numel() for p in child.parameters())
        how = uses.get(name, [])
        called = how and len(set(how)) == len(how) and set(how) <= {"forward", *forward_methods(child)}
        if called and size and size >= least and owns(name, child):
            units[name] = child
    return units


def _uses(model: nn.Module) -> dict[str, list[str]]:
    """Each attribute ``X`` of ``self`` the model's generated ``forward`` reads, with how it reads it, use by use:
    ``"forward"`` for a call ``self.X(...)``, ``"M"`` for a method call ``self.X.M(...)``, ``""`` for anything
    else (``self.X.weight``, a call inside a loop)."""
    import ast

    source = getattr(model, "source", None)
    if not source:
        return {}
    cls = next((c for c in ast.parse(source).body if isinstance(c, ast.ClassDef) and c.name == type(model).__name__),
               None)
    forward = next((f for f in (cls.body if cls else []) if isinstance(f, ast.FunctionDef) and f.name == "forward"),
                   None)
    if forward is None:
        return {}
    looped = {id(n) for loop in ast.walk(forward) if isinstance(loop, (ast.For, ast.While)) for n in ast.walk(loop)}
    calls = {id(n.func) for n in ast.walk(forward) if isinstance(n, ast.Call) and id(n) not in looped}
    methods = {id(n.value): n.attr for n in ast.walk(forward) if isinstance(n, ast.Attribute) and id(n) in calls}
    uses: dict[str, list[str]] = {}
    for node in ast.walk(forward):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            uses.setdefault(node.attr, []).append("forward" if id(node) in calls else methods.get(id(node), ""))
    return uses


def grad_scaler(device: torch.device, init_scale: float, growth_interval: int) -> Any:
    """A gradient scaler whose inf/NaN check is agreed by all ranks (each one sees only its shard of the grads)."""
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    return ShardedGradScaler(device.type, init_scale=init_scale, growth_interval=growth_interval)


def _full(value: Any) -> Any:
    """A sharded tensor gathered whole (a collective: every rank calls it for the same tensors in the same
    order), on the CPU; other values as they are."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        value = value.full_tensor()
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def _local(full: torch.Tensor, like: Any) -> Any:
    """This rank's shard of ``full`` (every rank holds all of it: no communication), shaped like ``like``."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(like, DTensor):
        return full
    return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements, src_data_rank=None)


def _is_main() -> bool:
    import torch.distributed as dist

    return dist.get_rank() == 0


def _reshard(model: nn.Module) -> None:
    """FSDP: free the gathered parameters (after an evaluation the root may still hold them); tensor
    parallelism alone keeps its DTensor shards registered and has nothing to free."""
    if hasattr(model, "reshard"):
        model.reshard()


def model_state(model: nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """The full state dict with spec keys, each shared tensor once; sharded: gathered, on rank 0 only ({} elsewhere)."""
    from nngraph.compilers.torch import state_dict_for

    if not sharded:
        return dict(state_dict_for(model))
    _reshard(model)
    state, main = state_dict_for(model), _is_main()
    full = {k: _full(v) for k, v in state.items()}
    return full if main else {}


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], sharded: bool) -> None:
    """Load a full spec-keyed state dict (every rank passes the whole of it)."""
    from nngraph.compilers.torch import load_state_dict

    if not sharded:
        load_state_dict(model, state)
        return
    from nngraph.compilers.torch.state import aliases

    _reshard(model)  # the parameters registered on the module are the shards again
    state = dict(state)
    for alias, first in aliases(model).items():
        state.setdefault(alias, state[first])
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing or set(state) - set(own):
        raise KeyError(f"the weights do not match the model (missing {missing}, unexpected "
                       f"{sorted(set(state) - set(own))})")
    with torch.no_grad():
        for key, target in own.items():
            shard_ = _local(state[key], target)
            local = target.to_local() if hasattr(target, "to_local") else target
            local.copy_(shard_.to_local() if hasattr(shard_, "to_local") else shard_)


def optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, sharded: bool) -> dict[str, Any]:
    """``opt.state_dict()``, gathered when sharded (on rank 0; {} elsewhere)."""
    sd = opt.state_dict()
    if not sharded:
        return sd
    # sorted: after a resume the state's order is the checkpoint file's, which safetensors does not fix
    # (it may differ between processes, and gathers in a different order abort the group)
    state = {i: {k: _full(sd["state"][i][k]) for k in sorted(sd["state"][i])} for i in sorted(sd["state"])}
    return {"state": state, "param_groups": sd["param_groups"]} if _is_main() else {}


def load_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, sd: dict[str, Any], sharded: bool) -> None:
    """Load what :func:`optimizer_state` returned (full tensors) into ``opt``; sharded: each rank keeps its shard."""
    if sharded:
        params = [p for group in opt.param_groups for p in group["params"]]
        sd = {"param_groups": sd["param_groups"],
              "state": {i: {k: (_local(v, params[int(i)]) if isinstance(v, torch.Tensor) and v.shape == params[int(i)].shape
                                else v) for k, v in st.items()} for i, st in sd["state"].items()}}
    foreach = [g.get("foreach") for g in opt.param_groups]
    opt.load_state_dict(sd)
    for group, own in zip(opt.param_groups, foreach):
        group["foreach"] = own  # this process's choice (:func:`.optim.mixed`), not the writer's
