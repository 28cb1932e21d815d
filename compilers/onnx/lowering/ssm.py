"""Export lowering of the selective SSM (``mamba``): the recurrence becomes one ONNX ``Scan`` over the sequence.

The torch forward loops over positions in Python (or over chunks), which a trace would unroll
for the sample length only. Here the projections, the causal depthwise conv and the
discretization a = exp(Δ A), b = Δ B u stay ordinary ops, and the recurrence (seed 000, "State
Space Models (SSMs)")::

    h_t = a_t ⊙ h_{t-1} + b_t          h: [B, d_inner, N], h_{-1} = 0
    y_t = Σ_n h_t[:, :, n] · C_t[:, n]

is the placeholder ``ai.nngraph::SelectiveScan(h0, a, b, C)``, rewritten after the export to an
ONNX ``Scan`` (scan axis 1 of a, b [B, T, d_inner, N] and C [B, T, N]; carried state h; scanned
output y [B, T, d_inner]) whose body is four nodes: Mul, Add, Unsqueeze/Mul, ReduceSum. The
sequence length is therefore dynamic, the state never leaves the loop, and the result equals the
sequential scan (same operations in the same order).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .registry import emits, lowering

if TYPE_CHECKING:
    import torch

DOMAIN = "ai.nngraph"
OP = "SelectiveScan"


@functools.cache
def _selective_scan() -> Any:
    """The autograd Function whose ``symbolic`` is the placeholder (made on first use: registering this
    lowering, which ``--explain`` does, needs no torch)."""
    import torch

    class _SelectiveScan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h0, a, b, c):  # noqa: D401 - torch API
            state = torch._C._get_tracing_state()  # untraced: the node becomes the placeholder, not this loop
            torch._C._set_tracing_state(None)
            try:
                h, ys = h0, []
                for t in range(a.shape[1]):
                    h = a[:, t] * h + b[:, t]
                    ys.append((h * c[:, t].unsqueeze(1)).sum(-1))
                return torch.stack(ys, dim=1) if ys else h0.new_zeros(a.shape[0], 0, a.shape[2])
            finally:
                torch._C._set_tracing_state(state)

        @staticmethod
        def symbolic(g, h0, a, b, c):
            out = g.op(f"{DOMAIN}::{OP}", h0, a, b, c)
            out.setType(h0.type().with_sizes([None, None, None]))
            return out

    return _SelectiveScan


@lowering("mamba", "selective scan as one ONNX Scan over the sequence (state carried inside)", stateful=True)
def mamba_forward(module: Any, io: Any, x: torch.Tensor) -> torch.Tensor:
    """:meth:`nngraph.compilers.torch.ops.ssm.Mamba.forward` with the scan as the placeholder of :func:`_selective_scan`."""
    import torch
    import torch.nn.functional as F

    from nngraph.compilers.torch.ops.ssm import _discretize

    u, z, delta, A, B, C = module.ssm_inputs(x)
    a, b = _discretize(u, delta, A, B)
    y = _selective_scan().apply(torch.zeros_like(b[:, 0]), a, b, C)
    y = y + u * module.D
    return module.out_proj(y * F.silu(z))


@emits(OP)
def emit(node: Any, names: Any) -> list[Any]:
    """The ONNX ``Scan`` replacing a ``SelectiveScan`` placeholder ``node`` (inputs h0, a, b, C; output y)."""
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    p = names.fresh(node.name or "selective_scan")
    body = helper.make_graph(
        [helper.make_node("Mul", ["a_t", "h_prev"], [f"{p}_ah"]),
         helper.make_node("Add", [f"{p}_ah", "b_t"], ["h_next"]),
         helper.make_node("Unsqueeze", ["c_t", f"{p}_axis1"], [f"{p}_c"]),
         helper.make_node("Mul", ["h_next", f"{p}_c"], [f"{p}_hc"]),
         helper.make_node("ReduceSum", [f"{p}_hc", f"{p}_axis_last"], ["y_t"], keepdims=0)],
        f"{p}_body",
        [helper.make_tensor_value_info("h_prev", f, None), helper.make_tensor_value_info("a_t", f, None),
         helper.make_tensor_value_info("b_t", f, None), helper.make_tensor_value_info("c_t", f, None)],
        [helper.make_tensor_value_info("h_next", f, None), helper.make_tensor_value_info("y_t", f, None)],
        initializer=[helper.make_tensor(f"{p}_axis1", TensorProto.INT64, [1], [1]),
                     helper.make_tensor(f"{p}_axis_last", TensorProto.INT64, [1], [-1])])
    h0, a, b, c = node.input
    return [helper.make_node("Scan", [h0, a, b, c], [f"{p}_h_final", node.output[0]], name=p, body=body,
                             num_scan_inputs=3, scan_input_axes=[1, 1, 1], scan_output_axes=[1])]
