"""Cases for the pass tests: one attention node per (mask, position) of the registries.

Imported by conftest.py and the tests (test_lowering_rules.py checks that they cover both registries).
"""

from __future__ import annotations

import yaml

from nngraph.attention.analysis import has_band
from nngraph.attention.masks import parse_mask

#: name -> (mask value, extra graph inputs it reads); together they use every registered mask
MASK_CASES = {
    "none": ("none", ()),
    "causal": ("causal", ()),
    "key_padding_lengths": ("key_padding", ("lengths",)),
    "key_padding_bool": ("key_padding", ("key_padding",)),
    "sliding_window": ({"type": "sliding_window", "window": 32}, ()),
    "sliding_window_symmetric": ({"type": "sliding_window", "window": 16, "causal": False}, ()),
    "strided": ({"type": "strided", "stride": 16}, ()),
    "dilated": ({"type": "dilated", "window": 8, "dilation": 3}, ()),
    "global_tokens": ({"type": "global_tokens", "positions": [0, 67]}, ()),
    "random": ({"type": "random", "per_row": 5, "seed": 1}, ()),
    "document": ("document", ("doc_ids",)),
    "prefix_lm": ({"type": "prefix_lm", "prefix": 20}, ()),
    "longformer": ({"all": ["key_padding", {"any": [{"type": "sliding_window", "window": 16, "causal": False},
                                                     {"type": "global_tokens", "positions": [0]}]}]}, ("lengths",)),
    "window_global": ({"any": [{"type": "sliding_window", "window": 16, "causal": False},
                               {"type": "global_tokens", "positions": [0]}]}, ()),
    "causal_not_window": ({"all": ["causal", {"not": {"type": "sliding_window", "window": 8}}]}, ()),
}
#: the mask cases with a band around the diagonal, as the mask registry declares them (``reach``)
BANDED = {case for case, (mask, _) in MASK_CASES.items() if has_band(parse_mask(mask))}
#: name -> position value; together every registered position (Shaw with and without values)
POSITION_CASES = {
    "none": "none",
    "rope": {"type": "rope", "base": 10000},
    "alibi": "alibi",
    "t5_bias": {"type": "t5_bias", "num_buckets": 16, "max_distance": 64},
    "shaw": {"type": "shaw", "max_distance": 8},
    "shaw_values": {"type": "shaw", "max_distance": 8, "values": True},
    "window_bias": {"type": "window_bias", "window": 12},  # 144 tokens: covers the equivalence tests' 130
}
INPUT_DECL = {"lengths": "{shape: [batch], dtype: int64}", "key_padding": "{shape: [batch, seq], dtype: bool}",
              "doc_ids": "{shape: [batch, seq], dtype: int64}", "positions": "{shape: [batch, seq], dtype: int64}"}


def attention_spec(mask, position, extra=(), d_model=32, heads=4, kv_heads=2, dropout=0.0) -> str:
    """A one-attention-node spec (flow YAML)."""
    conn = ", ".join(f"{name}: {name}" for name in extra)
    node = {"name": "attn", "op": "attention", "heads": heads, "kv_heads": kv_heads, "dropout": dropout,
            "mask": mask, "position": position}
    node_yaml = yaml.safe_dump(node, default_flow_style=True, width=10_000).strip()
    node_yaml = node_yaml[:-1] + f", in: {{x: x{', ' + conn if conn else ''}}}}}"
    lines = ["nngraph: 1", "name: t", "inputs:", f"  x: {{shape: [batch, seq, {d_model}], dtype: float32}}"]
    lines += [f"  {name}: {INPUT_DECL[name]}" for name in extra]
    lines += ["graph:", f"  - {node_yaml}", "outputs: [attn]", ""]
    return "\n".join(lines)
