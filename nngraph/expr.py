"""A small, whitelisted expression language for ``${...}`` in specs.

Allowed: numbers, booleans, strings, names of vars, ``+ - * / // % **``,
comparisons, ``and/or/not``, ``a if c else b``, lists/tuples, and calls to a
fixed set of functions (:data:`FUNCTIONS`). Nothing else parses: no attribute
access, no subscripts, no lambdas, no comprehensions, and never ``eval``.
Results are bounded in size so ``${10 ** 10 ** 10}`` is refused, not computed.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any, Callable, Mapping

MAX_EXPR_CHARS = 400
MAX_INT_BITS = 256
MAX_POW_EXPONENT = 512
#: Cap on the size of any value an expression builds: characters of a string, items of a list
#: (nested lists count every item). Checked *before* an operation that could exceed it runs.
MAX_VALUE_SIZE = 100_000
MAX_ROUND_DIGITS = 400  # round(x, -10**9) would compute 10**(10**9)
MAX_SHOWN_CHARS = 80

EXPR_RE = re.compile(r"\$\{([^{}]*)\}")


class ExprError(ValueError):
    """An expression that does not parse, names something unknown, or is not allowed."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def _int_check(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise ExprError(f"result too large ({value.bit_length()} bits)", "expressions compute sizes; check the arithmetic")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError("result is not a finite number")
    return value


def shown(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages: a refused value may be huge.

    Lists are cut before ``repr`` runs, so quoting a ten-million-item list costs nothing.
    """
    if isinstance(value, list) and len(value) > limit:
        return _cut(repr(value[:limit])[:-1] + ", ...]", limit, f" ({len(value):,} items)")
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[:4 * limit]
    return _cut(repr(value), limit, "")


def _cut(text: str, limit: int, suffix: str) -> str:
    return (text if len(text) <= limit else text[:limit] + "...") + suffix


def _size_error(what: str, size: int) -> ExprError:
    unit = "characters" if what == "string" else "items"
    return ExprError(f"{what} of {size:,} {unit} is too large (the limit is {MAX_VALUE_SIZE:,})",
                     "expressions compute sizes and names, not bulk data")


class _Sizes:
    """Sizes of the values one evaluation builds (string characters, list items through nested lists).

    Memoised by identity: ``[x] * n`` holds ``n`` references to one ``x``, measured once.
    """

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, int]] = {}

    def of(self, value: Any) -> int:
        """The size of ``value``; 1 for a number or anything that is not a string or a list."""
        if isinstance(value, str):
            return len(value)
        if not isinstance(value, list):
            return 1
        hit = self._memo.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        total = len(value)
        for item in value:
            total += self.of(item) if isinstance(item, (str, list)) else 0
            if total > MAX_VALUE_SIZE:
                break  # enough to refuse; measuring further would cost what the cap prevents
        self._memo[id(value)] = (value, total)
        return total

    def check(self, value: Any) -> Any:
        """``value``, unless it is a string or list over :data:`MAX_VALUE_SIZE`."""
        size = self.of(value)
        if size > MAX_VALUE_SIZE:
            raise _size_error("string" if isinstance(value, str) else "list", size)
        return value


#: ``%`` conversions in a format string: flags, width, precision; a ``*`` takes them from the arguments.
_FORMAT_SPEC = re.compile(r"%[#0 +\-]*(\*|\d*)(?:\.(\*|\d*))?")


def _format_width(fmt: str) -> int:
    """The widths and precisions a ``%`` format string asks for, added up; ``*`` is refused."""
    total = 0
    for width, precision in _FORMAT_SPEC.findall(fmt):
        if "*" in (width, precision):
            raise ExprError("'*' widths in % formatting are not allowed", "write the width as a number")
        total += int(width or 0) + int(precision or 0)
    return total


def _safe_pow(a: Any, b: Any) -> Any:
    if isinstance(b, (int, float)) and abs(b) > MAX_POW_EXPONENT:
        raise ExprError(f"exponent {b} too large (max {MAX_POW_EXPONENT})")
    return a**b


def _checked_div(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def div(a: Any, b: Any) -> Any:
        if b == 0:
            raise ExprError("division by zero")
        return op(a, b)
    return div


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: _checked_div(operator.truediv), ast.FloorDiv: _checked_div(operator.floordiv),
    ast.Mod: _checked_div(operator.mod), ast.Pow: _safe_pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def _round(number: Any, ndigits: Any = None) -> Any:
    """``round``, with ``ndigits`` bounded: ``round(7, -10**9)`` would compute ``10**(10**9)``."""
    if isinstance(ndigits, int) and abs(ndigits) > MAX_ROUND_DIGITS:
        raise ValueError(f"ndigits {ndigits} out of range (at most {MAX_ROUND_DIGITS} either way)")
    return round(number) if ndigits is None else round(number, ndigits)


#: The only callables an expression may use.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min, "max": max, "abs": abs, "int": int, "float": float, "round": _round,
    "ceil": math.ceil, "floor": math.floor, "sqrt": math.sqrt, "log2": math.log2,
}


def _predicted_size(node: ast.BinOp, left: Any, right: Any, sizes: _Sizes) -> int:
    """The size ``left OP right`` would have, worked out before computing it (0: not a sequence)."""
    seqs = (str, list)
    if isinstance(node.op, ast.Mult) and (isinstance(left, seqs) or isinstance(right, seqs)):
        seq, n = (left, right) if isinstance(left, seqs) else (right, left)
        return sizes.of(seq) * n if isinstance(n, int) and n > 0 else 0
    if isinstance(node.op, ast.Add) and isinstance(left, seqs) and isinstance(right, seqs):
        return sizes.of(left) + sizes.of(right)
    if isinstance(node.op, ast.Mod) and isinstance(left, str):
        return len(left) + _format_width(left)
    return 0


def _bound_operation(node: ast.BinOp, left: Any, right: Any, sizes: _Sizes) -> None:
    """Refuse an operation whose result would be too large, before it allocates anything."""
    size = _predicted_size(node, left, right, sizes)
    if size > MAX_VALUE_SIZE:
        what = {ast.Mult: "sequence repetition", ast.Add: "concatenation", ast.Mod: "formatted string"}[type(node.op)]
        unit = "characters" if isinstance(left, str) or isinstance(right, str) else "items"
        raise ExprError(f"{what} too large", f"it would hold {size:,} {unit}, over the limit of {MAX_VALUE_SIZE:,}; "
                        "expressions compute sizes and names, not bulk data")


class _Evaluator:
    def __init__(self, lookup: Callable[[str], Any]):
        self.lookup = lookup
        self.sizes = _Sizes()

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, "eval_" + type(node).__name__, None)
        if method is None:
            raise ExprError(f"'{type(node).__name__}' is not allowed in expressions",
                            "use arithmetic, comparisons, 'a if c else b' and " + ", ".join(sorted(FUNCTIONS)))
        return self.sizes.check(_int_check(method(node)))

    def eval_Expression(self, node: ast.Expression) -> Any:
        return self.eval(node.body)

    def eval_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, bool, str, type(None))):
            raise ExprError(f"constant {node.value!r} is not allowed")
        return node.value

    def eval_Name(self, node: ast.Name) -> Any:
        if node.id in ("True", "true"):
            return True
        if node.id in ("False", "false"):
            return False
        return self.lookup(node.id)

    def eval_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator '{type(node.op).__name__}' is not allowed", "allowed: + - * / // % **")
        left, right = self.eval(node.left), self.eval(node.right)
        _bound_operation(node, left, right, self.sizes)
        try:
            return op(left, right)
        except TypeError as exc:
            raise ExprError(f"bad operand types: {exc}") from None

    def eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        op = _UNARY.get(type(node.op))
        if op is None:
            raise ExprError(f"operator '{type(node.op).__name__}' is not allowed")
        try:
            return op(self.eval(node.operand))
        except TypeError as exc:
            raise ExprError(f"bad operand type: {exc}") from None

    def eval_BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            result: Any = True
            for v in node.values:
                result = self.eval(v)
                if not result:
                    return result
            return result
        result = False
        for v in node.values:
            result = self.eval(v)
            if result:
                return result
        return result

    def eval_Compare(self, node: ast.Compare) -> Any:
        left = self.eval(node.left)
        for op_node, comp in zip(node.ops, node.comparators):
            op = _CMPOPS.get(type(op_node))
            if op is None:
                raise ExprError(f"comparison '{type(op_node).__name__}' is not allowed", "allowed: == != < <= > >=")
            right = self.eval(comp)
            try:
                if not op(left, right):
                    return False
            except TypeError as exc:
                raise ExprError(f"cannot compare: {exc}") from None
            left = right
        return True

    def eval_IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def eval_List(self, node: ast.List) -> Any:
        return [self.eval(e) for e in node.elts]

    eval_Tuple = eval_List

    def eval_Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else "this call"
            raise ExprError(f"call to '{name}' is not allowed", "allowed functions: " + ", ".join(sorted(FUNCTIONS)))
        if node.keywords:
            raise ExprError("keyword arguments are not allowed in expressions")
        args = [self.eval(a) for a in node.args]
        try:
            return FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ExprError(f"{node.func.id}(): {exc}") from None


def evaluate(source: str, lookup: Callable[[str], Any] | Mapping[str, Any]) -> Any:
    """Evaluate one expression (the text inside ``${...}``) against ``lookup``."""
    if len(source) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"invalid expression '{source.strip()}': {exc.msg}") from None
    if isinstance(lookup, Mapping):
        table = lookup

        def lookup(name: str) -> Any:  # noqa: F811 - wraps the mapping
            if name not in table:
                raise ExprError(f"unknown name '{name}' in expression", _names_hint(name, table))
            return table[name]
    try:
        return _Evaluator(lookup).eval(tree)
    except (ZeroDivisionError, OverflowError, ValueError) as exc:
        if isinstance(exc, ExprError):
            raise
        raise ExprError(f"cannot evaluate '{source.strip()}': {exc}") from None


def _names_hint(name: str, names: Mapping[str, Any]) -> str:
    from .errors import choices_hint
    return choices_hint(name, names.keys(), "defined names")


def names_in(value: Any) -> list[str]:
    """The names the expressions in ``value`` (a string, or lists and mappings of them) refer to, in order.

    Both branches of ``a if c else b`` count; an expression that does not parse names nothing here (its
    evaluation reports it).
    """
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif has_expr(item):
            for source in EXPR_RE.findall(item):
                found.extend(_names_of(source))
    return list(dict.fromkeys(found))


def _names_of(source: str) -> list[str]:
    if len(source) > MAX_EXPR_CHARS:
        return []
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        return []
    return [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in ("True", "true", "False", "false")]


def has_expr(value: Any) -> bool:
    """True when ``value`` is a string holding at least one ``${...}``."""
    return isinstance(value, str) and "${" in value


def substitute(text: str, lookup: Callable[[str], Any] | Mapping[str, Any]) -> Any:
    """Resolve ``${...}`` in ``text``: a lone expression keeps its type, mixed text becomes a string.

    Mixed text is capped like any expression result: ``"${s}${s}"`` through a chain of vars doubles
    at each link, so the text is measured as it is assembled.
    """
    whole = EXPR_RE.fullmatch(text.strip())
    if whole:
        return evaluate(whole.group(1), lookup)
    if "${" in text and not EXPR_RE.search(text):
        raise ExprError(f"unterminated expression in {shown(text)}", "write expressions as ${...}")
    pieces: list[str] = []
    total = 0
    for i, part in enumerate(EXPR_RE.split(text)):
        piece = str(evaluate(part, lookup)) if i % 2 else part
        total += len(piece)
        if total > MAX_VALUE_SIZE:
            raise _size_error("string", total)
        pieces.append(piece)
    return "".join(pieces)
