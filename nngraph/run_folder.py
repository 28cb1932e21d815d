"""Run folders as models: ``nngraph train`` records how it built the spec, so ``export``, ``infer``, ``sample`` and
``generate`` take ``OUT/`` where they take a spec, and rebuild the architecture that was trained without the
``--set`` overrides being repeated.

The record is ``OUT/run.json``: ``{"spec": the spec file (absolute), "overrides": the --set overrides as given
(train.* ones too), "vars": the spec's vars after them, "fingerprint": the architecture's}``, beside a copy of
the spec as ``OUT/spec.yaml`` (the text that was trained, should the original change later).

A weights file whose architecture fingerprint is not the spec's is explained by the vars that differ, when
the weights know theirs (``vars`` in a weights file's metadata, or the record of the run folder it lies in):
``the weights were trained with layers=2 (this spec has layers=6): pass --set layers=2 or use the run folder OUT``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from nngraph.io import write_text_atomic

RECORD = "run.json"
SPEC_COPY = "spec.yaml"


def is_run_folder(path: str | Path) -> bool:
    """A folder ``nngraph train`` wrote (it holds ``run.json``)."""
    return Path(path).is_dir() and (Path(path) / RECORD).is_file()


def record_run(out: Path, spec: str | Path, overrides: Sequence[str], graph: Any) -> None:
    """Write ``OUT/run.json`` and ``OUT/spec.yaml`` for the run of ``spec`` with ``overrides`` that built ``graph``."""
    record = {"spec": str(Path(spec).resolve()), "overrides": list(overrides), "vars": _plain(graph.vars),
              "fingerprint": graph.fingerprint()}
    write_text_atomic(out / RECORD, json.dumps(record, indent=2) + "\n")
    write_text_atomic(out / SPEC_COPY, Path(spec).read_text(encoding="utf-8"))


def read_record(folder: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a run folder."""
    return json.loads((Path(folder) / RECORD).read_text(encoding="utf-8"))


def run_spec(folder: str | Path, overrides: Sequence[str] = ()) -> tuple[Any, Path]:
    """The graph a run trained (its recorded overrides, then ``overrides``) and the spec file it was built from.

    The copy in the folder comes first: it is the text that was trained. A spec that imports block files by
    relative path only builds where it lies, so the original is the fallback.
    """
    from nngraph.errors import SpecError
    from nngraph.spec import load_spec

    folder = Path(folder)
    record = read_record(folder)
    sets = [o for o in record["overrides"] if not o.strip().startswith("train.")] + list(overrides)
    first: SpecError | None = None
    for path in (folder / SPEC_COPY, Path(record["spec"])):
        if not path.is_file():
            continue
        try:
            return load_spec(path, sets), path
        except SpecError as err:
            first = first or err
    if first is not None:
        raise first
    raise FileNotFoundError(f"run folder '{folder}' has no {SPEC_COPY} and its spec '{record['spec']}' is gone")


def model_source(model: str | Path, overrides: Sequence[str], weights: str | Path | None,
                 network: str | None = None) -> tuple[Any, Path, Any]:
    """(graph, spec file, weights) for a command's model argument: a spec with its ``--set`` and ``--weights``,
    or a run folder (its recorded overrides, then ``overrides``; its weights unless ``--weights`` names others)."""
    if is_run_folder(model):
        graph, spec = run_spec(model, overrides)
        return graph, spec, weights if weights is not None else default_weights(Path(model), network)
    from nngraph.spec import load_spec

    return load_spec(model, list(overrides)), Path(model), weights


def default_weights(folder: Path, network: str | None = None) -> Path:
    """A run's final weights (one network's, for a run of several); the folder itself when the run has not
    finished (``export`` then takes its newest checkpoint)."""
    final = folder / f"{network or 'model'}.safetensors"
    return final if final.is_file() else folder


def run_config(model: str | Path) -> dict[str, Any]:
    """The training configuration of a run folder (``config.json``); empty for anything else."""
    path = Path(model) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if is_run_folder(model) and path.is_file() else {}


def saved_vars(file: str | Path | None, metadata: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The vars the weights in ``file`` were built with: from its metadata, else from its run folder's record."""
    if metadata and metadata.get("vars"):
        return json.loads(metadata["vars"])
    folder = run_folder_of(file)
    return read_record(folder).get("vars") if folder else None


def run_folder_of(file: str | Path | None) -> Path | None:
    """The run folder a weights file or checkpoint lies in (``OUT/model.safetensors``, ``OUT/checkpoints/...``)."""
    if file is None:
        return None
    file = Path(file)
    for folder in (file, file.parent, file.parent.parent):
        if is_run_folder(folder):
            return folder
    return None


def vars_mismatch(file: str | Path | None, metadata: dict[str, Any] | None, graph: Any) -> str | None:
    """Why weights with another fingerprint do not fit ``graph``, by the vars that differ; None when none do."""
    saved, here = saved_vars(file, metadata), _plain(graph.vars)
    if not saved:
        return None
    diff = [k for k in saved if k in here and saved[k] != here[k]]
    if not diff:
        return None
    trained = ", ".join(f"{k}={_text(saved[k])}" for k in diff)
    this = ", ".join(f"{k}={_text(here[k])}" for k in diff)
    sets = " ".join(f"--set {k}={_text(saved[k])}" for k in diff)
    folder = run_folder_of(file)
    return (f"the weights were trained with {trained} (this spec has {this}): pass {sets}"
            + (f" or use the run folder {folder}" if folder else ""))


def mismatch_message(file: str | Path, metadata: dict[str, Any] | None, graph: Any) -> str | None:
    """``'FILE' does not fit this spec: the weights were trained with layers=2 (...)``, when vars explain it."""
    why = vars_mismatch(file, metadata, graph)
    return f"'{file}' does not fit this spec: {why}" if why else None


def vars_metadata(graph: Any) -> str:
    """The graph's vars as weights-file metadata (a JSON string)."""
    return json.dumps(_plain(graph.vars), sort_keys=True)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready vars: what a record stores is what is compared with later."""
    return json.loads(json.dumps(values, default=str))


def _text(value: Any) -> str:
    """A var's value as written after ``--set NAME=``."""
    if isinstance(value, str):
        return value
    return json.dumps(value)
