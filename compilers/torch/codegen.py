"""IR -> Python source of an ``nn.Module`` class (the torch.fx approach: generate code, then ``exec`` it).

The generated class (see :func:`generate`) has

* ``__init__(self, seed=0)``: builds the containers (``nn.ModuleList`` for a
  repeated block, :class:`~nngraph.compilers.torch.module.Scope` for a block use or a
  copy) and one ``nng.make(...)`` call per node with learnable state, its
  params, types and resolved initializers written out as literals; copies with
  ``share: true`` are assigned the first copy's module (the same object);
* ``forward(self, <graph inputs>)``: one statement per node in dependency
  order, variables named after the nodes (``layers.3.attn`` ->
  ``layers_3_attn``), preceded by a comment ``# <file:line:col> <node> (<op>)``
  (the run-time error notes read it) and followed by the inferred shape. Graph
  inputs are the arguments (required ones in spec order, then optional ones,
  defaulting to None); it returns the tensor for a single output, else a dict
  ``{output name: tensor}`` in spec order. As torch.fx's generated code does, a
  node's value that is not a graph output is released right after the
  statement that reads it last (``del a, b`` on the next line; an output nobody
  reads, e.g. an LSTM's unused ``c``, right after its own statement), so
  intermediates do not live until ``return`` (peak memory of inference).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nngraph.errors import Diagnostic, SpecError
from nngraph.ir import Graph, Node, Ref
from nngraph.types import Dim

from . import blocks
from .init import InitError, param_shapes, resolve_inits
from .module import Block, GraphModule, Scope
from .registry import Emit, NodeCtx, TorchOpDef, impls
from .source import (Namer, attr_path, class_name, display_path, display_pos, free_after_last_use, literal, stable_order,
                     type_comment)

_MODULE_ATTRS = set(dir(nn.Module()))  # includes instance attributes such as 'training'
_CLASH = {"": _MODULE_ATTRS | set(dir(GraphModule)), "scope": _MODULE_ATTRS | set(dir(Scope)) | set(dir(Block))}


class _SkipMetaInit(TorchFunctionMode):
    """Skip value-filling in-place ops on meta tensors while a factory runs on the meta device.

    The values of meta tensors do not exist, and some meta kernels (e.g. ``normal_``)
    import torch._dynamo on first use (~3 s), which building a model must not cost.
    """

    _SKIP = frozenset(getattr(torch.Tensor, name) for name in (
        "normal_", "uniform_", "fill_", "zero_", "random_", "exponential_", "erfinv_", "clamp_", "mul_", "add_",
        "sub_", "div_", "copy_", "bernoulli_", "log_normal_", "cauchy_", "geometric_"))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._SKIP or getattr(func, "__module__", None) == "torch.nn.init":
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


@dataclass
class _Built:
    """What the compiler knows about one node's learnable state."""

    path: str
    inits: dict[str, Any] = field(default_factory=dict)
    shared_with: str | None = None


@dataclass
class Generated:
    """The generated source and what it defines."""

    source: str
    class_name: str
    filename: str


class _Compiler:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.impls = impls()
        self.errors: list[Diagnostic] = []
        self.order = stable_order(graph)
        self.namer = Namer()
        self.args: dict[str, str] = {}  # graph input -> forward argument
        self.vars: dict[tuple[str, str | None], str] = {}  # (node, output) -> variable
        self.built: dict[str, _Built] = {}
        consumers: dict[str, list[tuple[str, dict]]] = {}
        for node in graph.nodes.values():
            for ref in node.all_refs():
                consumers.setdefault(ref.node, []).append((node.op, dict(node.params)))
        self.consumers = consumers
        self.class_name = class_name(graph)
        self.ctxs: dict[str, NodeCtx] = {}
        self.block_classes: list[tuple[str, str]] = []  # (class name, text with {CLS}) of block uses as classes
        self.uses: dict[str, blocks.Use] = {}

    # ----- helpers ---------------------------------------------------------
    def ctx(self, node: Node) -> NodeCtx:
        g = self.graph
        return NodeCtx(name=node.name, op=node.op, params=dict(node.params),
                       inputs={k: (g.type_of(r) if r is not None else None) for k, r in node.inputs.items()},
                       variadic=[g.type_of(r) for r in node.variadic], outputs=dict(node.outputs),
                       consumers=list(self.consumers.get(node.name, [])), meta=node.meta)

    def var(self, ref: Ref) -> str:
        if ref.node in self.graph.inputs:
            return self.args[ref.node]
        node = self.graph.nodes[ref.node]
        return self.vars[(ref.node, ref.output or next(iter(node.outputs)))]

    def dim_expr(self, node: Node, dim: Dim) -> str | None:
        if isinstance(dim, int):
            return str(dim)
        candidates = [r for r in node.all_refs()]
        candidates += [Ref(n) for n, gi in self.graph.inputs.items() if not gi.optional]
        for ref in candidates:
            t = self.graph.type_of(ref)
            if t is not None and dim in t.shape:
                return f"{self.var(ref)}.shape[{t.shape.index(dim)}]"
        return None

    def fail(self, node: Node, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(node.pos, f"node '{node.name}' ({node.op}): {message}", hint,
                                      notes=node.meta.get("uses", ())))

    # ----- learnable state -------------------------------------------------
    def build_state(self, node: Node, impl: TorchOpDef, ctx: NodeCtx) -> None:
        user_init = node.meta.get("init")
        if node.shares_params_with:
            first = self.built.get(node.shares_params_with)
            if first is not None:
                self.built[node.name] = _Built(attr_path(node.name), shared_with=node.shares_params_with)
            return
        obj = None
        if impl.module is not None:
            try:
                with torch.device("meta"), _SkipMetaInit():
                    obj = impl.module(ctx)  # only to learn its parameter names and shapes
            except (NotImplementedError, RuntimeError):
                obj = impl.module(ctx)
        if obj is None:
            if user_init is not None:
                self.fail(node, "has no parameters, so 'init' does not apply", "remove 'init' from this node")
            return
        if not isinstance(obj, (nn.Module, nn.Parameter, nn.Buffer)):
            raise TypeError(f"torch factory of op '{node.op}' returned {type(obj).__name__}")
        try:
            inits = resolve_inits(impl.default_init(ctx), user_init, param_shapes(obj))
        except InitError as err:
            self.fail(node, err.message, err.hint)
            return
        self.built[node.name] = _Built(attr_path(node.name), inits)

    def check_names(self) -> None:
        """Module attributes must not shadow nn.Module members (``self.train`` would be the method)."""
        for name in self.built:
            parts = name.split(".")
            for depth, part in enumerate(parts):
                if part.isdigit():
                    continue
                clash = _CLASH["" if depth == 0 else "scope"]
                if part in clash:
                    node = self.graph.nodes[name]
                    where = "node" if depth == len(parts) - 1 else "block use"
                    self.errors.append(Diagnostic(node.pos, f"{where} name '{part}' (in '{name}') clashes with the "
                                                  f"torch.nn.Module attribute '{part}'",
                                                  f"rename it, e.g. '{part}_'"))
                    return

    # ----- code --------------------------------------------------------------
    def containers(self, names: list[str], instances: dict[str, str]) -> list[str]:
        """``__init__`` lines creating the containers of ``names`` (dotted, in order): a ModuleList for numbered
        copies, a Scope otherwise, and ``instances`` (path -> constructor expression) for block uses generated as
        classes (a name inside one stands for it)."""
        tree: dict[str, dict[str, Any]] = {}
        for name in names:
            level = tree
            for part in name.split(".")[:-1]:
                level = level.setdefault(part, {})
        lines: list[str] = []

        def walk(level: dict[str, Any], prefix: str) -> None:
            for part, children in level.items():
                path = f"{prefix}.{part}" if prefix else part
                if path in instances:
                    lines.append(f"{attr_path(path)} = {instances[path]}")
                elif children and all(k.isdigit() for k in children):
                    n = max(int(k) for k in children) + 1
                    kids = [f"{path}.{k}" for k in range(n)]
                    ctors = {instances.get(k, "").replace(repr(k), "f'" + path + ".{i}'") for k in kids}
                    if len(ctors) == 1 and "" not in ctors:
                        lines.append(f"{attr_path(path)} = nn.ModuleList([{ctors.pop()} for i in range({n})])")
                        continue
                    lines.append(f"{attr_path(path)} = nn.ModuleList([nng.Scope() for _ in range({n})])")
                    for k, grand in sorted(children.items(), key=lambda kv: int(kv[0])):
                        walk({k: grand}, path)
                else:
                    lines.append(f"{attr_path(path)} = nng.Scope()")
                    walk(children, path)

        walk(tree, "")
        return lines

    def make_line(self, node: Node, ctx: NodeCtx, built: _Built, path: str | None = None,
                  name: str | None = None) -> str:
        """The ``__init__`` statement building one node's state at ``path`` (default: its path in the model);
        ``name`` is the source of its name argument (default: the node name as a literal)."""
        path = path or built.path
        if built.shared_with:
            return f"{path} = {attr_path(built.shared_with)}  # shared with {built.shared_with} (share)"
        variadic = [f"    variadic={literal(ctx.variadic)},"] if ctx.variadic else []
        return "\n".join([
            f"{path} = nng.make(",
            f"    {node.op!r}, {name or repr(node.name)}, seed,",
            f"    params={literal(ctx.params)},",
            f"    inputs={literal(ctx.inputs)},",
            *variadic,
            f"    outputs={literal(ctx.outputs)},",
            f"    init={literal(built.inits)},",
            ")",
        ])

    def generate(self) -> Generated:
        g = self.graph
        missing = [n for n in self.order if g.nodes[n].op not in self.impls]
        for name in missing:
            node = g.nodes[name]
            self.fail(node, "has no PyTorch implementation yet",
                      f"ops with one: {', '.join(sorted(self.impls))}")
        if self.errors:
            raise SpecError(self.errors)
        required = [n for n, gi in g.inputs.items() if not gi.optional]
        optional = [n for n, gi in g.inputs.items() if gi.optional]
        for name in required + optional:
            self.args[name] = self.namer.new(name)
        ctxs = self.ctxs
        for name in self.order:
            ctxs[name] = self.ctx(g.nodes[name])
        # the nodes whose weights are shared first: a `share: NAME` use may come first in dependency order
        for name in sorted(self.order, key=lambda n: bool(g.nodes[n].shares_params_with)):
            self.build_state(g.nodes[name], self.impls[g.nodes[name].op], ctxs[name])
        self.check_names()
        if self.errors:
            raise SpecError(self.errors)
        self.uses = blocks.plan(self)
        body = self.forward_body()
        if self.errors:
            raise SpecError(self.errors)
        return self.assemble(ctxs, required, optional, body)

    def statements(self, names: list[str], var: Callable[[Ref], str], path: Callable[[str], str],
                   module_of: Callable[[str], str], dim: Callable[[str], Callable[[Dim], str | None]], namer: Namer,
                   out: dict, rel: Callable[[str], str] = lambda n: n, strict: bool = False
                   ) -> tuple[list[str], list[tuple[int, list[str], str]]]:
        """Forward lines of nodes ``names`` (a comment and one statement each) and the statements
        ``(line, variables defined, expression)``; the variables are recorded in ``out[(node, output)]``.
        A node that cannot be emitted is reported (``strict``: raises NotModular instead)."""
        g = self.graph
        body: list[str] = []
        stmts: list[tuple[int, list[str], str]] = []
        for name in names:
            node = g.nodes[name]
            e = Emit(inputs={k: (var(r) if r is not None else "None") for k, r in node.inputs.items()},
                     variadic=[var(r) for r in node.variadic], self=path(name), module_of=module_of, dim=dim(name))
            try:
                expr = self.impls[node.op].emit(self.ctxs[name], e)
            except (ValueError, KeyError) as exc:
                if strict:
                    raise blocks.NotModular(str(exc)) from exc
                self.fail(node, f"cannot generate torch code: {exc}")
                continue
            if "\n" in expr:
                raise ValueError(f"torch emit of op '{node.op}' returned more than one line")
            vs = [namer.new(rel(name).replace(".", "_") + ("" if len(node.outputs) == 1 else f"_{o}"))
                  for o in node.outputs]
            out.update({(name, o): v for o, v in zip(node.outputs, vs)})
            body.append(f"# {display_pos(node.pos)} {rel(name)} ({node.op})")
            body.append(f"{', '.join(vs)} = {expr}  # {type_comment(node.outputs)}")
            stmts.append((len(body) - 1, vs, expr))
        return body, stmts

    def forward_body(self) -> list[str]:
        """The model's forward: node statements, and one call (or loop) per block use generated as a class."""
        g = self.graph
        firsts = {n: (use, c) for use in self.uses.values() for c in (use.copies[:1] if use.loop else use.copies)
                  for n in c.nodes[:1]}
        inside = {n for use in self.uses.values() for c in use.copies for n in c.nodes}
        body: list[str] = []
        stmts: list[tuple[int, list[str], str]] = []
        pending: list[str] = []

        def flush() -> None:
            lines, more = self.statements(pending, self.var, attr_path, attr_path,
                                          lambda n: lambda d: self.dim_expr(g.nodes[n], d), self.namer, self.vars)
            stmts.extend((len(body) + i, vs, e) for i, vs, e in more)
            body.extend(lines)
            pending.clear()

        for name in self.order:
            if name in firsts:
                flush()
                use, copy = firsts[name]
                lines, more, new = blocks.call_lines(self, use, copy, self.namer, self.parent_var)
                stmts.extend((len(body) + i, vs, e) for i, vs, e in more)
                body.extend(lines)
                self.vars.update(new)
            elif name not in inside:
                pending.append(name)
        flush()
        if self.errors:
            return body
        return free_after_last_use(body, stmts, keep={self.var(r) for r in g.outputs.values()})

    def parent_var(self, key: tuple[str, str | None]) -> str:
        """The forward variable of a value (graph input or node output)."""
        return self.args[key[0]] if key[1] is None else self.vars[key]

    def decoding_lines(self) -> list[str]:
        """The class attributes ``input_roles`` (forward argument -> key_padding | positions) and ``unpositioned``
        (:func:`nngraph.compilers.decoding.decoding_facts`) that the torch decoder reads, where they are not empty."""
        from nngraph.compilers.decoding import decoding_facts

        facts = decoding_facts(self.graph)
        roles = {self.args[n]: role for n, role in facts["input_roles"].items()}
        return ([f"    input_roles = {roles!r}"] if roles else []) + \
            ([f"    unpositioned = {tuple(facts['unpositioned'])!r}"] if facts["unpositioned"] else [])

    def assemble(self, ctxs: dict[str, NodeCtx], required: list[str], optional: list[str], body: list[str]) -> Generated:
        g = self.graph
        cls = class_name(g)
        spec = display_path(g.file)
        outs = {k: self.var(r) for k, r in g.outputs.items()}
        if len(outs) == 1:
            ret, ret_type = next(iter(outs.values())), "torch.Tensor"
        else:
            ret = "{" + ", ".join(f"{k!r}: {v}" for k, v in outs.items()) + "}"
            ret_type = "dict[str, torch.Tensor]"
        args = [f"{self.args[n]}: torch.Tensor" for n in required]
        args += [f"{self.args[n]}: torch.Tensor | None = None" for n in optional]
        doc = str(g.doc).strip() if g.doc else f"The '{g.name}' graph."
        doc = docstring_text("\n".join(textwrap.fill(par, 100, subsequent_indent="    ") for par in doc.split("\n")))
        doc += "\n    " if "\n" in doc or len(doc) > 90 else ""
        inside = {n for use in self.uses.values() for c in use.copies for n in c.nodes}
        instances = {c.prefix: f"{c.cls}(seed, {c.prefix!r})" for use in self.uses.values() for c in use.copies}
        owner = {n: c.prefix for use in self.uses.values() for c in use.copies for n in c.nodes}
        leaves = [owner[n] + ".*" if n in owner else n for n in [*self.built, *owner]]
        init_lines = self.containers(list(dict.fromkeys(leaves)), instances)
        makes = [self.make_line(g.nodes[n], ctxs[n], self.built[n]) for n in self.order
                 if n in self.built and not self.built[n].shared_with and n not in inside]
        shares = [self.make_line(g.nodes[n], ctxs[n], self.built[n]) for n in self.order
                  if n in self.built and self.built[n].shared_with]
        links = [line for n in self.order if n in self.built and not self.built[n].shared_with
                 and self.impls[g.nodes[n].op].link for line in
                 self.impls[g.nodes[n].op].link(ctxs[n], self.built[n].path, attr_path)]  # type: ignore[misc]
        input_types = "{" + ", ".join(f"{self.args[n]!r}: {literal(g.inputs[n].type)}" for n in required + optional) + "}"
        lines = [
            f"# Generated by nngraph from {spec} (graph '{g.name}'). Do not edit: regenerate with",
            f"#   nngraph compile {spec} --emit-python <file>",
            "# Modules are built by nngraph.compilers.torch (nng.make), so this file needs the nngraph package;",
            f"# {cls}(seed=s) has the same weights as nngraph.compilers.torch.build_module(load_spec(...), seed=s).",
            "import torch",
            "import torch.nn.functional as F",
            "from torch import nn",
            "",
            "from nngraph.compilers.torch import module as nng",
            "from nngraph.types import TensorType",
            "",
            "",
            *(line for name, text in self.block_classes for line in (text.replace("{CLS}", name), "", "")),
            f"class {cls}(nng.GraphModule):",
            f'    """{doc}"""',
            "",
            f"    spec_file = {spec!r}",
            f"    spec_name = {g.name!r}",
            f"    input_types = {input_types}",
            f"    output_names = {tuple(outs)!r}",
            *self.decoding_lines(),
            "",
            "    def __init__(self, seed: int = 0) -> None:",
            "        super().__init__()",
            *("        " + line for block in init_lines + makes + links + shares for line in block.split("\n")),
            "",
            f"    def forward(self{''.join(', ' + a for a in args)}) -> {ret_type}:",
            *("        " + line for line in body),
            f"        return {ret}",
            "",
        ]
        return Generated("\n".join(lines), cls, f"<nngraph:{spec}>")


def generate(graph: Graph) -> Generated:
    """Generate the model class for ``graph``; raises SpecError for ops without a torch implementation or bad ``init``."""
    return _Compiler(graph).generate()


def docstring_text(text: str) -> str:
    """``text`` escaped for the inside of a triple-quoted (non-raw) docstring, so the string's value is ``text``:
    backslashes doubled, control characters (but newlines) as ``\\xNN``, and every ``"`` followed by a ``"``
    or by the closing quotes escaped (no run of three quotes, no quote touching the closing ones)."""
    out = []
    for i, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c == '"' and (i + 1 == len(text) or text[i + 1] == '"'):
            out.append('\\"')
        elif (ord(c) < 32 and c != "\n") or ord(c) == 127:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)
