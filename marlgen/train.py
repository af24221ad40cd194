"""The Tianshou glue: lockstep vector env, one algorithm per role, collector, trainer, logger.

Reads top to bottom: envs -> algorithms -> collector -> trainer -> epochs (each followed by a
small-budget evaluation and a checkpoint).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm import MultiAgentOffPolicyAlgorithm
from tianshou.algorithm.multiagent.marl import MultiAgentOnPolicyAlgorithm
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv, SubprocVectorEnv
from tianshou.trainer import OffPolicyTrainer, OffPolicyTrainerParams, OnPolicyTrainer, OnPolicyTrainerParams
from tianshou.utils import TensorboardLogger
from torch.utils.tensorboard import SummaryWriter

import agents
from marlgen.build import Parts, make_env
from marlgen.evaluate import TeamActor, modes_covered, steer
from marlgen.lockstep import LockstepVectorEnv, TeamEnv, use_lockstep_policy
from marlgen.rewards import objective

VECTOR_ENVS = {"dummy": DummyVectorEnv, "subproc": SubprocVectorEnv}

# Each slot's reward is a vector (one column per role, see marlgen.lockstep); Tianshou's collector
# summarises those returns before the trainer's multi_agent_return_reduction and warns each time.
logging.getLogger("tianshou.data.stats").setLevel(logging.ERROR)


@dataclass
class Team:
    """A trained (or training) team: the multi-agent algorithm and how to act with it."""

    algorithm: object
    agents: list[str]
    share_generators: bool
    obs_width: int

    def actor(self) -> TeamActor:
        return TeamActor(self.algorithm.policy, self.agents, self.share_generators, self.obs_width)


@dataclass
class TrainResult:
    team: Team
    history: list[dict] = field(default_factory=list)  # one row per epoch
    seconds: float = 0.0
    states: dict = field(default_factory=dict)  # role -> state dict of the evaluated (best) epoch


def agent_config(cfg, role: str):
    return cfg.agents.critic if role == "critic" else cfg.agents.generator


def role_spaces(env, role: str, obs_width: int, act_width: int):
    """Padded spaces a role's policy sees (the lockstep adapter pads obs and continuous actions)."""
    agent = "critic" if role == "critic" else env.generators[0]
    obs = spaces.Box(-np.inf, np.inf, (obs_width,), dtype=np.float32)
    act = env.action_space(agent)
    if isinstance(act, spaces.Box):
        act = spaces.Box(float(act.low.min()), float(act.high.max()), (act_width,), dtype=np.float32)
    return obs, act


def build_team(cfg, env, lockstep: LockstepVectorEnv, total_steps: int, device: str) -> Team:
    algorithms = []
    for role in lockstep.roles:
        obs_space, act_space = role_spaces(env, role, lockstep.obs_width, lockstep.act_width)
        algorithms.append(agents.build(agent_config(cfg, role), obs_space, act_space, total_steps, device))
    multi = (
        MultiAgentOnPolicyAlgorithm
        if agents.is_on_policy(cfg.agents.generator.algorithm)
        else (MultiAgentOffPolicyAlgorithm)
    )
    algorithm = multi(algorithms=algorithms, env=lockstep.marl_view())
    use_lockstep_policy(algorithm)
    return Team(
        algorithm, list(env.possible_agents), cfg.agents.generator.share_parameters, lockstep.obs_width
    )


def train(
    cfg, parts: Parts, run_dir: Path, progress: bool = True, log=print, init: dict | None = None
) -> TrainResult:
    """``init``: role state dicts to start from (guided training carries its team on across rounds)."""
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.train.torch_threads)
    # Tianshou samples actions (torch), epsilon draws and replay minibatches (numpy) from the global
    # generators: seed both so a seed fixes the run.
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    learn_judge = cfg.env.critic.judge == "discriminator"
    env_fn = functools.partial(make_env, cfg, parts, learn_judge)
    probe = TeamEnv(env_fn)
    n_copies = cfg.train.n_envs
    team_venv = VECTOR_ENVS[cfg.train.vector_env]([functools.partial(TeamEnv, env_fn)] * n_copies)
    team_venv.seed([cfg.seed * 1000 + i for i in range(n_copies)])
    share = cfg.agents.generator.share_parameters
    lockstep = LockstepVectorEnv(team_venv, probe.agents, share, probe.obs_width, probe.act_width)

    slots = lockstep.env_num
    per_collect = _round_up(cfg.train.steps_per_collect, slots)
    per_epoch = _round_up(cfg.train.steps_per_epoch, per_collect)
    total_steps = per_epoch * cfg.train.epochs
    team = build_team(cfg, probe.env, lockstep, total_steps, device)
    algorithm = team.algorithm
    for role, state in (init or {}).items():  # Tianshou's load_state_dict pops keys: load a copy
        algorithm.get_algorithm(role).load_state_dict(copy.deepcopy(state))
    on_policy = isinstance(algorithm, MultiAgentOnPolicyAlgorithm)

    buffer_size = per_collect if on_policy else max(cfg.agents.generator.buffer_size, slots)
    collector = Collector(algorithm, lockstep, VectorReplayBuffer(buffer_size, slots), exploration_noise=True)
    collector.reset()
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    # training_interval counts env steps, update_interval counts collect-and-update cycles.
    logger = TensorboardLogger(writer, training_interval=per_collect, update_interval=1)

    def training_fn(epoch: int, env_step: int) -> None:
        progress_fraction = min(env_step / total_steps, 1.0)
        for role in lockstep.roles:
            sub = algorithm.get_algorithm(role)
            agents.exploration_schedule(sub, agent_config(cfg, role), progress_fraction)

    common = dict(
        training_collector=collector,
        test_collector=None,  # evaluated below with our own rollout (DESIGN.md, "Traps")
        max_epochs=cfg.train.epochs,
        epoch_num_steps=per_epoch,
        collection_step_num_env_steps=per_collect,
        batch_size=cfg.train.batch_size,
        training_fn=training_fn,
        logger=logger,
        multi_agent_return_reduction=lambda returns: np.asarray(returns)[:, 0],  # team view: slot's own
        show_progress=progress,
        verbose=False,
    )
    if on_policy:
        params = OnPolicyTrainerParams(
            update_step_num_repetitions=cfg.agents.generator.update_repeats, **common
        )
        trainer = quiet(OnPolicyTrainer)(algorithm, params)
    else:
        params = OffPolicyTrainerParams(
            update_step_num_gradient_steps_per_sample=cfg.agents.generator.updates_per_step, **common
        )
        trainer = quiet(OffPolicyTrainer)(algorithm, params)

    result = TrainResult(team)
    eval_env = make_env(cfg, parts)
    best_score, best_state = -np.inf, None
    weights = {"coverage": cfg.env.reward.coverage, "entropy": cfg.env.reward.entropy}
    start = time.perf_counter()
    trainer.reset(reset_collectors=False)
    for epoch in range(1, cfg.train.epochs + 1):
        trainer.execute_epoch()
        _, histograms = steer(eval_env, team.actor(), cfg.env.episode_budget * 20, seed=10_000 + epoch)
        row = {
            "epoch": epoch,
            "env_steps": int(trainer._env_step),  # agent steps (transitions) collected so far
            "seconds": round(time.perf_counter() - start, 2),
            "episode_modes_covered": float(np.mean(modes_covered(histograms))),
            # The team objective (coverage + evenness) per episode: what selects the best epoch.
            "episode_objective": float(np.mean([objective(h, **weights) for h in histograms])),
        }
        result.history.append(row)
        writer.add_scalar("eval/episode_modes_covered", row["episode_modes_covered"], row["env_steps"])
        log(
            f"epoch {epoch}/{cfg.train.epochs}: {row['env_steps']} agent steps, "
            f"{row['episode_modes_covered']:.2f}/{eval_env.n_modes} modes per episode, {row['seconds']:.0f} s"
        )
        if row["episode_objective"] > best_score:
            best_score, best_state = row["episode_objective"], role_states(algorithm, lockstep.roles)
            row["best"] = True
        if epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs:
            save_checkpoint(
                run_dir / "checkpoints" / "policy.pt", algorithm, lockstep.roles, epoch, row["env_steps"]
            )
    result.seconds = time.perf_counter() - start
    # Evaluate the epoch with the best team objective on held-out episodes (Tianshou's save_best
    # idea): PPO's last update can undo a good policy, and the final figures should not hinge on it.
    for role, state in best_state.items():
        algorithm.get_algorithm(role).load_state_dict(state)
    result.states = role_states(algorithm, lockstep.roles)
    save_checkpoint(run_dir / "checkpoints" / "best.pt", algorithm, lockstep.roles, 0, 0)
    best = max(result.history, key=lambda row: row["episode_objective"])
    log(f"evaluating epoch {best['epoch']}'s policy, the best on held-out episodes")
    writer.close()
    lockstep.close()
    return result


def role_states(algorithm, roles: list[str]) -> dict:
    return {role: copy.deepcopy(algorithm.get_algorithm(role).state_dict()) for role in roles}


def quiet(trainer_cls):
    """Tianshou's off-policy update bar ignores show_progress=False; this trainer honours it."""

    class QuietTrainer(trainer_cls):
        @property
        def _pbar(self):
            bar = super()._pbar
            if self.params.show_progress:
                return bar
            return lambda *args, **kwargs: bar(*args, **{**kwargs, "disable": True})

    return QuietTrainer


def save_checkpoint(path: Path, algorithm, roles: list[str], epoch: int, env_steps: int) -> None:
    """Write then rename, so a crash never leaves a half-written checkpoint behind.

    One state dict per role: the multi-agent algorithm's own state dict does not load back
    (tianshou 2.0.1: "Unexpected key(s)" for its sub-algorithms' optimisers).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"roles": role_states(algorithm, roles), "epoch": epoch, "env_steps": env_steps}, tmp)
    os.replace(tmp, path)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        return "cpu"  # documented fallback: this machine class has no GPU
    return name


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-value // multiple) * multiple)
