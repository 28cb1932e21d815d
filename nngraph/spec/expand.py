"""Expanding node lists and block uses into flat IR nodes with resolved references.

Every node list (the top-level ``graph`` or a block body) lives in a
*namespace*: the dotted prefix of its instance (``""``, ``"enc."``,
``"layers.3."``). A node ``attn`` there becomes IR node ``layers.3.attn``.
References are written relative to their namespace (``attn``, ``lstm.h``)
and resolved once everything is expanded, through an alias table that maps
block inputs and block uses to what they stand for. This allows forward
references in any order; cycles are found later by the topological sort.
Reference resolution lives in :mod:`.references`, blocks used as functions in :mod:`.functions`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import Diagnostics, SourcePos, choices_hint
from ..expr import shown as shown_value
from ..initializers import InitError, check_init
from ..ir import BlockUse, Node
from ..limits import Limits
from ..params import check_value
from ..registry import OpDef, lookup, registry
from ..yamlsrc import Map, Seq, pos_in
from .functions import build_subgraphs
from .overrides import NodeOverride, NodeOverrides
from .references import NAME_RE, Alias, QualRef, References, Target, TextRef
from .resolve import UNRESOLVED, Scope, resolve_at
from .sharing import mark_shared, share_of

if TYPE_CHECKING:
    from .blocks import BlockTable

MAX_BLOCK_DEPTH = 64
NODE_META_KEYS = ("name", "op", "in", "init", "doc")
BLOCK_USE_KEYS = ("name", "block", "in", "repeat", "with", "share", "doc")
BLOCK_DEF_KEYS = ("inputs", "outputs", "params", "nodes", "doc")


@dataclass
class BlockDef:
    """A parsed block definition (not yet expanded)."""

    name: str
    inputs: list[str]
    optional: set[str]
    outputs: dict[str, str]
    params: Map
    nodes: Seq
    pos: SourcePos
    scope: Scope
    output_pos: dict[str, SourcePos] = field(default_factory=dict)
    library: Any = None  # the BlockTable of the file that defines the block (set by link_library)
    inputs_ok: bool = True  # False when its 'inputs' could not be parsed (reported where they are written)
    defined_at: SourcePos | None = None  # where its name is written, for the use chain of errors inside it


def _copy_map(value: dict) -> Map:
    """A shallow copy of a mapping that keeps the positions of its keys and values."""
    out = Map(value, pos=getattr(value, "pos", None))
    if isinstance(value, Map):
        out.key_pos, out.value_pos = dict(value.key_pos), dict(value.value_pos)
    return out


class Expander(References):
    """Turns node lists and block uses into IR nodes, then resolves references."""

    def __init__(self, blocks: BlockTable, diag: Diagnostics, limits: Limits, graph_inputs: set[str],
                 overrides: NodeOverrides | None = None):
        self._tables = [blocks]
        self.overrides = overrides or NodeOverrides()
        self.diag = diag
        self.limits = limits
        self.graph_inputs = graph_inputs
        self.ops = registry()
        self.nodes: dict[str, Node] = {}
        self.aliases: dict[str, Alias] = {}
        self.pending: list[tuple[Node, dict[str, Target], list[Target], str]] = []
        self.block_uses: list[BlockUse] = []
        self._stack: list[BlockDef] = []
        self._too_big = False
        self.copies: dict[str, list[str]] = {}  # block use -> the names of its copies (itself, or NAME.0 ...)
        # names whose definition failed (already reported): references to them are not reported again
        self.broken: set[str] = set()
        self._lenient: set[str] = set()  # namespaces of blocks whose inputs failed: unknown names there are not reported

    # ----- node lists ---------------------------------------------------
    def expand_list(self, entries: Any, namespace: str, scope: Scope, scope_path: tuple[str, ...],
                    block: str | None, pos: SourcePos) -> set[str]:
        """Expand one node list; returns the local names it defines."""
        if not isinstance(entries, list):
            self.diag.error(pos, f"expected a list of nodes, got {type(entries).__name__}",
                            "write nodes as a YAML list: '- {name: fc, op: linear, in: x, out: 10}'")
            return set()
        local: dict[str, SourcePos] = {}
        for i, entry in enumerate(entries):
            if self._too_big:
                break  # already reported; expanding the rest would only cost time
            epos = pos_in(entries, i, pos)
            if not isinstance(entry, dict):
                self.diag.error(epos, "a node must be a mapping with 'name' and 'op' (or 'block')")
                continue
            name = self._node_name(entry, epos, local)
            if name is None:
                raw_name = entry.get("name")
                if isinstance(raw_name, str) and NAME_RE.match(raw_name) and raw_name not in local:
                    self.broken.add(namespace + raw_name)
                continue
            local[name] = entry.pos_of("name") if isinstance(entry, Map) else epos
            if "block" in entry:
                self._expand_block_use(entry, name, namespace, scope, scope_path, epos)
            else:
                self._add_op_node(entry, name, namespace, scope, scope_path, block, epos)
        return set(local)

    def _node_name(self, entry: dict, epos: SourcePos, local: dict[str, SourcePos]) -> str | None:
        name = entry.get("name")
        npos = entry.pos_of("name") if isinstance(entry, Map) else epos
        if name is None:
            self.diag.error(epos, "node has no 'name'", "every node needs a unique name: name: fc1")
            return None
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.diag.error(npos, f"invalid node name {name!r}",
                            "names are identifiers: letters, digits and '_', not starting with a digit, no dots")
            return None
        if name in local:
            self.diag.error(npos, f"duplicate node name '{name}' (first defined at {local[name]})",
                            "every node in a graph or block needs a unique name")
            return None
        if "op" in entry and "block" in entry:
            self.diag.error(npos, f"node '{name}' has both 'op' and 'block'", "a node is either a primitive (op) or a block use")
            return None
        if "op" not in entry and "block" not in entry:
            self.diag.error(npos, f"node '{name}' has neither 'op' nor 'block'", "add 'op: <primitive>' or 'block: <block name>'")
            return None
        return name

    # ----- op nodes -----------------------------------------------------
    def _add_op_node(self, entry: dict, name: str, namespace: str, scope: Scope, scope_path: tuple[str, ...],
                     block: str | None, epos: SourcePos) -> None:
        op_name = entry.get("op")
        opos = pos_in(entry, "op", epos)
        opdef = self.ops.get(op_name) if isinstance(op_name, str) else None
        if opdef is None:
            self.diag.error(opos, f"unknown op {op_name!r} in node '{name}'",
                            choices_hint(str(op_name), self.ops.keys(), "known ops"))
            self.broken.add(namespace + name)
            return
        if self._count_node(epos):
            return
        fq = namespace + name
        entry = self._overridden(entry, self.overrides.offer(fq, block, name), None)
        params, param_pos = self._resolve_params(entry, opdef, name, scope, epos)
        node = Node(name=fq, op=op_name, inputs={}, params=params, pos=epos, param_pos=param_pos,
                    scope=scope_path, block=block,
                    meta={"doc": entry["doc"]} if "doc" in entry else {})
        if self.diag.context:
            node.meta["uses"] = self.diag.context  # the use chain, for errors found later (shape inference)
        if "init" in entry:
            node.meta["init"] = self._resolve_init(entry, name, opdef, scope, epos)
        inputs, variadic = self._bind_inputs(entry, opdef.input_names, opdef.required_inputs, opdef.variadic,
                                             namespace, f"op '{op_name}'", name, epos)
        node.input_pos = {k: v.pos for k, v in inputs.items() if isinstance(v, TextRef)}
        node.input_pos |= {f"{opdef.variadic}[{i}]": v.pos for i, v in enumerate(variadic) if isinstance(v, TextRef)}
        self.nodes[fq] = node
        self.pending.append((node, inputs, variadic, namespace))
        if getattr(opdef, "subgraphs", None):
            build_subgraphs(self, node, opdef)

    def _resolve_params(self, entry: dict, opdef: OpDef, name: str, scope: Scope,
                        epos: SourcePos) -> tuple[dict[str, Any], dict[str, SourcePos]]:
        params: dict[str, Any] = {}
        param_pos: dict[str, SourcePos] = {}
        for key, raw in entry.items():
            if key in NODE_META_KEYS:
                continue
            kpos = entry.pos_of_key(key) if isinstance(entry, Map) else epos
            if key not in opdef.params:
                self.diag.error(kpos, f"unknown parameter '{key}' for op '{opdef.name}' (node '{name}')",
                                choices_hint(str(key), opdef.params.keys(), f"parameters of {opdef.name}")
                                if opdef.params else f"op '{opdef.name}' takes no parameters")
                continue
            vpos = pos_in(entry, key, epos)
            value = resolve_at(raw, scope, vpos, self.diag, where=f"parameter '{key}'", default=lambda: UNRESOLVED)
            if value is UNRESOLVED:
                param_pos[key] = vpos  # given but unresolvable: already reported, not "missing"
                continue
            value, problems = check_value(opdef.params[key], value)
            for sub, problem in problems:
                self.diag.error(vpos, f"parameter '{key}'{'.' + sub if sub else ''} of node '{name}' ({opdef.name}): {problem}",
                                opdef.params[key].doc)
            params[key] = value
            param_pos[key] = vpos
        for key, p in opdef.params.items():
            if key in params or key in param_pos:
                continue
            if p.required:
                self.diag.error(epos, f"node '{name}' ({opdef.name}) is missing required parameter '{key}'",
                                f"{key}: {p.doc}")
            else:
                params[key] = p.default
        return params, param_pos

    def _resolve_init(self, entry: dict, name: str, opdef: OpDef, scope: Scope, epos: SourcePos) -> Any:
        """The node's ``init:`` with its expressions resolved and its initializers checked (names, arguments,
        finite numbers); which parameters it names needs their shapes, and is the compiler's check."""
        ipos = pos_in(entry, "init", epos)
        value = resolve_at(entry["init"], scope, ipos, self.diag, where="init", default=lambda: UNRESOLVED)
        if value is UNRESOLVED:
            return None
        try:
            check_init(value)
        except InitError as err:
            self.diag.error(ipos, f"node '{name}' ({opdef.name}): {err.message}", err.hint)
        return value

    def _count_node(self, pos: SourcePos) -> bool:
        if len(self.nodes) >= self.limits.max_nodes:
            if not self._too_big:
                self.diag.error(pos, f"graph expands to more than {self.limits.max_nodes} nodes",
                                "lower 'repeat' counts, or raise Limits(max_nodes=...) in the Python API")
            self._too_big = True
        return self._too_big

    # ----- inputs -------------------------------------------------------
    def _bind_inputs(self, entry: dict, names: list[str], required: list[str], variadic: str | None,
                     namespace: str, what: str, node_name: str, epos: SourcePos) -> tuple[dict[str, Target], list[Target]]:
        raw = entry.get("in")
        ipos = pos_in(entry, "in", epos)
        bound: dict[str, Target] = {}
        extra: list[Target] = []
        if raw is None:
            items: list[tuple[str | None, Any, SourcePos]] = []
        elif isinstance(raw, str):
            items = [(None, raw, ipos)]
        elif isinstance(raw, list):
            items = [(None, v, pos_in(raw, i, ipos)) for i, v in enumerate(raw)]
        elif isinstance(raw, dict):
            items = [(k, v, pos_in(raw, k, ipos)) for k, v in raw.items()]
        else:
            self.diag.error(ipos, f"'in' of node '{node_name}' must be a name, a list of names or a mapping")
            items = []
        positional = [n for n in names if n != variadic]
        misnamed = False
        for key, value, vpos in items:
            if not isinstance(value, str):
                self.diag.error(vpos, f"input reference must be a string, got {value!r}", "write the name of a node or graph input")
                continue
            target = TextRef(namespace, value, vpos)
            if key is None:
                if len(bound) < len(positional):
                    bound[positional[len(bound)]] = target
                elif variadic:
                    extra.append(target)
                else:
                    self.diag.error(vpos, f"too many inputs for node '{node_name}': {what} takes {len(positional)} "
                                    f"({', '.join(positional) or 'none'}), got {len(items)}",
                                    "remove the extra input")
                    break
            elif key in positional:
                bound[key] = target
            elif key == variadic:
                extra.append(target)
            else:
                self.diag.error(vpos, f"unknown input '{key}' for node '{node_name}'", choices_hint(str(key), names, "inputs"))
                misnamed = True
        missing = [n for n in required if n not in bound]
        if missing and not misnamed:  # a misnamed input is most likely the missing one: one error, not two
            self.diag.error(ipos if raw is not None else epos,
                            f"node '{node_name}' is missing input(s) {', '.join(missing)}: {what} takes "
                            f"{len(required)} required input(s) ({', '.join(required)}), got {len(bound)}",
                            "connect them with 'in: [a, b]' or 'in: {name: node}'")
        if variadic and len(extra) + len(bound) < 1:
            self.diag.error(ipos, f"node '{node_name}' needs at least one input", "in: [a, b, ...]")
        return bound, extra

    # ----- block uses ---------------------------------------------------
    def _expand_block_use(self, entry: dict, name: str, namespace: str, scope: Scope, scope_path: tuple[str, ...],
                          epos: SourcePos) -> None:
        block_name = entry.get("block")
        bpos = pos_in(entry, "block", epos)
        table = self._tables[-1]
        bdef = table.get(block_name) if isinstance(block_name, str) else None
        if bdef is None:
            self.diag.error(bpos, f"unknown block {block_name!r} in node '{name}'",
                            choices_hint(str(block_name), table.keys(), "defined blocks"))
            self.broken.add(namespace + name)
            return
        if any(b is bdef for b in self._stack):
            chain = " -> ".join([b.name for b in self._stack] + [bdef.name])
            self.diag.error(bpos, f"recursive block: {chain}", "a block cannot use itself, directly or through another block")
            self.broken.add(namespace + name)
            return
        if len(self._stack) >= MAX_BLOCK_DEPTH:
            self.diag.error(bpos, f"blocks nested deeper than {MAX_BLOCK_DEPTH} levels (block '{bdef.name}' in node '{name}')",
                            "flatten the block hierarchy")
            self.broken.add(namespace + name)
            return
        for key in entry:
            if key not in BLOCK_USE_KEYS:
                self.diag.error(entry.pos_of_key(key) if isinstance(entry, Map) else epos,
                                f"unknown key '{key}' in block use '{name}'",
                                choices_hint(str(key), BLOCK_USE_KEYS, "keys of a block use") +
                                "; block parameters go under 'with:'")
        hits = self.overrides.offer(namespace + name, self._stack[-1].name if self._stack else None, name)
        entry = self._overridden(entry, hits, "with")
        repeat = self._repeat_count(entry, scope, epos)
        share, source = share_of(self, entry, name, namespace, scope, repeat, epos)
        with_args = self._with_args(entry, bdef, scope, epos)
        fq = namespace + name
        if bdef.inputs_ok:
            inputs, _ = self._bind_inputs(entry, bdef.inputs, [i for i in bdef.inputs if i not in bdef.optional], None,
                                          namespace, f"block '{block_name}'", name, epos)
        else:
            inputs = {}
            self._lenient.add(fq + ".")
        if repeat == 0:
            self.block_uses.append(BlockUse(fq, block_name, 0, epos, share))
            self._skip_block(entry, bdef, fq, inputs, with_args, namespace, scope_path, epos)
            return
        self.block_uses.append(BlockUse(fq, block_name, repeat or 1, epos, share or source is not None,
                                        source[0] if source else None))
        copies = [f"{fq}.{i}" for i in range(repeat)] if repeat is not None else [fq]
        self.copies[fq] = copies
        prev: str | None = None
        self._stack.append(bdef)
        self._tables.append(bdef.library or table)
        try:
            for i, copy in enumerate(copies):
                if self._too_big:
                    break  # the node limit was hit and reported: stop expanding copies
                bound = dict(inputs)
                if prev is not None and bdef.inputs:
                    bound[bdef.inputs[0]] = QualRef(prev)  # chain: copy i's first output feeds copy i+1
                before = len(self.nodes)
                with self._in_use(bdef, name, i if repeat is not None else None, epos, with_args):
                    self._instantiate(bdef, copy, bound, with_args, i, epos)
                added = len(self.nodes) - before
                if i == 0 and len(copies) > 1 and not self._too_big:
                    self._check_expansion(name, len(copies), added, pos_in(entry, "repeat", epos))
                if share and i > 0:
                    mark_shared(self, copies[0], copy, list(islice(reversed(self.nodes), added)),
                                      pos_in(entry, "share", epos))
                elif source is not None:
                    mark_shared(self, self.copies[source[0]][i], copy, list(islice(reversed(self.nodes), added)),
                                      source[1])
                prev = copy
        finally:
            self._stack.pop()
            self._tables.pop()
        if repeat is not None:
            last = copies[-1]
            outs: dict[str | None, Target] = {o: QualRef(last, o) for o in bdef.outputs}
            outs[None] = QualRef(last, next(iter(bdef.outputs), None))
            self.aliases[fq] = Alias(outs, epos)

    @contextmanager
    def _in_use(self, bdef: BlockDef, name: str, index: int | None, epos: SourcePos,
                with_args: dict[str, Any]) -> Iterator[None]:
        """While a copy of ``bdef`` expands, errors carry the use chain: ``in block 'down' (x.yaml:12:5), used
        as 'enc3' at x.yaml:52:5 with width=16`` (innermost first; nested uses add theirs)."""
        where = f" ({bdef.defined_at})" if bdef.defined_at else ""
        copy = f" (copy {index})" if index is not None else ""
        given = ", ".join(f"{k}={shown_value(v)}" for k, v in with_args.items() if v is not UNRESOLVED)
        note = f"in block '{bdef.name}'{where}, used as '{name}'{copy} at {epos}" + (f" with {given}" if given else "")
        saved = self.diag.context
        self.diag.context = (note, *saved)
        try:
            yield
        finally:
            self.diag.context = saved

    @staticmethod
    def _overridden(entry: dict, hits: list[NodeOverride], under: str | None) -> dict:
        """``entry`` with the ``--set`` overrides ``hits`` written in (under its ``with:`` for a block use), each
        value positioned at its ``--set`` so errors in it point there; the document itself is left as it is."""
        if not hits:
            return entry
        out = _copy_map(entry)
        target = out
        if under is not None:
            target = _copy_map(out.get(under) if isinstance(out.get(under), dict) else Map(pos=hits[0].pos))
            out[under] = target
            out.key_pos.setdefault(under, hits[0].pos)
        for o in hits:
            target[o.param] = o.value
            target.key_pos[o.param] = target.value_pos[o.param] = o.pos
        return out

    def _check_expansion(self, name: str, copies: int, per_copy: int, pos: SourcePos) -> None:
        """Refuse a repeat whose copies would pass the node limit, from the size of its first copy."""
        estimate = len(self.nodes) + (copies - 1) * per_copy
        if estimate > self.limits.max_nodes:
            self.diag.error(pos, f"'{name}' would expand to about {copies * per_copy:,} nodes ({copies} copies of "
                            f"{per_copy}), more than the limit of {self.limits.max_nodes:,} nodes in a graph",
                            "lower 'repeat' counts, or raise Limits(max_nodes=...) in the Python API")
            self._too_big = True

    def _repeat_count(self, entry: dict, scope: Scope, epos: SourcePos) -> int | None:
        if "repeat" not in entry:
            return None
        rpos = pos_in(entry, "repeat", epos)
        value = resolve_at(entry["repeat"], scope, rpos, self.diag, "repeat")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            if value is not None:
                self.diag.error(rpos, f"'repeat' must be a non-negative integer, got {value!r}")
            return 1
        if value > self.limits.max_repeat:
            self.diag.error(rpos, f"repeat {value} exceeds the limit of {self.limits.max_repeat}",
                            "use fewer copies, or raise Limits(max_repeat=...) in the Python API")
            return 1
        return value

    def _skip_block(self, entry: dict, bdef: BlockDef, fq: str, inputs: dict[str, Target], with_args: dict[str, Any],
                    namespace: str, scope_path: tuple[str, ...], epos: SourcePos) -> None:
        """``repeat: 0``: one ``skipped_block`` node, the identity on the block's first input (its shape
        rule checks that the block keeps that input's shape; nngraph/ops/block_skip.py)."""
        rpos = pos_in(entry, "repeat", epos)
        bound = [i for i in bdef.inputs if i in inputs]
        if not bdef.inputs_ok or len(bdef.outputs) != 1 or not bound or bound[0] != bdef.inputs[0]:
            why = (f"has {len(bdef.outputs)} outputs" if len(bdef.outputs) != 1 else "its first input is not connected")
            if bdef.inputs_ok:
                self.diag.error(rpos, f"repeat: 0 makes '{fq}' the identity on the first input of block '{bdef.name}', "
                                f"but the block {why}", "repeat: 0 needs a block with one output and its first input connected")
            self.broken.add(fq)
            return
        if self._count_node(epos):
            return
        opdef = lookup("skipped_block")
        spec = {"block": bdef.name, "with": {k: v for k, v in with_args.items() if v is not UNRESOLVED}}
        node = Node(name=fq, op="skipped_block", inputs={}, params={"block": spec, "bound": bound}, pos=rpos,
                    param_pos={"block": rpos, "bound": rpos}, scope=scope_path, block=self._stack[-1].name if self._stack else None)
        self.nodes[fq] = node
        self.pending.append((node, {}, [inputs[i] for i in bound], namespace))
        build_subgraphs(self, node, opdef)

    def _with_args(self, entry: dict, bdef: BlockDef, scope: Scope, epos: SourcePos) -> dict[str, Any]:
        raw = entry.get("with") or {}
        wpos = pos_in(entry, "with", epos)
        if not isinstance(raw, dict):
            self.diag.error(wpos, "'with' must be a mapping of block parameters")
            return {}
        out = {}
        for key, value in raw.items():
            kpos = raw.pos_of_key(key) if isinstance(raw, Map) else wpos
            if key not in bdef.params:
                self.diag.error(kpos, f"block '{bdef.name}' has no parameter '{key}'",
                                choices_hint(str(key), bdef.params.keys(), f"parameters of {bdef.name}")
                                if bdef.params else f"block '{bdef.name}' declares no params")
                continue
            out[key] = resolve_at(value, scope, pos_in(raw, key, wpos), self.diag, f"block parameter '{key}'",
                                  default=lambda: UNRESOLVED)
        return out

    def _instantiate(self, bdef: BlockDef, fq: str, bound: dict[str, Target],
                     with_args: dict[str, Any], index: int, epos: SourcePos) -> None:
        """Expand one copy of a block; its body sees its defining file's vars, its params and ``index``."""
        for inp in bdef.inputs:
            self.aliases[f"{fq}.{inp}"] = Alias({None: bound.get(inp)}, epos)
        params = {k: v for k, v in bdef.params.items()}
        for key, o in self.overrides.defaults(bdef.name, bdef.params).items():
            if key in bdef.params:
                params[key] = o.value
            else:
                self.diag.error(o.pos, f"block '{bdef.name}' has no parameter '{key}'",
                                choices_hint(key, bdef.params.keys(), f"parameters of {bdef.name}")
                                if bdef.params else f"block '{bdef.name}' declares no params")
        params.update({k: v for k, v in with_args.items() if v is not UNRESOLVED})
        inner = bdef.scope.child({**params, "index": index})
        inner.mark_failed({k for k, v in with_args.items() if v is UNRESOLVED})
        path = tuple(fq.split("."))
        self.expand_list(bdef.nodes, fq + ".", inner, path, bdef.name, bdef.pos)
        if not bdef.outputs:
            self.broken.add(fq)  # the block definition's missing outputs are reported where it is defined
            return
        outs: dict[str | None, Target] = {}
        for out_name, local in bdef.outputs.items():
            outs[out_name] = TextRef(fq + ".", local, bdef.output_pos.get(out_name, bdef.pos))
        outs[None] = next(iter(outs.values()), None)
        self.aliases[fq] = Alias(outs, epos)
