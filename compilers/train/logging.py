"""Run output: a JSONL metrics log, TensorBoard scalars, the progress display and the loss-curve PNG.

``metrics.jsonl`` has one JSON object per line: ``{"step", "split": "train",
"loss", "lr", "throughput", "time"}`` every ``log.every`` steps and
``{"step", "split": "val"|"test", <metrics>}`` at evaluations. On resume,
records after the checkpoint's step are dropped first, so the log reads as one
uninterrupted run.

Progress (``log.progress: auto``): a live rich bar when stdout and stderr are
terminals; otherwise (CI, nohup, a pipe) a flushed plain line on stdout every
``log.every`` steps, e.g. ``step 40/400  loss 2.1034  lr 6.00e-03  5,120 tokens/s  ETA 1m12s``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from nngraph.io import write_bytes_atomic, write_text_atomic


def _wanted(setting: Any, module: str) -> bool:
    if setting == "auto":
        return importlib.util.find_spec(module) is not None
    return bool(setting)


class MetricsLog:
    """Append-only JSONL log (rank 0 only)."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        #: on resume, the last step the interrupted run logged (the trackers had it too: they skip up to it)
        self.logged_through = resume_step
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            write_text_atomic(path, "")  # a regular file, never through a link planted at its name
        elif path.exists():
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            keep = [line for line in lines if _step_of(line) <= resume_step]
            self.logged_through = max([resume_step, *(_step_of(line) for line in lines
                                                      if _step_of(line) < 1 << 62)])
            write_text_atomic(path, "".join(line + "\n" for line in keep))
        self.fh = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # an unreadable (half-written) line is dropped


def read_metrics(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class TensorBoard:
    """Scalars under ``OUT/tb`` with torch's SummaryWriter, when enabled and installed."""

    def __init__(self, folder: Path, setting: Any):
        self.writer = None
        if _wanted(setting, "tensorboard"):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                if setting is True:
                    raise RuntimeError(f"log.tensorboard: true needs the tensorboard package ({exc})") from None
                return
            self.writer = SummaryWriter(log_dir=str(folder))

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def _terminal() -> bool:
    """Both streams on a terminal: the live bar (stderr) would otherwise leave a piped stdout without progress."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def _print(text: str) -> None:
    print(text, flush=True)  # flushed: a piped stdout is block-buffered and CI would see nothing until the end


class Progress:
    """Progress of the run: a rich live bar on a terminal; off one (CI, nohup, a pipe) a plain line per logged
    step through ``write`` (default: stdout); silent when off."""

    def __init__(self, total: int, start: int, setting: Any, unit: str, write: Callable[[str], None] | None = None):
        self.bar = None
        self.write: Callable[[str], None] | None = None
        self.total, self.start, self.unit = total, start, unit
        self.t0 = time.perf_counter()
        if setting is False:
            return
        if setting == "auto" and not _terminal():
            self.write = write or _print
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeRemainingColumn
        except ImportError:  # pragma: no cover - rich is a dependency
            return
        self.bar = RichProgress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task("train", total=total, completed=start, info="")
        self.bar.start()

    def update(self, step: int, loss: float | None = None, lr: float | None = None, rate: float | None = None) -> None:
        """Every step; ``loss``, ``lr`` and ``rate`` (units per second) at the logged ones."""
        if self.write is not None and loss is not None:
            self.write(f"step {step}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  {_rate(rate)} {self.unit}/s  "
                       f"ETA {_duration(self.eta(step))}")
        if self.bar is None:
            return
        info = self.bar.tasks[0].fields.get("info", "")
        if loss is not None:
            info = f"loss {loss:.4f}  lr {lr:.2e}  {rate:,.0f} {self.unit}/s"
        self.bar.update(self.task, completed=step, info=info)

    def eta(self, step: int) -> float | None:
        """Seconds left at this run's pace so far (evaluations and checkpoints included); None before a step."""
        done = step - self.start
        if done <= 0:
            return None
        return (time.perf_counter() - self.t0) / done * (self.total - step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _rate(rate: float | None) -> str:
    if rate is None:
        return "?"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def _duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def plot_losses(metrics: list[dict[str, Any]], path: Path, title: str, setting: Any) -> bool:
    """Train (and val) loss against step as a PNG; False when plotting is off or matplotlib is missing."""
    if not _wanted(setting, "matplotlib"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for split, style in (("train", "-"), ("val", "o-")):
        pts = [(r["step"], r["loss"]) for r in metrics if r.get("split") == split and "loss" in r]
        if pts:
            ax.plot(*zip(*pts), style, label=f"{split} loss", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    write_bytes_atomic(path, png.getvalue())
    plt.close(fig)
    return True
