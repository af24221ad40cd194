"""Discriminator rejection sampling (Azadi et al., 2019): the strong non-RL baseline for quality.

A discriminator D trained to tell real data from the plain model's samples estimates the density
ratio p_data/p_model = exp(logit D). Rejection sampling with that ratio turns model samples into
data samples, if D were exact. Following the paper, a sample x is accepted with probability
sigmoid(F(x)), where

    F(x) = d(x) - d_max - log(1 - exp(d(x) - d_max - eps)) - gamma,    d = logit D,

``d_max`` is the largest logit over a burn-in set of model samples, and ``gamma`` shifts the
acceptance rate: we set it to a quantile of F over the burn-in set (``eval.drs_gamma_quantile``),
so samples at that quantile are accepted half the time. Every decoded sample counts against the
budget, accepted or not, exactly as for the team's critic.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf

from marlgen.critic import make_judge
from marlgen.evaluate import Rollout

BURN_IN = 10_000
EPS = 1e-6


class RejectionSampler:
    """``sample(budget, seed) -> Rollout`` over the plain model, filtered by a trained discriminator."""

    def __init__(self, cfg, parts):
        self.model, self.assigner = parts.model, parts.assigner
        critic = OmegaConf.merge(
            cfg.env.critic, {"judge": "discriminator", "disc_warmup_steps": cfg.eval.drs_steps}
        )
        self.judge = make_judge(
            critic,
            parts.dataset,
            self._decode_prior_fn(cfg.seed + 7),
            cfg.seed + 7,
            features=getattr(parts.assigner, "features", None),
        )
        burn_in = self.judge.logit(self._prior(BURN_IN, cfg.seed + 8))
        self.d_max = float(burn_in.max())
        self.gamma = float(np.quantile(self._f(burn_in, 0.0), cfg.eval.drs_gamma_quantile))

    def __call__(self, budget: int, seed: int) -> Rollout:
        x = self._prior(budget, seed)
        p_accept = 1.0 / (1.0 + np.exp(-self._f(self.judge.logit(x), self.gamma)))
        accepted = np.random.default_rng(seed).random(budget) < p_accept
        return Rollout(x, self.assigner(x), accepted, np.full(budget, -1))

    def _f(self, d: np.ndarray, gamma: float) -> np.ndarray:
        shifted = np.minimum(d - self.d_max, 0.0)  # a test sample may beat the burn-in maximum
        return shifted - np.log1p(-np.exp(shifted - EPS)) - gamma

    def _prior(self, n: int, seed: int) -> np.ndarray:
        with torch.inference_mode():
            return self.model.sample_prior(n, generator=torch.Generator().manual_seed(seed)).numpy()

    def _decode_prior_fn(self, seed: int):
        generator = torch.Generator().manual_seed(seed)

        def sample(n: int) -> np.ndarray:
            with torch.inference_mode():
                return self.model.sample_prior(n, generator=generator).numpy()

        return sample
