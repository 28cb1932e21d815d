"""Multi-node training: ``nngraph train`` under two ``torchrun --nnodes 2`` launches (two "nodes" on this machine,
one process each, c10d rendezvous, gloo) is the run of one node with two processes, bit for bit, and follows one
process with the doubled batch. Real launches, each under a timeout; both launches' logs are shown on a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from nngraph.compilers.torch import compile_spec, load_state_dict
from nngraph.compilers.ports import free_port

from train_helpers import BLOCKS_FSDP_ARGS, ENV, ROOT, max_diff, train_curve, weights

TIMEOUT = 240  # seconds for the two launches together (a rendezvous that never completes must not hang the suite)


def _torchrun_node(node: int, port: int, spec: Path, out: Path, log: Path) -> subprocess.Popen:
    """One "node": ``torchrun --nnodes 2 --node-rank NODE --nproc-per-node 1`` of ``nngraph train``, its own
    process group (so a timeout can stop the launcher and its worker together), output into ``log``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
           "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
           "--rdzv-id", f"nngraph-test-{port}", "--rdzv-conf", "join_timeout=120", "--max-restarts", "0",
           "-m", "nngraph", "train", str(spec), "--out", str(out), *BLOCKS_FSDP_ARGS]
    with log.open("w") as f:
        return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _two_nodes(spec: Path, out: Path) -> None:
    """Both launches to the end (each exit 0), else stop both and fail with both logs."""
    import time

    port, logs = free_port(), [out.parent / f"node{n}.log" for n in (0, 1)]
    procs = [_torchrun_node(n, port, spec, out, logs[n]) for n in (0, 1)]
    deadline = time.monotonic() + TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    shown = "\n".join(f"--- node {n} (exit {p.returncode}) ---\n{logs[n].read_text()}" for n, p in enumerate(procs))
    assert all(p.returncode == 0 for p in procs), shown


def test_two_torchrun_nodes_train_as_one_node_with_two_processes(blocks_fsdp_run):
    """The same ranks, collectives and data slices: the loss curve, final weights and checkpoints of one node with
    two processes, bit for bit (that run follows one process with the doubled batch: test_train_scale.py)."""
    from nngraph.compilers.state import checkpoint as ck

    spec, one_node, _ = blocks_fsdp_run
    nodes = one_node.parent / "two_nodes"
    _two_nodes(spec, nodes)
    assert len(train_curve(nodes)) == 4 and train_curve(nodes) == train_curve(one_node)
    assert max_diff(weights(nodes), weights(one_node)) == 0.0
    # rank 0 alone wrote the checkpoints: full weights, world 2, loadable in one plain process
    assert sorted(s for s, _ in ck.step_files(nodes / "checkpoints")) == [2, 4]
    latest, same = ck.latest(nodes / "checkpoints"), ck.latest(one_node / "checkpoints")
    assert latest.state["world"] == 2 and max_diff(latest.group("model"), same.group("model")) == 0.0
    assert max_diff(latest.group("optim"), same.group("optim")) == 0.0
    assert load_state_dict(compile_spec(spec), latest.group("model")).ok
