"""`nngraph export`: options, metadata, atomic writes, weights files and training checkpoints (LoRA merged), errors."""

from __future__ import annotations

import os
import re

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.onnx import read_metadata, run_model
from nngraph.compilers.onnx.export import ExportError, export_spec
from nngraph.compilers.torch import build_module, state_dict_for
from nngraph.compilers.torch.weights import save_weights
from nngraph import load_spec

from onnx_support import SPECS, randomize

GPT = SPECS / "gpt_char.yaml"
SMALL_GPT = ["--set", "layers=1", "--set", "d_model=32", "--set", "heads=2"]


def _export(*args: str):
    res = CliRunner().invoke(cli.app, ["export", *args])
    assert "Traceback" not in res.output
    return res


def _ops(path) -> set[str]:
    return {f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in onnx.load(str(path)).graph.node}


def test_export_writes_a_checked_file_with_metadata_and_no_temp_files(tmp_path):
    out = tmp_path / "gpt.onnx"
    res = _export(str(GPT), "-o", str(out), *SMALL_GPT)
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stdout and "attention: ort-gqa x1" in res.stdout
    assert "checked against torch" in res.stdout and "MISMATCH" not in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt.onnx"]
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    graph = load_spec(GPT, [s for s in SMALL_GPT if s != "--set"])
    meta = read_metadata(out)
    assert meta["spec"] == "gpt_char" and meta["fingerprint"] == graph.fingerprint() and meta["opset"] == "20"
    assert meta["version"] and meta["target"] == "ort-cpu" and meta["dynamic"] == ["batch", "seq"]
    assert meta["attention_kernels"]["h.0.attn"]["kernel"] == "ort-gqa"
    assert meta["attention_kernels"]["h.0.attn"]["onnx_op"] == "com.microsoft.GroupQueryAttention"
    assert [i["name"] for i in meta["inputs"]] == ["tokens"] and meta["inputs"][0]["shape"] == ["batch", "seq"]
    assert "com.microsoft.GroupQueryAttention" in _ops(out)


def test_explain_without_output_shows_every_candidate_and_writes_nothing(tmp_path):
    res = _export(str(SPECS / "llama_style.yaml"), "--explain", "--set", "layers=1")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "target ort-cpu, opset 17 (the floor: nothing in it needs a newer opset than 17)"
    assert lines[1].startswith("layers.0.self_attn: ort-gqa (com.microsoft.GroupQueryAttention) -- fastest on ORT CPU "
                               "for decoders: causal without a materialized mask, RoPE built in, 2 kv heads natively")
    assert "    ort-mha: no: no grouped-query support: 2 key/value heads for 8 query heads (K/V would be repeated)" \
        in lines
    assert "    onnx-attention: applies, lower preference" in lines
    res = _export(str(SPECS / "mamba_style.yaml"), "--explain", "--target", "onnx")
    assert "layers.0.mixer: selective scan as one ONNX Scan over the sequence (state carried inside)" in res.stdout


def test_standard_onnx_target_and_old_opsets(tmp_path):
    out = tmp_path / "std.onnx"
    assert _export(str(GPT), "-o", str(out), "--target", "onnx", *SMALL_GPT).exit_code == 0
    ops = _ops(out)
    assert "Attention" in ops and not any(op.startswith("com.microsoft") for op in ops)
    out18 = tmp_path / "std18.onnx"
    res = _export(str(GPT), "-o", str(out18), "--target", "onnx", "--opset", "18", "--explain", *SMALL_GPT)
    assert res.exit_code == 0, res.output
    assert "onnx-attention: no: the ONNX Attention op needs opset 23, the export uses opset 18" in res.stdout
    model = onnx.load(str(out18))
    assert next(o.version for o in model.opset_import if o.domain == "") == 18
    assert "Softmax" in _ops(out18) and "Attention" not in _ops(out18)
    res = _export(str(GPT), "-o", str(out18), "--opset", "12")
    assert res.exit_code == 1 and "opset 12 is not supported: use 17..23" in res.output


def test_dynamic_subset_fixes_the_other_dims(tmp_path):
    out = tmp_path / "fixed.onnx"
    res = _export(str(GPT), "-o", str(out), "--dynamic", "batch", "--dim", "seq=6", *SMALL_GPT)
    assert res.exit_code == 0, res.output
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 6]
    res = _export(str(GPT), "-o", str(out), "--dynamic", "batch", *SMALL_GPT)
    assert res.exit_code == 1
    assert "dim 'seq' is not in --dynamic, so the file fixes its size: give it with --dim seq=N" in res.output
    res = _export(str(GPT), "-o", str(out), "--dynamic", "batch,sequence", *SMALL_GPT)
    assert res.exit_code == 1
    assert "--dynamic names 'sequence', which is not a symbolic dim of the inputs (they have: batch, seq)" in res.output


def test_usage_and_spec_errors(tmp_path):
    res = _export(str(GPT), "-o", str(tmp_path / "a.onnx"), "--target", "tpu")
    assert res.exit_code == 2 and "unknown target 'tpu' (use onnx, ort-cpu, ort-cuda)" in res.output
    res = _export(str(GPT))
    assert res.exit_code == 2 and "give -o FILE.onnx" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("nngraph: 1\nname: bad\ninputs:\n  x: {shape: [batch, 4], dtype: float32}\n"
                   "graph:\n  - {name: fc, op: linear, in: x, out: 0}\noutputs: {y: fc}\n")
    res = _export(str(bad), "-o", str(tmp_path / "bad.onnx"))
    assert res.exit_code == 1 and f"{bad}:6:" in res.output
    res = _export(str(GPT), "-o", str(tmp_path / "k.onnx"), "--kernel", "h.0.attn=ort-gqa", "--target", "onnx",
                  *SMALL_GPT)
    assert res.exit_code == 1
    assert ("attention kernel 'ort-gqa' does not apply to node 'h.0.attn' on onnx: a com.microsoft contrib op: "
            "target onnx promises standard ONNX ops only") in res.output
    assert not (tmp_path / "k.onnx").exists()


def test_a_failed_export_leaves_an_existing_file_untouched(tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")
    import nngraph.compilers.onnx.verify as verify

    def broken(*args, **kwargs):
        from nngraph.compilers.onnx.export import Verification

        v = Verification(1e-4)
        v.runs.append({"sizes": {"batch": 3}, "max_abs_diff": 1.0})
        return v

    monkeypatch.setattr(verify, "verify_model", broken)
    res = _export(str(GPT), "-o", str(out), *SMALL_GPT)
    assert res.exit_code == 1 and "does not match torch" in res.output and "nothing was written" in res.output
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _graph_and_module(seed: int = 4):
    graph = load_spec(GPT, ["layers=1", "d_model=32", "heads=2"])
    module = build_module(graph, seed=0).eval()
    randomize(module, seed=seed)
    return graph, module


def _torch_logits(module, tokens):
    with torch.no_grad():
        return module(tokens=torch.from_numpy(tokens)).numpy()


def test_weights_file_is_exported(tmp_path):
    graph, module = _graph_and_module()
    save_weights(module, graph, tmp_path / "w.safetensors")
    out = tmp_path / "w.onnx"
    res = _export(str(GPT), "-o", str(out), "--weights", str(tmp_path / "w.safetensors"), *SMALL_GPT)
    assert res.exit_code == 0, res.output
    tokens = np.array([[1, 2, 3, 4, 5]])
    got = run_model(out, {"tokens": tokens})["logits"]
    assert np.abs(got - _torch_logits(module, tokens)).max() <= 1e-5
    assert read_metadata(out)["weights"] == str(tmp_path / "w.safetensors")


def _lora_checkpoint(tmp_path, graph, module):
    """A checkpoint as compilers/train writes it for a LoRA run (model/<key> tensors, lora + config state)."""
    from nngraph.compilers.state import checkpoint as ck
    from nngraph.compilers.state.lora import apply_lora

    names = apply_lora(module, ["h.*.attn.qkv", "h.*.attn.out"], rank=4, alpha=8.0, dropout=0.0)
    with torch.no_grad():
        for name in names:
            layer = module.get_submodule(name)
            layer.lora_b.normal_(std=0.5)
    tensors = {f"model/{k}": v for k, v in state_dict_for(module).items()}
    state = {"spec": graph.name, "fingerprint": graph.fingerprint(), "lora": names,
             "config": {"lora": {"targets": ["h.*.attn.qkv"], "rank": 4, "alpha": 8.0, "dropout": 0.0, "merge": True}},
             "run": {"step": 7}}
    return ck.save(tmp_path, ck.step_name(7), tensors, state), names


def test_training_checkpoint_with_lora_adapters_exports_merged(tmp_path):
    graph, module = _graph_and_module()
    path, names = _lora_checkpoint(tmp_path, graph, module)
    tokens = np.array([[3, 1, 4, 1, 5, 9]])
    want = _torch_logits(module, tokens)  # the adapted model, adapters unmerged
    out = tmp_path / "lora.onnx"
    res = _export(str(GPT), "-o", str(out), "--weights", str(path), *SMALL_GPT)
    assert res.exit_code == 0, res.output
    assert "training checkpoint at step 7" in res.stdout
    assert f"LoRA adapters of {len(names)} linear layers merged into their weights (rank 4, alpha 8.0)" in res.stdout
    got = run_model(out, {"tokens": tokens})["logits"]
    assert np.abs(got - want).max() <= 1e-4
    assert not any("lora" in init.name for init in onnx.load(str(out)).graph.initializer)
    # a training output folder resolves to its newest checkpoint
    res = _export(str(GPT), "-o", str(tmp_path / "dir.onnx"), "--weights", str(tmp_path), "--no-verify", *SMALL_GPT)
    assert res.exit_code == 0 and f"weights: {path}" in res.stdout


def test_weights_of_another_architecture_are_refused(tmp_path):
    graph, module = _graph_and_module()
    save_weights(module, graph, tmp_path / "w.safetensors")
    res = _export(str(GPT), "-o", str(tmp_path / "x.onnx"), "--weights", str(tmp_path / "w.safetensors"),
                  "--set", "layers=2", "--set", "d_model=32", "--set", "heads=2")
    assert res.exit_code == 1
    assert res.output == (f"error: '{tmp_path / 'w.safetensors'}' does not fit this spec: the weights were trained "
                          "with layers=1 (this spec has layers=2): pass --set layers=1\n")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("make, kind", [(lambda p: p.symlink_to("/dev/zero"), "a character device"),
                                        (os.mkfifo, "a FIFO (named pipe)")])
def test_a_device_or_fifo_named_as_a_step_file_is_refused_unread(tmp_path, make, kind):
    step = tmp_path / "step_000000007.safetensors"
    make(step)  # /dev/zero would fill memory, a FIFO would block the read
    res = _export(str(SPECS / "mlp.yaml"), "--weights", str(step), "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 1
    assert res.output == f"error: weights file '{step}' is not a regular file (it is {kind}); only regular files are read\n"


def test_weights_full_of_nan_fail_the_parity_check_instead_of_agreeing(tmp_path):
    graph = load_spec(SPECS / "mlp.yaml")
    module = build_module(graph)
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(float("nan"))
    save_weights(module, graph, tmp_path / "nan.safetensors")
    res = _export(str(SPECS / "mlp.yaml"), "--weights", str(tmp_path / "nan.safetensors"), "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 1 and not (tmp_path / "m.onnx").exists()
    assert res.output == ("error: the outputs of 'mlp' hold NaN or infinity (check the weights):\n"
                          "  forward at batch=3: max |ORT - torch| = 0.00e+00 NOT FINITE (30 NaN or infinite values "
                          "in ORT's outputs)\n"
                          "  forward at batch=4: max |ORT - torch| = 0.00e+00 NOT FINITE (40 NaN or infinite values "
                          "in ORT's outputs)\n"
                          "(nothing was written; --no-verify writes anyway)\n")


def test_external_data_into_a_read_only_folder_says_permission_denied(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    uid = os.geteuid()
    if uid == 0:  # root writes anywhere: become nobody for the export, as an ordinary user would be
        tmp_path.chmod(0o755)
        os.seteuid(65534)
    try:
        res = _export(str(SPECS / "mlp.yaml"), "--external-data", "-o", str(folder / "m.onnx"))
    finally:
        os.seteuid(uid)
    assert res.exit_code == 1 and list(folder.iterdir()) == []
    # as a user the temporary folder inside is refused; as root turned nobody, already the folder (its parents are 0700)
    assert re.fullmatch(rf"error: cannot write '{folder / 'm.onnx'}' into the folder '{folder}': Permission denied "
                        rf"\(at {folder}(/\.nngraph-export-\w+)?\)\n", res.output), res.output


def test_python_api_returns_the_plan_and_the_check(tmp_path):
    result = export_spec(GPT, tmp_path / "api.onnx", ["layers=1", "d_model=32", "heads=2"], target="ort-cpu")
    assert result.verification.ok and result.verification.max_diff <= 1e-4
    assert "h.0.attn: ort-gqa" in result.explain()
    # the attention kernel plus the CPU default fusion (exact GELU + its bias)
    assert result.fused_ops == {"com.microsoft.GroupQueryAttention": 1, "com.microsoft.BiasGelu": 1}
    # an encoder-decoder's cached export is two files (test_onnx_seq2seq.py): it needs an output path
    with pytest.raises(ExportError, match="--kv-cache of an encoder-decoder writes two files: give -o"):
        export_spec(SPECS / "t5_encoder_decoder.yaml", None, ["layers=1", "d_model=32", "heads=2", "d_kv=16"],
                    kv_cache=True)


def test_optional_inputs_are_exported_on_request(tmp_path):
    out = tmp_path / "lstm.onnx"
    res = _export(str(SPECS / "char_lstm.yaml"), "-o", str(out), "--optional-inputs", "--set", "hidden=16",
                  "--set", "embed=8")
    assert res.exit_code == 0, res.output
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["tokens", "h0", "c0"]
    assert [o.name for o in model.graph.output] == ["logits", "h", "c"]
    assert "LSTM" in _ops(out)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("name", ["mamba_style", "mixtral_style", "gin_graph"])
def test_older_opsets_export_valid_files_that_match_torch(name, opset, tmp_path):
    from onnx_support import small_overrides

    path = SPECS / f"{name}.yaml"
    result = export_spec(path, tmp_path / "m.onnx", small_overrides(path), target="onnx", opset=opset)
    assert result.verification.ok
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert next(o.version for o in model.opset_import if o.domain == "") == opset


def test_a_real_lora_training_run_exports_from_its_checkpoint_and_its_final_weights(tmp_path):
    """nngraph.compilers.train writes the checkpoint: the export merges its adapters like the run's own model.safetensors."""
    from nngraph.compilers.train import train

    config = tmp_path / "lora.yaml"
    config.write_text("train:\n  lora: {targets: ['h.*.attn.qkv', 'h.*.attn.out'], rank: 4, alpha: 8.0}\n"
                      "  batch_size: 4\n  eval: {every: 2, batches: 1}\n  checkpoint: {every: 2}\n")
    out = tmp_path / "run"
    train(GPT, out, ["layers=1"], config, steps=2, quiet=True, echo=lambda *a, **k: None)
    ckpt = sorted((out / "checkpoints").glob("step_*.safetensors"))[-1]
    tokens = np.array([[1, 2, 3, 4, 5, 6]])
    logits = {}
    for name, weights in (("ckpt", ckpt), ("final", out / "model.safetensors")):
        res = _export(str(GPT), "-o", str(tmp_path / f"{name}.onnx"), "--weights", str(weights), "--set", "layers=1")
        assert res.exit_code == 0, res.output
        logits[name] = run_model(tmp_path / f"{name}.onnx", {"tokens": tokens})["logits"]
    assert "LoRA adapters of 2 linear layers merged" in _export(
        str(GPT), "--explain", "-o", str(tmp_path / "x.onnx"), "--weights", str(ckpt), "--set", "layers=1").output
    assert np.abs(logits["ckpt"] - logits["final"]).max() <= 1e-6
