"""Rescue: jobs whose worker disappeared are adopted or requeued, never launched twice.

A job held by a worker carries a lease that its heartbeat renews. When the
lease has expired, the worker is presumed dead (SIGKILL, machine loss) and
any other worker may rescue the job:

1. The rescuer asks the container layer for the container of the job's
   *current attempt*, by its labels (``Containers.find``).
2. ``JobQueueManager.take_over`` makes exactly one worker the new holder.
3. Found: the job is adopted. A job still in a launch step (the old worker
   died between creating the container and recording it) is completed by
   ``executor.launch`` of the same attempt, which is idempotent: it returns
   the existing container and starts it if it was only created, so the
   attempt never gets a second container. Then the follower watches it.
4. Not found: the container never existed, so nothing runs; the job goes
   back to the queue (``requeue_orphan``) and its next claim is a new
   attempt.

A worker that restarts under the same id first expires the leases of the
jobs its previous life held, so it rescues them at once instead of waiting.

Local processes (``process`` hosts) die with their worker (see
``executors/local.py``), and a new attempt starts only once the lost one is
known gone:

- **Found, and started by this worker process**: adopted as above.
- **Found, started by another worker process of this machine** (its worker
  is dead and the process not yet, or the worker lives but lost its lease):
  it is not our child and cannot be followed. The rescuer takes the job
  over (so the old holder can no longer record anything), kills every
  process group of the attempt, waits until ``/proc`` shows none of its
  processes (at most :data:`KILL_WAIT_SECONDS`; else it lets the lease
  expire again and a later pass retries), and only then queues the job again.
- **Not found, and the attempt ran on this machine** (the holder's
  ``Worker`` row names this hostname): no process of it runs, so the job is
  queued again.
- **Not found, and the attempt ran on another machine** (or on one nobody
  knows): its processes cannot be seen from here. The job is queued again
  only once the attempt's deadline has passed (lease expiry + timeout +
  ``local.DEADLINE_GRACE_SECONDS``), when its supervisor has killed it
  wherever it ran; until then a worker of that machine rescues it first.

Each requeue's ``last_error`` says which of these happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from container_manager import states
from container_manager.containers import Containers
from container_manager.exceptions import ExecutorError
from container_manager.executors import local
from container_manager.executors.base import ContainerRef, Executor
from container_manager.models import ContainerJob, ExecutorType, Worker
from container_manager.queue import JobQueueManager
from container_manager.states import JobStatus
from container_manager.worker.state import WorkerState

logger = logging.getLogger(__name__)

#: Expired jobs looked at per rescue pass, beyond the free slots (some are
#: requeued, which takes no slot).
EXTRA_CANDIDATES = 10
#: How long a rescue waits for a killed local process of a lost attempt to be gone.
KILL_WAIT_SECONDS = 5.0
#: How often it looks, meanwhile.
KILL_POLL_SECONDS = 0.05


def _pid_in(container_id: str) -> str:
    """The pid in a local process's id (``pid-<pid>-<directory>``), or ""."""
    kind, _, rest = container_id.partition("-")
    pid = rest.partition("-")[0]
    return pid if kind == "pid" and pid.isdigit() else ""


def _can_follow(executor: Executor, ref: ContainerRef) -> bool:
    """Can this worker process follow ``ref`` to its end (False for another's local process)?"""
    can_follow = getattr(executor, "can_follow", None)
    return True if can_follow is None else bool(can_follow(ref))


class Rescuer:
    """Adopt or requeue jobs whose lease expired.

    Args:
        queue_manager: The queue that finds expired jobs and records their fate.
        containers: The container layer that looks containers up by their labels.
        state: The worker's shared state.
        free_slots: Answers how many more jobs the worker may take on.
        known_job_ids: Answers which jobs this process launches or follows.
        relaunch: Finishes the launch of an adopted job still in a launch step.
        follow: Follows an adopted job whose container runs.
    """

    def __init__(
        self,
        queue_manager: JobQueueManager,
        containers: Containers,
        state: WorkerState,
        *,
        free_slots: Callable[[], int],
        known_job_ids: Callable[[], set[int]],
        relaunch: Callable[[ContainerJob], None],
        follow: Callable[[ContainerJob, ContainerRef], None],
    ) -> None:
        self.queue_manager = queue_manager
        self.containers = containers
        self.state = state
        self._free_slots = free_slots
        self._known_job_ids = known_job_ids
        self._relaunch = relaunch
        self._follow_job = follow
        #: Jobs of other machines already said to wait for their deadline (logged once).
        self._waiting_elsewhere: set[int] = set()

    def expire_own_leases(self) -> int:
        """Expire the leases of jobs held under this worker id by an earlier process.

        Returns:
            How many jobs were found.
        """
        return self.queue_manager.expire_leases(self.state.worker_id)

    def expire_untracked(self) -> int:
        """Expire the leases of jobs held under this id that this process lost track of.

        The heartbeat renews every lease held under the worker's id; a job
        whose follow-up failed unexpectedly would be renewed for ever without
        anyone watching it. Its lease is expired instead, so that the next
        rescue pass (of any worker) adopts or requeues it. Runs on the main
        loop's thread, which also registers every claim and adoption, so a
        job is never caught between its claim and its registration.

        Returns:
            How many jobs were found.
        """
        worker_id = self.state.worker_id
        known = self._known_job_ids()
        held = ContainerJob.objects.held_by(worker_id).values_list("pk", flat=True)
        lost = [pk for pk in held if pk not in known]
        if not lost:
            return 0
        logger.warning(
            "Worker %s holds jobs %s that it does not follow; expiring their leases",
            worker_id,
            lost,
            extra={"worker_id": worker_id},
        )
        return self.queue_manager.expire_leases(worker_id, lost)

    def rescue(self, free_slots: int) -> int:
        """Adopt or requeue expired jobs, adopting at most ``free_slots`` containers.

        Args:
            free_slots: Containers this worker may still take on.

        Returns:
            How many jobs were adopted or requeued.
        """
        handled = 0
        state = self.state
        for job in self.queue_manager.expired_jobs(limit=max(free_slots, 0) + EXTRA_CANDIDATES):
            if state.is_stopping:
                break
            if not state.serves(job.queue):
                # A worker dedicated to some queues leaves the others' jobs to their workers.
                continue
            try:
                if self.rescue_job(job, adopt=self._free_slots() > 0):
                    handled += 1
            except ExecutorError as exc:
                # The host does not answer: whether a container exists is
                # unknown, so the job waits for a later pass.
                logger.warning(
                    "Job %s waits for its host to answer: %s",
                    job.pk,
                    exc,
                    extra={"job_id": job.pk, "worker_id": state.worker_id},
                )
            except Exception:
                logger.exception(
                    "Rescuing job %s failed",
                    job.pk,
                    extra={"job_id": job.pk, "worker_id": state.worker_id},
                )
        return handled

    def rescue_job(self, job: ContainerJob, adopt: bool = True) -> bool:
        """Adopt one expired job if its container exists, or requeue it.

        Args:
            job: A job from ``expired_jobs``.
            adopt: False when this worker has no free slot: only jobs without a
                container (which take no slot) are handled.

        Returns:
            True when this worker adopted or requeued the job.
        """
        state = self.state
        # Errors reaching the engine propagate: the job is left for a later
        # pass, since a container we cannot see may still exist.
        ref = self.containers.find(job)
        is_local = getattr(job.host, "executor_type", None) == ExecutorType.PROCESS
        if is_local:
            if ref is None:
                return self._requeue_local(job)
            executor = self.containers.executor_for(job)
            if not _can_follow(executor, ref):
                return self._kill_then_requeue(job, executor, ref)
        elif ref is None:
            return self._requeue(job)
        if not adopt:
            return False
        if not self.queue_manager.take_over(job, state.worker_id, state.lease_seconds):
            return False
        state.stats.count("jobs_adopted")
        if job.status in states.LAUNCHING_STATUSES:
            self._relaunch(job)
            return True
        if job.status == JobStatus.RUNNING and not job.container_id:
            self.queue_manager.record_container(job, state.worker_id, ref.container_id)
        self._follow(job, ref)
        return True

    def _follow(self, job: ContainerJob, ref: ContainerRef) -> None:
        logger.warning(
            "Adopted job %s (attempt %s, container %s)",
            job.pk,
            job.attempt,
            ref.container_id[:12],
            extra={"job_id": job.pk, "worker_id": self.state.worker_id},
        )
        self.state.echo(f"Adopted job {job.pk} (attempt {job.attempt})")
        self._follow_job(job, ref)

    def _requeue(self, job: ContainerJob) -> bool:
        if not self.queue_manager.requeue_orphan(job):
            return False
        self.state.stats.count("jobs_requeued")
        self.state.echo(f"Requeued job {job.pk}: attempt {job.attempt} never made a container")
        return True

    # Local processes ---------------------------------------------------------

    def _requeue_local(self, job: ContainerJob) -> bool:
        """Requeue a local-process job none of whose processes runs here, when that suffices."""
        attempt, lost = job.attempt, job.worker_id
        machine = Worker.objects.filter(worker_id=lost).values_list("hostname", flat=True).first()
        pid = _pid_in(job.container_id)
        if machine == local.machine_name():
            if pid:
                happened = (
                    f"lost its worker; its process (pid {pid}) no longer runs on "
                    f"{machine!r} (it ended, or died with its worker)"
                )
            else:
                happened = (
                    f"lost its worker before its process was recorded; no process of "
                    f"attempt {attempt} runs on {machine!r}"
                )
        else:
            # Its processes cannot be seen from here: wait until none can run anywhere.
            deadline = (job.lease_expires_at or timezone.now()) + timedelta(
                seconds=job.timeout_seconds + local.DEADLINE_GRACE_SECONDS
            )
            where = f"machine {machine!r}" if machine else "a machine no worker row names"
            if timezone.now() < deadline:
                if int(job.pk) not in self._waiting_elsewhere:
                    self._waiting_elsewhere.add(int(job.pk))
                    logger.warning(
                        "Job %s ran its local process on %s, not here: it is queued again "
                        "by a worker there, or from here after %s",
                        job.pk,
                        where,
                        deadline.isoformat(),
                        extra={"job_id": job.pk, "worker_id": self.state.worker_id},
                    )
                return False
            happened = (
                f"lost its worker on {where}; any process of it there was killed at its "
                f"deadline (timeout + {local.DEADLINE_GRACE_SECONDS} s), which has passed"
            )
        self._waiting_elsewhere.discard(int(job.pk))
        if not self.queue_manager.requeue_orphan(job, what_happened=happened):
            return False
        self.state.stats.count("jobs_requeued")
        self.state.echo(f"Requeued job {job.pk}: attempt {attempt} {happened}")
        return True

    def _kill_then_requeue(self, job: ContainerJob, executor: Executor, ref: ContainerRef) -> bool:
        """End a lost attempt's process that another worker process started, then requeue."""
        state, lost, attempt = self.state, job.worker_id, job.attempt
        if not self.queue_manager.take_over(job, state.worker_id, state.lease_seconds):
            return False
        pid = _pid_in(ref.container_id) or "?"
        executor.kill(ref)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        pause = threading.Event()
        while executor.find(int(job.pk), int(attempt)) is not None:
            if time.monotonic() > deadline:
                message = (
                    f"Attempt {attempt} (held by worker {lost!r}): its process (pid {pid}) "
                    f"was killed but still runs after {KILL_WAIT_SECONDS} s; waiting for it"
                )
                logger.warning(message, extra={"job_id": job.pk, "worker_id": state.worker_id})
                self.queue_manager.expire_leases(
                    state.worker_id, [int(job.pk)], last_error=message, error_code="WORKER_LOST"
                )
                return False
            pause.wait(KILL_POLL_SECONDS)
        happened = (
            f"lost its worker while its process (pid {pid}) still ran on "
            f"{local.machine_name()!r}; the process was killed, and was gone before the job "
            "was queued again"
        )
        if not self.queue_manager.requeue_orphan(
            job, what_happened=happened, lost_worker=lost, held_by=state.worker_id
        ):
            return False
        state.stats.count("jobs_requeued")
        state.echo(f"Requeued job {job.pk}: attempt {attempt} {happened}")
        return True
