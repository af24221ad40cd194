"""Shared fixtures: scenarios with a briefly pretrained model, cached once per test session."""

from pathlib import Path

import pytest

from marlgen.build import build_parts
from marlgen.config import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model_cache")


def quick_config(path, cache_dir, *overrides):
    """A scenario with a model pretrained for a few hundred steps: fast, and still a real model."""
    short = ["model.train_steps=300", "modes.classifier.train_steps=50", "env.critic.disc_warmup_steps=20"]
    # Guided scenarios: the env and the cached model are what these tests need, not the rounds.
    short += ["model.training=conventional", "model.curve_every=0"]
    short.append(f"cache_dir={cache_dir}")
    return load_scenario(path, [*short, *overrides])


@pytest.fixture(scope="session")
def ring8(cache_dir):
    cfg = quick_config(ROOT / "scenarios/gmm_ring8.yaml", cache_dir)
    return cfg, build_parts(cfg, progress=False)
