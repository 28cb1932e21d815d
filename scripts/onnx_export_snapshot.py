"""Snapshot the ONNX files of a few zoo exports, and compare two snapshots node for node (refactoring checks).

    .venv/bin/python scripts/onnx_export_snapshot.py dump /tmp/before        # on the old commit
    .venv/bin/python scripts/onnx_export_snapshot.py dump /tmp/after         # on the new one
    .venv/bin/python scripts/onnx_export_snapshot.py compare /tmp/before /tmp/after

``dump`` exports each case of :data:`CASES` (small sizes: the tests' ``# small-sizes:`` / --set convention,
weights randomized with seed 0, no verification) and writes ``<case>.json``: per file (a KV-cached
encoder-decoder writes two) the SHA-256 of its bytes, opset imports, IR version, every node (type,
domain, name, inputs, outputs, attributes), every initializer's hash, the metadata and the graph I/O.
``compare`` prints, per file, whether the bytes are identical and which of those fields differ; it exits 1
when any differs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [  # (label, spec, export options)
    ("mlp", "specs/mlp.yaml", {}),
    ("cnn_digits", "specs/cnn_digits.yaml", {}),
    ("gpt_char", "specs/gpt_char.yaml", {}),
    ("gpt_char_kv", "specs/gpt_char.yaml", {"kv_cache": True}),
    ("gpt_char_cuda_mha", "specs/gpt_char.yaml", {"target": "ort-cuda", "kernels": {"*": "ort-mha"}}),
    ("llama_kv", "specs/llama_style.yaml", {"kv_cache": True}),
    ("mamba", "specs/mamba_style.yaml", {}),
    ("switch_moe", "specs/switch_style.yaml", {}),
    ("gin_pool", "specs/gin_graph.yaml", {}),
    ("gat", "specs/gat.yaml", {}),
    ("longformer", "specs/longformer.yaml", {}),
    ("bigbird_random", "specs/seeds/bigbird.yaml", {}),
    ("char_lstm", "specs/char_lstm.yaml", {}),
    ("t5_kv", "specs/t5_encoder_decoder.yaml", {"kv_cache": True}),
    ("vit_fp16", "specs/vit.yaml", {"dtype": "float16"}),
]


def describe(path: Path) -> dict:
    """One file's bytes hash and its graph, field by field."""
    import onnx

    m = onnx.load(str(path))
    return {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "opset": [(o.domain, o.version) for o in m.opset_import], "ir": m.ir_version,
        "nodes": [[n.op_type, n.domain, n.name, list(n.input), list(n.output), str(list(n.attribute))]
                  for n in m.graph.node],
        "inits": {i.name: hashlib.sha256(i.SerializeToString()).hexdigest() for i in m.graph.initializer},
        "meta": {p.key: p.value for p in m.metadata_props},
        "io": [str(v) for v in list(m.graph.input) + list(m.graph.output)],
    }


def dump(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests/compilers/onnx"))
    from onnx_support import randomize, small_overrides

    from nngraph import load_spec
    from nngraph.compilers.onnx.export import export_graph
    from nngraph.compilers.torch import build_module

    out.mkdir(parents=True, exist_ok=True)
    for label, spec, options in CASES:
        path = ROOT / spec
        graph = load_spec(path, small_overrides(path))
        module = build_module(graph, seed=0).eval()
        randomize(module)
        res = export_graph(graph, out / f"{label}.onnx", module=module, verify=False, spec_file=spec, **options)
        files = [out / f"{label}.onnx"] + ([res.encoder.path] if res.encoder else [])
        (out / f"{label}.json").write_text(json.dumps({f.name: describe(f) for f in files}, sort_keys=True))
        print(label, "exported", flush=True)


def compare(a: Path, b: Path) -> int:
    bad = 0
    for f in sorted(a.glob("*.json")):
        old = json.loads(f.read_text())
        new = json.loads((b / f.name).read_text()) if (b / f.name).exists() else {}
        for name, x in old.items():
            y = new.get(name, {})
            diffs = [k for k in x if x[k] != y.get(k)]
            same = "identical bytes" if x["sha256"] == y.get("sha256") else "DIFFERENT bytes"
            print(f"{f.stem:18} {name:24} nodes {len(x['nodes']):4}  {same}  differing: {', '.join(diffs) or 'none'}")
            bad += bool(diffs)
    print("files differing:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"] and len(sys.argv) == 3:
        dump(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
