"""Block uses as generated ``nn.Module`` classes (one class per block, reused by its alike copies).

A top-level block use (``h`` with ``repeat: 12``) becomes one instance per copy
of a generated class named after the block (``DecoderLayer``) with its own
``__init__(seed, prefix)`` -- the same ``nng.make`` calls the flat model has,
named ``f'{prefix}.attn'``, so state-dict keys and seeded weights do not
change -- and its own ``forward``, whose variables are the block's node names.
Copies whose generated class text is equal share the class. When the copies
form a chain (copy *i* reads only copy *i-1*'s single output, and only the last
one's output is read outside), the parent's forward loops over the ModuleList::

    h = wpe_add
    for layer in self.h:
        h = layer(h)  # [batch, seq, 64]

A copy stays inline in the parent's forward (the flat form, still correct) when
its code cannot stand alone: its nodes are not contiguous in the graph order,
it shares weights with another copy (``share``), it reads another node's module
(``tie``) or needs a symbolic size only a graph input carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from nngraph.block_copies import copies_of
from nngraph.ir import Graph, Ref

from .source import Namer, attr_path, display_pos, free_after_last_use, type_comment

if TYPE_CHECKING:
    from .codegen import _Compiler

#: a value in the IR: (node or graph input, output name; None for a graph input)
Key = tuple[str, "str | None"]


class NotModular(Exception):
    """The copy cannot be generated as a standalone class (the reason is the message)."""


@dataclass
class Copy:
    """One copy of a block use generated as a class instance."""

    prefix: str
    nodes: list[str]
    args: list[Key]
    rets: list[Key]
    text: str  # class text with the class name as ``{CLS}``
    block: str
    cls: str = ""


@dataclass
class Use:
    """A top-level block use whose copies are all classes; ``loop`` when the parent iterates over them."""

    name: str
    copies: list[Copy]
    loop: bool = False


def key_of(graph: Graph, ref: Ref) -> Key:
    """The value ``ref`` names, with a node's default output spelled out."""
    if ref.node in graph.inputs:
        return (ref.node, None)
    return (ref.node, ref.output or next(iter(graph.nodes[ref.node].outputs)))


def class_word(block: str) -> str:
    """``decoder_layer`` -> ``DecoderLayer``."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", block) if p]
    word = "".join(p[:1].upper() + p[1:] for p in parts) or "Block"
    return word if word[0].isalpha() else "Block" + word


def plan(comp: "_Compiler") -> dict[str, Use]:
    """The block uses generated as classes (uses that cannot be are left out: they stay inline)."""
    g = comp.graph
    position = {n: i for i, n in enumerate(comp.order)}
    uses: dict[str, Use] = {}
    for name, prefixes in copies_of(g).items():
        try:
            copies = [_copy(comp, name, p, position) for p in prefixes]
        except NotModular:
            continue
        use = Use(name, copies)
        use.loop = _is_chain(g, copies, position)
        uses[name] = use
    _name_classes(comp, uses)
    return uses


def _copy(comp: "_Compiler", use: str, prefix: str, position: dict[str, int]) -> Copy:
    g = comp.graph
    nodes = sorted((n for n in g.nodes if n.startswith(prefix + ".")), key=position.__getitem__)
    if not nodes or position[nodes[-1]] - position[nodes[0]] != len(nodes) - 1:
        raise NotModular("its nodes are not contiguous in the graph order")
    if any(n in comp.built and comp.built[n].shared_with for n in nodes):
        raise NotModular("it shares weights")
    inside = set(nodes)
    args: list[Key] = []
    for n in nodes:
        for ref in g.nodes[n].all_refs():
            key = key_of(g, ref)
            if key[0] not in inside and key not in args:
                args.append(key)
    read_outside = {key_of(g, r) for m, node in g.nodes.items() if m not in inside for r in node.all_refs()}
    read_outside |= {key_of(g, r) for r in g.outputs.values()}
    rets = [(n, o) for n in nodes for o in g.nodes[n].outputs if (n, o) in read_outside]
    if not rets:
        raise NotModular("nothing outside reads it")
    block = g.nodes[nodes[0]].block or use
    text = _class_text(comp, prefix, nodes, args, rets, block)
    return Copy(prefix, nodes, args, rets, text, block)


def _is_chain(g: Graph, copies: list[Copy], position: dict[str, int]) -> bool:
    """Copies alike, contiguous together, each reading only the previous one's single output, which nothing
    else reads."""
    if len(copies) < 2 or len({c.text for c in copies}) != 1:
        return False
    if any(len(c.args) != 1 or len(c.rets) != 1 for c in copies):
        return False
    outputs = {key_of(g, r) for r in g.outputs.values()}
    for a, b in zip(copies, copies[1:]):
        if position[b.nodes[0]] != position[a.nodes[-1]] + 1 or b.args[0] != a.rets[0] or a.rets[0] in outputs:
            return False
        readers = {m for m, node in g.nodes.items() for r in node.all_refs() if key_of(g, r) == a.rets[0]}
        if not readers <= set(b.nodes):
            return False
    return True


def _name_classes(comp: "_Compiler", uses: dict[str, Use]) -> None:
    """One class per distinct class text, named after its block (``DecoderLayer``, ``DecoderLayer2``, ...)."""
    taken = {comp.class_name}
    by_text: dict[str, str] = {}
    for use in uses.values():
        for c in use.copies:
            if c.text not in by_text:
                base, n = class_word(c.block), 1
                name = base
                while name in taken:
                    n += 1
                    name = f"{base}{n}"
                taken.add(name)
                by_text[c.text] = name
            c.cls = by_text[c.text]
    comp.block_classes = [(name, text) for text, name in by_text.items()]


def _class_text(comp: "_Compiler", prefix: str, nodes: list[str], args: list[Key], rets: list[Key], block: str) -> str:
    """The class of one copy with ``{CLS}`` for its name; raises NotModular when the copy cannot stand alone."""
    g = comp.graph
    inside = set(nodes)

    def rel(name: str) -> str:
        return name[len(prefix) + 1:]

    namer = Namer()
    arg_names = [namer.new("x" if len(args) == 1 else f"x{i}") for i in range(len(args))]
    local: dict[Key, str] = dict(zip(args, arg_names))

    def var(ref: Ref) -> str:
        return local[key_of(g, ref)]

    def module_of(name: str) -> str:
        if name not in inside:
            raise NotModular(f"it reads the module of '{name}'")
        return attr_path(rel(name))

    def dim(node_name: str) -> Callable:
        node = g.nodes[node_name]

        def expr(d):
            if isinstance(d, int):
                return str(d)
            for ref in node.all_refs():
                t = g.type_of(ref)
                if t is not None and d in t.shape:
                    return f"{var(ref)}.shape[{t.shape.index(d)}]"
            if comp.dim_expr(node, d) is not None:
                raise NotModular(f"size '{d}' is known only from a graph input")
            return None
        return expr

    body, stmts = comp.statements(nodes, var, lambda n: attr_path(rel(n)), module_of, dim, namer, local, rel,
                                  strict=True)
    keep = {local[r] for r in rets}

    body = free_after_last_use(body, stmts, keep)
    ret = ", ".join(local[r] for r in rets)
    ret_type = "torch.Tensor" if len(rets) == 1 else "tuple[" + ", ".join("torch.Tensor" for _ in rets) + "]"
    built = [n for n in nodes if n in comp.built]
    init = comp.containers([rel(n) for n in built], {}) + [
        comp.make_line(g.nodes[n], comp.ctxs[n], comp.built[n], attr_path(rel(n)), f"f'{{prefix}}.{rel(n)}'")
        for n in built]
    pos = display_pos(g.nodes[nodes[0]].pos)
    arg_list = "".join(f", {a}: torch.Tensor" for a in arg_names)
    lines = [
        "class {CLS}(nng.Block):",
        f'    """One copy of block {block!r} (from {pos}); ``prefix`` is its name in the model."""',
        "",
        f"    nng_block = {block!r}",
        "",
        "    def __init__(self, seed: int, prefix: str) -> None:",
        "        super().__init__(prefix)",
        *("        " + line for chunk in init for line in chunk.split("\n")),
        "",
        f"    def forward(self{arg_list}) -> {ret_type}:",
        *("        " + line for line in body),
        f"        return {ret}",
    ]
    return "\n".join(lines)


def call_lines(comp: "_Compiler", use: Use, copy: Copy, namer: Namer, parent_var: Callable[[Key], str]
               ) -> tuple[list[str], list[tuple[int, list[str], str]], dict[Key, str]]:
    """The parent's forward lines calling ``copy`` (or, for a looped use, all copies): lines, statements, new vars."""
    g = comp.graph
    where = f"# {display_pos(next(u.pos for u in g.block_uses if u.name == use.name))}"
    if use.loop:
        last = use.copies[-1]
        out = namer.new(use.name.replace(".", "_"))
        item = namer.new("layer")
        t = g.nodes[last.rets[0][0]].outputs[last.rets[0][1]]
        src = parent_var(copy.args[0])
        lines = [f"{where} {use.name} ({copy.block} x {len(use.copies)})",
                 f"{out} = {src}",
                 f"for {item} in {attr_path(use.name)}:",
                 f"    {out} = {item}({out})  # {type_comment({'o': t})}"]
        return lines, [(1, [out], src)], {last.rets[0]: out}
    names = [namer.new(n.replace(".", "_") + ("" if len(g.nodes[n].outputs) == 1 else f"_{o}")) for n, o in copy.rets]
    expr = f"{attr_path(copy.prefix)}({', '.join(parent_var(a) for a in copy.args)})"
    types = {f"{n}.{o}": g.nodes[n].outputs[o] for n, o in copy.rets}
    lines = [f"{where} {copy.prefix} ({copy.block})",
             f"{', '.join(names)} = {expr}  # {type_comment(types) if len(types) > 1 else type_comment({'o': next(iter(types.values()))})}"]
    return lines, [(1, names, expr)], dict(zip(copy.rets, names))

