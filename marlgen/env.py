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
``marlgen.rewards``). With ``reward.memory`` n > 0 the objective's histogram also holds up to n
samples of earlier episodes (``marlgen.ledger.carry_over``), carried from one ``reset`` to the next;
the observed histograms stay the episode's own. Critic: the mean over the step's samples of +1
for accepting a good one (mode >= 0), ``-false_accept_cost`` for accepting a bad one,
``-false_reject_cost`` for rejecting a good one.

Histograms in observations are scaled so 1.0 is a fair share (``budget / M`` samples per mode),
or are zeros with ``observe_histograms: false``.
All randomness flows from ``reset(seed=...)`` through ``self.np_random``; the anchors are a
scrambled Sobol set mapped through the normal quantile, fixed by ``anchor_seed``, so they tile the
prior evenly (times ``anchor_scale``).

Version history: v0, first release.
"""

from __future__ import annotations

import copy
import functools
import operator
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv
from scipy.stats import norm, qmc

from marlgen.ledger import SCORE_BINS, carry_over, observe, settle
from marlgen.rewards import CREDITS, critic_rewards


@dataclass(slots=True)
class StepRecord:
    """What one step produced, for evaluation code (not part of the agents' observations)."""

    samples: np.ndarray  # (N*m, *data_shape)
    modes: np.ndarray  # (N*m,) assigner's verdict, -1 none
    accepted: np.ndarray  # (N*m,) bool
    agent: np.ndarray  # (N*m,) generator index of each sample
    anchors: np.ndarray | None  # (N,) anchor each generator chose; None for continuous centres

    @property
    def choice(self) -> np.ndarray:
        """(N*m,) anchor each sample's latent was drawn around; -1 for continuous centres."""
        if self.anchors is None:
            return np.full(len(self.agent), -1)
        return self.anchors[self.agent]


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
        self.anchors = env_cfg.anchor_scale * sobol_normal(env_cfg.n_anchors, self.latent_dim, anchor_seed)

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
        # Plain copies of the keys read on every step: an OmegaConf lookup costs microseconds, and a
        # step reads a dozen of them (they were most of the env's own time; docs/performance.md).
        self.latent_spread = float(env_cfg.latent_spread)
        rw, costs = env_cfg.reward, env_cfg.critic
        # settle's arguments after the histograms (samples per agent, credit, weights); critic's costs
        self.terms = (
            self.m,
            CREDITS.index(rw.credit),
            float(rw.coverage),
            float(rw.entropy),
            float(rw.quality),
        )
        self.costs = (float(costs.false_accept_cost), float(costs.false_reject_cost))
        self.budget = int(env_cfg.episode_budget)
        self.reward_memory = int(rw.memory)  # samples of earlier episodes the rewards count
        self.past_hist = np.zeros(self.n_modes, dtype=np.int64)
        self.team_hist = np.zeros(self.n_modes, dtype=np.int64)  # reset carries it into past_hist
        # observe's histogram scale: 1.0 is a fair share per mode; 0 blinds the generators to them.
        self.hist_scale = self.n_modes / self.budget if env_cfg.observe_histograms else 0.0
        self.anchor_range = float(env_cfg.anchor_range)
        self._sample_agent = np.repeat(np.arange(self.n_gen), self.m)  # (N*m,) owner of each sample
        self.gen_width, self.obs_width = gen_dim, max(gen_dim, SCORE_BINS + 2)
        self.id_columns = (2 * self.n_modes, 2 * self.n_modes + self.n_gen)  # a generator's one-hot id
        # Per-agent Python is what 64 agents add to a step (docs/performance.md, 1.6): the generators'
        # actions come out of the dict in one C call, and the done flags are copies of ready dicts.
        self._generator_actions = operator.itemgetter(*self.generators)
        self._flags = {done: dict.fromkeys(self.possible_agents, done) for done in (False, True)}

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
        # The episode that just ended (or was cut short) joins the rewards' memory of earlier ones.
        self.past_hist = carry_over(self.past_hist, self.team_hist, self.reward_memory)
        self.t = 0
        self.team_hist = np.zeros(self.n_modes, dtype=np.int64)
        self.own_hist = np.zeros((self.n_gen, self.n_modes), dtype=np.int64)
        self.own_accepted = np.ones(self.n_gen)
        self.score_hist = np.zeros(SCORE_BINS)
        self.step_accepted = 1.0
        self.last = None
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions):
        if not self.agents:
            raise RuntimeError("CoverageEnv.step with no episode running: call reset() first")
        n, m, d = self.n_gen, self.m, self.latent_dim
        gen_actions = self._gather(actions)
        centres = self._centres(gen_actions)  # (N, d)
        z = self.np_random.standard_normal((n, m, d))
        z *= self.latent_spread
        z += centres[:, None, :]  # in place: a step is too short for numpy's temporaries to be free
        x = self.decode(z.reshape(n * m, d))  # (N*m, *data_shape): one pass for all agents
        scores = self.judge.score(x)  # (N*m,)
        modes = self.assigner(x)  # (N*m,)
        bars = np.array([self._bar(actions["critic"])])
        accepted, gen_rewards, fraction, score_hist, step_accepted = settle(
            scores[None],
            bars,
            modes[None],
            self.team_hist[None],
            self.own_hist[None],
            self.past_hist[None],
            *self.terms,
        )  # one env copy; its histograms move in place
        crit_reward = critic_rewards(accepted, modes[None], *self.costs)[0]
        if self.learn_judge:
            self.judge.update(x, self.np_random)
        accepted, self.own_accepted, self.score_hist = accepted[0], fraction[0], score_hist[0]
        self.step_accepted = float(step_accepted[0])
        anchors = gen_actions if self.discrete else None  # _gather's fresh int64 array, held by no one else
        self.last = StepRecord(x, modes, accepted, self._sample_agent, anchors)
        self.t += 1

        done = self.t >= self.n_steps
        rewards = dict(zip(self.generators, gen_rewards[0].tolist(), strict=True))
        rewards["critic"] = float(crit_reward)
        observations = self._observations()
        terminations = self._flags[done].copy()
        truncations = self._flags[False].copy()
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    # What a step reads and changes: a checkpoint carries these to continue an episode in flight.
    # (``last`` is for evaluation code and is left out: it can be large and steps never read it.)
    STATE = ("np_random", "agents", "t", "team_hist", "own_hist", "own_accepted", "score_hist",
             "step_accepted", "past_hist")  # fmt: skip

    def get_state(self) -> dict:
        """Everything the next step depends on, the learning judge's weights included (checkpoints)."""
        state = {k: copy.deepcopy(getattr(self, k)) for k in self.STATE if hasattr(self, k)}
        if self.learn_judge:
            state["judge"] = self.judge.state_dict()
        return state

    def set_state(self, state: dict) -> None:
        state = dict(state)
        if "judge" in state:
            self.judge.load_state_dict(state.pop("judge"))
        for key, value in state.items():
            setattr(self, key, copy.deepcopy(value))
        self.last = None

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        # np.float32 then from_numpy: torch.as_tensor's own dtype conversion costs ~50 us per call.
        return self.model.decode(torch.from_numpy(np.asarray(z, dtype=np.float32))).numpy()

    def _gather(self, actions: dict) -> np.ndarray:
        """The generators' actions as one array: (N,) anchor indices or (N, d) centres."""
        chosen = self._generator_actions(actions)
        if self.n_gen == 1:
            chosen = (chosen,)  # itemgetter of one key returns the value itself
        if self.discrete:
            return np.fromiter(chosen, dtype=np.int64, count=self.n_gen)
        return np.asarray(chosen)

    def _centres(self, gen_actions: np.ndarray) -> np.ndarray:
        if self.discrete:
            return self.anchors[gen_actions]  # int64, from _gather
        r = self.anchor_range
        return np.clip(gen_actions.reshape(self.n_gen, self.latent_dim), -r, r)

    def _bar(self, critic_action) -> float:
        if self.discrete:
            return float(self.bars[int(critic_action)])
        return float(np.clip(np.asarray(critic_action).reshape(-1)[0], 0.0, 1.0))

    def _observations(self) -> dict[str, np.ndarray]:
        one = lambda value: np.array([value], dtype=np.float64)  # noqa: E731  (a lone env is one copy)
        obs = observe(
            self.team_hist[None],
            self.own_hist[None],
            self.own_accepted[None],
            self.score_hist[None],
            one(self.step_accepted),
            one(1.0 - self.t / self.n_steps),
            self.hist_scale,
            self.obs_width,
        )[0]
        observations = dict(zip(self.generators, obs[:-1, : self.gen_width], strict=True))
        observations["critic"] = obs[-1, : SCORE_BINS + 2]
        return observations


def sobol_normal(n: int, dim: int, seed: int) -> np.ndarray:
    """n latents that tile N(0, I) evenly: scrambled Sobol points through the normal quantile."""
    # Draw the next power of two (Sobol's balance holds there) and keep the first n.
    u = qmc.Sobol(dim, scramble=True, seed=seed).random_base2(int(np.ceil(np.log2(max(n, 2)))))[:n]
    return norm.ppf(np.clip(u, 1e-6, 1 - 1e-6)).astype(np.float32)
