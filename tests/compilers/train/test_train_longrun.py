"""Long runs (compilers/train/longrun.py): plain progress lines when stdout is piped, SIGTERM/SIGINT stop after the
step with a checkpoint and exit 143/130, the resumed run ends with the same weights bit for bit (one process, DDP,
several networks), time-based checkpoints, and the caller's signal handlers survive an in-process run."""

from __future__ import annotations

import queue
import re
import signal
import threading
from pathlib import Path

import pytest
import torch

from nngraph.compilers.state import checkpoint as ck
from nngraph.compilers.train import TrainingInterrupted, train
from train_helpers import ENV, QUIET, SEEDS, finish, max_diff, nngraph, weights

#: the subprocess runs: 30 steps, a progress line every step, 0.1 s per step so that a signal lands mid-run
STEPS = 30
SETS = ["train.threads=1", "train.log.plot=false", "train.log.tensorboard=false", "train.log.progress=auto"]
SLOW = {**ENV, "NNGRAPH_TRAIN_STEP_DELAY": "0.1"}
PROGRESS = re.compile(r"^step (\d+)/(\d+)  loss \d+\.\d{4}  lr \d\.\d\de[-+]\d\d  [\d,.]+ examples/s  "
                      r"ETA (\?|\d+s|\d+m\d\ds)$")


def _args(spec: Path, out: Path, *extra: str) -> list[str]:
    sets = [a for s in SETS for a in ("--set", s)]
    return [str(spec), "--out", str(out), "--steps", str(STEPS), *sets, *extra]


@pytest.fixture(scope="module")
def uninterrupted(mlp_spec: Path) -> dict[str, torch.Tensor]:
    """The weights of the same run without a stop (in-process: no interpreter start-up)."""
    out = mlp_spec.parent / "uninterrupted"
    train(mlp_spec, out=out, overrides=[*QUIET], steps=STEPS, quiet=True)
    return weights(out)


class Lines:
    """A subprocess's stdout read on a thread, so that waiting for a line can time out instead of hanging."""

    def __init__(self, proc):
        self.proc, self.lines, self.q = proc, [], queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_for(self, pattern: re.Pattern, timeout: float = 120) -> re.Match:
        """The first line matching ``pattern`` (the run must not end before it)."""
        while True:
            line = self.q.get(timeout=timeout)
            assert line is not None, f"the run ended before a line matched {pattern.pattern}: {self.lines}"
            self.lines.append(line)
            if m := pattern.match(line):
                return m

    def rest(self, timeout: float = 120) -> tuple[int, list[str], str]:
        """Wait for the end: exit code, every stdout line, stderr."""
        code = self.proc.wait(timeout=timeout)
        self.thread.join(timeout=timeout)
        while (line := self.q.get(timeout=1)) is not None:
            self.lines.append(line)
        return code, self.lines, self.proc.stderr.read()


def _interrupt(args: list[str], sig: int) -> tuple[int, list[str], str]:
    """Start ``nngraph train ARGS`` piped, send ``sig`` once a progress line shows a step > 0, wait for the end."""
    proc = nngraph(*args, env=SLOW)
    try:
        out = Lines(proc)
        out.wait_for(re.compile(r"^step [1-9]\d*/"))
        proc.send_signal(sig)
        return out.rest()
    finally:
        if proc.poll() is None:  # a failed assertion must not leave the run behind
            proc.kill()
            proc.wait(timeout=30)


def _stopped_step(stderr: str) -> int:
    m = re.search(r"^interrupted at step (\d+); resume with --resume$", stderr, re.M)
    assert m, stderr
    return int(m.group(1))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_checkpoints_exits_143_and_the_resumed_run_has_the_same_weights_bit_for_bit(mlp_spec, uninterrupted):
    out = mlp_spec.parent / "sigterm"
    code, lines, err = _interrupt(_args(mlp_spec, out), signal.SIGTERM)
    assert code == 143, err
    step = _stopped_step(err)
    assert 1 <= step < STEPS and "Traceback" not in err
    # piped stdout: the plan, then one plain progress line per logged step (log.every 1), none after the stop
    assert lines[0].startswith("training mlp_dropout: ")
    steps = [int(PROGRESS.match(line).group(1)) for line in lines[1:]]
    assert steps == list(range(1, step + 1)), lines
    assert all(PROGRESS.match(line).group(2) == str(STEPS) for line in lines[1:])
    assert [s for s, _ in ck.step_files(out / "checkpoints")][0] == step
    assert ck.latest(out / "checkpoints").state["run"]["step"] == step
    assert not (out / "model.safetensors").exists()

    text = finish(nngraph(*_args(mlp_spec, out, "--resume")))
    assert f"resumed from {out / 'checkpoints' / ck.step_name(step)} (step {step})" in text
    resumed = [int(m.group(1)) for line in text.splitlines() if (m := PROGRESS.match(line))]
    assert resumed == list(range(step + 1, STEPS + 1))
    assert _equal(weights(out), uninterrupted)


def test_sigint_exits_130_and_resumes_to_the_same_weights_bit_for_bit(mlp_spec, uninterrupted):
    out = mlp_spec.parent / "sigint"
    code, _, err = _interrupt(_args(mlp_spec, out), signal.SIGINT)
    assert code == 130, err
    step = _stopped_step(err)
    assert ck.latest(out / "checkpoints").state["run"]["step"] == step
    summary = train(mlp_spec, out=out, overrides=[*QUIET], steps=STEPS, resume=True, quiet=True)
    assert summary["steps"] == STEPS and summary["stopped"] == "steps"
    assert _equal(weights(out), uninterrupted)


def test_ddp_ranks_stop_at_the_same_step_on_sigterm_and_resume(mlp_spec, tmp_path):
    # two launches only (each ~20 s here); exact resume itself is the single-process tests' and test_train_fsdp's
    ddp = ["--nproc-per-node", "2", "--set", "train.batch_size=8", "--set", "p=0.0"]
    out = tmp_path / "ddp"
    code, lines, err = _interrupt(_args(mlp_spec, out, *ddp), signal.SIGTERM)
    assert code == 143, err
    step = _stopped_step(err)
    assert "death signal" not in err and "Traceback" not in err
    assert [int(PROGRESS.match(line).group(1)) for line in lines] == list(range(1, step + 1))  # rank 0's, live
    state = ck.latest(out / "checkpoints").state
    assert state["run"]["step"] == step and state["world"] == 2  # one checkpoint, written by both ranks together
    text = finish(nngraph(*_args(mlp_spec, out, *ddp, "--resume")))
    assert f"(step {step})" in text and f"stopped after {STEPS} steps" in text
    # the same training as one process with the doubled batch (no dropout: the ranks draw other masks)
    one = tmp_path / "one"
    train(mlp_spec, out=one, overrides=[*QUIET, "p=0.0", "train.batch_size=16"], steps=STEPS, quiet=True)
    assert max_diff(weights(out), weights(one)) <= 1e-5


def test_in_process_interrupt_restores_the_callers_signal_handlers(write_spec, tmp_path, monkeypatch):
    import os

    from nngraph.compilers.train import logging as train_logging

    monkeypatch.setattr(train_logging, "_terminal", lambda: False)  # plain progress lines even under pytest -s
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("step 2/"):
            os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread: caught, not KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        train(write_spec(), out=tmp_path / "run", overrides=["train.log.progress=auto"], steps=8, echo=echo)
    assert (info.value.step, info.value.signum, info.value.exit_code) == (2, signal.SIGINT, 130)
    assert str(info.value) == "interrupted at step 2; resume with --resume"
    assert {s: signal.getsignal(s) for s in before} == before
    assert ck.latest(tmp_path / "run" / "checkpoints").state["run"]["step"] == 2


def test_a_gan_run_stops_on_sigterm_and_resumes_exactly(tmp_path, monkeypatch):
    import os

    from nngraph.compilers.train import logging as train_logging

    monkeypatch.setattr(train_logging, "_terminal", lambda: False)
    small = [*QUIET[:-1], "train.log.progress=auto", "hidden=16", "train.batch_size=32", "train.checkpoint.every=10",
             "train.eval.every=10", "train.gan.samples=100", "train.log.every=1"]
    spec = SEEDS / "gan_2d.yaml"
    train(spec, out=tmp_path / "full", overrides=small, steps=20, quiet=True)

    def echo(line: str) -> None:
        if line.startswith("step 3/"):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as info:
        train(spec, out=tmp_path / "part", overrides=small, steps=20, echo=echo)
    assert (info.value.step, info.value.exit_code) == (3, 143)
    assert ck.latest(tmp_path / "part" / "checkpoints").state["run"]["step"] == 3
    train(spec, out=tmp_path / "part", overrides=small, steps=20, resume=True, quiet=True)
    assert _equal(weights(tmp_path / "part"), weights(tmp_path / "full"))


def test_every_minutes_checkpoints_by_the_clock_besides_every_n_steps(write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRAPH_TRAIN_STEP_DELAY", "0.1")  # each step outlasts the 0.06 s interval
    spec = write_spec(train_extra="checkpoint: {every: 100, keep: 10, every_minutes: 0.001}")
    train(spec, out=tmp_path / "timed", steps=4, quiet=True)
    assert [s for s, _ in ck.step_files(tmp_path / "timed" / "checkpoints")] == [4, 3, 2, 1]
    monkeypatch.delenv("NNGRAPH_TRAIN_STEP_DELAY")
    train(write_spec(train_extra="checkpoint: {every: 100, keep: 10}"), out=tmp_path / "steps", steps=4, quiet=True)
    assert [s for s, _ in ck.step_files(tmp_path / "steps" / "checkpoints")] == [4]  # the last step only


def test_every_minutes_is_checked_like_every_train_key(write_spec):
    from nngraph.compilers.train.config import load_run_config
    from nngraph.errors import SpecError

    with pytest.raises(SpecError) as info:
        load_run_config(write_spec(), ["train.checkpoint.every_minutes=0"])
    assert str(info.value) == ("--set train.checkpoint.every_minutes=0: train.checkpoint.every_minutes must be "
                               ">= 0.001, got 0")
    assert load_run_config(write_spec(), ["train.checkpoint.every_minutes=30"]).get("checkpoint.every_minutes") == 30
