"""The symbolic dim algebra: canonical forms, decisions, and agreement with Python's integer arithmetic."""

from __future__ import annotations

import random

import pytest

from nngraph import symdim
from nngraph.symdim import Facts, canonical, compare


@pytest.mark.parametrize("text, expected", [
    ("time+1-1+1-1-1+1", "time"),
    ("(((((batch*2)*2)*4)*4)*32)//512", "batch*4"),  # 2*2*4*4*32 = 2048 = 4*512
    ("(time-1)//2+1", "(time+1)//2"),
    ("((x//2)//3)", "x//6"),
    ("(t+5)//2", "(t+1)//2+2"),
    ("(4*t+5)%4", 1),
    ("min(seq, seq+1)", "seq"),
    ("max(seq+2, seq)", "seq+2"),
    ("(((batch*src*1000)//(batch*1000))*batch*tgt)//(batch*tgt)", "src"),
    ("2*(a+b)-b", "a*2+b"),
    ("seq*2", "seq*2"),
    (7, 7),
])
def test_canonical_forms(text, expected):
    assert canonical(text) == expected


def _eval(text: str, env: dict[str, int]) -> int:
    return eval(text, {"__builtins__": {}, "min": min, "max": max}, dict(env))  # the oracle: Python's own ints


_EXPRS = ["(a-1)//2+1", "((a+3)//4)*4-a", "a*b//b", "(a*6+b*4+5)//2", "(a*6+b*4+5)%2", "((a-3)//2+1)*2+(b%3)",
          "min(a, b)+max(a, 2*b)-a", "(a+b)*(a-b)", "((((a*2)*2)*4)*4)//8", "(a*b+1)//b", "(3*a)//2 - a//2"]


@pytest.mark.parametrize("text", _EXPRS)
def test_canonical_text_evaluates_like_the_original(text):
    """The canonical text is re-parseable and equal in value at random positive sizes."""
    canon = str(canonical(text))
    assert str(canonical(canon)) == canon
    rng = random.Random(text)
    for _ in range(200):
        env = {"a": rng.randint(1, 300), "b": rng.randint(1, 300)}
        assert _eval(canon, env) == _eval(text, env), (text, canon, env)


def test_equal_different_and_undecidable():
    assert compare("time+1", "time+2") is False          # the forgotten causal crop
    assert compare("2*t", "t") is False                  # t >= 1
    assert compare("2*t", "2*s+1") is False              # parity
    assert compare("t+1", "1+t") is True
    assert compare("batch", "seq") is None               # different symbols: undecidable
    assert compare("height", "width") is None


def test_facts_decide_what_sizes_alone_cannot():
    up = "((h-1)//2+1)*2"  # stride-2 conv then 2x upsample: back to h only when h is even
    assert compare(up, "h") is None
    assert compare(up, "h", Facts(multiple={"h": 2})) is True
    assert compare("min(t, 3)", "3", Facts(low={"t": 3})) is True
    assert compare("t", "5", Facts(high={"t": 4})) is False


def test_lower_bounds():
    assert symdim.least("time-2") == -1
    assert symdim.least("time-2", Facts(low={"time": 3})) == 1
    assert symdim.least("(time+1)//2") == 1
    assert symdim.least("seq", Facts(low={"seq": 10}, multiple={"seq": 4})) == 12


def test_unreadable_text_is_one_opaque_atom():
    assert canonical("seq/2") == "seq/2"
    assert compare("seq/2", "seq/2") is True
    assert compare("seq/2", "seq") is None
