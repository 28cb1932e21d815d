"""Experiment trackers: the one registry of where a run's numbers go besides ``metrics.jsonl``.

Each tracker is switched on by the ``train.log`` key of its name (``log.tensorboard``, ``log.mlflow``, ``log.wandb``) and gets
the same three calls from the run: :meth:`scalars` (a split's numbers at a step), :meth:`finish` (the run's params
and files at the end: ``loss.png``, ``model.safetensors``, ``spec.yaml``, ``summary.json``) and :meth:`close`.
:class:`Trackers` fans every call out to the enabled ones, so the loop knows none of them by name.

A resumed run (``nngraph train --resume``) continues the same tracker runs: their ids are kept in
``OUT/trackers.json`` (``{"mlflow": {"tracking_uri", "run_id"}, "wandb": {"run_id", "project"}}``), and the steps
the interrupted run had already logged (through the last step of ``metrics.jsonl`` before it was cut back to the
checkpoint) are not sent again: the resumed run recomputes them identically, and a tracker then holds each step once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from nngraph.io import write_text_atomic

from .logging import TensorBoard

RUN_IDS = "trackers.json"  # in the run folder: the tracker runs a resumed run continues
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
    ``nngraph tune`` workers each own theirs). Default store: the file store ``OUT/mlruns``. ``prior``: the run to
    continue (a resumed training run's ``trackers.json`` entry)."""

    def __init__(self, out: Path, settings: dict[str, Any], name: str, params: dict[str, str],
                 prior: dict[str, str] | None = None):
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
        self.uri, self.client = uri, MlflowClient(tracking_uri=uri)
        self.run_id = self._reopen(prior) if prior and prior.get("tracking_uri") == uri else None
        logged = {} if self.run_id is None else self.client.get_run(self.run_id).data.params
        if self.run_id is None:
            exp = self.client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
            self.run_id = self.client.create_run(exp_id, run_name=out.name).info.run_id
        self._log_params(params, logged)

    def _reopen(self, prior: dict[str, str]) -> str | None:
        """The interrupted run's id, marked running again; None when the store no longer has it."""
        try:
            self.client.update_run(prior["run_id"], status="RUNNING")
        except Exception:  # noqa: BLE001 - MLflow's "not found" is an MlflowException of the store's kind
            return None
        return prior["run_id"]

    def ref(self) -> dict[str, str]:
        return {"tracking_uri": self.uri, "run_id": self.run_id}

    def _log_params(self, params: dict[str, str], logged: dict[str, str]) -> None:
        """New params; on resume a value the run changed (steps, eval, log: what resume allows) becomes a tag of
        the same name, since MLflow params are written once."""
        from mlflow.entities import Param, RunTag

        items = [Param(k, v) for k, v in params.items() if k not in logged]
        tags = [RunTag(k, v) for k, v in params.items() if k in logged and logged[k] != v]
        for i in range(0, max(len(items), len(tags)), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100], tags=tags[i:i + 100])

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

    def close(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)
            self.run_id = None

    def fail(self) -> None:
        self.close("FAILED")


class WandbTracker:
    """One Weights & Biases run per training run (offline by default: files under ``OUT/wandb``, nothing sent);
    metrics as ``split/key`` at the run's step, the files as one artifact ``run-files``. ``prior``: the run to
    continue (its id; offline, a resumed run writes a second ``offline-run-*`` folder with the same id)."""

    def __init__(self, out: Path, settings: dict[str, Any], name: str, params: dict[str, str],
                 prior: dict[str, str] | None = None):
        try:
            import wandb
        except ImportError as exc:
            raise RuntimeError(f"log.wandb: true needs the wandb extra: pip install 'nngraph[wandb]' ({exc})") \
                from None
        self.wandb = wandb
        resume = {"id": prior["run_id"], "resume": "allow"} if prior and prior.get("project") == name else {}
        self.run = wandb.init(mode=settings["wandb_mode"], dir=str(out), project=name, name=out.name,
                              config=params, reinit="create_new", settings=wandb.Settings(silent=True), **resume)

    def ref(self) -> dict[str, str]:
        return {"run_id": self.run.id, "project": self.run.project}

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

    def close(self, exit_code: int | None = None) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None

    def fail(self) -> None:
        self.close(exit_code=1)


def _tensorboard(out: Path, settings: dict[str, Any], name: str, params: dict[str, str],
                 prior: dict[str, str] | None) -> TensorBoard | None:
    tb = TensorBoard(out / "tb", settings["tensorboard"])
    return tb if tb.writer is not None else None


def _mlflow(out: Path, settings: dict[str, Any], name: str, params: dict[str, str],
            prior: dict[str, str] | None) -> MLflowTracker | None:
    return MLflowTracker(out, settings, name, params, prior) if settings["mlflow"] else None


def _wandb(out: Path, settings: dict[str, Any], name: str, params: dict[str, str],
           prior: dict[str, str] | None) -> WandbTracker | None:
    return WandbTracker(out, settings, name, params, prior) if settings["wandb"] else None


# name (= its train.log key) -> factory(out, train.log settings, experiment name, params, the run to continue or
# None); None when off
TRACKERS: dict[str, Callable[[Path, dict[str, Any], str, dict[str, str], dict[str, str] | None], Any]] = {
    "tensorboard": _tensorboard,
    "mlflow": _mlflow,
    "wandb": _wandb,
}


class Trackers:
    """The enabled trackers of one run, each getting every call. ``logged_through``: on resume, the last step the
    interrupted run logged; the steps up to it are not sent again."""

    def __init__(self, out: Path, settings: dict[str, Any], name: str, params: dict[str, str],
                 extra: list[Any] | None = None, logged_through: int | None = None):
        prior = _run_ids(out) if logged_through is not None else {}
        made = {key: make(out, settings, name, params, prior.get(key)) for key, make in TRACKERS.items()}
        self.items = [t for t in made.values() if t is not None]
        ids = {key: t.ref() for key, t in made.items() if hasattr(t, "ref")}
        if ids:
            write_text_atomic(out / RUN_IDS, json.dumps(ids, indent=2) + "\n")
        elif logged_through is None:
            (out / RUN_IDS).unlink(missing_ok=True)  # a fresh run in a reused folder: not an older run's
        self.items += extra or []
        self.skip_through = -1 if logged_through is None else logged_through

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        if step <= self.skip_through:  # the interrupted run sent it (and this run recomputes it identically)
            return
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

    def fail(self) -> None:
        """The run stopped on an error: trackers that record it (``fail``) do, the others just close."""
        for t in self.items:
            getattr(t, "fail", t.close)()
        self.items = []


def _run_ids(out: Path) -> dict[str, dict[str, str]]:
    """The tracker runs recorded in ``OUT/trackers.json`` ({} when there is none or it is unreadable)."""
    try:
        ids = json.loads((out / RUN_IDS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return ids if isinstance(ids, dict) else {}
