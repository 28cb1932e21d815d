"""The task registry (compilers/train/tasks/): every ``train.task`` name the front end lists is registered by one
family module, with the roles the front end declares; a registration the front end does not list fails."""

from __future__ import annotations

import pytest

from nngraph.compilers.train.tasks import REGISTRY, load_all, lookup, task
from nngraph.compilers.train.tasks._base import GraphTask, NetworksTask
from nngraph.train_keys import TASK_ROLES, TASKS


def test_every_front_end_task_is_registered_with_its_roles():
    reg = load_all()
    assert set(reg) == set(TASKS) - {"auto"}
    assert {name: e.roles for name, e in reg.items() if e.networks} == {k: tuple(v) for k, v in TASK_ROLES.items()}
    for name, entry in reg.items():
        assert entry.graph is None or issubclass(entry.graph, GraphTask), name
        assert entry.networks is None or issubclass(entry.networks, NetworksTask), name
        assert (entry.graph or entry.networks).name == name


def test_families_live_in_modules_named_for_them():
    where = {name: (e.graph or e.networks).__module__.rpartition(".")[2] for name, e in load_all().items()}
    assert where == {"classification": "classification", "node_classification": "classification",
                     "graph_classification": "classification", "regression": "regression",
                     "language_model": "language_model", "masked_lm": "language_model", "diffusion": "diffusion",
                     "vae": "vae", "gan": "gan", "wgan": "gan", "latent_diffusion": "latent_diffusion",
                     "dqn": "rl", "ddpg": "rl"}
    assert load_all()["vae"].graph.__module__ == load_all()["vae"].networks.__module__  # both forms of vae


def test_a_registration_the_front_end_does_not_list_is_refused():
    with pytest.raises(ValueError, match="not in nngraph.train_keys.TASKS"):
        task("nosuch")(type("T", (GraphTask,), {}))
    with pytest.raises(ValueError, match="no roles in nngraph.train_keys.TASK_ROLES"):
        task("regression", networks=True)(type("T", (NetworksTask,), {}))
    with pytest.raises(ValueError, match="registered twice"):
        task("gan", networks=True)(type("T", (NetworksTask,), {}))
    assert "nosuch" not in REGISTRY


def test_lookup_names_the_form_that_is_missing():
    assert lookup("vae", networks=True).__name__ == "VAENetworksTask"
    with pytest.raises(KeyError, match="no task 'gan' on one graph"):
        lookup("gan", networks=False)
