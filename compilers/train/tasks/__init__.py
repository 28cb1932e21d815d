"""The task registry: what ``train.task`` names, discovered like op families.

Each module here holds one task family and registers its tasks with :func:`task`::

    @task("gan", roles=("generator", "discriminator"))
    class GANTask(NetworksTask): ...

A task trains either one graph (a :class:`~._base.GraphTask`: data -> model inputs, a loss, metrics) or the
networks of a spec's ``networks:`` by role (a :class:`~._base.NetworksTask`: it owns its optimizers and its
step). One name may have both forms (``vae``); ``roles`` is the networks form's. Adding a task is adding a
module (or a class in one): :func:`load_all` imports every module not named ``_*``, and the trainer
(:mod:`..loop`) runs every task through the same loop.

The front end lists the names and roles in :mod:`nngraph.train_keys` (``TASKS``, ``TASK_ROLES``: it may not import
torch); :func:`task` refuses a registration that disagrees with them, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nngraph.discovery import import_submodules
from nngraph.train_keys import TASK_ROLES, TASKS


@dataclass
class TaskEntry:
    """One task name: its one-graph class and/or its networks class (with the roles it trains)."""

    name: str
    graph: type | None = None
    networks: type | None = None
    roles: tuple[str, ...] = ()


REGISTRY: dict[str, TaskEntry] = {}
_loaded = False


def task(name: str, roles: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Register the decorated class as task ``name`` (with ``roles``: its form over a spec's networks)."""

    def register(cls: type) -> type:
        if name not in TASKS:
            raise ValueError(f"task '{name}' is not in nngraph.train_keys.TASKS: add it there too")
        if tuple(roles) != tuple(TASK_ROLES.get(name, ())) and roles:
            raise ValueError(f"task '{name}': roles {roles} differ from nngraph.train_keys.TASK_ROLES")
        entry = REGISTRY.setdefault(name, TaskEntry(name))
        form = "networks" if roles else "graph"
        if getattr(entry, form) is not None:
            raise ValueError(f"task '{name}' ({form}) is registered twice")
        setattr(entry, form, cls)
        if roles:
            entry.roles = tuple(roles)
        cls.name = name
        return cls

    return register


def load_all() -> dict[str, TaskEntry]:
    """Import every task family module (once); the registry."""
    global _loaded
    if not _loaded:
        _loaded = True
        import_submodules(__name__, __path__)
    return REGISTRY


def lookup(name: str, networks: bool) -> type:
    """The class of task ``name`` in the form the spec needs (``networks``: it declares ``networks:``)."""
    entry = load_all().get(name)
    cls = None if entry is None else (entry.networks if networks else entry.graph)
    if cls is None:
        form = "over a spec's networks" if networks else "on one graph"
        raise KeyError(f"no task '{name}' {form}")
    return cls


def make_task(run: Any, name: str, data: Any) -> Any:
    """Build the one-graph task ``name`` on ``data``, checking graph and data agree."""
    return lookup(name, networks=False).build(run, data)
