"""MLP generative models for flat data (the toy 2-D Gaussian mixtures).

Every model exposes the same small interface, so the environment and the pretraining loop never
need to know which kind they hold:

- ``latent_dim`` and ``data_shape``;
- ``decode(z)``: latents to data, deterministic (the environment's agents pick the latents);
- ``sample_prior(n, generator)``: decode of latents from the model's own prior (the baseline the agents
  must beat): N(0, I), or the mixture of latent regions guided training set (``latent_prior``);
- ``make_optimizers(lr)`` and ``training_step(real, optimizers, generator)``: one gradient step.

GANs may keep an exponential moving average of their generator's weights (``model.ema``,
:func:`generator_average`): it trains nothing, and decodes in eval mode, i.e. for every use but training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from marlgen.models.latent_prior import LatentPrior


def mlp(
    in_dim: int, out_dim: int, hidden: int, depth: int, act: Callable[[], nn.Module] = nn.ReLU
) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden``, then a linear output layer."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class LatentModel(nn.Module):
    """Shared part of the interface; subclasses (MLP here, conv models later) add the networks."""

    latent_dim: int
    data_shape: tuple[int, ...]

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...]):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.data_shape = tuple(int(d) for d in data_shape)
        # The networks see standardised data, so one lr and kl_weight suit the ring (radius 1) and the
        # grid (means at +-4). Buffers: saved in checkpoints, identity until fit_normalizer is called.
        self.register_buffer("data_mean", torch.zeros(self.data_shape))  # (*data_shape)
        self.register_buffer("data_scale", torch.ones(()))  # scalar: keeps distances isotropic
        self.latent_prior = LatentPrior(self.latent_dim)  # N(0, I) unless guided training sets regions

    @torch.no_grad()
    def fit_normalizer(self, data: Tensor) -> None:  # data: (n, *data_shape)
        """Set the per-feature mean and one overall scale (RMS deviation per feature) from data."""
        mean = data.mean(0)
        self.data_mean.copy_(mean)
        self.data_scale.fill_((data - mean).pow(2).mean().sqrt().clamp_min(1e-8).item())

    def normalize(self, x: Tensor) -> Tensor:  # (B, *data_shape) -> (B, *data_shape)
        return (x - self.data_mean) / self.data_scale

    def denormalize(self, x: Tensor) -> Tensor:  # (B, *data_shape) -> (B, *data_shape)
        return x * self.data_scale + self.data_mean

    def decode(self, z: Tensor) -> Tensor:  # (B, latent_dim) -> (B, *data_shape)
        raise NotImplementedError

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The plain model's samples: decode of latents from its prior (N(0, I) unless set otherwise)."""
        z = self.latent_prior.sample(n, generator)  # (n, latent_dim)
        return self.decode(z)  # (n, *data_shape)

    def make_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def training_step(
        self,
        real: Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """One gradient step on a batch ``real`` (B, *data_shape); returns the losses as floats."""
        raise NotImplementedError


def generator_average(generator: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``generator``'s weights (and buffers), or None for ``decay`` 0.

    A GAN's generator oscillates around the game's equilibrium: the quality of its samples swings by
    tens of points between neighbouring checkpoints. The average of its recent weights sits nearer the
    equilibrium and is a standard way to evaluate a GAN (Yazici et al. 2019, "The unusual effectiveness
    of averaging in GAN training"). ``decay`` 0.999 averages over about the last 1,000 updates.
    """
    if decay <= 0:
        return None
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class AveragedGAN(LatentModel):
    """A GAN whose ``generator`` trains and whose decodes outside training come from its average."""

    generator: nn.Module
    generator_ema: AveragedModel | None

    def generator_in_use(self) -> nn.Module:
        """The trained weights while training (``train()``), their average otherwise (when kept)."""
        if self.generator_ema is None or self.training:
            return self.generator
        return self.generator_ema.module

    @torch.no_grad()
    def update_average(self) -> None:
        """Fold the generator's current weights into the average; call after every generator step."""
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)


class VariationalModel(LatentModel):
    """A VAE, MLP or conv: ``loss`` gives (reconstruction, KL); training steps on their weighted sum."""

    kl_weight: float

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def training_step(
        self,
        real: Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        recon, kl = self.loss(real, generator)
        loss = recon + self.kl_weight * kl
        optimizers["vae"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["vae"].step()
        return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}


def _adam(params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    # fused: one kernel per step instead of several per tensor; small MLPs are op-overhead bound.
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


def _flat_dim(data_shape: tuple[int, ...]) -> int:
    return math.prod(data_shape)


class MLPGAN(AveragedGAN):
    """Generator + discriminator trained with the non-saturating loss (Goodfellow et al. 2014).

    Its decodes are sharper than the VAE's (more samples near a mode), but GAN training is prone to
    dropping modes, which is the gap the agents can close by choosing latents.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int = 2,
        hidden: int = 128,
        depth: int = 3,
        ema: float = 0.0,
    ):
        super().__init__(latent_dim, data_shape)
        d = _flat_dim(self.data_shape)
        self.hidden, self.depth = int(hidden), int(depth)
        self.generator = mlp(latent_dim, d, hidden, depth)
        self.generator_ema = generator_average(self.generator, ema)
        # LeakyReLU keeps gradients flowing to the generator where the discriminator saturates.
        self.discriminator = mlp(d, 1, hidden, depth, act=lambda: nn.LeakyReLU(0.2))

    @classmethod
    def from_config(cls, cfg: Any, data_shape: tuple[int, ...]) -> MLPGAN:
        return cls(data_shape, latent_dim=cfg.latent_dim, hidden=cfg.hidden, depth=cfg.depth, ema=cfg.ema)

    def decode(self, z: Tensor) -> Tensor:  # (B, latent_dim) -> (B, *data_shape)
        return self.denormalize(self.generator_in_use()(z).view(z.shape[0], *self.data_shape))

    def discriminate(self, x: Tensor) -> Tensor:  # (B, *data_shape) -> (B,) logits, > 0 means "real"
        return self.discriminator(self.normalize(x).reshape(x.shape[0], -1)).squeeze(-1)

    def make_head(self, n_out: int) -> nn.Module:
        """A fresh network shaped like the discriminator with ``n_out`` logits, on the same standardised
        input: MGAN's classifier for guided training (marlgen.guided)."""
        net = mlp(_flat_dim(self.data_shape), n_out, self.hidden, self.depth, act=lambda: nn.LeakyReLU(0.2))
        return _OnStandardised(net, self.data_mean, self.data_scale)

    def make_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        # beta1 = 0.5: the usual GAN choice (Radford et al. 2015); momentum 0.9 makes the game oscillate.
        return {
            "generator": _adam(self.generator.parameters(), lr, betas=(0.5, 0.999)),
            "discriminator": _adam(self.discriminator.parameters(), lr, betas=(0.5, 0.999)),
        }

    def training_step(
        self,
        real: Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        b = real.shape[0]
        z = torch.randn(b, self.latent_dim, generator=generator, device=real.device)  # (B, latent_dim)
        fake = self.decode(z)  # (B, *data_shape)

        # Discriminator: real -> 1, fake -> 0.
        logits_real = self.discriminate(real)  # (B,)
        logits_fake = self.discriminate(fake.detach())  # (B,)
        bce = F.binary_cross_entropy_with_logits
        loss_real = bce(logits_real, torch.ones_like(logits_real))
        loss_d = loss_real + bce(logits_fake, torch.zeros_like(logits_fake))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers["discriminator"].step()

        # Generator, non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))).
        logits_gen = self.discriminate(fake)  # (B,)
        loss_g = bce(logits_gen, torch.ones_like(logits_gen))
        optimizers["generator"].zero_grad(set_to_none=True)
        loss_g.backward()  # also fills the discriminator's grads; its zero_grad above clears them next step
        optimizers["generator"].step()
        self.update_average()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}


class _OnStandardised(nn.Module):
    """``net`` applied to flattened standardised data; keeps its own copy of the model's normaliser."""

    def __init__(self, net: nn.Module, mean: Tensor, scale: Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, x: Tensor) -> Tensor:  # (B, *data_shape) -> (B, n_out)
        return self.net(((x - self.mean) / self.scale).reshape(x.shape[0], -1))


class MLPVAE(VariationalModel):
    """Gaussian VAE (Kingma & Welling 2014) with a fixed-variance Gaussian decoder.

    Loss per sample, on standardised data: ``sum_i (x_i - mu_i)^2 + kl_weight * KL(q(z|x) || N(0, I))``,
    the negative ELBO times ``2 sigma^2`` for decoder variance ``sigma^2 = kl_weight / 2``. So
    ``kl_weight`` trades sharp decodes (small) against a latent space the prior fills (large): on
    ring-8 and grid-25 0.005-0.01 covers every mode with ~70% of prior samples within 3 std of a
    mode; 0.1 and up blurs modes together (configs/model/vae.yaml has the figures).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int = 2,
        hidden: int = 128,
        depth: int = 3,
        kl_weight: float = 0.01,
    ):
        super().__init__(latent_dim, data_shape)
        d = _flat_dim(self.data_shape)
        self.kl_weight = float(kl_weight)
        self.encoder = mlp(d, 2 * latent_dim, hidden, depth)  # -> (mu, log_var)
        self.decoder = mlp(latent_dim, d, hidden, depth)

    @classmethod
    def from_config(cls, cfg: Any, data_shape: tuple[int, ...]) -> MLPVAE:
        return cls(
            data_shape, latent_dim=cfg.latent_dim, hidden=cfg.hidden, depth=cfg.depth, kl_weight=cfg.kl_weight
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (B, *data_shape) -> 2 x (B, latent_dim)
        mu, log_var = self.encoder(self.normalize(x).reshape(x.shape[0], -1)).chunk(2, dim=-1)
        return mu, log_var.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    def decode(self, z: Tensor) -> Tensor:  # (B, latent_dim) -> (B, *data_shape), the decoder mean
        return self.denormalize(self.decoder(z).view(z.shape[0], *self.data_shape))

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Batch means of (squared error summed over features, KL), in standardised units.

        The training loss is ``recon + kl_weight * KL``.
        """
        mu, log_var = self.encode(x)  # (B, latent_dim) each
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)  # (B, latent_dim)
        z = mu + eps * torch.exp(0.5 * log_var)  # (B, latent_dim), reparameterisation trick
        err = self.decoder(z) - self.normalize(x).reshape(x.shape[0], -1)  # (B, prod(data_shape))
        recon = err.pow(2).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1).mean()
        return recon, kl

    def make_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"vae": _adam(self.parameters(), lr)}
