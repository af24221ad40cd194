"""``compiled``: numba's njit for marlgen's own small kernels, whatever NUMBA_DISABLE_JIT says.

``import marlgen`` sets NUMBA_DISABLE_JIT=1 so that Tianshou's buffer helpers run as plain Python:
compiling them costs about 36 s per process here, more than a toy run. marlgen's kernels are a few
loops each and cached on disk (``cache=True``): they compile once per checkout, in a second or two
each, then load in milliseconds. They exist because an env step's bookkeeping is hundreds of tiny
array operations, where numpy's per-call cost, not arithmetic, set the time (docs/performance.md).

numba reads the flag when it decorates and again when it compiles (its own numpy implementations are
jitted on demand), so both happen with the flag lifted; Tianshou's functions, decorated at import,
stay plain Python.
"""

from __future__ import annotations

import contextlib

import numba


def compiled(fn):
    """``numba.njit(cache=True)(fn)``, decorated and compiled with NUMBA_DISABLE_JIT lifted."""
    with _jit_enabled():
        kernel = numba.njit(cache=True)(fn)
    compile_signature = kernel.compile  # numba compiles each new argument signature through it

    def compile_with_jit(sig):
        with _jit_enabled():
            return compile_signature(sig)

    kernel.compile = compile_with_jit
    return kernel


@contextlib.contextmanager
def _jit_enabled():
    disabled = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = False
    try:
        yield
    finally:
        numba.config.DISABLE_JIT = disabled
