"""Data-parallel training with ``torch.distributed``: gloo on the CPU, NCCL on CUDA.

``nngraph train --nproc-per-node N`` starts N workers through torch's elastic
launcher (the API behind ``torchrun``), each running the same training with
``RANK``/``WORLD_SIZE`` set; under ``torchrun`` directly those variables are
already there. Each rank takes its slice of the global batch (see
:mod:`.data.base`), DistributedDataParallel averages gradients, rank 0 writes
logs and checkpoints.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..ports import free_port


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    tp: int = 1  # tensor-parallel group size: ranks dp_rank·tp .. dp_rank·tp + tp-1 read the same batch

    @property
    def dp_rank(self) -> int:
        """The data-parallel group of this rank (which slice of the global batch it reads)."""
        return self.rank // self.tp

    @property
    def dp_world(self) -> int:
        """The number of data-parallel groups (world / tp)."""
        return self.world // self.tp

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env(tp: int = 1) -> Dist:
    """Rank and world size from the environment torchrun / the elastic launcher set; ``tp``: tensor-parallel
    group size (train.distributed.tp)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")), tp)


def init(d: Dist, device: torch.device) -> None:
    """Join the process group (once)."""
    if d.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=d.rank, world_size=d.world)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def mean_across(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """The average of a tensor over ranks (identity on one process)."""
    if not d.active:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / d.world


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


class WorkerError(RuntimeError):
    """A worker process failed with an error that is not one of the trainer's own (a bug, or a crash)."""


def guarded(err_dir: str, entry: Callable[..., Any], *args: Any) -> Any:
    """A worker's entry point: ``entry(*args)``; on an exception, its type, message (and a SpecError's
    diagnostics) go to ``err_dir/<rank>.json`` and the process exits 1 without printing a traceback."""
    try:
        return entry(*args)
    except BaseException as exc:  # noqa: BLE001 - reported by the parent, once
        import traceback

        from nngraph.errors import SpecError

        from .stop import TrainingInterrupted

        info = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(),
                "diagnostics": [d.to_dict() for d in exc.diagnostics] if isinstance(exc, SpecError) else None,
                "interrupted": [exc.step, exc.signum] if isinstance(exc, TrainingInterrupted) else None}
        rank = os.environ.get("RANK", "0")
        tmp = Path(err_dir) / f".{rank}.json"
        tmp.write_text(json.dumps(info), encoding="utf-8")
        tmp.rename(Path(err_dir) / f"{rank}.json")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _reraise(err_dir: Path, failure: BaseException) -> None:
    """Raise the error of the lowest failed rank as the trainer's own exception type."""
    from nngraph.errors import Diagnostic, SourcePos, SpecError

    from ..state.checkpoint import CheckpointError
    from .data import DataError

    reports = sorted(err_dir.glob("[0-9]*.json"), key=lambda p: int(p.stem))
    if not reports:
        failures = getattr(failure, "failures", {}) or {}
        codes = ", ".join(f"process {f.local_rank} exit code {f.exitcode}" for f in failures.values())
        raise WorkerError(f"a worker process died ({codes or failure})") from None
    info = json.loads(reports[0].read_text(encoding="utf-8"))
    if info.get("interrupted"):
        from .stop import TrainingInterrupted

        raise TrainingInterrupted(*info["interrupted"]) from None
    if info["diagnostics"]:
        raise SpecError([Diagnostic(SourcePos(d["file"], d["line"], d["col"]), d["message"], d.get("hint"),
                                    d["severity"], tuple(d.get("notes", ()))) for d in info["diagnostics"]]) from None
    known = {"DataError": DataError, "CheckpointError": CheckpointError, "FloatingPointError": FloatingPointError}
    if info["type"] in known:
        raise known[info["type"]](info["message"]) from None
    err = WorkerError(f"worker {reports[0].stem}: {info['type']}: {info['message']}")
    err.traceback = info["traceback"]  # the worker's, for a bug report
    raise err from None


def launch(nproc: int, entry: Callable[..., Any], *args: Any) -> dict[int, Any]:
    """Run ``entry(*args)`` in ``nproc`` local workers with torch's elastic launcher; returns rank -> result.

    A worker's exception is raised here once (the lowest failed rank's), as its
    own type for the trainer's errors (DataError, CheckpointError, SpecError, TrainingInterrupted), without the
    launcher's failure report; any other is a :class:`WorkerError` (``.traceback``: the worker's).

    SIGINT/SIGTERM (and SIGHUP, SIGQUIT) reaching this process are forwarded by the launcher to the workers,
    which get :data:`.stop.SHUTDOWN_TIMEOUT` seconds to finish their step and checkpoint; the launcher's
    signal handlers are removed again afterwards.
    """
    import logging
    import shutil
    import signal
    import tempfile
    import threading

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from .stop import SHUTDOWN_TIMEOUT

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"nngraph-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{free_port()}", max_restarts=0,
                          monitor_interval=0.2, start_method="spawn", shutdown_timeout=SHUTDOWN_TIMEOUT)
    err_dir = Path(tempfile.mkdtemp(prefix="nngraph-workers-"))
    # the launcher's failure dump repeats the worker's traceback; its agent's "received death signal" our message;
    # its process context logs "Terminating process ... via signal SIGTERM" when it stops the other workers
    quiet_logs = [logging.getLogger(n) for n in ("torch.distributed.elastic",
                                                 "torch.distributed.elastic.agent.server.api",
                                                 "torch.multiprocessing.spawn")]
    levels = [log.level for log in quiet_logs]
    for log in quiet_logs:
        log.setLevel(logging.CRITICAL)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    try:
        return elastic_launch(config, guarded)(str(err_dir), entry, *args)
    except (ChildFailedError, SignalException) as exc:  # a signal: the workers have stopped (and said where)
        _reraise(err_dir, exc)
        raise  # pragma: no cover - _reraise always raises
    finally:
        if threading.current_thread() is threading.main_thread():  # the launcher installs handlers only there
            for sig, handler in previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
        for log, level in zip(quiet_logs, levels):
            log.setLevel(level)
        shutil.rmtree(err_dir, ignore_errors=True)
