"""The methods a comparison puts side by side, and how one (method, seed) job runs.

A trained method is the scenario plus overrides, trained by ``marlgen.train`` like any run. A
sampling method has no agents to train and draws from the plain model (or random agents act).
Every method is evaluated at the same budgets (``marlgen.evaluate.budgets``), so rows compare.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from marlgen.config import load_scenario, to_yaml


@dataclass(frozen=True)
class Method:
    description: str
    algorithm: str | None = "ppo"  # trained methods: the generators' algorithm (None: not trained)
    overrides: tuple[str, ...] = ()  # applied after the user's overrides

    @property
    def trained(self) -> bool:
        return self.algorithm is not None


METHODS = {
    "team_ppo": Method("the team: PPO generators and critic, difference rewards"),
    "team_dqn": Method("the team with DQN generators and critic", "dqn"),
    "independent": Method(
        "independent learners: each generator rewarded only for what it alone covers (PPO)",
        overrides=("env.reward.credit=individual",),
    ),
    "single_agent": Method(
        "one PPO generator holds the whole budget (one sample per step)", overrides=("env.n_generators=1",)
    ),
    "no_quality": Method(
        "the PPO team without the critic's quality term in the generators' reward",
        overrides=("env.reward.quality=0",),
    ),
    "prior": Method("the plain model sampled from its prior", None),
    "random": Method("random agents: uniformly random anchors and acceptance bars", None),
    "drs": Method("discriminator rejection sampling on the plain model (Azadi et al. 2019)", None),
}


def method_config(scenario: str, overrides: list[str], method: str, seed: int, job_dir: Path):
    """The resolved config of one job; raises ConfigError for a scenario a method cannot run.

    A scenario's own agent preset is kept when it trains the method's algorithm (grid-25's
    ``ppo_fast`` stays ``ppo_fast`` for the PPO methods); otherwise the algorithm's preset
    (``agent=dqn``) replaces it."""
    spec = METHODS[method]
    run = [f"seed={seed}", f"out_dir={job_dir}"]
    cfg = load_scenario(scenario, [*overrides, *spec.overrides, *run])
    if spec.trained and cfg.agents.generator.algorithm != spec.algorithm:
        cfg = load_scenario(scenario, [*overrides, f"agent={spec.algorithm}", *spec.overrides, *run])
    return cfg


def run_job(scenario: str, overrides: list[str], method: str, seed: int, job_dir: str) -> dict:
    """Train (if needed) and evaluate one method for one seed -> {method, seed, figures, history, ...}.

    Runs in a worker process (or a Ray task), so it takes and returns plain data. A job whose
    directory already holds a complete result for the same config is not run again, and a trained
    job stopped mid-training continues from its last training checkpoint (as ``marlgen.run
    --resume``): an interrupted comparison picks up where it stopped.
    """
    from marlgen import atomic
    from marlgen.report import json_safe
    from marlgen.run import make_run_dir, set_status, start_run_dir

    job_dir = Path(job_dir)
    cfg = method_config(scenario, overrides, method, seed, job_dir)
    done = job_dir / "result.json"
    recorded = job_dir / "config.yaml"
    same_config = recorded.is_file() and recorded.read_text() == to_yaml(cfg)
    if done.is_file() and same_config:
        return json.loads(done.read_text())
    # Guided training changes the model before the team trains, which a training checkpoint does not hold.
    resumable = same_config and cfg.model.training != "guided"
    saved = _saved_training(cfg, job_dir) if resumable else None
    if saved is None:
        make_run_dir(cfg)  # a fresh start: clears another config's checkpoints
    else:
        start_run_dir(job_dir, cfg)
    done.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        result = _run(cfg, method, job_dir, saved)
    except BaseException as err:
        set_status(job_dir, "failed", f"{type(err).__name__}: {err}")
        raise
    result.update(method=method, seed=seed, seconds=round(time.perf_counter() - start, 2))
    result["n_agents"] = cfg.env.n_generators + 1
    atomic.write_text(done, json.dumps(json_safe(result), indent=2) + "\n")
    set_status(job_dir, "complete", "")
    return result


def _saved_training(cfg, job_dir: Path) -> dict | None:
    """The job's training checkpoint, or None (none yet, or one this marlgen cannot continue)."""
    from marlgen import checkpoint
    from marlgen.errors import CheckpointError

    try:
        return checkpoint.latest(job_dir, cfg)
    except CheckpointError as err:  # damaged, or another version's: this job trains from epoch 1
        print(f"{job_dir}: {err}; training this job from epoch 1", flush=True)
        return None


def _run(cfg, method: str, job_dir: Path, saved: dict | None = None) -> dict:
    import torch

    from marlgen.build import build_parts
    from marlgen.drs import RejectionSampler
    from marlgen.evaluate import RandomActor, budgets, evaluate_actor, evaluate_sampler, prior

    torch.set_num_threads(cfg.train.torch_threads)
    parts = build_parts(cfg, progress=False)
    at = budgets(cfg, parts.assigner.n_modes)
    team_states = None
    if cfg.model.training == "guided":  # every method of the seed uses the model guidance trained
        from marlgen.shared_rounds import guided_rounds

        team_states = guided_rounds(cfg, parts, job_dir)  # trained by the seed's first job, then loaded
    if METHODS[method].trained:
        from marlgen.train import train

        quiet = lambda *_: None  # noqa: E731
        trained = train(cfg, parts, job_dir, progress=False, log=quiet, saved=saved, init=team_states)
        figures, _ = evaluate_actor(cfg, parts, lambda env: trained.team.actor(cfg.eval.actions, at.seed), at)
        return {"figures": figures, "history": trained.history, "train_seconds": trained.seconds}
    if method == "random":
        figures, _ = evaluate_actor(cfg, parts, lambda env: RandomActor(env, at.seed), at)
    elif method == "prior":
        figures, _ = evaluate_sampler(cfg, parts, lambda n, s: prior(parts.model, parts.assigner, n, s), at)
    elif method == "drs":
        figures, _ = evaluate_sampler(cfg, parts, RejectionSampler(cfg, parts), at)
    else:
        raise ValueError(f"method {method!r} has no sampler")
    return {"figures": figures, "history": [], "train_seconds": 0.0}
