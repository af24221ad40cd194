"""Tianshou's own multi-agent route over CoverageEnv: the baseline the lockstep adapter is measured against.

PettingZoo's ``parallel_to_aec`` turns the env into an AEC env (agents act in turn; the parallel step,
with its one batched decode, runs when the last agent has acted), ``tianshou.env.PettingZooEnv`` wraps
it, and ``MultiAgentOn/OffPolicyAlgorithm`` trains one policy per agent. One collector step is one
agent's turn, so an env step costs N+1 collector steps and N+1 policy forwards, and every agent has
its own network (``agents.generator.share_parameters`` does not apply here).

Mended only where the route would not run or not learn at all (docs/performance.md):

- **Spaces.** ``PettingZooEnv`` demands one observation space and one action space for every agent.
  ``UniformSpaces`` pads observations to one width and shows the critic the generators' action space;
  the critic's policy is built over its own ``Discrete(len(bars))``, so it never picks beyond that (a
  random action beyond it wraps around). ``PettingZooEnv``'s all-true action mask is dropped: it
  carries nothing, and with it Tianshou's dispatcher hands PPO the whole observation dict.
- **Rewards.** ``PettingZooEnv`` stores with each turn the env's rewards right after it, and
  ``parallel_to_aec`` fills them only when the round's last agent has acted: every agent but the
  last would learn from zeros (DESIGN.md, "Traps"). ``RealignedRewards`` gives each turn, before
  the update, its round's rewards (read from the round's last turn in the buffer), i.e. what its
  action earned. Rounds still open when a collect ends keep zeros until they close; collects are a
  whole number of rounds, so on-policy updates never see one.
- **Policy.** ``LockstepPolicy``'s mends of Tianshou's ``MultiAgentPolicy`` (exploration flag passed
  on, ``map_action`` dispatched, ``forward`` without a mask).

Left as the route has it: GAE and n-step targets bootstrap from the next *turn's* observation,
which is the next agent's, and each env copy decodes once per round.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec
from tianshou.algorithm import MultiAgentOffPolicyAlgorithm
from tianshou.algorithm.multiagent.marl import MultiAgentOnPolicyAlgorithm
from tianshou.env import PettingZooEnv

import agents
from marlgen.build import Parts, make_env
from marlgen.lockstep import use_lockstep_policy
from marlgen.train import Schedule, Team, TrainResult, agent_config, fit, make_vector_env, resolve_device
from marlgen.train import seed_everything as _seed_everything


class UniformSpaces(ParallelEnv):
    """A CoverageEnv (discrete actions) whose agents all show one observation and one action space."""

    metadata = {"name": "marlgen/Coverage-uniform-spaces", "render_modes": [], "is_parallelizable": True}

    def __init__(self, env):
        if not env.discrete:
            raise ValueError("the AEC baseline (marlgen.aec) supports env.action=discrete only")
        self.env = env
        self.possible_agents = list(env.possible_agents)
        self.width = max(env.observation_space(a).shape[0] for a in self.possible_agents)
        self.n_actions = {a: int(env.action_space(a).n) for a in self.possible_agents}
        self._obs_space = spaces.Box(-np.inf, np.inf, (self.width,), dtype=np.float32)
        self._act_space = spaces.Discrete(max(self.n_actions.values()))
        self.render_mode = None

    @property
    def agents(self) -> list[str]:
        return self.env.agents

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def reset(self, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._pad(obs), infos

    def step(self, actions):
        own = {a: int(act) % self.n_actions[a] for a, act in actions.items()}
        obs, rewards, terms, truncs, infos = self.env.step(own)
        return self._pad(obs), rewards, terms, truncs, infos

    def _pad(self, obs: dict) -> dict:
        out = {}
        for agent, o in obs.items():
            padded = np.zeros(self.width, dtype=np.float32)
            padded[: len(o)] = o
            out[agent] = padded
        return out


class AecRouteEnv(PettingZooEnv):
    """Tianshou's PettingZooEnv without the all-true action mask it adds for Discrete spaces."""

    def reset(self, *args, **kwargs):
        obs, info = super().reset(*args, **kwargs)
        obs.pop("mask", None)
        return obs, info

    def step(self, action):
        obs, rewards, term, trunc, info = super().step(action)
        obs.pop("mask", None)
        return obs, list(rewards), term, trunc, info  # a copy: PettingZooEnv reuses its list


def make_aec_env(env_fn) -> AecRouteEnv:
    return AecRouteEnv(parallel_to_aec(UniformSpaces(env_fn())))


def realign_rewards(buffer, indices: np.ndarray, agent_idx: dict[str, int]) -> np.ndarray:
    """Rewrite ``buffer.rew`` at ``indices`` so each turn holds its own round's rewards; returns them.

    A round's turns follow each other in the env's sub-buffer (``buffer.next``), in the agents' order;
    its last turn carries the rewards of the parallel step. A turn whose round has not closed yet
    (the chain stops short of the last agent) is left as it is (zeros) and is mended on a later call.
    """
    n_agents = len(agent_idx)
    last_agent = max(agent_idx, key=agent_idx.get)
    position = np.vectorize(agent_idx.__getitem__, otypes=[np.int64])(buffer.obs.agent_id[indices])
    end = np.asarray(indices).copy()
    for k in range(n_agents - 1):
        later = position < n_agents - 1 - k
        end[later] = buffer.next(end[later])
    closed = buffer.obs.agent_id[end] == last_agent
    rew = buffer.rew  # (size, n_agents)
    rew[indices[closed]] = rew[end[closed]]
    return rew[indices]


class RealignedRewards:
    """Mixin for Tianshou's multi-agent algorithms: realign the sampled turns' rewards, then dispatch."""

    def _preprocess_batch(self, batch, buffer, indices):
        batch.rew = realign_rewards(buffer, indices, self._dispatcher.agent_idx)
        return super()._preprocess_batch(batch, buffer, indices)


class AecOnPolicy(RealignedRewards, MultiAgentOnPolicyAlgorithm):
    pass


class AecOffPolicy(RealignedRewards, MultiAgentOffPolicyAlgorithm):
    pass


def train_aec(cfg, parts: Parts, run_dir: Path, progress: bool = True, log=print) -> TrainResult:
    """Train one policy per agent through Tianshou's AEC route (marlgen.train's epochs and evaluation)."""
    device = resolve_device(cfg.device)
    _seed_everything(cfg)
    learn_judge = cfg.env.critic.judge == "discriminator"
    env_fn = functools.partial(make_env, cfg, parts, learn_judge)
    probe = make_aec_env(env_fn)
    n_copies = cfg.train.n_envs
    kind = cfg.train.vector_env
    if kind == "batched":  # BatchedTeams steps whole teams; AEC envs move one turn at a time
        kind = "dummy"
        log("AEC route: train.vector_env=batched applies to the lockstep route; stepping copies with dummy")
    venv = make_vector_env(kind, [functools.partial(make_aec_env, env_fn)] * n_copies)
    venv.seed([cfg.seed * 1000 + i for i in range(n_copies)])

    turns = n_copies * len(probe.agents)  # collects of whole rounds keep every round closed
    schedule = Schedule.of(cfg, slots=n_copies, step_multiple=turns)
    team = build_aec_team(cfg, probe, schedule.total, device)
    try:
        return fit(cfg, parts, team, venv, team.agents, schedule, run_dir, progress, log)
    finally:
        venv.close()


def build_aec_team(cfg, probe: AecRouteEnv, total_steps: int, device: str) -> Team:
    """One algorithm per agent (the critic's over its own action space), under Tianshou's dispatcher."""
    core = probe.env.unwrapped.env  # the CoverageEnv inside UniformSpaces
    algorithms = []
    for agent in probe.agents:
        role = "critic" if agent == "critic" else "generator"
        algorithms.append(
            agents.build(
                agent_config(cfg, role),
                probe.observation_space,
                core.action_space(agent),
                total_steps,
                device,
            )
        )
    multi = AecOnPolicy if agents.is_on_policy(cfg.agents.generator.algorithm) else AecOffPolicy
    algorithm = multi(algorithms=algorithms, env=probe)
    use_lockstep_policy(algorithm)
    return Team(
        algorithm, list(probe.agents), share_generators=False, obs_width=probe.observation_space.shape[0]
    )
