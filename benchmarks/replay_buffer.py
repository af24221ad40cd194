"""DQN training with Tianshou's VectorReplayBuffer against marlgen's SlotReplayBuffer, side by side.

    python benchmarks/replay_buffer.py cache_dir=/tmp/cache

Two parts, in this process:

1. The buffer calls DQN makes on every gradient step (``sample_indices``, ``unfinished_index``,
   ``next``) on a buffer of ring-8's 80 lockstep slots, filled with 8,320 transitions, timed in
   alternation (benchmarks/timing.py); and ``add``, every collector step's call, for the 16 env
   copies of the AEC route and the 272 lockstep slots of 16 generators (PPO's buffer of 2,176).
2. One epoch of DQN on ring-8 (8,320 agent steps, 832 updates of both roles) with each buffer,
   one after the other, the same seed: training seconds and gradient steps per second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

# marlgen before tianshou: it keeps numba's JIT off, as every marlgen run has it (marlgen/__init__.py).
import marlgen  # noqa: E402, F401, I001  # isort: skip
from tianshou.data import Batch, VectorReplayBuffer  # noqa: E402

import marlgen.train  # noqa: E402
from benchmarks.timing import interleaved, markdown_table  # noqa: E402
from marlgen.buffers import EpisodeLength, SlotReplayBuffer  # noqa: E402
from marlgen.build import build_parts  # noqa: E402
from marlgen.config import load_scenario  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class TianshouSlots(VectorReplayBuffer):
    """Tianshou's VectorReplayBuffer with the one hook marlgen's collector needs (``lengths_only``,
    marlgen.collect), so that training can run on it; every other call is Tianshou's."""

    read_lengths_only = False
    lengths_only = SlotReplayBuffer.lengths_only

    def __getitem__(self, index):
        if self.read_lengths_only and isinstance(index, np.ndarray):
            return EpisodeLength(len(index))
        return super().__getitem__(index)


SLOTS, STEPS = 80, 104  # ring-8: 16 copies x 5 agents; one epoch of 8,320 transitions


def filled(cls):
    buf = cls(50_000, SLOTS)
    rng = np.random.default_rng(0)
    for t in range(STEPS):
        done = np.full(SLOTS, (t + 1) % 4 == 0)  # 4-step episodes
        obs, obs_next = rng.random((SLOTS, 26)), rng.random((SLOTS, 26))
        batch = Batch(obs=obs, act=rng.integers(64, size=SLOTS), rew=rng.random(SLOTS), terminated=done,
                      truncated=np.zeros(SLOTS, bool), obs_next=obs_next)  # fmt: skip
        buf.add(batch)
    return buf


def buffer_calls(rounds: int) -> list[list]:
    rows = []
    for name, call in {
        "sample_indices(512)": lambda b: b.sample_indices(512),
        "unfinished_index()": lambda b: b.unfinished_index(),
        "next(512 indices)": lambda b: b.next(np.arange(0, 8320, 16)),
    }.items():
        theirs, ours = filled(VectorReplayBuffer), filled(SlotReplayBuffer)
        t = interleaved(
            {"tianshou": lambda c=call, b=theirs: c(b), "slot": lambda c=call, b=ours: c(b)}, rounds
        )
        rows.append([name, 1e6 * t["tianshou"], 1e6 * t["slot"], t["tianshou"] / t["slot"]])
    return rows


def add_calls(rounds: int) -> list[list]:
    """One collector step's add, every sub-buffer at once, episodes ending every second step."""
    rows = []
    for slots, roles in ((16, 17), (272, 2)):  # AEC: 16 copies, a reward per agent; lockstep: 272 slots
        rng = np.random.default_rng(0)
        steps = [Batch(obs=rng.random((slots, 68), np.float32), act=rng.integers(256, size=slots),
                       rew=rng.random((slots, roles), np.float32), terminated=np.full(slots, t % 2 == 1),
                       truncated=np.zeros(slots, bool), obs_next=rng.random((slots, 68), np.float32))
                 for t in range(16)]  # fmt: skip
        adders = {"tianshou": Adder(VectorReplayBuffer(2176, slots), steps),
                  "slot": Adder(SlotReplayBuffer(2176, slots), steps)}  # fmt: skip
        t = interleaved(adders, rounds)
        rows.append([f"add({slots} sub-buffers)", 1e6 * t["tianshou"], 1e6 * t["slot"],
                     t["tianshou"] / t["slot"]])  # fmt: skip
    return rows


class Adder:
    """Adds the next of a cycle of steps to a buffer, one per call."""

    def __init__(self, buffer, steps: list):
        self.buffer, self.steps, self.turn = buffer, steps, 0

    def __call__(self) -> None:
        self.turn += 1
        self.buffer.add(self.steps[self.turn % len(self.steps)])


def dqn_epoch(buffer_cls, overrides: list[str]) -> dict:
    marlgen.train.SlotReplayBuffer = buffer_cls  # the buffer train.fit builds
    cfg = load_scenario(ROOT / "scenarios/gmm_ring8.yaml", ["agent=dqn", "train.epochs=1", *overrides])
    with tempfile.TemporaryDirectory() as run_dir:
        row = marlgen.train.train(cfg, build_parts(cfg, progress=False), Path(run_dir), progress=False,
                                  log=lambda *a: None).history[-1]  # fmt: skip
    updates = row["env_steps"] * cfg.agents.generator.updates_per_step
    return {"seconds": row["training_seconds"], "updates": updates, "modes": row["episode_modes_covered"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "overrides", nargs="*", help="key=value for the training runs, e.g. cache_dir=/tmp/cache"
    )
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    print("\n### Buffer calls, 80 sub-buffers (add: 16 and 272)\n")
    calls = buffer_calls(args.rounds) + add_calls(args.rounds)
    print(markdown_table(["call", "VectorReplayBuffer us", "SlotReplayBuffer us", "ratio"], calls))
    rows = []
    for name, cls in (("VectorReplayBuffer", TianshouSlots), ("SlotReplayBuffer", SlotReplayBuffer)):
        r = dqn_epoch(cls, args.overrides)
        rows.append([name, r["seconds"], r["updates"] / r["seconds"], r["modes"]])
        print(rows[-1], flush=True)
    print("\n### One DQN epoch on ring-8 (8,320 agent steps)\n")
    print(markdown_table(["buffer", "training s", "updates/s (both roles each)", "modes per episode"], rows))


if __name__ == "__main__":
    main()
