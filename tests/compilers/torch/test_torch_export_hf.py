"""`nngraph export-hf SPEC|RUN_DIR -o FOLDER` (issue 22 item 2): zoo specs at small sizes with random weights (no
Hugging Face origin) become folders that transformers' from_pretrained loads with no missing, unexpected or
mis-shaped tensor and whose logits equal the spec's (max abs diff <= 1e-4; measured ~1e-7) on padded batches; a run
folder brings its tokenizer.json; a spec that fits no family is refused naming the first node that does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli, load_spec
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.weights import save_weights
from nngraph.run_folder import record_run

transformers = pytest.importorskip("transformers")
SPECS = Path(__file__).resolve().parents[3] / "specs"
V, T, REAL = 64, 9, 6
CASES = {  # spec: (--set, the class from_pretrained loads)
    "gpt2_small": (f"vocab={V} d_model=32 heads=4 layers=2 ctx=16 dropout=0.0", "GPT2LMHeadModel"),
    "bert_encoder": (f"vocab={V} d_model=32 heads=4 layers=2 ffn=64 max_len=16 dropout=0.0", "BertForMaskedLM"),
    "llama_style": (f"vocab={V} d_model=32 heads=4 kv_heads=2 layers=2 attn_bias=true mlp_bias=true "
                    "tie=embed_tokens eps=1.0e-6", "LlamaForCausalLM"),
    "gpt_neox_style": (f"vocab={V} d_model=32 heads=4 ffn=64 layers=2 rotary_fraction=0.5", "GPTNeoXForCausalLM"),
}


def _trained(spec: str, folder: Path):
    """The spec built with random weights (norms and biases off 1 and 0) saved as ``folder/model.safetensors``."""
    graph = load_spec(SPECS / f"{spec}.yaml", CASES[spec][0].split())
    module = build_module(graph, seed=1).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    folder.mkdir()
    save_weights(module, graph, folder / "model.safetensors")
    return graph, module


def _export(args: list[str]) -> str:
    res = CliRunner().invoke(cli.app, ["export-hf", *args])
    assert res.exit_code == 0, res.output
    return res.output


def _loaded(folder: Path, cls: str):
    model, info = getattr(transformers, cls).from_pretrained(folder, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


@pytest.mark.parametrize("spec", CASES)
def test_the_exported_folder_loads_in_transformers_with_the_specs_logits(spec, tmp_path):
    graph, module = _trained(spec, tmp_path / "w")
    _export([str(SPECS / f"{spec}.yaml"), *[a for s in CASES[spec][0].split() for a in ("--set", s)],
             "--weights", str(tmp_path / "w" / "model.safetensors"), "-o", str(tmp_path / "hf")])
    hf = _loaded(tmp_path / "hf", CASES[spec][1])
    ids = torch.randint(1, V, (2, T), generator=torch.Generator().manual_seed(5))
    mask = (torch.arange(T)[None] < torch.tensor([[T], [REAL]])).long()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).logits
        ours = module(ids, torch.zeros_like(ids), mask.sum(1))["logits"] if spec == "bert_encoder" else module(ids)
    assert (ours[0] - want[0]).abs().max().item() <= 1e-4
    assert (ours[1, :REAL] - want[1, :REAL]).abs().max().item() <= 1e-4


def test_a_run_folder_exports_with_its_weights_and_tokenizer(tmp_path):
    spec = "gpt_neox_style"
    graph, module = _trained(spec, tmp_path / "run")
    record_run(tmp_path / "run", SPECS / f"{spec}.yaml", CASES[spec][0].split(), graph)
    (tmp_path / "run" / "tokenizer.json").write_text('{"version": "1.0"}')
    output = _export([str(tmp_path / "run"), "-o", str(tmp_path / "hf")])
    assert "fits gpt_neox (GPTNeoXForCausalLM)" in output
    assert (tmp_path / "hf" / "tokenizer.json").read_text() == '{"version": "1.0"}'
    ids = torch.randint(1, V, (1, T), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert (module(ids) - _loaded(tmp_path / "hf", "GPTNeoXForCausalLM")(ids).logits).abs().max().item() <= 1e-4


def test_a_spec_of_no_family_is_refused_naming_the_first_node_that_does_not_fit(tmp_path):
    text = (SPECS / "llama_style.yaml").read_text().replace("activation: silu", "activation: gelu")
    (tmp_path / "mine.yaml").write_text(text.replace("name: llama_style", "name: mine"))
    res = CliRunner().invoke(cli.app, ["export-hf", str(tmp_path / "mine.yaml"), "-o", str(tmp_path / "hf")])
    assert res.exit_code == 1 and "Traceback" not in res.output and not (tmp_path / "hf").exists()
    assert "spec 'mine' maps to no Hugging Face family:" in res.output
    assert "mine.yaml:35:9: node 'layers.0.mlp' (gated_mlp) does not fit the llama layout" in res.output
    res = CliRunner().invoke(cli.app, ["export-hf", str(SPECS / "mlp.yaml"), "-o", str(tmp_path / "hf")])
    assert res.exit_code == 1 and "spec 'mlp' maps to no Hugging Face family: it is none of gpt2_small" in res.output
