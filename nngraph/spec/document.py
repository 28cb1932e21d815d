"""From a spec file to a validated, shape-inferred :class:`~nngraph.ir.Graph`.

The top level of a spec::

    nngraph: 1                 # format version (required)
    name: gpt-tiny
    vars: {d_model: 256}       # usable as ${d_model} everywhere
    imports: [lib/blocks.yaml] # block libraries (confined paths, std:NAME)
    inputs: {tokens: {shape: [batch, seq], dtype: int64}}
    blocks: {...}              # reusable subgraphs
    graph: [...]               # the nodes
    outputs: {logits: logits}  # or a list of node names
    train: {...}               # training config (checked by `nngraph train`)

or, instead of ``inputs``/``graph``/``outputs``, several named networks sharing the vars, blocks
and imports (``networks: {generator: {inputs, graph, outputs}, ...}``, see :mod:`.networks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import Diagnostic, Diagnostics, SourcePos, SpecError, choices_hint
from ..infer import infer_graph
from ..ir import Graph, GraphInput
from ..limits import DEFAULT_LIMITS, Limits
from ..types import DTYPES, TensorType
from ..yamlsrc import Map, load_yaml_file, pos_in
from .blocks import LIBRARY_KEYS, BlockTable, library_scope, link_library, load_imports, parse_blocks
from .dims import apply_relations, parse_dims
from .expand import Expander
from .references import NAME_RE, RefError, TextRef, resolve_all
from .overrides import NodeOverrides, apply_overrides
from .resolve import Scope, resolve_at

FORMAT_VERSIONS = (1,)
TOP_KEYS = ("nngraph", "name", "doc", "vars", "imports", "inputs", "dims", "blocks", "graph", "outputs", "train",
            "networks", "expect")


def load_spec(path: str | Path, overrides: list[str] | None = None, limits: Limits = DEFAULT_LIMITS,
              on_warning: Callable[[list[Diagnostic]], None] | None = None) -> Graph:
    """Load, validate and shape-infer a spec; raises :class:`SpecError` with every error found.

    ``on_warning`` gets the warnings (what ``validate`` would also print) when there are any: the describing
    commands (inspect, graph) show them rather than drop them."""
    graph, diag = check_spec(path, overrides, limits)
    errors = [d for d in diag if d.severity == "error"]
    if errors or graph is None:
        raise SpecError(errors)
    warnings = [d for d in diag if d.severity != "error"]
    if warnings and on_warning is not None:
        on_warning(warnings)
    return graph


def check_spec(path: str | Path, overrides: list[str] | None = None,
               limits: Limits = DEFAULT_LIMITS) -> tuple[Graph | None, Diagnostics]:
    """Validate a spec, returning the graph (None if it could not be built) and all diagnostics."""
    diag = Diagnostics()
    try:
        data = load_yaml_file(path, limits.yaml, display_name=str(path))
    except SpecError as err:
        diag.extend(err.diagnostics)
        return None, diag
    try:
        graph = _build(Path(path), str(path), data, overrides or [], diag, limits)
    except SpecError as err:
        diag.extend(err.diagnostics)
        return None, diag
    except RecursionError:
        diag.error(SourcePos(str(path), 1, 1), "spec structure nested too deeply", "flatten blocks and values")
        return None, diag
    return graph, diag


def _build(path: Path, display: str, data: Any, overrides: list[str], diag: Diagnostics, limits: Limits) -> Graph | None:
    top = SourcePos(display, 1, 1)
    if not isinstance(data, dict):
        diag.error(top, "a spec must be a YAML mapping", "start with 'nngraph: 1' and 'name: ...'")
        return None
    if "graph" not in data and "inputs" not in data and "networks" not in data and "blocks" in data:
        return _check_library(path, display, data, diag, limits)
    _check_top_keys(data, diag)
    _check_version(data, diag, top)
    if "name" in data and not isinstance(data["name"], str):
        diag.error(pos_in(data, "name", top), f"'name' must be a string, got {data['name']!r}", "name: my_model")
    node_overrides = apply_overrides(data, overrides, diag)
    _check_name(data, diag, top)
    scope = Scope(dict(data.get("vars") or {}) if isinstance(data.get("vars") or {}, dict) else {})
    if not isinstance(data.get("vars") or {}, dict):
        diag.error(pos_in(data, "vars", top), "'vars' must be a mapping of name -> value")
    _check_vars(data, scope, diag, top)
    blocks = load_imports(path, data.get("imports"), diag, pos_in(data, "imports", top), limits)
    own = parse_blocks(data.get("blocks"), scope, diag, pos_in(data, "blocks", top))
    blocks = link_library(own, blocks)
    name = data.get("name") if isinstance(data.get("name"), str) else path.stem
    if "networks" in data:
        from .networks import build_networks

        graph = build_networks(data, name, display, scope, blocks, diag, limits, top, build_graph, node_overrides)
    else:
        graph = build_graph(data, name, display, scope, blocks, diag, limits, top, overrides=node_overrides)
    node_overrides.report_unused(diag)
    if graph is None:
        return None
    graph.train, graph.doc = data.get("train"), data.get("doc")
    _check_train(data, graph, diag, top, names_too=not any(d.severity == "error" for d in diag))
    if not overrides and not any(d.severity == "error" for d in diag):  # --set makes another model than the published one
        from ..cost.expect import check_expect

        check_expect(data, graph, diag, top)
    return graph


def _check_name(data: dict, diag: Diagnostics, top: SourcePos) -> None:
    """The spec's ``name`` names output folders (``out/train/NAME``): a name, never a path."""
    from ..outputs import name_problem

    name = data.get("name")
    problem = name_problem(name) if isinstance(name, str) else None
    if problem:
        diag.error(pos_in(data, "name", top), f"'name' {name!r} cannot name an output folder: {problem}",
                   "use letters, digits, '_', '-' and '.', e.g. name: my_model")


def build_graph(data: Any, name: str, display: str, scope: Scope, blocks: BlockTable, diag: Diagnostics, limits: Limits,
                top: SourcePos, infer: bool = True, overrides: NodeOverrides | None = None) -> Graph | None:
    """One graph from a mapping with ``inputs``, ``graph`` and ``outputs`` (the spec itself, or one of its
    ``networks``); shape inference runs when ``infer`` and nothing so far is an error (it would only add noise)."""
    inputs = _parse_inputs(data.get("inputs"), scope, diag, pos_in(data, "inputs", top), limits.max_dim)
    facts, relations = parse_dims(data.get("dims"), scope, diag, pos_in(data, "dims", top))
    inputs = apply_relations(inputs, relations)
    if "graph" not in data:
        diag.error(top, "spec has no 'graph'", "add 'graph:' with a list of nodes")
        return None
    exp = Expander(blocks, diag, limits, set(inputs), overrides)
    if isinstance(data.get("inputs"), dict):  # inputs that failed to parse were reported: no "unknown reference" for them
        exp.broken |= {k for k in data["inputs"] if isinstance(k, str) and NAME_RE.match(k)} - set(inputs)
    names = exp.expand_list(data["graph"], "", scope, (), None, pos_in(data, "graph", top))
    for clash in sorted(names & set(inputs)):
        diag.error(inputs[clash].pos, f"graph input '{clash}' has the same name as a node", "rename one of them")
    resolve_all(exp)
    if not isinstance(data["graph"], list):  # reported: every output would be an unknown reference
        exp.broken |= {o for o in (data.get("outputs") or []) if isinstance(o, str)}
    outputs, output_pos = _parse_outputs(data.get("outputs"), exp, diag, pos_in(data, "outputs", top))
    graph = Graph(name=name, file=display, inputs=inputs, nodes=exp.nodes, outputs=outputs, output_pos=output_pos,
                  vars=_safe_vars(scope), block_uses=exp.block_uses, dim_facts=facts)
    if infer and not any(d.severity == "error" for d in diag):
        infer_graph(graph, diag, limits)
    return graph


def _check_library(path: Path, display: str, data: dict, diag: Diagnostics, limits: Limits) -> None:
    """A block library (no graph): check its keys, imports and block definitions."""
    top = SourcePos(display, 1, 1)
    for key in data:
        if key not in LIBRARY_KEYS:
            diag.error(data.pos_of_key(key) if isinstance(data, Map) else top, f"unknown key '{key}' in a block library",
                       choices_hint(str(key), LIBRARY_KEYS, "keys of a library"))
    _check_version(data, diag, top)
    load_imports(path, data.get("imports"), diag, pos_in(data, "imports", top), limits)
    parse_blocks(data.get("blocks"), library_scope(data, diag, top), diag, pos_in(data, "blocks", top))
    return None


def _check_top_keys(data: dict, diag: Diagnostics) -> None:
    for key in data:
        if key not in TOP_KEYS:
            diag.error(data.pos_of_key(key) if isinstance(data, Map) else None, f"unknown top-level key '{key}'",
                       choices_hint(str(key), TOP_KEYS, "top-level keys"))


def _check_version(data: dict, diag: Diagnostics, top: SourcePos) -> None:
    if "nngraph" not in data:
        diag.error(top, "missing format version 'nngraph'", "add 'nngraph: 1' as the first line")
    elif data["nngraph"] not in FORMAT_VERSIONS:
        diag.error(pos_in(data, "nngraph", top), f"unsupported format version {data['nngraph']!r}",
                   f"supported versions: {', '.join(map(str, FORMAT_VERSIONS))}")


def _check_vars(data: dict, scope: Scope, diag: Diagnostics, top: SourcePos) -> None:
    raw = data.get("vars") or {}
    if not isinstance(raw, dict):
        return
    for key in raw:
        kpos = raw.pos_of_key(key) if isinstance(raw, Map) else top
        if not isinstance(key, str) or not NAME_RE.match(key):
            diag.error(kpos, f"invalid var name {key!r}", "var names are identifiers")
            continue
        resolve_at(f"${{{key}}}", scope, pos_in(raw, key, top), diag, where=f"var '{key}'")


def _safe_vars(scope: Scope) -> dict[str, Any]:
    try:
        return scope.resolved()
    except Exception:  # noqa: BLE001 - already reported by _check_vars
        return {}


def _parse_inputs(raw: Any, scope: Scope, diag: Diagnostics, pos: SourcePos,
                  max_dim: int = DEFAULT_LIMITS.max_dim) -> dict[str, GraphInput]:
    if raw is None:
        diag.error(pos, "spec has no 'inputs'", "inputs: {x: {shape: [batch, 784], dtype: float32}}")
        return {}
    if not isinstance(raw, dict):
        diag.error(pos, "'inputs' must be a mapping of name -> {shape, dtype}")
        return {}
    out: dict[str, GraphInput] = {}
    for name, spec in raw.items():
        ipos = raw.pos_of_key(name) if isinstance(raw, Map) else pos
        if not isinstance(name, str) or not NAME_RE.match(name):
            diag.error(ipos, f"invalid input name {name!r}", "input names are identifiers")
            continue
        spec = resolve_at(spec, scope, pos_in(raw, name, pos), diag, f"input '{name}'")
        parsed = _parse_input(name, spec, diag, ipos, max_dim)
        if parsed:
            out[name] = parsed
    return out


def _parse_input(name: str, spec: Any, diag: Diagnostics, ipos: SourcePos,
                 max_dim: int = DEFAULT_LIMITS.max_dim) -> GraphInput | None:
    if not isinstance(spec, dict):
        diag.error(ipos, f"input '{name}' must be a mapping with 'shape' and 'dtype'", "x: {shape: [batch, 10], dtype: float32}")
        return None
    for key in spec:
        if key not in ("shape", "dtype", "optional", "doc"):
            diag.error(spec.pos_of_key(key) if isinstance(spec, Map) else ipos, f"unknown key '{key}' in input '{name}'",
                       choices_hint(str(key), ("shape", "dtype", "optional", "doc"), "keys of an input"))
    shape = spec.get("shape")
    spos = pos_in(spec, "shape", ipos)
    if not isinstance(shape, list):
        diag.error(spos, f"input '{name}' needs 'shape' as a list of dims", "shape: [batch, seq] (names are symbolic dims)")
        return None
    dims = []
    for i, d in enumerate(shape):
        if isinstance(d, bool) or not (isinstance(d, int) and d >= 0 or isinstance(d, str) and NAME_RE.match(d)):
            diag.error(pos_in(shape, i, spos), f"dim {i} of input '{name}' must be a positive integer or a symbolic name, got {d!r}")
            return None
        if d == 0:  # an empty tensor: every value computed from it is empty too, and some kernels fail on it
            diag.error(pos_in(shape, i, spos), f"dim {i} of input '{name}' is 0: the input would always be empty",
                       "give its real size (at least 1), or a symbolic name like batch")
            return None
        if isinstance(d, int) and d > max_dim:
            diag.error(pos_in(shape, i, spos), f"dim {i} of input '{name}' is {d:,}, more than the limit of {max_dim:,}",
                       "check the size; a real tensor dim is far smaller")
            return None
        dims.append(d)
    dtype = spec.get("dtype", "float32")
    if dtype not in DTYPES:
        diag.error(pos_in(spec, "dtype", ipos), f"unknown dtype {dtype!r} for input '{name}'", choices_hint(str(dtype), DTYPES, "dtypes"))
        return None
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        diag.error(pos_in(spec, "optional", ipos), f"'optional' of input '{name}' must be true or false")
        optional = False
    return GraphInput(name, TensorType(tuple(dims), dtype), ipos, optional)


def _parse_outputs(raw: Any, exp: Expander, diag: Diagnostics, pos: SourcePos) -> tuple[dict, dict]:
    if raw is None:
        diag.error(pos, "spec has no 'outputs'", "outputs: {logits: fc2}  or  outputs: [fc2]")
        return {}, {}
    if isinstance(raw, str):
        items = [(raw.rsplit(".", 1)[-1], raw, pos)]
    elif isinstance(raw, list):
        items = [(str(r).rsplit(".", 1)[-1], r, pos_in(raw, i, pos)) for i, r in enumerate(raw)]
    elif isinstance(raw, dict):
        items = [(k, v, pos_in(raw, k, pos)) for k, v in raw.items()]
    else:
        diag.error(pos, "'outputs' must be a mapping (name -> node) or a list of node names")
        return {}, {}
    outputs, output_pos = {}, {}
    for out_name, ref, opos in items:
        if not isinstance(ref, str) or not isinstance(out_name, str):
            diag.error(opos, f"output {out_name!r} must name a node, got {ref!r}")
            continue
        if out_name in outputs:
            diag.error(opos, f"duplicate output name '{out_name}'", "give each output a unique name with the mapping form")
            continue
        try:
            resolved = exp.resolve_target(TextRef("", ref, opos))
        except RefError as err:
            if err.silent:
                pass
            elif err.pos is not None:
                diag.error(err.pos, err.message, err.hint)
            else:
                diag.error(opos, f"output '{out_name}': {err.message}", err.hint)
            continue
        if resolved is None:
            diag.error(opos, f"output '{out_name}' refers to an unbound optional input")
            continue
        outputs[out_name] = resolved
        output_pos[out_name] = opos
    return outputs, output_pos


def _check_train(data: dict, graph: Graph, diag: Diagnostics, top: SourcePos, names_too: bool) -> None:
    """The ``train:`` section (nngraph/train_schema.py), so ``validate`` reports its errors too."""
    if data.get("train") is not None:
        from ..train_schema import check_train

        check_train(data["train"], diag, pos_in(data, "train", top), graph.vars, graph if names_too else None)
