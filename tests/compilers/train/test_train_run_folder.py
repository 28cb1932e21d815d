"""Run folders are models (nngraph/run_folder.py): a run records its --set overrides and a copy of its spec, and
`export`, `infer`, `sample` and `generate` take the folder where they take a spec, rebuilding the trained
architecture without --set; weights that do not fit a spec say which vars differ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.onnx import read_metadata
from nngraph.compilers.train import train
from train_helpers import QUIET, ROOT

#: a 64-8-10 MLP (the spec says hidden 16): the run folder must remember hidden=8
MLP_SETS = ["hidden=8"]
GPT_SETS = ["d_model=16", "heads=2", "layers=1", "ctx=16", "train.data.seq_len=16", "train.batch_size=4",
            "train.eval.batches=1"]
UNET_SETS = ["base=8", "groups=4", "heads=2", "context_dim=16", "train.task=diffusion", "train.data=digits",
             "train.batch_size=4", "train.eval.batches=1", "train.diffusion.schedule=cosine",
             "train.diffusion.steps=50"]


def _cli(*args: str, code: int = 0):
    res = CliRunner().invoke(cli.app, list(args))
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res


def _sets(overrides: list[str]) -> list[str]:
    """--set options for the architecture overrides (train.* ones only matter to training)."""
    return [a for o in overrides if not o.startswith("train.") for a in ("--set", o)]


@pytest.fixture
def mlp_run(write_spec, tmp_path) -> tuple[Path, Path]:
    """(spec, run folder) of 3 steps with hidden=8."""
    spec, out = write_spec(), tmp_path / "run"
    train(spec, out=out, overrides=[*QUIET, *MLP_SETS], steps=3, quiet=True)
    return spec, out


def test_a_run_records_its_overrides_and_a_copy_of_its_spec(mlp_run):
    from nngraph.spec import load_spec

    spec, out = mlp_run
    record = json.loads((out / "run.json").read_text())
    graph = load_spec(spec, MLP_SETS)
    assert record == {"spec": str(spec.resolve()), "overrides": [*QUIET, *MLP_SETS],
                      "vars": {"d_in": 64, "hidden": 8, "classes": 10, "p": 0.0}, "fingerprint": graph.fingerprint()}
    assert (out / "spec.yaml").read_text() == spec.read_text()


def test_export_takes_the_run_folder_and_matches_the_spec_with_its_sets_and_weights(mlp_run, tmp_path):
    spec, out = mlp_run
    spec.write_text(spec.read_text().replace("classes: 10", "classes: 12"))  # edited after the run: the copy counts
    _cli("export", str(out), "-o", str(tmp_path / "run.onnx"))
    meta = read_metadata(tmp_path / "run.onnx")
    assert meta["fingerprint"] == json.loads((out / "run.json").read_text())["fingerprint"]
    assert meta["weights"] == str(out / "model.safetensors") and meta["spec_file"] == str(out / "spec.yaml")


def test_infer_takes_the_run_folder_and_gives_the_outputs_of_its_export(mlp_run, tmp_path):
    spec, out = mlp_run
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 3 * 64, dtype=np.float32).reshape(3, 64))
    _cli("export", str(spec), *_sets(MLP_SETS), "--weights", str(out), "-o", str(tmp_path / "m.onnx"))
    _cli("infer", str(tmp_path / "m.onnx"), "-i", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "a.npz"))
    res = _cli("infer", str(out), "-i", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "b.npz"))
    assert f"exported {out} (no attention)" in res.output
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert list(a) == list(b) == ["logits"] and np.array_equal(a["logits"], b["logits"])


def test_weights_for_other_vars_name_the_vars_and_the_fix(mlp_run, tmp_path):
    spec, out = mlp_run
    res = _cli("export", str(spec), "--weights", str(out), "-o", str(tmp_path / "x.onnx"), code=1)
    assert res.output == (f"error: '{out / 'model.safetensors'}' does not fit this spec: the weights were trained with "
                          f"hidden=8 (this spec has hidden=16): pass --set hidden=8 or use the run folder {out}\n")
    ckpt = out / "checkpoints" / "step_000000003.safetensors"  # a checkpoint: its vars come from the run's record
    res = _cli("export", str(spec), "--weights", str(ckpt), "-o", str(tmp_path / "x.onnx"), code=1)
    assert res.output == (f"error: '{ckpt}' does not fit this spec: the weights were trained with hidden=8 (this spec "
                          f"has hidden=16): pass --set hidden=8 or use the run folder {out}\n")
    res = _cli("export", str(spec), "--weights", str(out), "--set", "hidden=8", "-o", str(tmp_path / "x.onnx"))
    assert f"wrote {tmp_path / 'x.onnx'}" in res.output


def test_resuming_with_other_vars_names_the_vars_and_keeps_the_runs_record(mlp_run):
    spec, out = mlp_run
    record = (out / "run.json").read_bytes()
    res = _cli("train", str(spec), "--out", str(out), "--resume", "--steps", "6", code=1)
    ckpt = out / "checkpoints" / "step_000000003.safetensors"
    assert res.output == (f"error: '{ckpt}' does not fit this spec: the weights were trained with hidden=8 (this spec "
                          f"has hidden=16): pass --set hidden=8 or use the run folder {out}\n")
    assert (out / "run.json").read_bytes() == record  # a refused resume leaves the run as it was


def test_a_weights_file_outside_a_run_folder_names_the_vars_from_its_metadata(mlp_run, tmp_path):
    spec, out = mlp_run
    moved = tmp_path / "elsewhere.safetensors"
    moved.write_bytes((out / "model.safetensors").read_bytes())
    res = _cli("export", str(spec), "--set", "p=0.5", "--weights", str(moved), "-o", str(tmp_path / "x.onnx"), code=1)
    assert res.output == (f"error: '{moved}' does not fit this spec: the weights were trained with hidden=8, p=0.0 "
                          "(this spec has hidden=16, p=0.5): pass --set hidden=8 --set p=0.0\n")


def test_generate_takes_the_run_folder(tmp_path):
    spec, out = ROOT / "specs" / "gpt_char.yaml", tmp_path / "gpt"
    train(spec, out=out, overrides=[*QUIET, *GPT_SETS], steps=2, quiet=True)
    args = ["--ids", "1,2,3", "-n", "6"]
    res = _cli("generate", str(out), *args)
    assert f"exported {out} with a KV cache (" in res.output
    tokens = [line for line in res.output.splitlines() if line.startswith("1,2,3,")]
    again = _cli("generate", str(spec), *_sets(GPT_SETS), "--weights", str(out), *args)
    assert len(tokens) == 1 and tokens == [line for line in again.output.splitlines() if line.startswith("1,2,3,")]
    assert len(tokens[0].split(",")) == 9
    # text in and out with the run's tokenizer.json; an exported file carries it in its metadata
    from nngraph.compilers.tokenizer import read_tokenizer

    tok = read_tokenizer(out / "tokenizer.json")
    ids = tok.encode("To be")
    want = _cli("generate", str(out), "--ids", ",".join(map(str, ids)), "-n", "6", "-o", str(tmp_path / "ids.json"))
    new = json.loads((tmp_path / "ids.json").read_text())["generated"][0]
    assert len(new) == 6 and want.stdout.strip().splitlines()[-1] == ",".join(map(str, ids + new))
    assert _cli("generate", str(out), "--prompt", "To be", "-n", "6").stdout.splitlines()[-1] == "To be" + tok.decode(new)
    onnx_file = tmp_path / "alone" / "m.onnx"
    onnx_file.parent.mkdir()
    _cli("export", str(out), "--kv-cache", "-o", str(onnx_file))
    assert read_metadata(onnx_file)["tokenizer"] == json.loads(tok.json)
    res = _cli("generate", str(onnx_file), "--prompt", "To be", "-n", "6", "--stream")
    assert res.stdout == "To be" + tok.decode(new) + "\n"  # the prompt, then each piece as it comes


def test_sample_takes_the_run_folder_with_its_weights_and_noise_schedule(tmp_path):
    spec, out = ROOT / "specs" / "ddpm_unet.yaml", tmp_path / "unet"
    train(spec, out=out, overrides=[*QUIET, *UNET_SETS], steps=2, quiet=True)
    common = ["--steps", "4", "-n", "2", "--seed", "1"]
    res = _cli("sample", str(out), "-o", str(tmp_path / "run.png"), *common)
    assert f"loaded {out / 'model.safetensors'}" in res.output and "warning" not in res.output
    _cli("sample", str(spec), *_sets(UNET_SETS), "--weights", str(out / "model.safetensors"), "--schedule", "cosine",
         "--train-steps", "50", "-o", str(tmp_path / "spec.png"), *common)
    _cli("sample", str(out), "--schedule", "linear", "--train-steps", "1000", "-o", str(tmp_path / "linear.png"), *common)
    run_png = (tmp_path / "run.png").read_bytes()
    assert run_png == (tmp_path / "spec.png").read_bytes()  # the recorded schedule: cosine over T = 50
    assert run_png != (tmp_path / "linear.png").read_bytes()  # the defaults would sample another chain


def test_export_of_one_network_of_a_run_takes_that_networks_weights(tmp_path):
    out = tmp_path / "gan"
    sets = ["hidden=16", "train.gan.samples=100", "train.batch_size=16"]
    train(ROOT / "specs" / "seeds" / "gan_2d.yaml", out=out, overrides=[*QUIET, *sets], steps=2, quiet=True)
    _cli("export", str(out), "--network", "generator", "-o", str(tmp_path / "g.onnx"))
    assert read_metadata(tmp_path / "g.onnx")["weights"] == str(out / "generator.safetensors")
