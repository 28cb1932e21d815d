"""Hugging Face parity (fp32, random weights from small configs, no downloads): the zoo specs with weights
imported from transformers' GPT2LMHeadModel, BertForMaskedLM, LlamaForCausalLM (GQA + RoPE) and
T5ForConditionalGeneration give the same logits (max abs diff <= 1e-4; measured ~1e-7..1e-6); greedy
generation with and without the KV cache gives HF's tokens; T5 buckets equal
T5Attention._relative_position_bucket; and `nngraph import-weights` writes loadable weights or exits 1
listing what does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.torch import compile_spec
from nngraph.compilers.torch.hf_import import ImportWeightsError, convert_state_dict, expected_shapes, import_weights
from nngraph.compilers.torch.ops.attention_cache import generate
from nngraph.compilers.torch.ops.attention_positions import t5_buckets
from nngraph.compilers.torch.state import state_dict_for
from nngraph.compilers.torch.weights import load_weights

transformers = pytest.importorskip("transformers")

SPECS = Path(__file__).resolve().parents[3] / "specs"
V = 96
GPT2_SET = [f"vocab={V}", "ctx=32", "d_model=32", "layers=2", "heads=4"]
LLAMA_SET = [f"vocab={V}", "d_model=32", "layers=2", "heads=4", "kv_heads=2"]
BERT_SET = [f"vocab={V}", "d_model=32", "layers=2", "heads=4", "ffn=64", "max_len=32"]
T5_SET = [f"vocab={V}", "d_model=32", "layers=2", "heads=4", "d_kv=8", "d_ff=64", "buckets=16", "max_distance=20"]


def _ids(*shape: int, seed: int = 0, high: int = V) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def _hf(cls, config):
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():  # random non-trivial norms and biases (HF initializes them to 1 and 0)
        for name, p in model.named_parameters():
            if name.endswith(("bias", "norm.weight", "LayerNorm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight",
                              "layer_norm.weight", "layernorm.weight")):
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def gpt2():
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return _hf(transformers.GPT2LMHeadModel, cfg)


@pytest.fixture(scope="module")
def llama():
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                                   max_position_embeddings=64, tie_word_embeddings=False, bos_token_id=0,
                                   eos_token_id=0, pad_token_id=0)
    return _hf(transformers.LlamaForCausalLM, cfg)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_gpt2_logits_match_gpt2_lm_head_model(gpt2):
    model = import_weights(SPECS / "gpt2_small.yaml", "hf-gpt2", gpt2.state_dict(), GPT2_SET)
    ids = _ids(2, 11)
    with torch.no_grad():
        assert _max_diff(model(ids), gpt2(ids).logits) <= 1e-4


def test_llama_gqa_rope_logits_match_llama_for_causal_lm(llama):
    model = import_weights(SPECS / "llama_style.yaml", "hf-llama", llama.state_dict(), LLAMA_SET)
    assert model.layers[0].self_attn.k.weight.shape == (16, 32)  # 2 kv heads x head_dim 8
    ids = _ids(2, 13, seed=1)
    with torch.no_grad():
        assert _max_diff(model(ids), llama(ids).logits) <= 1e-4


def test_bert_logits_with_padding_match_bert_for_masked_lm():
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    hf = _hf(transformers.BertForMaskedLM, cfg)
    model = import_weights(SPECS / "bert_encoder.yaml", "hf-bert", hf.state_dict(), BERT_SET)
    ids, types, lengths = _ids(3, 10, seed=2), _ids(3, 10, seed=3, high=2), torch.tensor([10, 4, 7])
    attention_mask = (torch.arange(10)[None] < lengths[:, None]).long()
    with torch.no_grad():
        want = hf(input_ids=ids, token_type_ids=types, attention_mask=attention_mask).logits
        assert _max_diff(model(ids, types, lengths)["logits"], want) <= 1e-4


def test_t5_logits_with_source_padding_match_t5_for_conditional_generation():
    cfg = transformers.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                                num_heads=4, relative_attention_num_buckets=16, relative_attention_max_distance=20,
                                dropout_rate=0.0, feed_forward_proj="relu")
    hf = _hf(transformers.T5ForConditionalGeneration, cfg)
    model = import_weights(SPECS / "t5_encoder_decoder.yaml", "hf-t5", hf.state_dict(), T5_SET)
    # T5 keeps one bias table per stack (block 0); so does the spec (position_from): one Parameter, one key
    table = hf.state_dict()["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    assert model.encoder[1].self_attn.rel_bias.weight is model.encoder[0].self_attn.rel_bias.weight
    assert torch.equal(model.encoder[0].self_attn.rel_bias.weight, table)
    assert sorted(k for k in state_dict_for(model) if "rel_bias" in k) == \
        ["decoder.0.self_attn.rel_bias.weight", "encoder.0.self_attn.rel_bias.weight"]
    assert model.encoder[0].self_attn.scale == 1.0  # T5 does not scale scores by 1/sqrt(d)
    src, tgt, lengths = _ids(2, 25, seed=4), _ids(2, 9, seed=5), torch.tensor([25, 6])  # 25 > max_distance
    want = hf(input_ids=src, attention_mask=(torch.arange(25)[None] < lengths[:, None]).long(),
              decoder_input_ids=tgt).logits
    got = model(src, lengths, tgt)
    assert _max_diff(got, want) <= 1e-4
    # the shared table's gradient (summed over the stack's layers) is HF's for the same loss
    want.square().mean().backward()
    got.square().mean().backward()
    for stack in ("encoder", "decoder"):
        hf_grad = hf.get_submodule(stack).block[0].layer[0].SelfAttention.relative_attention_bias.weight.grad
        grad = getattr(model, stack)[0].self_attn.rel_bias.weight.grad
        assert hf_grad.abs().max() > 0 and _max_diff(grad, hf_grad) <= 1e-5 * hf_grad.abs().max() + 1e-7


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_greedy_generation_with_and_without_cache_gives_hf_greedy_tokens(which, request):
    hf = request.getfixturevalue(which)
    spec, source, sets = {"gpt2": ("gpt2_small", "hf-gpt2", GPT2_SET),
                          "llama": ("llama_style", "hf-llama", LLAMA_SET)}[which]
    model = import_weights(SPECS / f"{spec}.yaml", source, hf.state_dict(), sets)
    prompt = _ids(2, 4, seed=6)
    cached = generate(model, prompt, 12, use_cache=True)
    assert torch.equal(cached, generate(model, prompt, 12, use_cache=False))
    want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, min_new_tokens=12,
                       do_sample=False, num_beams=1)
    assert torch.equal(cached, want)


def test_t5_buckets_equal_transformers_relative_position_bucket():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-700, 701)
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (16, 20), (64, 256)):
            want = T5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=buckets,
                                                         max_distance=distance)
            assert torch.equal(t5_buckets(rel, bidirectional, buckets, distance), want)


def test_bert_pooler_and_next_sentence_head_are_skipped_by_name():
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32)
    hf = transformers.BertForPreTraining(cfg)
    model = compile_spec(SPECS / "bert_encoder.yaml", BERT_SET)
    conv = convert_state_dict(expected_shapes(model), "hf-bert", hf.state_dict())
    skipped = dict(conv.skipped)
    assert skipped["bert.pooler.dense.weight"] == "BERT pooler: the spec has no pooler"
    assert skipped["cls.seq_relationship.weight"] == "next-sentence head: the spec has none"
    assert skipped["cls.predictions.decoder.weight"] == "tied to word_embeddings"
    assert torch.equal(conv.tensors["token_type_embeddings.weight"], hf.state_dict()["bert.embeddings.token_type_embeddings.weight"])


def test_gpt2_conv1d_weights_are_transposed_onto_the_fused_qkv(gpt2):
    model = compile_spec(SPECS / "gpt2_small.yaml", GPT2_SET)
    conv = convert_state_dict(expected_shapes(model), "hf-gpt2", gpt2.state_dict())
    c_attn = gpt2.state_dict()["transformer.h.1.attn.c_attn.weight"]
    assert c_attn.shape == (32, 96) and torch.equal(conv.tensors["h.1.attn.qkv.weight"], c_attn.T)
    assert ("lm_head.weight", "tied to wte") in conv.skipped


def test_import_weights_cli_writes_weights_that_load_into_the_spec(tmp_path, gpt2):
    from safetensors.torch import save_file

    ckpt = tmp_path / "model.safetensors"
    save_file({k: v.clone().contiguous() for k, v in gpt2.state_dict().items()}, str(ckpt))
    out = tmp_path / "w.safetensors"
    sets = [a for s in GPT2_SET for a in ("--set", s)]
    res = CliRunner().invoke(cli.app, ["import-weights", str(SPECS / "gpt2_small.yaml"), "--from", "hf-gpt2", str(ckpt),
                                       "-o", str(out), *sets])
    assert res.exit_code == 0, res.output
    assert "skipped lm_head.weight: tied to wte" in res.output and f"wrote {out}" in res.output
    model = compile_spec(SPECS / "gpt2_small.yaml", GPT2_SET)
    model.load_state_dict(load_weights(out).tensors)
    ids = _ids(1, 7)
    with torch.no_grad():
        assert _max_diff(model.eval()(ids), gpt2(ids).logits) <= 1e-4


def test_import_weights_cli_lists_missing_unexpected_and_mis_shaped_tensors(tmp_path, gpt2):
    ckpt = tmp_path / "pytorch_model.bin"
    torch.save(gpt2.state_dict(), ckpt)  # read back with weights_only=True
    out = tmp_path / "w.safetensors"
    args = ["import-weights", str(SPECS / "gpt2_small.yaml"), "--from", "hf-gpt2", str(ckpt), "-o", str(out)]
    res = CliRunner().invoke(cli.app, args + ["--set", "layers=3", "--set", "vocab=95", "--set", "d_model=32",
                                              "--set", "heads=4", "--set", "ctx=32"])
    assert res.exit_code == 1 and "Traceback" not in res.output and not out.exists()
    assert "hf-gpt2 checkpoint does not fit spec 'gpt2_small'" in res.output
    assert "missing (spec parameters the checkpoint does not provide): 12" in res.output and "h.2.attn.qkv.weight" in res.output
    assert "transformer.wte.weight -> wte.weight: spec [95, 32], checkpoint [96, 32]" in res.output
    res = CliRunner().invoke(cli.app, args + ["--set", "layers=1"] + [a for s in GPT2_SET[:-2] + GPT2_SET[-1:]
                                                                    for a in ("--set", s)])
    assert res.exit_code == 1 and "unexpected (checkpoint tensors with no place in the spec): 12" in res.output
    assert "transformer.h.1.attn.c_attn.weight" in res.output
    res = CliRunner().invoke(cli.app, args[:3] + ["hf-gpt3", str(ckpt), "-o", str(out)])
    assert res.exit_code == 2 and "unknown source 'hf-gpt3'; use one of: hf-gpt2," in res.output


def test_import_rejects_a_checkpoint_that_is_not_a_state_dict(tmp_path):
    bad = tmp_path / "x.bin"
    torch.save([1, 2, 3], bad)
    res = CliRunner().invoke(cli.app, ["import-weights", str(SPECS / "gpt2_small.yaml"), "--from", "hf-gpt2", str(bad),
                                       "-o", str(tmp_path / "w.pt")])
    assert res.exit_code == 1 and "is not a state dict" in res.output


def test_import_error_is_raised_from_the_python_api(llama):
    state = dict(llama.state_dict())
    state.pop("model.norm.weight")
    with pytest.raises(ImportWeightsError) as err:
        import_weights(SPECS / "llama_style.yaml", "hf-llama", state, LLAMA_SET)
    assert err.value.missing == ["norm.weight"] and not err.value.unexpected


def test_a_folder_of_safetensors_shards_reads_as_one_state_dict(tmp_path, llama):
    from safetensors.torch import save_file

    from nngraph.compilers.torch.hf_import import read_state_dict

    state = {k: v.clone().contiguous() for k, v in llama.state_dict().items()}
    keys = sorted(state)
    save_file({k: state[k] for k in keys[::2]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in keys[1::2]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    model = import_weights(SPECS / "llama_style.yaml", "hf-llama", read_state_dict(tmp_path), LLAMA_SET)
    ids = _ids(1, 6)
    with torch.no_grad():
        assert _max_diff(model(ids), llama(ids).logits) <= 1e-4
