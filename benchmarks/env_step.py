"""Env step against a bare decoder forward on the same number of latents, by agents and samples per agent.

    python benchmarks/env_step.py                      # toy grid-25 VAE, digits and CIFAR conv GANs
    python benchmarks/env_step.py cache_dir=/tmp/cache --only toy

For every (N generators, m samples per agent) the two contenders run in alternation (see
benchmarks/timing.py): ``decoder``, the model's ``decode`` on N*m latents, and ``step``, one
``CoverageEnv.step`` with random actions (decode, judge, modes, rewards, observations). The image
envs are timed twice: as in evaluation, and as in training, where the discriminator judge also takes
one gradient step per env step (``learn_judge``). Image models are briefly pretrained: a forward
pass costs the same whatever the weights, and the figures are times, not quality.

For the toy model a second table times ``BatchedTeams`` (training's K env copies stepped together)
against the decoder on all K*N*m latents. With ``--classifier`` the image cases also time the mode
classifier alone on the N*m decoded samples: its folded inference form (``TrainedClassifier.predict``)
against the plain module in eval mode, chunked as ``predict`` ran it before the fold
(docs/performance.md, 1.5), beside the decoder.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

from benchmarks.timing import interleaved, markdown_table  # noqa: E402
from marlgen.batched import BatchedTeams  # noqa: E402
from marlgen.build import build_parts, make_env  # noqa: E402
from marlgen.config import load_scenario  # noqa: E402
from marlgen.models.conv import in_chunks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICK_IMAGES = [
    "model.train_steps=200",
    "modes.classifier.train_steps=100",
    "env.critic.disc_warmup_steps=20",
]
BATCHED_GRID = [(16, 4, 1), (16, 16, 1), (16, 64, 1), (64, 4, 1), (16, 4, 4), (16, 16, 4)]
CASES = {  # name: (scenario, overrides, (N, m) grid, learn_judge settings)
    "toy": (
        "scenarios/gmm_grid25.yaml",
        [],
        [(n, m) for m in (1, 4, 16, 64) for n in (1, 4, 16, 64)],
        (False,),
    ),
    "digits": (
        "scenarios/digits_coverage.yaml",
        QUICK_IMAGES,
        [(4, 4), (4, 64), (16, 16), (64, 4)],
        (False, True),
    ),
    "cifar": (
        "scenarios/cifar_coverage.yaml",
        QUICK_IMAGES,
        [(4, 4), (4, 64), (16, 16), (64, 4)],
        (False, True),
    ),
}


def time_env(cfg, parts, n: int, m: int, learn_judge: bool, rounds: int) -> dict:
    env = make_env(
        cfg, parts, learn_judge, n_generators=n, samples_per_agent=m, episode_budget=n * m * 10_000
    )
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for i, a in enumerate(env.possible_agents):
        env.action_space(a).seed(i)
    actions = [{a: env.action_space(a).sample() for a in env.possible_agents} for _ in range(64)]
    z = torch.from_numpy(rng.standard_normal((n * m, env.latent_dim)).astype(np.float32))
    count = iter(range(10**9))

    @torch.inference_mode()
    def decoder():
        env.model.decode(z)

    def step():
        env.step(actions[next(count) % len(actions)])
        if not env.agents:
            env.reset()

    t = interleaved({"decoder": decoder, "step": step}, rounds)
    return {"N": n, "m": m, "samples": n * m, **t}


def module_predict(classifier, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``TrainedClassifier.predict`` as it ran before the fold: the plain module (eval mode), in chunks."""
    net, labels, probs, feats = classifier.net, [], [], []
    with torch.inference_mode():
        for part in in_chunks(x, net.trunk[0].out_channels * int(np.prod(x.shape[2:]))):
            f = net.features(torch.as_tensor(np.asarray(part, dtype=np.float32)))
            top, cls = torch.softmax(net.head(f), dim=1).max(1)
            labels.append(cls.numpy()), probs.append(top.numpy()), feats.append(f.numpy())
    return np.concatenate(labels), np.concatenate(probs), np.concatenate(feats)


def time_classifier(parts, n: int, m: int, rounds: int) -> dict:
    """The mode classifier alone on N*m decoded samples, folded and plain, beside the decoder."""
    classifier = parts.assigner.classifier
    z = torch.from_numpy(np.random.default_rng(0).standard_normal((n * m, parts.model.latent_dim))).float()

    @torch.inference_mode()
    def decoder():
        return parts.model.decode(z)

    x = decoder().numpy()
    contenders = {
        "decoder": decoder,
        "module": lambda: module_predict(classifier, x),
        "folded": lambda: classifier.predict(x),
    }
    return interleaved(contenders, rounds)


def time_batched(cfg, parts, copies: int, n: int, m: int, rounds: int) -> dict:
    """BatchedTeams (training's env copies, stepped together) against the decoder on all their latents."""
    env_fn = functools.partial(make_env, cfg, parts, False, n_generators=n, samples_per_agent=m,
                               episode_budget=n * m * 10_000)  # fmt: skip
    venv = BatchedTeams(env_fn, copies)
    venv.seed(list(range(copies)))
    rng = np.random.default_rng(0)
    n_actions = [venv.env.action_space(a).n for a in venv.agents]
    actions = [np.stack([rng.integers(k, size=copies) for k in n_actions], 1)[..., None].astype(np.float32)
               for _ in range(64)]  # fmt: skip
    z = torch.from_numpy(rng.standard_normal((copies * n * m, venv.d)).astype(np.float32))
    count = iter(range(10**9))

    @torch.inference_mode()
    def decoder():
        venv.env.model.decode(z)

    def step():
        venv.step(actions[next(count) % len(actions)])

    t = interleaved({"decoder": decoder, "step": step}, rounds)
    return {"K": copies, "N": n, "m": m, "samples": copies * n * m, **t}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "overrides", nargs="*", help="key=value for every scenario, e.g. cache_dir=/tmp/cache"
    )
    parser.add_argument("--only", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--grid", nargs="*", default=None, help="N,m pairs to time instead, e.g. 4,64 16,16")
    parser.add_argument("--classifier", action="store_true", help="image cases: time the mode classifier too")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.only:
        scenario, extra, grid, judge_modes = CASES[name]
        grid = [tuple(int(v) for v in pair.split(",")) for pair in args.grid] if args.grid else grid
        cfg = load_scenario(ROOT / scenario, [*extra, *args.overrides])
        parts = build_parts(cfg, progress=False)
        for learn_judge in judge_modes:
            rows = []
            for n, m in grid:
                r = time_env(cfg, parts, n, m, learn_judge, args.rounds)
                ratio = r["step"] / r["decoder"]
                rows.append([r["N"], r["m"], r["samples"], 1e6 * r["decoder"], 1e6 * r["step"], ratio,
                             r["samples"] / r["step"], 1 / r["step"]])  # fmt: skip
            title = f"{name} ({cfg.model.kind}, {scenario}{', judge learning' if learn_judge else ''})"
            print(f"\n### {title}\n")
            header = ["N", "m", "samples", "decoder us", "step us", "step/decoder", "samples/s", "steps/s"]
            print(markdown_table(header, rows), flush=True)
        if args.classifier and hasattr(parts.assigner, "classifier"):
            rows = []
            for n, m in grid:
                r = time_classifier(parts, n, m, args.rounds)
                dec, plain, folded = r["decoder"], r["module"], r["folded"]
                rows.append([n, m, n * m, 1e3 * dec, 1e3 * plain, 1e3 * folded, folded / plain, folded / dec])
            print(f"\n### {name}, the mode classifier alone: plain module against its folded form\n")
            header = ["N", "m", "samples", "decoder ms", "module ms", "folded ms", "folded/module"]
            header.append("folded/decoder")
            print(markdown_table(header, rows), flush=True)
        if name == "toy" and not args.grid:
            rows = []
            for copies, n, m in BATCHED_GRID:
                r = time_batched(cfg, parts, copies, n, m, args.rounds)
                rows.append([r["K"], r["N"], r["m"], r["samples"], 1e6 * r["decoder"], 1e6 * r["step"],
                             r["step"] / r["decoder"], r["samples"] / r["step"]])  # fmt: skip
            print(f"\n### {name}, env copies stepped together (BatchedTeams, as in training)\n")
            header = ["copies K", "N", "m", "samples", "decoder us", "step us", "step/decoder", "samples/s"]
            print(markdown_table(header, rows), flush=True)


if __name__ == "__main__":
    main()
