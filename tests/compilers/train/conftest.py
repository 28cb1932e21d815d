"""Helpers for the trainer tests: small specs on the built-in digits, and a Trainer built in-process."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

#: a 64-16-10 MLP for the 8x8 digits; quiet logging (no TensorBoard, no PNG)
MLP = """\
nngraph: 1
name: mlp_small
vars: {d_in: 64, hidden: 16, classes: 10, p: 0.0}
inputs:
  x: {shape: [batch, "${d_in}"], dtype: float32}
graph:
  - {name: fc, op: linear, in: x, out: "${hidden}"}
  - {name: act, op: relu, in: fc}
  - {name: drop, op: dropout, in: act, p: "${p}"}
  - {name: head, op: linear, in: drop, out: "${classes}"}
outputs: {logits: head}
train:
  data: digits
  batch_size: 16
  steps: 12
  optimizer: {type: adamw, lr: 0.01}
  log: {every: 1, tensorboard: false, plot: false, progress: false}
"""


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Runs with ``train.threads`` set torch's process-wide thread count: give the next test the old one back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def write_spec(tmp_path: Path):
    def write(text: str = MLP, name: str = "spec.yaml", train_extra: str = "") -> Path:
        path = tmp_path / name
        body = textwrap.dedent(text)
        if train_extra:
            body += textwrap.indent(textwrap.dedent(train_extra).strip("\n"), "  ") + "\n"
        path.write_text(body)
        return path

    return write


@pytest.fixture(scope="module")
def mlp_spec(tmp_path_factory) -> Path:
    """train_helpers.SPEC (an MLP with dropout on the digits) in a folder of its own, one per test module."""
    from train_helpers import SPEC

    path = tmp_path_factory.mktemp("run") / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def make_trainer(tmp_path: Path):
    """(spec path, overrides) -> a Trainer on one process, not yet run."""
    from nngraph.compilers.train.config import load_run_config
    from nngraph.compilers.train.distributed import Dist
    from nngraph.compilers.train.loop import Trainer
    from nngraph.compilers.train.plan import build_plan

    def make(spec: Path, overrides: list[str] | None = None, out: Path | None = None):
        run = load_run_config(spec, overrides or [])
        plan = build_plan(run, Dist())
        return Trainer(run, plan, out or tmp_path / "out", Dist(), lambda _t: None)

    return make


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests train with one thread: on a busy 2-core machine spinning OpenMP threads cost 5-10x the CPU time."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def blocks_fsdp_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """(spec, out, stdout) of train_helpers.BLOCKS_SPEC (no dropout) trained by one node with 2 FSDP processes,
    ``BLOCKS_FSDP_ARGS``: per-block units, checkpointed blocks. Shared by the one-process and multi-node parity tests."""
    from train_helpers import BLOCKS_FSDP_ARGS, BLOCKS_SPEC, finish, nngraph

    spec = tmp_path_factory.mktemp("blocks") / "blocks.yaml"
    spec.write_text(BLOCKS_SPEC.replace("p: 0.3", "p: 0.0"))  # 1 and 2 processes would draw different dropout masks
    out = spec.parent / "one_node"
    text = finish(nngraph(str(spec), "--out", str(out), "--nproc-per-node", "2", *BLOCKS_FSDP_ARGS))
    return spec, out, text


@pytest.fixture
def blocks_spec_path(tmp_path: Path) -> Path:
    """train_helpers.BLOCKS_SPEC (four alike blocks, dropout 0.3) written to a file."""
    from train_helpers import BLOCKS_SPEC

    path = tmp_path / "blocks.yaml"
    path.write_text(BLOCKS_SPEC)
    return path


@pytest.fixture
def one_rank_group():
    """A gloo process group of one process (FSDP2 on it, in this process), destroyed after the test."""
    import torch.distributed as dist

    from nngraph.compilers.ports import free_port

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
