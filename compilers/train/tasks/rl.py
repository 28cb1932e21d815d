"""Deep reinforcement learning on Gymnasium environments: ``dqn`` and ``ddpg`` over a spec's networks
(seed 000, "Deep Reinforcement Learning").

* ``dqn`` (Mnih et al., 2015): network ``q`` maps an observation to one value per discrete action.
  Actions are ε-greedy (ε decays linearly from ``rl.epsilon_start`` to ``rl.epsilon_end`` over
  ``rl.epsilon_decay`` steps; the first ``rl.warmup`` steps act at random); transitions go to a replay
  buffer; each update minimizes the Huber loss between Q(s, a) and r + γ (1 - done) max_a' Q⁻(s', a')
  on a sampled batch, Q⁻ a target copy of Q synced every ``rl.target_every`` updates
  (``rl.double``: the online network picks a', the target network values it).
* ``ddpg`` (Lillicrap et al., 2016): ``actor`` maps an observation to an action in [-1, 1] (scaled to
  the environment's bounds), ``critic`` maps (observation, action) to Q. The critic minimizes
  (Q(s, a) - r - γ (1 - done) Q'(s', μ'(s')))², the actor maximizes Q(s, μ(s)) (the deterministic
  policy gradient), and the target networks μ', Q' follow by soft updates θ' ← τθ + (1 - τ)θ'.
  Exploration adds Gaussian or Ornstein-Uhlenbeck noise (``rl.noise``, ``rl.noise_std``).

``train.steps`` counts environment steps. Everything random is seeded from ``train.seed``: the
environment (reset seed), exploration and buffer sampling (generators whose states are
checkpointed with the environment's own state, the replay buffer and the target networks, so
``--resume`` continues exactly). Evaluation runs ``rl.eval_episodes`` greedy (noise-free) episodes
on fresh environments seeded from the seed, and reports their mean return.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import task
from ._base import NetworksTask, input_shape, output
from ._env_replay import Env, Replay


def _soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for pt, p in zip(target.parameters(), source.parameters()):
            pt.mul_(1 - tau).add_(p, alpha=tau)


class RLTask(NetworksTask):
    """What DQN and DDPG share: environment, replay buffer, target networks, RNGs, episode returns, evaluation."""

    metric, higher_is_better = "return", True

    def __init__(self, tr: Any):
        super().__init__(tr)
        self.rl = self.cfg["rl"]
        self.env = Env(self.run, self.rl["env"], self.seed)
        self.rng = np.random.default_rng(self.seed)  # exploration
        self.gen = torch.Generator().manual_seed(self.seed + 1)  # buffer sampling
        self.returns: list[float] = []
        self.episodes = 0
        self.updates = 0
        self.targets: dict[str, nn.Module] = {}

    def target_of(self, role: str) -> nn.Module:
        net = copy.deepcopy(self.net(role))
        net.requires_grad_(False)
        self.targets[role] = net
        return net

    def obs_tensor(self, obs: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None]

    def check_obs(self, role: str) -> tuple[int, ...]:
        want = tuple(self.env.env.observation_space.shape)
        name = self.obs_input(role)
        have = input_shape(self.graph(role), name)
        if have != want:
            raise self.run.error("networks", f"network '{self.tr.roles[role]}' input '{name}' takes "
                                 f"[batch, {', '.join(map(str, have))}] but {self.rl['env']} observations are {list(want)}")
        return have

    def obs_input(self, role: str) -> str:
        return next(iter(self.graph(role).inputs))

    def total_steps(self) -> int:
        return self.cfg["steps"] or 10_000

    def learning(self, step: int) -> bool:
        return step >= self.rl["warmup"] and self.buffer.size >= self.cfg["batch_size"] and \
            step % self.rl["train_every"] == 0

    def after_step(self, finished: float | None, stats: dict[str, float]) -> dict[str, float]:
        if finished is not None:
            self.returns = (self.returns + [finished])[-100:]
            self.episodes += 1
        if self.returns:
            stats["return_100"] = float(np.mean(self.returns))
        return stats

    def clip(self, module: nn.Module) -> None:
        if self.cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg["grad_clip"])

    def policy(self, obs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        rets = []
        for k in range(self.rl["eval_episodes"]):
            env = Env(self.run, self.rl["env"], self.seed + 1_000_003 + k)
            done = None
            while done is None:
                _, _, _, done = env.step(self.policy(env.obs))
            rets.append(done)
        out = {"return": float(np.mean(rets)), "return_std": float(np.std(rets)), "episodes": float(self.episodes)}
        if self.returns:
            out["train_return_100"] = float(np.mean(self.returns))
        return out

    # ----- checkpoint ---------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from nngraph.compilers.torch import state_dict_for

        tensors = {f"buffer/{k}": v for k, v in self.buffer.t.items()}
        tensors["gen"] = self.gen.get_state()
        for role, net in self.targets.items():
            tensors.update({f"target/{role}/{k}": v for k, v in state_dict_for(net).items()})
        st = {"env": self.env.state(), "rng": self.rng.bit_generator.state, "returns": self.returns,
              "episodes": self.episodes, "updates": self.updates, "buffer": [self.buffer.pos, self.buffer.size]}
        return tensors, st

    def load_state(self, tensors: dict[str, torch.Tensor], st: dict[str, Any]) -> None:
        from nngraph.compilers.torch import load_state_dict

        for k in self.buffer.t:
            self.buffer.t[k].copy_(tensors[f"buffer/{k}"])
        self.buffer.pos, self.buffer.size = st["buffer"]
        self.gen.set_state(tensors["gen"])
        for role, net in self.targets.items():
            prefix = f"target/{role}/"
            load_state_dict(net, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.env.load(st["env"])
        self.rng.bit_generator.state = st["rng"]
        self.returns, self.episodes, self.updates = list(st["returns"]), st["episodes"], st["updates"]


@task("dqn", networks=True)
class DQNTask(RLTask):
    """Q-learning with a replay buffer and a target network (ε-greedy acting; ``rl.double``: double DQN)."""

    def __init__(self, tr: Any):
        super().__init__(tr)
        space = self.env.env.action_space
        if not hasattr(space, "n"):
            raise self.run.error("rl.env", f"task 'dqn' needs discrete actions; {self.rl['env']} has {space}",
                                 "use task: ddpg for continuous actions")
        self.Q, self.q_graph = self.net("q"), self.graph("q")
        out_t = self.q_graph.type_of(next(iter(self.q_graph.outputs.values())))
        if tuple(out_t.shape[1:]) != (int(space.n),):
            raise self.run.error("networks", f"network '{self.tr.roles['q']}' outputs [{', '.join(map(str, out_t.shape))}], but "
                                 f"{self.rl['env']} has {space.n} actions: expected [batch, {space.n}]")
        self.n_actions = int(space.n)
        obs_shape = self.check_obs("q")
        self.target = self.target_of("q")
        self.buffer = Replay(self.rl["buffer"], obs_shape, (), torch.long)
        self.optimizers = {"q": self.optimizer([self.Q])}

    def q(self, module: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return output(module, self.q_graph, **{self.obs_input("q"): obs})

    def epsilon(self, step: int) -> float:
        frac = min(step / self.rl["epsilon_decay"], 1.0)
        return self.rl["epsilon_start"] + frac * (self.rl["epsilon_end"] - self.rl["epsilon_start"])

    @torch.no_grad()
    def policy(self, obs: Any) -> int:
        return int(self.q(self.Q, self.obs_tensor(obs)).argmax(1))

    def train_step(self, step: int) -> dict[str, float]:
        eps = self.epsilon(step)
        explore = step < self.rl["warmup"] or self.rng.random() < eps
        obs = self.env.obs
        action = int(self.rng.integers(self.n_actions)) if explore else self.policy(obs)
        nxt, reward, term, finished = self.env.step(action)
        self.buffer.add(obs, action, reward, nxt, term)
        stats = {"epsilon": eps}
        if self.learning(step):
            stats["loss"] = self.update()
        return self.after_step(finished, stats)

    def update(self) -> float:
        b = self.buffer.sample(self.cfg["batch_size"], self.gen)
        self.Q.train()
        q = self.q(self.Q, b["obs"]).gather(1, b["act"][:, None]).squeeze(1)
        with torch.no_grad():
            if self.rl["double"]:
                a2 = self.q(self.Q, b["next"]).argmax(1, keepdim=True)
                q2 = self.q(self.target, b["next"]).gather(1, a2).squeeze(1)
            else:
                q2 = self.q(self.target, b["next"]).max(1).values
            y = b["rew"] + self.rl["gamma"] * (1 - b["done"]) * q2
        loss = F.smooth_l1_loss(q, y)  # Huber
        opt = self.optimizers["q"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.Q)
        opt.step()
        self.updates += 1
        if self.updates % self.rl["target_every"] == 0:
            self.target.load_state_dict(self.Q.state_dict())
        return float(loss.detach())


@task("ddpg", networks=True)
class DDPGTask(RLTask):
    """Deterministic policy gradient with target networks following by soft updates."""

    def __init__(self, tr: Any):
        super().__init__(tr)
        space = self.env.env.action_space
        if hasattr(space, "n") or not hasattr(space, "low"):
            raise self.run.error("rl.env", f"task 'ddpg' needs continuous (Box) actions; {self.rl['env']} has {space}",
                                 "use task: dqn for discrete actions")
        self.low, self.high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        self.act_shape = tuple(space.shape)
        self.A, self.C = self.net("actor"), self.net("critic")
        self.a_graph, self.c_graph = self.graph("actor"), self.graph("critic")
        obs_shape = self.check_obs("actor")
        out_t = self.a_graph.type_of(next(iter(self.a_graph.outputs.values())))
        if tuple(out_t.shape[1:]) != self.act_shape:
            raise self.run.error("networks", f"the actor outputs [{', '.join(map(str, out_t.shape))}], but {self.rl['env']} actions "
                                 f"are {list(self.act_shape)}")
        names = list(self.c_graph.inputs)
        if len(names) != 2:
            raise self.run.error("networks", f"the critic takes (observation, action): two inputs, it has {names}")
        self.c_act = "action" if "action" in names else names[1]
        self.c_obs = next(n for n in names if n != self.c_act)
        self.A_t, self.C_t = self.target_of("actor"), self.target_of("critic")
        self.buffer = Replay(self.rl["buffer"], obs_shape, self.act_shape, torch.float32)
        self.optimizers = {"actor": self.optimizer([self.A], self.rl["actor_lr"]), "critic": self.optimizer([self.C])}
        self.ou = np.zeros(self.act_shape)

    def mu(self, module: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return output(module, self.a_graph, **{self.obs_input("actor"): obs})

    def value(self, module: nn.Module, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return output(module, self.c_graph, **{self.c_obs: obs, self.c_act: act}).reshape(-1)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        """[-1, 1] -> the environment's [low, high]."""
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    @torch.no_grad()
    def policy(self, obs: Any) -> np.ndarray:
        self.A.eval()
        a = self.mu(self.A, self.obs_tensor(obs))[0].double().numpy()
        self.A.train()
        return self.to_env(np.clip(a, -1.0, 1.0))

    def noise(self) -> np.ndarray:
        std = self.rl["noise_std"]
        if self.rl["noise"] == "ou":  # dx = θ(0 - x)dt + σ√dt N(0, 1), θ = 0.15, dt = 0.01 (Lillicrap et al.)
            self.ou = self.ou - 0.15 * self.ou * 0.01 + std * np.sqrt(0.01) * self.rng.standard_normal(self.act_shape)
            return self.ou
        return std * self.rng.standard_normal(self.act_shape)

    def train_step(self, step: int) -> dict[str, float]:
        obs = self.env.obs
        if step < self.rl["warmup"]:
            a = self.rng.uniform(-1.0, 1.0, self.act_shape)
        else:
            with torch.no_grad():
                a = self.mu(self.A, self.obs_tensor(obs))[0].double().numpy()
            a = np.clip(a + self.noise(), -1.0, 1.0)
        nxt, reward, term, finished = self.env.step(self.to_env(a))
        if finished is not None:
            self.ou = np.zeros(self.act_shape)
        self.buffer.add(obs, a, reward, nxt, term)
        stats: dict[str, float] = {}
        if self.learning(step):
            stats.update(self.update())
        return self.after_step(finished, stats)

    def update(self) -> dict[str, float]:
        b = self.buffer.sample(self.cfg["batch_size"], self.gen)
        with torch.no_grad():
            y = b["rew"] + self.rl["gamma"] * (1 - b["done"]) * self.value(self.C_t, b["next"], self.mu(self.A_t, b["next"]))
        critic_loss = F.mse_loss(self.value(self.C, b["obs"], b["act"]), y)
        oc, oa = self.optimizers["critic"], self.optimizers["actor"]
        oc.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.clip(self.C)
        oc.step()
        self.C.requires_grad_(False)
        try:
            actor_loss = -self.value(self.C, b["obs"], self.mu(self.A, b["obs"])).mean()
            oa.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.clip(self.A)
            oa.step()
        finally:
            self.C.requires_grad_(True)
        tau = self.rl["tau"]
        _soft_update(self.A_t, self.A, tau)
        _soft_update(self.C_t, self.C, tau)
        self.updates += 1
        return {"loss": float(critic_loss.detach()), "actor_loss": float(actor_loss.detach())}

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, st = super().state()
        st["ou"] = self.ou.tolist()
        return tensors, st

    def load_state(self, tensors: dict[str, torch.Tensor], st: dict[str, Any]) -> None:
        super().load_state(tensors, st)
        self.ou = np.array(st["ou"])

