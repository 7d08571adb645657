"""The worker loop in-process, with an in-memory executor: claims, limits, stop, rescue."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from container_manager.models import ContainerJob
from container_manager.models import Worker as WorkerRow
from container_manager.queue import queue_manager
from container_manager.states import ACTIVE_STATUSES, JobStatus
from container_manager.worker import Worker, WorkerIdInUseError
from container_manager.worker import claimer as claimer_module
from tests.acceptance.worker_process import wait_until
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db(transaction=True)

#: The worker writes from several threads at once; SQLite's in-memory test
#: database locks whole tables across them, so these run on PostgreSQL.
threaded = pytest.mark.postgres


def queued(host, count=1, **fields):
    jobs = []
    for n in range(count):
        job = ContainerJob.objects.create(name=f"j{n}", command="echo", host=host, **fields)
        queue_manager.queue_job(job)
        jobs.append(job)
    return jobs


def status_of(job):
    return ContainerJob.objects.get(pk=job.pk).status


def fake_executor_running(executor):
    with executor.lock:
        return [r for r in executor.containers.values() if r.container_id not in executor.ended]


class Running:
    """A worker running its loop in a thread."""

    def __init__(self, **options):
        options.setdefault("poll_interval_seconds", 0.2)
        options.setdefault("heartbeat_seconds", 0.2)
        self.lines: list[str] = []
        self.worker = Worker(echo=self.lines.append, **options)
        self.stats = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from django.db import connection

        try:
            self.stats = self.worker.run()
        finally:
            connection.close()

    def stop(self):
        self.worker.request_stop("test")
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.stats


@threaded
def test_once_launches_ready_jobs_and_hands_their_leases_over(fake_host, fake_executor):
    jobs = queued(fake_host, 3)

    stats = Worker(worker_id="w-once", once=True, max_concurrent=5).run()

    assert stats.jobs_launched == 3
    assert {status_of(job) for job in jobs} == {JobStatus.RUNNING}
    assert len(fake_executor.containers) == 3
    now = timezone.now()
    assert all(
        j.lease_expires_at <= now for j in ContainerJob.objects.filter(pk__in=[j.pk for j in jobs])
    )
    row = WorkerRow.objects.get(worker_id="w-once")
    assert (row.status, row.jobs_launched) == ("stopped", 3)


@threaded
def test_worker_keeps_at_most_max_concurrent_and_refills_as_containers_end(
    fake_host, fake_executor
):
    jobs = queued(fake_host, 5)
    run = Running(worker_id="w-limit", max_concurrent=2)
    try:
        wait_until(lambda: len(fake_executor.containers) == 2, 5, 0.02)
        for _ in range(5):
            running = wait_until(lambda: fake_executor_running(fake_executor), 5, 0.02)
            assert len(running) <= 2
            held = ContainerJob.objects.filter(
                worker_id="w-limit", status__in=sorted(ACTIVE_STATUSES)
            ).count()
            assert held <= 2
            fake_executor.end(running[0], 0)
        wait_until(lambda: all(status_of(j) == JobStatus.COMPLETED for j in jobs), 5, 0.02)
    finally:
        stats = run.stop()
    assert (stats.jobs_launched, stats.jobs_finished) == (5, 5)
    assert len(fake_executor.launches) == 5


@threaded
def test_stop_lets_launch_in_flight_finish_and_releases_jobs_not_launched(
    fake_host, fake_executor, monkeypatch
):
    monkeypatch.setattr(claimer_module, "MAX_LAUNCH_THREADS", 1)
    gate = threading.Event()
    entered = threading.Event()
    original = fake_executor.launch

    def slow_launch(spec, on_step=None):
        entered.set()
        gate.wait(5)
        return original(spec, on_step)

    fake_executor.launch = slow_launch
    jobs = queued(fake_host, 3)
    run = Running(worker_id="w-stop", max_concurrent=3)
    assert entered.wait(5)

    run.worker.request_stop("SIGTERM")
    gate.set()
    stats = run.stop()

    assert stats.jobs_launched == 1
    assert sorted(status_of(j) for j in jobs) == [
        JobStatus.QUEUED,
        JobStatus.QUEUED,
        JobStatus.RUNNING,
    ]
    assert "Received SIGTERM, shutting down gracefully..." in run.lines
    assert "Left 1 running container(s) for another worker to adopt" in run.lines
    assert WorkerRow.objects.get(worker_id="w-stop").status == "stopped"


def _expire(job, status, attempt=1, **fields):
    ContainerJob.objects.filter(pk=job.pk).update(
        status=status,
        worker_id="dead",
        attempt=attempt,
        lease_expires_at=timezone.now() - timedelta(seconds=5),
        **fields,
    )


@threaded
def test_rescue_adopts_running_containers_and_requeues_jobs_that_never_started(
    fake_host, fake_executor
):
    running, claimed, launching = queued(fake_host, 3)
    _expire(claimed, JobStatus.VALIDATING)
    _expire(launching, JobStatus.VALIDATING)
    ContainerJob.objects.filter(pk=launching.pk).update(status=JobStatus.PREPARING)
    _expire(running, JobStatus.VALIDATING)
    ContainerJob.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    running_ref = fake_executor.add_container(running.pk, 1)
    launching_ref = fake_executor.add_container(launching.pk, 1)

    worker = Worker(worker_id="w-rescue", max_concurrent=5)
    assert worker.rescuer.rescue(worker.free_slots()) == 3
    assert worker.claimer.wait_idle(5)

    assert status_of(claimed) == JobStatus.QUEUED
    assert ContainerJob.objects.get(pk=claimed.pk).error_code == "WORKER_LOST"
    assert status_of(launching) == JobStatus.RUNNING
    assert ContainerJob.objects.get(pk=launching.pk).container_id == launching_ref.container_id
    assert status_of(running) == JobStatus.RUNNING
    assert sorted(worker.follower.job_ids()) == sorted([running.pk, launching.pk])
    # The adopted launch reused the existing container: still one per attempt.
    assert fake_executor.containers[(launching.pk, 1)] == launching_ref
    assert fake_executor.containers[(running.pk, 1)] == running_ref
    assert (worker.stats.jobs_adopted, worker.stats.jobs_requeued) == (2, 1)
    worker.claimer.close()


def test_rescue_without_free_slot_requeues_but_does_not_adopt(fake_host, fake_executor):
    running, claimed = queued(fake_host, 2)
    _expire(running, JobStatus.VALIDATING)
    ContainerJob.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    fake_executor.add_container(running.pk, 1)
    _expire(claimed, JobStatus.VALIDATING)

    worker = Worker(worker_id="w-full", max_concurrent=1)
    worker.free_slots = lambda: 0  # every slot taken
    assert worker.rescuer.rescue(0) == 1

    assert status_of(claimed) == JobStatus.QUEUED
    assert ContainerJob.objects.get(pk=running.pk).worker_id == "dead"
    worker.claimer.close()


@threaded
def test_restart_under_the_same_id_expires_its_own_leases_first(fake_host, fake_executor):
    (job,) = queued(fake_host, 1)
    ContainerJob.objects.filter(pk=job.pk).update(
        status=JobStatus.VALIDATING,
        worker_id="node-1",
        attempt=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    fake_executor.add_container(job.pk, 1)

    run = Running(worker_id="node-1", max_concurrent=2)
    try:
        wait_until(lambda: job.pk in run.worker.follower.job_ids(), 5, 0.02)
    finally:
        run.stop()
    assert "Reconciling 1 job(s) held by an earlier run of node-1" in run.lines
    assert f"Adopted job {job.pk} (attempt 1)" in run.lines


def _terminating_own_backend_first(step):
    """Wrap a start-up step so that its first call loses its connection as in a restart."""
    from django.db import connection

    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            with connection.cursor() as cursor:
                # What PostgreSQL says to every session when it shuts down.
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return step(*args, **kwargs)

    return wrapped, calls


@threaded
@pytest.mark.parametrize("step", ["register", "reconcile"])
def test_a_database_restart_during_start_up_is_waited_out_not_fatal(
    fake_host, fake_executor, monkeypatch, step
):
    from container_manager.worker import loop

    (job,) = queued(fake_host, 1)
    lines: list[str] = []
    worker = Worker(worker_id=f"w-start-{step}", once=True, echo=lines.append)
    if step == "register":
        wrapped, calls = _terminating_own_backend_first(loop.register)
        monkeypatch.setattr(loop, "register", wrapped)
    else:
        wrapped, calls = _terminating_own_backend_first(worker.rescuer.expire_own_leases)
        monkeypatch.setattr(worker.rescuer, "expire_own_leases", wrapped)

    stats = worker.run()

    assert len(calls) == 2, "the step must be tried again once the database answers"
    assert worker.database.outages == 1
    assert any(line.startswith("Database unreachable (OperationalError") for line in lines), lines
    assert stats.jobs_launched == 1
    assert status_of(job) == JobStatus.RUNNING
    assert WorkerRow.objects.get(worker_id=f"w-start-{step}").status == "stopped"


@threaded
def test_timeouts_are_enforced_by_the_holding_worker(fake_host, fake_executor):
    (job,) = queued(fake_host, 1, timeout_seconds=1)
    run = Running(worker_id="w-timeout", max_concurrent=1)
    try:
        wait_until(lambda: status_of(job) == JobStatus.RUNNING, 5, 0.02)
        ContainerJob.objects.filter(pk=job.pk).update(
            started_at=timezone.now() - timedelta(seconds=5)
        )
        wait_until(lambda: status_of(job) == JobStatus.TIMEOUT, 5, 0.02)
        # The timeout is stored first, then the container is killed.
        wait_until(lambda: fake_executor.killed, 5, 0.02)
    finally:
        run.stop()


@threaded
def test_a_job_cancelled_elsewhere_has_its_container_stopped_by_the_holding_worker(
    fake_host, fake_executor
):
    (job,) = queued(fake_host, 1)
    run = Running(worker_id="w-cancel", max_concurrent=1)
    try:
        wait_until(lambda: status_of(job) == JobStatus.RUNNING, 5, 0.02)
        # As the admin does when it cannot reach the host: the cancel is stored only.
        ContainerJob.objects.get(pk=job.pk).mark_as_cancelled()
        wait_until(lambda: fake_executor.killed, 5, 0.02)
        wait_until(lambda: ContainerJob.objects.get(pk=job.pk).stdout == "out\n", 5, 0.02)
    finally:
        run.stop()
    stored = ContainerJob.objects.get(pk=job.pk)
    assert stored.status == JobStatus.CANCELLED
    assert stored.exit_code == 137
    assert stored.stderr == "err\n"


@threaded
def test_progress_lines_are_written_to_the_job(fake_host, fake_executor):
    fake_executor.progress = [(10, "Loading"), (20, "dropped by the throttle"), (100, "Done")]
    (job,) = queued(fake_host, 1)
    run = Running(worker_id="w-progress", max_concurrent=1)
    try:
        wait_until(lambda: ContainerJob.objects.get(pk=job.pk).current_step == "Done", 5, 0.02)
    finally:
        run.stop()
    assert ContainerJob.objects.get(pk=job.pk).progress == 100


def test_a_live_worker_id_cannot_be_used_twice(fake_host):
    WorkerRow.objects.create(
        worker_id="taken", hostname="elsewhere", pid=1, last_heartbeat_at=timezone.now()
    )

    with pytest.raises(WorkerIdInUseError, match="in use"):
        Worker(worker_id="taken", once=True).run()


def test_sigusr1_asks_for_status_and_sigterm_for_stop(fake_host):
    worker = Worker(worker_id="w-signals")
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    try:
        worker.install_signal_handlers()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert worker._is_status_requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert worker.is_stopping
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        worker.claimer.close()


@threaded
def test_status_lines_show_queue_metrics_and_held_jobs(fake_host, fake_executor):
    lines: list[str] = []
    queued(fake_host, 1)
    worker = Worker(worker_id="w-status", once=True, echo=lines.append)
    worker.run()

    worker.print_status()

    assert lines[-2].startswith("Queue status: 0 ready now, 0 scheduled, 1 running,")
    assert "1 host(s) with 9 free slot(s)" in lines[-2]
    assert lines[-1].startswith("Worker status: w-status holds 0 launching")
    assert "launched 1" in lines[-1]


def test_heartbeat_stamps_the_worker_row_and_renews_held_leases(fake_host):
    from container_manager.worker.heartbeat import register

    (job,) = queued(fake_host, 1)
    soon = timezone.now() + timedelta(seconds=2)
    ContainerJob.objects.filter(pk=job.pk).update(
        status=JobStatus.VALIDATING, worker_id="w-beat", lease_expires_at=soon
    )
    worker = Worker(worker_id="w-beat", lease_seconds=120)
    row = register(worker.worker_id, ["reports"], worker.max_concurrent)
    worker.stats.jobs_launched = 7

    worker._heartbeat.beat()

    row.refresh_from_db()
    assert (row.status, row.jobs_launched, row.queues) == ("running", 7, ["reports"])
    assert row.last_heartbeat_at >= soon - timedelta(seconds=2)
    lease = ContainerJob.objects.get(pk=job.pk).lease_expires_at
    assert lease > timezone.now() + timedelta(seconds=100)


def test_a_worker_dedicated_to_some_queues_leaves_other_queues_jobs_alone(fake_host):
    (job,) = queued(fake_host, 1)
    _expire(job, JobStatus.VALIDATING)
    worker = Worker(worker_id="w-gpu", queues=["gpu"])

    assert worker.rescuer.rescue(worker.free_slots()) == 0

    assert ContainerJob.objects.get(pk=job.pk).worker_id == "dead"


def test_a_held_job_the_worker_lost_track_of_is_rescued_not_renewed_for_ever(
    fake_host, fake_executor
):
    (job,) = queued(fake_host, 1)
    ContainerJob.objects.filter(pk=job.pk).update(
        status=JobStatus.VALIDATING,
        worker_id="w-lost",
        attempt=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    ref = fake_executor.add_container(job.pk, 1)
    worker = Worker(worker_id="w-lost")

    assert worker.rescuer.expire_untracked() == 1
    assert worker.rescuer.rescue(worker.free_slots()) == 1

    assert worker.follower.job_ids() == [job.pk]
    assert worker.follower._tracked[job.pk].ref == ref
    assert worker.rescuer.expire_untracked() == 0
