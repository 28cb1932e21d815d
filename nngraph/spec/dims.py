"""The spec's ``dims:`` section: what the author knows about the symbolic dims.

```yaml
dims:
  width: height                     # width is height (any dim expression of other symbols: "height*2")
  seq: {multiple_of: 64, max: 4096}  # seq % 64 == 0, seq <= 4096
  time: {min: 3}                    # time >= 3
```

A relation is applied where the inputs are declared: every ``width`` in an input shape becomes ``height``, so
the shape rules compare like with like. Bounds and divisors become :class:`nngraph.symdim.Facts`, under which
dim comparisons are decided. Without a declaration a symbol is any size >= 1 (see nngraph/symdim.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .. import symdim
from ..errors import Diagnostics, SourcePos, choices_hint
from ..ir import GraphInput
from ..yamlsrc import Map, pos_in
from .references import NAME_RE
from .resolve import Scope, resolve_at

# One registry for the keys of a dim entry: the parser, the JSON Schema and the spec reference read it.
DIM_KEYS: dict[str, str] = {
    "equals": "the symbol is this dim expression of other symbols (the short form `width: height` means the same)",
    "min": "smallest size the spec supports (default 1)",
    "max": "largest size the spec supports",
    "multiple_of": "every size is a multiple of this (`seq % 64 == 0`)",
}

EXAMPLE = "dims: {width: height, seq: {multiple_of: 64}, time: {min: 3}}"


def dims_schema() -> dict:
    """JSON Schema of the ``dims:`` section, from :data:`DIM_KEYS`."""
    expr = {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1}]}
    props: dict[str, Any] = {"equals": {**expr, "description": DIM_KEYS["equals"]}}
    props |= {k: {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\$\{.*\}$"}],
                  "description": DIM_KEYS[k]} for k in ("min", "max", "multiple_of")}
    entry = {"anyOf": [expr, {"type": "object", "additionalProperties": False, "properties": props}]}
    return {"type": "object", "description": "relations and constraints of the symbolic dims, e.g. " + EXAMPLE,
            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}, "additionalProperties": entry}


def parse_dims(raw: Any, scope: Scope, diag: Diagnostics, pos: SourcePos) -> tuple[symdim.Facts, dict[str, symdim.Poly]]:
    """Facts (bounds, divisors) and relations (symbol -> expression) of a ``dims:`` section, errors located."""
    low: dict[str, int] = {}
    high: dict[str, int] = {}
    multiple: dict[str, int] = {}
    relations: dict[str, symdim.Poly] = {}
    if raw is None:
        return symdim.Facts(), relations
    if not isinstance(raw, dict):
        diag.error(pos, "'dims' must be a mapping of symbol -> relation or constraints", EXAMPLE)
        return symdim.Facts(), relations
    for name, entry in raw.items():
        epos = raw.pos_of_key(name) if isinstance(raw, Map) else pos
        if not isinstance(name, str) or not NAME_RE.match(name):
            diag.error(epos, f"'dims' key {name!r} is not a symbol name", EXAMPLE)
            continue
        entry = resolve_at(entry, scope, pos_in(raw, name, pos), diag, f"dims '{name}'")
        if not isinstance(entry, dict):
            entry = {"equals": entry}
        for key, value in entry.items():
            kpos = entry.pos_of_key(key) if isinstance(entry, Map) else epos
            if key not in DIM_KEYS:
                diag.error(kpos, f"unknown key '{key}' in dims '{name}'", choices_hint(str(key), DIM_KEYS, "dim keys"))
            elif key == "equals":
                rel = _relation(name, value, diag, kpos)
                if rel is not None:
                    relations[name] = rel
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                diag.error(kpos, f"'{key}' of dims '{name}' must be a positive integer, got {value!r}")
            else:
                {"min": low, "max": high, "multiple_of": multiple}[key][name] = value
        if name in relations and len(entry) > 1:
            diag.error(epos, f"dims '{name}' is defined by a relation: put its constraints on the symbols it is made of")
        if low.get(name, 1) > high.get(name, low.get(name, 1)):
            diag.error(epos, f"dims '{name}': min {low[name]} is more than max {high[name]}")
    return symdim.Facts(low, high, multiple), _closed(relations, diag, pos)


def _relation(name: str, value: Any, diag: Diagnostics, pos: SourcePos) -> symdim.Poly | None:
    p = symdim.parse(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    if p is None or any(isinstance(a, tuple) and a[0] == "?" for m, _ in p.terms for a, _ in m):
        diag.error(pos, f"dims '{name}' must be a dim expression (symbols, integers, + - * // % min max), got {value!r}",
                   EXAMPLE)
        return None
    if name in symdim.symbols(p):
        diag.error(pos, f"dims '{name}' is defined in terms of itself: {value}")
        return None
    return p


def _closed(relations: dict[str, symdim.Poly], diag: Diagnostics, pos: SourcePos) -> dict[str, symdim.Poly]:
    """Relations with chains followed (``a: b, b: c`` gives ``a = c``); a cycle is an error."""
    out = dict(relations)
    for _ in range(len(out) + 1):
        nxt = {k: symdim.substitute(v, out) for k, v in out.items()}
        if any(k in symdim.symbols(v) for k, v in nxt.items()):
            break
        if nxt == out:
            return out
        out = nxt
    diag.error(pos, "the relations under 'dims' form a cycle: " + ", ".join(sorted(out)), "define each symbol once")
    return {}


def apply_relations(inputs: dict[str, GraphInput], relations: dict[str, symdim.Poly]) -> dict[str, GraphInput]:
    """The inputs with every related symbol replaced by its expression (in canonical form)."""
    if not relations:
        return inputs

    def dim(d: Any) -> Any:
        return d if isinstance(d, int) else symdim.canonical(symdim.to_str(symdim.substitute(symdim.parse(d), relations)))
    return {n: replace(gi, type=gi.type.with_shape(dim(d) for d in gi.type.shape)) for n, gi in inputs.items()}
