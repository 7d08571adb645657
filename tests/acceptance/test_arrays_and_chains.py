"""Arrays and jobs that wait for jobs, run by real worker processes on PostgreSQL.

An array of 200 runs every index once, with the right environment; a chain
and a diamond of jobs run in their order, each started only after what it
waits for completed (the witness: each job's own clock, printed by the job).
"""

from __future__ import annotations

import pytest

from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from container_manager.states import TERMINAL_STATUSES
from tests.acceptance.worker_process import WorkerProcess, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

#: A job that prints the time it started and ended, in nanoseconds (its own witness).
CLOCKED = "date +%s%N; sleep 0.3; date +%s%N"


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []

    def start(count: int, *args: str) -> list[WorkerProcess]:
        for _ in range(count):
            process = WorkerProcess("--max-concurrent", "20", *args)
            started.append(process)
        for process in started:
            process.wait_ready(30)
        return started

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def local_host():
    return ExecutorHost.objects.create(
        name="local", executor_type="process", max_concurrent_jobs=40
    )


def all_ended(jobs: list[ContainerJob], timeout: float = 120) -> list[ContainerJob]:
    ids = [job.pk for job in jobs]

    def done() -> bool:
        return (
            not ContainerJob.objects.filter(pk__in=ids)
            .exclude(status__in=sorted(TERMINAL_STATUSES))
            .exists()
        )

    wait_until(done, timeout=timeout, interval=0.2, what=f"{len(ids)} jobs to end")
    return list(ContainerJob.objects.filter(pk__in=ids).order_by("pk"))


def test_an_array_of_200_runs_every_index_once_with_its_environment(workers, local_host):
    array = queue_manager.create_array(
        200,
        array_name="shard",
        command='echo "$CM_ARRAY_INDEX of $CM_ARRAY_SIZE in job $CM_JOB_ID"',
        is_shell_command=True,
        host=local_host,
    )
    workers(2)
    jobs = all_ended(list(array.jobs.all()), timeout=180)
    assert {job.status for job in jobs} == {"completed"}
    printed = sorted(job.stdout for job in jobs)
    expected = sorted(f"{job.array_index} of 200 in job {job.pk}\n" for job in jobs)
    assert printed == expected
    assert sorted(job.array_index for job in jobs) == list(range(200))
    assert {job.attempt for job in jobs} == {1}
    assert array.outcome() == "completed"
    # Both workers took part, and each job keeps the id of the one that ran it.
    assert len({job.last_worker_id for job in jobs}) == 2


def clock(job: ContainerJob) -> tuple[int, int]:
    started, ended = job.stdout.split()
    return int(started), int(ended)


def test_a_chain_and_a_diamond_run_in_their_order(workers, local_host):
    def new(name: str, after: list[ContainerJob]) -> ContainerJob:
        job = ContainerJob(name=name, command=CLOCKED, is_shell_command=True, host=local_host)
        return queue_manager.queue_after(job, after=after)

    first = new("a", [])
    second = new("b", [first])
    third = new("c", [second])
    top = new("top", [])
    left = new("left", [top])
    right = new("right", [top])
    bottom = new("bottom", [left, right])
    workers(3)
    ended = {job.name: job for job in all_ended([first, second, third, top, left, right, bottom])}
    assert {job.status for job in ended.values()} == {"completed"}
    times = {name: clock(job) for name, job in ended.items()}
    for before, after in (
        ("a", "b"),
        ("b", "c"),
        ("top", "left"),
        ("top", "right"),
        ("left", "bottom"),
        ("right", "bottom"),
    ):
        assert times[before][1] < times[after][0], (before, after, times)
