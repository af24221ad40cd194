"""Rollouts of the trained team and the baselines at one sample budget, and their figures.

Budgets count decoder forward passes: a sample the critic rejects was still paid for. Figures are
computed on the samples *delivered* (accepted); both counts are reported.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tianshou.data import Batch, to_numpy

from marlgen import metrics
from marlgen.lockstep import role_of


@dataclass
class Rollout:
    samples: np.ndarray  # (n_decoded, *data_shape)
    modes: np.ndarray  # (n_decoded,) -1 none
    accepted: np.ndarray  # (n_decoded,) bool
    agent: np.ndarray  # (n_decoded,) generator index, -1 for the prior
    choice: np.ndarray | None = None  # (n_decoded,) anchor a team sample came from (-1: continuous centre)


ACTIONS = ("sample", "greedy")  # eval.actions: how a trained team acts when it is evaluated


class TeamActor:
    """Acts for every agent of a CoverageEnv with a trained multi-agent Tianshou policy.

    ``actions="greedy"`` replays the policy's deterministic choice (PPO's most likely action, DQN's
    best Q): the same anchors in every episode from the same observations. ``"sample"`` draws each
    action as the policy did in training (PPO from its distribution, DQN epsilon-greedy at its last
    training epsilon), which is how a generator is used: a fresh draw per episode. The draws come
    from the actor's own random state, seeded by ``seed``, so an evaluation is reproducible and
    leaves the global generators (training's) untouched.
    """

    def __init__(self, policy, agents: list[str], share_generators: bool, obs_width: int,
                 actions: str = "greedy", seed: int = 0):  # fmt: skip
        if actions not in ACTIONS:
            raise ValueError(f"actions={actions!r}: pick one of {', '.join(ACTIONS)}")
        self.policy, self.obs_width = policy, obs_width
        self.agents = agents
        self.roles = np.array([role_of(a, share_generators) for a in agents])
        self.rng = OwnRandomState(seed) if actions == "sample" else None

    def __call__(self, obs: dict) -> dict:
        padded = np.zeros((len(self.agents), self.obs_width), dtype=np.float32)
        for i, a in enumerate(self.agents):
            padded[i, : len(obs[a])] = obs[a]
        act = self._act(Batch(agent_id=self.roles, obs=padded))
        return {a: act[i] for i, a in enumerate(self.agents)}

    def act_stacked(self, obs: np.ndarray) -> np.ndarray:
        """(K, A, W) observations of K env copies (marlgen.batched) -> (K, A, action width) actions."""
        k, n_agents = len(obs), len(self.agents)
        rows = Batch(agent_id=np.tile(self.roles, k), obs=np.asarray(obs).reshape(k * n_agents, -1))
        return np.asarray(self._act(rows), dtype=np.float32).reshape(k, n_agents, -1)

    @torch.no_grad()
    def _act(self, obs: Batch) -> np.ndarray:
        self.policy.eval()
        batch = Batch(obs=obs, info={})
        if self.rng is None:
            return self.policy.map_action(self.policy(batch).act)
        with self.rng, acting_as_in_training(self.policy):
            act = to_numpy(self.policy(batch).act)
            act = self.policy.add_exploration_noise(act, batch)  # DQN's epsilon; PPO adds none
        return self.policy.map_action(act)


class OwnRandomState:
    """A private torch and numpy random state, swapped in while ``with``-ed: Tianshou draws actions
    (torch) and epsilon (numpy) from the global generators, which training's seed owns."""

    def __init__(self, seed: int):
        self.torch_state = torch.Generator().manual_seed(seed).get_state()
        self.numpy_state = np.random.RandomState(seed).get_state()

    def __enter__(self):
        self._saved = torch.get_rng_state(), np.random.get_state()
        torch.set_rng_state(self.torch_state)
        np.random.set_state(self.numpy_state)

    def __exit__(self, *exc):
        self.torch_state, self.numpy_state = torch.get_rng_state(), np.random.get_state()
        torch.set_rng_state(self._saved[0])
        np.random.set_state(self._saved[1])


@contextmanager
def acting_as_in_training(policy):
    """The policy's training-step flag, which makes Tianshou's policies act stochastically."""
    before = policy.is_within_training_step
    policy.is_within_training_step = True
    try:
        yield
    finally:
        policy.is_within_training_step = before


class RandomActor:
    """Uniformly random actions for every agent: the no-learning baseline."""

    def __init__(self, env, seed: int):
        self.env = env
        for i, a in enumerate(env.possible_agents):
            env.action_space(a).seed(seed + i)

    def __call__(self, obs: dict) -> dict:
        return {a: self.env.action_space(a).sample() for a in self.env.possible_agents}


def steer(env, actor, budget: int, seed: int) -> tuple[Rollout, list[int]]:
    """Episodes until `budget` samples are decoded; also each complete episode's team histogram."""
    records, decoded, episode, histograms = [], 0, 0, []
    while decoded < budget:
        obs, _ = env.reset(seed=seed + episode)
        while env.agents and decoded < budget:
            obs, *_ = env.step(actor(obs))
            records.append(env.last)
            decoded += len(env.last.modes)
        if not env.agents:
            histograms.append(env.team_hist.copy())
        episode += 1
    cat = lambda field: np.concatenate([getattr(r, field) for r in records])[:budget]  # noqa: E731
    rollout = Rollout(cat("samples"), cat("modes"), cat("accepted"), cat("agent"), cat("choice"))
    return rollout, histograms


def team_episodes(env_fn, actor: TeamActor, episodes: int, seed: int) -> list[np.ndarray]:
    """The team's final mode histogram in each of ``episodes`` episodes, run side by side as
    copies of one BatchedTeams (one decode and one policy pass per step for all of them). Episode e
    is seeded seed + e, as ``steer`` seeds its episodes one after the other."""
    from marlgen.batched import BatchedTeams

    venv = BatchedTeams(env_fn, episodes)
    obs, _ = venv.reset(seed=[seed + e for e in range(episodes)])
    done = np.zeros(episodes, dtype=bool)
    while not done.all():
        obs, _, done, _, _ = venv.step(actor.act_stacked(obs))
    return list(venv.team_hist.copy())


def modes_covered(histograms: list[np.ndarray]) -> list[int]:
    return [int((h > 0).sum()) for h in histograms]


def prior(model, assigner, budget: int, seed: int) -> Rollout:
    """The plain model sampled from its prior: every decoded sample is delivered."""
    with torch.inference_mode():
        x = model.sample_prior(budget, generator=torch.Generator().manual_seed(seed)).numpy()
    return Rollout(x, assigner(x), np.ones(budget, bool), np.full(budget, -1))


def prior_figures(model, assigner, budget: int, seed: int) -> dict:
    """Modes covered, high-quality fraction and reverse KL of ``budget`` prior samples: how good the
    model itself is (its learning curves, conventional or guided, are these figures over updates)."""
    return metrics.mode_figures(prior(model, assigner, budget, seed).modes, assigner.n_modes)


def prior_small_budget(model, assigner, n_samples: int, episodes: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    covered = []
    with torch.inference_mode():
        for _ in range(episodes):
            modes = assigner(model.sample_prior(n_samples, generator=generator).numpy())
            covered.append(int(len(np.unique(modes[modes >= 0]))))
    return covered


def figures(
    rollout: Rollout, real: np.ndarray, n_modes: int, knn_k: int, true_std: float | None, assigner=None
) -> dict:
    """The report's figures for one method's delivered samples.

    ``assigner`` (images): PRDC in its feature space instead of raw values, plus image_figures.
    """
    delivered = rollout.accepted
    modes = rollout.modes[delivered]
    samples = rollout.samples[delivered]
    out = metrics.mode_figures(modes, n_modes)
    out["budget"] = int(len(rollout.modes))  # decoder forward passes spent
    out["delivered"] = int(delivered.sum())
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    if assigner is not None:  # images: compare in the classifier's (or PCA) feature space
        flat = assigner.features
        out.update(image_figures(samples, real, assigner))
    if len(samples) > knn_k:
        out.update(metrics.prdc(flat(real), flat(samples), k_pr=3, k_dc=knn_k))
    hq = modes >= 0
    out["within_mode_spread"] = metrics.within_mode_spread(samples[hq], modes[hq])
    if true_std is not None:
        out["true_std"] = float(true_std)
    return out


def image_figures(samples: np.ndarray, real: np.ndarray, assigner) -> dict:
    """Frechet distance in the assigner's feature space (``frechet_classifier``: not FID, the features
    are our classifier's penultimate layer, not Inception's) and the reverse KL of the class histogram
    of every delivered sample (confident or not)."""
    out = {"frechet_classifier": float("nan"), "class_kl": float("nan")}
    if len(samples) >= 2:
        out["frechet_classifier"] = metrics.frechet_distance(
            assigner.features(real), assigner.features(samples)
        )
        out["class_kl"] = metrics.class_histogram_kl(assigner.classes(samples), assigner.n_modes)
    return out


def evaluated_epoch(history: list[dict]) -> int | None:
    """The epoch training keeps for evaluation: the last one marked best (each beat every earlier one)."""
    return max((row["epoch"] for row in history if row.get("best")), default=None)


def real_reference(cfg, parts) -> dict:
    """Held-out real images scored like a method: what the classifier and the metrics make of real data."""
    test = parts.dataset.test_samples[: cfg.eval.budget]
    modes = parts.assigner(test)
    rollout = Rollout(test, modes, np.ones(len(test), bool), np.full(len(test), -1))
    real = parts.dataset.samples[: cfg.eval.budget]
    out = figures(rollout, real, parts.assigner.n_modes, cfg.eval.knn_k, None, parts.assigner)
    return {**out, "n_images": len(test)}  # fewer than eval.budget when the test split is smaller


def image_summary(cfg, parts) -> dict:
    """What an image report states besides the methods' rows: the assigner, the classifier's held-out
    accuracy, and the held-out real images' own figures as a reference row."""
    assigner = parts.assigner
    classifier = getattr(assigner, "classifier", None)
    out = {"assigner": assigner.name, "n_modes": assigner.n_modes, "judge": parts.judge.name}
    if classifier is not None:
        out.update(
            classifier_accuracy=classifier.accuracy,
            classifier_test_images=classifier.n_test,
            classifier_train_seconds=classifier.train_seconds,
            confidence=assigner.confidence,
        )
    out["real_held_out"] = real_reference(cfg, parts)
    return out


def small_budget_figures(covered: list[int], n_samples: int) -> dict:
    mean, half = metrics.mean_ci95(covered)
    return {
        "small_budget": int(n_samples),
        "small_budget_modes_covered": float(mean),
        "small_budget_modes_ci95": float(half),
        "small_budget_episodes": len(covered),
    }


@dataclass
class Budgets:
    """Where and how much every method is evaluated: the same for all, so their figures compare."""

    budget: int  # decoded samples for the main figures
    small: int  # decoded samples per small-budget episode (a multiple of the samples per env step)
    episodes: int
    seed: int  # evaluation draws differ from training draws


def budgets(cfg, n_modes: int) -> Budgets:
    per_step = cfg.env.n_generators * cfg.env.samples_per_agent
    small = -(-cfg.eval.small_budget_per_mode * n_modes // per_step) * per_step
    return Budgets(cfg.eval.budget, small, cfg.eval.small_budget_episodes, cfg.seed + 1)


def _figures(cfg, parts, rollout: Rollout, covered: list[int], small: int) -> dict:
    image = None if parts.dataset.has_density else parts.assigner  # images: feature-space figures
    real = parts.dataset.samples[: cfg.eval.budget]
    out = figures(rollout, real, parts.assigner.n_modes, cfg.eval.knn_k, parts.dataset.std, image)
    out.update(small_budget_figures(covered, small))
    return out


def evaluate_actor(cfg, parts, make_actor, at: Budgets | None = None) -> tuple[dict, Rollout]:
    """Agents acting in the env (``make_actor(env) -> actor``): the budget's figures and rollout."""
    from marlgen.build import make_env

    at = at or budgets(cfg, parts.assigner.n_modes)
    env = make_env(cfg, parts)
    rollout, _ = steer(env, make_actor(env), at.budget, at.seed)
    small_env = make_env(cfg, parts, episode_budget=at.small)
    _, histograms = steer(small_env, make_actor(small_env), at.small * at.episodes, at.seed)
    return _figures(cfg, parts, rollout, modes_covered(histograms), at.small), rollout


def evaluate_sampler(cfg, parts, sample, at: Budgets) -> tuple[dict, Rollout]:
    """A method without agents (``sample(budget, seed) -> Rollout``), at the same budgets."""
    rollout = sample(at.budget, at.seed)
    covered = []
    for episode in range(at.episodes):
        r = sample(at.small, at.seed + 1 + episode)
        covered.append(int(len(np.unique(r.modes[r.accepted & (r.modes >= 0)]))))
    return _figures(cfg, parts, rollout, covered, at.small), rollout


def evaluate_methods(cfg, parts, team) -> tuple[dict, dict]:
    """Team, plain prior and random agents at the same budgets -> (figures, rollouts by method)."""
    at = budgets(cfg, parts.assigner.n_modes)
    results, rollouts = {}, {}
    team_actor = lambda env: team.actor(cfg.eval.actions, at.seed)  # noqa: E731
    results["team"], rollouts["team"] = evaluate_actor(cfg, parts, team_actor, at)
    sample_prior = functools.partial(prior, parts.model, parts.assigner)
    results["prior"], rollouts["prior"] = evaluate_sampler(cfg, parts, sample_prior, at)
    random_actor = lambda env: RandomActor(env, at.seed)  # noqa: E731
    results["random"], rollouts["random"] = evaluate_actor(cfg, parts, random_actor, at)
    return results, rollouts
