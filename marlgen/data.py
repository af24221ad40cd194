"""Data sources: real samples plus what "a mode" means for them.

Each source is a function ``(DataConfig, np.random.Generator) -> Dataset`` in ``SOURCES``; a new
source is one function and one registry line (see docs/scenarios.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    name: str
    samples: np.ndarray  # (n, *data_shape) float32 real samples
    labels: np.ndarray  # (n,) int64 mode of each real sample
    n_modes: int
    means: np.ndarray | None = None  # (n_modes, d) mixture means; None where no density is known
    std: float | None = None  # mixture component std

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    @property
    def has_density(self) -> bool:
        """Toy mixtures know their true density, so an oracle can judge quality."""
        return self.means is not None

    def fingerprint(self) -> str:
        """Hash of the real samples: cached models are keyed by it, not by a file name."""
        digest = hashlib.sha256(np.ascontiguousarray(self.samples).tobytes())
        digest.update(str(self.samples.shape).encode())
        return digest.hexdigest()[:16]


def ring_means(n_modes: int, radius: float) -> np.ndarray:
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_means(grid_size: int, spacing: float) -> np.ndarray:
    # PacGAN/VEEGAN grid-25: means on {-4,-2,0,2,4}^2, i.e. size 5, spacing 2, centred on 0.
    axis = (np.arange(grid_size) - (grid_size - 1) / 2) * spacing
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def gaussian_mixture(name: str, means: np.ndarray, std: float, n: int, rng: np.random.Generator) -> Dataset:
    labels = rng.integers(len(means), size=n)
    samples = means[labels] + std * rng.standard_normal((n, means.shape[1]))
    return Dataset(name, samples.astype(np.float32), labels.astype(np.int64), len(means), means, std)


def ring(cfg, rng: np.random.Generator) -> Dataset:
    return gaussian_mixture("ring", ring_means(cfg.n_modes, cfg.radius), cfg.std, cfg.n_train, rng)


def grid(cfg, rng: np.random.Generator) -> Dataset:
    return gaussian_mixture("grid", grid_means(cfg.grid_size, cfg.grid_spacing), cfg.std, cfg.n_train, rng)


SOURCES: dict[str, Callable[..., Dataset]] = {"ring": ring, "grid": grid}


def load_data(cfg, seed: int) -> Dataset:
    """The scenario's real data; the seed fixes the draw so cached models stay valid."""
    return SOURCES[cfg.source](cfg, np.random.default_rng(seed))


# Image sources (cifar10, npz, digits, stacked_digits) live in their own module; imported last, as
# it builds on Dataset above.
from marlgen.image_data import SOURCES as _IMAGE_SOURCES  # noqa: E402

SOURCES.update(_IMAGE_SOURCES)
