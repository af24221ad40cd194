"""Env copies stepped as one: the lockstep adapter's default vector env (``train.vector_env=batched``).

Training runs K copies of CoverageEnv (``train.n_envs``). Tianshou's ``DummyVectorEnv`` steps them
one after the other: K decoder passes of N*m latents and K rounds of small numpy calls per collector
step, where a step of a toy env costs a few hundred microseconds of fixed overhead. ``BatchedTeams``
keeps the K copies' state in arrays with a leading copy axis and steps them together: one decoder
pass over all K*N*m latents, one mode assignment, rewards and observations computed for every copy
at once.

Each copy stays what it would be alone: its own random stream (seeded like Tianshou seeds its
workers), its own histograms and clock, the same reward formulas (marlgen.rewards works on leading
copy axes). A judge that learns (a discriminator) is scored and updated copy by copy, in the order
DummyVectorEnv would, since each update changes the next copy's scores. Training with it gives the
same team as with ``dummy`` (tests/test_vector_envs.py), up to the floating-point rounding of a
decoder pass on a larger batch.

It speaks the part of Tianshou's vector-env interface that marlgen.lockstep uses: observations
(K, A, W), rewards (K, A), one done flag per copy, for the agents of CoverageEnv.possible_agents.
"""

from __future__ import annotations

import copy

import numpy as np
from gymnasium.utils import seeding

from marlgen.ledger import SCORE_BINS, carry_over, observe, settle
from marlgen.rewards import critic_rewards


class BatchedTeams:
    def __init__(self, env_fn, n_copies: int):
        self.env = env = env_fn()  # one real CoverageEnv: spaces, anchors, model, judge, settings
        self.k = n_copies
        self.agents = list(env.possible_agents)
        self.n, self.m, self.d, self.n_modes = env.n_gen, env.m, env.latent_dim, env.n_modes
        self.rngs = [seeding.np_random(None)[0] for _ in range(n_copies)]
        self.t = np.zeros(n_copies, dtype=np.int64)
        self.team_hist = np.zeros((n_copies, self.n_modes), dtype=np.int64)
        self.past_hist = np.zeros((n_copies, self.n_modes), dtype=np.int64)  # env.reward.memory
        self.own_hist = np.zeros((n_copies, self.n, self.n_modes), dtype=np.int64)
        self.own_accepted = np.ones((n_copies, self.n))
        self.score_hist = np.zeros((n_copies, SCORE_BINS))
        self.step_accepted = np.ones(n_copies)
        self._all = np.arange(n_copies)

    def __len__(self) -> int:
        return self.k

    def seed(self, seed=None):
        seeds = list(seed) if isinstance(seed, list | tuple | np.ndarray) else [seed] * self.k
        for i, s in enumerate(seeds):  # as Tianshou's workers do: reset with the seed
            self.rngs[i] = seeding.np_random(s)[0]
            self._reset_copy(i)
        return seeds

    def reset(self, env_id=None, **kwargs):
        ids = self._ids(env_id)
        seed = kwargs.get("seed")
        for j, i in enumerate(ids):
            if seed is not None:
                self.rngs[i] = seeding.np_random(seed[j] if np.ndim(seed) else seed)[0]
            self._reset_copy(i)
        return self._observations(ids), [{} for _ in ids]

    def step(self, action: np.ndarray, env_id=None):
        env, ids = self.env, self._ids(env_id)
        n, m, d, k = self.n, self.m, self.d, len(ids)
        rows = slice(None) if k == self.k and (ids == self._all).all() else ids  # every copy: views
        action = np.asarray(action)  # (K, N + 1, act_width), as marlgen.lockstep pads it
        if env.discrete:
            centres = env.anchors[action[:, :n, 0].astype(np.int64)]  # int(), as TeamEnv unpads
            bars = env.bars[action[:, n, 0].astype(np.int64)]
        else:
            r = env.anchor_range
            centres = np.clip(action[:, :n, :d].astype(np.float32), -r, r)
            bars = np.clip(action[:, n, 0].astype(np.float32).astype(np.float64), 0.0, 1.0)
        z = np.empty((k, n, m, d))
        for row, i in zip(z, ids.tolist(), strict=True):  # each copy's own stream, drawn in place
            self.rngs[i].standard_normal(out=row)
        z *= env.latent_spread
        z += centres[:, :, None, :]  # (K, N, m, d)
        x = env.decode(z.reshape(k * n * m, d))  # one pass for every agent of every copy
        per_copy = x.reshape(k, n * m, *x.shape[1:])
        if env.learn_judge:  # copy by copy, as DummyVectorEnv: each update moves the next copy's scores
            scores = np.empty((k, n * m))
            for j, i in enumerate(ids):
                scores[j] = env.judge.score(per_copy[j])
                env.judge.update(per_copy[j], self.rngs[i])
        else:
            scores = env.judge.score(x).reshape(k, n * m)
        modes = env.assigner(x).reshape(k, n * m)
        team, own = self.team_hist[rows], self.own_hist[rows]  # settle moves them in place
        accepted, gen_rewards, fraction, score_hist, step_accepted = settle(
            scores, bars, modes, team, own, self.past_hist[rows], *env.terms
        )
        rewards = np.empty((k, n + 1), dtype=np.float32)
        rewards[:, :n], rewards[:, n] = gen_rewards, critic_rewards(accepted, modes, *env.costs)
        if isinstance(rows, np.ndarray):  # fancy indexing copied them
            self.team_hist[rows], self.own_hist[rows] = team, own
        self.own_accepted[rows], self.score_hist[rows] = fraction, score_hist
        self.step_accepted[rows] = step_accepted
        self.t[rows] += 1
        done = self.t[rows] >= env.n_steps
        truncated = np.zeros(k, dtype=bool)
        return self._observations(rows), rewards, done, truncated, [{} for _ in ids]

    def close(self) -> None:
        pass

    # Checkpoints (marlgen.checkpoint) fetch and put back each copy's state as Tianshou vector envs
    # offer it: one ``checkpoint_state`` per copy, shaped as a lone CoverageEnv's.
    COPY_STATE = ("t", "team_hist", "own_hist", "own_accepted", "score_hist", "step_accepted", "past_hist")

    def get_env_attr(self, key: str, id=None) -> list:
        if key != "checkpoint_state":
            raise AttributeError(f"BatchedTeams gets checkpoint_state only, not {key!r}")
        return [self._copy_state(i) for i in self._ids(id)]

    def _copy_state(self, i: int) -> dict:
        state = {k: copy.deepcopy(getattr(self, k)[i]) for k in self.COPY_STATE}
        state["np_random"] = copy.deepcopy(self.rngs[i])
        if self.env.learn_judge:  # one judge for every copy, as make_env shares it under DummyVectorEnv
            state["judge"] = self.env.judge.state_dict()
        return state

    def set_env_attr(self, key: str, value, id=None) -> None:
        if key != "checkpoint_state":
            raise AttributeError(f"BatchedTeams sets checkpoint_state only, not {key!r}")
        state = dict(value)
        if "judge" in state:
            self.env.judge.load_state_dict(state.pop("judge"))
        for i in self._ids(id):
            self.rngs[i] = copy.deepcopy(state["np_random"])
            for k in self.COPY_STATE:
                if k in state:  # past_hist is absent from checkpoints written before env.reward.memory
                    getattr(self, k)[i] = state[k]

    def _ids(self, env_id) -> np.ndarray:
        return np.arange(self.k) if env_id is None else np.atleast_1d(np.asarray(env_id, dtype=np.int64))

    def _reset_copy(self, i: int) -> None:
        self.past_hist[i] = carry_over(self.past_hist[i], self.team_hist[i], self.env.reward_memory)
        self.t[i] = 0
        self.team_hist[i] = 0
        self.own_hist[i] = 0
        self.own_accepted[i] = 1.0
        self.score_hist[i] = 0.0
        self.step_accepted[i] = 1.0

    def _observations(self, ids: np.ndarray | slice) -> np.ndarray:
        """(K, N + 1, W) float32: what TeamEnv stacks from each copy's CoverageEnv observations."""
        env = self.env
        return observe(self.team_hist[ids], self.own_hist[ids], self.own_accepted[ids], self.score_hist[ids],
                       self.step_accepted[ids], 1.0 - self.t[ids] / env.n_steps, env.hist_scale,
                       env.obs_width)  # fmt: skip
