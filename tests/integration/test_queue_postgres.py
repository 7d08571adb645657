"""The queue on a real PostgreSQL: NOTIFY wake-ups, SKIP LOCKED, and the ready index."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.queue import JobQueueManager, queue_manager
from container_manager.queue.claims import host_lock_key
from container_manager.states import JobStatus

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 5.0

ENQUEUE_SCRIPT = textwrap.dedent(
    """
    import time
    import django
    django.setup()
    from container_manager.models import ContainerJob
    from container_manager.queue import queue_manager
    job = ContainerJob.objects.create(command="echo wake up")
    queue_manager.queue_job(job)
    print(time.time(), flush=True)
    """
)


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def waiter():
    manager = JobQueueManager(worker_id="waiter")
    yield manager
    manager.close()


def start_waiting(manager, timeout_seconds):
    """Wait for work in a thread (as a worker does); return its result dict and thread."""
    listening, result = threading.Event(), {}

    def run():
        manager.wait_for_work(0)  # the first call starts LISTEN and returns at once
        listening.set()
        result["value"] = manager.wait_for_work(timeout_seconds)
        result["woke_at"] = time.time()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert listening.wait(10)
    return result, thread


def test_idle_waiter_wakes_at_once_on_an_enqueue_committed_by_another_process(waiter):
    result, thread = start_waiting(waiter, POLL_SECONDS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", ENQUEUE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    committed_at = float(done.stdout.split()[-1])
    thread.join(POLL_SECONDS + 5)
    assert result["value"] is True
    latency = result["woke_at"] - committed_at
    assert latency < 0.2 * POLL_SECONDS, f"woke {latency:.3f} s after the commit"
    assert ContainerJob.objects.filter(status=JobStatus.QUEUED).count() == 1


def test_rolled_back_enqueue_wakes_nobody(waiter):
    result, thread = start_waiting(waiter, 0.5)
    job = ContainerJob.objects.create(command="echo never")

    def queue_then_roll_back():
        with transaction.atomic():
            queue_manager.queue_job(job)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        queue_then_roll_back()
    thread.join(5)
    assert result["value"] is False
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_claim_skips_a_row_locked_by_another_connection_without_waiting():
    ExecutorHost.objects.create(name="h", executor_type="process")
    first, second = (ContainerJob.objects.create(command="echo") for _ in range(2))
    queue_manager.queue_job(first, priority=90)
    queue_manager.queue_job(second, priority=10)
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        with transaction.atomic():
            list(ContainerJob.objects.select_for_update().filter(pk=first.pk))
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_lock, daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        begin = time.monotonic()
        claimed = queue_manager.claim_jobs("w1", 2)
        elapsed = time.monotonic() - begin
    finally:
        release.set()
        holder.join(10)
    assert [j.pk for j in claimed] == [second.pk]
    assert elapsed < 1.0
    assert ContainerJob.objects.get(pk=first.pk).status == JobStatus.QUEUED


def test_ready_query_uses_the_partial_ready_index():
    now = timezone.now()
    done = [
        ContainerJob(
            command="echo", image="busybox", status=JobStatus.COMPLETED, queued_at=now, priority=50
        )
        for _ in range(10000)
    ]
    ready = [
        ContainerJob(
            command="echo",
            image="busybox",
            status=JobStatus.QUEUED,
            queued_at=now - timedelta(seconds=n),
            priority=n % 100,
        )
        for n in range(200)
    ]
    ContainerJob.objects.bulk_create(done + ready, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE container_manager_containerjob")
    plan = queue_manager.get_ready_jobs(limit=10).explain()
    assert "cm_job_ready_idx" in plan, plan
    assert "Seq Scan on container_manager_containerjob" not in plan, plan
    assert [j.priority for j in queue_manager.get_ready_jobs(limit=3)] == [99, 99, 98]
    # The claim's own SELECT ... FOR UPDATE SKIP LOCKED uses it too.
    ExecutorHost.objects.create(name="h", executor_type="process")
    with CaptureQueriesContext(connection) as queries:
        assert len(queue_manager.claim_jobs("w1", 5)) == 5
    [locking] = [q["sql"] for q in queries if "SKIP LOCKED" in q["sql"]]
    claim_plan = explain(locking)
    assert "cm_job_ready_idx" in claim_plan, claim_plan
    assert "Seq Scan on container_manager_containerjob" not in claim_plan, claim_plan
    # Neither do the claim's capacity counts scan the finished jobs.
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts
    for sql in counts:
        plan = explain(sql)
        assert "Seq Scan on container_manager_containerjob" not in plan, plan


def explain(sql):
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_launch_next_batch_gives_up_when_its_hosts_slot_lock_is_held_past_its_timeout():
    host = ExecutorHost.objects.create(name="h", executor_type="process")
    job = ContainerJob.objects.create(command="echo")
    queue_manager.queue_job(job)
    locked, release = threading.Event(), threading.Event()

    def hold_host_lock():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [host_lock_key(host.pk)])
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_host_lock, daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        begin = time.monotonic()
        result = JobQueueManager(worker_id="w1", containers=object()).launch_next_batch(
            max_concurrent=1, timeout=1
        )
        elapsed = time.monotonic() - begin
    finally:
        release.set()
        holder.join(10)
    assert result["launched"] == 0
    assert result["errors"][0].startswith("Could not acquire jobs within 1 s")
    assert 0.9 < elapsed < 5
    assert ContainerJob.objects.get(pk=job.pk).status == JobStatus.QUEUED


def queued(queue, host):
    job = ContainerJob.objects.create(command="echo", queue=queue, host=host)
    queue_manager.queue_job(job)
    return job


class OpenClaim:
    """A claim by another connection whose transaction stays open until ``close()``."""

    def __init__(self, job):
        self.claimed, self.ready, self.release = None, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.run, args=(job,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def run(self, job):
        try:
            with transaction.atomic():
                self.claimed = queue_manager.claim_job(job, "holder")
                self.ready.set()
                self.release.wait(10)
        finally:
            self.ready.set()
            connection.close()

    def close(self):
        self.release.set()
        self.thread.join(10)


def timed_claim(worker_id, queues):
    begin = time.monotonic()
    try:
        claimed = queue_manager.claim_jobs(worker_id, 1, queues=queues, lock_timeout_seconds=1)
    except OperationalError:
        claimed = None
    return claimed, time.monotonic() - begin


def test_claims_for_different_hosts_do_not_wait_for_each_other():
    alpha = ExecutorHost.objects.create(name="alpha", executor_type="process")
    beta = ExecutorHost.objects.create(name="beta", executor_type="process")
    on_alpha, on_beta = queued("a", alpha), queued("b", beta)
    also_alpha = queued("a2", alpha)
    holder = OpenClaim(on_alpha)
    try:
        assert holder.claimed.pk == on_alpha.pk
        # Beta's slots are counted under beta's lock only: no wait.
        claimed, elapsed = timed_claim("hosts-1", ["b"])
        assert [job.pk for job in claimed] == [on_beta.pk]
        assert elapsed < 0.5
        # Alpha's are not: a worker's first claim there waits for the open
        # claim's commit (here, past its timeout) ...
        claimed, elapsed = timed_claim("hosts-2", ["a2"])
        assert claimed is None
        assert elapsed >= 0.9
        # ... and a worker holding beta's lock from its last claim never
        # waits for another: it takes nothing from alpha this time.
        claimed, elapsed = timed_claim("hosts-1", ["a2"])
        assert claimed == []
        assert elapsed < 0.5
    finally:
        holder.close()
    # Its next claim waits for alpha first, and gets the job.
    claimed, _ = timed_claim("hosts-1", ["a2"])
    assert [job.pk for job in claimed] == [also_alpha.pk]


def test_claims_in_a_limited_queue_wait_for_each_other_on_any_host():
    alpha = ExecutorHost.objects.create(name="alpha", executor_type="process")
    beta = ExecutorHost.objects.create(name="beta", executor_type="process")
    JobQueue.objects.create(name="reports", max_concurrent=2)
    first = queued("reports", alpha)
    queued("reports", beta)
    free = queued("default", beta)
    holder = OpenClaim(first)
    try:
        assert holder.claimed.pk == first.pk
        # The limited queue's slots are counted under its own lock.
        claimed, elapsed = timed_claim("queues-1", ["reports"])
        assert claimed is None
        assert elapsed >= 0.9
        # An unlimited queue takes no queue lock, and beta's lock is free.
        claimed, elapsed = timed_claim("queues-2", ["default"])
        assert [job.pk for job in claimed] == [free.pk]
        assert elapsed < 0.5
    finally:
        holder.close()


def test_a_claims_lock_timeout_does_not_outlive_the_claim():
    def lock_timeout() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            return cursor.fetchone()[0]

    before = lock_timeout()
    # On its own, the claim is the whole transaction: SET LOCAL ends with it.
    queue_manager.claim_jobs("w1", 1, lock_timeout_seconds=0.5)
    assert lock_timeout() == before
    # Inside a caller's transaction, the caller's setting is restored at once.
    with transaction.atomic():
        queue_manager.claim_jobs("w1", 1, lock_timeout_seconds=0.5)
        assert lock_timeout() == before
    assert before != "500ms"
