"""Training throughput and learning side by side: shared parameters, per-agent policies, the AEC route.

    python benchmarks/training.py cache_dir=/tmp/cache
    python benchmarks/training.py cache_dir=/tmp/cache --agents 16 --algorithms ppo --routes shared aec

Every run trains the grid-25 scenario with N generators on episodes of two env steps (2N samples),
for the same budget of agent steps (transitions: one per agent per env step), one run after the
other in this process:

- ``shared``: the lockstep adapter, one network for all generators (marlgen.train);
- ``shared-gains``: the same network with per-agent gains on its last hidden layer (agents.gains);
- ``per-agent``: the lockstep adapter, one network per generator;
- ``aec``: Tianshou's own route, one network per agent, one collector step per agent's turn
  (marlgen.aec).

With ``--seeds K`` every route runs K seeds (0..K-1), one seed after the other (all routes of a seed
together, so a change of load hits a seed's routes alike); a last table gives the means over seeds.

Reported: agent steps per second of training (collect and update; the per-epoch evaluation is left
out), and the team's modes covered per episode in the per-epoch evaluation (20 held-out episodes,
greedy), best and last epoch. Ratios are against the AEC route at the same N and algorithm: of
throughput, and of the training seconds to the first epoch at the level both the route and the AEC
route reached (the lower of their best epochs: equal learning results).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

from benchmarks.timing import markdown_table  # noqa: E402
from marlgen.aec import train_aec  # noqa: E402
from marlgen.build import build_parts  # noqa: E402
from marlgen.config import load_scenario  # noqa: E402
from marlgen.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROUTES = {  # name: (trainer, overrides)
    "shared": (train, ["agents.generator.share_parameters=true"]),
    "shared-gains": (train, ["agents.generator.share_parameters=true", "agents.generator.agent_gains=true"]),
    "per-agent": (train, ["agents.generator.share_parameters=false"]),
    "aec": (train_aec, ["train.vector_env=dummy"]),  # AEC envs move one turn at a time: nothing to batch
}


def run(
    route: str, n_agents: int, algorithm: str, epochs: int, steps_per_epoch: int, overrides: list[str]
) -> dict:
    trainer, extra = ROUTES[route]
    cfg = load_scenario(
        ROOT / "scenarios/gmm_grid25.yaml",
        [f"agent={algorithm}", f"env.n_generators={n_agents}", f"env.episode_budget={2 * n_agents}",
         f"train.epochs={epochs}", f"train.steps_per_epoch={steps_per_epoch}", *extra, *overrides],
    )  # fmt: skip
    parts = build_parts(cfg, progress=False)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = trainer(cfg, parts, Path(run_dir), progress=False, log=lambda *a: None)
    last = result.history[-1]
    return {
        "route": route,
        "N": n_agents,
        "algorithm": algorithm,
        "agent_steps": last["env_steps"],
        "training_s": last["training_seconds"],
        "wall_s": time.perf_counter() - start,
        "steps_per_s": last["env_steps"] / last["training_seconds"],
        "best_modes": max(row["episode_modes_covered"] for row in result.history),
        "last_modes": last["episode_modes_covered"],
        "ceiling": min(parts.assigner.n_modes, 2 * n_agents),
        "curve": [(row["training_seconds"], row["episode_modes_covered"]) for row in result.history],
    }


def seconds_to(curve: list[tuple[float, float]], level: float) -> float:
    """Training seconds at the first epoch whose evaluation covers at least ``level`` modes."""
    return next((seconds for seconds, modes in curve if modes >= level), float("nan"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="key=value for every run, e.g. cache_dir=/tmp/cache")
    parser.add_argument("--agents", nargs="*", type=int, default=[4, 16])
    parser.add_argument("--algorithms", nargs="*", default=["ppo_fast", "dqn"], help="agent presets")
    parser.add_argument("--routes", nargs="*", choices=list(ROUTES), default=list(ROUTES))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=4096)
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1 per route")
    args = parser.parse_args(argv)
    rows, means = [], []
    for algorithm in args.algorithms:
        for n in args.agents:
            per_seed = []
            for seed in range(args.seeds):
                results = {}
                for route in args.routes:
                    overrides = [*args.overrides, f"seed={seed}"]
                    r = run(route, n, algorithm, args.epochs, args.steps_per_epoch, overrides)
                    results[route] = r
                    print(f"{algorithm} N={n} seed={seed} {route}: {r}", flush=True)
                per_seed.append(compare(results))
                rows += [[algorithm, n, seed, *row] for row in per_seed[-1]]
            means += [[algorithm, n, route, *np.mean([seed_rows[i][1:] for seed_rows in per_seed], axis=0)]
                      for i, route in enumerate(args.routes)]  # fmt: skip
    header = ["algorithm", "N", "seed", "route", "agent steps", "training s", "agent steps/s", "x AEC",
              "modes best", "modes last", "level (it and AEC)", "s to level", "x AEC to level"]  # fmt: skip
    print("\n" + markdown_table(header, rows), flush=True)
    if args.seeds > 1:
        header = [h for h in header if h != "seed"]
        print(f"\nMeans over {args.seeds} seeds:\n\n" + markdown_table(header, means), flush=True)


def compare(results: dict) -> list[list]:
    """One row per route at one seed: throughput against the AEC route (when run), and the training
    seconds to the level both it and the AEC route reached (the lower of their best epochs)."""
    base = results.get("aec")
    rows = []
    for route, r in results.items():
        level = min(r["best_modes"], base["best_modes"]) if base else r["best_modes"]
        ratio = r["steps_per_s"] / base["steps_per_s"] if base else float("nan")
        to_level = seconds_to(r["curve"], level)
        speedup = seconds_to(base["curve"], level) / to_level if base else float("nan")
        rows.append([route, r["agent_steps"], r["training_s"], r["steps_per_s"], ratio, r["best_modes"],
                     r["last_modes"], level, to_level, speedup])  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
