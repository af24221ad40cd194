"""PPO (Tianshou 2.0) for Discrete and Box action spaces.

Discrete: an MLP outputs logits, actions are drawn from a categorical distribution.
Box: an MLP outputs the mean of a diagonal Gaussian with a learnable, state-independent log-std
(Tianshou's ``ContinuousActorProbabilistic(unbounded=True)``); the policy clips the raw sample to
[-1, 1] and scales it linearly to ``[low, high]`` of the Box (``action_scaling=True``,
``action_bound_method="clip"``), the setup of Tianshou's MuJoCo PPO examples. The buffer keeps the
raw sample, so the log-probabilities stay exact; only the action sent to the env is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import PPO
from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy, ProbabilisticActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch
from tianshou.highlevel.module.core import init_linear_orthogonal
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic
from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic

from agents.gains import GainedDiscreteActor

ON_POLICY = True
MAX_GRAD_NORM = 0.5
INITIAL_LOG_STD = -0.5  # Tianshou's Gaussian actor factory default: std ~0.6 in [-1, 1] units


# Tianshou's distribution functions, without torch's argument checks: building a checked Categorical
# over 256 anchors cost about 0.8 ms on this CPU, on every collector step and every minibatch. The
# actor's outputs are finite logits, means and positive stds by construction.
def categorical(logits: torch.Tensor) -> torch.distributions.Categorical:
    return torch.distributions.Categorical(logits=logits, validate_args=False)


def independent_gaussians(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
    loc, scale = loc_scale
    normal = torch.distributions.Normal(loc, scale, validate_args=False)
    return torch.distributions.Independent(normal, 1, validate_args=False)


@functools.cache
def draws_as_categorical_sample() -> bool:
    """Whether filling a float64 tensor of the probabilities' shape with uniforms leaves torch's CPU
    generator where drawing one action per row of a Categorical does (checked once, on a private
    generator: it holds for torch 2.14, where one sample per row is an exponential variate per logit,
    one double each)."""
    probs = torch.rand(5, 7, generator=torch.Generator().manual_seed(0))
    drawn, advanced = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.multinomial(probs, 1, True, generator=drawn)
    torch.empty(probs.shape, dtype=torch.float64).uniform_(generator=advanced)
    return torch.equal(drawn.get_state(), advanced.get_state())


class DiscretePPOPolicy(DiscreteActorPolicy):
    """Tianshou's discrete actor policy, without drawing actions that PPO's update throws away.

    An update pass (``in_update``, set by :class:`UpdatePassPPO` and nothing else) reads only the
    distribution (log-probabilities of the stored actions, entropy), yet the parent draws an action
    for every row: a sixth of a shared PPO run (docs/performance.md, 2.3). There, on the CPU, this
    policy moves the global generator on by the same draws, at a fifth of the cost, so every run
    stays the same to the bit, and returns the most likely action, which PPO never reads. Everywhere
    else (collection, evaluation, a researcher's own loop in either mode) it is the parent.
    """

    in_update = False

    def forward(self, batch, state=None):
        # Collection and evaluation go straight to the parent; the rest only inside an update pass.
        if not (
            self.in_update
            and (self.is_within_training_step or not self.deterministic_eval)  # the parent draws
            and next(self.actor.parameters()).device.type == "cpu"
            and draws_as_categorical_sample()
        ):
            return super().forward(batch, state)
        logits, hidden = self.actor(batch.obs, state=state, info=batch.info)
        dist = self.dist_fn(logits)
        dist.probs  # noqa: B018  made where sample() makes it: the gradients then add up in the same order
        torch.empty(logits.shape, dtype=torch.float64).uniform_()  # the draws of dist.sample()
        return Batch(logits=logits, act=logits.argmax(-1), state=hidden, dist=dist)


@contextlib.contextmanager
def update_pass(policy):
    """Marks a PPO update pass for a :class:`DiscretePPOPolicy` (other policies: nothing to mark)."""
    if not isinstance(policy, DiscretePPOPolicy):
        yield
        return
    policy.in_update = True
    try:
        yield
    finally:
        policy.in_update = False


class UpdatePassPPO(PPO):
    """Tianshou's PPO, telling its policy when a pass is one of the update's (the old log-probabilities,
    the minibatch losses), where a sampled action is never read."""

    def _preprocess_batch(self, batch, buffer, indices):
        with update_pass(self.policy):
            return super()._preprocess_batch(batch, buffer, indices)

    def _update_with_batch(self, batch, batch_size, repeat):
        with update_pass(self.policy):
            return super()._update_with_batch(batch, batch_size, repeat)


def build(
    agent_cfg: Any,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Discrete | gym.spaces.Box,
    total_env_steps: int,
    device: str = "cpu",
    agent_ids: tuple[int, int] | None = None,
) -> PPO:
    """A PPO algorithm (policy + critic + optimizer) for these spaces, read from an ``AgentConfig``.

    ``total_env_steps`` is part of the builder interface (for schedules); PPO does not need it.
    ``agent_ids``: the obs columns of a one-hot agent id, given for a network shared by several
    agents; with ``agent_cfg.agent_gains`` the actor gets per-agent gains (agents.gains).
    """
    del total_env_steps
    hidden = [int(h) for h in agent_cfg.hidden]
    obs_shape = observation_space.shape

    def body() -> Net:
        return Net(state_shape=obs_shape, hidden_sizes=hidden)

    policy: ProbabilisticActorPolicy
    if isinstance(action_space, gym.spaces.Discrete):
        head = dict(preprocess_net=body(), action_shape=int(action_space.n), softmax_output=False)
        gained = agent_ids is not None and agent_cfg.agent_gains
        actor = (GainedDiscreteActor(id_columns=agent_ids, **head) if gained else DiscreteActor(**head)).to(
            device
        )
        critic = DiscreteCritic(preprocess_net=body()).to(device)
        policy = DiscretePPOPolicy(
            actor=actor,
            dist_fn=categorical,
            deterministic_eval=True,
            action_space=action_space,
            observation_space=observation_space,
        )
    elif isinstance(action_space, gym.spaces.Box):
        if agent_ids is not None and agent_cfg.agent_gains:
            raise ValueError("agents.generator.agent_gains works with discrete anchors (env.action=discrete)")
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise ValueError(
                f"PPO needs a bounded Box action space to scale actions into, got {action_space}"
            )
        actor = ContinuousActorProbabilistic(
            preprocess_net=body(), action_shape=action_space.shape, unbounded=True
        ).to(device)
        torch.nn.init.constant_(actor.sigma_param, INITIAL_LOG_STD)
        critic = ContinuousCritic(preprocess_net=body()).to(device)
        with warnings.catch_warnings():
            # Tianshou 2.0.1 warns whenever actor.max_action == 1, which unbounded actors always have.
            warnings.filterwarnings("ignore", message="action_scaling and action_bound_method")
            policy = ProbabilisticActorPolicy(
                actor=actor,
                dist_fn=independent_gaussians,
                deterministic_eval=True,
                action_space=action_space,
                observation_space=observation_space,
                action_scaling=True,
                action_bound_method="clip",
            )
    else:
        raise ValueError(f"PPO supports Discrete and Box action spaces, got {action_space}")

    # Orthogonal init, and a near-zero last policy layer so initial actions are centred (Tianshou's
    # actor factories; arXiv:2006.05990 Fig. 24).
    init_linear_orthogonal(actor)
    init_linear_orthogonal(critic)
    last = actor.mu if isinstance(actor, ContinuousActorProbabilistic) else actor.last
    for module in last.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data.mul_(0.01)

    return UpdatePassPPO(
        policy=policy,
        critic=critic,
        optim=AdamOptimizerFactory(lr=float(agent_cfg.lr)),
        eps_clip=float(agent_cfg.eps_clip),
        vf_coef=float(agent_cfg.vf_coef),
        ent_coef=float(agent_cfg.ent_coef),
        gae_lambda=float(agent_cfg.gae_lambda),
        gamma=float(agent_cfg.gamma),
        max_grad_norm=MAX_GRAD_NORM,
    ).to(device)


def on_progress(algorithm: PPO, agent_cfg: Any, progress: float) -> None:
    """PPO explores through its sampling distribution: nothing to schedule."""
