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

from marlgen.compiled import compiled

CREDITS = ("shared", "difference", "individual")


def objective(hist: np.ndarray, coverage: float, entropy: float) -> np.ndarray:
    """G over the last axis of a batch of histograms (..., M)."""
    n_modes = hist.shape[-1]
    total = hist.sum(-1, keepdims=True)
    p = hist / np.maximum(total, 1)
    h = -xlogy(p, p).sum(-1)  # 0 log 0 = 0
    covered = (hist > 0).sum(-1)
    return coverage * covered / n_modes + entropy * h / np.log(max(n_modes, 2))


def generator_rewards(
    team_hist: np.ndarray,  # (..., M) team counts before this step
    own_hist: np.ndarray,  # (..., N, M) each agent's own counts before this step
    counts: np.ndarray,  # (..., N, M) this step's accepted samples per agent and mode
    accepted_fraction: np.ndarray,  # (..., N) share of each agent's samples the critic accepted
    cfg,
) -> np.ndarray:
    """(..., N) rewards; see the module docstring for the credit schemes. Leading axes are env copies
    stepped together (marlgen.batched); each copy's rewards are those it would get alone."""
    if cfg.credit not in CREDITS:
        raise ValueError(f"unknown credit scheme {cfg.credit!r}; choose one of {', '.join(CREDITS)}")
    n_agents, n_modes = counts.shape[-2:]
    as_copies = lambda a, *shape: np.ascontiguousarray(a, dtype=np.int64).reshape(-1, *shape)  # noqa: E731
    gain = team_gains(
        as_copies(team_hist, n_modes),
        as_copies(own_hist, n_agents, n_modes),
        as_copies(counts, n_agents, n_modes),
        CREDITS.index(cfg.credit),
        float(cfg.coverage),
        float(cfg.entropy),
    )
    return gain.reshape(counts.shape[:-1]) + cfg.quality * accepted_fraction


@compiled
def critic_rewards(
    accepted: np.ndarray, modes: np.ndarray, false_accept_cost: float, false_reject_cost: float
):
    """The critic's reward for each row of (K, n) verdicts (env copies): the mean over the row's samples
    of +1 for accepting a good one (mode >= 0) and the costs of both kinds of mistake -> (K,)."""
    k, n = accepted.shape
    out = np.empty(k)
    for row in range(k):
        hits = false_accepts = false_rejects = 0
        for i in range(n):
            good = modes[row, i] >= 0
            if accepted[row, i]:
                hits += good
                false_accepts += not good
            else:
                false_rejects += good
        out[row] = (
            hits / n - false_accept_cost * (false_accepts / n) - false_reject_cost * (false_rejects / n)
        )
    return out


@compiled
def team_gains(team_hist, own_hist, counts, credit: int, coverage: float, entropy: float) -> np.ndarray:
    """(K, M), (K, N, M), (K, N, M) int64 -> (K, N) gains before the quality term; credit indexes CREDITS.

    Plain loops: numba compiles numpy's array expressions and axis reductions ten times slower, and
    this compiles once per checkout (marlgen.compiled)."""
    k, n, n_modes = counts.shape
    gain = np.empty((k, n))
    after, mine = np.empty((2, n_modes), dtype=np.int64)  # scratch histograms
    scratch = np.empty(n_modes)
    for c in range(k):
        for j in range(n_modes):
            after[j] = team_hist[c, j]
            for i in range(n):
                after[j] += counts[c, i, j]
        g_after = _objective_1d(after, coverage, entropy, scratch)
        g_team = _objective_1d(team_hist[c], coverage, entropy, scratch)
        if credit == 1:
            _difference_gains(after, counts[c], g_after, coverage, entropy, scratch, gain[c])
            continue
        for i in range(n):
            if credit == 0:  # shared: the team's gain
                gain[c, i] = g_after - g_team
            else:  # individual: agent i's own history only
                for j in range(n_modes):
                    mine[j] = own_hist[c, i, j] + counts[c, i, j]
                g_own = _objective_1d(own_hist[c, i], coverage, entropy, scratch)
                gain[c, i] = _objective_1d(mine, coverage, entropy, scratch) - g_own
    return gain


@compiled
def _difference_gains(after, counts, g_after, coverage, entropy, p_log_p, out) -> None:
    """out[i] = G(after) - G(after - counts[i]) for every agent i of one env copy, as ``_objective_1d``
    computes each G, to the bit.

    Without agent i the team's histogram differs from ``after`` only in the few modes i's samples
    landed in; every other mode's p log p depends on its count and on the total, and agents that
    had the same number of samples counted share the total. So p log p of the untouched modes is
    kept per removed total, and an agent costs the logs of its own modes instead of all M: at 64
    agents of 4 samples, about a fifth of the logs (docs/performance.md, 1.6)."""
    n, n_modes = counts.shape
    total, covered = 0, 0
    for j in range(n_modes):
        total += after[j]
        covered += after[j] > 0
    removed = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for j in range(n_modes):
            removed[i] += counts[i, j]
    kept = np.empty((removed.max() + 1, n_modes))  # p log p of after[j] at total - removed
    ready = np.zeros(len(kept), dtype=np.bool_)
    for i in range(n):
        r = removed[i]
        denominator = max(total - r, 1)
        if not ready[r]:
            for j in range(n_modes):
                p = after[j] / denominator
                kept[r, j] = p * np.log(p) if p != 0 else 0.0
            ready[r] = True
        lost = 0  # modes covered only by agent i's samples
        for j in range(n_modes):
            if counts[i, j] == 0:
                p_log_p[j] = kept[r, j]
            else:
                p = (after[j] - counts[i, j]) / denominator
                p_log_p[j] = p * np.log(p) if p != 0 else 0.0
                lost += after[j] == counts[i, j]
        h = -_numpy_sum(p_log_p)
        g_before = coverage * (covered - lost) / n_modes + entropy * h / np.log(max(n_modes, 2))
        out[i] = g_after - g_before


@compiled
def _objective_1d(hist: np.ndarray, coverage: float, entropy: float, p_log_p: np.ndarray) -> float:
    """``objective`` of one histogram, to the last bit (so compiled and numpy trajectories agree).
    ``p_log_p``: scratch space of len(hist), passed in because an env step calls this hundreds of times."""
    n_modes = len(hist)
    total = 0
    for count in hist:
        total += count
    covered = 0
    for j in range(n_modes):
        p = hist[j] / max(total, 1)
        p_log_p[j] = p * np.log(p) if p != 0 else 0.0
        covered += hist[j] > 0
    h = -_numpy_sum(p_log_p)
    return coverage * covered / n_modes + entropy * h / np.log(max(n_modes, 2))


@compiled
def _numpy_sum(a: np.ndarray) -> float:
    """``a.sum()`` in numpy's order of additions (its pairwise sum: eight running sums per block of
    128), so that the result matches numpy's to the last bit."""
    n = len(a)
    if n < 8:
        total = 0.0
        for x in a:
            total += x
        return total
    if n > 128:
        half = n // 2
        half -= half % 8
        return _numpy_sum(a[:half]) + _numpy_sum(a[half:])
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    for i in range(8, n - n % 8, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(n - n % 8, n):
        total += a[i]
    return total
