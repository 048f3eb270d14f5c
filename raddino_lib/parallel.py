"""Independent CPU jobs side by side, one core each.

The cpu profile trains many small models one after another: report decoders (notebook 07), pretraining arms
(notebook 08), COLIPRI arms (notebook 10), probe heads per encoder (notebooks 03, 04). Models this small use a
second core poorly: a 20-step pretraining arm of notebook 08 took 0.60 s a step on two threads and 0.85 s on
one. Two such jobs at once, one thread each, finish in 0.74 of the time they take in turn on two threads; for
the report decoder and the COLIPRI step the ratio is 0.82 (``benchmarks/parallel_jobs.py``).

Every job runs on one thread whether it runs in a worker process or in this one, so its numbers do not depend
on how many jobs ran beside it, nor on the machine's core count (``test_parallel``). Jobs must seed themselves:
none may read a random state left by the job before it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def cpu_workers(n_jobs: int, device: str | torch.device = "cpu") -> int:
    """How many jobs run at once: one per core on a CPU with ``fork``, one on a GPU.

    ``RADDINO_WORKERS`` in the environment overrides the core count (1 runs every job in this process).
    """
    if str(device) != "cpu" or "fork" not in mp.get_all_start_methods() or n_jobs < 2 or _IN_WORKER:
        return 1
    asked = os.environ.get("RADDINO_WORKERS", "").strip()
    if asked and not (asked.isdigit() and int(asked) >= 1):
        raise ValueError(f"RADDINO_WORKERS={asked!r}: give a whole number of worker processes, 1 or more "
                         "(1 runs the jobs in turn)")
    cores = int(asked) if asked else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else os.cpu_count() or 1)
    return max(1, min(n_jobs, cores))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch and the BLAS libraries (numpy, scikit-learn) on one thread inside the block."""
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(previous)


_WORK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None  # what the forked workers inherit
_IN_WORKER = False


def _run_one(fn: Callable[..., Any], job: Any, previous: tuple[Any, ...], limit: bool = True) -> tuple[Any, float]:
    start = time.perf_counter()
    with one_thread() if limit else contextlib.nullcontext():
        return fn(job, *previous), time.perf_counter() - start


def _run_index(k: int, previous: bytes) -> bytes:
    """In a worker: job k of the work inherited at fork (only k and an earlier job's result cross the pipe, so
    closures are fine).

    What crosses goes as plain pickle bytes: tensors pickled by ``multiprocessing`` would move through torch's
    shared-memory file descriptors, which can hang in a process forked from a Jupyter kernel.
    """
    global _IN_WORKER
    _IN_WORKER = True  # a job that maps jobs of its own runs them in turn
    assert _WORK is not None
    fn, jobs = _WORK
    return pickle.dumps(_run_one(fn, jobs[k], pickle.loads(previous)))


def map_jobs(fn: Callable[..., R], jobs: Sequence[T], workers: int = 0, names: Sequence[str] | None = None,
             log: Callable[[str], None] | None = print, after: Sequence[int | None] | None = None,
             device: str | torch.device = "cpu", cost: Sequence[float] | None = None) -> list[R]:
    """``[fn(job) for job in jobs]``, in that order; on a CPU each job on one thread, ``workers`` at a time.

    workers: processes (0: ``cpu_workers(len(jobs))``); 1 runs the jobs here, in turn. Worker processes are forked
    and inherit ``fn`` and the jobs, which may be closures; results come back pickled. On another device (a GPU)
    the jobs run here, in turn, on the process's threads. A job's exception is raised here once the jobs already
    running have finished; the jobs not started yet are dropped. ``log`` gets one line per finished job (``names``
    label them).

    after: per job, the index of an earlier job it needs (None: none). Such a job starts once that one has finished
    and is called ``fn(job, result_of_that_job)``; the jobs others wait for start first, and a job whose parent
    has finished starts before the jobs not started yet.

    cost: a rough relative cost per job (e.g. its optimizer steps). Side by side, the jobs are handed out longest
    first, so that the workers finish close together (in the given order, two workers given 1, 1, 2 units take 3
    units of time; longest first, 2). Results stay in the jobs' order, and no job's numbers change.
    """
    n = len(jobs)
    after = list(after) if after is not None else [None] * n
    names = list(names) if names is not None else [f"job {k + 1}" for k in range(n)]
    cost = list(cost) if cost is not None else [0.0] * n
    if len(names) != n or len(after) != n or len(cost) != n:
        raise ValueError(f"{len(names)} names, {len(after)} dependencies and {len(cost)} costs for {n} jobs")
    for k, a in enumerate(after):
        if a is not None and not 0 <= a < k:
            raise ValueError(f"{names[k]} waits for job {a}: a job can only wait for an earlier one")
    on_cpu = str(device) == "cpu"
    workers = (workers or cpu_workers(n)) if on_cpu else 1
    results: list[Any] = [None] * n

    def previous(k: int) -> tuple[Any, ...]:
        return () if after[k] is None else (results[after[k]],)

    if workers <= 1:
        for k, job in enumerate(jobs):
            results[k], seconds = _run_one(fn, job, previous(k), limit=on_cpu)
            if log:
                log(f"{names[k]}: done in {seconds:.0f} s")
        return results
    waited_for = {a for a in after if a is not None}
    # a job is handed to a worker only when one is free, so a job whose parent has just finished goes next; the
    # rest go longest first
    ready = sorted((k for k in range(n) if after[k] is None), key=lambda k: (k not in waited_for, -cost[k], k))
    global _WORK
    _WORK = (fn, jobs)  # set before the first submit: the pool forks its workers then
    workers = min(workers, n)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        running: dict[Any, int] = {}
        try:
            while ready or running:
                while ready and len(running) < workers:
                    k = ready.pop(0)
                    running[pool.submit(_run_index, k, pickle.dumps(previous(k)))] = k
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    k = running.pop(future)
                    results[k], seconds = pickle.loads(future.result())
                    if log:
                        log(f"{names[k]}: done in {seconds:.0f} s ({workers} side by side, one core each)")
                    ready[:0] = [j for j in range(n) if after[j] == k]  # ahead of the jobs still waiting
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            _WORK = None
    return results
