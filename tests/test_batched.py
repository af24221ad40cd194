"""BatchedTeams steps K env copies as one and gives each copy what it would get alone."""

import copy
import functools

import numpy as np
import pytest
from omegaconf import OmegaConf
from tianshou.env import DummyVectorEnv

from marlgen.batched import BatchedTeams
from marlgen.build import build_parts, make_env
from marlgen.evaluate import steer, team_episodes
from marlgen.lockstep import TeamEnv
from marlgen.train import train
from tests.conftest import ROOT, quick_config

COPIES = 3


def rollouts(venv, actions, seeds):
    venv.seed(seeds)
    obs, _ = venv.reset()
    out = [np.asarray(obs)]
    for act in actions:
        obs, rew, term, trunc, _ = venv.step(act)
        out += [np.asarray(obs), np.asarray(rew, dtype=np.float32), np.asarray(term)]
        if np.all(term):
            obs, _ = venv.reset()
            out.append(np.asarray(obs))
    return out


def compare(cfg, parts, learn_judge=False, **env):
    env_fn = functools.partial(make_env, cfg, parts, learn_judge, **env)
    probe = TeamEnv(env_fn)
    rng = np.random.default_rng(0)
    actions = []
    for _ in range(12):  # random joint actions, padded as marlgen.lockstep pads them
        act = np.zeros((COPIES, len(probe.agents), probe.act_width), dtype=np.float32)
        for i, agent in enumerate(probe.agents):
            space = probe.env.action_space(agent)
            for c in range(COPIES):
                sample = space.sample() if not hasattr(space, "n") else rng.integers(space.n)
                act[c, i, : np.size(sample)] = np.ravel(sample)
        actions.append(act)
    seeds = [7, 8, 9]
    judge = parts.judge
    start = copy.deepcopy((judge.net.state_dict(), judge.optim.state_dict())) if learn_judge else None
    alone = rollouts(DummyVectorEnv([functools.partial(TeamEnv, env_fn)] * COPIES), actions, seeds)
    if learn_judge:  # the judge learned in the first rollout: start the second from the same weights
        judge.net.load_state_dict(start[0])
        judge.optim.load_state_dict(start[1])
    together = rollouts(BatchedTeams(env_fn, COPIES), actions, seeds)
    assert len(alone) == len(together)
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "credit, action", [("difference", "discrete"), ("shared", "continuous"), ("individual", "discrete")]
)
def test_batched_copies_step_as_separate_envs(ring8, credit, action):
    cfg, parts = ring8
    compare(cfg, parts, action=action, reward={"credit": credit}, episode_budget=16)


def test_batched_copies_blind_to_histograms(ring8):
    cfg, parts = ring8
    compare(cfg, parts, observe_histograms=False, episode_budget=16)


def test_batched_copies_remember_earlier_episodes_as_a_lone_env_does(ring8_in_modes):
    cfg, parts = ring8_in_modes
    compare(cfg, parts, reward={"memory": 20}, episode_budget=16)  # 12 steps: several episodes


def test_batched_copies_with_a_learning_judge(cache_dir):
    cfg = quick_config(ROOT / "scenarios/gmm_ring8.yaml", cache_dir, "env.critic.judge=discriminator")
    parts = build_parts(cfg, progress=False)
    compare(cfg, parts, learn_judge=True, episode_budget=16)


def test_side_by_side_episodes_match_one_after_the_other(ring8, tmp_path):
    cfg, parts = ring8
    short = OmegaConf.merge(cfg, {"train": {"epochs": 1, "steps_per_epoch": 1500, "n_envs": 4}})
    team = train(short, parts, tmp_path, progress=False, log=lambda *a: None).team
    side_by_side = team_episodes(functools.partial(make_env, cfg, parts), team.actor(), 12, seed=5)
    _, one_by_one = steer(make_env(cfg, parts), team.actor(), cfg.env.episode_budget * 12, seed=5)
    assert len(side_by_side) == len(one_by_one) == 12
    for a, b in zip(side_by_side, one_by_one, strict=True):
        np.testing.assert_array_equal(a, b)
