"""A spec with several networks (``networks:``) as one ``nn.ModuleDict`` of generated modules.

::

    from nngraph.compilers.torch.networks import build_networks
    nets = build_networks(load_spec("specs/seeds/gan_2d.yaml"), seed=0)
    x = nets["generator"](z)                 # each network is its own GraphModule
    logit = nets["discriminator"](x)
    nets.state_dict()                        # generator.h1.fc.weight, discriminator.out.bias, ...

The state-dict keys are ``<network>.<node>.<param>``: the same as the union graph's (nodes
``<network>.<node>``), so weights move freely between this container and ``build_module`` of the
union. Each network is initialized from its own seed, a stable hash of (seed, network name), so
two networks with the same node names do not start from the same weights.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from nngraph.ir import Graph
from nngraph.spec.networks import SEP


def network_seed(seed: int, network: str) -> int:
    """The initialization seed of one network: a stable hash of the model seed and the network name."""
    digest = hashlib.blake2b(f"{int(seed)}/network/{network}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class NetworkDict(nn.ModuleDict):
    """One generated module per network of a spec; ``forward`` takes and returns the union graph's names
    (``<network>__<input>`` -> ``<network>__<output>``), so checks written for one graph apply unchanged."""

    def __init__(self, graph: Graph, seed: int = 0):
        from . import build_module

        if not graph.networks:
            raise ValueError(f"spec '{graph.name}' declares no networks")
        super().__init__({net: build_module(g, seed=network_seed(seed, net)) for net, g in graph.networks.items()})
        self.networks_graph = graph

    def forward(self, **inputs: Any) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for net, module in self.items():
            g = self.networks_graph.networks[net]
            mine = {k[len(net) + len(SEP):]: v for k, v in inputs.items() if k.startswith(net + SEP)}
            if not any(k in mine for k in g.inputs):
                continue  # nothing for this network: call the others only
            got = module(**mine)
            got = got if isinstance(got, dict) else {next(iter(g.outputs)): got}
            out.update({f"{net}{SEP}{k}": v for k, v in got.items()})
        return out


def build_networks(graph: Graph, seed: int = 0) -> NetworkDict:
    """Compile every network of ``graph`` (a spec with ``networks:``); the same ``seed`` gives the same weights."""
    return NetworkDict(graph, seed)


def compile_any(graph: Graph, seed: int = 0) -> nn.Module:
    """:func:`build_networks` for a spec with networks, else ``build_module``."""
    from . import build_module

    return build_networks(graph, seed) if graph.networks else build_module(graph, seed=seed)
