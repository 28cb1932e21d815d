"""``share`` on a block use: ``true`` ties the copies of a repeat to the first; ``NAME`` reuses the weights of an
earlier use of the same block (Siamese networks, tied encoders). Sharing nodes point at their source
(``Node.shares_params_with``); the back ends reuse the source's module, and shape inference compares the weight
sizes (nngraph/infer.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SourcePos, choices_hint
from ..yamlsrc import pos_in
from .resolve import Scope, resolve_at

if TYPE_CHECKING:
    from .expand import Expander


def mark_shared(exp: Expander, first: str, copy: str, names: list[str], pos: SourcePos) -> None:
    """Tie the nodes of ``copy`` (``names``: the nodes it just created) to those of ``first``; ``pos``: where
    ``share`` is written (the nodes' weight sizes are compared there after inference, nngraph/infer.py)."""
    prefix = copy + "."
    for name in names:
        if name.startswith(prefix):
            target = first + "." + name[len(prefix):]
            if target not in exp.nodes or exp.nodes[target].op != exp.nodes[name].op:
                exp.diag.error(pos, f"'{copy}' cannot share the weights of '{first}': its node '{name}' has no "
                               f"counterpart there", "share weights between uses that make the same nodes "
                               "(the same block, with the same parameters)")
                continue
            exp.nodes[name].shares_params_with = exp.nodes[target].shares_params_with or target
            exp.nodes[name].meta["share_pos"] = pos


def share_of(exp: Expander, entry: dict, name: str, namespace: str, scope: Scope, repeat: int | None,
             epos: SourcePos) -> tuple[bool, tuple[str, SourcePos] | None]:
    """A use's ``share``: true (its copies share the first copy's weights), or the name of an earlier use of
    the same block in the same node list whose weights it reuses (Siamese and tied encoders) -> that use's
    full name and where ``share`` is written."""
    spos = pos_in(entry, "share", epos)
    value = resolve_at(entry.get("share", False), scope, spos, exp.diag, "share", default=lambda: False)
    if isinstance(value, bool):
        if value and "repeat" not in entry:
            exp.diag.error(spos, f"'share: true' shares weights among the copies of a repeat, and '{name}' has "
                           "no 'repeat'", "to reuse the weights of another use of this block, name it: "
                           "share: <that use's name>; to share among copies, add repeat: N")
        return value, None
    block = entry.get("block")
    earlier = [u for u in exp.block_uses if u.name.startswith(namespace) and "." not in u.name[len(namespace):]]
    source = next((u for u in earlier if u.name == f"{namespace}{value}"), None)
    if source is None or source.block != block or source.name not in exp.copies:
        same = [u.name[len(namespace):] for u in earlier if u.block == block and u.name in exp.copies]
        exp.diag.error(spos, f"'share' must be true, false or the name of an earlier use of block '{block}' "
                       f"in the same node list, got {value!r}" + (f" (a use of block '{source.block}')"
                                                                  if source and source.block != block else ""),
                       choices_hint(str(value), same, f"earlier uses of {block}"))
        return False, None
    if len(exp.copies[source.name]) != (repeat if repeat is not None else 1):
        exp.diag.error(spos, f"'{name}' makes {repeat if repeat is not None else 1} copies of block '{block}' and "
                       f"'{value}' {len(exp.copies[source.name])}: they cannot share weights",
                       "give both the same repeat")
        return False, None
    return False, (source.name, spos)
