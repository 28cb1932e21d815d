"""Tensor parallelism (train.distributed: {tp, dp}): the plan derived from the graph, located errors where a spec
cannot be split, and on gloo CPU processes the loss curve of one process (tp 2 × dp 2 on 4 processes; tp 2 alone
with activation checkpointing, stopped at step 10 and resumed from its gathered checkpoint), with full weights
that load in one plain process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nngraph.compilers.torch import build_module, compile_spec, load_state_dict, state_dict_for
from nngraph.compilers.train.tensor_parallel import tp_plan
from nngraph.errors import SpecError
from nngraph.spec import load_spec

from train_helpers import ENV, ROOT, finish, max_diff, nngraph, run_quiet, train_curve, weights

#: a LLaMA-style decoder at tiny sizes: GQA attention with RoPE, SwiGLU, RMSNorm, untied head; no dropout
LLAMA = """\
nngraph: 1
name: tiny_llama
vars: {vocab: 68, d_model: 32, heads: 4, kv_heads: 2, layers: 2, ffn: 64}
inputs:
  tokens: {shape: [batch, seq], dtype: int64}
blocks:
  decoder_layer:
    inputs: [x]
    nodes:
      - {name: input_layernorm, op: rms_norm, in: x}
      - {name: self_attn, op: attention, in: input_layernorm, heads: "${heads}", kv_heads: "${kv_heads}",
         bias: false, out_bias: false, mask: causal, position: {type: rope}}
      - {name: res_1, op: add, in: [x, self_attn]}
      - {name: post_attention_layernorm, op: rms_norm, in: res_1}
      - {name: mlp, op: gated_mlp, in: post_attention_layernorm, activation: silu, hidden: "${ffn}"}
      - {name: res_2, op: add, in: [res_1, mlp]}
    outputs: [res_2]
graph:
  - {name: embed_tokens, op: embedding, in: tokens, num: "${vocab}", dim: "${d_model}"}
  - {name: layers, block: decoder_layer, repeat: "${layers}", in: embed_tokens}
  - {name: norm, op: rms_norm, in: layers}
  - {name: lm_head, op: linear, in: norm, out: "${vocab}", bias: false}
outputs: {logits: lm_head}
train:
  task: language_model
  data: {builtin: text, seq_len: 16}
  batch_size: 8
  steps: 20
  optimizer: {type: adamw, lr: 1.0e-2}
  grad_clip: 1.0
  checkpoint: {every: 10}
  eval: {every: 100, batches: 1}
  log: {every: 1, tensorboard: false, plot: false, progress: false}
"""


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tp") / "tiny_llama.yaml"
    path.write_text(LLAMA)
    return path


@pytest.fixture(scope="module")
def one_process(llama: Path) -> Path:
    """The reference: 20 steps of batch 8 in this process (one interpreter start less)."""
    out = llama.parent / "one"
    run_quiet(llama, out, steps=20)
    return out


def _plan(path: Path, *sets: str, tp: int = 2):
    graph = load_spec(path, list(sets))
    return tp_plan(graph, build_module(graph, seed=0), tp)


def test_the_plan_comes_from_the_graph(llama: Path, tmp_path: Path):
    plan = _plan(llama)
    layer = {"self_attn.q": "colwise", "self_attn.k": "colwise", "self_attn.v": "colwise",
             "self_attn.out": "rowwise", "mlp.gate": "colwise", "mlp.up": "colwise", "mlp.down": "rowwise"}
    assert plan.styles == {"embed_tokens": "vocab", **{f"layers.{i}.{k}": v for i in (0, 1) for k, v in layer.items()},
                           "lm_head": "head"}
    assert plan.heads == ["layers.0.self_attn", "layers.1.self_attn"] and plan.replicated == {}
    # gpt_char: fused qkv, the head tied to the embedding; its MLP still splits
    gpt = _plan(ROOT / "specs" / "gpt_char.yaml", "layers=1", "vocab=68")
    assert gpt.styles == {"h.0.mlp.up": "colwise", "h.0.mlp.down": "rowwise"}
    assert gpt.replicated == {
        "wte": "its table is tied to lm_head",
        "h.0.attn": "its q, k and v rows are one fused matrix (qkv: fused): a row split would cut across q, k and v",
        "lm_head": "its weight is another node's (tie)"}
    # the MoE's experts: no split declared, said so for each use
    moe = _plan(ROOT / "specs" / "switch_style.yaml", "vocab=64", "d_model=32", "d_ff=64", "experts=2", "pairs=1")
    assert {k: v for k, v in moe.replicated.items() if "moe" in k} == {
        "layers.0.sparse.moe": "op moe declares no tensor-parallel split"}
    # plain linear nodes: a pair through featurewise ops (relu, dropout) splits; written-out heads do not
    from conftest import MLP

    (tmp_path / "mlp.yaml").write_text(MLP)
    assert _plan(tmp_path / "mlp.yaml").styles == {"fc": "colwise", "head": "rowwise"}
    written = _plan(ROOT / "specs" / "attention_written_out.yaml")
    assert written.styles == {} and len(written.replicated) == 8
    assert written.replicated["q1"] == "its output reaches 'q1_heads' (reshape), not a linear through featurewise ops"
    assert written.replicated["out2"] == "its output reaches 'res2' (add), not a linear through featurewise ops"


def test_heads_that_do_not_divide_are_a_located_error(llama: Path):
    with pytest.raises(SpecError) as info:
        _plan(llama, "heads=6", "kv_heads=3", "d_model=36")
    (diag,) = info.value.diagnostics
    line = LLAMA.splitlines().index(next(x for x in LLAMA.splitlines() if "name: self_attn" in x)) + 1
    assert (diag.pos.file, diag.pos.line) == (str(llama), line)
    assert diag.message == ("train.distributed.tp: node 'layers.0.self_attn' (attention) cannot be split over 2 ranks: "
                            "its 6 heads and 3 key/value heads do not divide over tp=2 ranks")
    with pytest.raises(SpecError) as info:
        _plan(llama, "ffn=66", "kv_heads=4", tp=4)
    (diag,) = info.value.diagnostics
    assert diag.pos.line == line + 4 and diag.message == (
        "train.distributed.tp: node 'layers.0.mlp' (gated_mlp) cannot be split over 4 ranks: its hidden size 66 "
        "does not divide over tp=4 ranks")


def test_a_tp_that_does_not_divide_the_processes_is_a_located_error(llama: Path, tmp_path: Path):
    with pytest.raises(SpecError) as info:
        run_quiet(llama, tmp_path / "bad", "train.distributed.tp=2", steps=1)
    (diag,) = info.value.diagnostics
    assert diag.message == "train.distributed.tp: 2 does not divide the 1 processes"
    assert diag.pos.file == "--set train.distributed.tp=2"


def test_tp2_dp2_on_four_processes_follows_one_process(llama: Path, one_process: Path):
    """The dp × tp mesh: each pair of ranks splits the layers, FSDP2 shards over the two pairs, each pair reads
    half of the batch of 8; the gathered weights load strictly into one plain process."""
    out = llama.parent / "tp2dp2"
    text = finish(nngraph(str(llama), "--out", str(out), "--nproc-per-node", "4", "--set", "train.distributed.tp=2",
                          "--set", "train.distributed.dp=2", "--set", "train.batch_size=4"))
    assert "20 steps of 8 x 1 on 4 processes (tp 2 × dp 2, FSDP)" in text
    a, b = train_curve(one_process), train_curve(out)
    assert len(a) == len(b) == 20 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    assert a[-1] < 0.7 * a[0]  # it learns: not a flat curve matched by chance
    model = compile_spec(llama)
    assert load_state_dict(model, weights(out)).ok  # every key, full shapes
    # AdamW divides each update by √v: float32 rounding of the all-reduced sums (1e-7 in the loss) shows as
    # ~1e-5 in weights that 20 steps at lr 1e-2 moved by 0.1-0.2
    diff = max_diff(weights(one_process), dict(state_dict_for(model)))
    assert diff <= 5e-5, diff


def test_tp2_alone_checkpointed_resumes_from_its_gathered_checkpoint_on_the_one_process_curve(llama: Path,
                                                                                             one_process: Path):
    from nngraph.compilers.state import checkpoint as ck

    out = llama.parent / "tp2"
    args = [str(llama), "--out", str(out), "--nproc-per-node", "2", "--set", "train.distributed.tp=2", "-q",
            "--set", "train.activation_checkpointing=true"]  # the split blocks recompute their forward too
    finish(nngraph(*args, "--steps", "10"))
    ckpt = ck.latest(out / "checkpoints")
    assert ckpt.state["run"]["step"] == 10 and ckpt.group("model")["lm_head.weight"].shape == (68, 32)  # gathered
    finish(nngraph(*args, "--steps", "20", "--resume"))
    a, b = train_curve(one_process), train_curve(out)
    assert len(a) == len(b) == 20 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    diff = max_diff(weights(one_process), weights(out))
    assert diff <= 5e-5, diff  # as above


def test_tp2_compiled_with_a_fused_qkv_left_whole_follows_one_eager_process(tmp_path: Path):
    """gpt_char's attention projects q, k and v with one fused matrix: tensor parallelism keeps it whole (the run
    says why) and still splits the MLP; its blocks compiled (train.compile, aot_eager) under the split follow one
    eager process."""
    sets = ["vocab=68", "d_model=32", "heads=4", "layers=1", "ctx=16", "train.data.seq_len=16", "train.batch_size=8",
            "train.optimizer.lr=1e-2", "train.grad_clip=1.0", "train.log.every=1", "train.eval.every=100",
            "train.checkpoint.every=100"]
    spec = ROOT / "specs" / "gpt_char.yaml"
    args = [a for s in [*sets, "train.distributed.tp=2", "train.compile=true", "train.compile_backend=aot_eager"]
            for a in ("--set", s)]
    proc = nngraph(str(spec), "--out", str(tmp_path / "tp2"), "--nproc-per-node", "2", "--steps", "6", *args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "on 2 processes (tp 2 × dp 1)" in out
    assert ("; whole on every rank: wte (its table is tied to lm_head); h.0.attn (its q, k and v rows are one fused "
            "matrix (qkv: fused): a row split would cut across q, k and v); lm_head (its weight is another node's "
            "(tie))") in out
    assert "cannot be captured whole" not in err  # the split block compiled: no eager fallback
    run_quiet(spec, tmp_path / "one", *sets, steps=6)
    a, b = train_curve(tmp_path / "one"), train_curve(tmp_path / "tp2")
    assert len(a) == len(b) == 6 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    assert a[-1] < a[0] - 0.2  # it learns (4.23 to 3.97): not a flat curve matched by chance
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "tp2")) <= 5e-5


def test_tp2_in_float64_follows_one_process_to_float64_rounding(llama: Path, tmp_path: Path):
    """In float64 the split is exact maths, not float32 rounding: torch's default dtype is set in every process
    (workers included) by a sitecustomize on PYTHONPATH, as ``bench/tensor_parallel.py --dtype float64`` does,
    and tp 2 then follows one process to 1e-12 in loss and weights: measured 4.4e-16 and 3.4e-15 after 8 steps.
    The same runs in float32 differ by 2.4e-7 and 8.2e-6, so the bound leaves no room for a split that is only
    close (a shard scaled or a partial sum rounded differently), which the float32 tests above cannot see."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import torch\ntorch.set_default_dtype(torch.float64)\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join(p for p in (str(site), ENV.get("PYTHONPATH")) if p)}
    runs = {"one": ("1", []), "tp2": ("2", ["--set", "train.distributed.tp=2"])}
    for name, (nproc, extra) in runs.items():
        finish(nngraph(str(llama), "--out", str(tmp_path / name), "--nproc-per-node", nproc, "--steps", "8", "-q",
                       *extra, env=env))
    a, b = train_curve(tmp_path / "one"), train_curve(tmp_path / "tp2")
    wa, wb = weights(tmp_path / "one"), weights(tmp_path / "tp2")
    assert {v.dtype for v in [*wa.values(), *wb.values()]} == {torch.float64}  # both really trained in float64
    assert len(a) == len(b) == 8 and a[-1] < a[0] - 0.5, a  # it learns: not a flat curve matched by chance
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-12, (a, b)
    assert max_diff(wa, wb) <= 1e-12


def test_tp2_in_bf16_follows_the_fp32_process_within_bf16_precision(llama: Path, one_process: Path):
    """``train.precision: bf16`` under tp 2: CPU autocast runs each split product in bf16 (8 significant bits,
    rounding by up to 2^-9 = 0.2% relative) with fp32 accumulation, and the row-split products add their bf16
    partial outputs across ranks. The loss (a mean over 128 tokens, whose roundings mostly cancel) moves by about
    one rounding per step: bound 1% (5 roundings) per step against the fp32 one-process curve (the constant
    schedule makes its first 8 steps an 8-step run); measured 0.25%. The weights stay fp32 masters and load into
    one plain process."""
    out = llama.parent / "tp2_bf16"
    text = finish(nngraph(str(llama), "--out", str(out), "--nproc-per-node", "2", "--steps", "8",
                          "--set", "train.distributed.tp=2", "--set", "train.precision=bf16"))
    assert "on 2 processes (tp 2 × dp 1)" in text and "bf16" in text
    a, b = train_curve(one_process)[:8], train_curve(out)
    assert len(b) == 8 and a != b  # bf16 did round
    assert max(abs(x - y) / x for x, y in zip(a, b)) <= 0.01, (a, b)
    assert b[-1] < 0.7 * b[0]  # it learns (4.50 to 2.98)
    trained = weights(out)
    assert {v.dtype for v in trained.values()} == {torch.float32}
    assert load_state_dict(compile_spec(llama), trained).ok
