"""``python -m marlgen.run SCENARIO [key=value ...]``: load, build, pretrain, train, evaluate, report.

Presets are picked with ``data=NAME``, ``model=NAME``, ``agent=NAME`` (files in configs/), any
other key with its dotted path, e.g. ``env.n_generators=6 train.epochs=3 out_dir=runs/mine``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from marlgen.config import ConfigError, load_scenario, to_yaml

PACKAGES = ("marlgen", "torch", "torchvision", "tianshou", "pettingzoo", "gymnasium", "numpy", "omegaconf")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # also silences Tianshou's inner update bars
    try:
        cfg = load_scenario(args.scenario, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = make_run_dir(cfg)
    try:
        run(cfg, run_dir, progress=not args.no_progress)
    except KeyboardInterrupt:
        set_status(run_dir, "interrupted", "stopped by the user")
        print(f"interrupted; incomplete run left in {run_dir}", file=sys.stderr)
        return 130
    except Exception as err:  # the run directory must never look complete after a failure
        set_status(run_dir, "failed", f"{type(err).__name__}: {err}")
        (run_dir / "error.txt").write_text(traceback.format_exc())
        print(f"error: {type(err).__name__}: {err}\n(run marked failed in {run_dir}; trace in error.txt)",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"run complete: {run_dir}")
    return 0


def run(cfg, run_dir: Path, progress: bool = True) -> dict:
    """The story of a run; each stage is one call and is timed."""
    from marlgen import report
    from marlgen.build import build_parts
    from marlgen.evaluate import evaluate_methods, image_summary
    from marlgen.train import train

    timings: dict[str, float] = {}
    with stage("pretrain", timings):
        parts = build_parts(cfg, progress=progress)
    model_curve, team_states = list(getattr(parts.model, "curve", [])), None
    if cfg.model.training == "guided":
        from marlgen.guided import guide

        with stage("guide", timings):
            guided = guide(cfg, parts, run_dir, progress=progress)
        model_curve = [row for row in model_curve if row["updates"] < guided.history[0]["updates"]]
        model_curve += guided.history
        team_states = guided.team_states  # the final team carries on from the last round's
    with stage("train", timings):
        trained = train(cfg, parts, run_dir, progress=progress, init=team_states)
    with stage("evaluate", timings):
        results, rollouts = evaluate_methods(cfg, parts, trained.team)
        images = None if parts.dataset.has_density else image_summary(cfg, parts)  # image data only
    with stage("report", timings):
        report.write_metrics(run_dir, results if images is None else {**results, "images": images})
        if images is None:  # 2-D toy data: a scatter plot
            report.plot_samples(run_dir / "samples.png", rollouts, parts.dataset.means, cfg.env.n_generators)
        else:  # images: grids per agent beside the prior's, and each agent's share of every mode
            from marlgen.pictures import write_pictures

            images["pictures"] = write_pictures(run_dir, rollouts, parts, cfg.env.n_generators)
        report.plot_learning_curve(
            run_dir / "learning_curve.png", trained.history, results, parts.assigner.n_modes
        )
        if model_curve:  # the generative model's own training: modes of its prior over generator updates
            report.write_model_curve(run_dir, cfg, model_curve, parts.assigner.n_modes)
    timings["total"] = sum(timings.values())
    report.write_report(
        run_dir, cfg, results, timings, trained.history, parts.judge.name, images, model_curve=model_curve
    )
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    set_status(run_dir, "complete", "")
    print_summary(results, timings)
    if images is not None:
        print(report.image_summary_line(results, images))
    return results


@contextmanager
def stage(name: str, timings: dict):
    print(f"[{name}] ...", flush=True)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    print(f"[{name}] done in {timings[name]:.1f} s", flush=True)


def make_run_dir(cfg) -> Path:
    """runs/{scenario}__{algorithm}__{seed}__{time} unless out_dir is given; config and versions first."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{cfg.name}__{cfg.agents.generator.algorithm}__{cfg.seed}__{stamp}"
    run_dir = Path(cfg.out_dir) if cfg.out_dir else Path("runs") / name
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.json", "report.md", "status.json"):  # a reused directory starts clean
        (run_dir / stale).unlink(missing_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    (run_dir / "versions.json").write_text(json.dumps(versions(), indent=2) + "\n")
    set_status(run_dir, "running", "")
    return run_dir


def set_status(run_dir: Path, state: str, message: str) -> None:
    body = {"state": state, "message": message, "time": datetime.now().isoformat(timespec="seconds")}
    (run_dir / "status.json").write_text(json.dumps(body, indent=2) + "\n")


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = "not installed"
    return out


def print_summary(results: dict, timings: dict) -> None:
    for method, r in results.items():
        print(
            f"{method:>7}: {r['modes_covered']}/{r['modes_total']} modes, "
            f"{100 * r['high_quality_fraction']:.1f}% high quality, reverse KL {r['reverse_kl']:.3f}, "
            f"{r['delivered']}/{r['budget']} delivered; small budget {r['small_budget']}: "
            f"{r['small_budget_modes_covered']:.2f} modes"
        )
    print(f"wall time: {timings['total']:.1f} s")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m marlgen.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("scenario", help="scenario YAML, e.g. scenarios/gmm_ring8.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    return parser.parse_intermixed_args(argv)


if __name__ == "__main__":
    sys.exit(main())
