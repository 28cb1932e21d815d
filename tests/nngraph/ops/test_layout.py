"""Layout ops: shape rules on symbolic dims, and located errors (einsum's equation checked against input ranks)."""

from __future__ import annotations

import pytest

from _onenode import one_node, single_error

X = {"x": (["batch", 4, "seq"], "float32")}
QK = {"q": (["batch", 2, "seq", 8], "float32"), "k": (["batch", 2, "mem", 8], "float32")}


@pytest.mark.parametrize("node,shape", [
    ("{name: n, op: pad, in: x, pads: [3, 0]}", ("batch", 4, "seq+3")),
    ("{name: n, op: pad, in: x, pads: [1, 1, 2, 0], mode: replicate}", ("batch", 6, "seq+2")),
    ("{name: n, op: roll, in: x, shifts: [1], dims: [-1]}", ("batch", 4, "seq")),
    ("{name: n, op: tile, in: x, reps: [2, 1, 1, 3]}", (2, "batch", 4, "seq*3")),
    ("{name: n, op: unsqueeze, in: x, dim: -1}", ("batch", 4, "seq", 1)),
    ("{name: n, op: stack, in: [x, x], dim: 1}", ("batch", 2, 4, "seq")),
])
def test_shapes_over_symbolic_dims(diagnose, node, shape):
    assert one_node(diagnose, node, X).out.shape == shape


def test_einsum_infers_the_output_shape_from_the_letters(diagnose):
    node = one_node(diagnose, "{name: n, op: einsum, in: [q, k], equation: 'bhid,bhjd->bhij'}", QK)
    assert node.out.shape == ("batch", 2, "seq", "mem")


@pytest.mark.parametrize("equation,shape", [
    ("...id,...jd->...ij", ("batch", 2, "seq", "mem")),  # '...' covers [batch, 2] in both
    ("...d,bhjd->...j", ("batch", 2, "seq", "mem")),
    ("bhi...,bhj...->bhij", ("batch", 2, "seq", "mem")),  # '...' ([8]) summed where the output omits it
    ("bhid,bhjd->...", ()),
])
def test_einsum_ellipsis_covers_the_unnamed_dims(diagnose, equation, shape):
    node = one_node(diagnose, f"{{name: n, op: einsum, in: [q, k], equation: '{equation}'}}", QK)
    assert node.out.shape == shape


@pytest.mark.parametrize("equation,shape", [("ii->i", (5,)), ("ii->", ()), ("bii->b", ("batch",)), ("bij,bjj->bi", ("batch", 5))])
def test_einsum_repeated_letters_take_diagonals(diagnose, equation, shape):
    names = [f"s{i}" for i in range(equation.count(",") + 1)]
    inputs = {n: ((["batch"] if t.startswith("b") else []) + [5] * len(t.lstrip("b")), "float32")
              for n, t in zip(names, equation.split("->")[0].split(","))}
    node = one_node(diagnose, f"{{name: n, op: einsum, in: [{', '.join(names)}], equation: '{equation}'}}", inputs)
    assert node.out.shape == shape


@pytest.mark.parametrize("equation,needle", [
    ("bhid,bhjd", "needs one '->'"),
    ("bid,bhjd->bhij", "3 letters for input 0 of rank 4"),
    ("bhid,bhjd,x->bhij", "3 input terms for 2 inputs"),
    ("bhid,bhjd->bhiz", "appear in no input term"),
    ("bhid,bdji->bhij", "letter 'd' is 8 in input 0 and 2 in input 1"),
    ("b...d...,bhjd->bhij", "at most one '...'"),
    ("bhid,bhjd->bhii", "output term 'bhii' repeats a letter"),
    ("bihi,bhjd->bhij", "letter 'i' is 2 in input 0 and 8 in input 0"),  # a diagonal of unequal dims
    ("bhidx...,bhjd->bhij", "5 letters for input 0 of rank 4"),
    ("...id,bh...->...i", "do not broadcast: [batch, 2] and [mem, 8]"),
])
def test_einsum_equation_is_checked_at_validate(diagnose, equation, needle):
    got, want, message, _ = single_error(diagnose, f"{{name: n, op: einsum, in: [q, k], equation: '{equation}'}}",
                                         "equation:", QK)
    assert needle in message and got == (want[0], want[1] + len("equation: "))


@pytest.mark.parametrize("node,token,needle", [
    ("{name: n, op: pad, in: x, pads: [1, 2, 3]}", "pads:", "pairs"),
    ("{name: n, op: pad, in: x, pads: [1, 1, 1, 1, 1, 1], mode: reflect}", "mode:", "rank 4 or 5"),
    ("{name: n, op: squeeze, in: x, dim: 1}", "dim:", "not 1"),
    ("{name: n, op: unstack, in: x, dim: 1, names: [a, b]}", "names:", "one slice per name"),
    ("{name: n, op: expand, in: x, shape: [batch, 3, seq]}", "shape:", "only size-1 dims expand"),
    ("{name: n, op: roll, in: x, shifts: [1, 2], dims: [1]}", "shifts:", "2 shifts for 1 dims"),
])
def test_bad_params_are_located(diagnose, node, token, needle):
    got, want, message, _ = single_error(diagnose, node, token, X)
    assert needle in message and got == (want[0], want[1] + len(token) + 1)


def test_reflect_pad_must_be_below_the_size(diagnose):
    _, _, message, _ = single_error(diagnose, "{name: n, op: pad, in: x, pads: [4, 0], mode: reflect}", "pads:",
                                    {"x": (["batch", 4, 4], "float32")})
    assert "below the dim's size 4" in message
