"""Generative models the agents steer, by ``model.kind``.

``MODELS`` maps a kind to a builder ``(ModelConfig, data_shape) -> model``; every model follows the
interface of :class:`marlgen.models.mlp.LatentModel` (``latent_dim``, ``data_shape``, ``decode``,
``sample_prior``, ``make_optimizers``, ``training_step``). Image models register their kinds
(``conv_gan``, ``conv_vae``) in this same dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from marlgen.models.conv import ConvGAN, ConvVAE
from marlgen.models.mlp import MLPGAN, MLPVAE, LatentModel

ModelBuilder = Callable[[Any, tuple[int, ...]], nn.Module]  # (ModelConfig, data_shape) -> model

MODELS: dict[str, ModelBuilder] = {
    "gan": MLPGAN.from_config,
    "vae": MLPVAE.from_config,
    "conv_gan": ConvGAN.from_config,  # images (C, H, W); see marlgen.models.conv
    "conv_vae": ConvVAE.from_config,
}

__all__ = ["MODELS", "ConvGAN", "ConvVAE", "LatentModel", "MLPGAN", "MLPVAE", "ModelBuilder"]
