"""Experiment trackers (:mod:`nngraph.compilers.train.trackers`): a run's params, per-step metrics and files in a
real local MLflow file store, read back with MLflow's own client (never the network)."""

from __future__ import annotations

import json

import mlflow  # the dev extra has them: a missing one is a failure, not a skip
import wandb

import pytest

from nngraph.compilers.train import train
from nngraph.compilers.train.trackers import TRACKERS, flat_params
from nngraph.train_keys import LOG



def test_every_tracker_is_switched_by_its_train_log_key():
    assert set(TRACKERS) <= set(LOG)


def test_flat_params_name_nested_keys_with_dots():
    assert flat_params("train", {"optimizer": {"lr": 0.01, "type": "adamw"}, "steps": 3}) == {
        "train.optimizer.lr": "0.01", "train.optimizer.type": "adamw", "train.steps": "3"}


def test_an_mlflow_file_store_holds_params_metrics_and_artifacts(tmp_path, write_spec):
    out = tmp_path / "run"
    summary = train(write_spec(), out=out, overrides=["train.log.mlflow=true", "train.log.plot=true", "hidden=24",
                                                      "train.eval.every=4"], quiet=True)
    client = mlflow.MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    exp = client.get_experiment_by_name("mlp_small")
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["vars.hidden"] == "24" and run.data.params["train.optimizer.lr"] == "0.01"
    assert run.data.params["train.batch_size"] == "16"
    # per step: the same numbers metrics.jsonl holds, at the same steps
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_loss = {r["step"]: r["loss"] for r in records if r["split"] == "train"}
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train_loss")}
    assert sorted(history) == list(range(1, 13))
    assert history == pytest.approx(train_loss, rel=1e-12)
    val_loss = {r["step"]: r["loss"] for r in records if r["split"] == "val"}
    val = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
    assert sorted(val) == [0, 4, 8, 12] and val == pytest.approx(val_loss, rel=1e-12)
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"loss.png", "model.safetensors", "spec.yaml", "summary.json"} <= files
    got = client.download_artifacts(run.info.run_id, "model.safetensors", str(tmp_path / "dl"))
    assert open(got, "rb").read() == (out / "model.safetensors").read_bytes()


def _wandb_records(path):
    """The protobuf records of a W&B transaction log (``run-*.wandb``): a 7-byte ``:W&B`` header, then LevelDB-log
    framed chunks (crc32, length, type FULL=1 FIRST=2 MIDDLE=3 LAST=4) in 32 KiB blocks."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # a block's zero padding
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_a_wandb_offline_run_holds_params_metrics_and_artifacts(tmp_path, write_spec, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # belt and braces: never the network
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):  # its staging and cache, not the home's
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    out = tmp_path / "run"
    train(write_spec(), out=out, overrides=["train.log.wandb=true", "train.log.plot=true", "hidden=24"], quiet=True)
    wandb.teardown()  # W&B's service writes the offline log in the background: wait for the last records
    [log] = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    config, history, artifacts = {}, {}, []
    for r in _wandb_records(log):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            history.setdefault(row["_step"], {}).update(row)
        elif kind == "artifact":
            artifacts += [m.path for m in r.artifact.manifest.contents]
    assert config["vars.hidden"] == "24" and config["train.optimizer.lr"] == "0.01"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_loss = {r["step"]: r["loss"] for r in records if r["split"] == "train"}
    assert {s: h["train/loss"] for s, h in history.items() if "train/loss" in h} == pytest.approx(train_loss,
                                                                                                   rel=1e-12)
    assert {"loss.png", "model.safetensors", "spec.yaml", "summary.json"} <= set(artifacts)


class _Crash:
    """A tracker that fails at ``step``, after the trackers before it (and metrics.jsonl) have that step."""

    def __init__(self, step: int):
        self.step = step

    def scalars(self, split, step, values):
        if step == self.step:
            raise RuntimeError(f"crash at step {step}")

    def close(self):
        pass


RESUMABLE = ["train.checkpoint.every=4", "train.eval.every=4", "hidden=24"]


def _crash_and_resume(spec, out, log_key):
    """Train until a crash at step 6 (checkpoint at 4), then resume to 16 steps (a changed train.steps)."""
    with pytest.raises(RuntimeError, match="crash at step 6"):
        train(spec, out=out, overrides=[log_key, *RESUMABLE], quiet=True, trackers=[_Crash(6)])
    ids = json.loads((out / "trackers.json").read_text())
    train(spec, out=out, overrides=[log_key, *RESUMABLE, "train.steps=16"], quiet=True, resume=True)
    return ids, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_resumed_run_continues_its_mlflow_run_at_the_next_steps(tmp_path, write_spec):
    out = tmp_path / "run"
    ids, records = _crash_and_resume(write_spec(), out, "train.log.mlflow=true")
    client = mlflow.MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("mlp_small").experiment_id])
    assert run.info.run_id == ids["mlflow"]["run_id"] and run.info.status == "FINISHED"
    # params are written once: the resumed run's changed train.steps is a tag of that name
    assert run.data.params["train.steps"] == "12" and run.data.tags["train.steps"] == "16"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, 17))  # each step once
    train_loss = {r["step"]: r["loss"] for r in records if r["split"] == "train"}
    assert {m.step: m.value for m in history} == pytest.approx(train_loss, rel=1e-12)
    val = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))
    assert val == [0, 4, 8, 12, 16]


def test_a_resumed_run_continues_its_wandb_run_at_the_next_steps(tmp_path, write_spec, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    out = tmp_path / "run"
    ids, records = _crash_and_resume(write_spec(), out, "train.log.wandb=true")
    wandb.teardown()  # W&B's service writes the offline log in the background: wait for the last records
    logs = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 2  # the interrupted run's files and the resumed run's, one run id
    steps, run_ids = [], set()
    for log in logs:
        for r in _wandb_records(log):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run_ids.add(r.run.run_id)
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                if "train/loss" in row:
                    steps.append((row["_step"], row["train/loss"]))
    assert run_ids == {ids["wandb"]["run_id"]}
    train_loss = [(r["step"], r["loss"]) for r in records if r["split"] == "train"]
    assert [s for s, _ in steps] == list(range(1, 17))  # in order, each step once across both files
    assert dict(steps) == pytest.approx(dict(train_loss), rel=1e-12)
