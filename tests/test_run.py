"""End to end through `python -m marlgen.run`, one short run per algorithm: what it leaves behind."""

import json
import re

import pytest
import torch
import yaml

from marlgen.run import main
from tests.conftest import ROOT

SHORT = [
    "model.train_steps=300",
    "train.epochs=2",
    "train.steps_per_epoch=400",
    "train.steps_per_collect=200",
    "train.n_envs=2",
    "eval.budget=400",
    "eval.small_budget_episodes=5",
]


@pytest.mark.parametrize("agent", ["ppo", "dqn"])
def test_short_run_writes_a_complete_run_directory(tmp_path, cache_dir, agent, capsys):
    out = tmp_path / "run"
    code = main(
        [
            str(ROOT / "scenarios/gmm_ring8.yaml"),
            f"agent={agent}",
            f"out_dir={out}",
            f"cache_dir={cache_dir}",
            *SHORT,
            "--no-progress",
        ]
    )
    assert code == 0
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"team", "prior", "random"}
    for row in metrics.values():
        assert row["budget"] == 400 and row["modes_total"] == 8
        assert 0 <= row["modes_covered"] <= 8 and 0.0 <= row["high_quality_fraction"] <= 1.0
        assert row["small_budget"] == 16 and row["delivered"] <= row["budget"]
    assert metrics["prior"]["delivered"] == 400  # the prior has no critic: all decodes delivered
    report = (out / "report.md").read_text()
    assert "| team |" in report and "| prior |" in report and "| random |" in report
    printed = capsys.readouterr().out
    evaluated = re.search(r"The team evaluated above is epoch (\d+)'s policy", report).group(1)
    assert f"evaluating epoch {evaluated}'s policy" in printed  # the report names the epoch that ran
    assert (out / "samples.png").stat().st_size > 10_000
    assert (out / "learning_curve.png").stat().st_size > 10_000
    assert yaml.safe_load((out / "config.yaml").read_text())["agents"]["generator"]["algorithm"] == agent
    assert "torch" in json.loads((out / "versions.json").read_text())
    assert (out / "checkpoints" / "policy.pt").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert f"run complete: {out}" in printed


def test_continuous_actions_run(tmp_path, cache_dir):
    out = tmp_path / "run"
    code = main(
        [
            str(ROOT / "scenarios/gmm_ring8.yaml"),
            "env.action=continuous",
            f"out_dir={out}",
            f"cache_dir={cache_dir}",
            *SHORT,
            "--no-progress",
        ]
    )
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["team"]["budget"] == 400


def test_failed_run_is_marked_failed(tmp_path, cache_dir, monkeypatch, capsys):
    import marlgen.train

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(marlgen.train, "train", boom)
    out = tmp_path / "run"
    code = main(
        [
            str(ROOT / "scenarios/gmm_ring8.yaml"),
            f"out_dir={out}",
            f"cache_dir={cache_dir}",
            *SHORT,
            "--no-progress",
        ]
    )
    assert code == 1
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "failed" and "simulated crash" in status["message"]
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    assert "simulated crash" in capsys.readouterr().err


@pytest.mark.parametrize(
    "agent, actions", [("ppo", "greedy"), ("dqn", "greedy"), ("ppo", "sample"), ("dqn", "sample")]
)
def test_same_seed_same_metrics(tmp_path, cache_dir, agent, actions):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = [
            str(ROOT / "scenarios/gmm_ring8.yaml"),
            f"agent={agent}",
            f"eval.actions={actions}",
            f"out_dir={out}",
        ]
        assert main([*args, f"cache_dir={cache_dir}", *SHORT, "--no-progress"]) == 0
        weights = torch.load(out / "checkpoints" / "policy.pt")["roles"]
        runs.append((json.loads((out / "metrics.json").read_text()), weights))
        assert f"`eval.actions={actions}`" in (out / "report.md").read_text()  # the report says how it acted
    assert runs[0][0] == runs[1][0]
    for role, state in runs[0][1].items():  # trained weights too: metrics alone can hide drift
        for key, tensor in state.items():
            if torch.is_tensor(tensor):
                assert torch.equal(tensor, runs[1][1][role][key]), f"{role}.{key}"


def test_a_remembering_reward_picks_the_epoch_by_the_pooled_objective(tmp_path, cache_dir):
    """With env.reward.memory the rewards optimise the held-out episodes' pooled histogram, so that is
    what picks the evaluated epoch."""
    from marlgen.build import build_parts
    from marlgen.config import load_scenario
    from marlgen.train import train
    from tests.conftest import RING8, SHORT_RUN

    overrides = [
        "env.reward.memory=64",
        "seed=4",  # a run on which the two objectives disagree (seeds 0-5: only 4, with today's sampling)
        "train.epochs=4",
        "train.steps_per_epoch=200",
        f"cache_dir={cache_dir}",
    ]
    cfg = load_scenario(RING8, [*SHORT_RUN, *overrides])
    logs: list[str] = []
    history = train(cfg, build_parts(cfg, progress=False), tmp_path, progress=False, log=logs.append).history
    best = max(history, key=lambda row: row["pooled_objective"])["epoch"]
    assert f"evaluating epoch {best}'s policy, the best on held-out episodes" in logs
    episode_best = max(history, key=lambda row: row["episode_objective"])["epoch"]
    assert best != episode_best  # on this run the two objectives pick different epochs
