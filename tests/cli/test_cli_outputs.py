"""Every output option refuses to write over one of the command's inputs (by path, symlink or hard link),
exit 1 at the output path with what to do, before any work; nothing changes on disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nngraph import cli

SPECS = Path(__file__).resolve().parents[2] / "specs"
runner = CliRunner()


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A spec, a model, an input array and a weights file, as a user would have them; cwd is their folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_bytes((SPECS / "mlp.yaml").read_bytes())
    (tmp_path / "m.onnx").write_bytes(b"an onnx model")
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.float32))
    (tmp_path / "w.safetensors").write_bytes(b"weights")
    (tmp_path / "afile").write_bytes(b"a file")
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


CASES = [
    (["compile", "spec.yaml", "-o", "spec.yaml"], "-o 'spec.yaml' is the spec 'spec.yaml'"),
    (["compile", "spec.yaml", "--emit-python", "spec.yaml"], "--emit-python 'spec.yaml' is the spec 'spec.yaml'"),
    (["compile", "spec.yaml", "-o", "same.pt", "--emit-python", "same.pt"],
     "--emit-python 'same.pt' is the -o file 'same.pt'"),
    (["export", "spec.yaml", "-o", "spec.yaml"], "-o 'spec.yaml' is the spec 'spec.yaml'"),
    (["export", "spec.yaml", "--weights", "w.safetensors", "-o", "w.safetensors"],
     "-o 'w.safetensors' is the --weights file 'w.safetensors'"),
    (["sample", "spec.yaml", "-o", "spec.yaml"], "-o 'spec.yaml' is the spec 'spec.yaml'"),
    (["graph", "spec.yaml", "-o", "spec.yaml", "--format", "dot"], "-o 'spec.yaml' is the spec 'spec.yaml'"),
    (["infer", "m.onnx", "-o", "m.onnx"], "-o 'm.onnx' is the model 'm.onnx'"),
    (["infer", "m.onnx", "-i", "x=x.npy", "-o", "x.npy"], "-o 'x.npy' is the --input file of 'x' 'x.npy'"),
    (["generate", "m.onnx", "--ids", "1,2", "-o", "m.onnx"], "-o 'm.onnx' is the model 'm.onnx'"),
    (["import-weights", "spec.yaml", "w.safetensors", "--from", "hf-gpt2", "-o", "w.safetensors"],
     "-o 'w.safetensors' is the checkpoint 'w.safetensors'"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_an_output_that_is_an_input_is_refused_and_nothing_changes(files, argv, message):
    before = snapshot(files)
    res = runner.invoke(cli.app, argv)
    assert res.exit_code == 1, res.output
    out = argv[argv.index("-o") + 1] if message.startswith("-o") else argv[-1]
    assert res.output.startswith(f"{out}: error: {message}: writing it would destroy that input\n"), res.output
    assert "hint: give " in res.output and "Traceback" not in res.output
    assert snapshot(files) == before


def test_an_output_through_a_symlink_or_a_hard_link_to_the_spec_is_refused(files):
    os.symlink("spec.yaml", files / "link.yaml")
    os.link(files / "spec.yaml", files / "hard.yaml")
    before = snapshot(files)
    for alias in ("link.yaml", "hard.yaml"):
        res = runner.invoke(cli.app, ["compile", "spec.yaml", "-o", alias])
        assert res.exit_code == 1
        assert res.output.startswith(f"{alias}: error: -o '{alias}' is the spec 'spec.yaml'"), res.output
    assert snapshot(files) == before and os.path.islink(files / "link.yaml")


def test_an_output_below_a_file_names_the_file_in_the_way(files):
    res = runner.invoke(cli.app, ["compile", "spec.yaml", "-o", "afile/w.pt"])
    assert res.exit_code == 1
    assert res.output == ("afile/w.pt: error: cannot create 'afile/w.pt': 'afile' is a file, not a folder\n"
                          "  hint: write into a folder, or move 'afile' out of the way\n")


def test_a_fifo_at_the_output_is_refused_before_the_work(files):
    os.mkfifo(files / "out.npz")
    res = runner.invoke(cli.app, ["infer", "m.onnx", "-o", "out.npz"])
    assert res.exit_code == 1
    assert res.output.startswith("out.npz: error: 'out.npz' is a FIFO (named pipe): nngraph only replaces regular "
                                 "files\n"), res.output
    assert (files / "out.npz").is_fifo()


def _refuse_new_files(folder: Path, monkeypatch) -> None:
    """Creating a file in ``folder`` raises PermissionError, as in a read-only folder (file modes do not stop root,
    who may run the tests)."""
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder:
            raise PermissionError(13, "Permission denied", str(Path(dir) / "x.tmp"))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _read_only(folder: Path, monkeypatch) -> None:
    """``folder`` as a read-only folder looks to an ordinary user: os.access says no, creating a file fails."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p).resolve() != folder and real_access(p, mode, **kw))
    _refuse_new_files(folder, monkeypatch)


READ_ONLY = [["compile", "spec.yaml", "-o", "ro/w.safetensors"], ["compile", "spec.yaml", "--emit-python", "ro/m.py"],
             ["graph", "spec.yaml", "-o", "ro/g.mmd"], ["schema", "-o", "ro/s.json"],
             ["export", "spec.yaml", "-o", "ro/m.onnx", "--no-verify"], ["infer", "m.onnx", "-o", "ro/out.npz"]]


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_a_read_only_output_folder_is_refused_naming_it_before_the_work(files, monkeypatch, argv):
    (files / "ro").mkdir()
    _read_only((files / "ro").resolve(), monkeypatch)
    res = runner.invoke(cli.app, argv)
    out = argv[argv.index("-o") + 1] if "-o" in argv else argv[-1]
    assert res.exit_code == 1
    assert res.output == (f"{out}: error: cannot write '{out}': the folder 'ro' is not writable (permission denied)\n"
                          "  hint: write into a folder you may write to, or change its permissions\n"), res.output
    assert list((files / "ro").iterdir()) == []


def test_a_write_the_file_system_refuses_after_the_checks_names_the_folder_and_leaves_nothing(files, monkeypatch):
    (files / "ro").mkdir()
    _refuse_new_files((files / "ro").resolve(), monkeypatch)  # os.access says yes (an ACL, a race): the write says no
    res = runner.invoke(cli.app, ["compile", "spec.yaml", "-o", "ro/w.safetensors"])
    assert res.exit_code == 1
    assert res.output.endswith("ro/w.safetensors: error: cannot write 'ro/w.safetensors': the folder 'ro' is not "
                               "writable (Permission denied)\n  hint: write into a folder you may write to, or change "
                               "its permissions\n"), res.output
    assert list((files / "ro").iterdir()) == [] and "Traceback" not in res.output
