"""The lockstep adapter: how training presents CoverageEnv to Tianshou.

Tianshou's own multi-agent route (``PettingZooEnv`` over an AEC env) takes one collector step per
agent and, for a simultaneous game, stores the team reward only with the last agent's transition
(DESIGN.md, "Traps"). Here every agent of every env copy is one *slot* of a vector env instead:

- one collector step steps every agent of every copy at once, so the decoder still runs once per
  env step for all agents, and N agents cost one collector step, not N;
- each slot's transition carries that agent's own reward, from its own action;
- each slot has its own sub-buffer, so returns and GAE follow one agent's own trajectory;
- the observation is ``{"agent_id": role, "obs": padded vector}``; Tianshou's multi-agent
  dispatcher routes rows to policies by ``agent_id``. With shared parameters every generator slot
  says ``"generator"`` (one network; the one-hot id is in the vector), else ``"generator_i"``.

Rewards are returned as a vector with one column per role (the slot's own reward in every column):
the dispatcher picks each role's column, and the trainer's ``multi_agent_return_reduction`` turns
the vector into one score.

Limits: a copy's agents must be stepped and reset together, so collect by steps, never by
episodes (Tianshou's episode collection steps only some slots; we raise instead of drifting).
"""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tianshou.algorithm.multiagent.marl import MultiAgentPolicy
from tianshou.data import Batch, to_numpy


class TeamEnv(gym.Env):
    """One CoverageEnv as a gymnasium env over stacked agents, so Tianshou's vector envs
    (dummy, subprocess, Ray) can run copies of it; actions and observations are padded."""

    def __init__(self, env_fn):
        self.env = env_fn()
        self.agents = list(self.env.possible_agents)
        self.obs_width = max(self.env.observation_space(a).shape[0] for a in self.agents)
        self.act_width = max(_width(self.env.action_space(a)) for a in self.agents)
        self.observation_space = spaces.Box(-np.inf, np.inf, (len(self.agents), self.obs_width))
        self.action_space = spaces.Box(-np.inf, np.inf, (len(self.agents), self.act_width))

    def reset(self, seed=None, options=None):
        obs, _ = self.env.reset(seed=seed, options=options)
        return self._stack(obs), {}

    def step(self, action):
        actions = {a: self._unpad(a, action[i]) for i, a in enumerate(self.agents)}
        obs, rew, term, trunc, _ = self.env.step(actions)
        rewards = np.array([rew[a] for a in self.agents], dtype=np.float32)
        return self._stack(obs), rewards, all(term.values()), all(trunc.values()), {}

    @property
    def checkpoint_state(self) -> dict:
        """The env's state, as an attribute so every Tianshou vector env can fetch it (get_env_attr)."""
        return self.env.get_state()

    @checkpoint_state.setter
    def checkpoint_state(self, state: dict) -> None:
        self.env.set_state(state)

    def _stack(self, obs: dict) -> np.ndarray:
        out = np.zeros((len(self.agents), self.obs_width), dtype=np.float32)
        for i, a in enumerate(self.agents):
            out[i, : len(obs[a])] = obs[a]
        return out

    def _unpad(self, agent: str, action: np.ndarray):
        space = self.env.action_space(agent)
        if isinstance(space, spaces.Discrete):
            return int(np.asarray(action).reshape(-1)[0])
        return np.asarray(action, dtype=np.float32).reshape(-1)[: space.shape[0]]


class LockstepVectorEnv:
    """Slots = env copies x agents, over any Tianshou vector env of TeamEnv copies."""

    is_async = False

    def __init__(self, team_venv, agents: list[str], share_generators: bool, obs_width: int, act_width: int):
        self.venv = team_venv
        self.agents = agents
        self.n_agents = len(agents)
        self.env_num = len(team_venv) * self.n_agents
        self.slot_roles = np.array([role_of(a, share_generators) for a in agents] * len(team_venv))
        self.roles = list(dict.fromkeys(self.slot_roles.tolist()))
        self.obs_width, self.act_width = obs_width, act_width
        self.action_space = [spaces.Box(-np.inf, np.inf, (act_width,))] * self.env_num

    def __len__(self) -> int:
        return self.env_num

    def marl_view(self) -> SimpleNamespace:
        """What Tianshou's MARLDispatcher reads from a PettingZooEnv: agent ids and reward columns."""
        return SimpleNamespace(agents=self.roles, agent_idx={r: i for i, r in enumerate(self.roles)})

    def reset(self, env_id=None, **kwargs):
        slots = self._slots(env_id)
        teams = self._teams(slots)
        obs, _ = self.venv.reset(teams, **kwargs)  # (T, A, W)
        return self._slot_obs(obs, teams), no_infos(len(slots))

    def step(self, action, id=None):  # noqa: A002  (Tianshou's name for it)
        slots = self._slots(id)
        teams = self._teams(slots)
        joint = np.asarray(action, dtype=np.float32).reshape(len(teams), self.n_agents, -1)
        obs, rew, term, trunc, _ = self.venv.step(joint, teams)
        rew = np.repeat(np.asarray(rew, dtype=np.float32).reshape(-1, 1), len(self.roles), axis=1)
        infos = no_infos(len(slots))
        return (
            self._slot_obs(obs, teams),
            rew,  # (slots, roles): the slot's own reward in every role's column
            np.repeat(np.asarray(term, dtype=bool), self.n_agents),
            np.repeat(np.asarray(trunc, dtype=bool), self.n_agents),
            infos,
        )

    def seed(self, seed=None):
        return self.venv.seed(seed)

    def close(self) -> None:
        self.venv.close()

    def _slots(self, ids) -> np.ndarray:
        return np.arange(self.env_num) if ids is None else np.atleast_1d(np.asarray(ids, dtype=np.int64))

    def _teams(self, slots: np.ndarray) -> np.ndarray:
        teams = np.unique(slots // self.n_agents)
        expected = (teams[:, None] * self.n_agents + np.arange(self.n_agents)).reshape(-1)
        if not np.array_equal(slots, expected):
            raise RuntimeError(
                "LockstepVectorEnv steps all agents of an env copy together, in order, but was asked "
                f"for slots {slots.tolist()}: collect by steps (n_step), not by episodes"
            )
        return teams

    def _slot_obs(self, obs: np.ndarray, teams: np.ndarray) -> Batch:
        """Batch(agent_id=(slots,) roles, obs=(slots, W)): built once, not parsed from one dict per slot
        (Tianshou stacks an object array of dicts key by key, which cost more than the env steps)."""
        obs = np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_width)
        roles = self.slot_roles[(teams[:, None] * self.n_agents + np.arange(self.n_agents)).reshape(-1)]
        return Batch(agent_id=roles, obs=obs)


def no_infos(n: int) -> np.ndarray:
    """Empty info dicts, one per slot. Tianshou's vector envs add ``env_id`` to each info, which only
    its AsyncCollector reads; with it, the collector stacked 272 dicts into a Batch on every step (a
    third of a collect at 16 generators), and without it skips them (docs/performance.md, 2.1)."""
    infos = np.empty(n, dtype=object)
    for i in range(n):
        infos[i] = {}
    return infos


def role_of(agent: str, share_generators: bool) -> str:
    return "generator" if share_generators and agent.startswith("generator") else agent


def _width(space) -> int:
    return 1 if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))


class LockstepPolicy(MultiAgentPolicy):
    """Tianshou's MultiAgentPolicy, mended for the lockstep route (tianshou 2.0.1).

    - ``forward`` reads ``batch.obs_next`` whenever the observation has no ``mask``, and the
      collector's acting batches have none: it raises. We route rows by ``agent_id`` and hand each
      policy the plain vector.
    - ``map_action`` did not call the role policies' own, so continuous PPO actions reached the
      env neither clipped nor scaled.
    - The training-step flag was never passed on to the per-role policies, so during collection
      PPO acted with its deterministic evaluation mode and DQN with its test epsilon: no
      exploration at all, silently. Here setting the flag sets it on every role's policy.
    """

    @property
    def is_within_training_step(self) -> bool:
        return self.__dict__.get("_within_training_step", False)

    @is_within_training_step.setter
    def is_within_training_step(self, enabled: bool) -> None:
        self.__dict__["_within_training_step"] = enabled
        for policy in self.__dict__.get("policies", {}).values():
            policy.is_within_training_step = enabled

    def forward(self, batch: Batch, state=None, **kwargs) -> Batch:
        self._last_agent_ids = np.asarray(batch.obs.agent_id)  # for map_action, called next
        act, outs = None, {}
        for agent_id, policy in self.policies.items():
            rows = np.nonzero(batch.obs.agent_id == agent_id)[0]
            if len(rows) == 0:
                continue
            sub = batch[rows]
            sub.obs = sub.obs.obs
            out = policy(sub, state=None, **kwargs)
            role_act = to_numpy(out.act)
            if act is None:
                act = np.zeros((len(batch), *role_act.shape[1:]), dtype=role_act.dtype)
            act[rows] = role_act
            outs[agent_id] = out
        return Batch(act=act, out=outs)

    def map_action(self, act):
        act = to_numpy(act)
        out = act.copy()
        for agent_id, policy in self.policies.items():
            rows = np.nonzero(self._last_agent_ids == agent_id)[0]
            if len(rows):
                out[rows] = policy.map_action(act[rows])
        return out


def use_lockstep_policy(algorithm) -> None:
    """Swap the multi-agent algorithm's policy for the mended one (same sub-policies)."""
    algorithm.policy = LockstepPolicy(algorithm.policy.policies)
