"""Stop training when numbers blow up, before a broken update reaches a checkpoint.

Checked before every collect (so after every update) and before every checkpoint: each role's
parameters (policy, value net, target net) must be finite. A learning judge checks its own loss
at every step (marlgen.critic). NaNs that reach the collected data (rewards, observations) are
caught by Tianshou's collector and reported here in the same words. The cost is one ``isfinite``
pass over a few small networks per collect.
"""

from __future__ import annotations

import re

import torch

from marlgen.errors import TrainingDiverged


def check_team(algorithm, roles: list[str], cfg, where: str) -> None:
    """Raise TrainingDiverged naming the first role and tensor that holds NaN or inf."""
    for role in roles:
        for name, param in algorithm.get_algorithm(role).named_parameters():
            if not bool(torch.isfinite(param).all()):
                section = "critic" if role == "critic" else "generator"
                raise TrainingDiverged(
                    f"training diverged {where}: the {role} network's weights ({name}) hold NaN or inf. "
                    f"Lower agents.{section}.lr (now {cfg.agents[section].lr}) and start a new run"
                )


def explain(err: Exception, algorithm, roles: list[str], cfg, where: str) -> None:
    """Re-raise a failure inside a Tianshou epoch as TrainingDiverged when numbers caused it."""
    if isinstance(err, TrainingDiverged):
        raise err
    check_team(algorithm, roles, cfg, where)  # NaN weights make torch's distributions raise first
    first_line = str(err).splitlines()[0] if str(err) else ""
    if type(err).__name__ == "MalformedBufferError":  # tianshou: NaN in the collected transitions
        raise TrainingDiverged(
            f"training diverged {where}: the environment returned NaN or inf rewards or observations "
            "(found by Tianshou's check of the collected data); check the reward weights (env.reward) "
            "and any custom judge, mode assigner or model"
        ) from err
    distribution = None
    found = re.search(r"of distribution (\w+)", first_line)
    if isinstance(err, ValueError) and found and "invalid values" in str(err):  # torch.distributions
        distribution = found[1]
    if isinstance(err, RuntimeError) and "probability tensor contains" in first_line:
        distribution = "Categorical"  # agents.ppo samples without torch's argument checks: multinomial
    if distribution:
        # Huge but finite weights overflow in the forward pass: the check above cannot see them.
        raise TrainingDiverged(
            f"training diverged {where}: a policy's outputs became NaN or inf (its {distribution} "
            f"distribution got NaN parameters). "
            f"Lower agents.generator.lr (now {cfg.agents.generator.lr}) or agents.critic.lr "
            f"(now {cfg.agents.critic.lr}) and start a new run"
        ) from err
