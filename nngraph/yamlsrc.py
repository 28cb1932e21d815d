"""Safe YAML loading that remembers where every key and value came from.

Mappings load as :class:`Map` and sequences as :class:`Seq`: plain ``dict`` and
``list`` subclasses that also carry the source position of themselves, of each
key and of each value, so later checks can point at the exact line and column.

Hostile input is refused before it can cost anything: a size cap on the file,
a depth cap while composing (no RecursionError), a cap on aliases and on the
size of the document once aliases are expanded (billion-laughs bombs), and only
the YAML core tags (``!!python/...`` and other custom tags are errors).
Duplicate keys, which PyYAML silently collapses, are errors too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Diagnostic, Diagnostics, SourcePos, SpecError


def _base_loader() -> type:
    """libyaml's C parser for events (about 8x faster than PyYAML's pure-Python
    scanner, which reads only ~50 KB/s here) under PyYAML's Python composer, so
    the depth and alias guards below still see every node; the pure-Python
    loader when libyaml is not available."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        return yaml.SafeLoader
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    class HybridSafeLoader(Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return HybridSafeLoader


#: YAML 1.2 core-schema floats with an exponent and no dot or an unsigned exponent (``1e-6``, ``1E5``,
#: ``2.5e3``): numbers for YAML 1.2 and every editor, strings for PyYAML's YAML 1.1 resolver.
YAML12_EXPONENT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")


def _yaml12_numbers(base: type) -> type:
    """``base`` reading YAML 1.2 exponent floats as floats (an ``eps: 1e-6`` is a number, not the string
    '1e-6'); quoted scalars stay strings. A subclass, so PyYAML's own loaders are left as they are."""

    class Yaml12Loader(base):  # type: ignore[misc, valid-type]
        pass

    Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_EXPONENT, list("-+.0123456789"))
    return Yaml12Loader


_BaseLoader = _yaml12_numbers(_base_loader())
_PurePythonLoader = _yaml12_numbers(yaml.SafeLoader)


@dataclass(frozen=True)
class YamlLimits:
    """Caps applied while reading a spec file."""

    max_bytes: int = 256 * 1024
    max_depth: int = 64
    max_aliases: int = 256
    max_expanded_nodes: int = 200_000


DEFAULT_LIMITS = YamlLimits()
MAX_INT_CHARS = 100


class Map(dict):
    """A YAML mapping that knows its own position and those of its keys and values."""

    pos: SourcePos
    key_pos: dict
    value_pos: dict

    def __init__(self, *args: Any, pos: SourcePos | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pos = pos or SourcePos("<generated>")
        self.key_pos = {}
        self.value_pos = {}

    def pos_of_key(self, key: Any) -> SourcePos:
        """Where ``key`` is written, or the mapping's own position."""
        return self.key_pos.get(key, self.pos)

    def pos_of(self, key: Any) -> SourcePos:
        """Where the value of ``key`` is written, or the mapping's own position."""
        return self.value_pos.get(key, self.key_pos.get(key, self.pos))


class Seq(list):
    """A YAML sequence that knows its own position and those of its items."""

    pos: SourcePos
    item_pos: list

    def __init__(self, *args: Any, pos: SourcePos | None = None):
        super().__init__(*args)
        self.pos = pos or SourcePos("<generated>")
        self.item_pos = []

    def pos_of(self, index: int) -> SourcePos:
        """Where item ``index`` is written, or the sequence's own position."""
        return self.item_pos[index] if index < len(self.item_pos) else self.pos


def pos_in(container: Any, key: Any, fallback: SourcePos) -> SourcePos:
    """Position of ``container[key]`` if the container tracks positions."""
    if isinstance(container, (Map, Seq)):
        return container.pos_of(key)
    return getattr(container, "pos", fallback)


def _mark_pos(node: Node, filename: str) -> SourcePos:
    return SourcePos(filename, node.start_mark.line + 1, node.start_mark.column + 1)


_CORE_TAG_PREFIX = "tag:yaml.org,2002:"
_CORE_TAGS = {_CORE_TAG_PREFIX + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge", "timestamp", "binary", "set", "omap", "pairs", "value")}


def _make_loader(filename: str, limits: YamlLimits, diag: Diagnostics, base: type = _BaseLoader) -> type:
    class Loader(base):  # type: ignore[misc, valid-type]
        _depth = 0
        _aliases = 0
        _open: frozenset = frozenset()

        def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML signature
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                event = self.peek_event()
                if self._aliases > limits.max_aliases:
                    raise _Refused(SourcePos(filename, event.start_mark.line + 1, event.start_mark.column + 1),
                                   f"too many YAML aliases (more than {limits.max_aliases})",
                                   "aliases are capped to refuse alias bombs; write the values out or use blocks")
                if event.anchor in self._open:
                    raise _Refused(SourcePos(filename, event.start_mark.line + 1, event.start_mark.column + 1),
                                   f"recursive YAML alias '*{event.anchor}' (used inside its own anchor)",
                                   "a value cannot contain itself; write it out")
            self._depth += 1
            try:
                if self._depth > limits.max_depth:
                    event = self.peek_event()
                    raise _Refused(SourcePos(filename, event.start_mark.line + 1, event.start_mark.column + 1),
                                   f"YAML nesting deeper than {limits.max_depth} levels",
                                   "flatten the structure; specs never need this depth")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def compose_sequence_node(self, anchor):  # noqa: ANN001, ANN201 - PyYAML signature
            return self._compose_open(anchor, super().compose_sequence_node)

        def compose_mapping_node(self, anchor):  # noqa: ANN001, ANN201 - PyYAML signature
            return self._compose_open(anchor, super().compose_mapping_node)

        def _compose_open(self, anchor, compose):  # noqa: ANN001, ANN202
            if anchor is None:
                return compose(anchor)
            self._open = self._open | {anchor}
            try:
                return compose(anchor)
            finally:
                self._open = self._open - {anchor}

        def flatten_mapping(self, node: MappingNode) -> None:
            # PyYAML copies every merged entry, so nested ``<<: [*a, *a, ...]`` grows
            # exponentially with the nesting (a merge-key bomb). Keep only the merged
            # entries that are not overridden later: at most one per distinct key.
            own = sum(1 for k, _ in node.value if k.tag != _CORE_TAG_PREFIX + "merge")
            super().flatten_mapping(node)
            merged, rest = node.value[:len(node.value) - own], node.value[len(node.value) - own:]
            if not merged:
                return
            seen = {_key_id(k) for k, _ in rest}
            kept = []
            for key_node, value_node in reversed(merged):
                kid = _key_id(key_node)
                if kid not in seen:
                    seen.add(kid)
                    kept.append((key_node, value_node))
            node.value = kept[::-1] + rest

    def construct_map(loader: Any, node: MappingNode):
        m = Map(pos=_mark_pos(node, filename))
        yield m
        explicit = {id(k) for k, _ in node.value if k.tag != _CORE_TAG_PREFIX + "merge"}
        loader.flatten_mapping(node)
        seen_explicit: set = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            kpos = _mark_pos(key_node, filename)
            try:
                hash(key)
            except TypeError:
                diag.error(kpos, "a mapping key must be a plain scalar", "write the key as a string")
                continue
            if id(key_node) in explicit:
                if key in seen_explicit:
                    first = m.key_pos.get(key)
                    diag.error(kpos, f"duplicate key '{key}' (first defined at {first})",
                               "YAML would silently keep only the last value; remove or rename one of them")
                    continue
                seen_explicit.add(key)
            m[key] = loader.construct_object(value_node, deep=True)
            m.key_pos[key] = kpos
            m.value_pos[key] = _mark_pos(value_node, filename)

    def construct_seq(loader: Any, node: SequenceNode):
        s = Seq(pos=_mark_pos(node, filename))
        yield s
        for item in node.value:
            s.append(loader.construct_object(item, deep=True))
            s.item_pos.append(_mark_pos(item, filename))

    def refuse_tag(loader: Any, tag_suffix: Any, node: Node = None):
        # multi-constructor signature (loader, suffix, node) or plain (loader, node)
        if node is None:
            node, tag_suffix = tag_suffix, None
        raise _Refused(_mark_pos(node, filename), f"unsupported YAML tag '{node.tag}'",
                       "specs use plain YAML only; remove the tag (unsafe tags such as !!python/... are never loaded)")

    def construct_int(loader: Any, node: ScalarNode):
        # int("9" * 5000) raises ValueError (Python's 4300-digit cap) inside PyYAML, position-less;
        # no size in a spec needs more than a few dozen digits.
        if len(node.value) > MAX_INT_CHARS:
            raise _Refused(_mark_pos(node, filename), f"integer literal with {len(node.value)} characters",
                           f"integers in specs are sizes and counts; at most {MAX_INT_CHARS} characters")
        return loader.construct_yaml_int(node)

    Loader.add_constructor(_CORE_TAG_PREFIX + "int", construct_int)
    Loader.add_constructor(_CORE_TAG_PREFIX + "map", construct_map)
    Loader.add_constructor(_CORE_TAG_PREFIX + "seq", construct_seq)
    for unsafe in ("set", "omap", "pairs", "binary", "timestamp"):
        Loader.add_constructor(_CORE_TAG_PREFIX + unsafe, refuse_tag)
    Loader.add_multi_constructor("", refuse_tag)
    return Loader


def _key_id(node: Node) -> Any:
    return (node.tag, node.value) if isinstance(node, ScalarNode) else id(node)


class _Refused(Exception):
    def __init__(self, pos: SourcePos, message: str, hint: str):
        super().__init__(message)
        self.pos, self.message, self.hint = pos, message, hint


def _expanded_size(root: Any, budget: int) -> int:
    """Number of nodes once aliases are expanded, counted without expanding them."""
    memo: dict[int, int] = {}

    def size(obj: Any) -> int:
        key = id(obj)
        if key in memo:
            return memo[key]
        memo[key] = 1  # guards against self-referencing aliases
        if isinstance(obj, dict):
            total = 1 + sum(size(v) for v in obj.values()) + len(obj)
        elif isinstance(obj, list):
            total = 1 + sum(size(v) for v in obj)
        else:
            total = 1
        memo[key] = min(total, budget + 1)
        return memo[key]

    return size(root)


def _compose(text: str, loader_cls: type) -> tuple[Any, int]:
    """The document and the number of aliases it used, read by one loader."""
    loader = loader_cls(text)
    try:
        return loader.get_single_data(), loader._aliases
    finally:
        loader.dispose()


def load_yaml_text(text: str, filename: str, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """Parse YAML ``text`` into :class:`Map`/:class:`Seq` trees, or raise :class:`SpecError`."""
    diag = Diagnostics()
    if len(text.encode("utf-8", errors="replace")) > limits.max_bytes:
        raise SpecError([_too_big(filename, limits)])
    data, aliases = None, 0
    try:
        try:
            data, aliases = _compose(text, _make_loader(filename, limits, diag))
        except yaml.MarkedYAMLError as exc:
            if "maximum nesting depth" not in str(exc.problem):
                raise
            # libyaml scans up to 1024 characters ahead for a flow key and refuses flow nesting past
            # 1000 levels there, before the composer below sees level max_depth + 1; PyYAML's own
            # parser yields events lazily, so the depth guard refuses the node that crosses the cap
            data, aliases = _compose(text, _make_loader(filename, limits, diag, _PurePythonLoader))
    except _Refused as exc:
        diag.error(exc.pos, exc.message, exc.hint)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = SourcePos(filename, mark.line + 1, mark.column + 1) if mark else SourcePos(filename)
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{exc.context}: {problem}"
        diag.error(pos, f"YAML syntax error: {problem}", "check indentation, quoting and brackets around this point")
    except yaml.YAMLError as exc:
        diag.error(SourcePos(filename), f"YAML error: {exc}")
    except RecursionError:
        diag.error(SourcePos(filename), "YAML structure too deeply nested", "flatten the structure")
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor's own error: no position, but no traceback
        diag.error(SourcePos(filename), f"YAML value error: {exc}")
    diag.raise_if_any()
    if aliases and _expanded_size(data, limits.max_expanded_nodes) > limits.max_expanded_nodes:
        diag.error(SourcePos(filename, 1, 1), f"document expands to more than {limits.max_expanded_nodes} nodes through aliases",
                   "this looks like an alias bomb; write the spec without nested aliases")
    diag.raise_if_any()
    return data


def load_yaml_file(path: str | Path, limits: YamlLimits = DEFAULT_LIMITS, display_name: str | None = None) -> Any:
    """Read and parse a YAML file with positions; errors are :class:`SpecError`."""
    name = display_name or str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise SpecError([_too_big(name, limits)])
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Diagnostic(SourcePos(name), f"file is not UTF-8 text ({exc.reason})", "save the spec as UTF-8")]) from None
    except OSError as exc:
        raise SpecError([Diagnostic(SourcePos(name), f"cannot read file: {exc.strerror or exc}")]) from None
    return load_yaml_text(text, name, limits)


def _too_big(name: str, limits: YamlLimits) -> Diagnostic:
    return Diagnostic(SourcePos(name), f"file is larger than {limits.max_bytes} bytes",
                      "specs are small text files; split it into imported block libraries")
