"""``python -m marlgen.run SCENARIO [key=value ...]``: load, build, pretrain, train, evaluate, report.

Continue a stopped run (killed, interrupted, failed) from its last checkpoint:
``python -m marlgen.run --resume RUN_DIR``.

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

from marlgen import atomic
from marlgen.config import ConfigError, load_config_file, load_scenario, to_yaml
from marlgen.errors import CheckpointError, MarlgenError

# Written only when a run completes; a resumed or reused run directory starts without them.
FINAL_OUTPUTS = (
    "metrics.json", "report.md", "timings.json", "error.txt", "samples.png", "learning_curve.png",
    "grids.png", "mode_shares.png", "team_grid.png", "prior_grid.png",
)  # fmt: skip
PACKAGES = ("marlgen", "torch", "torchvision", "tianshou", "pettingzoo", "gymnasium", "numpy", "omegaconf")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # also silences Tianshou's inner update bars
    try:
        if args.resume:
            run_dir = Path(args.resume)
            cfg = resume_config(run_dir)
            if cfg is None:
                print(f"{run_dir}: the run is already complete; nothing to resume")
                return 0
            start_run_dir(run_dir, cfg)
        else:
            cfg = load_scenario(args.scenario, args.overrides)
            run_dir = make_run_dir(cfg)
    except (ConfigError, MarlgenError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        run(cfg, run_dir, progress=not args.no_progress, resume=bool(args.resume))
    except KeyboardInterrupt:
        set_status(run_dir, "interrupted", "stopped by the user")
        print(f"interrupted; incomplete run left in {run_dir} (continue: --resume {run_dir})",
              file=sys.stderr)  # fmt: skip
        return 130
    except Exception as err:  # the run directory must never look complete after a failure
        set_status(run_dir, "failed", f"{type(err).__name__}: {err}")
        (run_dir / "error.txt").write_text(traceback.format_exc())
        bad_input = isinstance(err, (ConfigError, CheckpointError))
        what = str(err) if isinstance(err, (ConfigError, MarlgenError)) else f"{type(err).__name__}: {err}"
        print(f"error: {what}\n(run marked failed in {run_dir}; trace in error.txt)", file=sys.stderr)
        return 2 if bad_input else 1
    print(f"run complete: {run_dir}")
    return 0


def run(cfg, run_dir: Path, progress: bool = True, resume: bool = False) -> dict:
    """The story of a run; each stage is one call and is timed."""
    from marlgen import checkpoint, report
    from marlgen.build import build_parts
    from marlgen.evaluate import evaluate_methods, image_summary
    from marlgen.train import train

    timings: dict[str, float] = {}
    saved = None
    if resume and cfg.model.training == "guided":
        raise ConfigError(
            f"--resume {run_dir}: guided training (model.training=guided) cannot resume yet: its rounds "
            "change the model, which training checkpoints do not hold; start a new run"
        )
    if resume:  # a bad or foreign checkpoint fails here, before pretraining
        saved = checkpoint.latest(run_dir, cfg)
        if saved is None:
            print("no checkpoint yet: training starts at epoch 1")
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
        trained = train(cfg, parts, run_dir, progress=progress, saved=saved, init=team_states)
    with stage("evaluate", timings):
        results, rollouts = evaluate_methods(cfg, parts, trained.team)
        images = None if parts.dataset.has_density else image_summary(cfg, parts)  # image data only
    with stage("report", timings):
        metrics = results if images is None else {**results, "images": dict(images)}
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
    # The final outputs last, then the status: a run killed before this point has no report.
    report.write_metrics(run_dir, metrics)
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
    for old in (run_dir / "checkpoints").glob("*.pt"):  # a reused directory's belong to another run
        old.unlink()
    start_run_dir(run_dir, cfg)
    return run_dir


def start_run_dir(run_dir: Path, cfg) -> None:
    """Clear what a previous attempt left (final outputs, temp files), record config and versions."""
    set_status(run_dir, "running", "")
    for stale in FINAL_OUTPUTS:
        (run_dir / stale).unlink(missing_ok=True)
    atomic.remove_stale_temps(run_dir)
    atomic.remove_stale_temps(run_dir / "checkpoints")
    atomic.write_text(run_dir / "config.yaml", to_yaml(cfg))
    atomic.write_text(run_dir / "versions.json", json.dumps(versions(), indent=2) + "\n")


def resume_config(run_dir: Path):
    """The recorded config of a run to resume, or None when it is already complete."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise ConfigError(
            f"--resume {run_dir}: no {config.name} there; give a run directory that "
            "`python -m marlgen.run SCENARIO` made (it holds config.yaml and status.json)"
        )
    status = read_status(run_dir)
    if status.get("state") == "complete":
        return None
    alive = status.get("state") == "running" and status.get("host") == platform.node()
    if alive and status.get("pid") != os.getpid() and _pid_alive(status.get("pid")):
        raise ConfigError(
            f"--resume {run_dir}: the run is still going (process {status['pid']}); stop it first, "
            "or wait for it (two processes must not write one run directory)"
        )
    return load_config_file(config)


def set_status(run_dir: Path, state: str, message: str) -> None:
    body = {"state": state, "message": message, "time": datetime.now().isoformat(timespec="seconds"),
            "pid": os.getpid(), "host": platform.node()}  # fmt: skip
    atomic.write_text(run_dir / "status.json", json.dumps(body, indent=2) + "\n")


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}  # no status or a foreign one: treat as an incomplete run


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    parser.add_argument("scenario", nargs="?", help="scenario YAML, e.g. scenarios/gmm_ring8.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue a stopped run from its last checkpoint (its config.yaml)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_intermixed_args(argv)
    if args.resume and (args.scenario or args.overrides):
        parser.error("--resume RUN_DIR takes no scenario or overrides: a resumed run keeps its config.yaml")
    if not args.resume and not args.scenario:
        parser.error("give a scenario (e.g. scenarios/gmm_ring8.yaml) or --resume RUN_DIR")
    return args


if __name__ == "__main__":
    sys.exit(main())
