"""train.compile with the rest of the trainer: a compiled run resumes exactly, and compiled blocks train under DDP
on 2 gloo processes as one eager process does. Backend aot_eager: dynamo's capture and AOT autograd's forward and
backward graphs -- what changes how the step runs -- without inductor's C++ codegen, which takes over a minute for
these four blocks on this shared CPU (bench/scale.py times inductor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import BLOCKS_SPEC, finish, max_diff, nngraph, run_quiet, train_curve, weights

COMPILED = ["train.compile=true", "train.compile_backend=aot_eager", "train.log.every=1", "train.checkpoint.every=2",
            "train.schedule=constant"]


def test_a_compiled_run_resumes_to_the_loss_curve_and_weights_of_an_uninterrupted_one(tmp_path: Path):
    from nngraph.compilers.train import train

    spec = tmp_path / "blocks.yaml"
    spec.write_text(BLOCKS_SPEC)  # dropout on: the RNG state is restored too
    run_quiet(spec, tmp_path / "full", *COMPILED, steps=4)
    run_quiet(spec, tmp_path / "cut", *COMPILED, steps=2)
    lines: list[str] = []
    train(spec, out=tmp_path / "cut", overrides=[*COMPILED, "train.threads=1", "train.log.progress=false"], steps=4,
          resume=True, echo=lines.append)
    assert any(line.startswith("resumed from") and line.endswith("(step 2)") for line in lines), lines
    full, cut = train_curve(tmp_path / "full"), train_curve(tmp_path / "cut")
    assert len(full) == len(cut) == 4 and cut == full, (full, cut)
    assert max_diff(weights(tmp_path / "cut"), weights(tmp_path / "full")) == 0.0


def test_compiled_blocks_under_ddp_on_two_processes_follow_one_eager_process(tmp_path: Path):
    spec = tmp_path / "blocks.yaml"
    spec.write_text(BLOCKS_SPEC.replace("p: 0.3", "p: 0.0"))  # 1 and 2 processes would draw different dropout masks
    sets = [a for s in COMPILED for a in ("--set", s)]
    text = finish(nngraph(str(spec), "--out", str(tmp_path / "ddp"), "--nproc-per-node", "2", "--steps", "4",
                          "--set", "train.batch_size=8", *sets))
    assert "on 2 processes," in text and "(FSDP)" not in text
    run_quiet(spec, tmp_path / "one", "train.batch_size=16", *COMPILED[2:], steps=4)
    a, b = train_curve(tmp_path / "one"), train_curve(tmp_path / "ddp")
    assert len(a) == len(b) == 4 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-5, (a, b)
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "ddp")) <= 1e-5
