"""Double DQN (Tianshou 2.0) with a periodically copied target network, for Discrete actions only."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from tianshou.algorithm import DQN
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.utils.net.common import Net

from agents.gains import GainedQNet

ON_POLICY = False
EPS_DECAY_FRACTION = 0.5  # epsilon reaches eps_train_final after this fraction of training


def build(
    agent_cfg: Any,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Discrete | gym.spaces.Box,
    total_env_steps: int,
    device: str = "cpu",
    agent_ids: tuple[int, int] | None = None,
) -> DQN:
    """A double-DQN algorithm (Q-network policy + target network + optimizer) from an ``AgentConfig``.

    ``target_update_freq`` counts gradient steps (not env steps), as in Tianshou. ``total_env_steps``
    is part of the builder interface; epsilon is scheduled by progress instead (``on_progress``).
    ``agent_ids``: as in agents.ppo.build (per-agent gains on a shared Q-network).
    """
    del total_env_steps
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError("DQN needs discrete actions; use ppo for env.action=continuous")
    hidden = [int(h) for h in agent_cfg.hidden]
    if agent_ids is not None and agent_cfg.agent_gains:
        q_net = GainedQNet(observation_space.shape, int(action_space.n), hidden, agent_ids).to(device)
    else:
        shape = observation_space.shape
        q_net = Net(state_shape=shape, action_shape=int(action_space.n), hidden_sizes=hidden).to(device)
    policy = DiscreteQLearningPolicy(
        model=q_net,
        action_space=action_space,
        observation_space=observation_space,
        eps_training=float(agent_cfg.eps_train),
        eps_inference=float(agent_cfg.eps_test),
    )
    return DQN(
        policy=policy,
        optim=AdamOptimizerFactory(lr=float(agent_cfg.lr)),
        gamma=float(agent_cfg.gamma),
        n_step_return_horizon=int(agent_cfg.n_step),
        target_update_freq=int(agent_cfg.target_update_freq),
        is_double=True,
    ).to(device)


def epsilon(agent_cfg: Any, progress: float) -> float:
    """Training epsilon: linear from eps_train to eps_train_final over the first half, then constant."""
    frac = min(max(progress, 0.0) / EPS_DECAY_FRACTION, 1.0)
    start, end = float(agent_cfg.eps_train), float(agent_cfg.eps_train_final)
    return start + (end - start) * frac


def on_progress(algorithm: DQN, agent_cfg: Any, progress: float) -> None:
    algorithm.policy.set_eps_training(epsilon(agent_cfg, progress))
