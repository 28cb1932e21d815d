"""`nngraph import-hf FOLDER|HUB_ID -o DIR` (issue 22 item 1): GPT-2, BERT, RoBERTa (RobertaModel and
RobertaForMaskedLM), LLaMA (with linear and llama3 RoPE scaling), Mistral, Qwen2 (with YaRN), Gemma, GPT-NeoX, T5 v1.0 and v1.1 folders written by transformers'
save_pretrained from small configs with random weights become a spec whose every size comes from config.json plus
weights whose logits equal transformers' (max abs diff <= 1e-5, fp32; measured ~1e-7) on padded batches; shards and weights_only .bin files
are read; a Hub id comes from the local cache with HF_HUB_OFFLINE (no download is ever started here); an unknown
model_type or a setting the spec cannot express is a clear error, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.torch import compile_spec
from nngraph.compilers.torch.weights import load_weights
from nngraph.compilers.torch.state import load_state_dict

from hf_round_trip import outputs, padded_batch

transformers = pytest.importorskip("transformers")
V, T, REAL = 96, 11, 7
IDS = dict(pad_token_id=0, bos_token_id=0, eos_token_id=0)
SMALL = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)

T5 = dict(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          relative_attention_max_distance=12, **IDS)
FAMILIES = {  # name: (HF class, config)
    "gpt2": ("GPT2LMHeadModel", lambda: transformers.GPT2Config(
        vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, **IDS)),
    "bert": ("BertForMaskedLM", lambda: transformers.BertConfig(**SMALL, max_position_embeddings=32, type_vocab_size=3,
                                                               layer_norm_eps=1e-6, **IDS)),
    "roberta": ("RobertaModel", lambda: transformers.RobertaConfig(  # pad 1: positions count from 2
        **SMALL, max_position_embeddings=T + 2, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "roberta_mlm": ("RobertaForMaskedLM", lambda: transformers.RobertaConfig(  # as roberta-base ships: no pooler
        **SMALL, max_position_embeddings=T + 2, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "llama": ("LlamaForCausalLM", lambda: transformers.LlamaConfig(  # the toggles: biases and a tied head
        **SMALL, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=5e5, attention_bias=True, mlp_bias=True,
        tie_word_embeddings=True, **IDS)),
    "llama+llama3": ("LlamaForCausalLM", lambda: transformers.LlamaConfig(**SMALL, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}, **IDS)),
    "llama+linear": ("LlamaForCausalLM", lambda: transformers.LlamaConfig(
        **SMALL, rope_scaling={"rope_type": "linear", "factor": 4.0}, **IDS)),
    "mistral": ("MistralForCausalLM", lambda: transformers.MistralConfig(
        **SMALL, num_key_value_heads=1, sliding_window=3, rms_norm_eps=1e-5, **IDS)),
    "qwen2": ("Qwen2ForCausalLM", lambda: transformers.Qwen2Config(
        **SMALL, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=False, **IDS)),
    "qwen2+yarn": ("Qwen2ForCausalLM", lambda: transformers.Qwen2Config(**SMALL, num_key_value_heads=2, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}, max_position_embeddings=64, **IDS)),
    "gemma": ("GemmaForCausalLM", lambda: transformers.GemmaConfig(**SMALL, num_key_value_heads=1, head_dim=16, **IDS)),
    "gpt_neox": ("GPTNeoXForCausalLM", lambda: transformers.GPTNeoXConfig(**SMALL, rotary_pct=0.5, **IDS)),
    "t5": ("T5ForConditionalGeneration", lambda: transformers.T5Config(**T5, feed_forward_proj="relu")),
    "t5_v1_1": ("T5ForConditionalGeneration", lambda: transformers.T5Config(  # flan-t5: an untied, unscaled head
        **T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never a download from these tests


def _hf(family: str, folder: Path | None = None):
    """transformers' model with random weights (norms and biases off HF's 1 and 0; T5 v1.1's head a table of its
    own), saved to ``folder`` and read back with from_pretrained: the oracle is the model that folder loads."""
    cls, config = FAMILIES[family]
    torch.manual_seed(0)
    model = getattr(transformers, cls)(config()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
        if family == "t5_v1_1":  # transformers 5 builds T5's head tied; a v1.1 checkpoint has its own
            model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.2)
    if folder is None:
        return model
    model.save_pretrained(folder)
    return getattr(transformers, cls).from_pretrained(folder).eval()


def _import(source: str, out: Path):
    res = CliRunner().invoke(cli.app, ["import-hf", source, "-o", str(out)])
    assert res.exit_code == 0, res.output
    spec = next(out.glob("*.yaml"))
    model = compile_spec(spec)
    load_state_dict(model, load_weights(out / "weights.safetensors").tensors)  # strict; fills shared tables' aliases
    return model.eval(), spec, res.output


def _batch(pad: int = 0):
    return padded_batch(V, T, REAL, pad)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_folder_imports_with_logits_equal_to_transformers(family, tmp_path):
    hf = _hf(family, tmp_path / "hf")
    model, spec, output = _import(str(tmp_path / "hf"), tmp_path / "out")
    assert f"model_type {hf.config.model_type}" in output and "Generated by `nngraph import-hf`" in spec.read_text()
    ids, mask = _batch(hf.config.pad_token_id)
    ours, want = outputs(family, model, hf, ids, mask)
    real = REAL + (family == "roberta")  # the pooler output comes first
    assert (ours[0] - want[0]).abs().max().item() <= 1e-5  # issue 22 asks 1e-4; the zoo specs' oracle, 1e-5
    assert (ours[1, :real] - want[1, :real]).abs().max().item() <= 1e-5
    assert want.abs().max().item() > 0.1  # logits that do not vanish
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in hf.parameters())


def test_rope_scaling_and_t5_v1_1_settings_become_vars():
    from nngraph.hf_config import spec_text

    def vars_of(family: str) -> str:
        text, _ = spec_text(FAMILIES[family][1]().to_dict(), family)
        return next(ln for ln in text.splitlines() if ln.startswith("vars:"))

    assert ('rope_scaling: "llama3", rope_factor: 8.0, rope_original_len: 64, rope_low_freq: 1.0, '
            'rope_high_freq: 4.0}') in vars_of("llama+llama3")
    assert 'rope_scaling: "yarn", rope_factor: 4.0, rope_original_len: 16,' in vars_of("qwen2+yarn")
    assert 'rope_scaling: "linear", rope_factor: 4.0, rope_original_len: null,' in vars_of("llama+linear")
    assert 'activation: "gelu_tanh", scale_head: false}' in vars_of("t5_v1_1")


def test_every_size_comes_from_the_config():
    from nngraph.hf_config import spec_text

    text, family = spec_text(FAMILIES["llama"][1]().to_dict(), "my-llama")
    line = next(ln for ln in text.splitlines() if ln.startswith("vars:"))
    assert family.spec == "llama_style" and family.source == "hf-llama"
    assert line == ('vars: {vocab: 96, d_model: 32, heads: 4, kv_heads: 2, layers: 2, rope_base: 500000.0, '
                    'eps: 1.0e-05, ffn: 64, attn_bias: true, mlp_bias: true, tie: "embed_tokens", '
                    'rope_scaling: "none", rope_factor: 1.0, rope_original_len: null, rope_low_freq: 1.0, '
                    'rope_high_freq: 4.0}')


def test_shards_and_a_weights_only_bin_file_are_read(tmp_path):
    hf = _hf("qwen2")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    hf.config.save_pretrained(tmp_path / "bin")
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    ids, mask = _batch()
    for folder in ("sharded", "bin"):
        model, _, _ = _import(str(tmp_path / folder), tmp_path / f"out-{folder}")
        ours, want = outputs("qwen2", model, hf, ids, mask)
        assert (ours[0] - want[0]).abs().max().item() <= 1e-4


def test_a_hub_id_comes_from_the_local_cache_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    hf = _hf("gpt_neox")
    snapshot = tmp_path / "hub" / "models--tiny-org--tiny-neox" / "snapshots" / "0123abcd"
    hf.save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model, _, output = _import("tiny-org/tiny-neox", tmp_path / "out")
    assert "(local HF cache)" in output
    ids, mask = _batch()
    ours, want = outputs("gpt_neox", model, hf, ids, mask)
    assert (ours[0] - want[0]).abs().max().item() <= 1e-4
    res = CliRunner().invoke(cli.app, ["import-hf", "tiny-org/absent", "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "not in the local Hugging Face cache" in res.output and "Traceback" not in res.output


def _refused(tmp_path: Path, config: dict) -> str:
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    res = CliRunner().invoke(cli.app, ["import-hf", str(tmp_path / "m"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 1 and "Traceback" not in res.output and not (tmp_path / "out").exists()
    return res.output


def test_an_unknown_model_type_or_an_inexpressible_setting_is_a_clear_error(tmp_path):
    out = _refused(tmp_path, {"model_type": "falcon", "hidden_size": 8})
    assert "model_type 'falcon'; import-hf knows gpt2, bert, roberta, llama, mistral, qwen2, gemma, gpt_neox, t5" in out
    t5_tanh = FAMILIES["t5"][1]().to_dict() | {"feed_forward_proj": "gated-tanh"}
    assert "feed_forward_proj 'gated-tanh' (T5 v1.1 maps gated-gelu, gated-gelu_new" in _refused(tmp_path, t5_tanh)
    dynamic = FAMILIES["llama"][1]().to_dict() | {"rope_parameters": {"rope_type": "dynamic", "factor": 8.0}}
    assert ("rope scaling 'dynamic' (import-hf maps default, linear, llama3, yarn for model_type llama)"
            in _refused(tmp_path, dynamic))
    neox = FAMILIES["gpt_neox"][1]().to_dict() | {"rope_parameters": {"rope_type": "linear", "factor": 2.0}}
    assert "rope scaling 'linear' (import-hf maps default for model_type gpt_neox)" in _refused(tmp_path, neox)
    serial = FAMILIES["gpt_neox"][1]().to_dict() | {"use_parallel_residual": False}
    assert "use_parallel_residual false (a serial residual); the spec cannot express it" in _refused(tmp_path, serial)
    no_size = {"model_type": "qwen2"}
    assert "config.json of model_type 'qwen2' has no 'hidden_size'" in _refused(tmp_path, no_size)
