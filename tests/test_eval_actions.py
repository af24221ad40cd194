"""eval.actions: a trained team evaluated greedily replays its choices; sampled, it draws afresh each
episode, reproducibly for a seed and without touching the global random state training uses."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from marlgen.build import make_env
from marlgen.config import ConfigError, load_scenario
from marlgen.evaluate import steer
from marlgen.train import train
from tests.conftest import RING8, quick_config

EPISODES = 6


@pytest.fixture(scope="module")
def team(ring8, tmp_path_factory):
    cfg, parts = ring8
    short = OmegaConf.merge(cfg, {"train": {"epochs": 1, "steps_per_epoch": 600, "n_envs": 2}})
    return train(short, parts, tmp_path_factory.mktemp("team"), progress=False, log=lambda *a: None).team


def choices(ring8, actor) -> np.ndarray:
    """(episodes, samples per episode) anchors the team drew from, every episode seeded alike."""
    cfg, parts = ring8
    per_episode = cfg.env.episode_budget
    rollout, _ = steer(make_env(cfg, parts), actor, per_episode * EPISODES, seed=3)
    return rollout.choice.reshape(EPISODES, per_episode)


def test_greedy_replays_its_first_choices_every_episode(ring8, team):
    first = choices(ring8, team.actor("greedy"))[:, : ring8[0].env.n_generators]
    assert (first == first[0]).all()


def test_sampled_actions_differ_across_episodes_and_repeat_for_a_seed(ring8, team):
    drawn = choices(ring8, team.actor("sample", seed=1))
    first = drawn[:, : ring8[0].env.n_generators]
    assert len({tuple(row) for row in first}) > 1  # a fresh draw per episode
    np.testing.assert_array_equal(drawn, choices(ring8, team.actor("sample", seed=1)))
    assert not np.array_equal(drawn, choices(ring8, team.actor("sample", seed=2)))


def test_sampling_leaves_the_global_random_state_and_the_policy_flag_alone(ring8, team):
    torch.manual_seed(11)
    np.random.seed(11)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(11)
    np.random.seed(11)
    choices(ring8, team.actor("sample", seed=1))
    np.testing.assert_array_equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert team.algorithm.policy.is_within_training_step is False


def test_an_unknown_eval_actions_value_names_the_key():
    with pytest.raises(ConfigError, match=r"eval\.actions.*sample.*greedy"):
        load_scenario(RING8, ["eval.actions=mode"])


def test_sampled_dqn_acts_epsilon_greedily(ring8, tmp_path):
    """DQN has no action distribution: sampling is its epsilon-greedy draw at the training epsilon."""
    cfg, parts = ring8
    eps = ["agents.generator.eps_train_final=0.5", "agents.critic.eps_train_final=0.5"]
    dqn = quick_config(RING8, cfg.cache_dir, "agent=dqn", *eps)
    short = OmegaConf.merge(dqn, {"train": {"epochs": 1, "steps_per_epoch": 600, "n_envs": 2}})
    team = train(short, parts, tmp_path, progress=False, log=lambda *a: None).team
    first = choices(ring8, team.actor("sample", seed=1))[:, : cfg.env.n_generators]
    assert len({tuple(row) for row in first}) > 1
    greedy = choices(ring8, team.actor("greedy"))[:, : cfg.env.n_generators]
    assert (greedy == greedy[0]).all()
