"""``nngraph tune SPEC``: hyperparameter search with Optuna over ``--space`` keys (:mod:`nngraph.tune_space`).

Each trial is one ``nngraph train`` run in ``OUT/trial_NNNN/`` with the trial's values as ``--set`` overrides.
The study lives in ``OUT/study.db`` (SQLite) unless ``--storage`` names another Optuna RDB URL, so running the
command again adds trials to it, and several machines pointing at one database share the study. Every val
evaluation is reported to Optuna's median pruner, which stops a trial whose intermediate metric is worse than the
median of earlier trials at the same step. The result: a table of trials, ``OUT/trials.json`` and ``OUT/tune.png``
(each trial's value and the best so far), and the best trial's run folder.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any, Callable

from nngraph.io import write_bytes_atomic, write_text_atomic
from nngraph.tune_space import Param

QUIET = ["train.log.progress=false", "train.log.plot=false"]


def split_metric(metric: str) -> tuple[str, str]:
    """``val_loss`` -> (``val``, ``loss``); a bare ``loss`` is the val split's."""
    split, sep, key = metric.partition("_")
    return (split, key) if sep and split in ("val", "test") else ("val", metric)


class PruneReporter:
    """A tracker (:mod:`.trackers`) that reports each val evaluation to the trial and stops a pruned one."""

    def __init__(self, trial: Any, key: str):
        self.trial, self.key = trial, key

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        import optuna

        if split == "val" and self.key in values:
            self.trial.report(float(values[self.key]), step)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"{self.key} {values[self.key]:.4g} at step {step}")

    def close(self) -> None:
        pass


def _objective(spec: Path, out: Path, space: list[Param], metric: str, sets: list[str],
               train_kw: dict[str, Any]) -> Callable[[Any], float]:
    from . import train

    split, key = split_metric(metric)

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in space}
        run = out / f"trial_{trial.number:04d}"
        trial.set_user_attr("out", str(run))
        overrides = [*QUIET, *sets, *(p.override(values[p.key]) for p in space)]
        summary = train(spec, out=run, overrides=overrides, quiet=True, overwrite=True,
                        trackers=[PruneReporter(trial, key)], **train_kw)
        got = (summary.get(split) or {}).get(key)
        if got is None:
            raise ValueError(f"--metric {metric}: the run reports no {split} '{key}' "
                             f"(it has: {', '.join(summary.get(split) or {}) or 'no ' + split + ' metrics'})")
        return float(got)

    return objective


def _study(storage: str, name: str, direction: str, load_only: bool = False) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported once, by nngraph
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if load_only:
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    return optuna.create_study(study_name=name, storage=storage, direction=direction, pruner=pruner,
                               load_if_exists=True)


def _worker(spec: Path, out: Path, space: list[Param], metric: str, sets: list[str], train_kw: dict[str, Any],
            storage: str, name: str, trials: int) -> None:
    """One process of ``--workers``: ``trials`` trials of the shared study."""
    _study(storage, name, "", load_only=True).optimize(_objective(spec, out, space, metric, sets, train_kw),
                                                       n_trials=trials, catch=())


def tune(spec: Path, out: Path, space: list[Param], trials: int, metric: str, direction: str | None = None,
         storage: str | None = None, study_name: str | None = None, workers: int = 1, sets: list[str] | None = None,
         steps: int | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``trials`` more trials; returns ``{"study", "storage", "best", "trials": [...]}``."""
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or spec.stem
    direction = direction or ("maximize" if split_metric(metric)[1] == "accuracy" else "minimize")
    study = _study(storage, name, direction)
    train_kw = {"steps": steps}
    if workers <= 1:
        study.optimize(_objective(spec, out, space, metric, sets or [], train_kw), n_trials=trials, catch=())
    else:
        _parallel(spec, out, space, metric, sets or [], train_kw, storage, name, trials, workers)
    return _report(study, storage, out, metric, echo)


def _parallel(spec: Path, out: Path, space: list[Param], metric: str, sets: list[str], train_kw: dict[str, Any],
              storage: str, name: str, trials: int, workers: int) -> None:
    """``workers`` processes (spawned: each its own torch) sharing the study through its storage."""
    ctx = multiprocessing.get_context("spawn")
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    procs = [ctx.Process(target=_worker, args=(spec, out, space, metric, sets, train_kw, storage, name, n))
             for n in shares if n]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} tune worker(s) failed (exit codes {failed})")


def _report(study: Any, storage: str, out: Path, metric: str, echo: Callable[[str], None]) -> dict[str, Any]:
    """The table of trials, ``trials.json``, ``tune.png``; the best trial's folder."""
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "out": t.user_attrs.get("out")} for t in study.trials]
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = None
    if done:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params, "out": b.user_attrs.get("out")}
    result = {"study": study.study_name, "storage": storage, "metric": metric,
              "direction": study.direction.name.lower(), "best": best, "trials": rows}
    write_text_atomic(out / "trials.json", json.dumps(result, indent=2) + "\n")
    for line in table(rows, metric, best):
        echo(line)
    if _plot(rows, study.direction.name == "MINIMIZE", metric, out / "tune.png"):
        echo(f"wrote {out / 'tune.png'}, {out / 'trials.json'}")
    if best is not None:
        echo(f"best: trial {best['number']} {metric} {best['value']:.6g}  run folder {best['out']}")
    return result


def table(rows: list[dict[str, Any]], metric: str, best: dict[str, Any] | None) -> list[str]:
    """The trials as aligned text lines, the best one marked ``*``."""
    keys = sorted({k for r in rows for k in r["params"]})
    head = ["trial", "state", metric, *keys]
    body = [[("*" if best and r["number"] == best["number"] else "") + str(r["number"]), r["state"].lower(),
             "" if r["value"] is None else f"{r['value']:.6g}",
             *(_fmt(r["params"].get(k)) for k in keys)] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    return ["  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in [head, *body]]


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _plot(rows: list[dict[str, Any]], minimize: bool, metric: str, path: Path) -> bool:
    """Each complete trial's value and the best so far against the trial number (PNG)."""
    import io

    pts = [(r["number"], r["value"]) for r in rows if r["state"] == "COMPLETE"]
    if not pts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best, run = [], None
    for _, v in pts:
        run = v if run is None else (min(run, v) if minimize else max(run, v))
        best.append(run)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([n for n, _ in pts], [v for _, v in pts], "o", label="trial")
    ax.step([n for n, _ in pts], best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    write_bytes_atomic(path, png.getvalue())
    return True
