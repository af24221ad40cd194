"""Mode assigners: what "a mode" is, and whether a sample is good enough to count for one.

An assigner maps a batch of samples to mode indices, -1 where a sample belongs to no mode (too far
from every mixture component, for toy data). The critic is scored against this verdict and every
coverage figure counts with it.
"""

from __future__ import annotations

import numpy as np

from marlgen.metrics import assign_to_mixture


class MixtureModes:
    """Nearest mixture component within 3 std (PacGAN's and VEEGAN's high-quality rule)."""

    def __init__(self, means: np.ndarray, std: float, hq_threshold: float = 3.0):
        self.means, self.std, self.hq_threshold = means, std, hq_threshold
        self.n_modes = len(means)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return assign_to_mixture(x, self.means, self.std, self.hq_threshold)


def make_assigner(dataset):
    if dataset.has_density:
        return MixtureModes(dataset.means, dataset.std)
    raise ValueError(f"no mode assigner for data source {dataset.name!r}")
