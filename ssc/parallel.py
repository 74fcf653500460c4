"""Fan-out of independent jobs (images, video files, video chunks, streams) over Ray, or a plain
loop in this process. Ray is the optional ``ray`` extra, imported only when asked for.

A job is a frozen dataclass and its function a top-level function, so Ray ships both by reference
to workers that have ssc installed. Each job carries its own torch thread count, which is set in
whichever process runs it: local and Ray runs of the same jobs then execute the same arithmetic
and give the same numbers. A job that fails returns a :class:`JobError` instead of raising, so one
bad input is reported and loses nothing else. Paths in jobs should be absolute (Ray workers do not
share the driver's working directory); on a multi-node cluster they must be on storage every node
sees.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tqdm import tqdm

from .errors import SSCError


@dataclass(frozen=True)
class JobError:
    """A job that raised: which one, and the one-line reason."""

    job: int
    error: str
    kind: str


@dataclass
class RunStats:
    """How a batch ran (kept out of the per-job results, which must not depend on it)."""

    executor: str
    workers: int
    jobs: int
    failed: int
    seconds: float


def run_job(fn: Callable[[Any], Any], index: int, job: Any, threads: int) -> Any:
    """Run one job with ``threads`` torch threads; a failure becomes a :class:`JobError`."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        return fn(job)
    except (SSCError, OSError, ValueError, RuntimeError) as e:
        return JobError(index, f"{type(e).__name__}: {e}", "input")
    except Exception as e:  # noqa: BLE001 - reported per job, the batch goes on
        return JobError(index, f"{type(e).__name__}: {e} ({traceback.format_exc(limit=2).splitlines()[-1]})", "internal")


def _ray():
    try:
        import ray  # noqa: PLC0415
    except ImportError as e:
        raise SSCError("--ray needs Ray: pip install 'ssc[ray]' (or pip install ray)") from e
    return ray


class LocalExecutor:
    """Jobs one after another in this process."""

    name = "local"

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self.workers = 1

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], desc: str = "jobs") -> list[Any]:
        return [run_job(fn, i, j, self.threads) for i, j in enumerate(tqdm(jobs, desc=desc, unit="job"))]

    def close(self) -> None:
        pass


class RayExecutor:
    """Jobs as Ray tasks on a cluster: ``address=None`` starts a private local one with ``workers``
    CPUs; an address (``auto``, ``ray://host:10001``) joins a running one. At most ``workers`` tasks
    are in flight, each asking Ray for ``threads`` CPUs. Results come back in job order."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1) -> None:
        ray = _ray()
        self.threads = max(1, threads)
        self._owned = False
        if not ray.is_initialized():
            # workers see the driver's SSC_* settings (weights folder, data root) and one OpenMP pool size
            env_vars = {k: v for k, v in os.environ.items() if k.startswith("SSC_")}
            env = {"env_vars": {**env_vars, "OMP_NUM_THREADS": str(self.threads)}}
            if address:
                ray.init(address=address, runtime_env=env, log_to_driver=False)
            else:
                cpus = (workers or os.cpu_count() or 1) * self.threads
                ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=env, log_to_driver=False)
            self._owned = True
        cluster = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, cluster // self.threads)
        self._task = ray.remote(num_cpus=self.threads, max_retries=1)(run_job)

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any], desc: str = "jobs") -> list[Any]:
        ray = _ray()
        results: list[Any] = [None] * len(jobs)
        pending: dict[Any, int] = {}
        todo = iter(enumerate(jobs))
        bar = tqdm(total=len(jobs), desc=f"{desc} (ray, {self.workers} workers)", unit="job")
        fn_ref = ray.put(fn)
        while True:
            while len(pending) < self.workers:
                nxt = next(todo, None)
                if nxt is None:
                    break
                i, job = nxt
                pending[self._task.remote(fn_ref, i, job, self.threads)] = i
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a worker lost (killed, out of memory) fails its job only
                    results[i] = JobError(i, f"ray task failed: {type(e).__name__}: {str(e).splitlines()[0]}", "worker")
                bar.update(1)
        bar.close()
        return results

    def close(self) -> None:
        if self._owned:
            _ray().shutdown()


Executor = LocalExecutor | RayExecutor


def make_executor(ray: bool = False, address: str | None = None, workers: int | None = None, threads: int = 0) -> Executor:
    """``--ray`` / ``--address`` / ``--workers`` / ``--threads`` of the batch commands. An address
    implies Ray; without either, jobs run in this process."""
    if ray or address:
        return RayExecutor(address, workers, threads or 1)
    if workers and workers > 1:
        raise SSCError("--workers needs --ray (or --address): without Ray, jobs run one after another here")
    return LocalExecutor(threads)


def run_all(executor: Executor, fn: Callable[[Any], Any], jobs: Sequence[Any], desc: str) -> tuple[list[Any], RunStats]:
    """Every job's result (or :class:`JobError`) in job order, and how the run went."""
    t0 = time.perf_counter()
    out = executor.map(fn, jobs, desc)
    failed = sum(isinstance(r, JobError) for r in out)
    return out, RunStats(executor.name, executor.workers, len(jobs), failed, time.perf_counter() - t0)
