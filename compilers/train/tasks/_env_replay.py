"""What the RL tasks (:mod:`.rl`) act in and learn from: a Gymnasium environment whose whole state can be
checkpointed, and a replay buffer of transitions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class Env:
    """A Gymnasium environment, unwrapped, with its own time limit, so its whole state can be checkpointed."""

    def __init__(self, run: Any, env_id: str | None, seed: int):
        try:
            import gymnasium as gym
        except ImportError:  # pragma: no cover - a declared dependency
            raise run.error("rl.env", "tasks dqn and ddpg need gymnasium (pip install gymnasium)") from None
        if not env_id:
            raise run.error("task", "tasks dqn and ddpg need train.rl.env (a Gymnasium id, e.g. CartPole-v1)")
        try:
            spec = gym.spec(env_id)
            self.env = gym.make(env_id).unwrapped
        except Exception as exc:  # noqa: BLE001 - any failure to build the environment is a config error
            raise run.error("rl.env", f"train.rl.env: cannot make Gymnasium environment '{env_id}': {exc}",
                            "classic control needs no download: CartPole-v1, Acrobot-v1, MountainCar-v0, Pendulum-v1")
        self.limit = spec.max_episode_steps
        self.obs, _ = self.env.reset(seed=seed)
        self.t, self.ret = 0, 0.0

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, float | None]:
        """(next observation, reward, terminated, the episode's return if it ended here); resets after an end."""
        nxt, reward, term, trunc, _ = self.env.step(action)
        self.t += 1
        self.ret += float(reward)
        finished = None
        if term or trunc or (self.limit is not None and self.t >= self.limit):
            finished = self.ret
            self.obs, _ = self.env.reset()
            self.t, self.ret = 0, 0.0
        else:
            self.obs = nxt
        return nxt, float(reward), bool(term), finished

    def state(self) -> dict[str, Any]:
        e = self.env
        return {"state": np.asarray(e.state, dtype=np.float64).tolist(), "rng": e.np_random.bit_generator.state,
                "obs": np.asarray(self.obs).tolist(), "t": self.t, "ret": self.ret}

    def load(self, st: dict[str, Any]) -> None:
        self.env.state = np.array(st["state"], dtype=np.float64)
        self.env.np_random.bit_generator.state = st["rng"]
        self.obs = np.array(st["obs"], dtype=np.asarray(self.obs).dtype)
        self.t, self.ret = st["t"], st["ret"]


class Replay:
    """A ring buffer of transitions (s, a, r, s', terminated) in preallocated tensors."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], act_shape: tuple[int, ...], act_dtype: torch.dtype):
        self.t = {"obs": torch.zeros(capacity, *obs_shape), "act": torch.zeros(capacity, *act_shape, dtype=act_dtype),
                  "rew": torch.zeros(capacity), "next": torch.zeros(capacity, *obs_shape), "done": torch.zeros(capacity)}
        self.capacity, self.pos, self.size = capacity, 0, 0

    def add(self, obs: Any, act: Any, rew: float, nxt: Any, done: bool) -> None:
        for k, v in (("obs", obs), ("act", act), ("rew", rew), ("next", nxt), ("done", float(done))):
            self.t[k][self.pos] = torch.as_tensor(v, dtype=self.t[k].dtype)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.size, (n,), generator=gen)
        return {k: v[idx] for k, v in self.t.items()}
