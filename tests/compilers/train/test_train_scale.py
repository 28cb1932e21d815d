"""Scaling per block copy: activation checkpointing (train.activation_checkpointing: exact gradients, less saved
memory, located errors for blocks that are not modules) and per-block FSDP2 units."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nngraph.compilers.torch import build_module, compile_spec, load_state_dict, state_dict_for
from nngraph.compilers.torch.module import blocks
from nngraph.errors import SpecError
from nngraph.spec import load_spec

from train_helpers import BLOCKS_SPEC as SPEC
from train_helpers import max_diff, run_quiet, train_curve, weights


def _grads(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """(loss, gradients, bytes of the tensors autograd saved for backward) of one training step."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    torch.manual_seed(5)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).square().mean()
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}, saved[0]


def test_checkpointed_blocks_give_exactly_the_gradients_of_plain_ones_and_save_less(tmp_path: Path):
    path = tmp_path / "ckpt.yaml"
    path.write_text(SPEC)
    graph = load_spec(path)
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    plain, ckpt = build_module(graph, seed=1).train(), build_module(graph, seed=1).train()
    for b in blocks(ckpt):
        b.nng_checkpoint = True
    loss_a, grads_a, saved_a = _grads(plain, x)
    loss_b, grads_b, saved_b = _grads(ckpt, x)
    assert [b.nng_prefix for b in blocks(ckpt)] == ["h.0", "h.1", "h.2", "h.3"]
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 4 * 4 + 2
    for k in grads_a:
        assert torch.equal(grads_a[k], grads_b[k]), k  # recomputation replays the same ops and dropout masks
    # plain: per block x, up, gelu's input/output, the dropout mask and its output, the weights are kept;
    # checkpointed: only each block's input and the head's
    assert saved_b * 3 <= saved_a, (saved_a, saved_b)


def test_training_with_checkpointing_follows_the_same_loss_curve(tmp_path: Path):
    spec = tmp_path / "ckpt.yaml"
    spec.write_text(SPEC)
    run_quiet(spec, tmp_path / "plain", "train.log.every=1", steps=3)
    run_quiet(spec, tmp_path / "ckpt", "train.log.every=1", "train.activation_checkpointing=[layer]", steps=3)
    a, b = train_curve(tmp_path / "plain"), train_curve(tmp_path / "ckpt")
    assert len(a) == 3 and a == b, (a, b)
    assert max_diff(weights(tmp_path / "plain"), weights(tmp_path / "ckpt")) == 0.0


def test_naming_a_block_that_is_not_a_module_is_a_located_error(tmp_path: Path):
    spec = tmp_path / "ckpt.yaml"
    spec.write_text(SPEC)
    with pytest.raises(SpecError) as info:
        run_quiet(spec, tmp_path / "bad", "train.activation_checkpointing=[layr]", steps=1)
    (diag,) = info.value.diagnostics
    assert diag.message == "train.activation_checkpointing: block(s) layr are not compiled to a module"
    assert diag.hint.startswith("blocks compiled to modules: layer (")


def test_per_block_fsdp_with_checkpointing_on_two_processes_follows_one_process(tmp_path: Path, blocks_fsdp_run):
    """Each block copy its own FSDP unit (and checkpointed): 2 processes x batch 8 = 1 process x batch 16, to 1e-5;
    the gathered weights load in one plain process."""
    spec, two, text = blocks_fsdp_run
    assert "on 2 processes (FSDP)" in text
    run_quiet(spec, tmp_path / "one", "train.batch_size=16", "train.log.every=1", "train.checkpoint.every=100",
              steps=4)  # in this process: one interpreter start less
    a, b = train_curve(tmp_path / "one"), train_curve(two)
    assert len(a) == len(b) == 4 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    model = compile_spec(spec)
    load_state_dict(model, weights(two))  # strict: every key, full shapes
    assert max_diff(weights(tmp_path / "one"), dict(state_dict_for(model))) <= 1e-5


def test_fsdp_units_are_the_block_copies_that_own_their_weights(tmp_path: Path):
    from nngraph.compilers.train.fsdp import own_units

    spec = tmp_path / "ckpt.yaml"
    spec.write_text(SPEC)
    assert list(own_units(compile_spec(spec))) == ["h.0", "h.1", "h.2", "h.3"]  # the head: 650 < 1,245
    shared = SPEC.replace("{name: h, block: layer, repeat: 4, in: x}",
                          "{name: a, block: layer, in: x}\n  - {name: h, block: layer, share: a, in: a}")
    spec.write_text(shared.replace("in: h, out: 10", "in: h, out: 10"))
    model = compile_spec(spec)
    assert model.h.up is model.a.up  # 'h' reuses a's modules: a cannot be a unit of its own (h runs them too)
    assert own_units(model) == {}


LLAMA_TINY = ["vocab=68", "d_model=32", "heads=4", "kv_heads=2", "layers=2", "ffn=64"]


GPT_TINY = ["layers=2", "d_model=32", "heads=2", "ctx=16", "vocab=512", "dropout=0.0"]


def test_an_untied_embedding_and_head_and_a_tied_table_are_units_of_their_own():
    from nngraph.compilers.train.fsdp import own_units

    from train_helpers import ROOT

    llama = build_module(load_spec(ROOT / "specs" / "llama_style.yaml", LLAMA_TINY), seed=0)
    # a block 9,280 parameters; embed_tokens and lm_head 2,176 each (>= 928); the final norm 32 stays in the root
    assert list(own_units(llama)) == ["layers.0", "layers.1", "embed_tokens", "lm_head"]
    gpt = build_module(load_spec(ROOT / "specs" / "gpt2_small.yaml", GPT_TINY), seed=0)
    # the head is a call of wte's own module (a method FSDP2 gathers around), so wte (16,384 >= a tenth of a
    # block) is a unit of its own, gathered only around its lookup and around the head
    assert "lm_head = self.wte.attend(ln_f)  # [batch, seq, 512]" in gpt.source
    assert list(own_units(gpt)) == ["h.0", "h.1", "wte"]
    t5 = build_module(load_spec(ROOT / "specs" / "t5_encoder_decoder.yaml", [
        "vocab=64", "d_model=16", "heads=2", "d_kv=8", "d_ff=32", "layers=2", "shared_embed=true"]), seed=0)
    # T5's one table is looked up twice (encoder and decoder): after the first call it would be the shard again
    assert "decoder_embed = self.encoder_embed(" in t5.source and "encoder_embed" not in own_units(t5)


def test_a_top_level_unit_is_gathered_only_around_its_call_with_the_gradients_of_one_plain_process(one_rank_group):
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from nngraph.compilers.train.fsdp import shard

    from train_helpers import ROOT

    graph = load_spec(ROOT / "specs" / "llama_style.yaml", LLAMA_TINY)
    plain, model = build_module(graph, seed=0), build_module(graph, seed=0)
    assert shard(model) == ["layers.0", "layers.1", "embed_tokens", "lm_head"]
    assert all(isinstance(model.get_submodule(n), FSDPModule) for n in ("embed_tokens", "lm_head", "layers.1"))
    seen = []  # at the head's call: is each table the shard (a DTensor) or the gathered tensor?
    model.lm_head.register_forward_pre_hook(lambda m, args: seen.append(
        (isinstance(model.embed_tokens.weight, DTensor), isinstance(m.weight, DTensor))))
    tokens = torch.randint(0, 68, (2, 8), generator=torch.Generator().manual_seed(0))
    for m in (plain, model):
        m(tokens).logsumexp(-1).mean().backward()
    assert seen == [(True, False)]  # the embedding was freed after its call; the head's own table is gathered
    grads = {k: p.grad.full_tensor() for k, p in model.named_parameters()}
    assert grads.keys() == {k for k, _ in plain.named_parameters()}
    assert max_diff({k: p.grad for k, p in plain.named_parameters()}, grads) <= 1e-7


def test_regional_compile_captures_each_block_class_once_and_matches_eager():
    import torch._dynamo
    from torch._dynamo.utils import counters

    from nngraph.compilers.train.scale import compile_blocks

    torch._dynamo.reset()
    counters.clear()
    spec = Path(__file__).resolve().parents[3] / "specs" / "gpt_char.yaml"
    model, eager = compile_spec(spec).eval(), compile_spec(spec).eval()
    assert compile_blocks(model, backend="eager") == {}  # "eager": dynamo's capture without inductor's codegen
    tokens = torch.randint(0, 67, (2, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(tokens), eager(tokens))
    assert counters["stats"]["unique_graphs"] == 1  # two copies of DecoderLayer, one captured graph


def test_inductor_compiles_blocks_with_its_cpp_wrapper_except_under_tp_and_other_backends_get_no_options(
        monkeypatch):
    # inductor's C++ wrapper calls the same kernels (bit-identical results) with less overhead per call, but fails
    # on tensor-parallel DTensor graphs; the other backends refuse inductor's options. Inductor itself is too slow
    # to compile here: bench/scale.py times it
    from nngraph.compilers.train.scale import compile_blocks

    seen: list[tuple[str, object]] = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append((kw["backend"], kw["options"])) or fn)
    model = compile_spec(Path(__file__).resolve().parents[3] / "specs" / "gpt_char.yaml")
    for backend, cpp in (("inductor", True), ("inductor", False), ("aot_eager", True)):
        compile_blocks(model, backend=backend, cpp_wrapper=cpp)
    assert seen == [("inductor", {"cpp_wrapper": True})] * 2 + [("inductor", None)] * 2 + [("aot_eager", None)] * 2


def test_a_block_with_data_dependent_moe_routing_falls_back_to_eager_and_says_which():
    from nngraph.compilers.train.scale import compile_blocks

    spec = Path(__file__).resolve().parents[3] / "specs" / "switch_style.yaml"
    model, eager = compile_spec(spec).eval(), compile_spec(spec).eval()
    fallen = compile_blocks(model, backend="eager")
    tokens = torch.randint(0, 60, (2, 16), generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"train.compile: block 'dense_layer' \(DenseLayer, e.g. 'layers.0'\) "
                                         r"cannot be captured whole by torch.compile, so it runs eagerly"):
        out = model(tokens)
    assert torch.equal(out, eager(tokens))
    assert list(fallen) == ["dense_layer"] and "moe.py" in fallen["dense_layer"]  # the routing's line


def test_training_with_compiled_blocks_follows_the_eager_loss_curve(tmp_path: Path):
    # aot_eager: dynamo capture and AOT autograd's forward/backward graphs, without inductor's minutes of codegen
    # on this shared CPU (bench/scale.py times inductor)
    spec = tmp_path / "ckpt.yaml"
    spec.write_text(SPEC.replace("p: 0.3", "p: 0.0"))  # compiled code draws dropout masks from its own RNG
    run_quiet(spec, tmp_path / "eager", "train.log.every=1", steps=2)
    run_quiet(spec, tmp_path / "compiled", "train.log.every=1", "train.compile=true", "train.compile_backend=aot_eager",
              steps=2)
    a, b = train_curve(tmp_path / "eager"), train_curve(tmp_path / "compiled")
    assert len(a) == 2 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)


def test_a_tied_table_is_gathered_around_its_lookup_and_its_head_with_the_gradients_of_one_plain_process(
        one_rank_group):
    from torch.distributed.tensor import DTensor

    from nngraph.compilers.train.fsdp import shard

    from train_helpers import ROOT

    graph = load_spec(ROOT / "specs" / "gpt2_small.yaml", GPT_TINY)
    plain, model = build_module(graph, seed=0), build_module(graph, seed=0)
    assert shard(model) == ["h.0", "h.1", "wte"]
    seen = []  # between the lookup and the head: is wte's table the shard again?
    model.ln_f.register_forward_pre_hook(lambda m, args: seen.append(isinstance(model.wte.weight, DTensor)))
    tokens = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(0))
    losses = [m(tokens).logsumexp(-1).mean() for m in (plain, model)]
    for loss in losses:
        loss.backward()
    assert seen == [True]  # freed after the lookup; the head (wte.attend) gathered it again or it would not run
    assert abs(losses[0].item() - losses[1].item()) <= 1e-6
    grads = {k: p.grad.full_tensor() for k, p in model.named_parameters()}
    assert grads.keys() == {k for k, _ in plain.named_parameters()}
    assert max_diff({k: p.grad for k, p in plain.named_parameters()}, grads) <= 1e-7  # the lookup's + the head's
