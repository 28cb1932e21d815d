"""The task of a run whose ``train.task`` is ``auto``."""

from __future__ import annotations

from nngraph.types import is_float

from ..config import RunConfig


def guess_task(run: RunConfig) -> str:
    """The task when ``train.task`` is auto: from the outputs, the data named, then the graph's inputs."""
    graph, data = run.graph, run.values["data"]
    if {"recon", "kl"} <= set(graph.outputs):
        return "vae"
    named = data["builtin"]
    if named in ("text", "copy", "reverse", "parity"):
        return "language_model"
    if named == "karate":
        return "node_classification"
    if named == "digits":
        return "classification"
    path = (data["path"] or "").lower()
    if path.endswith((".txt", ".text", ".md", ".jsonl")):
        return "language_model"
    if "edge_index" in graph.inputs:
        return "graph_classification" if "batch" in graph.inputs else "node_classification"
    ints = [gi for gi in graph.inputs.values() if not is_float(gi.type.dtype) and gi.type.rank == 2]
    return "language_model" if ints else "classification"
