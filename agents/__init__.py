"""Agent builders: an ``AgentConfig`` plus spaces -> a Tianshou 2.0 ``Algorithm``.

``agent_cfg.algorithm`` is a key of ``BUILDERS`` or a dotted path ``package.module:function``
(``package.module`` alone means ``package.module:build``). A builder module defines

* ``ON_POLICY: bool``: which Tianshou trainer it needs (on-policy or off-policy);
* ``build(agent_cfg, observation_space, action_space, total_env_steps, device) -> Algorithm``, and
  optionally a keyword ``agent_ids``: the observation columns ``(start, stop)`` of a one-hot agent id,
  passed when one network serves several agents and ``agent_gains`` is set (agents.gains);
* optionally ``on_progress(algorithm, agent_cfg, progress)``: exploration schedule, called by
  ``exploration_schedule`` before each collect with the fraction of training done.
"""

from __future__ import annotations

# First, before tianshou pulls in numba: marlgen keeps numba's JIT off (marlgen/__init__.py), and a
# process that imported agents first would JIT Tianshou's helpers and train to other figures.
import marlgen  # noqa: F401, I001  # isort: skip
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import gymnasium as gym
import torch
from tianshou.algorithm import Algorithm

from agents import dqn, ppo

BUILDERS: dict[str, Callable[..., Algorithm]] = {
    "ppo": ppo.build,
    "dqn": dqn.build,
}


def build(
    agent_cfg: Any,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Discrete | gym.spaces.Box,
    total_env_steps: int,
    device: str = "cpu",
    agent_ids: tuple[int, int] | None = None,
) -> Algorithm:
    """Build the algorithm named by ``agent_cfg.algorithm`` for these spaces on ``device``.

    ``agent_ids`` reaches the builder only when per-agent gains are asked for, so builders written
    for the five-argument interface keep working without them."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    builder = resolve(agent_cfg.algorithm)
    if agent_ids is None or not getattr(agent_cfg, "agent_gains", False):
        return builder(agent_cfg, observation_space, action_space, total_env_steps, device)
    return builder(agent_cfg, observation_space, action_space, total_env_steps, device, agent_ids=agent_ids)


def resolve(name: str) -> Callable[..., Algorithm]:
    """The builder function for a registry name or a dotted path (a clear ValueError otherwise)."""
    return _resolve(name)[1]


def is_on_policy(name: str) -> bool:
    """Whether the algorithm trains on-policy (read from its module's ``ON_POLICY``)."""
    module = _module_of(name)
    flag = getattr(module, "ON_POLICY", None)
    if not isinstance(flag, bool):
        raise ValueError(
            f"agent algorithm {name!r}: module {module.__name__!r} must define ON_POLICY = True or False"
        )
    return flag


def exploration_schedule(algorithm: Algorithm, agent_cfg: Any, progress: float) -> None:
    """Update exploration for ``progress`` in [0, 1] (call before each collect).

    Dispatches to the builder module's ``on_progress``; modules without one have no schedule.
    """
    hook = getattr(_module_of(agent_cfg.algorithm), "on_progress", None)
    if hook is not None:
        hook(algorithm, agent_cfg, min(max(float(progress), 0.0), 1.0))


def _module_of(name: str) -> ModuleType:
    return _resolve(name)[0]


def _resolve(name: str) -> tuple[ModuleType, Callable[..., Algorithm]]:
    """(module holding ON_POLICY / on_progress, builder). A dotted path names the module itself."""
    if name in BUILDERS:
        builder = BUILDERS[name]
        return importlib.import_module(builder.__module__), builder
    if ":" not in name and "." not in name:
        raise ValueError(
            f"unknown agent algorithm {name!r}; known: {', '.join(sorted(BUILDERS))} "
            "(or give a dotted path 'package.module:build')"
        )
    module_path, _, attr = name.partition(":")
    attr = attr or "build"
    module = _import(module_path, name)
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ValueError(f"agent algorithm {name!r}: module {module_path!r} has no callable {attr!r}")
    return module, builder


def _import(module_path: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(module_path)
    except ImportError as err:
        raise ValueError(f"agent algorithm {name!r}: cannot import module {module_path!r} ({err})") from err
