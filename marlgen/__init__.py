"""marlgen: generator agents and a critic learn to cover a generative model's modes together.

Public API for researchers with their own training loop::

    cfg = marlgen.load_scenario("scenarios/gmm_ring8.yaml", overrides=["env.n_generators=6"])
    env = marlgen.make_env(cfg)  # a PettingZoo ParallelEnv
"""

import os
import sys

# Tianshou JIT-compiles its buffer helpers with numba on first use: about 36 s per process on this
# 2-core machine, longer than a whole toy run. Our buffers are small, so the plain-Python versions
# cost milliseconds. Set NUMBA_DISABLE_JIT=0 to compile them anyway (large replay buffers).
# Only before numba is first imported: flipping it afterwards breaks tianshou's numba functions.
if "numba" not in sys.modules:
    os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

import pettingzoo  # noqa: E402

from marlgen.config import ConfigError, load_scenario  # noqa: E402

__all__ = ["ConfigError", "load_scenario", "make_env"]

# Registered so `pettingzoo.make("parallel", "marlgen/Coverage-v0", config=cfg)` works; the version suffix
# changes whenever reward or space semantics change.
pettingzoo.register("parallel", "marlgen/Coverage-v0", entry_point="marlgen.build:make_env")


def __getattr__(name: str):
    # make_env pulls in torch and the models: load it on first use, so `import marlgen` stays quick.
    if name == "make_env":
        from marlgen.build import make_env

        return make_env
    raise AttributeError(f"module 'marlgen' has no attribute {name!r}")
