"""What a step's verdicts change: counts, rewards, histograms and observations, compiled.

Given the judge's scores, the critic's bars and the assigner's modes of one step's samples, ``settle``
counts the accepted samples per agent and mode, computes every agent's reward (defined in
marlgen.rewards) and moves the histograms that ``observe`` turns into the next observations.
CoverageEnv calls both for its one episode, BatchedTeams for K env copies at once, so the two cannot
drift apart. Compiled (marlgen.compiled) because in numpy these were a few hundred tiny array
operations per step, whose per-call cost, not arithmetic, set a toy env step's time.
"""

from __future__ import annotations

import numpy as np

from marlgen.compiled import compiled
from marlgen.rewards import team_gains

SCORE_BINS = 10  # the critic observes last step's scores as a histogram of this many bins over [0, 1]
_EDGES = np.linspace(0.0, 1.0, SCORE_BINS + 1)  # np.histogram's bin edges over [0, 1]


@compiled
def settle(scores, bars, modes, team_hist, own_hist, past_hist, m, credit, coverage, entropy, quality):
    """One step of K env copies, agent by agent in blocks of m samples.

    scores (K, n) in [0, 1], bars (K,), modes (K, n) int64 (-1: no mode); team_hist (K, M) and
    own_hist (K, N, M) int64 are updated in place; the rewards count past_hist (K, M), the earlier
    episodes' samples ``env.reward.memory`` keeps, on top of team_hist. ``credit`` indexes
    rewards.CREDITS; the rest are the reward weights. Returns accepted (K, n) bool, the generators'
    rewards (K, N), each agent's accepted fraction (K, N), the score histograms (K, SCORE_BINS) and
    each copy's accepted fraction (K,). The critic's reward is rewards.critic_rewards, called apart:
    compiled into this function, LLVM's arithmetic differed from numpy's in the last bit, and
    trajectories would no longer match earlier versions of marlgen to the bit.
    """
    k, n = scores.shape
    n_agents, n_modes = n // m, team_hist.shape[1]
    accepted = np.empty((k, n), dtype=np.bool_)
    counts = np.zeros((k, n_agents, n_modes), dtype=np.int64)  # this step's accepted samples per mode
    n_accepted = np.zeros((k, n_agents + 1), dtype=np.int64)  # per agent, and the copy's total
    for c in range(k):
        for i in range(n):
            accepted[c, i] = scores[c, i] >= bars[c]
            if accepted[c, i]:
                n_accepted[c, i // m] += 1
                n_accepted[c, n_agents] += 1
                if modes[c, i] >= 0:
                    counts[c, i // m, modes[c, i]] += 1

    gains = team_gains(team_hist + past_hist, own_hist, counts, credit, coverage, entropy)
    rewards = np.empty((k, n_agents))
    fraction = np.empty((k, n_agents))
    step_accepted = np.empty(k)
    for c in range(k):
        step_accepted[c] = n_accepted[c, n_agents] / n
        for a in range(n_agents):
            fraction[c, a] = n_accepted[c, a] / m
            rewards[c, a] = gains[c, a] + quality * fraction[c, a]
            for j in range(n_modes):
                team_hist[c, j] += counts[c, a, j]
                own_hist[c, a, j] += counts[c, a, j]
    return accepted, rewards, fraction, score_histograms(scores), step_accepted


def carry_over(past_hist: np.ndarray, team_hist: np.ndarray, memory: int) -> np.ndarray:
    """The earlier episodes' histogram the next episode's rewards count on top of its own
    (``env.reward.memory``): none for 0, else the past one plus the episode just finished, scaled
    down to at most ``memory`` samples (rounded to the nearest count)."""
    if memory == 0:
        return np.zeros_like(past_hist)
    merged = past_hist + team_hist
    total = int(merged.sum())
    if total <= memory:
        return merged
    return np.rint(merged * (memory / total)).astype(merged.dtype)


@compiled
def observe(team_hist, own_hist, own_accepted, score_hist, step_accepted, time_left, scale, width):
    """Every agent's observation of K env copies -> (K, N + 1, width) float32, zero-padded.

    Generator i: the team's histogram, its own (both scaled by ``scale``, so 1.0 is a fair share per
    mode, and capped at M), its one-hot id, time left, its accepted fraction last step. The critic
    (last row): last step's score histogram, its accepted fraction, time left.
    """
    k, n, n_modes = own_hist.shape
    obs = np.zeros((k, n + 1, width), dtype=np.float32)
    team = np.empty(n_modes)  # the team's part, the same in every generator's row
    for c in range(k):
        for j in range(n_modes):
            team[j] = min(team_hist[c, j] * scale, n_modes)
        for a in range(n):
            for j in range(n_modes):
                obs[c, a, j] = team[j]
                obs[c, a, n_modes + j] = min(own_hist[c, a, j] * scale, n_modes)
            obs[c, a, 2 * n_modes + a] = 1.0
            obs[c, a, 2 * n_modes + n] = time_left[c]
            obs[c, a, 2 * n_modes + n + 1] = own_accepted[c, a]
        for b in range(SCORE_BINS):
            obs[c, n, b] = score_hist[c, b]
        obs[c, n, SCORE_BINS] = step_accepted[c]
        obs[c, n, SCORE_BINS + 1] = time_left[c]
    return obs


@compiled
def score_histograms(scores: np.ndarray) -> np.ndarray:
    """Each row of (K, n) scores in [0, 1] -> (K, SCORE_BINS) shares, as np.histogram(row, SCORE_BINS,
    range=(0, 1)) counts them: edges from linspace, so 0.3 falls in the bin below
    0.30000000000000004; the last bin is closed. A score outside [0, 1] (NaN included) raises."""
    k, n = scores.shape
    counts = np.zeros((k, SCORE_BINS), dtype=np.int64)
    for row in range(k):
        for s in scores[row]:
            if not 0.0 <= s <= 1.0:
                raise ValueError("a judge's score is outside [0, 1]")
            b = min(int(s * SCORE_BINS), SCORE_BINS - 1)
            if s < _EDGES[b]:
                b -= 1
            elif b != SCORE_BINS - 1 and s >= _EDGES[b + 1]:
                b += 1
            counts[row, b] += 1
    hist = np.empty((k, SCORE_BINS))
    for row in range(k):
        for b in range(SCORE_BINS):
            hist[row, b] = counts[row, b] / n
    return hist
