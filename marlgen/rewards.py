"""Reward terms of CoverageEnv.

The team objective of a mode histogram h (counts of accepted samples per mode, M modes) is

    G(h) = w_cov * covered(h) / M  +  w_ent * H(h / sum h) / log M

so an episode's team gains telescope to G(final histogram): its entropy part is log M minus the
reverse KL we report, its coverage part the modes covered. How a step's team gain is credited to
each generator is the ``credit`` key:

- ``shared``: every generator receives the whole team gain G(h + sum_j c_j) - G(h).
- ``difference``: generator i receives G(h + sum_j c_j) - G(h + sum_{j != i} c_j), what the team
  would lose without its samples (Wolpert & Tumer's difference reward). It makes two agents
  landing on one mode worth nothing to either (their sum need not equal the team gain, since the
  entropy term is not additive over agents): the signal that lets
  simultaneous movers split the modes (DESIGN.md, "Traps": with the shared reward they all drift
  to the same choice).
- ``individual``: generator i receives G(own_i + c_i) - G(own_i) on its own history only: no
  teammate appears in its reward at all (the independent-learners baseline).

Every generator also gets ``w_quality`` times the fraction of its own samples the critic accepted.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy


def objective(hist: np.ndarray, coverage: float, entropy: float) -> np.ndarray:
    """G over the last axis of a batch of histograms (..., M)."""
    n_modes = hist.shape[-1]
    total = hist.sum(-1, keepdims=True)
    p = hist / np.maximum(total, 1)
    h = -xlogy(p, p).sum(-1)  # 0 log 0 = 0
    covered = (hist > 0).sum(-1)
    return coverage * covered / n_modes + entropy * h / np.log(max(n_modes, 2))


def per_agent_counts(modes: np.ndarray, n_modes: int) -> np.ndarray:
    """(N, m) accepted modes (-1 = none) -> (N, M) counts, without a Python loop."""
    n_agents = modes.shape[0]
    flat = modes + (np.arange(n_agents) * n_modes)[:, None]  # (N, m): agent i's modes at i*M + mode
    return np.bincount(flat[modes >= 0], minlength=n_agents * n_modes).reshape(n_agents, n_modes)


def generator_rewards(
    team_hist: np.ndarray,  # (..., M) team counts before this step
    own_hist: np.ndarray,  # (..., N, M) each agent's own counts before this step
    counts: np.ndarray,  # (..., N, M) this step's accepted samples per agent and mode
    accepted_fraction: np.ndarray,  # (..., N) share of each agent's samples the critic accepted
    cfg,
) -> np.ndarray:
    """(..., N) rewards; see the module docstring for the credit schemes. Leading axes are env copies
    stepped together (marlgen.batched); each copy's rewards are those it would get alone."""
    g = lambda h: objective(h, cfg.coverage, cfg.entropy)  # noqa: E731
    after = team_hist + counts.sum(-2)  # (..., M)
    if cfg.credit == "shared":
        gain = np.broadcast_to((g(after) - g(team_hist))[..., None], accepted_fraction.shape)
    elif cfg.credit == "difference":
        # G of the team's histogram and of the N histograms without one agent each, in one call.
        both = g(np.concatenate([after[..., None, :], after[..., None, :] - counts], axis=-2))  # (..., 1 + N)
        gain = both[..., :1] - both[..., 1:]  # (..., N)
    elif cfg.credit == "individual":
        gain = g(own_hist + counts) - g(own_hist)  # (..., N)
    else:
        raise ValueError(f"unknown credit scheme {cfg.credit!r}")
    return gain + cfg.quality * accepted_fraction


def critic_reward(
    accepted: np.ndarray, good: np.ndarray, false_accept_cost: float, false_reject_cost: float
) -> float:
    """Mean over the step's samples: +1 per accepted good sample, costs for both kinds of mistake."""
    return float(critic_rewards(accepted[None], good[None], false_accept_cost, false_reject_cost)[0])


def critic_rewards(
    accepted: np.ndarray, good: np.ndarray, false_accept_cost: float, false_reject_cost: float
) -> np.ndarray:
    """critic_reward of each row of (K, n) verdicts (env copies stepped together) -> (K,)."""
    k, n = accepted.shape
    # One bincount over the four (accepted, good) cases of every row, as shares of the row's samples.
    case = 2 * accepted + good + 4 * np.arange(k)[:, None]
    cases = np.bincount(case.ravel(), minlength=4 * k).reshape(k, 4) / n  # rejected bad, rejected good, ...
    false_rejects, false_accepts, hits = cases[:, 1], cases[:, 2], cases[:, 3]
    return hits - false_accept_cost * false_accepts - false_reject_cost * false_rejects
