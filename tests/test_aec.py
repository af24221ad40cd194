"""The AEC baseline route: each turn learns from its own round's rewards, and the route trains."""

import functools

import numpy as np
from tianshou.data import Collector
from tianshou.env import DummyVectorEnv

from marlgen.aec import build_aec_team, make_aec_env, realign_rewards, train_aec
from marlgen.buffers import SlotReplayBuffer
from marlgen.build import build_parts, make_env
from tests.conftest import ROOT, quick_config


def logged_env(cfg, parts, log):
    """A CoverageEnv that records every parallel step's rewards."""
    env = make_env(cfg, parts)
    step = env.step

    def logging_step(actions):
        out = step(actions)
        log.append(dict(out[1]))
        return out

    env.step = logging_step
    return env


def test_every_turn_gets_its_own_rounds_rewards(ring8):
    cfg, parts = ring8
    log = []
    env_fn = functools.partial(logged_env, cfg, parts, log)
    probe = make_aec_env(env_fn)
    n_turns = len(probe.agents)  # 4 generators and the critic
    venv = DummyVectorEnv([functools.partial(make_aec_env, env_fn)])
    team = build_aec_team(cfg, probe, total_steps=1000, device="cpu")
    buffer = SlotReplayBuffer(200, 1)
    collector = Collector(team.algorithm, venv, buffer)
    collector.reset()
    log.clear()  # rewards of the steps collected from here on
    collector.collect(n_step=12 * n_turns, random=True)

    rows = buffer.sample_indices(0)  # in order: turn by turn, round by round
    agent_idx = team.algorithm._dispatcher.agent_idx
    who = buffer.obs.agent_id[rows]
    assert (buffer.rew[rows][who == "generator_0"] == 0).all()  # the trap: the first turn holds zeros
    realign_rewards(buffer, rows, agent_idx)
    assert len(log) == 12
    for row, agent in zip(rows, who, strict=True):
        assert buffer.rew[row, agent_idx[agent]] == log[row // n_turns][agent]


def test_aec_route_trains_one_policy_per_agent(cache_dir, tmp_path):
    over = ["train.n_envs=2", "train.epochs=1", "train.steps_per_epoch=500", "train.steps_per_collect=250"]
    cfg = quick_config(ROOT / "scenarios/gmm_ring8.yaml", cache_dir, *over)

    result = train_aec(cfg, build_parts(cfg, progress=False), tmp_path, progress=False, log=lambda *a: None)
    policies = result.team.algorithm.policy.policies
    assert sorted(policies) == ["critic", "generator_0", "generator_1", "generator_2", "generator_3"]
    assert result.history[0]["env_steps"] % (2 * 5) == 0  # whole rounds of every copy
    assert not np.allclose(  # separate networks, trained apart
        policies["generator_0"].actor.last.model[0].weight.detach(),
        policies["generator_1"].actor.last.model[0].weight.detach(),
    )
