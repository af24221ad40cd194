"""CoverageEnv: PettingZoo's own API and seed tests for every scenario, and one step's bookkeeping."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from marlgen.build import build_parts, make_env
from tests.conftest import SCENARIOS, quick_config


@pytest.mark.parametrize("action", ["discrete", "continuous"])
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_pettingzoo_api_and_seed(path, action, cache_dir):
    cfg = quick_config(path, cache_dir, f"env.action={action}", "model.train_steps=30")  # API, not quality
    parts = build_parts(cfg, progress=False)
    parallel_api_test(make_env(cfg, parts), num_cycles=60)
    parallel_seed_test(lambda: make_env(cfg, parts), num_cycles=60)


def test_registered_with_pettingzoo(ring8):
    import pettingzoo

    cfg, parts = ring8
    env = pettingzoo.make("parallel", "marlgen/Coverage-v0", config=cfg, parts=parts)
    assert env.possible_agents == [f"generator_{i}" for i in range(cfg.env.n_generators)] + ["critic"]


def test_step_decodes_every_agents_samples_once_and_counts_them(ring8):
    cfg, parts = ring8
    env = make_env(cfg, parts, samples_per_agent=3, episode_budget=24)
    calls = []
    decode = env.decode
    env.decode = lambda z: calls.append(z.shape) or decode(z)
    obs, _ = env.reset(seed=0)
    actions = {a: env.action_space(a).sample() for a in env.agents}
    obs, rewards, term, trunc, _ = env.step(actions)
    assert calls == [(4 * 3, 2)]  # one batched pass: N generators x m samples, latent_dim 2
    rec = env.last
    assert rec.samples.shape == (12, 2) and rec.agent.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    delivered = rec.modes[rec.accepted]
    assert env.team_hist.sum() == (delivered >= 0).sum()
    assert set(rewards) == set(env.possible_agents)
    assert not any(term.values()) and env.t == 1


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_one_generator_steps_where_its_action_points(ring8, action):
    # A single generator's action comes out of the dict alone, not as a 1-tuple (env._gather).
    cfg, parts = ring8
    env = make_env(cfg, parts, action=action, n_generators=1, samples_per_agent=2, episode_budget=4,
                   latent_spread=0.0)  # fmt: skip
    env.reset(seed=0)
    chosen = env.action_space("generator_0").sample()
    _, _, term, _, _ = env.step({"generator_0": chosen, "critic": env.action_space("critic").sample()})
    expect = (
        env.anchors[chosen] if action == "discrete" else np.clip(chosen, -env.anchor_range, env.anchor_range)
    )
    latents = np.repeat(np.asarray(expect, dtype=np.float32)[None], 2, axis=0)
    np.testing.assert_array_equal(env.last.samples, env.decode(latents))
    assert term == {"generator_0": False, "critic": False}
    _, _, term, trunc, _ = env.step({"generator_0": chosen, "critic": env.action_space("critic").sample()})
    assert term == {"generator_0": True, "critic": True} and not any(trunc.values()) and not env.agents


def test_episode_ends_after_budget(ring8):
    cfg, parts = ring8
    env = make_env(cfg, parts)
    env.reset(seed=1)
    steps = 0
    while env.agents:
        _, _, term, _, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        steps += 1
    assert steps == cfg.env.episode_budget // cfg.env.n_generators
    assert all(term.values())
    with pytest.raises(RuntimeError, match="no episode running: call reset"):
        env.step({a: env.action_space(a).sample() for a in env.possible_agents})


def test_critic_bar_rejects_low_scores(ring8):
    cfg, parts = ring8
    env = make_env(cfg, parts, critic={"bars": [0.0, 1.0]})
    env.reset(seed=2)
    gen = {a: 0 for a in env.generators}
    env.step({**gen, "critic": 1})  # a bar of 1.0 accepts only perfect samples
    strict = env.last.accepted.mean()
    env.reset(seed=2)
    env.step({**gen, "critic": 0})  # a bar of 0 accepts everything
    assert env.last.accepted.all() and strict < 1.0
    assert np.all(env.team_hist == np.bincount(env.last.modes[env.last.modes >= 0], minlength=8))


def test_anchor_scale_keeps_the_prior_variance(ring8):
    """anchor_scale = sqrt(1 - spread^2): anchors chosen uniformly, then jittered, are prior draws."""
    cfg, parts = ring8
    spread = 0.6
    env = make_env(cfg, parts, n_anchors=4096, latent_spread=spread, anchor_scale=(1 - spread**2) ** 0.5)
    plain = make_env(cfg, parts, n_anchors=4096, latent_spread=spread)
    np.testing.assert_array_equal(env.anchors, 0.8 * plain.anchors)
    rng = np.random.default_rng(0)
    z = env.anchors[rng.integers(0, 4096, 20000)] + spread * rng.standard_normal((20000, 2))
    assert np.all(np.abs(z.var(0) - 1.0) < 0.05)  # unscaled anchors: 1 + 0.36


def test_blind_to_histograms_zeros_them_and_nothing_else(ring8):
    cfg, parts = ring8
    seeing, blind = make_env(cfg, parts), make_env(cfg, parts, observe_histograms=False)
    obs_a, _ = seeing.reset(seed=3)
    obs_b, _ = blind.reset(seed=3)
    m = seeing.n_modes
    for _ in range(2):
        actions = {a: seeing.action_space(a).sample() for a in seeing.agents}
        obs_a, rew_a, *_ = seeing.step(actions)
        obs_b, rew_b, *_ = blind.step(actions)
        assert rew_a == rew_b
        for agent in seeing.generators:
            assert obs_a[agent][: 2 * m].any() or seeing.team_hist.sum() == 0
            assert not obs_b[agent][: 2 * m].any()
            np.testing.assert_array_equal(obs_a[agent][2 * m :], obs_b[agent][2 * m :])
        np.testing.assert_array_equal(obs_a["critic"], obs_b["critic"])


def test_reward_memory_changes_later_rewards_and_nothing_else(ring8_in_modes):
    cfg, parts = ring8_in_modes
    envs = make_env(cfg, parts), make_env(cfg, parts, reward={"memory": 100})  # alone, remembering
    rng = np.random.default_rng(0)
    rewards = ([], [])
    for episode in range(2):
        for env in envs:
            env.reset(seed=episode)
        while envs[0].agents:
            actions = {a: int(rng.integers(envs[0].action_space(a).n)) for a in envs[0].generators}
            actions["critic"] = int(np.argmin(envs[0].bars))  # accept everything: every sample counts
            (obs_a, rew_a, *_), (obs_b, rew_b, *_) = (env.step(actions) for env in envs)
            rewards[0].append([rew_a[a] for a in envs[0].generators])
            rewards[1].append([rew_b[a] for a in envs[1].generators])
            np.testing.assert_array_equal(envs[0].team_hist, envs[1].team_hist)  # the episode's own
            for agent in obs_a:
                np.testing.assert_array_equal(obs_a[agent], obs_b[agent])
    first = envs[0].n_steps
    assert rewards[0][:first] == rewards[1][:first]
    assert rewards[0][first:] != rewards[1][first:]  # the second episode's rewards count the first's samples
    assert envs[1].past_hist.sum() > 0 and envs[0].past_hist.sum() == 0
