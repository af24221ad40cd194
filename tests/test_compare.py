"""The comparison command end to end on a tiny study, its statistics, and the DRS baseline."""

import csv
import json
import math

import numpy as np
import pytest
from conftest import ROOT, quick_config

from marlgen import compare
from marlgen.compare_report import dynamics, summarise
from marlgen.drs import RejectionSampler
from marlgen.evaluate import budgets, evaluate_sampler, prior
from marlgen.executors import JobsFailed, make_executor

TINY = [
    "model.train_steps=300",
    "train.epochs=2",
    "train.steps_per_epoch=512",
    "train.steps_per_collect=256",
    "train.n_envs=4",
    "eval.budget=200",
    "eval.small_budget_episodes=3",
    "eval.drs_steps=50",
]


def test_compare_writes_every_table_and_resumes(tmp_path, cache_dir):
    out = tmp_path / "study"
    argv = ["scenarios/gmm_ring8.yaml", "--seeds", "1", "--workers", "1", "--out", str(out)]
    argv += ["--methods", "team_ppo,prior,drs", *TINY, f"cache_dir={cache_dir}"]
    assert compare.main(argv) == 0
    for name in ("comparison.md", "results.csv", "summary.csv", "summary.json", "learning_curves.png",
                 "final_distribution.png", "config.yaml", "versions.json", "study.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        (m, "0") for m in ("team_ppo", "prior", "drs")
    )
    assert all(r["budget"] == "200" for r in rows)  # every method at the same budget
    page = (out / "comparison.md").read_text()
    assert "| team_ppo |" in page and "Paired differences" in page and "## Convergence" in page

    # A second run of the same command reads finished jobs back instead of training again.
    stamp = (out / "runs/team_ppo/seed0/result.json").stat().st_mtime_ns
    assert compare.main(argv) == 0
    assert (out / "runs/team_ppo/seed0/result.json").stat().st_mtime_ns == stamp


def test_interrupted_job_continues_from_its_training_checkpoint(tmp_path, cache_dir, monkeypatch):
    """A study killed mid-training resumes each job from its last epoch, not from epoch 1."""
    import marlgen.checkpoint
    from marlgen.methods import run_job

    save = marlgen.checkpoint.save

    def save_then_stop(path, cfg, training, epoch, *args):
        save(path, cfg, training, epoch, *args)
        raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    job_dir = tmp_path / "job"
    overrides = [*TINY, f"cache_dir={cache_dir}"]
    monkeypatch.setattr(marlgen.checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_job("scenarios/gmm_ring8.yaml", overrides, "team_ppo", 0, str(job_dir))
    monkeypatch.setattr(marlgen.checkpoint, "save", save)
    epochs_trained = []
    monkeypatch.setattr("marlgen.train.team_episodes", _counting(epochs_trained))
    result = run_job("scenarios/gmm_ring8.yaml", overrides, "team_ppo", 0, str(job_dir))
    assert [row["epoch"] for row in result["history"]] == [1, 2]
    assert len(epochs_trained) == 1  # only epoch 2 was trained (and evaluated) again


def _counting(calls: list):
    from marlgen.train import team_episodes

    def counted(*args, **kwargs):
        calls.append(1)
        return team_episodes(*args, **kwargs)

    return counted


@pytest.mark.parametrize("workers", [1, 2])
def test_executor_runs_every_job_and_names_the_failed_ones(workers):
    with make_executor(workers) as pool:
        # Builtins: a spawned worker unpickles them without importing this test module (and torch).
        done = dict((args[0], result) for (_, args), result in pool.run([(pow, (i, 2)) for i in range(4)]))
        assert done == {0: 0, 1: 1, 2: 4, 3: 9}
        finished = []
        with pytest.raises(
            JobsFailed, match=r"1 job\(s\) failed:\n  int\('x',\): ValueError: invalid literal"
        ):
            for _, result in pool.run([(int, ("x",)), (pow, (5, 2))]):
                finished.append(result)
        assert finished == [25]  # the good job still ran


def test_compare_rejects_unknown_method_and_bad_override(tmp_path, capsys):
    assert (
        compare.main(["scenarios/gmm_ring8.yaml", "--methods", "team_ppo,magic", "--out", str(tmp_path)]) == 2
    )
    assert "unknown magic" in capsys.readouterr().err
    assert compare.main(["scenarios/gmm_ring8.yaml", "train.epochz=3", "--out", str(tmp_path)]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert not (tmp_path / "comparison.md").exists()


def test_dynamics_reads_convergence_and_stability_from_history():
    history = [
        {"env_steps": 900, "seconds": 1.0, "episode_modes_covered": 5.0},
        {"env_steps": 1800, "seconds": 2.0, "episode_modes_covered": 7.5},  # 7.5 >= 0.9 * 8: reached
        {"env_steps": 2700, "seconds": 3.0, "episode_modes_covered": 6.0},  # dropped 1.5
        {"env_steps": 3600, "seconds": 4.0, "episode_modes_covered": 8.0},
    ]
    result = {"history": history, "figures": {"modes_total": 8}, "n_agents": 9, "train_seconds": 4.0}
    d = dynamics(result)
    assert d["env_steps_to_90"] == 200 and d["seconds_to_90"] == 2.0
    assert d["kept_90"] == pytest.approx(2 / 3) and d["worst_drop"] == pytest.approx(1.5)
    never = dynamics({**result, "history": history[:1]})
    assert math.isnan(never["env_steps_to_90"])


def test_summary_statistics():
    s = summarise([1.0, 2.0, 3.0, 4.0, 100.0, None, float("nan")])
    assert s["n"] == 5 and s["mean"] == pytest.approx(22.0)
    assert s["iqm"] == pytest.approx(3.0)  # the middle half ignores the odd seed
    assert s["min"] == 1.0 and s["max"] == 100.0 and s["ci95"] > 0


def test_drs_delivers_samples_the_discriminator_prefers(ring8):
    cfg, parts = ring8
    cfg = quick_config(ROOT / "scenarios/gmm_ring8.yaml", cfg.cache_dir, "eval.drs_steps=300")
    at = budgets(cfg, parts.assigner.n_modes)
    sampler = RejectionSampler(cfg, parts)
    rollout = sampler(4000, seed=3)
    assert 0.05 < rollout.accepted.mean() < 0.95  # gamma at the median of F: a real filter
    logits = sampler.judge.logit(rollout.samples)
    assert logits[rollout.accepted].mean() > logits[~rollout.accepted].mean()
    # Against the truth: accepted samples sit closer to the modes than the rejected ones.
    true_score = parts.judge.score(rollout.samples)
    assert true_score[rollout.accepted].mean() > true_score[~rollout.accepted].mean()
    drs, _ = evaluate_sampler(cfg, parts, sampler, at)
    plain, _ = evaluate_sampler(cfg, parts, lambda n, s: prior(parts.model, parts.assigner, n, s), at)
    assert drs["budget"] == plain["budget"] and drs["delivered"] < plain["delivered"]
    assert np.isfinite(drs["high_quality_fraction"])


@pytest.mark.ray
def test_compare_runs_its_jobs_on_a_local_ray(tmp_path, cache_dir):
    pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    out = tmp_path / "ray_study"
    argv = ["scenarios/gmm_ring8.yaml", "--seeds", "1", "--workers", "2", "--ray", "--out", str(out)]
    assert compare.main([*argv, "--methods", "team_ppo,prior", *TINY, f"cache_dir={cache_dir}"]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["method"] for r in rows) == ["prior", "team_ppo"]
    assert (out / "runs/team_ppo/seed0/checkpoints/best.pt").is_file()  # written by the Ray task
