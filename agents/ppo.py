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
# Rows per forward in PPO's no-grad passes (values for GAE, old log-probabilities); Tianshou's default,
# 256, split a shared network's 2,048 rows per collect into 24 forwards. Memory, not learning: the
# same values in fewer calls.
NO_GRAD_CHUNK = 4096


class Categorical(torch.distributions.Categorical):
    """torch's Categorical over logits, as Tianshou's discrete policies use it, made cheaper where it is
    called on every collector step and every minibatch (docs/performance.md, 2.5):

    - no argument checks (a checked Categorical over 256 anchors cost about 0.8 ms): the actors'
      logits are finite by construction;
    - the logits normalised by one ``log_softmax`` (torch: ``logits - logits.logsumexp()``), the
      probabilities their ``exp``, the entropy ``-sum(p log p)``: the same values to float rounding,
      fewer and cheaper passes forward and backward;
    - ``sample()`` by inverse CDF: one uniform per row, placed among the cumulative probabilities.
      torch's ``multinomial`` draws an exponential per logit and takes an argmax (256 draws a row).
      Each row is an exact draw from its distribution (up to the float rounding of the cumulative
      sums), independent of the other rows (tests/test_agents.py).
    """

    def __init__(self, logits: torch.Tensor):
        normalised = torch.log_softmax(logits, dim=-1)
        self.logits = self._param = normalised
        self._num_events = normalised.size(-1)
        torch.distributions.Distribution.__init__(self, normalised.shape[:-1], validate_args=False)

    @functools.cached_property
    def probs(self) -> torch.Tensor:  # noqa: D102  (torch's is a lazy property too)
        return self.logits.exp()

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum(-1)

    def sample(self, sample_shape=()) -> torch.Tensor:
        if len(sample_shape):  # several draws per row: torch's
            return super().sample(sample_shape)
        with torch.no_grad():
            probs = self.probs.reshape(-1, self._num_events)
            cumulative = probs.cumsum(-1)
            # u uniform on [0, total): row i draws action k when cumulative[k-1] <= u < cumulative[k].
            u = torch.rand((len(probs), 1), dtype=probs.dtype, device=probs.device) * cumulative[:, -1:]
            # The last boundary is left out: a u rounded up to the total still lands on the last action.
            drawn = torch.searchsorted(cumulative[:, :-1].contiguous(), u, right=True)
        return drawn.reshape(self._batch_shape)


def categorical(logits: torch.Tensor) -> Categorical:
    return Categorical(logits)


def independent_gaussians(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
    """Tianshou's Gaussian dist_fn without torch's argument checks (stds are positive by construction)."""
    loc, scale = loc_scale
    normal = torch.distributions.Normal(loc, scale, validate_args=False)
    return torch.distributions.Independent(normal, 1, validate_args=False)


class DiscretePPOPolicy(DiscreteActorPolicy):
    """Tianshou's discrete actor policy, without drawing actions that PPO's update throws away.

    An update pass (``in_update``, set by :class:`UpdatePassPPO` and nothing else) reads only the
    distribution (log-probabilities of the stored actions, entropy), yet the parent draws an action
    for every row of every minibatch. There this policy returns the distribution and no action.
    Everywhere else (collection, evaluation, a researcher's own loop in either mode) it is the parent.
    """

    in_update = False

    def forward(self, batch, state=None):
        if not self.in_update:
            return super().forward(batch, state)
        logits, hidden = self.actor(batch.obs, state=state, info=batch.info)
        return Batch(logits=logits, state=hidden, dist=self.dist_fn(logits))


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


class FusedAdamFactory(AdamOptimizerFactory):
    """Tianshou's Adam factory with torch's fused step (``fused=True``): one kernel over all parameters
    instead of about ten small tensor operations per parameter tensor, which cost 0.9-1 ms of every
    PPO minibatch step here (docs/performance.md, 2.5). The same Adam, to float rounding."""

    def _create_optimizer_for_params(self, params) -> torch.optim.Optimizer:
        params = list(params)
        fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                weight_decay=self.weight_decay, fused=fused)  # fmt: skip


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
        optim=FusedAdamFactory(lr=float(agent_cfg.lr)),
        eps_clip=float(agent_cfg.eps_clip),
        vf_coef=float(agent_cfg.vf_coef),
        ent_coef=float(agent_cfg.ent_coef),
        gae_lambda=float(agent_cfg.gae_lambda),
        gamma=float(agent_cfg.gamma),
        max_grad_norm=MAX_GRAD_NORM,
        max_batchsize=NO_GRAD_CHUNK,
    ).to(device)


def on_progress(algorithm: PPO, agent_cfg: Any, progress: float) -> None:
    """PPO explores through its sampling distribution: nothing to schedule."""
