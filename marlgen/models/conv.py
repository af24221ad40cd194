"""Convolutional generative models for images (n, C, H, W) in [-1, 1]: a DCGAN and a conv VAE.

Same interface as the MLP models (marlgen.models.mlp.LatentModel), so pretraining, the cache and the
env do not change. Sizes: the resolution is halved while both sides stay even and at least 8, so
8x8 digits run at 8 -> 4, CIFAR's 32x32 at 32 -> 16 -> 8 -> 4, MNIST's 28x28 at 28 -> 14 -> 7.
``hidden`` is the channel count at half resolution, doubled at each further halving (DCGAN's pyramid);
``depth`` is unused. Images are already in [-1, 1] and the generators end in tanh, so the data
normaliser stays the identity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marlgen.config import ConfigError
from marlgen.models.mlp import AveragedGAN, LatentModel, VariationalModel, generator_average


def pyramid(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(halvings, base height, base width) for an image shape (C, H, W)."""
    if len(data_shape) != 3:
        raise ConfigError(
            f"model.kind: conv models need images (C, H, W), the data has shape {data_shape}; "
            "use model.kind=vae or gan (MLPs) for flat data"
        )
    _, h, w = data_shape
    n = 0
    while h % 2 == 0 and w % 2 == 0 and h >= 8 and w >= 8:
        h, w, n = h // 2, w // 2, n + 1
    if n == 0:
        raise ConfigError(
            f"model.kind: conv models need images of at least 8x8 with even sides, the data's are "
            f"{data_shape[1:]}; resize the images (data.path) or use model.kind=vae or gan (MLPs)"
        )
    return n, h, w


# Inference runs conv nets in chunks of images whose largest activation map holds about this many floats
# (2 MB, within a core's cache). One pass over 256 CIFAR images, with 8-16 MB maps, was memory-bound:
# the DCGAN decoder took 57 ms against 39 ms in chunks, the mode classifier 42 ms against 18 ms.
CHUNK_FLOATS = 2**19


def in_chunks(x, floats_per_image: int) -> list:
    """``x`` split along its first axis into near-equal inference chunks (tensor or array).

    Near-equal, not ``rows, rows, ..., remainder``: torch's CPU convolutions pick another algorithm
    for a batch of 1 or 2 images (last-bit differences, measured), while every chunk of 5 or more gave
    the same bits as one pass over the whole batch (eval mode: no batch statistics).
    """
    if len(x) == 0:
        return []
    rows = max(1, CHUNK_FLOATS // max(1, int(floats_per_image)))
    n_chunks = -(-len(x) // rows)
    if n_chunks == 1:  # as tensor_split and array_split give it, without their cost (10 us a call)
        return [x]
    return list(x.tensor_split(n_chunks)) if isinstance(x, torch.Tensor) else np.array_split(x, n_chunks)


def widths(hidden: int, halvings: int) -> list[int]:
    """Channels after each halving, finest first: hidden, 2 hidden, ..., hidden 2^(halvings-1)."""
    return [hidden * 2**i for i in range(halvings)]


class ConvDecoder(nn.Module):
    """z (B, d) -> base grid -> 3x3 conv -> transposed-conv doublings -> tanh image (B, C, H, W).

    DCGAN layout: batch norm and ReLU inside, the last doubling goes straight to the image channels,
    so no layer runs at full resolution with many channels (that is what keeps CIFAR cheap on a CPU).
    """

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], hidden: int):
        super().__init__()
        n, self.bh, self.bw = pyramid(data_shape)
        chans = widths(hidden, n)[::-1]  # coarse to fine: [hidden 2^(n-1), ..., hidden]
        self.base = chans[0]
        cells = chans[0] * self.bh * self.bw
        self.project = nn.Sequential(nn.Linear(latent_dim, cells), nn.BatchNorm1d(cells), nn.ReLU())
        layers: list[nn.Module] = [
            nn.Conv2d(chans[0], chans[0], 3, padding=1, bias=False), nn.BatchNorm2d(chans[0]), nn.ReLU()
        ]  # fmt: skip
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):  # each doubles H and W
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(chans[-1], data_shape[0], 4, 2, 1))  # last doubling -> pixels
        self.up = nn.Sequential(*layers)
        # the finest hidden map (hidden channels at half resolution) or the image, whichever is larger
        _, h, w = data_shape
        self.peak_floats = max(chans[-1] * (h // 2) * (w // 2), int(data_shape[0]) * h * w)

    def forward(self, z: Tensor) -> Tensor:  # (B, d) -> (B, C, H, W)
        h = self.project(z).view(len(z), self.base, self.bh, self.bw)  # (B, c0, H/2^n, W/2^n)
        return torch.tanh(self.up(h))


class ConvEncoder(nn.Module):
    """Image (B, C, H, W) -> strided convs -> 3x3 conv at the base grid -> linear (B, out_dim).

    LeakyReLU and no batch norm (a GAN discriminator sees real and fake batches apart).
    """

    def __init__(self, data_shape: tuple[int, ...], hidden: int, out_dim: int):
        super().__init__()
        n, bh, bw = pyramid(data_shape)
        chans = [data_shape[0], *widths(hidden, n)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):  # each halves H and W
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(chans[-1], chans[-1], 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1] * bh * bw, out_dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_dim)
        return self.head(self.trunk(x))


class ImageModel(LatentModel):
    """Images need no normaliser: they arrive in [-1, 1], the decoders' tanh range."""

    @torch.no_grad()
    def fit_normalizer(self, data: Tensor) -> None:
        """Identity on purpose (see the module docstring); the buffers stay 0 and 1."""

    def decode(self, z: Tensor) -> Tensor:  # (B, latent_dim) -> (B, C, H, W)
        """The decoder; at inference (eval mode, no gradients) in cache-sized chunks (CHUNK_FLOATS)."""
        if self.training or torch.is_grad_enabled():  # training: batch norm needs the whole batch
            return self.decode_batch(z)
        chunks = in_chunks(z, self.decoder_net().peak_floats)
        return self.decode_batch(z) if len(chunks) <= 1 else torch.cat([self.decode_batch(c) for c in chunks])

    def decode_batch(self, z: Tensor) -> Tensor:  # (B, latent_dim) -> (B, C, H, W), one pass
        return self.decoder_net()(z)

    def decoder_net(self) -> ConvDecoder:
        raise NotImplementedError


class ConvGAN(ImageModel, AveragedGAN):
    """DCGAN (Radford et al. 2015) with the non-saturating loss; the mode-dropping image baseline."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int = 16, hidden: int = 32, ema: float = 0.0):
        super().__init__(latent_dim, data_shape)
        self.hidden = int(hidden)
        self.generator = ConvDecoder(latent_dim, self.data_shape, hidden)
        self.generator_ema = generator_average(self.generator, ema)  # batch-norm statistics averaged too
        self.discriminator = ConvEncoder(self.data_shape, hidden, 1)

    @classmethod
    def from_config(cls, cfg: Any, data_shape: tuple[int, ...]) -> ConvGAN:
        return cls(data_shape, latent_dim=cfg.latent_dim, hidden=cfg.hidden, ema=cfg.ema)

    def decoder_net(self) -> ConvDecoder:
        return self.generator_in_use()

    def discriminate(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B,) logits, > 0 means "real"
        return self.discriminator(x).squeeze(-1)

    def make_head(self, n_out: int) -> nn.Module:
        """A fresh network shaped like the discriminator with ``n_out`` logits: MGAN's classifier for
        guided training (marlgen.guided)."""
        return ConvEncoder(self.data_shape, self.hidden, n_out)

    def make_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999)),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999)),
        }

    def training_step(
        self,
        real: Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        z = torch.randn(real.shape[0], self.latent_dim, generator=generator, device=real.device)
        fake = self.decode(z)  # (B, C, H, W)
        logits_real, logits_fake = self.discriminate(real), self.discriminate(fake.detach())  # (B,) each
        loss_d = F.binary_cross_entropy_with_logits(
            logits_real, torch.ones_like(logits_real)
        ) + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
        optimizers["discriminator"].zero_grad(set_to_none=True)
        loss_d.backward()
        optimizers["discriminator"].step()

        logits_gen = self.discriminate(fake)  # (B,) non-saturating generator loss
        loss_g = F.binary_cross_entropy_with_logits(logits_gen, torch.ones_like(logits_gen))
        optimizers["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        optimizers["generator"].step()
        self.update_average()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}


class ConvVAE(ImageModel, VariationalModel):
    """Gaussian conv VAE; loss ``sum (x - mu)^2 + kl_weight * KL`` per image, as the MLP VAE.

    Pixels are in [-1, 1], so the decoder variance ``kl_weight / 2`` is in those units: small
    weights (about 0.01-0.1) keep digits legible, 1.0 gives a blurry mean image.
    """

    def __init__(
        self, data_shape: tuple[int, ...], latent_dim: int = 16, hidden: int = 32, kl_weight: float = 0.05
    ):
        super().__init__(latent_dim, data_shape)
        self.kl_weight = float(kl_weight)
        self.encoder = ConvEncoder(self.data_shape, hidden, 2 * latent_dim)  # -> (mu, log_var)
        self.decoder = ConvDecoder(latent_dim, self.data_shape, hidden)

    @classmethod
    def from_config(cls, cfg: Any, data_shape: tuple[int, ...]) -> ConvVAE:
        return cls(data_shape, latent_dim=cfg.latent_dim, hidden=cfg.hidden, kl_weight=cfg.kl_weight)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (B, C, H, W) -> 2 x (B, latent_dim)
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return mu, log_var.clamp(-30.0, 20.0)

    def decoder_net(self) -> ConvDecoder:  # its output is the decoder mean
        return self.decoder

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Batch means of (reconstruction error summed over pixels, KL)."""
        mu, log_var = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
        z = mu + eps * torch.exp(0.5 * log_var)  # (B, latent_dim)
        recon = (self.decoder(z) - x).pow(2).flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(1).mean()
        return recon, kl

    def make_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"vae": torch.optim.Adam(self.parameters(), lr=lr)}
