"""marlgen.ledger: a step's verdicts into counts, rewards, histograms and observations."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from marlgen.config import RewardConfig
from marlgen.ledger import SCORE_BINS, carry_over, observe, score_histograms, settle
from marlgen.rewards import CREDITS, generator_rewards


def test_settle_counts_only_accepted_samples_with_a_mode_and_moves_the_histograms():
    # 2 copies, 2 agents x 3 samples, 4 modes. Copy 0's bar rejects the 0.2 scores.
    scores = np.array([[0.9, 0.2, 0.9, 0.9, 0.9, 0.2], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])
    modes = np.array([[0, 0, -1, 2, 2, 1], [3, 3, 3, -1, -1, -1]])
    bars = np.array([0.5, 0.1])
    team, own = np.zeros((2, 4), np.int64), np.zeros((2, 2, 4), np.int64)
    team[1, 3] = own[1, 0, 3] = 5  # copy 1 had already delivered mode 3 five times, all by agent 0
    cfg = OmegaConf.structured(RewardConfig(credit="difference", quality=0.3))
    counts = np.array([[[1, 0, 0, 0], [0, 0, 2, 0]], [[0, 0, 0, 3], [0, 0, 0, 0]]])
    expect = generator_rewards(team.copy(), own.copy(), counts, np.array([[2, 2], [3, 3]]) / 3, cfg)

    accepted, rewards, fraction, score_hist, step_accepted = settle(
        scores, bars, modes, team, own, np.zeros_like(team), 3, CREDITS.index(cfg.credit), cfg.coverage,
        cfg.entropy, cfg.quality,
    )  # fmt: skip
    np.testing.assert_array_equal(accepted, scores >= bars[:, None])
    np.testing.assert_array_equal(rewards, expect)
    np.testing.assert_array_equal(fraction, [[2 / 3, 2 / 3], [1.0, 1.0]])
    np.testing.assert_array_equal(step_accepted, [4 / 6, 1.0])
    np.testing.assert_array_equal(team, [[1, 0, 2, 0], [0, 0, 0, 8]])  # moved in place
    np.testing.assert_array_equal(own[0], [[1, 0, 0, 0], [0, 0, 2, 0]])
    np.testing.assert_array_equal(own[1], [[0, 0, 0, 8], [0, 0, 0, 0]])
    assert score_hist.shape == (2, SCORE_BINS) and score_hist[1, 5] == 1.0


def test_rewards_count_the_remembered_episodes_but_the_histograms_move_alone():
    # one copy, one agent x 2 samples, 3 modes; earlier episodes delivered mode 0 nine times
    scores, bars, modes = np.full((1, 2), 0.9), np.array([0.5]), np.array([[0, 1]])
    team, own, past = np.zeros((1, 3), np.int64), np.zeros((1, 1, 3), np.int64), np.array([[9, 0, 0]])
    cfg = OmegaConf.structured(RewardConfig(credit="shared", quality=0.0))
    terms = (2, CREDITS.index(cfg.credit), cfg.coverage, cfg.entropy, cfg.quality)
    _, rewards, *_ = settle(scores, bars, modes, team, own, past, *terms)
    counts = np.array([[[1, 1, 0]]])
    np.testing.assert_array_equal(rewards, generator_rewards(past, own * 0, counts, np.ones((1, 1)), cfg))
    np.testing.assert_array_equal(team, [[1, 1, 0]])  # the episode's own histogram: the past is not in it
    _, alone, *_ = settle(scores, bars, modes, np.zeros_like(team), own * 0, np.zeros_like(past), *terms)
    assert alone[0, 0] > rewards[0, 0]  # mode 0 is common once the memory counts


def test_carry_over_keeps_at_most_memory_samples():
    past, episode = np.array([6, 0, 2]), np.array([2, 2, 0])
    np.testing.assert_array_equal(carry_over(past, episode, 0), [0, 0, 0])  # off: every episode alone
    np.testing.assert_array_equal(carry_over(past, episode, 20), [8, 2, 2])  # under the cap: all kept
    np.testing.assert_array_equal(carry_over(past, episode, 6), [4, 1, 1])  # 12 samples scaled to 6
    assert carry_over(past, episode, 6).dtype == past.dtype


def test_observe_lays_out_every_agents_row():
    team, own = np.array([[4, 0]]), np.array([[[4, 0], [0, 0], [0, 0]]])  # 3 agents, 2 modes
    scores = np.zeros((1, SCORE_BINS))
    scores[0, 9] = 1.0
    obs = observe(team, own, np.array([[0.5, 1.0, 0.0]]), scores, np.array([0.25]), np.array([0.75]), 0.5, 13)
    assert obs.shape == (1, 4, 13) and obs.dtype == np.float32
    # histograms scaled (x0.5) and capped at M = 2, then the one-hot id, time left, own accepted fraction
    np.testing.assert_array_equal(obs[0, 0, :9], [2, 0, 2, 0, 1, 0, 0, 0.75, 0.5])
    np.testing.assert_array_equal(obs[0, 2, :9], [2, 0, 0, 0, 0, 0, 1, 0.75, 0.0])
    assert not obs[0, :3, 9:].any()  # padding
    np.testing.assert_array_equal(obs[0, 3, :12], [*[0.0] * 9, 1.0, 0.25, 0.75])  # the critic


def test_settle_rejects_scores_outside_the_unit_interval():
    args = (np.array([[0.5, 1.5]]), np.array([0.1]), np.zeros((1, 2), np.int64), np.zeros((1, 1), np.int64))
    with pytest.raises(ValueError, match="outside"):
        settle(*args, np.zeros((1, 1, 1), np.int64), np.zeros((1, 1), np.int64), 2, 0, 1.0, 1.0, 0.1)


def test_score_histograms_bin_as_np_histogram():
    rng = np.random.default_rng(0)
    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    scores = np.concatenate([rng.random(500), edges, np.nextafter(edges[1:], 0), [0.3]])  # on and below edges
    for row in (scores, scores.astype(np.float32)):
        expect = np.histogram(row.astype(np.float64), SCORE_BINS, range=(0, 1))[0] / len(row)
        np.testing.assert_array_equal(score_histograms(row[None])[0], expect)
    with pytest.raises(ValueError, match="outside"):
        score_histograms(np.array([[0.5, np.nan]]))


def test_kernels_compile_while_tianshous_helpers_stay_python():
    """import marlgen sets NUMBA_DISABLE_JIT=1 for Tianshou's sake; marlgen's kernels compile anyway."""
    import numba
    from tianshou.data.buffer import manager

    if not numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT=0 was set before import marlgen: everything compiles")
    settle(np.full((1, 2), 0.5), np.array([0.1]), np.zeros((1, 2), np.int64), np.zeros((1, 1), np.int64),
           np.zeros((1, 1, 1), np.int64), np.zeros((1, 1), np.int64), 2, 0, 1.0, 1.0, 0.1)  # fmt: skip
    assert settle.signatures and settle.nopython_signatures  # machine code, not the Python function
    assert not isinstance(manager._prev_index, numba.core.dispatcher.Dispatcher)
