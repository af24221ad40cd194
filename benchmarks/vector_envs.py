"""Training with each train.vector_env, in alternation in one process: the same team, how fast.

    python benchmarks/vector_envs.py cache_dir=/tmp/cache
    python benchmarks/vector_envs.py cache_dir=/tmp/cache --kinds batched dummy subproc ray

Grid-25 as shipped, 3 epochs, the same seed; the kinds run in turn, ``--repeats`` times round, so a
burst of load on the shared machine falls on all of them. Reported per kind: the median training
seconds (collect and update) and the time spent collecting (where the vector env works), and the
best epoch's modes per episode (equal across kinds: they train the same team).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

# marlgen before tianshou: it keeps numba's JIT off, as every marlgen run has it (marlgen/__init__.py).
import marlgen  # noqa: E402, F401, I001  # isort: skip
from tianshou.data import Collector  # noqa: E402

from benchmarks.timing import markdown_table  # noqa: E402
from marlgen.build import build_parts  # noqa: E402
from marlgen.config import load_scenario  # noqa: E402
from marlgen.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COLLECT_SECONDS = [0.0]


def timed_collect(collect):
    @functools.wraps(collect)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return collect(*args, **kwargs)
        finally:
            COLLECT_SECONDS[0] += time.perf_counter() - start

    return wrapper


def run(kind: str, overrides: list[str]) -> tuple[float, float, float]:
    cfg = load_scenario(
        ROOT / "scenarios/gmm_grid25.yaml", [f"train.vector_env={kind}", "train.epochs=3", *overrides]
    )
    parts = build_parts(cfg, progress=False)
    COLLECT_SECONDS[0] = 0.0
    with tempfile.TemporaryDirectory() as run_dir:
        history = train(cfg, parts, Path(run_dir), progress=False, log=lambda *a: None).history
    best = max(row["episode_modes_covered"] for row in history)
    return history[-1]["training_seconds"], COLLECT_SECONDS[0], best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="key=value for every run, e.g. cache_dir=/tmp/cache")
    parser.add_argument("--kinds", nargs="*", default=["batched", "dummy"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    Collector.collect = timed_collect(Collector.collect)
    results = {kind: [] for kind in args.kinds}
    for _ in range(args.repeats):
        for kind in args.kinds:
            results[kind].append(run(kind, args.overrides))
            print(kind, results[kind][-1], flush=True)
    base = statistics.median(r[0] for r in results[args.kinds[0]])
    rows = []
    for kind, runs in results.items():
        training = statistics.median(r[0] for r in runs)
        rows.append([kind, training, statistics.median(r[1] for r in runs), training / base,
                     sorted({r[2] for r in runs})])  # fmt: skip
    header = ["vector env", "training s (median)", "collect s (median)", f"x {args.kinds[0]}", "best modes"]
    print("\n" + markdown_table(header, rows), flush=True)


if __name__ == "__main__":
    main()
