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
- **Not found, but the attempt ended by itself** (its supervisor wrote the
  command's exit code in the attempt's directory, ``exit_code``, before the
  worker that started it could record the end): the job is taken over, the
  ended attempt is adopted (``LocalProcessExecutor.adopt_ended``) and the
  follower records its end and output through ``finish_job``, as the lost
  worker would have, then applies ``CONTAINER_RETENTION``. A job still in a
  launch step is relaunched instead, and the launch of the ended attempt
  answers it without starting it again. The job is not run twice.
- **Not found, no exit file, and the attempt ran on this machine** (the
  holder's ``Worker`` row names this hostname): no process of it runs and it
  did not end by itself (it was killed with its worker), so the job is
  queued again.
- **Not found, and the attempt ran on another machine** (or on one nobody
  knows): its processes cannot be seen from here. The job is queued again
  only once the attempt's deadline has passed (lease expiry + timeout +
  ``local.DEADLINE_GRACE_SECONDS``), when its supervisor has killed it
  wherever it ran; until then a worker of that machine rescues it first.

A killed process is checked for an exit file too, once gone: one that ended
by itself just before the kill is recorded, not run again.

Jobs whose host is recorded ``unhealthy`` are left alone (their containers
cannot be looked up) until the host answers again; this is logged once per
outage. A host that does not answer a look-up is checked
(``probe_host``) and, when it does not answer that either, recorded
unhealthy (``record_host_health``), so that later passes skip it too.

Each requeue's ``last_error`` says which of these happened; a job whose
launch was left for the rescue while its host did not answer
(``HOST_UNAVAILABLE``) says so, and that the host has no container of it.
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
from container_manager.executors.base import ContainerRef, Executor, ExitStatus
from container_manager.models import ContainerJob, ExecutorHost, ExecutorType, Worker
from container_manager.models.host import HealthStatus
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


#: The error code of a job left for the rescue because its host did not answer.
HOST_UNAVAILABLE = "HOST_UNAVAILABLE"
#: The error code of a job whose worker stopped beating.
WORKER_LOST = "WORKER_LOST"


def _ended_attempt(executor: Executor, job: ContainerJob) -> ExitStatus | None:
    """How the job's current attempt ended by itself on this machine, if it did (local only)."""
    ended_attempt = getattr(executor, "ended_attempt", None)
    if ended_attempt is None:
        return None
    status = ended_attempt(int(job.pk), int(job.attempt))
    return status if isinstance(status, ExitStatus) else None


def _discard_attempt(executor: Executor, job_id: int, attempt: int) -> None:
    """Delete what a lost local attempt left on this machine (its output is never stored)."""
    discard = getattr(executor, "discard_attempt", None)
    if discard is not None:
        try:
            discard(job_id, attempt)
        except Exception:
            logger.warning(
                "Could not delete the files of job %s attempt %s",
                job_id,
                attempt,
                extra={"job_id": job_id},
                exc_info=True,
            )


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
        #: Hosts recorded unhealthy whose expired jobs were said to wait (logged once an outage).
        self._hosts_down: set[int] = set()

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
        jobs = self.queue_manager.expired_jobs(limit=max(free_slots, 0) + EXTRA_CANDIDATES)
        down = self._note_hosts_down(jobs)
        for job in jobs:
            if state.is_stopping:
                break
            if not state.serves(job.queue):
                # A worker dedicated to some queues leaves the others' jobs to their workers.
                continue
            if job.host_id is not None and int(job.host_id) in down:
                # Its containers cannot be looked up: it waits for the host to answer.
                continue
            try:
                if self.rescue_job(job, adopt=self._free_slots() > 0):
                    handled += 1
            except ExecutorError as exc:
                # The host does not answer: whether a container exists is
                # unknown, so the job waits for a later pass.
                if job.host_id is not None and self._host_is_down(job, exc):
                    down.add(int(job.host_id))
                    continue
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

    def _note_hosts_down(self, jobs: list[ContainerJob]) -> set[int]:
        """The hosts of ``jobs`` recorded unhealthy; says once per outage that their jobs wait."""
        down: dict[int, ExecutorHost] = {}
        up: set[int] = set()
        for job in jobs:
            host = job.host
            if host is None or job.host_id is None:
                continue
            if getattr(host, "health_status", None) == HealthStatus.UNHEALTHY:
                down[int(job.host_id)] = host
            else:
                up.add(int(job.host_id))
        self._hosts_down -= up
        unseen = self._hosts_down - set(down)
        if unseen:
            # Hosts none of whose jobs is in this pass: forgotten once they answer again.
            self._hosts_down -= set(
                ExecutorHost.objects.filter(pk__in=unseen)
                .exclude(health_status=HealthStatus.UNHEALTHY)
                .values_list("pk", flat=True)
            )
        for host_id, host in down.items():
            if host_id not in self._hosts_down:
                self._hosts_down.add(host_id)
                waiting = sum(1 for job in jobs if job.host_id == host_id)
                logger.warning(
                    "Host %s does not answer (%s): %s job(s) whose worker was lost wait for it "
                    "before they are adopted or queued again",
                    host.name,
                    host.health_error or "unhealthy",
                    waiting,
                    extra={"worker_id": self.state.worker_id},
                )
        return set(down)

    def _host_is_down(self, job: ContainerJob, exc: ExecutorError) -> bool:
        """After a failed look-up: does the job's host answer at all? If not, record it unhealthy.

        Returns:
            True when the host was found not answering (and is now recorded
            so): its other jobs are skipped, the outage logged once by the queue.
        """
        host = job.host
        probe = getattr(self.queue_manager, "probe_host", None)
        record = getattr(self.queue_manager, "record_host_health", None)
        if host is None or job.host_id is None or probe is None or record is None:
            return False
        try:
            report = probe(host)
        except Exception:
            logger.warning("Checking host %s failed", host.name, exc_info=True)
            return False
        if report.is_healthy:
            return False
        record(host, False, report.detail or str(exc))
        self._hosts_down.add(int(job.host_id))
        return True

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
            executor = self.containers.executor_for(job)
            if ref is None:
                ended = _ended_attempt(executor, job)
                if ended is None:
                    return self._requeue_local(job)
                if not adopt:
                    return False
                if not self.queue_manager.take_over(job, state.worker_id, state.lease_seconds):
                    return False
                return self._adopt_ended(job, executor, ended)
            if not _can_follow(executor, ref):
                return self._kill_then_requeue(job, executor, ref)
        elif ref is None:
            return self._requeue(job)
        if not adopt:
            return False
        if not self.queue_manager.take_over(job, state.worker_id, state.lease_seconds):
            return False
        state.stats.count("jobs_adopted")
        self._carry_on(job, ref)
        return True

    def _carry_on(self, job: ContainerJob, ref: ContainerRef) -> None:
        """Go on from where the lost holder stopped: finish the launch, or follow the container."""
        if job.status in states.LAUNCHING_STATUSES:
            self._relaunch(job)
            return
        if job.status == JobStatus.RUNNING and not job.container_id:
            self.queue_manager.record_container(job, self.state.worker_id, ref.container_id)
        self._follow(job, ref)

    def _follow(self, job: ContainerJob, ref: ContainerRef) -> None:
        logger.warning(
            "Adopted job %s (attempt %s, container %s)",
            job.pk,
            job.attempt,
            ref.container_id[:12],
            extra={"job_id": job.pk, "worker_id": self.state.worker_id},
        )
        self.state.echo(f"Adopted job {job.pk} (attempt {job.attempt})", logged=True)
        self._follow_job(job, ref)

    def _requeue(self, job: ContainerJob) -> bool:
        host = getattr(job.host, "name", None) or "?"
        code = WORKER_LOST
        if job.error_code == HOST_UNAVAILABLE:
            # Left for the rescue by a launch that could not reach the host:
            # the worker is not known to be lost, nor the container never made.
            code = HOST_UNAVAILABLE
            happened = (
                f"was launched while host {host!r} did not answer, so whether it made a "
                f"container was unknown; the host answers again and has no container of it"
            )
        else:
            happened = f"has no container on host {host!r} (none was made, or it was removed since)"
        if not self.queue_manager.requeue_orphan(job, what_happened=happened, error_code=code):
            return False
        self.state.stats.count("jobs_requeued")
        self.state.echo(f"Requeued job {job.pk}: attempt {job.attempt} {happened}", logged=True)
        return True

    # Local processes ---------------------------------------------------------

    def _adopt_ended(self, job: ContainerJob, executor: Executor, ended: ExitStatus) -> bool:
        """Record the end of a held job's attempt that ended by itself while its worker was lost.

        The job is held by this worker (taken over). The ended attempt becomes
        an ended process of this worker's executor, so the usual path records
        it: the follower's ``finish_job`` (a running job) or the relaunch (a
        job caught in a launch step: the launch answers the ended attempt
        without starting it), then ``CONTAINER_RETENTION``.
        """
        adopt_ended = getattr(executor, "adopt_ended", None)
        if adopt_ended is None:
            return False
        ref: ContainerRef = adopt_ended(ended)
        state = self.state
        state.stats.count("jobs_adopted")
        logger.warning(
            "Job %s: attempt %s ended by itself (exit code %s) while its worker was lost; "
            "recording its end",
            job.pk,
            job.attempt,
            ended.exit_code,
            extra={"job_id": job.pk, "worker_id": state.worker_id},
        )
        self._carry_on(job, ref)
        return True

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
        if machine == local.machine_name():
            _discard_attempt(self.containers.executor_for(job), int(job.pk), int(attempt))
        self.state.stats.count("jobs_requeued")
        self.state.echo(f"Requeued job {job.pk}: attempt {attempt} {happened}", logged=True)
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
                    state.worker_id, [int(job.pk)], last_error=message, error_code=WORKER_LOST
                )
                return False
            pause.wait(KILL_POLL_SECONDS)
        ended = _ended_attempt(executor, job)
        if ended is not None:
            # It ended by itself just before the kill (its supervisor wrote its
            # exit code): its end is recorded, it is not run again.
            return self._adopt_ended(job, executor, ended)
        happened = (
            f"lost its worker while its process (pid {pid}) still ran on "
            f"{local.machine_name()!r}; the process was killed, and was gone before the job "
            "was queued again"
        )
        if not self.queue_manager.requeue_orphan(
            job, what_happened=happened, lost_worker=lost, held_by=state.worker_id
        ):
            return False
        _discard_attempt(executor, int(job.pk), int(attempt))
        state.stats.count("jobs_requeued")
        state.echo(f"Requeued job {job.pk}: attempt {attempt} {happened}", logged=True)
        return True
