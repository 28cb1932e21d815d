"""How a run stops on a signal: the exception the trainer raises after its checkpoint, and the grace time.

Its own module because both the long-run watch (:mod:`.longrun`, which raises it) and the elastic launcher
(:mod:`.distributed`, which carries it from a worker to the parent) need it, and the watch already needs the
launcher's :class:`~.distributed.Dist`.
"""

from __future__ import annotations

#: seconds the elastic launcher gives workers to finish their step and write the checkpoint before SIGKILL
SHUTDOWN_TIMEOUT = 300


class TrainingInterrupted(Exception):
    """The run stopped on a signal after writing a checkpoint at ``step``; the CLI exits ``exit_code``."""

    def __init__(self, step: int, signum: int):
        super().__init__(step, signum)
        self.step, self.signum = step, signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for "killed by this signal"

    def __str__(self) -> str:
        return f"interrupted at step {self.step}; resume with --resume"
