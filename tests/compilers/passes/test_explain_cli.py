"""`nngraph compile SPEC --target T [--mode M] --explain`: the table of every attention node, the kernel
chosen, why, and each other candidate's verdict; lowering without --explain reports its changes; bad
targets are usage errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nngraph import cli

SPECS = Path(__file__).resolve().parents[3] / "specs"
runner = CliRunner()

LM = """
nngraph: 1
name: lm
inputs: {tokens: {shape: [batch, seq], dtype: int64}}
graph:
  - {name: embed, op: embedding, in: tokens, num: 64, dim: 64}
  - {name: causal, op: attention, in: embed, heads: 4, mask: causal, position: {type: rope}}
  - {name: window, op: attention, in: causal, heads: 4, mask: {type: sliding_window, window: 256}}
  - {name: alibi, op: attention, in: window, heads: 4, mask: causal, position: alibi}
  - {name: head, op: linear, in: alibi, out: 64}
outputs: {logits: head}
"""


def _run(*args: str):
    res = runner.invoke(cli.app, ["compile", *args])
    return res.exit_code, res.output


def test_explain_prints_a_row_per_attention_node_with_every_candidates_verdict(spec_file):
    code, out = _run(str(spec_file(LM)), "--target", "cpu", "--explain")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "target: cpu (float32, torch " + lines[0].split("torch ")[1]
    assert lines[1].startswith("mode: inference; symbolic lengths get a kernel per length range")
    header = next(line for line in lines if line.startswith("node"))
    assert header.split() == ["node", "op", "kernel", "why"]
    causal = next(line for line in lines if line.startswith("causal "))
    window = next(line for line in lines if line.startswith("window "))
    assert "sdpa(causal), else reference as fallback" in causal
    assert "local for kv_len >= " in window and ", else sdpa(mask), else reference as fallback" in window
    verdicts = lines[lines.index(window) + 1:]
    assert verdicts[0].strip() == "mask sliding_window(window=256), position none, dtype float32"
    assert verdicts[2].split()[0] == "sdpa" and "chosen (kv_len < " in verdicts[2]
    assert verdicts[3].split()[0] == "local" and "chosen (kv_len >= " in verdicts[3]
    assert verdicts[4].split()[0] == "flex" and "applies but slower at every length" in verdicts[4]
    assert verdicts[5].split()[0] == "document" and "rejected: mask sliding_window(window=256) has no document" in verdicts[5]
    assert verdicts[6].split()[0].startswith("ort-gqa/") and "target cpu:float32 runs torch" in verdicts[6]
    alibi = next(line for line in lines if line.startswith("alibi "))
    assert "flex for kv_len >= " in alibi and ", else sdpa(bias), else reference as fallback" in alibi
    verdicts = lines[lines.index(alibi) + 1:]
    assert verdicts[3].split()[0] == "local" and "rejected: mask causal has no band" in verdicts[3]
    assert verdicts[4].split()[0] == "flex" and "chosen (kv_len >= " in verdicts[4] and "forward only" in verdicts[4]
    assert "compiled lm" in out and "logits: [2, 8, 64] ok" in out


def test_explain_at_a_given_length_shows_the_estimates_there(spec_file):
    from nngraph.compilers.passes import explain, format_explain
    from nngraph import load_spec

    graph = load_spec(spec_file(LM))
    text = format_explain(explain(graph, "cpu", dims={"seq": 4096}), "cpu", dims={"seq": 4096})
    window = next(line for line in text.splitlines() if line.startswith("window "))
    alibi = next(line for line in text.splitlines() if line.startswith("alibi "))
    assert "lengths seq=4096" in text
    assert window.split()[2] == "local," and "local: est. at kv_len 4096: local " in window
    assert alibi.split()[2] == "flex," and "flex: est. at kv_len 4096: flex " in alibi
    assert "sdpa(bias) when gradients are needed" in alibi


def test_training_mode_rejects_forward_only_kernels_and_says_why(spec_file):
    code, out = _run(str(spec_file(LM)), "--target", "cpu", "--mode", "training", "--explain")
    assert code == 0, out
    flex = [line.split(None, 1)[1] for line in out.splitlines() if line.strip().startswith("flex ")]
    assert flex == ["rejected: no backward on cpu (training needs gradients)"] * 3
    window = next(line for line in out.splitlines() if line.startswith("window "))
    assert "local for kv_len >= 1024, else sdpa(mask), else reference as fallback" in window


def test_a_simulated_gpu_target_pins_flash_for_bf16_and_efficient_for_masks(spec_file):
    code, out = _run(str(spec_file(LM)), "--target", "cuda:sm90:bf16", "--explain")
    assert code == 0, out
    assert "simulated: the device is not present here" in out
    assert "causal, backends flash/cudnn/efficient/math" in out
    assert "mask, backends efficient/math" in out


def test_lowering_without_explain_reports_each_change_and_the_model_still_checks(spec_file, tmp_path):
    src = tmp_path / "m.py"
    code, out = _run(str(spec_file(LM)), "--target", "cpu", "--emit-python", str(src))
    assert code == 0, out
    assert "lower: lower_sdpa at causal: sdpa(causal), else reference as fallback" in out
    assert "(matches the spec's" in out
    assert "(attention_lowered)" in src.read_text()


def test_written_out_attention_is_fused_then_lowered_on_the_command_line():
    code, out = _run(str(SPECS / "attention_written_out.yaml"), "--target", "cpu")
    assert code == 0, out
    assert "fuse: fuse_attention at ctx1: sdpa(q=q1_t, k=k1_t, v=v1_t + bias mask, scale=0.25, dropout 0.1)" in out
    assert "lower: lower_sdpa at ctx2: sdpa(none), else reference as fallback" in out
    assert "y: [2, 8, 64] ok" in out


def test_ort_targets_show_the_onnx_kernels_and_build_the_reference(spec_file):
    code, out = _run(str(spec_file(LM)), "--target", "ort-cpu", "--explain")
    assert code == 0, out
    causal = next(line for line in out.splitlines() if line.startswith("causal "))
    assert causal.split()[2] != "sdpa" and "runs ONNX Runtime" in out
    assert "note: ort-cpu:float32 runs ONNX Runtime" in out


def test_an_unknown_target_is_a_usage_error():
    code, out = _run(str(SPECS / "mlp.yaml"), "--target", "tpu")
    assert code == 2
    assert "unknown target 'tpu'" in out and "known: cpu, cuda, ort-cpu, ort-cuda, auto" in " ".join(out.split())
