"""Release basics seen from the command line: --version, and a missing extra named instead of a traceback."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nngraph
from nngraph import cli
from nngraph.extras import extras_by_package, missing_extra_message


def test_version_prints_the_installed_distribution_version():
    res = CliRunner().invoke(cli.app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"nngraph {metadata.version('nngraph')}"
    assert nngraph.__version__ == metadata.version("nngraph")


def test_extras_come_from_the_installed_metadata():
    table = extras_by_package()
    assert table["torch"][0] == "torch"
    assert table["onnxruntime"] == ["onnx"]
    assert table["gymnasium"] == ["rl"]
    assert table["torchdiffeq"] == ["ode"]
    assert "pytest" not in table  # dev-only packages are never suggested


@pytest.mark.parametrize(("module", "extra"), [("torch", "torch"), ("onnxruntime.capi", "onnx"),
                                               ("tokenizers", "train"), ("gymnasium", "rl")])
def test_a_missing_module_names_its_extra(module: str, extra: str):
    assert f"pip install 'nngraph[{extra}]'" in missing_extra_message(module)


def test_an_unknown_missing_module_is_not_blamed_on_an_extra():
    assert missing_extra_message("definitely_not_a_dependency") is None


def test_a_command_whose_extra_is_missing_says_what_to_install(capsys):
    def body_without_onnxruntime() -> int:
        raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")

    with pytest.raises(cli.typer.Exit) as exit_info:
        cli.run_guarded(body_without_onnxruntime)
    assert exit_info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err == ("error: this command needs onnxruntime, which is not installed: pip install 'nngraph[onnx]' "
                   "(or 'nngraph[all]' for every back end)\n")


def test_the_hf_commands_name_the_hf_extra_for_what_they_miss(tmp_path, monkeypatch):
    """import-hf / export-hf come with nngraph[hf] (huggingface_hub, safetensors, transformers, and torch through
    nngraph[torch]): a missing one is named with that extra, even where another extra also brings it."""
    table = extras_by_package()
    assert table["huggingface-hub"] == ["hf"] and table["transformers"] == ["hf"]
    assert table["safetensors"] == ["torch", "hf"]
    assert "pip install 'nngraph[torch]'" in missing_extra_message("torch")
    assert "pip install 'nngraph[hf]'" in missing_extra_message("torch", prefer="hf")
    assert "pip install 'nngraph[onnx]'" in missing_extra_message("onnx", prefer="hf")  # hf does not bring it
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import fails: ModuleNotFoundError
    spec = Path(__file__).resolve().parents[2] / "specs" / "gpt_neox_style.yaml"
    res = CliRunner().invoke(cli.app, ["export-hf", str(spec), "-o", str(tmp_path / "hf")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "this command needs safetensors, which is not installed: pip install 'nngraph[hf]'" in res.output
