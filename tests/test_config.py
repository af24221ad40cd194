"""Scenario loading: presets, overrides, and one clear error per kind of bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from marlgen.config import Config, ConfigError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_loads(path):
    cfg = load_scenario(path)
    assert cfg.env.n_generators >= 1


def test_presets_and_overrides_apply():
    cfg = load_scenario(ROOT / "scenarios/gmm_ring8.yaml", ["agent=dqn", "env.n_generators=8", "seed=3"])
    assert cfg.agents.generator.algorithm == "dqn" and cfg.agents.critic.algorithm == "dqn"
    assert cfg.env.n_generators == 8 and cfg.seed == 3
    assert cfg.data.std == 0.01  # from configs/data/ring8.yaml


def test_defaults_build_without_yaml():
    assert Config().env.n_generators == 4


def write(tmp_path, text):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("env:\n  n_generator: 4\n", [], ["scenario.yaml", "env.n_generator", "did you mean 'n_generators'"]),
        ("env:\n  n_generators: four\n", [], ["scenario.yaml", "env.n_generators", "four"]),
        ("env:\n  n_generators: 0\n", [], ["env.n_generators=0", "greater than 0"]),
        ("env:\n  episode_budget: 0\n", [], ["env.episode_budget=0", "greater than 0"]),
        ("env:\n  n_generators: [1\n", [], ["scenario.yaml", "malformed YAML", "line"]),
        ("- just\n- a list\n", [], ["scenario.yaml", "mapping"]),
        ("env:\n  action: sideways\n", [], ["env.action='sideways'", "discrete, continuous"]),
        ("", ["agents.generator.lr=-1"], ["agents.generator.lr=-1", "greater than 0"]),
        ("", ["train.epoch=3"], ["command line", "train.epoch", "did you mean 'epochs'"]),
        ("", ["agent=ppp"], ["command line", "agent='ppp'", "did you mean 'ppo'"]),
        ("defaults:\n  agent: ppp\n", [], ["scenario.yaml", "agent='ppp'", "did you mean 'ppo'"]),
        ("", ["model.kind=gam"], ["model.kind='gam'", "did you mean 'gan'"]),
        ("", ["env.episode_budget=10"], ["episode_budget=10", "multiple of"]),
        ("", ["agents.generator.algorithm=dqn"], ["mix on- and off-policy"]),
        ("", ["env.action=continuous", "agent=dqn"], ["continuous", "DQN"]),
    ],
)
def test_bad_input_gets_one_clear_error(tmp_path, text, overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_scenario(write(tmp_path, text), overrides)
    message = str(err.value)
    for part in expected:
        assert part in message, message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")


def test_cli_exits_non_zero_before_any_work(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "marlgen.run",
            str(ROOT / "scenarios/gmm_ring8.yaml"),
            "env.n_generators=0",
            f"out_dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "env.n_generators=0" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
