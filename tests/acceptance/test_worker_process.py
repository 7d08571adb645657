"""The real ``process_container_jobs --queue-mode`` in subprocesses, on PostgreSQL and Docker."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from container_manager.executors.base import LaunchSpec, container_labels
from container_manager.models import ContainerJob, JobQueue, Worker
from container_manager.states import ACTIVE_STATUSES, LAUNCHING_STATUSES, JobStatus
from tests.acceptance.worker_process import (
    WorkerProcess,
    containers_by_attempt,
    make_docker_host,
    queue_jobs,
    remove_containers,
    statuses,
    wait_until,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
]


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
def host(docker_engine):
    return make_docker_host()


@pytest.fixture
def cleanup(docker_engine):
    jobs: list[ContainerJob] = []
    yield jobs
    remove_containers(docker_engine, [job.pk for job in jobs])


def all_done(jobs, status=JobStatus.COMPLETED):
    return lambda: all(s == status for s in statuses(jobs).values())


def assert_each_job_ran_once(docker_engine, jobs):
    """Exactly one container per job, and it belongs to the job's final attempt."""
    counts = containers_by_attempt(docker_engine, [job.pk for job in jobs])
    for job in ContainerJob.objects.filter(pk__in=[j.pk for j in jobs]):
        assert job.status == JobStatus.COMPLETED, (job.pk, job.status, job.last_error)
        assert counts[job.pk] == {job.attempt: 1}, (job.pk, job.attempt, counts[job.pk])


def test_once_launches_ready_jobs_and_exits(workers, host, cleanup, docker_engine):
    ready = queue_jobs(3, host, "sleep 5")
    later = ContainerJob.objects.create(command="echo later", host=host)
    from container_manager.queue import queue_manager

    queue_manager.queue_job(later, schedule_for=timezone.now() + timedelta(hours=1))
    cleanup.extend([*ready, later])

    worker = workers("--once", "--max-concurrent=5")

    assert worker.wait_exit(30) == 0, worker.output
    assert "Processed queue: launched 3 jobs" in worker.output
    assert set(statuses(ready).values()) == {JobStatus.RUNNING}
    assert statuses([later]) == {later.pk: JobStatus.QUEUED}
    counts = containers_by_attempt(docker_engine, [job.pk for job in ready])
    assert all(counts[job.pk] == {1: 1} for job in ready), counts


def test_idle_worker_picks_up_new_job_well_within_poll_interval(
    workers, host, cleanup, docker_engine
):
    poll_interval = 10
    worker = workers(f"--poll-interval={poll_interval}")
    worker.wait_ready()
    # Let the worker go idle: its first wait returns at once (LISTEN starts).
    wait_until(
        lambda: Worker.objects.filter(status="running").exists(), 10, what="worker registered"
    )

    enqueued_at = time.monotonic()
    (job,) = queue_jobs(1, host, "echo picked")
    cleanup.append(job)
    worker.wait_for_line(rf"Launched job {job.pk}\b", timeout=poll_interval)
    pickup_seconds = time.monotonic() - enqueued_at

    assert pickup_seconds < 0.2 * poll_interval, pickup_seconds
    wait_until(all_done([job]), 20, what="job completed")
    job.refresh_from_db()
    assert job.stdout == "picked\n"
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0


def test_sigterm_during_launches_leaves_containers_then_second_worker_adopts(
    workers, host, cleanup, docker_engine
):
    jobs = queue_jobs(6, host, "sleep 4")
    cleanup.extend(jobs)
    first = workers("--max-concurrent=6", "--worker-id=first")
    first.wait_for_line(r"Launched job")
    first.signal(signal.SIGTERM)

    assert first.wait_exit(30) == 0, first.output
    assert "shutting down gracefully" in first.output
    after = statuses(jobs)
    assert not set(after.values()) & set(LAUNCHING_STATUSES), after
    running = [job for job in jobs if after[job.pk] == JobStatus.RUNNING]
    assert running, after
    for job in ContainerJob.objects.filter(pk__in=[j.pk for j in running]):
        state = docker_engine.api.inspect_container(job.container_id)["State"]
        assert state["Running"], (job.pk, state)
    assert Worker.objects.get(worker_id="first").status == "stopped"

    second = workers("--max-concurrent=6", "--worker-id=second")
    wait_until(all_done(jobs), 40, what="all jobs completed by the second worker")

    assert_each_job_ran_once(docker_engine, jobs)
    for job in running:
        second.wait_for_line(rf"Adopted job {job.pk}\b", timeout=5)
    second.signal(signal.SIGTERM)
    assert second.wait_exit(20) == 0


def _leftovers_of_a_dead_worker(host, docker_engine):
    """Jobs as a SIGKILLed worker leaves them: claimed, launching (container created), running."""
    expired = timezone.now() - timedelta(seconds=30)
    dead = {"worker_id": "dead-worker", "lease_expires_at": expired, "attempt": 1}
    claimed, launching, running = queue_jobs(3, host, "sleep 1", name="leftover")
    ContainerJob.objects.filter(pk=claimed.pk).update(status=JobStatus.VALIDATING, **dead)
    ContainerJob.objects.filter(pk=launching.pk).update(status=JobStatus.VALIDATING, **dead)
    ContainerJob.objects.filter(pk=launching.pk).update(status=JobStatus.PREPARING)
    ContainerJob.objects.filter(pk=running.pk).update(status=JobStatus.VALIDATING, **dead)
    ContainerJob.objects.filter(pk=running.pk).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), launched_at=timezone.now()
    )
    for job, start in ((launching, False), (running, True)):
        job.refresh_from_db()
        spec = LaunchSpec.from_job(job)
        container = docker_engine.containers.create(
            spec.image,
            list(spec.command),
            name=spec.name,
            labels=container_labels(spec),
            network_mode="none",
        )
        if start:
            container.start()
            ContainerJob.objects.filter(pk=job.pk).update(container_id=container.id)
    return [claimed, launching, running]


def test_sigkill_with_jobs_in_every_phase_then_each_job_finishes_exactly_once(
    workers, host, cleanup, docker_engine
):
    leftovers = _leftovers_of_a_dead_worker(host, docker_engine)
    jobs = queue_jobs(10, host, "sleep 2")
    cleanup.extend([*leftovers, *jobs])
    # The victim adopts or requeues the leftovers too, then dies in the middle of it all.
    victim = workers("--max-concurrent=6", "--worker-id=victim", "--queues=default")
    victim.wait_for_line(r"Adopted job|Launched job")
    victim.signal(signal.SIGKILL)
    victim.wait_exit(10)

    rescuer = workers("--max-concurrent=20", "--worker-id=rescuer")
    everything = [*leftovers, *jobs]
    wait_until(all_done(everything), 60, what="every job completed")

    assert_each_job_ran_once(docker_engine, everything)
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait_exit(20) == 0


def test_restarted_worker_reconciles_its_own_jobs_first(workers, host, cleanup, docker_engine):
    jobs = queue_jobs(2, host, "sleep 3")
    cleanup.extend(jobs)
    worker = workers("--max-concurrent=2", "--worker-id=node-a", CM_TEST_LEASE_SECONDS="60")
    for job in jobs:
        worker.wait_for_line(rf"Launched job {job.pk}\b")
    worker.signal(signal.SIGKILL)
    worker.wait_exit(10)

    # A lease of 60 s: only the reconciliation of the restarted worker can be this fast.
    restarted = workers("--max-concurrent=2", "--worker-id=node-a", CM_TEST_LEASE_SECONDS="60")
    restarted.wait_for_line(r"Reconciling 2 job\(s\)")
    wait_until(all_done(jobs), 20, what="jobs completed after the restart")

    assert_each_job_ran_once(docker_engine, jobs)
    restarted.signal(signal.SIGTERM)
    assert restarted.wait_exit(20) == 0


@pytest.mark.parametrize("worker_count", [2, 4])
def test_several_workers_on_one_queue_respect_every_limit(
    workers, docker_engine, cleanup, worker_count
):
    host = make_docker_host(max_concurrent_jobs=3)
    JobQueue.objects.create(name="limited", max_concurrent=2)
    plain = queue_jobs(6, host, "sleep 1", name="plain")
    limited = queue_jobs(6, host, "sleep 1", name="limited", queue="limited")
    jobs = [*plain, *limited]
    cleanup.extend(jobs)
    peaks = {"host": 0, "limited": 0, "worker": 0}
    done = threading.Event()

    def watch() -> None:
        from django.db import connection

        try:
            while not done.is_set():
                active = ContainerJob.objects.filter(
                    pk__in=[j.pk for j in jobs], status__in=sorted(ACTIVE_STATUSES)
                )
                peaks["host"] = max(peaks["host"], active.count())
                peaks["limited"] = max(peaks["limited"], active.filter(queue="limited").count())
                per_worker = [active.filter(worker_id=f"w{n}").count() for n in range(worker_count)]
                peaks["worker"] = max(peaks["worker"], *per_worker)
                done.wait(0.03)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    procs = [workers("--max-concurrent=2", f"--worker-id=w{n}") for n in range(worker_count)]
    try:
        wait_until(all_done(jobs), 60, what="all jobs completed")
    finally:
        done.set()
        watcher.join(5)

    assert peaks["host"] <= 3, peaks
    assert peaks["limited"] <= 2, peaks
    assert peaks["worker"] <= 2, peaks
    assert peaks["host"] >= 2, peaks  # the workers did run in parallel
    assert_each_job_ran_once(docker_engine, jobs)
    for proc in procs:
        proc.signal(signal.SIGTERM)
    assert [proc.wait_exit(20) for proc in procs] == [0] * worker_count


def test_sigusr1_prints_queue_and_worker_status(workers, host, cleanup, docker_engine):
    (job,) = queue_jobs(1, host, "sleep 30")
    cleanup.append(job)
    worker = workers("--worker-id=status-worker")
    worker.wait_for_line(rf"Launched job {job.pk}\b")

    worker.signal(signal.SIGUSR1)

    queue_line = worker.wait_for_line(r"INFO Queue status: ", timeout=10)
    assert ", 1 running," in queue_line
    worker_line = worker.wait_for_line(r"INFO Worker status: status-worker", timeout=10)
    assert f"running [{job.pk}]" in worker_line
    assert worker.proc.poll() is None
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
    # The running container was left for adoption, not killed.
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert docker_engine.api.inspect_container(job.container_id)["State"]["Running"]


def test_progress_lines_and_timeouts_are_handled_by_the_worker(
    workers, host, cleanup, docker_engine
):
    (reporting,) = queue_jobs(1, host, "echo '::progress 40 Loading data'; sleep 30", name="p")
    (slow,) = queue_jobs(1, host, "sleep 60", name="slow", timeout_seconds=2)
    cleanup.extend([reporting, slow])
    worker = workers("--worker-id=progress-worker")

    wait_until(
        lambda: ContainerJob.objects.filter(
            pk=reporting.pk, progress=40, current_step="Loading data"
        ).exists(),
        15,
        what="progress written",
    )
    wait_until(all_done([slow], JobStatus.TIMEOUT), 15, what="slow job timed out")

    slow.refresh_from_db()
    assert (slow.error_code, slow.worker_id) == ("SYSTEM_TIMEOUT", "")
    # The timeout is stored first, then the container is killed.
    wait_until(
        lambda: not docker_engine.api.inspect_container(slow.container_id)["State"]["Running"],
        10,
        what="timed-out container killed",
    )
    worker.wait_for_line(rf"Job {slow.pk} timed out after 2 s")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
