"""The module the TorchScript exporter traces: positional graph inputs (+ past keys/values) -> a tuple of outputs."""

from __future__ import annotations

from typing import Any

import torch

from .kernels import KVIO


class ExportWrapper(torch.nn.Module):
    """Positional inputs -> the model's keyword inputs; outputs as a tuple (+ KV presents)."""

    def __init__(self, model: Any, names: list[str], out_names: list[str], io_: KVIO | None, kv_layers: list[dict],
                 graph: Any):
        super().__init__()
        self.model, self.names, self.out_names, self.io, self.kv_layers = model, names, out_names, io_, kv_layers
        self.dispatch: list[Any] = []

    def forward(self, *args: Any) -> Any:
        for d in self.dispatch:
            d.calls = 0
        inputs = dict(zip(self.names, args[:len(self.names)]))
        if self.io is not None:
            pasts = args[len(self.names):]
            self.io.past = {layer["node"]: (pasts[2 * i], pasts[2 * i + 1]) for i, layer in enumerate(self.kv_layers)}
            self.io.present = {}
            self.io.past_len = torch._shape_as_tensor(pasts[0])[2]
        out = self.model(**inputs)
        outs = [out[n] for n in self.out_names] if isinstance(out, dict) else [out]
        if self.io is not None:
            for layer in self.kv_layers:
                outs += list(self.io.present[layer["node"]])
        return tuple(outs) if len(outs) > 1 else outs[0]
