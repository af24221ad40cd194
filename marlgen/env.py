"""CoverageEnv: generator agents steer a generative model's latents, a critic sets the bar.

| agents              | ``generator_0 .. generator_{N-1}``, ``critic``                            |
| ------------------- | ------------------------------------------------------------------------- |
| generator action    | ``Discrete(n_anchors)`` (a latent anchor) or ``Box(-r, r, (latent_dim,))`` |
| critic action       | ``Discrete(len(bars))`` (an acceptance bar) or ``Box(0, 1, (1,))``         |
| generator obs       | ``(2M + N + 2,)``: team histogram, own histogram, one-hot id, time left,   |
|                     | own accepted fraction last step                                           |
| critic obs          | ``(12,)``: histogram of last step's realism scores (10 bins), accepted    |
|                     | fraction last step, time left                                             |
| episode             | ``episode_budget`` decoded samples: ``budget / (N m)`` steps               |

**Step.** Each generator's choice (an anchor's latent, or a latent centre) is jittered into m
latents with std ``latent_spread``; all N*m latents are decoded in one batched forward pass. The
judge scores every sample in [0, 1]; samples scoring below the critic's bar are rejected (they
still cost their decode). The mode assigner maps samples to modes, -1 for none.

**Rewards.** Generators: the team objective's gain credited per ``reward.credit`` plus
``reward.quality`` times the accepted fraction of their own samples (formulas in
``marlgen.rewards``). Critic: the mean over the step's samples of +1 for accepting a good one
(mode >= 0), ``-false_accept_cost`` for accepting a bad one, ``-false_reject_cost`` for
rejecting a good one.

Histograms in observations are scaled so 1.0 is a fair share (``budget / M`` samples per mode).
All randomness flows from ``reset(seed=...)`` through ``self.np_random``; the anchors are a
scrambled Sobol set mapped through the normal quantile, fixed by ``anchor_seed``, so they tile the
prior evenly.

Version history: v0, first release.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv
from scipy.stats import norm, qmc

from marlgen.rewards import critic_reward, generator_rewards, per_agent_counts

SCORE_BINS = 10


@dataclass
class StepRecord:
    """What one step produced, for evaluation code (not part of the agents' observations)."""

    samples: np.ndarray  # (N*m, *data_shape)
    modes: np.ndarray  # (N*m,) assigner's verdict, -1 none
    accepted: np.ndarray  # (N*m,) bool
    agent: np.ndarray  # (N*m,) generator index of each sample
    choice: np.ndarray  # (N*m,) anchor each sample's latent was drawn around; -1 for continuous centres


class CoverageEnv(ParallelEnv):
    metadata = {"name": "marlgen/Coverage-v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, model, assigner, judge, env_cfg, anchor_seed: int = 0, learn_judge: bool = False):
        self.model, self.assigner, self.judge, self.cfg = model, assigner, judge, env_cfg
        self.learn_judge = learn_judge  # training turns this on for a discriminator judge
        self.n_gen, self.m = env_cfg.n_generators, env_cfg.samples_per_agent
        self.n_modes = assigner.n_modes
        self.latent_dim = model.latent_dim
        self.n_steps = env_cfg.episode_budget // (self.n_gen * self.m)
        self.bars = np.asarray(env_cfg.critic.bars, dtype=np.float64)
        self.discrete = env_cfg.action == "discrete"
        self.anchors = sobol_normal(env_cfg.n_anchors, self.latent_dim, anchor_seed)  # (K, d)

        self.generators = [f"generator_{i}" for i in range(self.n_gen)]
        self.possible_agents = [*self.generators, "critic"]
        self.agents: list[str] = []
        self.render_mode = None
        gen_dim = 2 * self.n_modes + self.n_gen + 2
        self._obs_spaces = {
            a: spaces.Box(0.0, float(max(self.n_modes, 1)), (gen_dim,)) for a in self.generators
        }
        self._obs_spaces["critic"] = spaces.Box(0.0, 1.0, (SCORE_BINS + 2,))
        r = env_cfg.anchor_range
        gen_act = (
            spaces.Discrete(len(self.anchors)) if self.discrete else spaces.Box(-r, r, (self.latent_dim,))
        )
        self._act_spaces = {a: gen_act for a in self.generators}
        self._act_spaces["critic"] = (
            spaces.Discrete(len(self.bars)) if self.discrete else spaces.Box(0.0, 1.0, (1,))
        )
        self.np_random, _ = seeding.np_random(None)
        self.last: StepRecord | None = None

    @functools.cache  # noqa: B019  (PettingZoo wants the same object each call)
    def observation_space(self, agent):
        return self._obs_spaces[agent]

    @functools.cache  # noqa: B019
    def action_space(self, agent):
        return self._act_spaces[agent]

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        self.team_hist = np.zeros(self.n_modes, dtype=np.int64)
        self.own_hist = np.zeros((self.n_gen, self.n_modes), dtype=np.int64)
        self.own_accepted = np.ones(self.n_gen)
        self.score_hist = np.zeros(SCORE_BINS)
        self.step_accepted = 1.0
        self.last = None
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions):
        n, m, d = self.n_gen, self.m, self.latent_dim
        gen_actions = np.asarray([actions[a] for a in self.generators])
        centres = self._centres(gen_actions)  # (N, d)
        z = centres[:, None, :] + self.cfg.latent_spread * self.np_random.standard_normal((n, m, d))
        x = self.decode(z.reshape(n * m, d))  # (N*m, *data_shape): one pass for all agents
        scores = self.judge.score(x)  # (N*m,)
        accepted = scores >= self._bar(actions["critic"])
        modes = self.assigner(x)  # (N*m,)
        delivered = np.where(accepted, modes, -1).reshape(n, m)
        counts = per_agent_counts(delivered, self.n_modes)  # (N, M)
        accepted_fraction = accepted.reshape(n, m).mean(1)  # (N,)

        gen_rewards = generator_rewards(
            self.team_hist, self.own_hist, counts, accepted_fraction, self.cfg.reward
        )
        crit_reward = critic_reward(
            accepted, modes >= 0, self.cfg.critic.false_accept_cost, self.cfg.critic.false_reject_cost
        )
        if self.learn_judge:
            self.judge.update(x, self.np_random)

        self.team_hist += counts.sum(0)
        self.own_hist += counts
        self.own_accepted = accepted_fraction
        self.score_hist = np.histogram(scores, bins=SCORE_BINS, range=(0.0, 1.0))[0] / len(scores)
        self.step_accepted = float(accepted.mean())
        choice = gen_actions.astype(np.int64).reshape(n) if self.discrete else np.full(n, -1)
        self.last = StepRecord(x, modes, accepted, np.repeat(np.arange(n), m), np.repeat(choice, m))
        self.t += 1

        done = self.t >= self.n_steps
        rewards = {a: float(r) for a, r in zip(self.generators, gen_rewards, strict=True)}
        rewards["critic"] = crit_reward
        observations = self._observations()
        terminations = {a: done for a in self.agents}
        truncations = {a: False for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.model.decode(torch.as_tensor(z, dtype=torch.float32)).numpy()

    def _centres(self, gen_actions: np.ndarray) -> np.ndarray:
        if self.discrete:
            return self.anchors[gen_actions.astype(np.int64)]
        r = self.cfg.anchor_range
        return np.clip(gen_actions.reshape(self.n_gen, self.latent_dim), -r, r)

    def _bar(self, critic_action) -> float:
        if self.discrete:
            return float(self.bars[int(critic_action)])
        return float(np.clip(np.asarray(critic_action).reshape(-1)[0], 0.0, 1.0))

    def _observations(self) -> dict[str, np.ndarray]:
        scale = self.n_modes / self.cfg.episode_budget  # 1.0 = a fair share per mode
        team = np.minimum(self.team_hist * scale, self.n_modes)
        own = np.minimum(self.own_hist * scale, self.n_modes)  # (N, M)
        time_left = 1.0 - self.t / self.n_steps
        gen = np.concatenate(
            [np.broadcast_to(team, (self.n_gen, self.n_modes)), own, np.eye(self.n_gen),
             np.full((self.n_gen, 1), time_left), self.own_accepted[:, None]],
            axis=1,
        ).astype(np.float32)  # fmt: skip
        obs = dict(zip(self.generators, gen, strict=True))
        obs["critic"] = np.concatenate([self.score_hist, [self.step_accepted, time_left]]).astype(np.float32)
        return obs


def sobol_normal(n: int, dim: int, seed: int) -> np.ndarray:
    """n latents that tile N(0, I) evenly: scrambled Sobol points through the normal quantile."""
    # Draw the next power of two (Sobol's balance holds there) and keep the first n.
    u = qmc.Sobol(dim, scramble=True, seed=seed).random_base2(int(np.ceil(np.log2(max(n, 2)))))[:n]
    return norm.ppf(np.clip(u, 1e-6, 1 - 1e-6)).astype(np.float32)
