"""Helpers shared by the ONNX tests: the zoo's specs, small sizes for big specs, non-trivial weights.

A plain module (not conftest) so tests can import it by a unique name: `from conftest import …`
resolves to whichever conftest pytest imported first.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SPECS = ROOT / "specs"

#: small values for common vars (applied when the spec has the var): exports and runs stay fast
SHRINK = {"vocab": 100, "src_vocab": 100, "tgt_vocab": 100, "d_model": 32, "heads": 4, "layers": 2,
          "ffn": 64, "d_ff": 64, "mlp": 64, "max_len": 64, "ctx": 64, "size": 32, "classes": 10, "hidden": 16,
          "embed": 16, "features": 16, "expert_hidden": 64, "fc": 64, "d_kv": 8, "k": 16, "window": 4,
          "stride": 4, "align": 16, "maxout": 8, "c1": 8, "c2": 8, "c3": 8, "c4": 8, "c5": 8, "width": 8,
          "patch": 8, "d_state": 8, "base": 16, "context_dim": 16}
#: per-spec additions (after SHRINK)
EXTRA = {"attention_written_out": ["head_dim=8"], "llama_style": ["d_model=64"]}


def small_overrides(path: Path) -> list[str]:
    """--set overrides that make the spec at ``path`` small: its own ``# small-sizes: k=v ...`` comment
    (the seed zoo's convention) if it has one, else :data:`SHRINK` for the vars it has, plus :data:`EXTRA`."""
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith("# small-sizes:"):
            return line.split(":", 1)[1].split() + EXTRA.get(path.stem, [])
    vars_ = (yaml.safe_load(text) or {}).get("vars") or {}
    return [f"{k}={v}" for k, v in SHRINK.items() if k in vars_] + EXTRA.get(path.stem, [])


def randomize(module, seed: int = 0) -> None:
    """Perturb every parameter and normalization statistic (seeded): parity on non-trivial weights
    (zero-initialized biases, unit norms and tiny classifier inits would hide mistakes)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            scale = float(p.detach().float().std()) if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=gen) * (0.5 * scale + 0.02))
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)


def run_sizes(model, graph, batch: int, other: int) -> dict[str, int]:
    """Sizes for the graph's input symbols to run an exported ``model`` at: dynamic ones as asked (``batch`` for
    ``batch``, ``other`` for the rest), fixed ones as exported."""
    sizes: dict[str, int] = {}
    for inp in model.graph.input:
        gi = graph.inputs.get(inp.name)
        if gi is None:
            continue
        for d, spec_dim in zip(inp.type.tensor_type.shape.dim, gi.type.shape):
            if isinstance(spec_dim, str) and spec_dim.isidentifier():
                if d.dim_param:
                    sizes[spec_dim] = batch if spec_dim == "batch" else other
                else:
                    sizes[spec_dim] = d.dim_value
    return sizes


def torch_outputs(module, graph, inputs) -> dict:
    """The torch model's outputs on ``inputs`` (torch tensors by input name) as numpy arrays by output name."""
    import torch

    with torch.no_grad():
        ref = module(**inputs)
    ref = ref if isinstance(ref, dict) else {next(iter(graph.outputs)): ref}
    return {name: ref[name].numpy() for name in graph.outputs}


def ort_vs_torch(session, graph, module, inputs) -> dict[str, tuple[float, float]]:
    """{output: (max |ORT - torch|, scale)} of an ORT ``session`` on ``inputs``; a run passes when every
    diff <= tolerance · scale (scale = max(1, max |torch|): float32 rounding grows with the magnitude)."""
    from nngraph.compilers.onnx.verify import max_abs_diff

    want = torch_outputs(module, graph, inputs)
    got = session.run(list(graph.outputs), {i.name: inputs[i.name].numpy() for i in session.get_inputs()})
    out = {}
    for name, value in zip(graph.outputs, got):
        ref = want[name]
        scale = max(1.0, float(abs(ref).max()) if ref.size and ref.dtype.kind == "f" else 1.0)
        out[name] = (max_abs_diff(value, ref), scale)
    return out
