"""Each part of the worker built alone, with a recording queue and container layer.

The parts get the queue, the container layer, the shared state and callbacks
(docs/architecture.md, "Where the loop is"); these tests build each one with
fakes of those and check what it asks of them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import OperationalError
from django.utils import timezone

from container_manager.executors.base import ContainerRef, ExitStatus, Progress
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models import Worker as WorkerRow
from container_manager.queue import LaunchOutcome
from container_manager.states import JobStatus
from container_manager.worker.claimer import Claimer
from container_manager.worker.follower import Follower
from container_manager.worker.heartbeat import Heartbeat
from container_manager.worker.rescuer import Rescuer
from container_manager.worker.state import WorkerState


@dataclass
class RecordingQueue:
    """Answers like JobQueueManager and remembers every call."""

    claimable: list = field(default_factory=list)
    outcomes: dict = field(default_factory=dict)
    expired: list = field(default_factory=list)
    is_taken_over: bool = True
    claim_error: Exception | None = None
    finish_error: Exception | None = None
    calls: list = field(default_factory=list)
    progress_seen: threading.Event = field(default_factory=threading.Event)
    timed_out: threading.Event = field(default_factory=threading.Event)
    timed_out_at: datetime | None = None

    def claim_jobs(self, worker_id, limit, queues=None, lease_seconds=None, **kwargs):
        self.calls.append(("claim_jobs", worker_id, limit, queues, lease_seconds))
        if self.claim_error is not None:
            raise self.claim_error
        claimed, self.claimable = self.claimable[:limit], self.claimable[limit:]
        return claimed

    def launch_claimed(self, job):
        self.calls.append(("launch_claimed", job.pk))
        return self.outcomes.get(job.pk, LaunchOutcome(True))

    def release_job(self, job, worker_id, reason=""):
        self.calls.append(("release_job", job.pk, worker_id))
        return True

    def finish_job(self, job, status, worker_id=None):
        self.calls.append(("finish_job", job.pk, status.exit_code, worker_id))
        if self.finish_error is not None:
            raise self.finish_error
        job.status = JobStatus.COMPLETED
        return True

    def finish_jobs(self, ends, worker_id=None, defer_retention=False):
        from container_manager.queue.finishing import FinishOutcome

        self.calls.append(("finish_jobs", [job.pk for job, _ in ends], worker_id))
        if self.finish_error is not None:
            raise self.finish_error
        self.deferred_retention = defer_retention
        for job, _ in ends:
            job.status = JobStatus.COMPLETED
        outcome = FinishOutcome(written={job.pk for job, _ in ends})
        if defer_retention:
            outcome.to_retain = [(job, status.ref, True) for job, status in ends]
        return outcome

    def timeout_job(self, job, ref):
        self.calls.append(("timeout_job", job.pk, ref.attempt))
        self.timed_out_at = timezone.now()
        self.timed_out.set()
        return True

    def record_progress(self, ref, percent, step):
        self.calls.append(("record_progress", ref.job_id, percent, step))
        self.progress_seen.set()
        return True

    def expired_jobs(self, limit=100):
        self.calls.append(("expired_jobs", limit))
        return list(self.expired)

    def take_over(self, job, worker_id, lease_seconds=None):
        self.calls.append(("take_over", job.pk, worker_id, lease_seconds))
        return self.is_taken_over

    def record_container(self, job, worker_id, container_id):
        self.calls.append(("record_container", job.pk, container_id))
        job.container_id = container_id
        return True

    def requeue_orphan(self, job, **kwargs):
        self.calls.append(("requeue_orphan", job.pk))
        return True

    def expire_leases(self, worker_id, job_ids=None):
        self.calls.append(("expire_leases", worker_id, None if job_ids is None else list(job_ids)))
        return 0 if job_ids is None else len(list(job_ids))

    def renew_leases(self, worker_id, lease_seconds=None):
        self.calls.append(("renew_leases", worker_id, lease_seconds))
        return 0

    def named(self, name):
        return [call for call in self.calls if call[0] == name]


@dataclass
class RecordingContainers:
    """Answers like the container layer and remembers every call."""

    ended: list = field(default_factory=list)
    found: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def wait_finished(self, host, refs, timeout_seconds):
        self.calls.append(("wait_finished", host.name, sorted(r.job_id for r in refs)))
        ended, self.ended = self.ended, []
        return ended

    def apply_retention(self, job, ref, is_success):
        self.calls.append(("apply_retention", job.pk, is_success))

    def kill(self, job, ref):
        self.calls.append(("kill", job.pk))

    def find(self, job):
        self.calls.append(("find", job.pk))
        return self.found.get(job.pk)

    def follow_progress(self, job, ref, callback):
        callback(Progress(ref, 40, "Loading"))


def make_state(**options):
    wakes = []
    lines = []
    state = WorkerState("w-parts", wake=lambda: wakes.append(1), echo=lines.append, **options)
    return state, wakes, lines


def fake_job(pk, attempt=1, status=JobStatus.VALIDATING, queue="default", host=None):
    return SimpleNamespace(
        pk=pk,
        attempt=attempt,
        status=status,
        queue=queue,
        container_id="",
        host=host,
        host_id=None if host is None else host.pk,
        error_code="",
        timeout_seconds=60,
        started_at=None,
        kind="run",
    )


def ref_of(job):
    return ContainerRef(job.pk, job.attempt, f"c{job.pk}")


# Claimer -----------------------------------------------------------------------


def build_claimer(queue, state, free=3, on_launched=None):
    return Claimer(
        queue,
        state,
        max_concurrent=4,
        acquire_timeout_seconds=1,
        free_slots=lambda: free,
        on_launched=on_launched or (lambda job, ref: None),
    )


def test_claimer_claims_the_free_slots_and_hands_each_launched_job_on_while_still_counted():
    queue = RecordingQueue(claimable=[fake_job(n) for n in (1, 2, 3, 4)])
    state, wakes, _ = make_state(queues=["reports"], lease_seconds=30)
    handed = []
    claimer = None

    def on_launched(job, ref):
        # Still launching while it is handed over: its slot is never free in between.
        handed.append((job.pk, ref.attempt, job.pk in claimer.job_ids()))

    claimer = build_claimer(queue, state, free=3, on_launched=on_launched)
    claimed = claimer.acquire()
    assert claimer.wait_idle(5)
    claimer.close()

    assert [job.pk for job in claimed] == [1, 2, 3]
    assert queue.named("claim_jobs") == [("claim_jobs", "w-parts", 3, ["reports"], 30)]
    assert sorted(handed) == [(1, 1, True), (2, 1, True), (3, 1, True)]
    assert state.stats.jobs_launched == 3
    assert len(claimer) == 0
    assert len(wakes) == 3


def test_claimer_releases_claimed_jobs_instead_of_launching_once_stopping():
    queue = RecordingQueue(claimable=[fake_job(7)])
    state, _, _ = make_state()
    claimer = build_claimer(queue, state)
    state.stop()

    claimer.acquire()
    assert claimer.wait_idle(5)
    claimer.close()

    assert queue.named("release_job") == [("release_job", 7, "w-parts")]
    assert queue.named("launch_claimed") == []


def test_claimer_counts_a_failed_launch_as_an_error_and_does_not_hand_it_on():
    queue = RecordingQueue(
        claimable=[fake_job(5)], outcomes={5: LaunchOutcome(False, "DOCKER_PULL_FAILED: slow")}
    )
    state, _, lines = make_state()
    handed = []
    claimer = build_claimer(queue, state, on_launched=lambda job, ref: handed.append(job.pk))

    claimer.acquire()
    assert claimer.wait_idle(5)
    claimer.close()

    assert handed == []
    assert state.stats.errors == ["Job 5: DOCKER_PULL_FAILED: slow"]
    assert lines == ["Launch of job 5 failed: DOCKER_PULL_FAILED: slow"]


def test_claimer_without_free_slot_asks_nothing_and_a_lock_timeout_is_an_error():
    queue = RecordingQueue(claimable=[fake_job(1)])
    state, _, _ = make_state()

    assert build_claimer(queue, state, free=0).acquire() == []
    assert queue.calls == []

    queue.claim_error = OperationalError("canceling statement due to lock timeout")
    assert build_claimer(queue, state, free=2).acquire() == []
    assert state.stats.errors == [
        "Could not acquire jobs within 1 s: canceling statement due to lock timeout"
    ]


# Follower ----------------------------------------------------------------------


@pytest.fixture
def host(db):
    return ExecutorHost.objects.create(name="parts", executor_type="process")


def test_follower_has_the_queue_record_each_end_and_frees_the_slot(host):
    queue, containers = RecordingQueue(), RecordingContainers()
    state, wakes, lines = make_state()
    follower = Follower(queue, containers, state)
    first, second = fake_job(1, host=host), fake_job(2, host=host)
    follower.add(first, ref_of(first))
    follower.add(second, ref_of(second))
    containers.ended = [ExitStatus(ref_of(second), 0)]

    assert follower.poll_host(host.pk, 0.0) == 1

    assert containers.calls == [("wait_finished", "parts", [1, 2])]
    assert queue.named("finish_jobs") == [("finish_jobs", [2], "w-parts")]
    assert follower.job_ids() == [1]
    assert state.stats.jobs_finished == 1
    assert wakes == [1]
    assert lines == ["Job 2 completed (exit code 0)"]


def test_follower_records_the_ends_of_one_wait_in_one_call(host):
    queue, containers = RecordingQueue(), RecordingContainers()
    state, _, _ = make_state()
    follower = Follower(queue, containers, state)
    jobs = [fake_job(pk, host=host) for pk in (1, 2, 3)]
    for job in jobs:
        follower.add(job, ref_of(job))
    containers.ended = [ExitStatus(ref_of(job), 0) for job in jobs]

    assert follower.poll_host(host.pk, 0.0) == 3

    assert queue.named("finish_jobs") == [("finish_jobs", [1, 2, 3], "w-parts")]
    assert queue.named("finish_job") == []
    assert follower.job_ids() == []
    assert state.stats.jobs_finished == 3


def test_follower_keeps_every_end_of_a_batch_whose_transaction_failed(host):
    queue = RecordingQueue(finish_error=OperationalError("server closed"))
    containers = RecordingContainers()
    state, _, _ = make_state()
    follower = Follower(queue, containers, state)
    jobs = [fake_job(pk, host=host) for pk in (5, 6)]
    for job in jobs:
        follower.add(job, ref_of(job))
    containers.ended = [ExitStatus(ref_of(job), 0) for job in jobs]

    assert follower.poll_host(host.pk, 0.0) == 0

    assert follower.job_ids() == [5, 6]
    assert state.stats.jobs_finished == 0


def test_a_following_thread_records_ends_and_leaves_removals_to_the_remover(host):
    queue, containers = RecordingQueue(), RecordingContainers()
    state, _, _ = make_state()
    follower = Follower(queue, containers, state)
    jobs = [fake_job(pk, host=host) for pk in (7, 8)]
    for job in jobs:
        follower.add(job, ref_of(job))
    containers.ended = [ExitStatus(ref_of(job), 0) for job in jobs]

    follower.start()
    try:
        deadline = time.monotonic() + 10
        while follower.job_ids() and time.monotonic() < deadline:
            state.sleep(0.01)
    finally:
        follower.stop()

    assert follower.job_ids() == []
    assert queue.deferred_retention is True
    # The remover applied the retention of both before the follower stopped.
    assert [c for c in containers.calls if c[0] == "apply_retention"] == [
        ("apply_retention", 7, True),
        ("apply_retention", 8, True),
    ]


def test_follower_ignores_the_end_of_another_attempt(host):
    queue, containers = RecordingQueue(), RecordingContainers()
    state, _, _ = make_state()
    follower = Follower(queue, containers, state)
    job = fake_job(3, attempt=2, host=host)
    follower.add(job, ref_of(job))

    assert not follower.finish(ExitStatus(ContainerRef(3, 1, "old"), 0))

    assert queue.named("finish_job") == []
    assert follower.job_ids() == [3]


def test_follower_keeps_a_job_whose_end_could_not_be_recorded(host):
    queue, containers = (
        RecordingQueue(finish_error=OperationalError("server closed")),
        (RecordingContainers()),
    )
    state, _, _ = make_state()
    follower = Follower(queue, containers, state)
    job = fake_job(4, host=host)
    follower.add(job, ref_of(job))

    assert not follower.finish(ExitStatus(ref_of(job), 0))

    assert follower.job_ids() == [4]
    assert state.stats.jobs_finished == 0


def test_follower_sync_has_the_queue_time_out_a_job_past_its_limit(host):
    queue, containers = RecordingQueue(), RecordingContainers()
    state, _, _ = make_state()
    row = ContainerJob.objects.create(command="sleep 60", host=host, timeout_seconds=5)
    ContainerJob.objects.filter(pk=row.pk).update(status=JobStatus.QUEUED)
    ContainerJob.objects.filter(pk=row.pk).update(
        status=JobStatus.VALIDATING, worker_id="w-parts", attempt=1
    )
    ContainerJob.objects.filter(pk=row.pk).update(
        status=JobStatus.RUNNING, started_at=timezone.now() - timedelta(seconds=10)
    )
    row.refresh_from_db()
    follower = Follower(queue, containers, state)
    follower.add(row, ContainerRef(row.pk, 1, "c"))

    follower.sync()

    assert queue.named("timeout_job") == [("timeout_job", row.pk, 1)]
    assert follower.job_ids() == [row.pk], "followed on until its end brings the output"
    containers.ended = [ExitStatus(ContainerRef(row.pk, 1, "c"), 137)]
    follower.poll_all()
    assert queue.named("finish_jobs")[-1][1] == [row.pk]
    assert follower.job_ids() == []


def test_follower_times_a_job_out_within_a_second_of_its_deadline(host):
    """The deadline is kept by the following thread, not by the slower maintenance pass."""
    queue, containers = RecordingQueue(), RecordingContainers()
    state, _, _ = make_state()
    row = fake_job(9, status=JobStatus.RUNNING, host=host)
    row.timeout_seconds, row.started_at = 1, timezone.now()
    row.refresh_from_db = lambda: None
    follower = Follower(queue, containers, state)
    follower.add(row, ContainerRef(row.pk, 1, "c"))
    follower.start()
    try:
        deadline = row.started_at + timedelta(seconds=1)
        assert queue.timed_out.wait(5)
        late = (queue.timed_out_at - deadline).total_seconds()
        assert 0 <= late < 1.0
    finally:
        follower.stop()


def test_follower_has_the_queue_record_progress(host):
    queue, containers = RecordingQueue(), RecordingContainers()
    state, _, _ = make_state()
    follower = Follower(queue, containers, state)
    job = fake_job(6, host=host)
    follower.start()
    try:
        follower.add(job, ref_of(job))
        assert queue.progress_seen.wait(5)
    finally:
        follower.stop()

    assert queue.named("record_progress") == [("record_progress", 6, 40, "Loading")]


# Rescuer -----------------------------------------------------------------------


def build_rescuer(queue, containers, state, free=1, known=()):
    relaunched, followed = [], []
    rescuer = Rescuer(
        queue,
        containers,
        state,
        free_slots=lambda: free,
        known_job_ids=lambda: set(known),
        relaunch=lambda job: relaunched.append(job.pk),
        follow=lambda job, ref: followed.append((job.pk, ref.container_id)),
    )
    return rescuer, relaunched, followed


def test_rescuer_adopts_a_running_job_whose_container_exists_and_records_its_id():
    job = fake_job(1, status=JobStatus.RUNNING, host=SimpleNamespace(pk=1))
    queue = RecordingQueue(expired=[job])
    containers = RecordingContainers(found={1: ContainerRef(1, 1, "found-1")})
    state, _, _ = make_state(lease_seconds=20)
    rescuer, relaunched, followed = build_rescuer(queue, containers, state)

    assert rescuer.rescue(1) == 1

    assert queue.named("take_over") == [("take_over", 1, "w-parts", 20)]
    assert queue.named("record_container") == [("record_container", 1, "found-1")]
    assert followed == [(1, "found-1")]
    assert relaunched == []
    assert state.stats.jobs_adopted == 1


def test_rescuer_relaunches_an_adopted_job_caught_in_a_launch_step():
    job = fake_job(2, status=JobStatus.PREPARING, host=SimpleNamespace(pk=1))
    queue = RecordingQueue(expired=[job])
    containers = RecordingContainers(found={2: ContainerRef(2, 1, "made-2")})
    state, _, _ = make_state()
    rescuer, relaunched, followed = build_rescuer(queue, containers, state)

    assert rescuer.rescue(1) == 1

    assert relaunched == [2]
    assert followed == []


def test_rescuer_requeues_a_job_without_container_even_without_a_free_slot():
    job = fake_job(3, status=JobStatus.RUNNING, host=SimpleNamespace(pk=1))
    adoptable = fake_job(4, status=JobStatus.RUNNING, host=SimpleNamespace(pk=1))
    queue = RecordingQueue(expired=[job, adoptable])
    containers = RecordingContainers(found={4: ContainerRef(4, 1, "c4")})
    state, _, _ = make_state()
    rescuer, _, followed = build_rescuer(queue, containers, state, free=0)

    assert rescuer.rescue(0) == 1

    assert queue.named("requeue_orphan") == [("requeue_orphan", 3)]
    assert queue.named("take_over") == []
    assert followed == []
    assert state.stats.jobs_requeued == 1


def test_rescuer_leaves_jobs_of_queues_it_does_not_serve():
    job = fake_job(5, status=JobStatus.RUNNING, queue="other", host=SimpleNamespace(pk=1))
    queue = RecordingQueue(expired=[job])
    containers = RecordingContainers()
    state, _, _ = make_state(queues=["reports"])
    rescuer, _, _ = build_rescuer(queue, containers, state)

    assert rescuer.rescue(1) == 0

    assert containers.calls == []
    assert queue.named("requeue_orphan") == []


def test_rescuer_expires_only_the_leases_it_does_not_follow(db, host):
    rows = []
    for _ in range(3):
        row = ContainerJob.objects.create(command="echo", host=host)
        ContainerJob.objects.filter(pk=row.pk).update(status=JobStatus.QUEUED)
        ContainerJob.objects.filter(pk=row.pk).update(
            status=JobStatus.VALIDATING, worker_id="w-parts", attempt=1
        )
        rows.append(row)
    queue, containers = RecordingQueue(), RecordingContainers()
    state, _, _ = make_state()
    rescuer, _, _ = build_rescuer(queue, containers, state, known={rows[0].pk})

    assert rescuer.expire_untracked() == 2

    [(_, worker_id, ids)] = queue.named("expire_leases")
    assert worker_id == "w-parts"
    assert sorted(ids) == sorted([rows[1].pk, rows[2].pk])


# Heartbeat ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_heartbeat_stamps_the_row_and_has_the_queue_renew_the_leases():
    before = timezone.now() - timedelta(minutes=5)
    WorkerRow.objects.create(worker_id="w-parts", hostname="h", pid=1, last_heartbeat_at=before)
    queue = RecordingQueue()
    state, _, _ = make_state(lease_seconds=45)
    state.stats.count("jobs_launched")

    Heartbeat(queue, state, interval_seconds=60).beat()

    row = WorkerRow.objects.get(worker_id="w-parts")
    assert row.last_heartbeat_at > before
    assert row.jobs_launched == 1
    assert queue.named("renew_leases") == [("renew_leases", "w-parts", 45)]


def test_follower_backs_off_after_a_failed_record_and_does_not_spin(host):
    queue = RecordingQueue(finish_error=OperationalError("server closed"))
    containers = RecordingContainers()
    state, _, _ = make_state()
    follower = Follower(queue, containers, state)
    job = fake_job(8, host=host)
    follower.add(job, ref_of(job))

    assert not follower.finish(ExitStatus(ref_of(job), 0))
    # Within the backoff: not tried again, and not waited on (no busy loop).
    assert not follower.finish(ExitStatus(ref_of(job), 0))
    assert follower.poll_host(host.pk, 0.0) == 0

    assert len(queue.named("finish_job")) == 1
    assert containers.calls == []
    assert follower.job_ids() == [8]
