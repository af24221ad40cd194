"""The latent distribution a model samples from: N(0, I), or a mixture of latent regions.

A GAN whose prior is connected (one Gaussian) must decode some of it between the data's separate
modes: a continuous generator cannot jump (Khayatkhoei et al. 2018, "Disconnected manifold learning for
generative adversarial networks"). A mixture prior of separated regions, as in DeLiGAN (Gurumurthy et
al. 2017) or a multi-generator GAN such as MGAN, lets the generator spend no latent mass on the gaps.
Guided training with ``model.guided.sampler=regions`` trains the generator on such a mixture, made of
the team's latent regions, and sets it here (marlgen.guided); every use of ``sample_prior`` (the
evaluation's "prior", DRS, the pictures) then samples the model as it was trained. Empty buffers mean
N(0, I), so models saved before this existed load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NAMES = ("means", "weights", "spread")


class LatentPrior(nn.Module):
    """N(0, I) while ``weights`` is empty; else sum_r weights[r] N(means[r], spread^2 I)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.register_buffer("means", torch.zeros(0, self.latent_dim))  # (R, latent_dim)
        self.register_buffer("weights", torch.zeros(0))  # (R,), sums to 1 when set
        self.register_buffer("spread", torch.zeros(()))  # std of each region around its mean

    @property
    def is_normal(self) -> bool:
        return len(self.weights) == 0

    def set_mixture(self, means: Tensor, weights: Tensor, spread: float) -> None:
        means = torch.as_tensor(means, dtype=torch.float32)
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if means.ndim != 2 or means.shape[1] != self.latent_dim or weights.shape != (len(means),):
            raise ValueError(f"a mixture needs means (R, {self.latent_dim}) and weights (R,); got "
                             f"{tuple(means.shape)} and {tuple(weights.shape)}")  # fmt: skip
        if len(means) == 0 or not bool((weights >= 0).all()) or float(weights.sum()) <= 0:
            raise ValueError("a mixture needs at least one region, and weights >= 0 with a positive sum")
        device = self.spread.device
        self.means = means.to(device)
        self.weights = (weights / weights.sum()).to(device)
        self.spread = torch.tensor(float(spread), device=device)

    def clear(self) -> None:
        """Back to N(0, I)."""
        device = self.spread.device
        self.means = torch.zeros(0, self.latent_dim, device=device)
        self.weights = torch.zeros(0, device=device)
        self.spread = torch.zeros((), device=device)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, latent_dim) latents. N(0, I) draws exactly what ``torch.randn`` alone would."""
        device = self.spread.device
        if self.is_normal:
            return torch.randn(n, self.latent_dim, generator=generator, device=device)
        pick = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        noise = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.means[pick] + self.spread * noise

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A saved mixture has its own number of regions: take its shapes. A state saved before
        # learned priors existed has none of these keys: it was N(0, I), which the empty buffers are.
        if not any(prefix + name in state_dict for name in NAMES):
            self.clear()
            state_dict.update({prefix + name: getattr(self, name) for name in NAMES})
        for name in NAMES:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.spread.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
