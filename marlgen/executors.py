"""Where a study's jobs run: worker processes on this machine, or Ray tasks (local or a cluster).

Both take ``(function, args)`` calls and yield ``((function, args), result)`` as jobs finish. A
failed job does not stop the others; its error is raised, naming the job, once all have finished,
so hours of finished work are never thrown away for one bad seed.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

Call = tuple[Callable, tuple]


class JobsFailed(RuntimeError):
    pass


class InlinePool:
    """One worker: jobs run in this process, in order (quickest to start; tracebacks stay whole)."""

    def describe(self) -> str:
        return "this process"

    def run(self, calls: list[Call]) -> Iterator[tuple[Call, object]]:
        failures = []
        for fn, args in calls:
            try:
                result = fn(*args)
            except Exception as err:
                failures.append(((fn, args), err))
                continue
            yield (fn, args), result
        _raise_failures(failures)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class ProcessPool:
    def __init__(self, workers: int):
        self.workers = workers
        # spawn, not fork: a forked torch process can deadlock on locks its parent held.
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def describe(self) -> str:
        return f"{self.workers} worker process{'es' if self.workers > 1 else ''}"

    def run(self, calls: list[Call]) -> Iterator[tuple[Call, object]]:
        futures = {self.pool.submit(fn, *args): (fn, args) for fn, args in calls}
        failures = []
        for future in as_completed(futures):
            if future.exception() is not None:
                failures.append((futures[future], future.exception()))
                continue
            yield futures[future], future.result()
        _raise_failures(failures)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)


class RayPool:
    """Ray tasks, one CPU each. ``address=None`` starts a local Ray with ``workers`` CPUs.

    On a cluster, every node needs marlgen installed (``pip install marlgen[ray]``) and the run
    directories on a shared file system, since each task writes its own job folder.
    """

    def __init__(self, workers: int, address: str | None):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--ray needs Ray: pip install 'marlgen[ray]' (or pip install ray)") from None
        self.ray = ray
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.task = ray.remote(num_cpus=1)(_apply)

    def describe(self) -> str:
        return f"Ray ({int(self.ray.cluster_resources().get('CPU', 0))} CPUs)"

    def run(self, calls: list[Call]) -> Iterator[tuple[Call, object]]:
        pending = {self.task.remote(fn, args): (fn, args) for fn, args in calls}
        failures = []
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            call = pending.pop(ready[0])
            try:
                result = self.ray.get(ready[0])
            except Exception as err:  # a RayTaskError wrapping the job's own error
                failures.append((call, getattr(err, "cause", None) or err))
                continue
            yield call, result
        _raise_failures(failures)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ray.shutdown()


def make_executor(workers: int, use_ray: bool = False, address: str | None = None):
    if use_ray or address:
        return RayPool(workers, address)
    return ProcessPool(workers) if workers > 1 else InlinePool()


def _apply(fn: Callable, args: tuple):
    return fn(*args)


def _raise_failures(failures: list) -> None:
    if failures:
        lines = [f"  {fn.__name__}{tuple(args)}: {type(err).__name__}: {err}" for (fn, args), err in failures]
        raise JobsFailed(f"{len(failures)} job(s) failed:\n" + "\n".join(lines))
