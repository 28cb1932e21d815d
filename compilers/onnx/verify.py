"""Parity of an exported model with its torch model: ONNX Runtime vs torch on random inputs at two sizes.

The second size set changes every dynamic dim (batch + 1, other dims -3 or +3), so a size the
trace froze fails here. With a KV cache, the check is a prefill (empty past) of T tokens and
one decoding step fed the prefill's presents, against torch's logits on all T + 1 tokens.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| (inf for different shapes; positions where both are NaN or equal infinities count as equal)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    if a.dtype.kind in "biu" or b.dtype.kind in "biu":
        return 0.0 if np.array_equal(a, b) else float("inf")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    same = (np.isnan(a64) & np.isnan(b64)) | (a64 == b64)
    d = np.where(same, 0.0, np.abs(a64 - b64))
    return float(np.nan_to_num(d, nan=np.inf).max())


def nonfinite(*arrays: Any) -> int:
    """How many NaN or infinite values the float arrays hold: ORT's outputs, where NaN "equals" torch's NaN in
    :func:`max_abs_diff` and would pass (a non-finite torch output against a finite one is a mismatch anyway)."""
    return sum(int(np.size(a) - np.isfinite(a).sum()) for a in map(np.asarray, arrays) if a.dtype.kind in "fc")


def magnitude(t: Any) -> float:
    """max |t| over finite entries (0 for empty or non-float tensors)."""
    import torch

    if not torch.is_floating_point(t) or t.numel() == 0:
        return 0.0
    finite = t[torch.isfinite(t)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def second_sizes(sizes: Mapping[str, int], dyn: Sequence[str], batch: str | None,
                 runnable: Callable[[Mapping[str, int]], bool] = lambda _: True) -> dict[str, int]:
    """The second size set the export is verified at: every dynamic dim moved (batch + 1, the others - 3) so a
    size baked into the file as a constant shows up as a mismatch. Down by 3 unless the graph cannot run there
    (a kernel of 11 over h: ``export --dim h=11`` must not be refused at h=8), then up by 3."""
    def moved(down: bool) -> dict[str, int]:
        out = dict(sizes)
        for s in dyn:
            v = sizes[s]
            out[s] = v + 1 if s == batch else (v - 3 if down and v >= 6 else v + 3)
        return out

    first = moved(down=True)
    return first if runnable(first) else moved(down=False)


def _runnable(graph: Any) -> Callable[[Mapping[str, int]], bool]:
    """Whether ``graph`` can run at given sizes (every dim >= 1, nothing over memory): the forward check's test."""
    from nngraph.errors import SpecError

    from ..torch.check import check_sizes

    def runnable(sizes: Mapping[str, int]) -> bool:
        try:
            check_sizes(graph, sizes)
        except SpecError:
            return False
        return True
    return runnable


def verify_model(blob: bytes, graph: Any, module: Any, names: list[str], out_names: list[str], sizes: Mapping[str, int],
                 dyn: Sequence[str], seed: int, tolerance: float, kv_meta: dict | None,
                 include_optional: bool = False) -> Any:
    import torch

    from .results import Verification
    from .inputs import sample_inputs
    from .runner import make_session, run_options

    session = make_session(blob, "ort-cpu")
    ver = Verification(tolerance)
    batch = kv_meta["batch"] if kv_meta else next((d for d in graph.inputs[names[0]].type.shape
                                                   if isinstance(d, str)), None) if names else None
    size_sets = [dict(sizes)] + ([second_sizes(sizes, dyn, batch, _runnable(graph))] if dyn else [])
    if kv_meta:
        for i, sz in enumerate(size_sets):
            ver.runs += _verify_kv(session, graph, module, sz, seed + i, kv_meta)
        return ver
    for i, sz in enumerate(size_sets):
        inputs = sample_inputs(graph, sz, seed + 1 + i, include_optional)
        with torch.no_grad():
            ref = module(**inputs)
        ref = ref if isinstance(ref, dict) else {out_names[0]: ref}
        got = session.run(out_names, {n: inputs[n].numpy() for n in names}, run_options())
        diffs = {n: max_abs_diff(g, ref[n].detach().numpy()) for n, g in zip(out_names, got)}
        ver.runs.append({"sizes": {k: sz[k] for k in dyn} if dyn else {}, "outputs": diffs,
                         "max_abs_diff": max(diffs.values(), default=0.0),
                         "nonfinite": nonfinite(*got),
                         "scale": max((magnitude(ref[n]) for n in out_names), default=1.0)})
    return ver


def _verify_kv(session: Any, graph: Any, module: Any, sizes: Mapping[str, int], seed: int,
               kv_meta: dict) -> list[dict]:
    import torch

    from .inputs import sample_inputs

    tok_name, logits_name = kv_meta["token_input"], kv_meta["logits_output"]
    seq_dim = graph.inputs[tok_name].type.shape[1]
    t = sizes.get(seq_dim, 8) if isinstance(seq_dim, str) else int(seq_dim)
    full_sizes = dict(sizes)
    if isinstance(seq_dim, str):
        full_sizes[seq_dim] = t + 1
    inputs = sample_inputs(graph, full_sizes, seed + 1)
    tokens = inputs[tok_name]
    with torch.no_grad():
        ref = module(**inputs)
    ref = (ref[logits_name] if isinstance(ref, dict) else ref).numpy()
    b = tokens.shape[0]
    # other inputs (an encoder-decoder step's memory and source lengths) are fed unchanged every step; a
    # key_padding input covers the keys so far, a positions input the new tokens (nngraph/compilers/decoding.py)
    roles = kv_meta.get("input_roles", {})
    others = {i.name: inputs[i.name].numpy() for i in session.get_inputs()
              if i.name != tok_name and not i.name.startswith("past.") and i.name in inputs and i.name not in roles}
    sliced = {n: inputs[n].numpy() for n in roles}
    feeds = {tok_name: tokens[:, :t].numpy(), **others, **{n: a[:, :t] for n, a in sliced.items()}}
    for layer in kv_meta["layers"]:
        empty = np.zeros((b, layer["kv_heads"], 0, layer["head_dim"]), np.float32)
        feeds[layer["past_key"]], feeds[layer["past_value"]] = empty, empty
    outs = _run_named(session, feeds)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    # a padded query may see no key at all; such a row attends uniformly to every key there is, which the
    # longer reference run has one more of: outputs at padded positions are undefined, so they are not compared
    real = np.ones(tokens.shape, bool)
    for n in (n for n, r in roles.items() if r == "key_padding"):
        real &= ~sliced[n].astype(bool)
    ref = np.where(real[..., None], ref, 0.0) if ref.ndim == 3 else ref

    def diff(got: np.ndarray, lo: int, hi: int) -> float:
        return max_abs_diff(np.where(real[:, lo:hi, None], got, 0.0) if got.ndim == 3 else got, ref[:, lo:hi])

    runs = [{"what": "prefill (empty cache)", "sizes": {"batch": b, "seq": t}, "scale": scale,
             "max_abs_diff": diff(outs[logits_name], 0, t),
             "nonfinite": nonfinite(outs[logits_name])}]
    feeds = {tok_name: tokens[:, t:].numpy(), **others,
             **{n: a if roles[n] == "key_padding" else a[:, t:] for n, a in sliced.items()}}
    for layer in kv_meta["layers"]:
        feeds[layer["past_key"]], feeds[layer["past_value"]] = outs[layer["present_key"]], outs[layer["present_value"]]
    outs = _run_named(session, feeds)
    runs.append({"what": "decode step (cached)", "sizes": {"batch": b, "past": t}, "scale": scale,
                 "max_abs_diff": diff(outs[logits_name], t, t + 1),
                 "nonfinite": nonfinite(outs[logits_name])})
    return runs


def _run_named(session: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from .runner import run_options

    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds, run_options())))
