"""The task registry: what ``train.task`` names, discovered like op families.

Each module here holds one task family and registers its tasks with :func:`task`::

    @task("gan", networks=True)      # trains the spec's networks by the roles nngraph.train_keys gives gan
    class GANTask(NetworksTask): ...

A task trains either one graph (a :class:`~._base.GraphTask`: data -> model inputs, a loss, metrics) or the
networks of a spec's ``networks:`` by role (a :class:`~._base.NetworksTask`: it owns its optimizers and its
step). One name may have both forms (``vae``). Adding a task is adding a
module (or a class in one): :func:`load_all` imports every module not named ``_*``, and the trainer
(:mod:`..loop`) runs every task through the same loop.

The names and the roles are declared once, in the front end (:mod:`nngraph.train_keys` ``TASKS``, ``TASK_ROLES``:
the schema, the docs and validate read them without torch); a registration takes its roles from there and
:func:`task` refuses a name the front end does not list.
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


def task(name: str, networks: bool = False) -> Callable[[type], type]:
    """Register the decorated class as task ``name``: its one-graph form, or (``networks``) its form over a spec's
    networks, which trains the roles the front end declares for ``name``."""

    def register(cls: type) -> type:
        if name not in TASKS:
            raise ValueError(f"task '{name}' is not in nngraph.train_keys.TASKS: add it there too")
        if networks and name not in TASK_ROLES:
            raise ValueError(f"task '{name}' has no roles in nngraph.train_keys.TASK_ROLES: declare them there")
        entry = REGISTRY.setdefault(name, TaskEntry(name))
        form = "networks" if networks else "graph"
        if getattr(entry, form) is not None:
            raise ValueError(f"task '{name}' ({form}) is registered twice")
        setattr(entry, form, cls)
        if networks:
            entry.roles = tuple(TASK_ROLES[name])
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
