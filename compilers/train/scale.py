"""Options that trade compute for memory or spread a model over processes, applied per block copy.

The torch back end compiles each top-level block use to instances of a generated class
(:class:`nngraph.compilers.torch.module.Block`, one per copy), so these work on the spec's own units:

* ``train.activation_checkpointing`` (``true`` or block names): the chosen copies recompute their forward in the
  backward pass (non-reentrant ``torch.utils.checkpoint``, same RNG state), so only each copy's inputs are kept:
  activation memory falls from ~L·(per-block intermediates) to ~L·(block input) + one block's intermediates,
  and the gradients are exactly those without checkpointing.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from nngraph.compilers.torch.module import blocks

#: torch.compile options of ``train.compile`` with inductor (see :func:`compile_blocks`)
INDUCTOR_OPTIONS = {"cpp_wrapper": True}


def apply_checkpointing(run: Any, model: nn.Module) -> list[str]:
    """Mark the block copies ``train.activation_checkpointing`` selects; returns their names (``h.0``, ...).

    Raises the run's located error when a named block is not compiled to a module (or, for ``true``, none is).
    """
    sel = run.values["activation_checkpointing"]
    if sel is False:
        return []
    found = blocks(model)
    names = sorted({b.nng_block for b in found})
    unknown = [] if sel is True else [n for n in sel if n not in names]
    if unknown or not found:
        what = f"block(s) {', '.join(unknown)} are" if unknown else "no block is"
        raise run.error("activation_checkpointing", f"train.activation_checkpointing: {what} not compiled to a module",
                        f"blocks compiled to modules: {', '.join(names) or 'none'} (a block use stays inline when "
                        "it shares weights or reads another node's module)")
    chosen = [b for b in found if sel is True or b.nng_block in sel]
    for b in chosen:
        b.nng_checkpoint = True
    return [b.nng_prefix for b in chosen]


def compile_blocks(model: nn.Module, backend: str = "inductor", cpp_wrapper: bool = True) -> dict[str, str]:
    """Regional compilation (``train.compile: true``): each block copy's ``forward`` through ``torch.compile``
    with ``fullgraph=True``; copies of one generated class share its code, so dynamo captures it once and the
    other copies reuse the graph. Hooks (FSDP, checkpointing) stay outside the compiled region.

    Inductor runs with its C++ wrapper (``cpp_wrapper``): the compiled forward and backward graphs call their
    kernels from generated C++ instead of a generated Python function -- the same kernels, so the same numbers
    bit for bit, with less overhead per call (gpt_char's step on one thread: 3% less CPU time, the median of nine
    side-by-side runs, -0.2% to 4.2%; bench/scale.py), for a few seconds more compiling. Not under tensor
    parallelism (``cpp_wrapper=False``): on the blocks' DTensor graphs the C++ wrapper fails (torch 2.13:
    "object of type 'DeviceMesh' has no len()").

    A class whose forward cannot be captured whole (the MoE's data-dependent routing) runs eagerly: on its first
    call the capture error is caught, every copy of that class goes back to its plain forward, and the
    returned dict (filled as that happens) maps the block name to the reason. Returns that dict.
    """
    import torch

    options = INDUCTOR_OPTIONS if backend == "inductor" and cpp_wrapper else None  # other backends refuse them
    fallen: dict[str, str] = {}
    for b in blocks(model):
        b.forward = _guarded(b, torch.compile(b.forward, fullgraph=True, backend=backend, options=options), fallen)
    return fallen


def _guarded(block: nn.Module, compiled: Any, fallen: dict[str, str]) -> Any:
    """``compiled``, or the block's plain forward once its class failed to capture (recorded in ``fallen``)."""
    import warnings

    from torch._dynamo.exc import TorchDynamoException
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    plain = type(block).forward.__get__(block)

    def forward(*args: Any, **kwargs: Any) -> Any:
        if block.nng_block in fallen:
            return plain(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except (TorchDynamoException, GuardOnDataDependentSymNode) as exc:
            reason = _reason(exc)
            fallen[block.nng_block] = reason
            warnings.warn(f"train.compile: block '{block.nng_block}' ({type(block).__name__}, e.g. "
                          f"'{block.nng_prefix}') cannot be captured whole by torch.compile, so it runs eagerly: "
                          f"{reason}", stacklevel=2)
            return plain(*args, **kwargs)

    return forward


def _reason(exc: BaseException) -> str:
    """The first line of a capture error, and the user code that caused it (dynamo's ``Caused by:`` line)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    cause = next((line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by:")), None)
    return lines[0][:160] + (f" -- at {cause[:160]}" if cause else "")
