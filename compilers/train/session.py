"""One training run from start to summary, for every task: the output folder's files, the loop (:mod:`.loop`), a
stop signal, and the end-of-run weights.

``OUT/`` gets ``config.json``, ``run.json`` + ``spec.yaml`` (:mod:`nngraph.run_folder`), ``metrics.jsonl``,
``checkpoints/``, ``loss.png`` and ``summary.json``; a one-graph run also ``tb/`` (TensorBoard), ``mlruns/`` (MLflow, when on),
``tokenizer.json`` (text), ``model.safetensors`` (LoRA merged) and ``best_model.safetensors`` and reports the test
split with the best weights; a networks run writes ``model.safetensors`` (every network, the union graph's keys)
and ``<network>.safetensors`` (each, with its fingerprint, for ``nngraph export SPEC --network NAME``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from nngraph.io import write_text_atomic

from ..state import checkpoint as ck
from . import distributed
from .config import RunConfig
from .logging import MetricsLog, Progress, plot_losses, read_metrics
from .longrun import INTERRUPTED, Watch
from .stop import TrainingInterrupted
from .trackers import Trackers, flat_params
from .loop import Trainer, run_loop


def train_run(run: RunConfig, out: Path, resume: bool, echo: Callable[[str], None], quiet: bool,
              until: int | None = None, trackers: list[Any] | None = None) -> dict[str, Any]:
    """Train ``run``'s spec into ``out``; returns the summary (also ``OUT/summary.json``).

    ``trackers``: more trackers besides those ``train.log`` switches on (:class:`.trackers.Trackers`).

    ``until`` stops after that step without the end-of-run work (tests of resume use it)."""
    from .plan import build_plan

    from .tensor_parallel import check_mesh

    tp = run.values["distributed"]["tp"]
    d = distributed.Dist(tp=tp) if run.graph.networks else distributed.from_env(tp)  # networks: one process
    check_mesh(run, d)
    say = echo if (d.main and not quiet) else (lambda _t: None)
    plan = None if run.graph.networks else build_plan(run, d)
    if plan is not None:
        distributed.init(d, plan.device)
    try:
        tr = Trainer(run, plan, out, d, echo)
        resumed_from = ck.resume_latest(tr, tr.ckpt_dir, say) if resume else None
        say(f"training {run.graph.name}: {tr.task.describe()}")
        log, tb = _open_outputs(tr, out, resumed_from, trackers or []) if d.main else (None, None)
        try:
            result = _loop(tr, log, tb, quiet, until)
        except Exception:
            if tb is not None:
                tb.fail()  # the tracker runs end as failed, so --resume can reopen them (even in this process)
            raise
        if until is not None and tr.step < tr.total:
            _close(log, tb)
            return _summary(tr, result, out)
        summary = (_finish_networks if tr.networks else _finish_graph)(tr, result, out, log, tb, say)
        if d.main and log is not None:
            _close(log, None)
            if plot_losses(read_metrics(out / "metrics.jsonl"), out / "loss.png", f"{run.graph.name}: loss",
                           run.values["log"]["plot"]):
                summary["plot"] = str(out / "loss.png")
            write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
            if tb is not None:
                tb.finish(out)  # the trackers get the files written just above
                tb.close()
        distributed.barrier(d)
        return summary
    finally:
        distributed.shutdown(d)


def _open_outputs(tr: Trainer, out: Path, resumed_from: int | None,
                  extra: list[Any]) -> tuple[MetricsLog, Trackers | None]:
    """Rank 0: the run's record files, the metrics log (cut back to ``resumed_from``) and the experiment trackers
    (:mod:`.trackers`: TensorBoard, MLflow) with the run's params, the spec vars and the train section."""
    from nngraph.run_folder import record_run

    run = tr.run
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.json", json.dumps(run.values, indent=2) + "\n")
    record_run(out, run.spec_path, run.overrides, run.graph)  # export/infer/sample/generate take OUT/
    log = MetricsLog(out / "metrics.jsonl", resumed_from)
    if tr.networks:
        return log, None
    tok = getattr(tr.plan.task.data, "tokenizer", None)
    if tok is not None:
        write_text_atomic(out / "tokenizer.json", tok.to_json())
    params = {**flat_params("vars", dict(run.graph.vars)), **flat_params("train", run.values)}
    return log, Trackers(out, run.values["log"], run.graph.name, params, extra,
                         None if resumed_from is None else log.logged_through)


def _loop(tr: Trainer, log: MetricsLog | None, tb: Trackers | None, quiet: bool,
          until: int | None) -> dict[str, Any]:
    """:func:`.loop.run_loop` with a progress display and the stop-signal watch; a stop raises
    :class:`TrainingInterrupted` after its checkpoint."""
    d, cfg = tr.d, tr.cfg
    progress = Progress(tr.total, tr.step, cfg["log"]["progress"] if d.main and not quiet else False,
                        tr.task.unit, None if d.active else tr.echo)  # a worker's echo is shown only at the end
    try:
        with Watch(cfg["checkpoint"]["every_minutes"], d, tr.device) as watch:
            result = run_loop(tr, log, tb, progress, until=until, watch=watch)
    finally:
        progress.close()
    if result["stopped"] == INTERRUPTED:
        _close(log, tb)
        raise TrainingInterrupted(tr.step, watch.stopped_by)
    return result


def _close(log: Any, tb: Any) -> None:
    """Close rank 0's metrics log and trackers (other ranks have neither)."""
    for writer in (log, tb):
        if writer is not None:
            writer.close()


def _summary(tr: Trainer, result: dict[str, Any], out: Path) -> dict[str, Any]:
    """What every run's summary says: spec, task, steps, the last val metrics, the best metric and its step."""
    if tr.networks:
        return {"spec": tr.run.graph.name, "task": tr.task.name, "steps": tr.step, "val": result["val"] or {},
                "metric": tr.metric, "best": tr.best, "best_step": tr.best_step, "out": str(out),
                "networks": dict(tr.roles)}
    return {"spec": tr.run.graph.name, "task": tr.plan.task.name, "steps": tr.step, "stopped": result["stopped"],
            "val": result["val"], "metric": tr.metric, "best": tr.best, "best_step": tr.best_step, "out": str(out)}


# ----- end of a networks run ------------------------------------------------------------------------------------
def _finish_networks(tr: Trainer, result: dict[str, Any], out: Path, log: Any, tb: Any,
                     say: Callable[[str], None]) -> dict[str, Any]:
    """``model.safetensors`` (every network) and ``<network>.safetensors`` (each one)."""
    from nngraph.compilers.torch.weights import save_weights

    summary = _summary(tr, result, out)
    graph, paths = tr.run.graph, [out / "model.safetensors"]
    save_weights(tr.nets, graph, paths[0])
    for net, g in graph.networks.items():
        paths.append(out / f"{net}.safetensors")
        save_weights(tr.nets[net], g, paths[-1])
    summary["weights"] = [str(p) for p in paths]
    say(f"stopped after {tr.step} steps; " + ", ".join(f"{k} {v:.4g}" for k, v in summary["val"].items()))
    say(f"wrote {out}/model.safetensors, " + ", ".join(f"{net}.safetensors" for net in graph.networks)
        + ", metrics.jsonl, checkpoints/")
    return summary


# ----- end of a one-graph run -----------------------------------------------------------------------------------
def _export(tr: Trainer, path: Path) -> None:
    """Save the model's weights (spec keys; LoRA adapters merged) with the spec fingerprint.

    Every rank calls it (under FSDP the weights are gathered); rank 0 writes.
    """
    from nngraph.compilers.torch import build_module, load_state_dict
    from nngraph.compilers.torch.weights import save_weights

    from ..state.lora import apply_lora, merged_state_dict

    steps = tr.task
    state = steps.model_state()
    if not tr.d.main:
        return
    model, merge = steps.model, bool(tr.plan.lora and tr.cfg["lora"]["merge"])
    if merge:
        state = merged_state_dict(model, state)
    if merge or steps.sharded:  # a plain module holding the full weights
        model = build_module(tr.plan.graph, seed=0)
        if tr.plan.lora and not merge:
            lc = tr.cfg["lora"]
            apply_lora(model, lc["targets"], lc["rank"], lc["alpha"], lc["dropout"])
        load_state_dict(model, state)
    save_weights(model, tr.plan.graph, path)


def _finish_graph(tr: Trainer, result: dict[str, Any], out: Path, log: Any, tb: Any,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """Save the final weights; reload the best ones (if an evaluation chose them) for the test split; summarize."""
    summary = _summary(tr, result, out)
    _export(tr, out / "model.safetensors")
    best_path = out / "checkpoints" / "best.safetensors"
    distributed.barrier(tr.d)
    use_best = tr.best_step is not None and tr.best_step != tr.step and best_path.is_file()
    if use_best:
        tr.task.load_model(ck.read(best_path).group("model"))
    if tr.best_step is not None:
        _export(tr, out / "best_model.safetensors")
    test = tr.evaluate("test")
    weights = f"best (step {tr.best_step})" if use_best else f"final (step {tr.step})"
    if test is not None:
        summary["test"] = test
        summary["test_weights"] = weights
        if log is not None:
            log.write({"step": tr.step, "split": "test", **test})
        if tb is not None:
            tb.scalars("test", tr.step, test)
    lines = [f"stopped after {tr.step} steps ({result['stopped']})"]
    if result["val"]:
        lines.append("val: " + _fmt(result["val"]))
    if test is not None:
        lines.append(f"test ({weights} weights): " + _fmt(test))
    lines.append(f"wrote {out}/model.safetensors, metrics.jsonl, checkpoints/")
    for line in lines:
        say(line)
    return summary


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
