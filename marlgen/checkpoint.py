"""Training checkpoints: all a killed run needs to continue exactly where it stopped.

``checkpoints/training.pt`` is written at the end of every ``train.checkpoint_every``-th epoch,
atomically (marlgen.atomic). It holds

- each role's Tianshou algorithm state dict (networks, target networks, optimisers), plus the plain
  numbers torch's state dicts skip (DQN's gradient-step count, which times its target updates);
- the collector's buffer (the replay buffer, or PPO's episode statistics) and its pending
  observations, so episodes in flight carry on;
- every env copy's state: RNG, histograms, time step, and a learning judge's weights and optimiser;
- the trainer's and the logger's step counters, the per-epoch history, the best epoch's policy;
- the python, numpy and torch RNG states;
- the resolved config, to refuse a checkpoint that does not belong to the run resuming it.

So a resumed run continues bit for bit: it ends with the same metrics as a run never stopped
(tests/test_resume.py). The file is a pickle (the buffer is Python objects): load only your own.
"""

from __future__ import annotations

import copy
import random
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tianshou.data import Batch

from marlgen import atomic
from marlgen.errors import CheckpointError, brief

FORMAT = "marlgen-training"
VERSION = 2  # 2: lockstep transitions carry empty infos (no env_id)
# Keys a resumed run may change: where things live and how fast they run, never what is computed.
MAY_DIFFER = {"out_dir", "cache_dir", "device", "train.torch_threads", "train.checkpoint_every"}
# The buffer and collector internals are pickled as Tianshou keeps them: another version may not read them.
PINNED = ("tianshou",)
# Tianshou trainer attributes that count progress (the exploration schedule reads the env steps).
TRAINER_COUNTERS = ("_epoch", "_env_step", "_current_update_step", "_env_episode", "_policy_update_time")


def path_in(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "training.pt"


def latest(run_dir: Path, cfg) -> dict | None:
    """The run directory's checkpoint, checked against ``cfg``; None when training never reached one."""
    path = path_in(run_dir)
    return load(path, cfg) if path.is_file() else None


def save(path: Path, cfg, run, epoch: int, history: list[dict], best: dict) -> None:
    """``run``: the objects training holds (marlgen.train.Training); ``best``: score and role states."""
    collector, trainer = run.collector, run.trainer
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": _versions(),
        "epoch": epoch,
        "roles": {role: role_state(run.algorithm.get_algorithm(role)) for role in run.roles},
        "buffer": without_empty_storage(collector.buffer),
        "collector": {
            "obs": collector._pre_collect_obs_RO,
            "info": collector._pre_collect_info_R,
            "hidden": collector._pre_collect_hidden_state_RH,
            "counters": (collector.collect_step, collector.collect_episode, collector.collect_time),
        },
        "envs": run.venv.get_env_attr("checkpoint_state"),
        "trainer": {k: getattr(trainer, k) for k in TRAINER_COUNTERS},
        "logger": scalars(trainer._logger),
        "history": history,
        "best": best,
        "rng": rng_state(),
    }
    atomic.torch_save(state, path)


def without_empty_storage(buffer):
    """The buffer as it must be restored, without the storage of an empty one.

    PPO's buffer is emptied after every update, so at an epoch's end it holds no transitions, yet its
    storage (and a copy in every sub-buffer's view) took 5 MB and most of a checkpoint's 0.1 s at 16
    generators. Restored with no storage, it allocates afresh on its first add, as a new buffer does;
    everything else it carries (episode statistics, pointers, its random state) is kept.
    """
    if len(buffer) or not buffer._meta.get_keys():
        return buffer
    lean = _storage_free_copy(buffer)
    if "buffers" in vars(buffer):  # a VectorReplayBuffer: sub-buffers whose storage are views of its own
        vars(lean)["buffers"] = [_storage_free_copy(part) for part in buffer.buffers]
    return lean


def _storage_free_copy(buffer):
    # Not copy.copy: Tianshou's buffers restore state by adopting the state dict, so a copy.copy shares
    # its __dict__ with the original, and emptying the copy's storage would empty the live buffer's.
    lean = object.__new__(type(buffer))
    vars(lean).update(vars(buffer), _meta=Batch())
    return lean


def load(path: Path, cfg) -> dict:
    """The checkpoint at ``path``, checked against ``cfg``: CheckpointError names what is wrong."""
    # marlgen never leaves a checkpoint half-written (marlgen.atomic): a bad one was damaged or replaced.
    restart = "delete it and --resume again to train from epoch 1, or start a new run"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip, foreign pickle, EOF: torch raises many kinds
        raise CheckpointError(
            f"{path}: not a readable training checkpoint ({brief(err)}): damaged or truncated; {restart}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a marlgen training checkpoint; {restart}")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state.get('version')}, but this marlgen reads {VERSION}; {restart}"
        )
    if state.get("versions") != _versions():
        raise CheckpointError(
            f"{path}: written with {state.get('versions')}, but {_versions()} is installed; Tianshou's "
            f"buffers do not carry across versions: reinstall those versions, or {restart}"
        )
    differences = config_differences(state["config"], OmegaConf.to_container(cfg, resolve=True))
    if differences:
        shown = "; ".join(f"{k}: checkpoint {a!r}, config {b!r}" for k, a, b in differences[:4])
        more = f" (and {len(differences) - 4} more)" if len(differences) > 4 else ""
        raise CheckpointError(
            f"{path}: checkpoint does not fit this run's config.yaml: {shown}{more}. A resumed run "
            "trains what its checkpoint trained: put config.yaml back as it was, or start a new run"
        )
    return state


def restore(state: dict, run, path: Path) -> None:
    """Put a loaded checkpoint back into freshly built training objects (same config)."""
    try:
        for role in run.roles:
            load_role_state(run.algorithm.get_algorithm(role), state["roles"][role])
    except (RuntimeError, KeyError, ValueError) as err:  # shapes or roles of another team
        raise CheckpointError(
            f"{path}: the saved networks do not fit the team this config builds ({brief(err)}); "
            "start a new run"
        ) from None
    collector = run.collector
    collector.buffer = state["buffer"]
    if collector.buffer._meta.get_keys():  # a VectorReplayBuffer's parts are views of its storage
        collector.buffer._set_batch_for_children()
    saved = state["collector"]
    collector._pre_collect_obs_RO = saved["obs"]
    collector._pre_collect_info_R = saved["info"]
    collector._pre_collect_hidden_state_RH = saved["hidden"]
    collector.collect_step, collector.collect_episode, collector.collect_time = saved["counters"]
    for i, env_state in enumerate(state["envs"]):
        run.venv.set_env_attr("checkpoint_state", env_state, id=i)
    for key, value in state["trainer"].items():
        setattr(run.trainer, key, value)
    vars(run.trainer._logger).update(state["logger"])
    set_rng_state(state["rng"])


def role_state(algorithm) -> dict:
    """A role's state dict (optimisers included) and the plain numbers of its modules, copied."""
    counters = {name: scalars(module) for name, module in algorithm.named_modules()}
    return copy.deepcopy({"state_dict": algorithm.state_dict(), "counters": counters})


def load_role_state(algorithm, state: dict) -> None:
    algorithm.load_state_dict(copy.copy(state["state_dict"]))  # it pops the optimisers' entry
    modules = dict(algorithm.named_modules())
    for name, values in state["counters"].items():
        vars(modules[name]).update(values)


def scalars(obj) -> dict:
    """An object's plain-number attributes: counters and flags that state dicts leave out."""
    return {k: v for k, v in vars(obj).items() if type(v) in (int, float, bool)}


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, saved value, current value) for every key that differs and may not."""
    out = []
    for key in sorted(set(saved) | set(current)):
        dotted = f"{prefix}{key}"
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        if dotted in MAY_DIFFER:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{dotted}.")
        elif a != b:
            out.append((dotted, a, b))
    return out


def _versions() -> dict:
    return {name: version(name) for name in PINNED}
