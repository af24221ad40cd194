"""The Tianshou glue: lockstep vector env, one algorithm per role, collector, trainer, logger.

Reads top to bottom: envs -> algorithms -> collector -> trainer -> epochs (each followed by a
small-budget evaluation and a checkpoint).
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm import MultiAgentOffPolicyAlgorithm
from tianshou.algorithm.multiagent.marl import MultiAgentOnPolicyAlgorithm
from tianshou.env import DummyVectorEnv, RayVectorEnv, SubprocVectorEnv
from tianshou.trainer import OffPolicyTrainer, OffPolicyTrainerParams, OnPolicyTrainer, OnPolicyTrainerParams
from tianshou.utils import TensorboardLogger
from torch.utils.tensorboard import SummaryWriter

import agents
from marlgen import atomic, checkpoint, guard
from marlgen.batched import BatchedTeams
from marlgen.buffers import SlotReplayBuffer
from marlgen.build import Parts, make_env
from marlgen.collect import SlotCollector
from marlgen.evaluate import TeamActor, evaluated_epoch, modes_covered, team_episodes
from marlgen.lockstep import LockstepVectorEnv, TeamEnv, use_lockstep_policy
from marlgen.rewards import objective

# Held-out episodes after each epoch, the team acting as eval.actions says: the history's
# episode_modes_covered, and what picks the evaluated (best) epoch.
EVAL_EPISODES = 20

VECTOR_ENVS = {"dummy": DummyVectorEnv, "subproc": SubprocVectorEnv, "ray": RayVectorEnv}


def make_vector_env(kind: str, env_fns: list):
    """Tianshou's vector env ``train.vector_env`` names, over these env factories (``batched``,
    marlgen's own, steps CoverageEnv copies only: see marlgen.batched).

    ``ray``: each env copy is a Ray actor. Tianshou starts a local Ray unless one is running in this
    process; ``RAY_ADDRESS`` (e.g. ``auto``) points ``ray.init`` at an existing cluster instead.
    """
    if kind not in VECTOR_ENVS:
        raise ValueError(
            f"train.vector_env={kind!r} steps the lockstep route's env copies only; pick one of "
            f"{', '.join(VECTOR_ENVS)} here"
        )
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "train.vector_env=ray needs Ray: pip install -e '.[ray]' (or pip install ray), "
                "or pick train.vector_env=dummy or subproc"
            ) from None
    return VECTOR_ENVS[kind](env_fns)


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

    def actor(self, actions: str = "greedy", seed: int = 0) -> TeamActor:
        """How the team acts when evaluated: ``actions`` is eval.actions (see TeamActor)."""
        policy = self.algorithm.policy
        return TeamActor(policy, self.agents, self.share_generators, self.obs_width, actions, seed)


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
        shared = role == "generator"  # one network for every generator (share_parameters)
        algorithms.append(agents.build(agent_config(cfg, role), obs_space, act_space, total_steps, device,
                                       agent_ids=env.id_columns if shared else None))  # fmt: skip
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
    cfg,
    parts: Parts,
    run_dir: Path,
    progress: bool = True,
    log=print,
    saved: dict | None = None,
    init: dict | None = None,
) -> TrainResult:
    """Train the team through the lockstep adapter (marlgen.lockstep). ``saved``: a checkpoint to
    continue from (marlgen.checkpoint.latest); ``init``: role state dicts to start from (guided
    training carries its team on across rounds)."""
    device = resolve_device(cfg.device)
    seed_everything(cfg)
    learn_judge = cfg.env.critic.judge == "discriminator"
    env_fn = functools.partial(make_env, cfg, parts, learn_judge)
    probe = TeamEnv(env_fn)
    n_copies = cfg.train.n_envs
    if cfg.train.vector_env == "batched":  # every copy in one step (marlgen.batched)
        team_venv = BatchedTeams(env_fn, n_copies)
    else:
        team_venv = make_vector_env(cfg.train.vector_env, [functools.partial(TeamEnv, env_fn)] * n_copies)
    team_venv.seed([cfg.seed * 1000 + i for i in range(n_copies)])
    share = cfg.agents.generator.share_parameters
    lockstep = LockstepVectorEnv(team_venv, probe.agents, share, probe.obs_width, probe.act_width)

    schedule = Schedule.of(cfg, slots=lockstep.env_num)
    team = build_team(cfg, probe.env, lockstep, schedule.total, device)
    for role, state in (init or {}).items():  # Tianshou's load_state_dict pops keys: load a copy
        team.algorithm.get_algorithm(role).load_state_dict(copy.deepcopy(state))
    try:
        return fit(
            cfg, parts, team, lockstep, lockstep.roles, schedule, run_dir, progress, log, team_venv, saved
        )
    finally:
        lockstep.close()


def seed_everything(cfg) -> None:
    torch.set_num_threads(cfg.train.torch_threads)
    # Tianshou samples actions (torch), epsilon draws and replay minibatches (numpy) from the global
    # generators: seed both so a seed fixes the run.
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)


@dataclass
class Schedule:
    """Agent steps (transitions) per collect, per epoch and in all; a collect steps every slot alike."""

    slots: int
    per_collect: int
    per_epoch: int
    total: int

    @classmethod
    def of(cls, cfg, slots: int, step_multiple: int | None = None) -> Schedule:
        multiple = step_multiple or slots
        per_collect = _round_up(cfg.train.steps_per_collect, multiple)
        per_epoch = _round_up(cfg.train.steps_per_epoch, per_collect)
        return cls(slots, per_collect, per_epoch, per_epoch * cfg.train.epochs)


def fit(cfg, parts: Parts, team: Team, venv, roles: list[str], schedule: Schedule, run_dir: Path,
        progress: bool, log, state_venv=None, saved: dict | None = None) -> TrainResult:  # fmt: skip
    """Tianshou's collector and trainer over ``venv``, one epoch at a time, each followed by a
    small-budget evaluation and a checkpoint; the best epoch's policy is kept (shared by the
    lockstep route and the AEC baseline, marlgen.aec).

    ``state_venv``: the vector env whose copies hold the env state a training checkpoint saves
    (marlgen.checkpoint); None writes no training checkpoints (the AEC baseline, whose AEC wrappers
    keep turn state of their own)."""
    algorithm = team.algorithm
    on_policy = isinstance(algorithm, MultiAgentOnPolicyAlgorithm)
    slots = schedule.slots
    buffer_size = schedule.per_collect if on_policy else max(cfg.agents.generator.buffer_size, slots)
    collector = SlotCollector(algorithm, venv, SlotReplayBuffer(buffer_size, slots), exploration_noise=True)
    collector.reset()
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    # training_interval counts env steps, update_interval counts collect-and-update cycles.
    logger = TensorboardLogger(writer, training_interval=schedule.per_collect, update_interval=1)

    def training_fn(epoch: int, env_step: int) -> None:
        # Called before each collect, so after each update: a NaN stops training here, not at the epoch's end.
        guard.check_team(algorithm, roles, cfg, f"in epoch {epoch}{_kept(history, cfg)}")
        progress_fraction = min(env_step / schedule.total, 1.0)
        for role in roles:
            sub = algorithm.get_algorithm(role)
            agents.exploration_schedule(sub, agent_config(cfg, role), progress_fraction)

    common = dict(
        training_collector=collector,
        test_collector=None,  # evaluated below with our own rollout (DESIGN.md, "Traps")
        max_epochs=cfg.train.epochs,
        epoch_num_steps=schedule.per_epoch,
        collection_step_num_env_steps=schedule.per_collect,
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

    training = Training(algorithm, roles, collector, trainer, state_venv)
    checkpoint_path = checkpoint.path_in(run_dir)
    history: list[dict] = []  # one row per epoch (the training_fn above reads it)
    best = {"score": -np.inf, "roles": None}  # the best epoch's objective and role states
    eval_env_fn = functools.partial(make_env, cfg, parts)  # judges do not learn while evaluated
    n_modes = parts.assigner.n_modes
    weights = {"coverage": cfg.env.reward.coverage, "entropy": cfg.env.reward.entropy}
    # What picks the best epoch: the objective the rewards optimise. Episode by episode when each starts
    # empty; over the held-out episodes pooled when the rewards remember earlier ones (env.reward.memory).
    selected_by = "pooled_objective" if cfg.env.reward.memory > 0 else "episode_objective"
    trainer.reset(reset_collectors=False)
    first = 1
    if saved is not None:  # last: building the team above drew from the global RNGs
        checkpoint.restore(saved, training, checkpoint_path)
        history, best, first = saved["history"], saved["best"], saved["epoch"] + 1
        log(f"resuming after epoch {saved['epoch']}/{cfg.train.epochs} from {checkpoint_path}")
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    training_seconds = history[-1]["training_seconds"] if history else 0.0
    for epoch in range(first, cfg.train.epochs + 1):
        where = f"in epoch {epoch}"
        epoch_start = time.perf_counter()
        try:
            trainer.execute_epoch()
        except Exception as err:
            guard.explain(err, algorithm, roles, cfg, f"{where}{_kept(history, cfg)}")
            raise
        training_seconds += time.perf_counter() - epoch_start
        guard.check_team(algorithm, roles, cfg, f"{where}{_kept(history, cfg)}")
        actor = team.actor(cfg.eval.actions, seed=10_000 + epoch)  # as evaluated: the best epoch is picked so
        histograms = team_episodes(eval_env_fn, actor, EVAL_EPISODES, seed=10_000 + epoch)
        row = {
            "epoch": epoch,
            "env_steps": int(trainer._env_step),  # agent steps (transitions) collected so far
            "seconds": round(time.perf_counter() - start, 2),
            "training_seconds": round(training_seconds, 2),  # collect and update only, no evaluation
            "episode_modes_covered": float(np.mean(modes_covered(histograms))),
            # The team objective (coverage + evenness) per episode, and of every episode's samples pooled.
            "episode_objective": float(np.mean([objective(h, **weights) for h in histograms])),
            "pooled_objective": float(objective(np.sum(histograms, axis=0), **weights)),
        }
        history.append(row)
        writer.add_scalar("eval/episode_modes_covered", row["episode_modes_covered"], row["env_steps"])
        log(
            f"epoch {epoch}/{cfg.train.epochs}: {row['env_steps']} agent steps, "
            f"{row['episode_modes_covered']:.2f}/{n_modes} modes per episode, {row['seconds']:.0f} s"
        )
        if row[selected_by] > best["score"]:
            best = {"score": row[selected_by], "roles": role_states(algorithm, roles)}
            row["best"] = True
        if state_venv is not None and (epoch % cfg.train.checkpoint_every == 0 or epoch == cfg.train.epochs):
            checkpoint.save(checkpoint_path, cfg, training, epoch, history, best)
    result = TrainResult(team, history, time.perf_counter() - start)
    last = history[-1]
    save_checkpoint(run_dir / "checkpoints" / "policy.pt", algorithm, roles, last["epoch"], last["env_steps"])
    # Evaluate the epoch with the best team objective on held-out episodes (Tianshou's save_best
    # idea): PPO's last update can undo a good policy, and the final figures should not hinge on it.
    for role, state in best["roles"].items():
        algorithm.get_algorithm(role).load_state_dict(copy.copy(state))
    result.states = role_states(algorithm, roles)
    save_checkpoint(run_dir / "checkpoints" / "best.pt", algorithm, roles, 0, 0)
    log(f"evaluating epoch {evaluated_epoch(history)}'s policy, the best on held-out episodes")
    writer.close()
    return result


@dataclass
class Training:
    """What a training checkpoint saves and restores (marlgen.checkpoint)."""

    algorithm: object
    roles: list[str]
    collector: SlotCollector
    trainer: object
    venv: object  # the env copies (BatchedTeams, or a Tianshou vector env of TeamEnv copies)


def _kept(history: list[dict], cfg) -> str:
    every = cfg.train.checkpoint_every
    saved = [row["epoch"] for row in history if row["epoch"] % every == 0]
    return f" (checkpoints/training.pt from epoch {saved[-1]} is kept)" if saved else " (no checkpoint yet)"


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
    atomic.torch_save({"roles": role_states(algorithm, roles), "epoch": epoch, "env_steps": env_steps}, path)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        return "cpu"  # documented fallback: this machine class has no GPU
    return name


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-value // multiple) * multiple)
