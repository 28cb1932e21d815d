"""`nngraph export-hf SPEC|RUN_DIR -o FOLDER` (issue 22 item 2): zoo specs at small sizes with random weights (no
Hugging Face origin) -- GPT-2, BERT, RoBERTa (RobertaModel, RobertaForMaskedLM), LLaMA (plain and with llama3 RoPE
scaling), Mistral (sliding window), Qwen2 (plain and with YaRN), Gemma, GPT-NeoX, T5 v1.0 and v1.1 -- become
folders that transformers' from_pretrained loads with no missing, unexpected or
mis-shaped tensor and whose logits equal the spec's (max abs diff <= 1e-4; measured ~1e-7) on padded batches; a run
folder brings its tokenizer.json; a spec that fits no family is refused naming the first node that does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from nngraph import cli, load_spec
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.weights import save_weights
from nngraph.run_folder import record_run

from hf_round_trip import outputs, padded_batch

transformers = pytest.importorskip("transformers")
SPECS = Path(__file__).resolve().parents[3] / "specs"
V, T, REAL = 64, 9, 6
T5 = f"vocab={V} d_model=32 heads=4 d_kv=8 d_ff=64 layers=2 buckets=8 max_distance=12 dropout=0.0"
CASES = {  # case: (spec file under specs/, --set, the class from_pretrained loads)
    "gpt2_small": ("gpt2_small", f"vocab={V} d_model=32 heads=4 layers=2 ctx=16 dropout=0.0", "GPT2LMHeadModel"),
    "bert_encoder": ("bert_encoder", f"vocab={V} d_model=32 heads=4 layers=2 ffn=64 max_len=16 dropout=0.0",
                     "BertForMaskedLM"),
    "roberta_mlm": ("roberta_mlm", f"vocab={V} d_model=32 heads=4 layers=2 ffn=64 max_len=16 dropout=0.0",
                    "RobertaForMaskedLM"),
    "roberta": ("seeds/roberta", f"vocab={V} d_model=32 heads=4 layers=2 ffn=64 max_len=16 dropout=0.0", "RobertaModel"),
    "llama_style": ("llama_style", f"vocab={V} d_model=32 heads=4 kv_heads=2 layers=2 attn_bias=true mlp_bias=true "
                    "tie=embed_tokens eps=1.0e-6", "LlamaForCausalLM"),
    "llama_style+llama3": ("llama_style", f"vocab={V} d_model=32 heads=4 kv_heads=2 layers=2 rope_scaling=llama3 "
                           "rope_factor=8.0 rope_original_len=16", "LlamaForCausalLM"),
    "qwen2_style+yarn": ("qwen2_style", f"vocab={V} d_model=32 heads=4 kv_heads=2 ffn=64 layers=2 rope_scaling=yarn "
                         "rope_factor=4.0 rope_original_len=4", "Qwen2ForCausalLM"),
    "mistral_style": ("mistral_style", f"vocab={V} d_model=32 heads=4 kv_heads=2 ffn=64 layers=2 window=4",
                      "MistralForCausalLM"),
    "qwen2_style": ("qwen2_style", f"vocab={V} d_model=32 heads=4 kv_heads=2 ffn=64 layers=2", "Qwen2ForCausalLM"),
    "gemma_style": ("gemma_style", f"vocab={V} d_model=32 heads=4 kv_heads=1 head_dim=16 ffn=64 layers=2",
                    "GemmaForCausalLM"),
    "gpt_neox_style": ("gpt_neox_style", f"vocab={V} d_model=32 heads=4 ffn=64 layers=2 rotary_fraction=0.5",
                       "GPTNeoXForCausalLM"),
    "t5_encoder_decoder": ("t5_encoder_decoder", T5 + " shared_embed=true", "T5ForConditionalGeneration"),
    "t5_v1_1": ("t5_v1_1", T5, "T5ForConditionalGeneration"),
}


def _trained(case: str, folder: Path):
    """The spec built with random weights (norms and biases off 1 and 0) saved as ``folder/model.safetensors``."""
    graph = load_spec(SPECS / f"{CASES[case][0]}.yaml", CASES[case][1].split())
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


@pytest.mark.parametrize("case", CASES)
def test_the_exported_folder_loads_in_transformers_with_the_specs_logits(case, tmp_path):
    spec, sets, cls = CASES[case]
    graph, module = _trained(case, tmp_path / "w")
    _export([str(SPECS / f"{spec}.yaml"), *[a for s in sets.split() for a in ("--set", s)],
             "--weights", str(tmp_path / "w" / "model.safetensors"), "-o", str(tmp_path / "hf")])
    hf = _loaded(tmp_path / "hf", cls)
    ids, mask = padded_batch(V, T, REAL, pad=1 if case.startswith("roberta") else 0, seed=5)
    ours, want = outputs(case, module, hf, ids, mask)
    real = REAL + (case == "roberta")  # the pooler output comes first
    assert (ours[0] - want[0]).abs().max().item() <= 1e-4
    assert (ours[1, :real] - want[1, :real]).abs().max().item() <= 1e-4
    assert want.abs().max().item() > 0.1


def test_t5_v1_1s_unscaled_own_head_survives_the_config_of_every_transformers_version(tmp_path):
    """transformers 5 writes T5's tie_word_embeddings as true and keeps "unscaled" in scale_decoder_outputs; older
    versions read tie_word_embeddings: false as "own head, unscaled", so export-hf writes that back."""
    _trained("t5_v1_1", tmp_path / "w")
    _export([str(SPECS / "t5_v1_1.yaml"), *[a for s in T5.split() for a in ("--set", s)],
             "--weights", str(tmp_path / "w" / "model.safetensors"), "-o", str(tmp_path / "hf")])
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["feed_forward_proj"] == "gated-gelu"
    assert "lm_head.weight" in safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt").keys()


def test_t5s_two_embeddings_export_only_as_one_table(tmp_path):
    sets = [a for s in T5.split() for a in ("--set", s)]
    graph = load_spec(SPECS / "t5_encoder_decoder.yaml", T5.split())  # shared_embed=false: two tables
    save_weights(build_module(graph, seed=1), graph, tmp_path / "two.safetensors")
    res = CliRunner().invoke(cli.app, ["export-hf", str(SPECS / "t5_encoder_decoder.yaml"), *sets, "--weights",
                                       str(tmp_path / "two.safetensors"), "-o", str(tmp_path / "hf")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "encoder_embed.weight and decoder_embed.weight differ, but the Hugging Face layout has one tensor" in res.output


def test_a_run_folder_exports_with_its_weights_and_tokenizer(tmp_path):
    spec = "gpt_neox_style"
    graph, module = _trained(spec, tmp_path / "run")
    record_run(tmp_path / "run", SPECS / f"{spec}.yaml", CASES[spec][1].split(), graph)
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
