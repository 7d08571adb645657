"""The clean-up of leftover containers: its rules, and one pass with the in-memory executor.

The rules (:func:`decide`) are checked on unsaved rows; a pass
(:meth:`Sweeper.sweep_host`) runs against the fake executor with the real
queue, so that the end of a cancelled job is recorded by ``finish_job``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from container_manager.exceptions import ExecutorError
from container_manager.executors.base import ContainerRef, ExitStatus, Logs
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.host import HealthStatus
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from container_manager.worker.heartbeat import Heartbeat
from container_manager.worker.state import WorkerState
from container_manager.worker.sweeper import DISCARD, FINISH, KILL, LEAVE, Sweeper, decide
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

HOST_ID = 7
NOW = timezone.now()
GRACE = 60.0
PAST_GRACE = NOW - timedelta(seconds=GRACE + 1)
WITHIN_GRACE = NOW - timedelta(seconds=5)


def row(status: str, attempt: int = 2, **fields: object) -> ContainerJob:
    fields.setdefault("host_id", HOST_ID)
    return ContainerJob(pk=5, status=status, attempt=attempt, **fields)


def ref(attempt: int = 2) -> ContainerRef:
    return ContainerRef(5, attempt, "c-5")


# The rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "attempt", "is_running", "action", "is_success"),
    [
        # Deleted job: removed (killed first when it runs).
        (None, 2, True, DISCARD, True),
        (None, 2, False, DISCARD, True),
        # Superseded attempt, whatever the job's state: removed, as a failure.
        (row(JobStatus.RUNNING), 1, True, DISCARD, False),
        (row(JobStatus.COMPLETED, exit_code=0), 1, False, DISCARD, False),
        # Current attempt of a job that has not ended: never touched.
        (row(JobStatus.RUNNING), 2, True, LEAVE, False),
        (row(JobStatus.RUNNING), 2, False, LEAVE, False),
        (row(JobStatus.PAUSED), 2, True, LEAVE, False),
        (row(JobStatus.PREPARING), 2, False, LEAVE, False),
        (row(JobStatus.QUEUED), 2, False, LEAVE, False),
        # Ended, end stored: retention, as a success only when completed.
        (row(JobStatus.COMPLETED, exit_code=0), 2, False, DISCARD, True),
        (row(JobStatus.FAILED, exit_code=1), 2, False, DISCARD, False),
        (row(JobStatus.FAILED), 2, False, DISCARD, False),
        (row(JobStatus.CANCELLED, exit_code=137), 2, True, DISCARD, False),
        (row(JobStatus.TIMEOUT, exit_code=137), 2, False, DISCARD, False),
        # Cancelled or timed out, output not stored: killed, or its end recorded.
        (row(JobStatus.CANCELLED, completed_at=NOW), 2, True, KILL, False),
        (row(JobStatus.TIMEOUT, completed_at=NOW - timedelta(hours=1)), 2, True, KILL, False),
        (row(JobStatus.CANCELLED, completed_at=PAST_GRACE), 2, False, FINISH, False),
        (row(JobStatus.TIMEOUT, completed_at=None), 2, False, FINISH, False),
        # ... but not while the worker that followed it may still record it.
        (row(JobStatus.CANCELLED, completed_at=WITHIN_GRACE), 2, False, LEAVE, False),
        # An attempt the row does not know of, or another host's: left alone.
        (row(JobStatus.COMPLETED, exit_code=0), 3, False, LEAVE, False),
        (row(JobStatus.COMPLETED, exit_code=0, host_id=8), 2, False, LEAVE, False),
    ],
)
def test_decide(job, attempt, is_running, action, is_success):
    decision = decide(ref(attempt), job, is_running, HOST_ID, NOW, GRACE)

    assert (decision.action, decision.is_success) == (action, is_success), decision.reason


def test_only_a_running_superseded_attempt_is_a_double_run():
    job = row(JobStatus.RUNNING)

    assert decide(ref(1), job, True, HOST_ID, NOW, GRACE).is_double_run
    assert not decide(ref(1), job, False, HOST_ID, NOW, GRACE).is_double_run
    assert not decide(ref(2), job, True, HOST_ID, NOW, GRACE).is_double_run


# One pass ----------------------------------------------------------------------------


def sweeper(**kwargs) -> Sweeper:
    return Sweeper(queue_manager, queue_manager.containers, WorkerState("w-sweep"), **kwargs)


def job_at(host: ExecutorHost, status: str, attempt: int = 1, **fields: object) -> ContainerJob:
    job = ContainerJob.objects.create(command="echo hi", host=host)
    # Straight to the state under test, past the transition guard.
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.VALIDATING, attempt=attempt)
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    if status != JobStatus.RUNNING:
        ContainerJob.objects.filter(pk=job.pk).update(status=status, **fields)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_a_pass_removes_what_is_left_over_and_never_a_container_whose_output_is_not_stored(
    fake_host, fake_executor, caplog
):
    long_ago = timezone.now() - timedelta(minutes=5)
    gone = fake_executor.add_container(99_999, 1)
    running = job_at(fake_host, JobStatus.RUNNING, attempt=2)
    old = fake_executor.add_container(running.pk, 1)
    current = fake_executor.add_container(running.pk, 2)
    completed = job_at(fake_host, JobStatus.COMPLETED, exit_code=0, stdout="kept")
    completed_ref = fake_executor.add_container(completed.pk, 1)
    fake_executor.end(completed_ref, 0)
    cancelled = job_at(fake_host, JobStatus.CANCELLED, completed_at=long_ago)
    cancelled_ref = fake_executor.add_container(cancelled.pk, 1)
    fake_executor.end(cancelled_ref, 137)
    just_cancelled = job_at(fake_host, JobStatus.CANCELLED, completed_at=timezone.now())
    just_cancelled_ref = fake_executor.add_container(just_cancelled.pk, 1)
    fake_executor.end(just_cancelled_ref, 137)
    timed_out = job_at(fake_host, JobStatus.TIMEOUT, completed_at=long_ago)
    timed_out_ref = fake_executor.add_container(timed_out.pk, 1)
    part = sweeper()

    with caplog.at_level(logging.INFO, logger="container_manager.worker.sweeper"):
        part.sweep_host(fake_host)

    left = set(fake_executor.containers.values())
    assert left == {current, just_cancelled_ref, timed_out_ref}
    # The cancelled job's container is removed by finish_job, per the retention.
    assert set(fake_executor.removed) == {
        gone.container_id,
        old.container_id,
        completed_ref.container_id,
        cancelled_ref.container_id,
    }
    # Running ones are killed; ended ones are not killed again.
    assert set(fake_executor.killed) == {
        gone.container_id,
        old.container_id,
        timed_out_ref.container_id,
    }
    cancelled.refresh_from_db()
    assert (cancelled.status, cancelled.exit_code, cancelled.stdout) == (
        JobStatus.CANCELLED,
        137,
        "out\n",
    )
    timed_out.refresh_from_db()
    assert timed_out.exit_code is None
    completed.refresh_from_db()
    assert completed.stdout == "kept"
    stats = part.state.stats
    assert (stats.containers_removed, stats.containers_killed) == (3, 3)
    assert stats.container_ends_recorded == 1
    assert any("ran beside its job's later attempt" in r.message for r in caplog.records)
    assert [r.message for r in caplog.records if r.message.startswith("Clean-up of leftover")] == [
        f"Clean-up of leftover containers on host {fake_host.name}: 3 removed, 3 killed, "
        "1 ends recorded, 0 failed"
    ]

    # The next pass records the end of the killed one, and removes it.
    part.grace_seconds = 0
    part.sweep_host(fake_host)

    timed_out.refresh_from_db()
    assert (timed_out.status, timed_out.exit_code) == (JobStatus.TIMEOUT, 137)
    assert set(fake_executor.containers.values()) == {current}


@pytest.mark.django_db
@override_settings(CONTAINER_MANAGER={"CONTAINER_RETENTION": "keep_failed"})
def test_retention_keeps_what_it_keeps_at_a_jobs_end(fake_host, fake_executor):
    running = job_at(fake_host, JobStatus.RUNNING, attempt=2)
    old = fake_executor.add_container(running.pk, 1)
    fake_executor.end(old, 1)
    failed = job_at(fake_host, JobStatus.FAILED, exit_code=1)
    failed_ref = fake_executor.add_container(failed.pk, 1)
    fake_executor.end(failed_ref, 1)
    completed = job_at(fake_host, JobStatus.COMPLETED, exit_code=0)
    completed_ref = fake_executor.add_container(completed.pk, 1)
    fake_executor.end(completed_ref, 0)

    sweeper().sweep_host(fake_host)

    assert fake_executor.removed == [completed_ref.container_id]
    assert fake_executor.killed == []


@pytest.mark.django_db
@override_settings(CONTAINER_MANAGER={"CONTAINER_RETENTION": "keep"})
def test_keep_only_kills(fake_host, fake_executor):
    gone = fake_executor.add_container(99_998, 1)

    sweeper().sweep_host(fake_host)

    assert (fake_executor.killed, fake_executor.removed) == ([gone.container_id], [])


@pytest.mark.django_db
def test_a_host_that_does_not_answer_is_logged_once_and_tried_again(
    fake_host, fake_executor, monkeypatch, caplog
):
    fake_executor.add_container(99_997, 1)
    failures = [ExecutorError("engine away"), ExecutorError("engine away")]
    real = fake_executor.list_managed

    def list_managed():
        if failures:
            raise failures.pop(0)
        return real()

    monkeypatch.setattr(fake_executor, "list_managed", list_managed)
    part = sweeper()

    with caplog.at_level(logging.INFO, logger="container_manager.worker.sweeper"):
        part.sweep_host(fake_host)
        part.sweep_host(fake_host)
        part.sweep_host(fake_host)

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.message.split(" (")[0] for r in warnings] == [
        f"Clean-up of leftover containers cannot reach host {fake_host.name}"
    ]
    assert any("reaches host" in r.message for r in caplog.records)
    assert len(fake_executor.removed) == 1
    assert part.state.stats.containers_removed == 1


@pytest.mark.django_db
def test_only_active_docker_and_process_hosts_that_are_not_down_are_swept():
    def host(name, **fields):
        fields.setdefault("connection_string", "unix:///var/run/docker.sock")
        return ExecutorHost.objects.create(name=name, **fields)

    healthy = host("healthy", health_status=HealthStatus.HEALTHY)
    unknown = host("unknown")
    host("down", health_status=HealthStatus.UNHEALTHY)
    host("inactive", is_active=False)
    local = host("local", executor_type="process", connection_string="")

    assert queue_manager.hosts_to_sweep() == [healthy, unknown, local]


@pytest.mark.django_db
def test_jobs_of_containers_is_one_query(django_assert_num_queries, fake_host):
    jobs = [job_at(fake_host, JobStatus.RUNNING) for _ in range(3)]
    refs = [ContainerRef(j.pk, 1, f"c{j.pk}") for j in jobs] + [ContainerRef(99_996, 1, "c")]

    with django_assert_num_queries(1):
        found = queue_manager.jobs_of_containers(refs)
        assert {pk: j.host.name for pk, j in found.items()} == {j.pk: "fake" for j in jobs}


@pytest.mark.django_db
def test_a_second_report_of_a_cancelled_jobs_end_keeps_the_output_stored_first(
    fake_host, fake_executor, monkeypatch
):
    job, container = fakes.running_job(fake_host, fake_executor)
    queue_manager.cancel_job(job)
    queue_manager.finish_job(job, ExitStatus(container, 137))
    # A late reader finds the output gone (the container was removed meanwhile).
    monkeypatch.setattr(fake_executor, "logs", lambda ref, cap: Logs("", ""))

    queue_manager.finish_job(job, ExitStatus(container, None))

    job.refresh_from_db()
    assert (job.status, job.exit_code, job.stdout) == (JobStatus.CANCELLED, 137, "out\n")


# Driven by the heartbeat ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_starts_and_stops_the_sweeper(fake_host, fake_executor, monkeypatch):
    gone = fake_executor.add_container(99_995, 1)
    monkeypatch.setattr(queue_manager, "hosts_to_sweep", lambda: [fake_host])
    part = sweeper(interval_seconds=0.05)
    beat = Heartbeat(queue_manager, part.state, 60, sweeper=part)

    beat.start()
    try:
        deadline = timezone.now() + timedelta(seconds=10)
        while gone.container_id not in fake_executor.removed and timezone.now() < deadline:
            part.state.sleep(0.05)
    finally:
        beat.stop()
        beat.join(5)
    part.join(5)

    assert gone.container_id in fake_executor.removed
    assert not part.is_alive()


@pytest.mark.django_db(transaction=True)
def test_the_first_pass_comes_at_start_not_one_interval_later(
    fake_host, fake_executor, monkeypatch
):
    gone = fake_executor.add_container(99_994, 1)
    monkeypatch.setattr(queue_manager, "hosts_to_sweep", lambda: [fake_host])
    part = sweeper(interval_seconds=3600)

    part.start()
    try:
        deadline = timezone.now() + timedelta(seconds=10)
        while gone.container_id not in fake_executor.removed and timezone.now() < deadline:
            part.state.sleep(0.05)
    finally:
        part.stop()
        part.join(5)

    assert gone.container_id in fake_executor.removed
    assert not part.is_alive()


@pytest.mark.django_db(transaction=True)
def test_a_once_worker_clears_leftovers_in_a_pass_of_its_own(fake_host, fake_executor, monkeypatch):
    from container_manager.worker import Worker

    gone = fake_executor.add_container(99_993, 1)
    monkeypatch.setattr(queue_manager, "hosts_to_sweep", lambda: [fake_host])

    worker = Worker(worker_id="w-once-sweep", once=True, queue_manager=queue_manager)
    assert worker._heartbeat.sweeper is None  # no thread: the pass is the run's own
    worker.run()

    assert gone.container_id in fake_executor.removed


@pytest.mark.django_db(transaction=True)
def test_a_pass_over_a_process_host_deletes_attempt_directories_whose_end_is_stored(tmp_path):
    from container_manager.executors import close_executors
    from container_manager.executors.base import container_name
    from container_manager.executors.process_supervisor import EXIT_FILE

    host = ExecutorHost.objects.create(
        name="local-sweep", executor_type="process", executor_config={"output_dir": str(tmp_path)}
    )
    completed = job_at(host, JobStatus.COMPLETED, exit_code=0, stdout="stored\n")
    launching = job_at(host, JobStatus.RUNNING)
    ContainerJob.objects.filter(pk=launching.pk).update(status=JobStatus.QUEUED)
    ContainerJob.objects.filter(pk=launching.pk).update(status=JobStatus.VALIDATING)

    def directory(job, exit_line=None):
        path = tmp_path / f"{container_name(job.pk, 1)}-xyz"
        path.mkdir()
        (path / "stdout.log").write_text("stored\n")
        if exit_line:
            (path / EXIT_FILE).write_text(exit_line)
        return path

    # A worker recorded the end and was killed before deleting the directory.
    ended_dir = directory(completed, "0 4242 exited\n")
    # Another worker process made this one and has not started its command yet.
    starting_dir = directory(launching)
    try:
        tally = sweeper().sweep_host(host)
    finally:
        close_executors()

    assert not ended_dir.exists()
    assert starting_dir.exists()
    assert (tally.removed, tally.failed) == (1, 0)
    completed.refresh_from_db()
    assert (completed.status, completed.stdout) == (JobStatus.COMPLETED, "stored\n")
