"""The guided-training comparison's own bookkeeping (benchmarks/guided_vs_conventional.py)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.guided_vs_conventional import (
    LATENT_EXTENT,
    LATENT_GRID,
    distance_bands,
    latent_islands,
    latent_map,
    main,
)
from marlgen.modes import MixtureModes

ROOT = Path(__file__).resolve().parent.parent


def test_distance_bands_split_samples_by_their_distance_to_the_nearest_mean():
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    std = 0.5
    at = np.array([1.0, 4.0, 8.0, 40.0]) * std  # 1, 4, 8 and 40 std from the nearest mean
    samples = np.stack([at, np.zeros(4)], 1) + np.array([10.0, 0.0])
    final = {"samples": samples, "means": means, "std": std, "hq_threshold": 3.0}
    assert distance_bands(final) == pytest.approx((0.25, 0.25, 0.5))


def test_latent_map_rows_are_latent_y_and_columns_latent_x():
    class Identity:
        def decode(self, z):
            return z

    means = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, -2.0]])
    grid = latent_map(Identity(), MixtureModes(means, std=0.3))
    at = lambda x, y: grid[  # noqa: E731
        round((y + LATENT_EXTENT) / (2 * LATENT_EXTENT) * (LATENT_GRID - 1)),
        round((x + LATENT_EXTENT) / (2 * LATENT_EXTENT) * (LATENT_GRID - 1)),
    ]
    assert grid.shape == (LATENT_GRID, LATENT_GRID)
    assert (at(-2, 0), at(2, 0), at(0, -2), at(0, 0), at(0, 2)) == (0, 1, 2, -1, -1)


def test_latent_islands_count_patches_with_prior_mass():
    grid = np.full((LATENT_GRID, LATENT_GRID), -1)
    c = LATENT_GRID // 2
    grid[c - 10 : c, c - 10 : c + 10] = 0  # mode 0 in two patches either side of mode 1's row band
    grid[c + 1 : c + 11, c - 10 : c + 10] = 0
    grid[c, c - 10 : c + 10] = 1
    grid[0, 0] = 2  # a corner cell: far too little of the prior's mass to count
    modes, islands, white = latent_islands(grid)
    assert (modes, islands) == (2, 3)
    assert 0.0 < white < 1.0 and latent_islands(np.zeros_like(grid))[2] == 0.0


def test_model_only_comparison_keeps_and_draws_the_final_prior_samples(tmp_path, cache_dir):
    out = tmp_path / "cmp"
    overrides = [
        f"cache_dir={cache_dir}",
        "model.train_steps=300",
        "model.curve_every=100",
        "model.guided.warmup_steps=100",
        "model.guided.rounds=1",
    ]
    args = [str(ROOT / "scenarios/gmm_ring8_guided.yaml"), *overrides, "--methods", "conventional",
            "--seeds", "1", "--model-only", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert (out / "samples.png").stat().st_size > 0
    final = dict(np.load(out / "conventional_seed0" / "final_prior.npz"))
    last = max(csv.DictReader((out / "curves.csv").open()), key=lambda r: float(r["updates"]))
    # the kept draw is the one the curve's last figures counted
    assert np.mean(final["modes"] >= 0) == pytest.approx(float(last["high_quality_fraction"]))
    assert distance_bands(final)[0] == pytest.approx(float(last["high_quality_fraction"]))
    assert "| conventional | 0 |" in (out / "summary.md").read_text().split("Where the final prior")[1]
    assert (
        final["latent_modes"].shape == (LATENT_GRID, LATENT_GRID)
        and (out / "latent_map.png").stat().st_size > 0
    )
    weights = torch.load(out / "conventional_seed0" / "final_model.pt", weights_only=True)
    assert any(k.startswith("generator.") for k in weights)
