"""Checkpoints and resume: a stopped run ends with the figures of a run never stopped, and no kill
leaves half a checkpoint. Runs are short ring-8 runs (2 epochs) with a briefly pretrained model."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import torch

import marlgen.checkpoint
from marlgen import atomic
from marlgen.run import main
from tests.conftest import ROOT, run_args


def figures(run_dir):
    """What must not change when a run is resumed: metrics, per-epoch history, final and best weights."""
    state = torch.load(run_dir / "checkpoints/training.pt", weights_only=False)
    history = [
        {k: v for k, v in row.items() if k not in ("seconds", "training_seconds")} for row in state["history"]
    ]
    weights = {name: torch.load(run_dir / "checkpoints" / name)["roles"] for name in ("policy.pt", "best.pt")}
    return json.loads((run_dir / "metrics.json").read_text()), history, weights


def assert_same_figures(a, b):
    metrics_a, history_a, weights_a = figures(a)
    metrics_b, history_b, weights_b = figures(b)
    assert metrics_a == metrics_b
    assert history_a == history_b
    for name, roles in weights_a.items():
        for role, state in roles.items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    assert torch.equal(value, weights_b[name][role][key]), f"{name} {role}.{key}"


def status(run_dir) -> str:
    return json.loads((run_dir / "status.json").read_text())["state"]


def test_interrupted_dqn_run_resumes_to_identical_figures(tmp_path, cache_dir, reference, monkeypatch):
    """DQN: the replay buffer, epsilon schedule and target-network timing carry over (PPO: the kill
    test and the divergence test below resume PPO runs)."""
    save = marlgen.checkpoint.save

    def save_then_stop(path, cfg, training, epoch, *args):
        save(path, cfg, training, epoch, *args)
        raise KeyboardInterrupt  # as Ctrl-C right after the first checkpoint

    out = tmp_path / "run"
    monkeypatch.setattr(marlgen.checkpoint, "save", save_then_stop)
    assert main(run_args(out, cache_dir, "agent=dqn")) == 130
    assert status(out) == "interrupted"
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    monkeypatch.undo()

    assert main(["--resume", str(out), "--no-progress"]) == 0
    assert status(out) == "complete"
    assert_same_figures(reference("dqn"), out)


def test_kill_mid_training_then_resume_gives_identical_figures(tmp_path, cache_dir, reference, capsys):
    """SIGKILL at a random moment after the first checkpoint (sometimes mid-write), then --resume."""
    expected = reference("ppo")  # also warms the model cache, so the subprocess starts training at once
    out, log = tmp_path / "run", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "marlgen.run", *run_args(out, cache_dir)]
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        checkpoint = out / "checkpoints/training.pt"
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 0.5))  # epoch 2 takes a few seconds: still training
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert status(out) == "running"  # the dead run never claims to be complete
    assert not (out / "metrics.json").exists() and not (out / "report.md").exists()
    for path in (out / "checkpoints").glob("*.pt"):  # every checkpoint there is whole
        torch.load(path, weights_only=False)
    assert checkpoint.exists(), "a temp file must never be the only copy of a checkpoint"

    assert main(["--resume", str(out), "--no-progress"]) == 0  # in this process: one startup less
    # Usually mid-epoch 2; since the env step got faster, epoch 2 sometimes ends within the random
    # delay, and the kill lands during the final evaluation: either way the run continues from disk.
    resumed = capsys.readouterr().out
    assert "resuming after epoch 1/2 from" in resumed or "resuming after epoch 2/2 from" in resumed
    assert status(out) == "complete"
    assert not list((out / "checkpoints").glob(".*.tmp"))  # leftovers of the kill are gone
    assert_same_figures(expected, out)


def test_a_kill_mid_write_keeps_the_previous_file(tmp_path):
    """The writer dies halfway through the new version: the old one stays whole and loadable."""
    path = tmp_path / "training.pt"
    script = f"""
import importlib.util, os, signal
spec = importlib.util.spec_from_file_location("atomic", {str(ROOT / "marlgen/atomic.py")!r})
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)  # alone: no torch to import, the test stays fast

def half_then_die(file):
    file.write(b"half of version 2 " * 1000)
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

atomic.write_text({str(path)!r}, "version 1")
atomic.write_atomic({str(path)!r}, half_then_die)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert path.read_text() == "version 1"
    (tmp,) = tmp_path.glob(".training.pt.*.tmp")  # the half-written new version, never renamed
    assert tmp.stat().st_size > 0
    assert atomic.remove_stale_temps(tmp_path) == [tmp] and not tmp.exists()


def test_resume_without_a_checkpoint_starts_over(tmp_path, cache_dir, reference, capsys):
    """Killed before the first checkpoint (say, while pretraining): --resume trains from epoch 1."""
    out = tmp_path / "run"
    shutil.copytree(reference("ppo"), out)
    for name in ("training.pt", "policy.pt", "best.pt", "metrics.json"):
        (out / "checkpoints" / name if name.endswith(".pt") else out / name).unlink()
    (out / "status.json").write_text(json.dumps({"state": "running", "pid": 0}))
    config = out / "config.yaml"  # without a checkpoint nothing pins the config: a shorter run
    short = config.read_text().replace("epochs: 2", "epochs: 1").replace("budget: 200", "budget: 100")
    config.write_text(short)
    assert main(["--resume", str(out), "--no-progress"]) == 0
    assert "no checkpoint yet: training starts at epoch 1" in capsys.readouterr().out
    assert status(out) == "complete" and (out / "metrics.json").is_file()
    assert torch.load(out / "checkpoints/training.pt", weights_only=False)["epoch"] == 1


def test_diverging_critic_keeps_the_last_good_checkpoint(tmp_path, cache_dir, reference, monkeypatch):
    """The critic's weights turn inf after epoch 1: the run stops with one message, marked failed,
    and the epoch-1 checkpoint is intact: resuming from it gives the reference figures."""
    save = marlgen.checkpoint.save

    def save_then_poison(path, cfg, training, epoch, *args):
        save(path, cfg, training, epoch, *args)
        with torch.no_grad():
            next(training.algorithm.get_algorithm("critic").parameters()).fill_(float("inf"))

    out = tmp_path / "run"
    monkeypatch.setattr(marlgen.checkpoint, "save", save_then_poison)
    code = main(run_args(out, cache_dir))
    monkeypatch.undo()
    assert code == 1
    assert status(out) == "failed" and not (out / "metrics.json").exists()
    message = json.loads((out / "status.json").read_text())["message"]
    assert "training diverged in epoch 2" in message and "critic network's weights" in message
    assert "agents.critic.lr" in message and "training.pt from epoch 1 is kept" in message
    assert torch.load(out / "checkpoints/training.pt", weights_only=False)["epoch"] == 1

    assert main(["--resume", str(out), "--no-progress"]) == 0
    assert_same_figures(reference("ppo"), out)


def test_diverging_policy_gets_one_clear_message(tmp_path, cache_dir, capsys):
    """A learning rate that blows the generator's logits up: not torch's distribution trace."""
    out = tmp_path / "run"
    assert main(run_args(out, cache_dir, "agents.generator.lr=1e30")) == 1
    err = capsys.readouterr().err
    assert "training diverged in epoch 1" in err and "agents.generator.lr (now 1e+30)" in err
    assert "Traceback" not in err and status(out) == "failed"


def test_diverging_judge_gets_one_clear_message(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    args = run_args(out, cache_dir, "env.critic.judge=discriminator", "env.critic.disc_lr=1e30")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "discriminator judge's loss became nan" in err and "env.critic.disc_lr" in err
    assert status(out) == "failed"


def test_nan_rewards_get_one_clear_message(tmp_path, cache_dir, capsys, monkeypatch):
    import marlgen.batched
    import marlgen.env

    nan_rewards = lambda accepted, *args: np.full(len(accepted), np.nan)  # noqa: E731
    monkeypatch.setattr(marlgen.env, "critic_rewards", nan_rewards)
    monkeypatch.setattr(marlgen.batched, "critic_rewards", nan_rewards)  # the default vector env's
    out = tmp_path / "run"
    assert main(run_args(out, cache_dir)) == 1
    err = capsys.readouterr().err
    assert "training diverged in epoch 1" in err and "NaN or inf rewards or observations" in err


def test_reused_run_directory_drops_the_old_runs_outputs(tmp_path, cache_dir, reference, monkeypatch):
    """A new run in an old run's directory must not inherit its checkpoints, report or status."""
    import marlgen.train

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash before the first checkpoint")

    out = tmp_path / "run"
    shutil.copytree(reference("ppo"), out)
    monkeypatch.setattr(marlgen.train, "team_episodes", crash)
    assert main(run_args(out, cache_dir)) == 1
    assert status(out) == "failed"
    assert not (out / "report.md").exists() and not (out / "metrics.json").exists()
    assert not list((out / "checkpoints").glob("*.pt"))


def test_an_emptied_buffer_is_saved_without_its_storage_and_refills_alike():
    """PPO's buffer is empty at every epoch's end: its checkpoint keeps all but the dead storage."""
    import pickle

    from tianshou.data import Batch

    from marlgen.buffers import SlotReplayBuffer

    def step(k):
        return Batch(obs=np.full((2, 3), k, np.float32), act=np.array([k, -k]), rew=np.array([1.0, 2.0]) * k,
                     terminated=np.array([False, True]), truncated=np.zeros(2, bool),
                     obs_next=np.full((2, 3), k + 1, np.float32), info=Batch())  # fmt: skip

    buffer = SlotReplayBuffer(4000, 2)  # storage of 2,000 steps a slot beside three random states
    for k in range(3):
        buffer.add(step(k), buffer_ids=[0, 1])
    buffer.reset(keep_statistics=True)  # as Tianshou's on-policy trainer does after an update
    lean = pickle.loads(pickle.dumps(marlgen.checkpoint.without_empty_storage(buffer)))
    assert buffer._meta.get_keys() and not lean._meta.get_keys()  # the live buffer keeps its storage
    assert len(pickle.dumps(lean)) < len(pickle.dumps(buffer)) / 2
    for k in (5, 6):
        buffer.add(step(k), buffer_ids=[0, 1])
        lean.add(step(k), buffer_ids=[0, 1])
    assert len(lean) == len(buffer) == 4
    mine, theirs = lean[lean.sample_indices(0)], buffer[buffer.sample_indices(0)]
    for key in ("obs", "act", "rew", "terminated", "obs_next"):
        assert np.array_equal(mine[key], theirs[key]), key
    assert np.array_equal(lean.next(lean.sample_indices(0)), buffer.next(buffer.sample_indices(0)))
    full = SlotReplayBuffer(8, 2)
    full.add(step(1), buffer_ids=[0, 1])
    assert marlgen.checkpoint.without_empty_storage(full) is full  # DQN's buffer is saved whole
