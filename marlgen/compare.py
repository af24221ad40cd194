"""``python -m marlgen.compare SCENARIO --seeds 5 [key=value ...]``: every method, several seeds.

Runs each (method, seed) job of ``marlgen.methods`` in parallel worker processes (or on Ray with
``--ray``), then writes the comparison: ``comparison.md`` (mean and 95% CI per metric and method,
and the paper's three claims as figures), ``results.csv`` (one row per job), ``summary.csv``,
``learning_curves.png`` and ``final_distribution.png``. Re-running the same command continues an
interrupted comparison: jobs already complete are read back, not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from marlgen import atomic
from marlgen.config import ConfigError, load_scenario, to_yaml
from marlgen.methods import METHODS, method_config

# Slowest first, so the pool's last minutes are not one long job on one core.
COST_ORDER = ["team_dqn", "single_agent", "team_ppo", "independent", "no_quality", "drs", "random", "prior"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    try:
        methods = parse_methods(args.methods)
        cfg = load_scenario(args.scenario, args.overrides)
        for method in methods:  # every job's config is valid before any runs
            method_config(args.scenario, args.overrides, method, seeds[0], Path("."))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / f"compare__{cfg.name}__{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    from marlgen.run import set_status, versions

    (out / "comparison.md").unlink(missing_ok=True)  # only a finished comparison has one
    atomic.write_text(out / "config.yaml", to_yaml(cfg))
    atomic.write_text(out / "versions.json", json.dumps(versions(), indent=2) + "\n")
    command = "python -m marlgen.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    study = {"command": command, "scenario": args.scenario, "overrides": args.overrides,
             "methods": methods, "seeds": seeds}  # fmt: skip
    atomic.write_text(out / "study.json", json.dumps(study, indent=2) + "\n")
    set_status(out, "running", "")
    try:
        results, seconds = run_study(args, methods, seeds, out)
    except KeyboardInterrupt:
        set_status(out, "interrupted", "stopped by the user; re-run the same command to continue")
        print(f"interrupted; finished jobs are kept in {out}/runs", file=sys.stderr)
        return 130
    except Exception as err:
        set_status(out, "failed", f"{type(err).__name__}: {err}")
        print(f"error: {type(err).__name__}: {err} (comparison marked failed in {out})", file=sys.stderr)
        return 1
    from marlgen.compare_report import write_comparison

    write_comparison(out, results, cfg, study, seconds)
    set_status(out, "complete", "")
    print(f"comparison complete in {seconds:.0f} s: {out / 'comparison.md'}")
    return 0


def run_study(args, methods: list[str], seeds: list[int], out: Path) -> tuple[list[dict], float]:
    """Pretrain each seed's model once, then every (method, seed) job; results in job order."""
    from marlgen.executors import make_executor

    start = time.perf_counter()
    jobs = [(m, s) for m in sorted(methods, key=COST_ORDER.index) for s in seeds]
    with make_executor(args.workers, args.ray, args.ray_address) as pool:
        log(f"{len(jobs)} jobs ({len(methods)} methods x {len(seeds)} seeds) on {pool.describe()}")
        # Models first, one job per seed: jobs of one seed must not all pretrain the same model at once.
        prepare = [(prepare_seed, (args.scenario, args.overrides, s)) for s in seeds]
        for (_, (_, _, seed)), seconds in pool.run(prepare):
            log(f"seed {seed}: model and modes ready ({seconds:.0f} s)")
        calls = [
            (run_job_in_dir, (args.scenario, args.overrides, m, s, str(job_dir(out, m, s)))) for m, s in jobs
        ]
        results = []
        for done, ((_, (_, _, method, seed, _)), result) in enumerate(pool.run(calls), 1):
            results.append(result)
            fig = result["figures"]
            modes = f"{fig['modes_covered']}/{fig['modes_total']} modes"
            small = f"small budget {fig['small_budget_modes_covered']:.2f}"
            log(f"[{done}/{len(jobs)}] {method} seed {seed}: {modes}, {small}, {result['seconds']:.0f} s")
    order = {job: i for i, job in enumerate(jobs)}
    results.sort(key=lambda r: order[(r["method"], r["seed"])])
    return results, time.perf_counter() - start


def prepare_seed(scenario: str, overrides: list[str], seed: int) -> float:
    """Pretrain (or load from the cache) the model, classifier and judge that seed's jobs share."""
    from marlgen.build import build_parts

    start = time.perf_counter()
    build_parts(load_scenario(scenario, [*overrides, f"seed={seed}"]), progress=False)
    return time.perf_counter() - start


def run_job_in_dir(scenario: str, overrides: list[str], method: str, seed: int, directory: str) -> dict:
    from marlgen.methods import run_job

    os.environ.setdefault("TQDM_DISABLE", "1")  # workers' bars would interleave
    return run_job(scenario, overrides, method, seed, directory)


def job_dir(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / method / f"seed{seed}"


def parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()] if text != "all" else list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ConfigError(
            f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}"
        )
    return names


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m marlgen.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("scenario", help="scenario YAML, e.g. scenarios/gmm_grid25.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every method")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--methods", default="all", help=f"comma list or 'all' ({', '.join(METHODS)})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel worker processes")
    parser.add_argument(
        "--ray", action="store_true", help="run the jobs as Ray tasks (pip install marlgen[ray])"
    )
    parser.add_argument(
        "--ray-address", default=None, help="existing Ray cluster (default: start a local Ray)"
    )
    parser.add_argument("--out", default="", help="output folder (default runs/compare__NAME__TIME)")
    args = parser.parse_intermixed_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be at least 1")
    return args


if __name__ == "__main__":
    sys.exit(main())
