"""Every kind of bad input, through the CLI: one clear message, a non-zero exit, no run that looks complete.

Config errors stop before a run directory exists (exit 2). Bad data files, model caches and
checkpoints are found once the run directory exists: it is marked failed (exit 2: input rejected).
docs/reliability.md lists the messages.
"""

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from marlgen.config import load_scenario
from marlgen.data import load_data
from marlgen.models.pretrain import checkpoint_name, model_config_dict, pretrained_model
from marlgen.run import main
from tests.conftest import RING8, ROOT, run_args


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


def assert_not_complete(out):
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    if (out / "status.json").exists():
        assert json.loads((out / "status.json").read_text())["state"] != "complete"


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "expected"),
    [
        ("env:\n  n_generators: [1\n", [], ["scenario.yaml: malformed YAML at line 5"]),
        ("", ["train.epoch=3"], ["command line: unknown key 'train.epoch'", "did you mean 'epochs'"]),
        ("", ["env.n_generators=four"], ["bad value 'four' for 'env.n_generators'", "expected int"]),
        ("env:\n  n_generators: 0\n", [], ["env.n_generators=0 must be greater than 0"]),
        ("", ["env.episode_budget=0"], ["command line: env.episode_budget=0 must be greater than 0"]),
        ("", ["eval.budget=0"], ["command line: eval.budget=0 must be greater than 0"]),
        ("", ["agents.generator.lr=-0.001"], ["agents.generator.lr=-0.001 must be greater than 0"]),
        ("", ["env.critic.disc_lr=-1"], ["env.critic.disc_lr=-1.0 must be greater than 0"]),
        ("", ["env.reward.quality=nan"], ["env.reward.quality=nan must be a finite number"]),
        ("", ["agents.critic.gamma=1.5"], ["agents.critic.gamma=1.5 must lie in [0.0, 1.0]"]),
    ],
    ids=["malformed_yaml", "unknown_key", "wrong_type", "no_agents", "budget_zero", "eval_budget_zero",
         "negative_lr", "negative_judge_lr", "nan", "gamma_above_one"],
)  # fmt: skip
def test_bad_config_stops_before_any_work(tmp_path, capsys, yaml_text, overrides, expected):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"defaults:\n  data: ring8\n{yaml_text}")
    out = tmp_path / "run"
    assert main([str(scenario), *overrides, f"out_dir={out}"]) == 2
    err = error_of(capsys)
    assert err.count("\n") == 1, err  # one line
    for part in expected:
        assert part in err, err
    assert not out.exists()


def test_missing_scenario_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such scenario file" in error_of(capsys)


def npz_args(tmp_path, path, *extra):
    """The digits scenario reading images from an .npz (fails while loading, before any training)."""
    return [str(ROOT / "scenarios/digits_coverage.yaml"), "data.source=npz", f"data.path={path}",
            f"out_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", *extra,
            "--no-progress"]  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("missing", ["data.path=", "no such file", "Fix: give the .npz's path"]),
        ("truncated", ["not a readable .npz (truncated", "re-copy or re-save the file"]),
        ("wrong_shape", ["'train_images' has shape (64, 8)", "expected arrays train_images (N, H, W, C)"]),
        ("too_small_for_conv", ["conv models need images of at least 8x8", "use model.kind=vae"]),
    ],
)
def test_bad_data_file_fails_the_run_with_one_message(tmp_path, capsys, damage, expected):
    path = tmp_path / "images.npz"
    rng = np.random.default_rng(0)
    if damage != "missing":
        size, shape = (6, (64, 6, 6, 1)) if damage == "too_small_for_conv" else (8, (64, 8, 8, 1))
        np.savez(path, train_images=rng.integers(0, 255, shape, dtype=np.uint8),
                 train_labels=rng.integers(0, 2, 64))  # fmt: skip
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[:300])
        elif damage == "wrong_shape":
            np.savez(path, train_images=np.zeros((64, 8), np.uint8))
    assert main(npz_args(tmp_path, path)) == 2
    err = error_of(capsys)
    for part in expected:
        assert part in err, err
    assert "run marked failed" in err
    assert_not_complete(tmp_path / "run")


@pytest.mark.parametrize("damage", ["truncated", "other_latent_size"])
def test_bad_model_cache_fails_the_run_with_one_message(tmp_path, capsys, damage):
    """The pretrained-model cache file the run would reuse is damaged: an error naming it, not a
    silent retrain (cache files are written atomically, so damage comes from outside: say so)."""
    cache = tmp_path / "cache"
    args = run_args(tmp_path / "run", cache)
    cfg = load_scenario(RING8, args[1:-1])
    model_cfg = model_config_dict(cfg.model)
    data = load_data(cfg.data, cfg.seed).samples
    path = cache / checkpoint_name(model_cfg, data, cfg.seed)
    other = {**model_cfg, "latent_dim": 3, "train_steps": 2}
    pretrained_model(other, data, cfg.seed, tmp_path / "other", progress=False)
    (trained,) = (tmp_path / "other").glob("*.pt")
    cache.mkdir()
    shutil.copy(trained, path)  # a latent-3 model under the latent-2 model's name
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    assert main(args) == 2
    err = error_of(capsys)
    assert str(path) in err and "delete the file to retrain" in err
    reason = "not a readable model checkpoint" if damage == "truncated" else "does not match the requested"
    assert reason in err
    assert_not_complete(tmp_path / "run")


@pytest.fixture
def stopped_run(tmp_path, reference):
    """A copy of a finished short run, made to look killed after its last checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(reference("ppo"), out)
    for name in ("metrics.json", "report.md"):
        (out / name).unlink()
    (out / "status.json").write_text(json.dumps({"state": "running", "pid": 0}))
    return out


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncated", ["training.pt: not a readable training checkpoint", "truncated", "delete it"]),
        ("garbage", ["training.pt: not a readable training checkpoint"]),
        ("foreign", ["training.pt: not a marlgen training checkpoint"]),
        ("more_agents", ["does not fit this run's config.yaml", "n_generators: checkpoint 4, config 8"]),
        ("other_latent_size", ["does not fit this run's config.yaml", "latent_dim: checkpoint 2, config 3"]),
    ],
)  # fmt: skip
def test_bad_checkpoint_stops_resume_with_one_message(stopped_run, capsys, damage, expected):
    ckpt = stopped_run / "checkpoints/training.pt"
    config = stopped_run / "config.yaml"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint" * 100)
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    elif damage == "more_agents":
        config.write_text(config.read_text().replace("n_generators: 4", "n_generators: 8"))
    else:
        config.write_text(config.read_text().replace("latent_dim: 2", "latent_dim: 3"))
    assert main(["--resume", str(stopped_run), "--no-progress"]) == 2
    err = error_of(capsys)
    for part in expected:
        assert part in err, err
    assert_not_complete(stopped_run)


def test_resume_refuses_a_run_that_is_still_going(stopped_run, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = {"state": "running", "pid": sleeper.pid, "host": platform.node()}
        (stopped_run / "status.json").write_text(json.dumps(status))
        assert main(["--resume", str(stopped_run)]) == 2
        assert f"the run is still going (process {sleeper.pid})" in error_of(capsys)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_resume_needs_a_run_directory(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "nowhere")]) == 2
    assert "no config.yaml there" in error_of(capsys)


def test_resuming_a_complete_run_changes_nothing(reference, capsys):
    out = reference("ppo")
    before = (out / "metrics.json").read_text()
    assert main(["--resume", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out / "metrics.json").read_text() == before


def test_resume_takes_no_scenario(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--resume", str(tmp_path), str(RING8)])
    assert exit_info.value.code == 2
    assert "--resume RUN_DIR takes no scenario or overrides" in capsys.readouterr().err


def test_diverging_pretraining_caches_nothing(tmp_path, capsys):
    """The generative model's own training blows up: one message, and no poisoned cache file."""
    cache = tmp_path / "cache"
    args = run_args(tmp_path / "run", cache, "model.lr=1e12", "model.train_steps=200")
    assert main(args) == 1
    err = error_of(capsys)
    assert "pretraining the vae model diverged" in err and "lower model.lr (now 1000000000000.0)" in err
    assert not list(cache.glob("*.pt"))
    assert_not_complete(tmp_path / "run")
