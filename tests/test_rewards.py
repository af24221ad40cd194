"""Reward terms on hand-made cases whose values are known."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from marlgen.config import RewardConfig
from marlgen.rewards import critic_rewards, generator_rewards, objective


def reward_cfg(**kw):
    return OmegaConf.structured(RewardConfig(**kw))


def test_objective_known_values():
    # One mode of four covered, no entropy: coverage 1/4.
    assert objective(np.array([3, 0, 0, 0]), 1.0, 1.0) == pytest.approx(0.25)
    # Uniform over all four: coverage 1 + normalised entropy 1.
    assert objective(np.array([2, 2, 2, 2]), 1.0, 1.0) == pytest.approx(2.0)
    # Two of four, equal counts: 0.5 + log 2 / log 4 = 1.0.
    assert objective(np.array([5, 5, 0, 0]), 1.0, 1.0) == pytest.approx(1.0)
    assert objective(np.zeros(4), 1.0, 1.0) == 0.0


def per_agent_counts(modes, n_modes: int) -> np.ndarray:
    """(N, m) modes (-1: none) -> (N, M) counts, the way marlgen.ledger.settle counts them."""
    return np.stack([np.bincount(row[row >= 0], minlength=n_modes) for row in np.asarray(modes)])


def test_difference_reward_gives_nothing_for_a_duplicate():
    # Two agents land on the same new mode, a third on another new mode (M = 4, empty history).
    counts = per_agent_counts(np.array([[0], [0], [1]]), 4)
    r = generator_rewards(
        np.zeros(4), np.zeros((3, 4)), counts, np.ones(3), reward_cfg(entropy=0.0, quality=0.0)
    )
    assert r.tolist() == pytest.approx([0.0, 0.0, 0.25])


def test_shared_reward_is_the_team_gain_for_everyone():
    counts = per_agent_counts(np.array([[0], [0], [1]]), 4)
    cfg = reward_cfg(credit="shared", entropy=0.0, quality=0.0)
    r = generator_rewards(np.zeros(4), np.zeros((3, 4)), counts, np.ones(3), cfg)
    assert r.tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_individual_reward_ignores_teammates():
    counts = per_agent_counts(np.array([[0], [0]]), 4)
    own = np.array([[0, 0, 0, 0], [1, 0, 0, 0]])  # agent 1 already covered mode 0 itself
    cfg = reward_cfg(credit="individual", entropy=0.0, quality=0.0)
    r = generator_rewards(np.array([1, 0, 0, 0]), own, counts, np.ones(2), cfg)
    assert r.tolist() == pytest.approx([0.25, 0.0])


def test_quality_term_adds_accepted_fraction():
    counts = np.zeros((2, 4), dtype=int)
    cfg = reward_cfg(coverage=0.0, entropy=0.0, quality=0.5)
    r = generator_rewards(np.zeros(4), np.zeros((2, 4)), counts, np.array([1.0, 0.5]), cfg)
    assert r.tolist() == pytest.approx([0.5, 0.25])


def test_entropy_gains_telescope_to_final_entropy():
    rng = np.random.default_rng(0)
    cfg = reward_cfg(coverage=0.0, quality=0.0, credit="shared")
    team = np.zeros(5)
    total = 0.0
    for _ in range(6):
        counts = per_agent_counts(rng.integers(-1, 5, size=(1, 3)), 5)
        total += generator_rewards(team, np.zeros((1, 5)), counts, np.ones(1), cfg)[0]
        team = team + counts.sum(0)
    assert total == pytest.approx(objective(team, 0.0, 1.0))


def test_critic_reward_known_values():
    accepted = np.array([True, True, False, False])
    good = np.array([True, False, True, False])
    modes = np.where(good, 3, -1)[None]  # good: the assigner found a mode
    # hits 1/4, false accepts 1/4 (cost 1), false rejects 1/4 (cost 0.5)
    assert critic_rewards(accepted[None], modes, 1.0, 0.5)[0] == pytest.approx(0.25 - 0.25 - 0.125)
    assert critic_rewards(good[None], modes, 1.0, 0.5)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("credit", ["shared", "difference", "individual"])
def test_rewards_of_env_copies_follow_the_objective(credit):
    """The compiled rewards against their definition through ``objective``, copy by copy."""
    rng = np.random.default_rng(1)
    k, n, m = 3, 4, 6
    team, own, counts = (
        rng.integers(0, 4, (k, m)),
        rng.integers(0, 3, (k, n, m)),
        rng.integers(0, 2, (k, n, m)),
    )
    accepted = rng.random((k, n))
    cfg = reward_cfg(credit=credit, coverage=0.7, entropy=1.3, quality=0.2)
    g = lambda h: objective(h, 0.7, 1.3)  # noqa: E731
    got = generator_rewards(team, own, counts, accepted, cfg)
    for c in range(k):
        after = team[c] + counts[c].sum(0)
        for i in range(n):
            expect = {
                "shared": g(after) - g(team[c]),
                "difference": g(after) - g(after - counts[c, i]),
                "individual": g(own[c, i] + counts[c, i]) - g(own[c, i]),
            }[credit]
            assert got[c, i] == pytest.approx(expect + 0.2 * accepted[c, i], abs=1e-12)
    with pytest.raises(ValueError, match="credit"):
        generator_rewards(team, own, counts, accepted, reward_cfg(credit="shraed"))


def test_difference_rewards_of_many_agents_are_the_objective_to_the_bit():
    """64 agents of 4 samples share totals, so the compiled rewards reuse p log p across them
    (rewards._difference_gains); each must still be G(after) - G(after - own counts) exactly."""
    rng = np.random.default_rng(3)
    k, n, modes, m = 2, 64, 25, 4
    counts = np.zeros((k, n, modes), dtype=np.int64)
    for c in range(k):
        for i in range(n):
            for _ in range(rng.integers(0, m + 1)):  # 0..m accepted samples, some on one mode
                counts[c, i, rng.integers(0, modes)] += 1
    team = rng.integers(0, 3, (k, modes)) * (rng.random((k, modes)) < 0.5)  # modes at 0 too
    own = np.zeros_like(counts)
    cfg = reward_cfg(credit="difference", coverage=0.7, entropy=1.3, quality=0.0)
    got = generator_rewards(team, own, counts, np.zeros((k, n)), cfg)
    for c in range(k):
        after = team[c] + counts[c].sum(0)
        expect = [objective(after, 0.7, 1.3) - objective(after - counts[c, i], 0.7, 1.3) for i in range(n)]
        np.testing.assert_array_equal(got[c], expect)
    assert (got != 0).any() and len({int(s) for s in counts.sum(2).ravel()}) > 1  # shared totals differ
