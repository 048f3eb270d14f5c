"""Jobs side by side: the same results in the same order whether they run in turn or in worker processes."""

import os

import pytest
import torch

from raddino_lib.parallel import cpu_workers, map_jobs


def _train_a_little(seed: int) -> tuple[int, int, torch.Tensor]:
    """A seeded job: a few steps of a small MLP (its weights depend on every float of the run)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(256, 64)
    y = x[:, :3].sum(1, keepdim=True)
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return os.getpid(), torch.get_num_threads(), model[0].weight.detach().clone()


def _fail_on_two(k: int) -> int:
    if k == 2:
        raise ValueError("job 2 planted failure")
    return k


def test_in_turn_and_side_by_side_give_bit_equal_results_in_job_order_on_one_thread_each():
    threads_before = torch.get_num_threads()
    here = map_jobs(_train_a_little, [0, 1, 2], workers=1, log=None)
    lines: list[str] = []
    apart = map_jobs(_train_a_little, [0, 1, 2], workers=2, names=["a", "b", "c"], log=lines.append)
    assert torch.get_num_threads() == threads_before  # the block restores the caller's threads
    assert all(pid == os.getpid() for pid, _, _ in here)
    assert all(pid != os.getpid() for pid, _, _ in apart)  # they did run in worker processes
    assert [n for _, n, _ in here] == [1, 1, 1] and [n for _, n, _ in apart] == [1, 1, 1]
    for (_, _, w_here), (_, _, w_apart) in zip(here, apart, strict=True):
        assert torch.equal(w_here, w_apart)
    assert not torch.equal(here[0][2], here[1][2])  # different seeds, different jobs: the order is checked
    assert sorted(line.split(":")[0] for line in lines) == ["a", "b", "c"]


def test_a_failing_job_raises_its_own_error_here():
    with pytest.raises(ValueError, match="job 2 planted failure"):
        map_jobs(_fail_on_two, [1, 2, 3], workers=2, log=None)
    with pytest.raises(ValueError, match="job 2 planted failure"):
        map_jobs(_fail_on_two, [1, 2, 3], workers=1, log=None)


def test_worker_count_follows_jobs_cores_device_and_the_environment(monkeypatch):
    monkeypatch.setenv("RADDINO_WORKERS", "2")
    assert cpu_workers(5) == 2
    assert cpu_workers(1) == 1  # one job: nothing to put side by side
    assert cpu_workers(5, device="cuda") == 1  # a GPU runs its jobs in turn
    monkeypatch.setenv("RADDINO_WORKERS", "1")
    assert cpu_workers(5) == 1
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("RADDINO_WORKERS", bad)
        with pytest.raises(ValueError, match="RADDINO_WORKERS=.*whole number"):
            cpu_workers(5)
    monkeypatch.setenv("RADDINO_WORKERS", "1")
    assert map_jobs(_train_a_little, [0], device="cuda", log=None)[0][1] == torch.get_num_threads()  # no limit
    with pytest.raises(ValueError, match="2 names, 3 dependencies and 3 costs for 3 jobs"):
        map_jobs(_fail_on_two, [1, 3, 4], names=["a", "b"], log=None)


def test_closures_run_in_workers_and_a_job_that_maps_jobs_runs_them_in_turn():
    offset = 10

    def inner(k: int) -> int:
        return os.getpid() * 0 + k + offset  # a closure: only its index crosses to the worker

    def outer(k: int) -> tuple[int, list[int]]:
        pids = map_jobs(lambda _: os.getpid(), [0, 1], log=None)  # nested: no grandchildren
        return inner(k), pids

    out = map_jobs(outer, [1, 2], workers=2, log=None)
    assert [value for value, _ in out] == [11, 12]
    for _, pids in out:
        assert len(set(pids)) == 1 and pids[0] != os.getpid()


def _add_to_previous(job: int, previous: int | None = None) -> int:
    return job + (previous or 0) * 100


def test_a_job_that_waits_for_another_gets_its_result_in_turn_and_side_by_side():
    after = [None, None, 0, 2, None]
    expected = [1, 2, 103, 10304, 5]
    assert map_jobs(_add_to_previous, [1, 2, 3, 4, 5], workers=1, after=after, log=None) == expected
    assert map_jobs(_add_to_previous, [1, 2, 3, 4, 5], workers=2, after=after, log=None) == expected
    with pytest.raises(ValueError, match="a job can only wait for an earlier one"):
        map_jobs(_add_to_previous, [1, 2], after=[1, None], log=None)


def _start_time(job: tuple[int, float], previous=None) -> float:
    import time

    started = time.time()
    time.sleep(job[1])
    return started


def test_a_job_whose_parent_finished_starts_before_the_jobs_still_waiting():
    # two workers: jobs 0 and 1 start; 0 ends first, and its dependent job 3 takes the free worker before job 2
    jobs = [(0, 0.1), (1, 0.8), (2, 0.1), (3, 0.1)]
    starts = map_jobs(_start_time, jobs, workers=2, after=[None, None, None, 0], log=None)
    assert starts[3] < starts[2]


def test_with_costs_the_longest_jobs_start_first_and_results_keep_the_jobs_order():
    # two workers, sleeps of 0.1, 0.1 and 0.6 s: in the given order the long job starts only when a short one ends
    # (0.7 s in all); longest first it starts at once and the two short ones share the other worker (0.6 s)
    jobs = [(0, 0.1), (1, 0.1), (2, 0.6)]
    starts = map_jobs(_start_time, jobs, workers=2, cost=[0.1, 0.1, 0.6], log=None)
    # jobs 2 and 0 are handed out at once (which worker process starts first is a race under load); job 1 is handed
    # out only when job 0's worker frees, so it starts after the long job and at least 0.1 s after job 0
    assert starts[2] < starts[1] and starts[0] < starts[1]
    assert starts[1] - starts[0] >= 0.09  # the second short job waited for the first one's worker
    in_turn = map_jobs(_add_to_previous, [1, 2, 3], workers=1, cost=[1, 5, 3], log=None)
    assert in_turn == map_jobs(_add_to_previous, [1, 2, 3], workers=2, cost=[1, 5, 3], log=None) == [1, 2, 3]
    with pytest.raises(ValueError, match="2 costs for 3 jobs"):
        map_jobs(_add_to_previous, [1, 2, 3], cost=[1, 2], log=None)
