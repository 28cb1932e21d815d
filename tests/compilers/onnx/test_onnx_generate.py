"""Decoding with exported decoders: greedy tokens from ONNX Runtime (KV cache as ONNX inputs/outputs) equal torch's.

The torch side is :func:`nngraph.compilers.torch.ops.attention_cache.generate` (greedy, its own KV cache)
on the same randomized module the file was exported from. gpt_char (learned positions, causal)
runs the GroupQueryAttention kernel; llama_style (RoPE, 4 query / 2 key-value heads) runs it with
the rotary built in.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.onnx.export import export_graph
from nngraph.compilers.onnx.generate import generate, stream
from nngraph.compilers.onnx.runner import InferError
from nngraph.compilers.sampling import GenerationOptions
from nngraph.compilers.torch import build_module
from nngraph.compilers.torch.ops.attention_cache import generate as torch_generate
from nngraph import load_spec

from onnx_support import SPECS, randomize, small_overrides

DECODERS = ["gpt_char", "llama_style"]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoders")
    out = {}
    for name in DECODERS:
        path = SPECS / f"{name}.yaml"
        graph = load_spec(path, small_overrides(path))
        module = build_module(graph, seed=0).eval()
        randomize(module, seed=5)
        file = folder / f"{name}.onnx"
        result = export_graph(graph, file, module=module, kv_cache=True)
        plain = folder / f"{name}-nocache.onnx"
        export_graph(graph, plain, module=module, verify=False)
        out[name] = (graph, module, file, plain, result)
    return out


@pytest.mark.parametrize("name", DECODERS)
def test_greedy_tokens_from_onnxruntime_equal_torch(name, decoders):
    graph, module, file, _, result = decoders[name]
    assert {c.kernel.name for c in result.choices.values()} == {"ort-gqa"}
    vocab = graph.nodes[next(iter(graph.nodes))].params["num"]
    prompt = torch.from_numpy(np.random.default_rng(1).integers(0, vocab, (3, 5)))
    new = min(12, graph.nodes["wpe"].params["max_len"] - 5) if "wpe" in graph.nodes else 12  # learned positions cap it
    want = torch_generate(module, prompt, new).numpy()
    got = generate(file, prompt.numpy(), new)
    assert got.shape == (3, 5 + new) and new >= 8
    np.testing.assert_array_equal(got, want)


def test_generation_without_a_cache_reruns_the_sequence_and_agrees(decoders):
    graph, module, file, plain, _ = decoders["gpt_char"]
    prompt = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(generate(plain, prompt, 8), generate(file, prompt, 8))


def _sample(n: int, **kw) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=n, do_sample=True, **kw)


def test_top_k_sampling_is_seeded_and_stays_in_the_top_k(decoders):
    graph, module, file, _, _ = decoders["gpt_char"]
    prompt = np.array([[5, 6, 7], [8, 9, 10]])
    a = generate(file, prompt, _sample(10, top_k=5, temperature=1.5, seed=3))
    b = generate(file, prompt, _sample(10, top_k=5, temperature=1.5, seed=3))
    c = generate(file, prompt, _sample(10, top_k=5, temperature=1.5, seed=4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with torch.no_grad():
        logits = module(tokens=torch.from_numpy(a[:, :-1])).numpy()
    for row in range(2):
        for t in range(3, a.shape[1]):
            top5 = np.argsort(-logits[row, t - 1])[:5]
            assert a[row, t] in top5
    np.testing.assert_array_equal(generate(file, prompt, _sample(6, top_k=1, seed=9)), generate(file, prompt, 6))


def test_streaming_yields_each_step_as_generate_collects_it(decoders):
    _, _, file, _, _ = decoders["gpt_char"]
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    opts = _sample(7, top_p=0.9, temperature=0.8, repetition_penalty=1.3, seed=11)
    steps = list(stream(file, prompt, opts))
    assert [s.index for s in steps] == list(range(7)) and all(s.active.all() for s in steps)
    np.testing.assert_array_equal(np.stack([s.tokens for s in steps], 1), generate(file, prompt, opts)[:, 3:])


def test_eos_stops_each_row_and_pads_it(decoders):
    _, _, file, _, _ = decoders["gpt_char"]
    prompt = np.array([[1, 2, 3], [7, 8, 9]])
    free = generate(file, prompt, 6)
    stop = int(free[0, 3])  # row 0's first new token
    assert stop not in free[1, 3:]  # row 1 never stops: it runs to max_new_tokens
    out = generate(file, prompt, GenerationOptions(max_new_tokens=6, stop_tokens=(stop,), pad_id=0))
    assert out[0].tolist() == free[0, :4].tolist() + [0] * 5 and out[1].tolist() == free[1].tolist()
    alone = generate(file, prompt[:1], GenerationOptions(max_new_tokens=6, stop_tokens=(stop,)))
    assert alone.tolist() == [free[0, :4].tolist()]  # every row stopped: decoding ends


def test_generation_beyond_the_position_table_is_refused(decoders):
    graph, _, file, _, _ = decoders["gpt_char"]
    ctx = graph.nodes["wpe"].params["max_len"]
    with pytest.raises(InferError, match=f"exceeds the model's {ctx} positions"):
        generate(file, np.zeros((1, ctx - 2), np.int64), 5)


def test_cli_generate_prints_token_rows_and_writes_json(decoders, tmp_path):
    graph, module, file, _, _ = decoders["gpt_char"]
    out = tmp_path / "tokens.json"
    res = CliRunner().invoke(cli.app, ["generate", str(file), "--ids", "1,2,3", "--ids", "4,5,6", "-n", "4",
                                       "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if line and line[0].isdigit()]
    want = torch_generate(module, torch.tensor([[1, 2, 3], [4, 5, 6]]), 4).tolist()
    assert rows == [",".join(map(str, r)) for r in want]
    assert __import__("json").loads(out.read_text())["tokens"] == want


def test_cli_generate_errors_exit_1_without_traceback(decoders, tmp_path):
    _, _, file, _, _ = decoders["gpt_char"]
    runner = CliRunner()
    res = runner.invoke(cli.app, ["generate", str(file), "--ids", "1,x,3"])
    assert res.exit_code == 1 and "--ids '1,x,3' is not comma-separated token ids" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(cli.app, ["generate", str(file), "--ids", "1,2", "--ids", "1,2,3"])
    assert res.exit_code == 1 and "has no key_padding input to mask padded keys" in res.output
    res = runner.invoke(cli.app, ["generate", str(tmp_path / "missing.onnx"), "--ids", "1"])
    assert res.exit_code == 1 and "model file" in res.output and "not found" in res.output


@pytest.mark.parametrize("prompt, message", [
    ("1,-2,3", "error: --ids '1,-2,3': token id -2 is negative; token ids are 0..vocab-1\n"),
    ("1,99999999999999999999,3",
     "error: --ids '1,99999999999999999999,3': token id 99999999999999999999 is over int64; token ids are "
     "0..vocab-1\n"),
    ("1,2,20", "error: the prompt: token id 20 at row 0, position 2 is outside 0..19 (the model's vocabulary)\n"),
])
def test_cli_generate_refuses_token_ids_outside_the_vocabulary(decoders, prompt, message):
    _, _, file, _, _ = decoders["gpt_char"]
    res = CliRunner().invoke(cli.app, ["generate", str(file), "--ids", prompt])
    assert res.exit_code == 1 and res.output == message


def test_a_prompt_file_with_a_negative_id_is_refused_before_onnxruntime_wraps_it(decoders, tmp_path):
    _, _, file, _, _ = decoders["gpt_char"]
    np.save(tmp_path / "p.npy", np.array([[3, 4], [5, -1]]))
    with pytest.raises(InferError, match=r"^the prompt: token id -1 at row 1, position 1 is outside 0..19 "):
        generate(file, np.load(tmp_path / "p.npy"), 2)


def test_cli_generate_from_a_spec_exports_with_a_cache_first():
    res = CliRunner().invoke(cli.app, ["generate", str(SPECS / "gpt_char.yaml"), "--set", "layers=1", "--ids",
                                       "1,2,3", "-n", "5"])
    assert res.exit_code == 0, res.output
    graph = load_spec(SPECS / "gpt_char.yaml", ["layers=1"])
    want = torch_generate(build_module(graph, seed=0).eval(), torch.tensor([[1, 2, 3]]), 5)[0].tolist()
    assert res.stdout.strip().splitlines()[-1] == ",".join(map(str, want))


def test_cli_generate_head_dim_12_picks_a_kernel_ort_runs_and_takes_kernel():
    """Issue 18: causal head_dim 12 used to pick GroupQueryAttention, which ORT refuses (multiple of 8)."""
    sets = ["--set", "d_model=24", "--set", "heads=2", "--set", "layers=1", "--set", "vocab=20", "--set", "ctx=16"]
    graph = load_spec(SPECS / "gpt_char.yaml", [s for s in sets if s != "--set"])
    want = torch_generate(build_module(graph, seed=0).eval(), torch.tensor([[1, 2, 3]]), 5)[0].tolist()
    base = ["generate", str(SPECS / "gpt_char.yaml"), *sets, "--ids", "1,2,3", "-n", "5"]
    for extra, kernel in (([], "ort-mha"), (["--kernel", "decomposed"], "decomposed")):
        res = CliRunner().invoke(cli.app, base + extra)
        assert res.exit_code == 0, res.output
        assert f"({kernel})" in res.output and res.stdout.strip().splitlines()[-1] == ",".join(map(str, want))
    res = CliRunner().invoke(cli.app, base + ["--kernel", "ort-gqa"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "ORT's GroupQueryAttention needs head_dim divisible by 8, got 12" in res.output


def test_cli_generate_samples_with_the_options_and_streams_each_step(decoders):
    _, _, file, _, _ = decoders["gpt_char"]
    args = ["generate", str(file), "--ids", "1,2,3", "--ids", "4,5,6", "-n", "5", "--top-p", "0.9",
            "--temperature", "0.8", "--repetition-penalty", "1.2", "--seed", "4"]
    opts = _sample(5, top_p=0.9, temperature=0.8, repetition_penalty=1.2, seed=4)
    want = generate(file, np.array([[1, 2, 3], [4, 5, 6]]), opts)
    res = CliRunner().invoke(cli.app, args + ["--stream"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [",".join(map(str, col)) for col in want[:, 3:].T.tolist()]
    res = CliRunner().invoke(cli.app, args)
    assert res.stdout.splitlines() == [",".join(map(str, row)) for row in want.tolist()]
    res = CliRunner().invoke(cli.app, args[:-2] + ["--top-p", "0"])
    assert res.exit_code == 2 and "top_p must be in (0, 1], got 0.0" in res.output
