"""Timeouts are enforced within a second of the deadline, alike on Docker and local processes.

A real worker process runs each job; the witness of the kill is the
engine's own record of the container's end (Docker) or /proc (local
process), not the job's row.
"""

from __future__ import annotations

import os
import select
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from container_manager.executors.docker_streams import parse_docker_time
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.states import JobStatus
from tests.acceptance.worker_process import (
    WorkerProcess,
    make_docker_host,
    queue_jobs,
    remove_containers,
    wait_until,
)
from tests.docker_fixtures import RUN_ID

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
]

TIMEOUT_SECONDS = 2
#: How late after its deadline a job may be killed.
MOST_LATE_SECONDS = 1.0


@pytest.fixture
def worker():
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        # The default heartbeat (10 s): the deadline must not wait for it.
        process = WorkerProcess(*args, CM_TEST_HEARTBEAT_SECONDS="10", CM_TEST_LEASE_SECONDS="60")
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.signal(signal.SIGTERM)
        try:
            process.wait_exit(30)
        finally:
            process.stop()


def _finished(job: ContainerJob) -> ContainerJob:
    wait_until(
        lambda: (
            ContainerJob.objects.filter(pk=job.pk, status=JobStatus.TIMEOUT)
            .exclude(exit_code=None)
            .exists()
        ),
        20,
        what=f"job {job.pk} timed out with its exit code stored",
    )
    return ContainerJob.objects.get(pk=job.pk)


def test_a_docker_job_is_killed_within_a_second_of_its_deadline(worker, docker_engine):
    host = make_docker_host()
    (job,) = queue_jobs(
        1, host, "echo before the limit; sleep 60", name="late", timeout_seconds=TIMEOUT_SECONDS
    )
    try:
        worker("--worker-id=timeout-docker", "--max-concurrent=2")
        stored = _finished(job)
        state = docker_engine.api.inspect_container(stored.container_id)["State"]
        killed_at = parse_docker_time(state["FinishedAt"])
        assert killed_at is not None
        assert stored.started_at is not None
        late = (killed_at - stored.started_at).total_seconds() - TIMEOUT_SECONDS
        assert late <= MOST_LATE_SECONDS, f"killed {late:.2f} s after the deadline"
        assert (stored.exit_code, stored.error_code) == (137, "SYSTEM_TIMEOUT")
        assert stored.stdout.strip() == "before the limit"
    finally:
        remove_containers(docker_engine, [job.pk])


def test_a_local_process_is_killed_within_a_second_of_its_deadline(worker, tmp_path: Path):
    host = ExecutorHost.objects.create(
        name=f"local-timeouts-{RUN_ID}",
        executor_type="process",
        max_concurrent_jobs=5,
        executor_config={"output_dir": str(tmp_path)},
    )
    pid_file = tmp_path / "pid"
    (job,) = queue_jobs(
        1,
        host,
        f"echo before the limit; echo $$ > {pid_file}; exec sleep 60",
        name="late-local",
        timeout_seconds=TIMEOUT_SECONDS,
    )
    worker("--worker-id=timeout-local", "--max-concurrent=2")
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 20, what="pid written")
    pid = int(pid_file.read_text())
    # The kernel tells when the process ends: a pidfd becomes readable.
    pidfd = os.pidfd_open(pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], 30)
    finally:
        os.close(pidfd)
    gone_at = datetime.now(UTC)
    assert readable, f"process {pid} still runs 30 s later"
    stored = _finished(job)
    assert stored.started_at is not None
    late = (gone_at - stored.started_at).total_seconds() - TIMEOUT_SECONDS
    assert late <= MOST_LATE_SECONDS, f"killed {late:.2f} s after the deadline"
    assert gone_at - stored.started_at >= timedelta(seconds=TIMEOUT_SECONDS)
    assert (stored.exit_code, stored.error_code) == (137, "SYSTEM_TIMEOUT")
    assert stored.stdout.strip() == "before the limit"
