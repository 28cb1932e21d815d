"""Torch implementations of the dense layers (nngraph/ops/dense.py).

* ``linear`` -- ``nn.Linear`` (seed 000, "Neural networks": y = x Wᵀ + b);
  state ``<node>.weight [out, in]``, ``<node>.bias [out]``. Default init: He
  (``kaiming_normal``, fan_in; seed 000 on He initialization) when every reader
  of the node is a relu / leaky_relu, Xavier/Glorot uniform otherwise; bias 0.
  With ``tie: embed`` it has no weight of its own: the forward line is
  ``self.embed.attend(x, self.<node>.bias)`` (:meth:`Embedding.attend`: x Eᵀ + b), so the state
  dict holds the tied matrix once, as ``embed.weight``. ``parametrize: orthogonal`` registers
  ``torch.nn.utils.parametrizations.orthogonal`` on the weight after the initializers
  (state ``<node>.parametrizations.weight.original [out, in]``): W stays orthogonal
  through optimizer steps.
* ``mlp`` -- :class:`MLP`: ``down(dropout(act(up(x))))`` (seed 002,
  Transformer position-wise FFN); state ``<node>.up.*``, ``<node>.down.*``.
* ``gated_mlp`` -- :class:`GatedMLP`: ``down(act(gate(x)) * up(x))``,
  SwiGLU with silu, GeGLU with gelu (seed 002, Transformer FFN variants);
  state ``<node>.gate.*``, ``<node>.up.*``, ``<node>.down.*``.
* ``embedding`` -- :class:`Embedding`, an ``nn.Embedding`` (seed 002, Transformer input embedding);
  ``<node>.weight [num, dim]``; the padding row stays zero. With ``tie: other`` it has no
  state: the forward line calls the other node's module, ``self.other(tokens)``, so both
  lookups read (and train) the one ``other.weight``.

The FFNs and embeddings are transformer layers: weights normal(0, 0.02)
(GPT-2/BERT), biases 0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import TP_COLWISE, TP_LINEAR, TP_ROWWISE, TP_VOCAB, Emit, NodeCtx, torch_op
from .activation import activation_fn

_TRANSFORMER_INIT = {"weight": ("normal", {"std": 0.02}), "bias": "zeros"}


class MLP(nn.Module):
    """Position-wise FFN ``down(dropout(act(up(x))))``."""

    def __init__(self, d_in: int, hidden: int, d_out: int, activation: str = "gelu", bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(d_in, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_out, bias=bias)
        self.activation = activation
        self.act = activation_fn(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.up(x))
        if self.drop is not None:
            h = self.drop(h)
        return self.down(h)

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


class GatedMLP(nn.Module):
    """Gated FFN ``down(act(gate(x)) * up(x))`` (SwiGLU / GeGLU)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, activation: str = "silu", bias: bool = False):
        super().__init__()
        self.gate = nn.Linear(d_in, hidden, bias=bias)
        self.up = nn.Linear(d_in, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_out, bias=bias)
        self.activation = activation
        self.act = activation_fn(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


class Embedding(nn.Embedding):
    """``nn.Embedding`` whose table can also be read as a tied output layer (:meth:`attend`).

    The tied head is a call of the table's own module, not a read of its ``weight`` from outside: FSDP2
    gathers a unit's parameters only around its calls, so a table sharded on its own (``train.fsdp``) must be
    reached through a method registered as a forward (:data:`FORWARD_METHODS`). State: ``weight`` only, as
    ``nn.Embedding``.
    """

    #: methods besides ``forward`` that read the parameters (FSDP2 gathers around them too)
    FORWARD_METHODS = ("attend",)

    def attend(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The tied output layer: logits = x Eᵀ + b (Press & Wolf 2017), E = ``weight [num, dim]``."""
        return F.linear(x, self.weight, bias)


class TiedLinear(nn.Module):
    """The bias of a linear whose weight is another node's (weight tying); the forward reads both."""

    def __init__(self, out: int):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(out))


class OrthogonalLinear(nn.Linear):
    """``nn.Linear`` whose weight is parametrized orthogonal (see ``_linear_parametrize``).

    While traced (ONNX export) the weight is computed outside the trace, so the file stores the orthogonal
    matrix itself as a constant (ONNX has no matrix exponential for the parametrization).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            return super().forward(x)
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            weight = self.weight.detach().clone()
        finally:
            torch._C._set_tracing_state(state)
        return F.linear(x, weight, self.bias)


def _linear_module(ctx: NodeCtx) -> nn.Module | None:
    if ctx.params.get("tie"):
        return TiedLinear(ctx.params["out"]) if ctx.params["bias"] else None
    cls = OrthogonalLinear if ctx.params.get("parametrize", "none") == "orthogonal" else nn.Linear
    return cls(ctx.in_features, ctx.params["out"], bias=ctx.params["bias"])


def _linear_init(ctx: NodeCtx) -> dict[str, Any]:
    readers = [op for op, _ in ctx.consumers]
    if readers and all(op == "relu" for op in readers):
        weight = ("kaiming_normal", {"nonlinearity": "relu"})
    elif readers and all(op == "leaky_relu" for op in readers):
        slope = ctx.consumers[0][1].get("negative_slope", 0.01)
        weight = ("kaiming_normal", {"a": slope, "nonlinearity": "leaky_relu"})
    else:
        weight = ("xavier_uniform", {})
    return {"weight": weight, "bias": "zeros"}


def _linear_parametrize(module: nn.Module | None, ctx: NodeCtx) -> None:
    """``parametrize: orthogonal``: W = orthogonal map of ``parametrizations.weight.original`` (after the initializers)."""
    if module is not None and ctx.params.get("parametrize", "none") == "orthogonal" and not module.weight.is_meta:
        from torch.nn.utils.parametrizations import orthogonal

        orthogonal(module, "weight")


def split_hidden(hidden: int, tp: int, roles: dict[str, str]) -> dict[str, str]:
    """``roles`` when the FFN's ``hidden`` features divide over ``tp`` ranks (Megatron's column/row pair: each
    rank computes hidden/tp features and a partial sum of the output), else a ``ValueError``."""
    if hidden % tp:
        raise ValueError(f"its hidden size {hidden} does not divide over tp={tp} ranks")
    return roles


def _linear_tp(module: nn.Module | None, tp: int) -> dict[str, str] | str:
    """A plain ``nn.Linear``: the graph around it decides its role; a tied or parametrized one stays whole."""
    if type(module) is not nn.Linear:
        return "its weight is another node's (tie)" if module is None or isinstance(module, TiedLinear) \
            else "its weight is parametrized (orthogonal)"
    return {"": TP_LINEAR}


def _embedding_tp(module: Embedding | None, tp: int) -> dict[str, str] | str:
    """Vocab-parallel: each rank holds num/tp rows (a lookup outside them gives 0; the ranks' results summed)."""
    if module is None:
        return "it reads another node's table (tie)"
    if module.padding_idx is not None:
        return "it has a padding row"
    return {"": TP_VOCAB} if module.num_embeddings % tp == 0 else \
        f"its {module.num_embeddings} rows do not divide over tp={tp} ranks"


@torch_op("linear", module=_linear_module, init=_linear_init, post_init=_linear_parametrize, tp=_linear_tp)
def linear(ctx: NodeCtx, e: Emit) -> str:
    """``self.fc(x)``, or ``self.embed.attend(x, self.fc.bias)`` when tied (:meth:`Embedding.attend`)."""
    tie = ctx.params.get("tie")
    if not tie:
        return f"{e.self}({e.x})"
    bias = f", {e.self}.bias" if ctx.params["bias"] else ""
    return f"{e.module_of(tie)}.attend({e.x}{bias})"


def _d_out(ctx: NodeCtx) -> int:
    return ctx.params["out"] or ctx.in_features


@torch_op("mlp", init=_TRANSFORMER_INIT, module=lambda ctx: MLP(
    ctx.in_features, ctx.params["hidden"], _d_out(ctx), ctx.params["activation"], ctx.params["bias"],
    ctx.params["dropout"]),
    tp=lambda m, tp: split_hidden(m.up.out_features, tp, {"up": TP_COLWISE, "down": TP_ROWWISE}))
def mlp(ctx: NodeCtx, e: Emit) -> str:
    """``self.mlp(x)``."""
    return f"{e.self}({e.x})"


@torch_op("gated_mlp", init=_TRANSFORMER_INIT, module=lambda ctx: GatedMLP(
    ctx.in_features, ctx.params["hidden"], _d_out(ctx), ctx.params["activation"], ctx.params["bias"]),
    tp=lambda m, tp: split_hidden(m.up.out_features, tp, {"gate": TP_COLWISE, "up": TP_COLWISE, "down": TP_ROWWISE}))
def gated_mlp(ctx: NodeCtx, e: Emit) -> str:
    """``self.ffn(x)``."""
    return f"{e.self}({e.x})"


def _zero_padding_row(module: Embedding | None, ctx: NodeCtx) -> None:
    if module is not None and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()


def _embedding_module(ctx: NodeCtx) -> Embedding | None:
    if ctx.params.get("tie"):
        return None  # reads the tied node's table: no state of its own
    return Embedding(ctx.params["num"], ctx.params["dim"], padding_idx=ctx.params["padding_idx"])


@torch_op("embedding", init={"weight": ("normal", {"std": 0.02})}, post_init=_zero_padding_row,
          module=_embedding_module, tp=_embedding_tp)
def embedding(ctx: NodeCtx, e: Emit) -> str:
    """``self.embed(tokens)``; with ``tie: src_embed`` the other node's module: ``self.src_embed(tokens)``."""
    tie = ctx.params.get("tie")
    return f"{e.module_of(tie) if tie else e.self}({e.x})"
