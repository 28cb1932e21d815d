"""``train --out``: a folder of the user's own files is never written without --overwrite; a rerun of the same
spec (or of a run that stopped before its first checkpoint) is; --resume with nothing that verifies exits 1
unless --overwrite."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nngraph import cli
from nngraph.compilers.state import checkpoint as ck
from nngraph.compilers.train import CheckpointError, train

from conftest import MLP

QUIET = ["train.log.plot=false", "train.log.tensorboard=false", "train.log.progress=false"]
USER_FILES = {"config.json": '{"mine": true}', "metrics.jsonl": "mine\n", "summary.json": "{}",
              "model.safetensors": "my weights", "best_model.safetensors": "my best",
              "checkpoints/.step_000000001.safetensors.x.tmp": "my tmp"}


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(MLP)
    return path


def files_of(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(spec, out, *args: str):
    return CliRunner().invoke(cli.app, ["train", str(spec), "--out", str(out), "--steps", "2", "-q",
                                        *[a for s in QUIET for a in ("--set", s)], *args])


def test_a_folder_of_the_users_files_is_refused_and_left_as_it_was(spec, tmp_path):
    out = tmp_path / "mine"
    for name, text in USER_FILES.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = files_of(out)
    res = run(spec, out)
    assert res.exit_code == 1
    assert res.output == (f"error: --out '{out}' holds files (best_model.safetensors, checkpoints, config.json, "
                          "metrics.jsonl, model.safetensors and 1 more) and is not an nngraph run of spec "
                          "'mlp_small': training would replace them; pass --overwrite to train into it anyway, "
                          "--resume to continue a run there, or give another --out\n")
    assert files_of(out) == before
    assert run(spec, out, "--overwrite").exit_code == 0
    assert (out / "checkpoints" / ck.step_name(2)).is_file()


def test_a_rerun_of_the_same_spec_needs_no_flag_but_another_spec_does(spec, tmp_path):
    out = tmp_path / "run"
    assert run(spec, out).exit_code == 0
    assert run(spec, out).exit_code == 0
    other = tmp_path / "other.yaml"
    other.write_text(MLP.replace("name: mlp_small", "name: another"))
    res = run(other, out)
    assert res.exit_code == 1 and "is not an nngraph run of spec 'another'" in res.output


def test_a_run_that_stopped_before_its_first_checkpoint_can_be_run_again(spec, tmp_path):
    out = tmp_path / "run"
    assert run(spec, out).exit_code == 0
    for name in ("model.safetensors", "best_model.safetensors"):
        (out / name).unlink()
    for path in (out / "checkpoints").iterdir():
        path.unlink()
    assert run(spec, out).exit_code == 0


def test_an_out_that_is_a_file_is_refused(spec, tmp_path):
    (tmp_path / "afile").write_text("mine")
    res = run(spec, tmp_path / "afile")
    assert res.exit_code == 1
    assert res.output == f"error: --out '{tmp_path / 'afile'}' is a file, not a folder: give a folder for the run\n"


def test_resume_of_a_corrupt_only_checkpoint_exits_1_and_overwrite_starts_again_keeping_it(spec, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    corrupt = out / "checkpoints" / ck.step_name(5)
    corrupt.write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match=r"nothing to resume in .*: none of its 1 step checkpoints verifies"):
        train(spec, out=out, overrides=QUIET, steps=2, resume=True, quiet=True)
    assert files_of(out) == {f"checkpoints/{ck.step_name(5)}": b"corrupt"}
    lines: list[str] = []
    summary = train(spec, out=out, overrides=[*QUIET, "train.checkpoint.keep=1"], steps=2, resume=True,
                    overwrite=True, echo=lines.append)
    assert lines[0] == f"nothing to resume in {out / 'checkpoints'}: starting again from step 0 (--overwrite)"
    assert summary["steps"] == 2 and corrupt.read_bytes() == b"corrupt"
    assert [step for step, _ in ck.step_files(out / "checkpoints")] == [5, 2]
