"""Experiment trackers: the one registry of where a run's numbers go besides ``metrics.jsonl``.

Each tracker is switched on by the ``train.log`` key of its name (``log.tensorboard``, ``log.mlflow``, ``log.wandb``) and gets
the same three calls from the run: :meth:`scalars` (a split's numbers at a step), :meth:`finish` (the run's params
and files at the end: ``loss.png``, ``model.safetensors``, ``spec.yaml``, ``summary.json``) and :meth:`close`.
:class:`Trackers` fans every call out to the enabled ones, so the loop knows none of them by name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .logging import TensorBoard

ARTIFACTS = ("loss.png", "model.safetensors", "spec.yaml", "config.json", "summary.json")
MAX_PARAM_CHARS = 500  # MLflow refuses longer parameter values; a long list is cut, not the run


def flat_params(prefix: str, value: Any) -> dict[str, str]:
    """``{"train.optimizer.lr": "0.001", ...}``: nested mappings flattened with dots, values as short strings."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flat_params(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: str(value)[:MAX_PARAM_CHARS]}


class MLflowTracker:
    """One MLflow run per training run, through :class:`mlflow.MlflowClient` (no global active run: parallel
    ``nngraph tune`` workers each own theirs). Default store: the file store ``OUT/mlruns``."""

    def __init__(self, out: Path, settings: dict[str, Any], name: str, params: dict[str, str]):
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise RuntimeError(f"log.mlflow: true needs the mlflow extra: pip install 'nngraph[mlflow]' ({exc})") \
                from None
        uri = settings.get("mlflow_uri")
        if not uri:  # the plain local store: MLflow 3 keeps it working (maintenance mode) behind this opt-in;
            # a SQLite store would cost a ~10 s schema migration per run folder -- give mlflow_uri for one
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (out / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        self.run_id = self.client.create_run(exp_id, run_name=out.name).info.run_id
        self._log_params(params)

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{split}_{k}", float(v), now, step) for k, v in values.items()
                   if isinstance(v, (int, float))]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, out: Path) -> None:
        for name in ARTIFACTS:
            if (out / name).is_file():
                self.client.log_artifact(self.run_id, str(out / name))

    def close(self) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id)
            self.run_id = None


class WandbTracker:
    """One Weights & Biases run per training run (offline by default: files under ``OUT/wandb``, nothing sent);
    metrics as ``split/key`` at the run's step, the files as one artifact ``run-files``."""

    def __init__(self, out: Path, settings: dict[str, Any], name: str, params: dict[str, str]):
        try:
            import wandb
        except ImportError as exc:
            raise RuntimeError(f"log.wandb: true needs the wandb extra: pip install 'nngraph[wandb]' ({exc})") \
                from None
        self.wandb = wandb
        self.run = wandb.init(mode=settings["wandb_mode"], dir=str(out), project=name, name=out.name,
                              config=params, reinit="create_new", settings=wandb.Settings(silent=True))

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        row = {f"{split}/{k}": float(v) for k, v in values.items() if isinstance(v, (int, float))}
        if row:
            self.run.log(row, step=step)

    def finish(self, out: Path) -> None:
        art = self.wandb.Artifact("run-files", type="model")
        for name in ARTIFACTS:
            if (out / name).is_file():
                art.add_file(str(out / name))
        self.run.log_artifact(art)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _tensorboard(out: Path, settings: dict[str, Any], name: str, params: dict[str, str]) -> TensorBoard | None:
    tb = TensorBoard(out / "tb", settings["tensorboard"])
    return tb if tb.writer is not None else None


def _mlflow(out: Path, settings: dict[str, Any], name: str, params: dict[str, str]) -> MLflowTracker | None:
    return MLflowTracker(out, settings, name, params) if settings["mlflow"] else None


def _wandb(out: Path, settings: dict[str, Any], name: str, params: dict[str, str]) -> WandbTracker | None:
    return WandbTracker(out, settings, name, params) if settings["wandb"] else None


# name (= its train.log key) -> factory(out, train.log settings, experiment name, params); None when off
TRACKERS: dict[str, Callable[[Path, dict[str, Any], str, dict[str, str]], Any]] = {
    "tensorboard": _tensorboard,
    "mlflow": _mlflow,
    "wandb": _wandb,
}


class Trackers:
    """The enabled trackers of one run, each getting every call."""

    def __init__(self, out: Path, settings: dict[str, Any], name: str, params: dict[str, str],
                 extra: list[Any] | None = None):
        self.items = [t for make in TRACKERS.values() if (t := make(out, settings, name, params)) is not None]
        self.items += extra or []

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        for t in self.items:
            t.scalars(split, step, values)

    def finish(self, out: Path) -> None:
        """The run's files, once they are written (after the loss plot and the summary)."""
        for t in self.items:
            if hasattr(t, "finish"):
                t.finish(out)

    def close(self) -> None:
        for t in self.items:
            t.close()
        self.items = []
