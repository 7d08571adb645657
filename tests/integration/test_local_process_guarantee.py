"""Local-process jobs under SIGKILL: a process dies with its worker, and runs again once gone.

Real ``process_container_jobs --queue-mode`` subprocesses on PostgreSQL
(lease 3 s), a ``process`` host, and commands that write their attempt and
pid to a file. ``/proc`` is the independent witness: a process is alive
while it exists and is not a zombie.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.utils import timezone

from container_manager.executors import get_executor
from container_manager.executors.local import EXIT_FILE, machine_name
from container_manager.models import ContainerJob, ExecutorHost, Worker
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.acceptance.worker_process import WorkerProcess, wait_until
from tests.docker_fixtures import RUN_ID
from tests.unit.test_executor_local import group_is_alive

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc"),
]

#: How long a process may outlive its SIGKILLed worker.
DEATH_BOUND_SECONDS = 3.0


def pid_is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(*args, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def process_host(tmp_path):
    host = ExecutorHost.objects.create(
        name=f"process-{RUN_ID}-{ExecutorHost.objects.count()}",
        executor_type="process",
        executor_config={"output_dir": str(tmp_path / "out")},
        max_concurrent_jobs=5,
    )
    (tmp_path / "out").mkdir()
    yield host
    get_executor(host).close()


class Runs:
    """The file each run of the command appends ``<attempt> <shell pid> <child pid>`` to."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "runs"
        self.go = directory / "go"
        self.path.touch()

    @property
    def command(self) -> str:
        # The leader's pid is its process group; the sleep is a grandchild of
        # the supervisor, which a parent-death signal alone would not reach.
        return (
            "sleep 300 & "
            f'echo "${{CONTAINER_MANAGER_ATTEMPT:-0}} $$ $!" >> {self.path}; '
            f"while [ ! -e {self.go} ]; do sleep 0.05; done"
        )

    def lines(self) -> list[tuple[int, int, int]]:
        rows = []
        for line in self.path.read_text().splitlines():
            attempt, leader, child = line.split()
            rows.append((int(attempt), int(leader), int(child)))
        return rows

    def wait_for(self, count: int, timeout: float) -> list[tuple[int, int, int]]:
        return wait_until(  # type: ignore[return-value]
            lambda: self.lines() if len(self.lines()) >= count else None,
            timeout,
            interval=0.02,
            what=f"{count} run(s) of the command",
        )


def queue_job(host: ExecutorHost, runs: Runs) -> ContainerJob:
    job = ContainerJob.objects.create(
        name="guarded", command=runs.command, is_shell_command=True, host=host
    )
    queue_manager.queue_job(job)
    return job


def exit_files(tmp_path: Path, job: ContainerJob, attempt: int) -> list[Path]:
    """The exit files the supervisors of one attempt wrote in the host's output root."""
    return sorted((tmp_path / "out").glob(f"*-job-{job.pk}-a{attempt}-*/{EXIT_FILE}"))


def assert_gone(pids: list[int], pgid: int) -> None:
    assert not group_is_alive(pgid), f"process group {pgid} still runs"
    assert not [pid for pid in pids if pid_is_alive(pid)], pids


def test_a_sigkilled_workers_process_dies_and_the_job_runs_once_more_only_after(
    workers, process_host, tmp_path
):
    runs = Runs(tmp_path)
    job = queue_job(process_host, runs)
    victim = workers("--worker-id=victim", "--max-concurrent=2")
    victim.wait_for_line(rf"Launched job {job.pk}\b")
    ((attempt, leader, child),) = runs.wait_for(1, 20)
    assert group_is_alive(leader)
    rescuer = workers("--worker-id=rescuer", "--max-concurrent=2")
    rescuer.wait_ready()

    victim.signal(signal.SIGKILL)
    victim.wait_exit(10)
    killed_at = time.monotonic()

    wait_until(lambda: not group_is_alive(leader), DEATH_BOUND_SECONDS, 0.02, "group gone")
    wait_until(lambda: not pid_is_alive(child), DEATH_BOUND_SECONDS, 0.02, "child gone")
    gone_after = time.monotonic() - killed_at
    assert gone_after < DEATH_BOUND_SECONDS
    assert attempt == 1
    # Killed with its worker, attempt 1 did not end by itself: its supervisor left no exit file.
    assert exit_files(tmp_path, job, 1) == []

    rows = runs.wait_for(2, 30)
    # The second run began; the first was dead then (and still is).
    assert_gone([leader, child], leader)
    assert [row[0] for row in rows] == [1, 2]
    second_leader = rows[1][1]
    assert group_is_alive(second_leader)
    job.refresh_from_db()
    assert job.attempt == 2
    assert job.error_code == "WORKER_LOST"
    assert "'victim'" in job.last_error
    assert f"its process (pid {leader}) no longer runs" in job.last_error, job.last_error
    assert "container was made" not in job.last_error

    runs.go.touch()
    wait_until(
        lambda: ContainerJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        20,
        what="job completed",
    )
    assert [row[0] for row in runs.lines()] == [1, 2]
    assert f"Requeued job {job.pk}" in rescuer.output
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait_exit(20) == 0


def test_a_lost_attempts_process_still_running_is_killed_before_the_job_runs_again(
    workers, process_host, tmp_path
):
    """A worker that lost its lease while its process ran (stalled, not dead).

    This test process plays that worker: it claims and launches the job
    itself, then lets the lease expire. The real worker must not start
    attempt 2 beside attempt 1: it kills attempt 1, waits until it is gone,
    then queues and runs the job again.
    """
    runs = Runs(tmp_path)
    job = queue_job(process_host, runs)
    Worker.objects.create(
        worker_id="stalled",
        hostname=machine_name(),
        pid=os.getpid(),
        last_heartbeat_at=timezone.now(),
    )
    (claimed,) = queue_manager.claim_jobs("stalled", 1, lease_seconds=60)
    assert claimed.pk == job.pk
    outcome = queue_manager.launch_claimed(claimed)
    assert outcome.success, outcome
    ((_, leader, child),) = runs.wait_for(1, 20)
    executor = get_executor(process_host)
    claimed.refresh_from_db()
    assert claimed.status == JobStatus.RUNNING
    ref = executor.find(int(job.pk), 1)
    assert ref is not None
    assert queue_manager.expire_leases("stalled") == 1

    rescuer = workers("--worker-id=rescuer", "--max-concurrent=2")

    # The stalled worker sees its process killed: nobody else could have.
    (ended,) = executor.wait_finished([ref], 30)
    assert ended.exit_code == 137
    wait_until(lambda: not group_is_alive(leader), DEATH_BOUND_SECONDS, 0.02, "group gone")
    rows = runs.wait_for(2, 30)
    assert_gone([leader, child], leader)
    assert [row[0] for row in rows] == [1, 2]
    job.refresh_from_db()
    assert job.attempt == 2
    assert job.error_code == "WORKER_LOST"
    assert "'stalled'" in job.last_error
    assert f"its process (pid {leader}) still ran" in job.last_error, job.last_error
    assert "was killed, and was gone before the job was queued again" in job.last_error
    # The stalled worker can no longer record anything for its attempt.
    assert queue_manager.finish_job(claimed, ended, worker_id="stalled") is False

    runs.go.touch()
    wait_until(
        lambda: ContainerJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        20,
        what="job completed",
    )
    assert [row[0] for row in runs.lines()] == [1, 2]
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait_exit(20) == 0


def test_an_attempt_that_ended_just_before_its_worker_died_is_recorded_not_run_again(
    workers, process_host, tmp_path
):
    """Attempt 1 exits 0 after its worker can no longer record it, then the worker is SIGKILLed.

    The worker is stopped (SIGSTOP) while the command waits, so it cannot
    record the end; the command is let go and ends; its supervisor writes
    the exit file; only then is the worker SIGKILLed, with the job's row
    still ``running``. The rescuer must record that end (completed, the
    command's output, attempt 1), not run the job again: the command appends
    to a file outside its output directory, the independent witness.
    """
    witness, go = tmp_path / "runs", tmp_path / "go"
    command = (
        f'echo "${{CONTAINER_MANAGER_ATTEMPT:-0}}" >> {witness}; echo "known output"; '
        f"while [ ! -e {go} ]; do sleep 0.02; done; echo done"
    )
    job = ContainerJob.objects.create(
        name="ended", command=command, is_shell_command=True, host=process_host
    )
    queue_manager.queue_job(job)
    victim = workers("--worker-id=victim", "--max-concurrent=2")
    victim.wait_for_line(rf"Launched job {job.pk}\b")
    wait_until(lambda: witness.exists() and witness.read_text(), 20, 0.02, "the command runs")
    wait_until(
        lambda: ContainerJob.objects.get(pk=job.pk).status == JobStatus.RUNNING,
        20,
        0.02,
        "job running",
    )

    victim.signal(signal.SIGSTOP)
    go.touch()
    (exit_file,) = wait_until(lambda: exit_files(tmp_path, job, 1), 20, 0.02, "exit file")
    assert exit_file.read_text().split()[0::2] == ["0", "exited"]
    row = ContainerJob.objects.get(pk=job.pk)
    assert (row.status, row.worker_id) == (JobStatus.RUNNING, "victim")
    victim.signal(signal.SIGKILL)
    victim.wait_exit(10)

    rescuer = workers("--worker-id=rescuer", "--max-concurrent=2", CM_TEST_RETENTION="remove")
    wait_until(
        lambda: ContainerJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        30,
        what="job completed",
    )
    job.refresh_from_db()
    assert (job.attempt, job.exit_code, job.error_code) == (1, 0, "")
    assert job.stdout == "known output\ndone\n"
    assert witness.read_text() == "1\n"
    assert f"Adopted job {job.pk} (attempt 1, container " in rescuer.output
    assert f"Requeued job {job.pk}" not in rescuer.output
    # Retention "remove": the attempt's directory went with its recorded end.
    wait_until(lambda: not exit_file.parent.exists(), 10, 0.05, "directory removed")
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait_exit(20) == 0
    assert witness.read_text() == "1\n"
