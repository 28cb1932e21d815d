"""Parsing ``blocks:`` sections and ``imports:`` of block libraries.

Imports are confined: a relative path must stay inside the importing spec's own
directory tree (no ``..`` escape, no absolute paths, symlinks resolved), and
``std:NAME`` reads the library bundled with nngraph (``nngraph/library``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import Diagnostic, Diagnostics, SourcePos, SpecError, choices_hint
from ..expr import shown as shown_value
from ..limits import DEFAULT_LIMITS, Limits
from ..yamlsrc import Map, Seq, load_yaml_file, pos_in
from .expand import NAME_RE, BLOCK_DEF_KEYS, BlockDef
from .resolve import Scope

STD_PREFIX = "std:"
LIBRARY_DIR = Path(__file__).resolve().parent.parent / "library"
LIBRARY_KEYS = ("nngraph", "name", "doc", "vars", "imports", "blocks")
MAX_NAMES_LISTED = 1000  # names a hint draws its suggestions from


def parse_blocks(section: Any, scope: Scope, diag: Diagnostics, pos: SourcePos, prefix: str = "") -> dict[str, BlockDef]:
    """Parse a ``blocks:`` mapping into :class:`BlockDef`s (bodies are expanded later)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        diag.error(pos, "'blocks' must be a mapping of block name -> definition")
        return {}
    out: dict[str, BlockDef] = {}
    for name, body in section.items():
        bpos = section.pos_of_key(name) if isinstance(section, Map) else pos
        if not isinstance(name, str) or not NAME_RE.match(name):
            diag.error(bpos, f"invalid block name {name!r}", "block names are identifiers")
            continue
        parsed = _parse_block(prefix + name, body, scope, diag, bpos)
        if parsed:
            out[prefix + name] = parsed
    return out


def _parse_block(name: str, body: Any, scope: Scope, diag: Diagnostics, pos: SourcePos) -> BlockDef | None:
    if not isinstance(body, dict):
        diag.error(pos, f"block '{name}' must be a mapping with inputs, nodes and outputs")
        return None
    for key in body:
        if key not in BLOCK_DEF_KEYS:
            diag.error(body.pos_of_key(key) if isinstance(body, Map) else pos, f"unknown key '{key}' in block '{name}'",
                       choices_hint(str(key), BLOCK_DEF_KEYS, "keys of a block"))
    before = len(diag.items)
    inputs, optional = _block_inputs(name, body.get("inputs", []), diag, pos_in(body, "inputs", pos))
    inputs_ok = len(diag.items) == before
    outputs, output_pos = _block_outputs(name, body.get("outputs"), diag, pos_in(body, "outputs", pos) if "outputs" in body else pos)
    params = body.get("params") or Map(pos=pos)
    if not isinstance(params, dict):
        diag.error(pos_in(body, "params", pos), f"'params' of block '{name}' must be a mapping of name -> default")
        params = Map(pos=pos)
    nodes = body.get("nodes")
    if nodes is None:
        diag.error(pos, f"block '{name}' has no 'nodes'", "add 'nodes:' with the block's body")
        nodes = Seq(pos=pos)
    return BlockDef(name, inputs, optional, outputs, params, nodes, pos_in(body, "nodes", pos), scope, output_pos,
                    inputs_ok=inputs_ok, defined_at=pos)


def _block_inputs(name: str, raw: Any, diag: Diagnostics, pos: SourcePos) -> tuple[list[str], set[str]]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        diag.error(pos, f"'inputs' of block '{name}' must be a list of names", "inputs: [x, mask?]")
        return [], set()
    names, optional = [], set()
    for i, item in enumerate(raw):
        text = str(item)
        is_opt = text.endswith("?")
        base = text.rstrip("?")
        if not isinstance(item, str) or not NAME_RE.match(base):
            diag.error(pos_in(raw, i, pos), f"invalid block input name {item!r}", "identifiers; end with '?' if optional")
            continue
        names.append(base)
        if is_opt:
            optional.add(base)
    return names, optional


def _block_outputs(name: str, raw: Any, diag: Diagnostics, pos: SourcePos) -> tuple[dict[str, str], dict[str, SourcePos]]:
    if raw is None:
        diag.error(pos, f"block '{name}' has no 'outputs'", "outputs: [out]  or  outputs: {y: node, state: lstm.h}")
        return {}, {}
    if isinstance(raw, str):
        raw = Seq([raw], pos=pos)
        raw.item_pos = [pos]
    outputs: dict[str, str] = {}
    opos: dict[str, SourcePos] = {}
    if isinstance(raw, list):
        for i, ref in enumerate(raw):
            if not isinstance(ref, str):
                diag.error(pos_in(raw, i, pos), f"block output must be a node name, got {ref!r}")
                continue
            out_name = ref.rsplit(".", 1)[-1]
            outputs[out_name] = ref
            opos[out_name] = pos_in(raw, i, pos)
    elif isinstance(raw, dict):
        for key, ref in raw.items():
            if not isinstance(ref, str) or not isinstance(key, str):
                diag.error(pos_in(raw, key, pos), f"block output '{key}' must name a node")
                continue
            outputs[key] = ref
            opos[key] = pos_in(raw, key, pos)
    else:
        diag.error(pos, f"'outputs' of block '{name}' must be a list or a mapping")
    return outputs, opos


def resolve_import_path(spec_path: Path, raw: str, pos: SourcePos) -> Path:
    """The file an import names, refusing anything outside the spec's tree or the bundled library."""
    if raw.startswith(STD_PREFIX):
        base, rel = LIBRARY_DIR, raw[len(STD_PREFIX):]
    else:
        base, rel = spec_path.resolve().parent, raw
    if "\0" in raw:  # the OS refuses such a path with a bare ValueError
        raise SpecError([_diag(pos, f"import path {shown_value(raw)} contains a NUL byte", "write the path as plain text")])
    rel_path = Path(rel)
    if not rel or rel_path.is_absolute() or rel.startswith("~") or "\\" in rel:
        raise SpecError([_diag(pos, f"import path '{raw}' must be relative",
                              "import files from the spec's own directory tree, or the bundled library as std:NAME.yaml")])
    target = (base / rel_path).resolve()
    if not target.is_relative_to(base.resolve()):
        raise SpecError([_diag(pos, f"import path '{raw}' escapes the spec's directory",
                              "imports are confined to the spec's own tree and the bundled library (std:...)")])
    if not target.is_file():
        available = sorted(p.name for p in LIBRARY_DIR.glob("*.yaml")) if raw.startswith(STD_PREFIX) else []
        hint = f"bundled library files: {', '.join(available)}" if available else "check the path (relative to the spec file)"
        raise SpecError([_diag(pos, f"import '{raw}' not found", hint)])
    return target


def imported_files(spec_path: Path, limits: Limits = DEFAULT_LIMITS) -> list[Path]:
    """Every library file ``spec_path`` imports, directly or through other libraries (resolved paths, each once);
    what cannot be read or resolved is left out (loading the spec reports it)."""
    found: dict[Path, None] = {}
    queue = [spec_path]
    while queue:
        path = queue.pop()
        try:
            data = load_yaml_file(path, limits.yaml)
        except (SpecError, OSError, ValueError):
            continue
        section = data.get("imports") if isinstance(data, dict) else None
        for item in section if isinstance(section, list) else []:
            raw = item.get("path") if isinstance(item, dict) else item
            try:
                target = resolve_import_path(path, raw, SourcePos(str(path))) if isinstance(raw, str) else None
            except (SpecError, OSError):
                continue
            if target is not None and target not in found:
                found[target] = None
                queue.append(target)
    return list(found)


def _diag(pos: SourcePos, message: str, hint: str) -> Diagnostic:
    return Diagnostic(pos, message, hint)


class BlockTable:
    """The blocks visible in one file: its own, then its imports' (an ``as:`` name prefixes a library's names).

    Imported tables are referenced, not copied: names multiply through aliases (a library importing the
    next three times under three names, 16 deep, names 3**16 blocks), so a lookup walks the prefixes
    instead, memoised per table. Later imports win over earlier ones, the file's own blocks over both.
    """

    def __init__(self, own: dict[str, BlockDef], imports: list[tuple[str, "BlockTable"]]):
        self.own, self.imports = own, imports
        self._memo: dict[str, BlockDef | None] = {}

    def get(self, name: str, default: Any = None) -> Any:
        """The block called ``name`` here (``alias.name`` for an aliased import's block), or ``default``."""
        if name not in self._memo:
            self._memo[name] = self._find(name)
        found = self._memo[name]
        return default if found is None else found

    def _find(self, name: str) -> BlockDef | None:
        if name in self.own:
            return self.own[name]
        for prefix, table in reversed(self.imports):
            rest = name[len(prefix):] if name.startswith(prefix) else None
            found = table.get(rest) if rest else None
            if found is not None:
                return found
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> BlockDef:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def keys(self, limit: int = MAX_NAMES_LISTED) -> list[str]:
        """Up to ``limit`` of the names visible here (for hints), nearest files first."""
        names: dict[str, None] = dict.fromkeys(self.own)
        queue = [(prefix, table) for prefix, table in reversed(self.imports)]
        while queue and len(names) < limit:
            prefix, table = queue.pop(0)
            names.update((prefix + n, None) for n in list(table.own)[:limit])
            queue.extend((prefix + p, t) for p, t in reversed(table.imports))
        return list(names)[:limit]


def load_imports(spec_path: Path, section: Any, diag: Diagnostics, pos: SourcePos, limits: Limits,
                 seen: tuple[Path, ...] = (), loaded: dict[Path, BlockTable] | None = None) -> list[tuple[str, BlockTable]]:
    """The imported libraries' tables with the prefix of their ``as:`` name (``""`` without one).

    Each library is read once per resolved path (``loaded``, shared down the whole import tree): a
    diamond of libraries each importing the next three times, 16 deep, is 16 reads, not 3**16.
    """
    if section is None:
        return []
    if not isinstance(section, list):
        diag.error(pos, "'imports' must be a list", "imports: [lib/blocks.yaml, {path: std:transformer.yaml, as: tf}]")
        return []
    loaded = {} if loaded is None else loaded
    tables: list[tuple[str, BlockTable]] = []
    for i, item in enumerate(section):
        ipos = pos_in(section, i, pos)
        raw_path, alias = (item, None) if isinstance(item, str) else (
            (item.get("path"), item.get("as")) if isinstance(item, dict) else (None, None))
        if not isinstance(raw_path, str) or (alias is not None and not (isinstance(alias, str) and NAME_RE.match(alias))):
            diag.error(ipos, "an import is a path or {path: ..., as: name}", "imports: [lib/blocks.yaml]")
            continue
        try:
            target = resolve_import_path(spec_path, raw_path, ipos)
        except SpecError as err:
            diag.extend(err.diagnostics)
            continue
        if target in seen or len(seen) >= limits.max_import_depth:
            diag.error(ipos, f"import cycle or chain too deep at '{raw_path}'", "a library cannot import itself")
            continue
        if target not in loaded:
            loaded[target] = _load_library(target, raw_path, diag, limits, seen + (target,), loaded)
        tables.append((f"{alias}." if alias else "", loaded[target]))
    return tables


def _load_library(target: Path, shown: str, diag: Diagnostics, limits: Limits, seen: tuple[Path, ...],
                  loaded: dict[Path, BlockTable]) -> BlockTable:
    """The blocks one library file makes visible (its own and its imports'); none when it cannot be read."""
    display = shown if shown.startswith(STD_PREFIX) else str(target.relative_to(Path.cwd())) if target.is_relative_to(Path.cwd()) else str(target)
    try:
        data = load_yaml_file(target, limits.yaml, display_name=display)
    except SpecError as err:
        diag.extend(err.diagnostics)
        return BlockTable({}, [])
    if not isinstance(data, dict):
        diag.error(SourcePos(display, 1, 1), "a block library must be a mapping with 'blocks:'")
        return BlockTable({}, [])
    lib_scope = library_scope(data, diag, SourcePos(display, 1, 1))
    dpos = getattr(data, "pos", SourcePos(display))
    nested = load_imports(target, data.get("imports"), diag, pos_in(data, "imports", dpos), limits, seen, loaded)
    own = parse_blocks(data.get("blocks"), lib_scope, diag, pos_in(data, "blocks", dpos))
    return link_library(own, nested)


def library_scope(data: dict, diag: Diagnostics, top: SourcePos) -> Scope:
    """The scope of a block library's own ``vars`` (an error, and no vars, when they are not a mapping)."""
    raw = data.get("vars") or {}
    if not isinstance(raw, dict):
        diag.error(pos_in(data, "vars", top), "'vars' must be a mapping of name -> value")
        return Scope({})
    return Scope(dict(raw))


def link_library(own: dict[str, BlockDef], imports: list[tuple[str, BlockTable]]) -> BlockTable:
    """The table of one file; each of its own blocks uses the blocks visible in that file, whatever prefix it
    is imported under."""
    table = BlockTable(own, imports)
    for bdef in own.values():
        bdef.library = table
    return table
