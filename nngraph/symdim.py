"""Symbolic dim algebra: a canonical form for dim expressions and decisions on them.

A dim expression over named symbols (``batch``, ``time``) built with ``+ - * // %`` and ``min``/``max`` is kept
as a :class:`Poly`: a sum of monomials with integer coefficients, ``sum_i c_i * prod_j a_ij ** p_ij``, where an
atom ``a`` is a symbol or an opaque term (``X // c``, ``X % c``, ``min(X, Y)``, ``max(X, Y)`` of canonical
operands). Two expressions that are equal as polynomials print the same, so ``time+1-1`` is ``time`` and
``(batch*2*2*4*4*32)//512`` is ``batch*4``.

Floor division by a positive constant ``c`` splits ``X = c*Q + R`` with every coefficient of ``R`` in
``[0, c)``: ``X // c = Q + R // c`` (``floor(n + x) = n + floor(x)`` for integer ``n``), and ``R // c`` is 0
when ``R`` is a constant below ``c``; nested ``(X // a) // b = X // (a*b)`` for positive ``a, b``.

Symbols are sizes, so each is assumed ``>= 1`` (and within declared bounds, see :class:`Facts`); a difference
whose interval excludes 0, or whose coefficients share a divisor that its constant lacks, proves two dims
different. This module is pure Python: ``validate`` does not pay for a computer-algebra import.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Union

INF = math.inf
Atom = Union[str, tuple]  # a symbol name, or (kind, Poly, Poly) with kind in "//", "%", "min", "max", or ("?", text)
Mono = tuple  # sorted ((atom, power), ...); () is the constant monomial


def _atom_key(a: Atom) -> str:
    return a if isinstance(a, str) else _atom_str(a)


@dataclass(frozen=True)
class Poly:
    """Canonical dim expression: sorted ``(monomial, coefficient)`` pairs with non-zero coefficients."""

    terms: tuple = ()

    @staticmethod
    def of(terms: Mapping[Mono, int]) -> "Poly":
        """Canonical polynomial from a monomial -> coefficient mapping (zeros dropped)."""
        return Poly(tuple(sorted(((m, c) for m, c in terms.items() if c), key=_term_key)))

    @property
    def const(self) -> int | None:
        """The value when the expression has no symbols, else None."""
        if not self.terms:
            return 0
        return self.terms[0][1] if len(self.terms) == 1 and self.terms[0][0] == () else None

    def constant_part(self) -> int:
        """The coefficient of the constant monomial."""
        return dict(self.terms).get((), 0)

    def __add__(self, other: "Poly") -> "Poly":
        out = dict(self.terms)
        for m, c in other.terms:
            out[m] = out.get(m, 0) + c
        return Poly.of(out)

    def scale(self, k: int) -> "Poly":
        """``k * self``."""
        return Poly.of({m: c * k for m, c in self.terms})

    def __sub__(self, other: "Poly") -> "Poly":
        return self + other.scale(-1)

    def __mul__(self, other: "Poly") -> "Poly":
        out: dict[Mono, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = _mono_mul(m1, m2)
                out[m] = out.get(m, 0) + c1 * c2
        return Poly.of(out)

    def __str__(self) -> str:
        return to_str(self)


def _term_key(term: tuple) -> tuple:
    mono = term[0]
    return (mono == (), [(_atom_key(a), -p) for a, p in mono])


def _mono_mul(m1: Mono, m2: Mono) -> Mono:
    powers: dict[Atom, int] = {}
    for a, p in m1 + m2:
        powers[a] = powers.get(a, 0) + p
    return tuple(sorted(powers.items(), key=lambda ap: _atom_key(ap[0])))


def const(n: int) -> Poly:
    """The constant ``n``."""
    return Poly.of({(): n})


def symbol(name: str) -> Poly:
    """The symbol ``name``."""
    return Poly((((((name, 1),), 1)),))


def _atom(a: Atom) -> Poly:
    return Poly(((((a, 1),), 1),))


def floordiv(x: Poly, y: Poly) -> Poly:
    """``x // y`` (see the module docstring for the rules)."""
    c = y.const
    if c is None:
        return _div_by_monomial(x, y)
    if c <= 0:
        raise ZeroDivisionError(f"dim division by {c}")
    if c == 1:
        return x
    quotient, rest = _split(x, c)
    if rest.const is not None:
        return quotient + const(rest.const // c)
    inner = _single_atom(rest)
    if inner is not None and inner[0] == "//" and inner[2].const is not None:
        return quotient + floordiv(inner[1], const(inner[2].const * c))  # (X//a)//b = X//(a*b)
    return quotient + _atom(("//", rest, y))


def _div_by_monomial(x: Poly, y: Poly) -> Poly:
    """``x // y`` for symbolic ``y``: the terms ``y`` divides exactly come out (``(q*y + r)//y = q + r//y``)."""
    if len(y.terms) != 1 or y.terms[0][1] <= 0:
        return _atom(("//", x, y))
    mono, c = y.terms[0]
    need = dict(mono)
    q: dict[Mono, int] = {}
    r: dict[Mono, int] = {}
    for m, k in x.terms:
        have = dict(m)
        if k % c == 0 and all(have.get(a, 0) >= p for a, p in need.items()):
            rest = tuple((a, p - need.get(a, 0)) for a, p in m if p - need.get(a, 0))
            q[rest] = q.get(rest, 0) + k // c
        else:
            r[m] = k
    rest_poly = Poly.of(r)
    return Poly.of(q) + (_atom(("//", rest_poly, y)) if rest_poly.terms else const(0))


def mod(x: Poly, y: Poly) -> Poly:
    """``x % y``; by a constant it depends only on the remainders of the coefficients."""
    c = y.const
    if c is None:
        return const(0) if x == y else _atom(("%", x, y))
    if c <= 0:
        raise ZeroDivisionError(f"dim modulo by {c}")
    _, rest = _split(x, c)
    return const(rest.const % c) if rest.const is not None else _atom(("%", rest, y))


def _split(x: Poly, c: int) -> tuple[Poly, Poly]:
    """``x = c*Q + R`` with every coefficient of R in [0, c)."""
    q = {m: k // c for m, k in x.terms}
    r = {m: k % c for m, k in x.terms}
    return Poly.of(q), Poly.of(r)


def _single_atom(p: Poly) -> tuple | None:
    if len(p.terms) == 1 and p.terms[0][1] == 1 and len(p.terms[0][0]) == 1 and p.terms[0][0][0][1] == 1:
        a = p.terms[0][0][0][0]
        return a if isinstance(a, tuple) else None
    return None


def minmax(kind: str, x: Poly, y: Poly) -> Poly:
    """``min(x, y)`` or ``max(x, y)``: the provably smaller/larger one when decidable, else an opaque term."""
    lo, hi = bounds(x - y, Facts())
    if lo >= 0:
        return y if kind == "min" else x
    if hi <= 0:
        return x if kind == "min" else y
    a, b = sorted((x, y), key=to_str)
    return _atom((kind, a, b))


# ---------------------------------------------------------------- printing


def _atom_str(a: tuple) -> str:
    kind = a[0]
    if kind == "?":
        return a[1]
    if kind in ("min", "max"):
        return f"{kind}({to_str(a[1])}, {to_str(a[2])})"
    return f"{_paren(a[1])}{kind}{_paren(a[2])}"


def _paren(p: Poly) -> str:
    s = to_str(p)
    return s if s.isidentifier() or s.lstrip("-").isdigit() else f"({s})"


def _mono_str(mono: Mono, coef: int) -> str:
    """``atom*atom*coef`` (coefficient last, as in ``seq*2``); div/mod atoms in parentheses among factors."""
    factors = []
    for a, p in mono:
        s = _atom_key(a)
        if isinstance(a, tuple) and a[0] in ("//", "%", "?") and (len(mono) > 1 or p > 1 or abs(coef) != 1):
            s = f"({s})"
        factors += [s] * p
    if abs(coef) != 1 or not factors:
        factors.append(str(abs(coef)))
    return "*".join(factors)


@lru_cache(maxsize=8192)
def to_str(p: Poly) -> str:
    """The canonical text, parseable again by :func:`parse` and by the expression evaluator."""
    if not p.terms:
        return "0"
    out = ""
    for mono, coef in p.terms:
        body = _mono_str(mono, coef)
        out += ("-" if coef < 0 else ("+" if out else "")) + body
    return out


# ---------------------------------------------------------------- parsing

_BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.FloorDiv: floordiv, ast.Mod: mod}


@lru_cache(maxsize=16384)
def parse(text: str | int) -> Poly:
    """The canonical form of a dim (an int or an expression string); text it cannot read is one opaque atom."""
    if isinstance(text, int):
        return const(text)
    try:
        return _node(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return _atom(("?", text))


def is_expression(text: str) -> bool:
    """True when ``text`` reads as a dim expression (symbols, ints, + - * // %, min, max): no opaque part."""
    try:
        _node(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return False
    return True


def _node(n: ast.AST) -> Poly:
    if isinstance(n, ast.Name):
        return symbol(n.id)
    if isinstance(n, ast.Constant) and isinstance(n.value, int) and not isinstance(n.value, bool):
        return const(n.value)
    if isinstance(n, ast.BinOp) and type(n.op) in _BIN:
        return _BIN[type(n.op)](_node(n.left), _node(n.right))
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
        v = _node(n.operand)
        return v.scale(-1) if isinstance(n.op, ast.USub) else v
    if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("min", "max") and len(n.args) >= 2
            and not n.keywords):
        out = _node(n.args[0])
        for arg in n.args[1:]:
            out = minmax(n.func.id, out, _node(arg))
        return out
    raise ValueError("not a dim expression")


def canonical(dim: int | str) -> int | str:
    """A dim in canonical form: an int when it has no symbols, else the canonical text."""
    p = parse(dim)
    return p.const if p.const is not None else to_str(p)


def symbols_of(dim: int | str) -> set[str]:
    """Names of the symbols a dim depends on."""
    return symbols(parse(dim)) if isinstance(dim, str) else set()


def symbols(p: Poly) -> set[str]:
    """Names of the symbols in ``p`` (inside opaque terms too)."""
    out: set[str] = set()
    for mono, _ in p.terms:
        for a, _ in mono:
            if isinstance(a, str):
                out.add(a)
            elif a[0] != "?":
                out |= symbols(a[1]) | symbols(a[2])
    return out


# ---------------------------------------------------------------- facts and decisions


@dataclass(frozen=True)
class Facts:
    """What a spec declares about its symbols: lower/upper bounds and divisors (``seq % 64 == 0``)."""

    low: Mapping[str, int] = field(default_factory=dict)
    high: Mapping[str, int] = field(default_factory=dict)
    multiple: Mapping[str, int] = field(default_factory=dict)

    def low_of(self, name: str) -> int:
        """Smallest value of a symbol: declared, else 1 (a size)."""
        return max(1, self.low.get(name, 1))


def substitute(p: Poly, values: Mapping[str, Poly]) -> Poly:
    """``p`` with symbols replaced (re-canonicalised, opaque terms included)."""
    out = const(0)
    for mono, coef in p.terms:
        term = const(coef)
        for a, power in mono:
            for _ in range(power):
                term = term * _subst_atom(a, values)
        out = out + term
    return out


def _subst_atom(a: Atom, values: Mapping[str, Poly]) -> Poly:
    if isinstance(a, str):
        return values.get(a, symbol(a))
    kind = a[0]
    if kind == "?":
        return _atom(a)
    x, y = substitute(a[1], values), substitute(a[2], values)
    return {"//": floordiv, "%": mod}[kind](x, y) if kind in ("//", "%") else minmax(kind, x, y)


def _imul(a: tuple, b: tuple) -> tuple:
    def m(x: float, y: float) -> float:
        return 0 if x == 0 or y == 0 else x * y
    prods = [m(x, y) for x in a for y in b]
    return min(prods), max(prods)


def _atom_bounds(a: Atom, facts: Facts) -> tuple:
    if isinstance(a, str):
        return facts.low_of(a), facts.high.get(a, INF)
    kind = a[0]
    if kind == "?":
        return -INF, INF
    lx, hx = bounds(a[1], facts)
    ly, hy = bounds(a[2], facts)
    if kind == "%":
        return (0, hy - 1) if ly >= 1 else (-INF, INF)
    if kind == "min":
        return min(lx, ly), min(hx, hy)
    if kind == "max":
        return max(lx, ly), max(hx, hy)
    if ly >= 1 and lx >= 0:  # floor of a non-negative by >= 1
        return (lx // hy if hy < INF else 0), (hx // ly if hx < INF else INF)
    if ly >= 1 and ly == hy:
        return (lx // ly if lx > -INF else -INF), (hx // ly if hx < INF else INF)
    return -INF, INF


def bounds(p: Poly, facts: Facts) -> tuple:
    """An interval ``[lo, hi]`` holding every value of ``p`` under ``facts`` (interval arithmetic)."""
    lo = hi = 0
    for mono, coef in p.terms:
        iv = (1, 1)
        for a, power in mono:
            ab = _atom_bounds(a, facts)
            for _ in range(power):
                iv = _imul(iv, ab)
        t = _imul(iv, (coef, coef))
        lo, hi = lo + t[0], hi + t[1]
    return lo, hi


def _under(p: Poly, facts: Facts) -> tuple[Poly, Facts]:
    """``p`` with each symbol declared a multiple of m written m*symbol (the symbol now counts multiples)."""
    if not facts.multiple:
        return p, facts
    values = {s: symbol(s).scale(m) for s, m in facts.multiple.items()}
    low = {s: -(-facts.low_of(s) // facts.multiple.get(s, 1)) for s in set(facts.low) | set(facts.multiple)}
    high = {s: h // facts.multiple.get(s, 1) for s, h in facts.high.items()}
    return substitute(p, values), Facts(low, high, {})


def sign(p: Poly, facts: Facts = Facts()) -> int | None:
    """1, 0 or -1 when ``p``'s sign is the same for every allowed assignment, else None."""
    q, f = _under(p, facts)
    if q.const is not None:
        return (q.const > 0) - (q.const < 0)
    lo, hi = bounds(q, f)
    if lo > 0:
        return 1
    if hi < 0:
        return -1
    return None


def compare(a: int | str, b: int | str, facts: Facts = Facts()) -> bool | None:
    """True when ``a == b`` for every allowed assignment, False when never, None when undecidable."""
    pa, pb = parse(a), parse(b)
    if pa == pb:
        return True
    d, f = _under(pa - pb, facts)
    if d.const is not None:
        return d.const == 0
    lo, hi = bounds(d, f)
    if lo == hi == 0:
        return True
    if lo > 0 or hi < 0:
        return False
    g = math.gcd(*(c for m, c in d.terms if m != ()))
    if g > 1 and d.constant_part() % g:
        return False  # 2*t == 2*s + 1 has no integer solution
    return None


def least(dim: int | str, facts: Facts = Facts()) -> float:
    """A lower bound of ``dim`` under ``facts`` (``-inf`` when none is known)."""
    q, f = _under(parse(dim), facts)
    return bounds(q, f)[0]
