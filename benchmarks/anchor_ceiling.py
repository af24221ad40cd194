"""The best any fixed mixture of the env's anchors can do: a ceiling for what the team can learn.

    python benchmarks/anchor_ceiling.py scenarios/stacked_digits.yaml cache_dir=/tmp/cache \
        --settings 1.0,1.0 0.8,0.6

However a discrete team acts, its delivered samples over many episodes are a mixture of the anchors'
own output distributions, weighted by how often each anchor is chosen. So the lowest class KL any team
can reach is that of the best mixture. For each (anchor_scale, latent_spread) this estimates every
anchor's class distribution from ``--per-anchor`` jittered decodes, finds the weights that minimise the
expected histogram's KL to uniform (exponentiated gradient on the simplex), then draws the evaluation
budget afresh three ways: the plain prior, anchors chosen uniformly, and anchors drawn from the best
weights. It prints class KL, precision and recall (k = 3, in the classifier's feature space, against
the same real samples evaluation uses) and modes covered. The weights are fitted to a finite estimate,
so the fresh draw's KL is above the fitted one: both are printed. The last column is the team's own
objective, modes covered in small-budget episodes (``eval.small_budget_per_mode`` per mode) drawn as
the team draws: one anchor per agent step, ``env.samples_per_agent`` jittered decodes around each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

from marlgen import metrics  # noqa: E402
from marlgen.build import build_parts, make_env  # noqa: E402
from marlgen.config import load_scenario  # noqa: E402
from marlgen.evaluate import modes_covered  # noqa: E402


def anchor_class_distributions(
    env, assigner, scale: float, spread: float, per_anchor: int, rng
) -> np.ndarray:
    """(K, n_classes): each anchor's class frequencies over ``per_anchor`` jittered decodes."""
    anchors = scale * env.anchors / env.cfg.anchor_scale  # the scenario's own scale undone
    out = np.zeros((len(anchors), assigner.n_modes))
    chunk = max(1, 8192 // per_anchor)
    for start in range(0, len(anchors), chunk):
        centres = np.repeat(anchors[start : start + chunk], per_anchor, axis=0)
        z = centres + spread * rng.standard_normal(centres.shape)
        classes = assigner.classes(env.decode(z)).reshape(-1, per_anchor)
        for i, row in enumerate(classes):
            out[start + i] = np.bincount(row, minlength=assigner.n_modes) / per_anchor
    return out


def draw(env, anchors, weights, spread: float, n: int, rng) -> np.ndarray:
    """n decoded samples: anchors drawn by weight, then jittered as the env jitters them."""
    centres = anchors[rng.choice(len(anchors), n, p=weights)]
    return env.decode(centres + spread * rng.standard_normal(centres.shape))


def episode_modes(
    env, assigner, anchors, weights, spread: float, samples: int, episodes: int, rng
) -> list[int]:
    """Modes covered in each of ``episodes`` small-budget episodes drawn as the team draws them: one
    anchor per agent step, ``samples_per_agent`` jittered decodes around it."""
    per_choice = int(env.cfg.samples_per_agent)
    histograms = []
    for _ in range(episodes):
        chosen = anchors[rng.choice(len(anchors), -(-samples // per_choice), p=weights)]
        centres = np.repeat(chosen, per_choice, axis=0)[:samples]
        modes = assigner(env.decode(centres + spread * rng.standard_normal(centres.shape)))
        histograms.append(metrics.mode_histogram(modes, assigner.n_modes))
    return modes_covered(histograms)


def best_weights(p: np.ndarray, steps: int = 3000, step_size: float = 0.5) -> np.ndarray:
    """Mixture weights w minimising KL(w @ p || uniform), by exponentiated gradient."""
    w = np.full(len(p), 1.0 / len(p))
    for _ in range(steps):
        q = w @ p + 1e-12
        grad = p @ (np.log(q) + 1.0)
        w *= np.exp(-step_size * (grad - grad.min()))
        w /= w.sum()
    return w


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("overrides", nargs="*", help="key=value, as for marlgen.run")
    parser.add_argument("--settings", nargs="+", default=["1.0,1.0", "0.8,0.6"], help="anchor_scale,spread")
    parser.add_argument("--per-anchor", type=int, default=160, help="decodes per anchor for its distribution")
    args = parser.parse_args(argv)

    cfg = load_scenario(args.scenario, args.overrides)
    parts = build_parts(cfg)
    env, assigner = make_env(cfg, parts), parts.assigner
    budget, n_modes = int(cfg.eval.budget), assigner.n_modes
    real_features = assigner.features(parts.dataset.samples[:budget])
    rng = np.random.default_rng(cfg.seed)
    episode_rng = np.random.default_rng([cfg.seed, 1])  # its own stream: the other columns draw as before

    small = n_modes * int(cfg.eval.small_budget_per_mode)
    episodes = int(cfg.eval.small_budget_episodes)

    def small_budget(anchors, weights, spread) -> str:
        covered = episode_modes(env, assigner, anchors, weights, spread, small, episodes, episode_rng)
        return f"{np.mean(covered):.1f}"

    def figures(x) -> str:
        classes, modes = assigner.classes(x), assigner(x)
        pr = metrics.prdc(real_features, assigner.features(x), k_pr=3, k_dc=int(cfg.eval.knn_k))
        kl = metrics.class_histogram_kl(classes, n_modes)
        (covered,) = modes_covered([metrics.mode_histogram(modes, n_modes)])
        return f"{kl:.3f} | {pr['precision']:.3f} | {pr['recall']:.3f} | {covered}"

    prior_episodes = [
        metrics.mode_histogram(
            assigner(env.decode(episode_rng.standard_normal((small, env.latent_dim)))), n_modes
        )
        for _ in range(episodes)
    ]
    prior_small = np.mean(modes_covered(prior_episodes))
    prior = env.decode(rng.standard_normal((budget, env.latent_dim)))
    rows = [f"| prior | | {figures(prior)} | {prior_small:.1f} |"]
    for setting in args.settings:
        scale, spread = (float(v) for v in setting.split(","))
        p = anchor_class_distributions(env, assigner, scale, spread, args.per_anchor, rng)
        w = best_weights(p)
        q = w @ p
        fitted = float((q[q > 0] * np.log(q[q > 0] * n_modes)).sum())
        anchors = scale * env.anchors / env.cfg.anchor_scale

        uniform = np.full(len(anchors), 1.0 / len(anchors))
        used = int((w > 1e-3).sum())
        x_uniform, x_best = (draw(env, anchors, weights, spread, budget, rng) for weights in (uniform, w))
        rows.append(f"| scale {scale}, spread {spread}: uniform anchors | | {figures(x_uniform)} | "
                    f"{small_budget(anchors, uniform, spread)} |")  # fmt: skip
        rows.append(f"| scale {scale}, spread {spread}: best mixture ({used} anchors above 0.1%) | "
                    f"{fitted:.3f} | {figures(x_best)} | {small_budget(anchors, w, spread)} |")  # fmt: skip
        print(rows[-2], rows[-1], sep="\n", flush=True)
    print(f"\n{budget} samples each, {args.per_anchor} decodes per anchor, {len(env.anchors)} anchors\n")
    print(
        f"| draw | fitted KL | class KL | precision | recall | modes | modes in {small} samples "
        f"(mean of {episodes} episodes) |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
