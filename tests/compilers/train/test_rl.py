"""DQN and DDPG on Gymnasium's classic control (compilers/train/tasks/rl.py): learning beats a random policy, the
run is a function of the seed (environment included), resume is exact, and misconfigurations are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nngraph.compilers.train.config import load_run_config
from nngraph.compilers.train.session import train_run
from nngraph.errors import SpecError
from train_helpers import QUIET, SEEDS, run_quiet

gym = pytest.importorskip("gymnasium")



def run(spec: str, out: Path, *sets: str, steps: int, **kw):
    return run_quiet(SEEDS / spec, out, *sets, steps=steps, **kw)




def random_return(env_id: str, episodes: int, seed: int) -> float:
    """Mean return of a uniformly random policy on the evaluation's environment seeds."""
    rets = []
    for k in range(episodes):
        env = gym.make(env_id)
        env.reset(seed=seed + 1_000_003 + k)
        env.action_space.seed(k)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total += float(r)
            done = term or trunc
        rets.append(total)
    return float(np.mean(rets))


def test_dqn_on_cartpole_beats_a_random_policy_by_far(tmp_path):
    summary = run("dqn_cartpole.yaml", tmp_path, "train.rl.epsilon_decay=3000", "train.eval.every=5000",
                  steps=5000)
    rand = random_return("CartPole-v1", 10, 0)
    assert 15 < rand < 35  # CartPole's random policy: about 22 steps
    assert summary["val"]["return"] >= 100, summary["val"]  # seed 0 reaches 145 (greedy, 10 episodes)
    assert summary["val"]["return"] >= 4 * rand


def test_ddpg_on_pendulum_beats_a_random_policy(tmp_path):
    summary = run("ddpg_pendulum.yaml", tmp_path, "hidden=64", "train.eval.every=DD".replace("DD", str(DDPG_STEPS)),
                  steps=DDPG_STEPS)
    rand = random_return("Pendulum-v1", 5, 0)
    assert rand < -900  # random torques: about -1200
    assert summary["val"]["return"] > RAND_MARGIN * rand, (summary["val"], rand)


DDPG_STEPS = 4000
RAND_MARGIN = 0.6


SMALL = ["hidden=16", "train.batch_size=16", "train.rl.warmup=50", "train.checkpoint.every=60",
         "train.eval.every=60", "train.rl.eval_episodes=1", "train.rl.target_every=20"]


def test_dqn_same_seed_same_run_and_exact_resume(tmp_path):
    run("dqn_cartpole.yaml", tmp_path / "a", *SMALL, steps=120)
    run("dqn_cartpole.yaml", tmp_path / "b", *SMALL, steps=120)
    cfg = load_run_config(SEEDS / "dqn_cartpole.yaml", [*QUIET, *SMALL], steps=120)
    train_run(cfg, tmp_path / "c", False, print, True, until=60)
    run("dqn_cartpole.yaml", tmp_path / "c", *SMALL, steps=120, resume=True)  # env, buffer, target, RNGs restored
    a, b, c = (load_file(tmp_path / n / "q.safetensors") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)
    run("dqn_cartpole.yaml", tmp_path / "d", *SMALL, steps=120, seed=1)
    assert not torch.equal(a["out.weight"], load_file(tmp_path / "d" / "q.safetensors")["out.weight"])


def test_ddpg_checkpoint_resume_is_exact(tmp_path):
    sets = [*SMALL, "train.rl.buffer=500"]
    run("ddpg_pendulum.yaml", tmp_path / "a", *sets, steps=120)
    cfg = load_run_config(SEEDS / "ddpg_pendulum.yaml", [*QUIET, *sets], steps=120)
    train_run(cfg, tmp_path / "b", False, print, True, until=60)
    run("ddpg_pendulum.yaml", tmp_path / "b", *sets, steps=120, resume=True)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert sorted(a) == sorted(b) and {k.split(".")[0] for k in a} == {"actor", "critic"}
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dqn_refuses_continuous_actions_and_a_wrong_output_width(tmp_path):
    with pytest.raises(SpecError, match="task 'dqn' needs discrete actions; Pendulum-v1 has Box"):
        run("dqn_cartpole.yaml", tmp_path, "train.rl.env=Pendulum-v1", "obs=3", steps=1)
    with pytest.raises(SpecError, match=r"outputs \[batch, 3\], but CartPole-v1 has 2 actions"):
        run("dqn_cartpole.yaml", tmp_path, "actions=3", steps=1)
    with pytest.raises(SpecError, match="cannot make Gymnasium environment 'NoSuchEnv-v0'"):
        run("dqn_cartpole.yaml", tmp_path, "train.rl.env=NoSuchEnv-v0", steps=1)
