"""Long runs: stop cleanly on SIGINT/SIGTERM, and checkpoint every N minutes as well as every N steps.

A signal during the training loop only sets a flag: the loop finishes the step it is in (and the
evaluation, when one is due at that step), writes a checkpoint atomically and stops; ``nngraph train``
then says ``interrupted at step N; resume with --resume`` and exits 128 + the signal number (130 for
SIGINT, 143 for SIGTERM). The resumed run continues exactly, as after any checkpoint. A second signal does not abort
the step: under DDP a terminal's Ctrl-C reaches every worker twice (directly and forwarded by the
launcher), so repeats are ignored; SIGKILL remains for a step that hangs.

Under DDP/FSDP the torch elastic launcher forwards the signal it receives to every worker (and waits
:data:`.stop.SHUTDOWN_TIMEOUT` seconds for them); the ranks combine their flags, and whether a timed checkpoint
is due by rank 0's clock, in one all-reduce per step, so all of them stop after the same step and write one
checkpoint together.

``NNGRAPH_TRAIN_STEP_DELAY`` (seconds) sleeps after every step: a test hook that makes "a signal arrives
mid-run" reproducible on a model that trains in milliseconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import torch

from .distributed import Dist

#: ``summary["stopped"]`` / ``run_loop``'s reason when a signal stopped the run
INTERRUPTED = "interrupted"
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Watch:
    """Asked after every step: did a stop signal arrive, is a timed checkpoint due? The same answer on every rank.

    As a context manager it catches SIGINT and SIGTERM (main thread only: Python delivers signals there) and
    restores the previous handlers on exit, so an in-process ``train()`` leaves the caller's handlers alone.
    """

    def __init__(self, every_minutes: float | None, d: Dist = Dist(), device: torch.device | None = None):
        self.every = every_minutes * 60.0 if every_minutes else None
        self.d, self.device = d, device or torch.device("cpu")
        self.signum = 0  # the signal this process caught
        self.stopped_by = 0  # the signal the ranks agreed to stop on (poll)
        self.last_save = time.monotonic()
        self.delay = float(os.environ.get("NNGRAPH_TRAIN_STEP_DELAY", "0") or 0)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "Watch":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # only a flag: the step in flight finishes, so the checkpoint is a consistent state
        self.signum = self.signum or signum

    def poll(self) -> tuple[int, bool]:
        """(the stop signal's number or 0, whether a timed checkpoint is due), agreed across ranks."""
        if self.delay:
            time.sleep(self.delay)
        due = self.every is not None and time.monotonic() - self.last_save >= self.every
        if self.d.active:
            import torch.distributed as dist

            # rank 0's clock decides the timed checkpoint (every rank must save together); any rank's signal stops all
            flags = torch.tensor([self.signum, int(due and self.d.main)], device=self.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            self.stopped_by, due = int(flags[0]), bool(flags[1])
        else:
            self.stopped_by = self.signum
        return self.stopped_by, due

    def saved(self) -> None:
        """A checkpoint was written: the next timed one is ``every_minutes`` from now."""
        self.last_save = time.monotonic()
