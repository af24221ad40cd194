"""The guided-training comparison's own bookkeeping (benchmarks/guided_vs_conventional.py)."""

import csv
from pathlib import Path

import numpy as np
import pytest

from benchmarks.guided_vs_conventional import distance_bands, main

ROOT = Path(__file__).resolve().parent.parent


def test_distance_bands_split_samples_by_their_distance_to_the_nearest_mean():
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    std = 0.5
    at = np.array([1.0, 4.0, 8.0, 40.0]) * std  # 1, 4, 8 and 40 std from the nearest mean
    samples = np.stack([at, np.zeros(4)], 1) + np.array([10.0, 0.0])
    final = {"samples": samples, "means": means, "std": std, "hq_threshold": 3.0}
    assert distance_bands(final) == pytest.approx((0.25, 0.25, 0.5))


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
