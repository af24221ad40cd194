"""Shared fixtures: scenarios with a briefly pretrained model, cached once per test session."""

from pathlib import Path

import pytest

from marlgen.build import build_parts
from marlgen.config import load_scenario
from marlgen.run import main

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


@pytest.fixture(scope="session")
def ring8_in_modes(cache_dir):
    """ring8 with narrow modes (data.std=0.1), where the 300-step model's samples land in them, so
    counts, histograms and rewards are not all zeros."""
    cfg = quick_config(ROOT / "scenarios/gmm_ring8.yaml", cache_dir, "data.std=0.1")
    return cfg, build_parts(cfg, progress=False)


# Short ring-8 runs through the CLI (tests/test_resume.py, tests/test_bad_input.py).
# data.std=0.1: the 300-step model's samples land in the modes, so the figures are not all zeros.
SHORT_RUN = [
    "model.train_steps=300",
    "data.std=0.1",
    "train.epochs=2",
    "train.steps_per_epoch=400",
    "train.steps_per_collect=200",
    "train.n_envs=2",
    "eval.budget=200",
    "eval.small_budget_episodes=3",
]
RING8 = str(ROOT / "scenarios/gmm_ring8.yaml")


def run_args(out, cache_dir, *extra):
    return [RING8, f"out_dir={out}", f"cache_dir={cache_dir}", *SHORT_RUN, *extra, "--no-progress"]


@pytest.fixture(scope="session")
def reference(tmp_path_factory, cache_dir):
    """``reference(agent)``: the directory of a short run never stopped, made once a session."""
    made = {}

    def get(agent: str):
        if agent not in made:
            out = tmp_path_factory.mktemp("reference") / agent
            assert main(run_args(out, cache_dir, f"agent={agent}")) == 0
            made[agent] = out
        return made[agent]

    return get


@pytest.fixture
def one_torch_thread():
    """Tiny networks: one thread is as fast, and two OpenMP threads on a busy 2-core machine run many
    times slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
