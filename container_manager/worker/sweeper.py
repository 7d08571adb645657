"""Clean-up of leftover containers: what faults left behind on the Docker hosts.

A worker killed (SIGKILL) or an engine restarted at the wrong moment can
leave a container that nobody follows any more. Every worker runs a
:class:`Sweeper`, a thread started and stopped with its heartbeat, that at
its start and then every ``CLEANUP_INTERVAL_SECONDS`` lists the containers of this project on each
active Docker host not known to be down (``Containers.list_managed``), reads
their jobs in one query (``JobQueueManager.jobs_of_containers``) and decides
container by container (:func:`decide`):

- its job was deleted: killed if it runs, and removed;
- its attempt is older than the job's: killed if it runs (two attempts of
  one job were running, which is logged as a warning), and removed; its
  output is never stored;
- its job ended and the end is stored with its output
  (``queue.cleanup.is_end_recorded``): killed if it still runs, then removed
  or kept per ``CONTAINER_RETENTION``;
- its job was cancelled or timed out and the output is not stored yet: a
  container that runs is killed (its end then comes); an ended one has its
  end recorded by the queue (``finish_job``, which stores the output and
  applies the retention) once ``LEASE_SECONDS`` have passed since the cancel
  or the timeout, so that a live worker following it records it first;
- its job has not ended and this is its current attempt: left alone (a live
  worker follows it, or the rescue adopts it once the lease expires).

Removals follow ``CONTAINER_RETENTION`` as at a job's end: ``"keep"`` keeps
every ended container (the clean-up only kills), ``"keep_failed"`` keeps
those of superseded attempts and of jobs that did not complete. A container
whose output is not stored is never removed. A host that does not answer is
tried again at the next pass, logged once until it answers. The sweeper
writes no job itself; what it did is counted in the worker's statistics
and logged in one line per host where it did something. Each pass also
folds the tally of finished jobs that the statistics read (``models.tally``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, connection
from django.utils import timezone

from container_manager.conf import settings
from container_manager.containers import Containers
from container_manager.executors.base import ContainerRef, ExitStatus
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.tally import compact_tallies
from container_manager.queue import JobQueueManager
from container_manager.queue.cleanup import is_end_recorded
from container_manager.queue.retention import retention_age
from container_manager.states import TERMINAL_STATUSES, JobStatus
from container_manager.worker.db import drop_connection_if_broken
from container_manager.worker.state import WorkerState

logger = logging.getLogger(__name__)

#: What :func:`decide` may answer.
LEAVE = "leave"
DISCARD = "discard"
KILL = "kill"
FINISH = "finish"


@dataclass(frozen=True)
class Decision:
    """What to do with one listed container.

    Attributes:
        action: ``LEAVE``; ``DISCARD`` (kill if it runs, then remove unless
            retention keeps it); ``KILL`` (kill only: its end is not stored);
            ``FINISH`` (have the queue record its end).
        reason: Why, for the log.
        is_success: For ``DISCARD``: whether retention counts it as the
            container of a completed job.
        is_double_run: It is a running container of a superseded attempt.
    """

    action: str
    reason: str
    is_success: bool = False
    is_double_run: bool = False


def decide(
    ref: ContainerRef,
    job: ContainerJob | None,
    is_running: bool,
    host_id: int,
    now: datetime,
    grace_seconds: float,
) -> Decision:
    """Decide what the clean-up does with one container.

    Args:
        ref: The container, as the host lists it.
        job: Its job's row, read after the listing; None when it was deleted.
        is_running: The container has not ended (it runs, is paused, or was
            only created).
        host_id: The host it was listed on.
        now: The present.
        grace_seconds: How long after a cancel or timeout the worker that
            followed the container has to record its end itself.

    Returns:
        The :class:`Decision`.
    """
    if job is None:
        # Kept only under "keep": there is no failed job to look into.
        return Decision(DISCARD, "its job was deleted", is_success=True)
    if ref.attempt < job.attempt:
        return Decision(
            DISCARD,
            f"attempt {ref.attempt} was superseded by attempt {job.attempt}",
            is_double_run=is_running,
        )
    if ref.attempt > job.attempt or job.host_id != host_id:
        # Not an attempt this row knows of: nothing is known, nothing is done.
        return Decision(LEAVE, f"the job is at attempt {job.attempt} on host {job.host_id}")
    if job.status not in TERMINAL_STATUSES:
        return Decision(LEAVE, f"the job is {job.status}")
    if is_end_recorded(job):
        return Decision(
            DISCARD,
            f"the job is {job.status} and its end is stored",
            is_success=job.status == JobStatus.COMPLETED,
        )
    if is_running:
        return Decision(KILL, f"the job is {job.status}")
    ended_at = job.completed_at
    if ended_at is None or now - ended_at >= timedelta(seconds=grace_seconds):
        return Decision(FINISH, f"the job is {job.status} and its output is not stored")
    return Decision(LEAVE, f"the job was {job.status} moments ago; its worker records the end")


@dataclass
class _Tally:
    """What one pass did on one host."""

    removed: int = 0
    killed: int = 0
    finished: int = 0
    failed: int = 0

    def __bool__(self) -> bool:
        return bool(self.removed or self.killed or self.finished or self.failed)


class Sweeper(threading.Thread):
    """Background thread: remove or kill leftover containers, at start and every interval.

    Args:
        queue_manager: The queue: hosts and jobs to read, ends to record.
        containers: The container layer that lists, kills and removes.
        state: The worker's shared state.
        interval_seconds: Time between two passes; None for ``CLEANUP_INTERVAL_SECONDS``.
        grace_seconds: How long after a cancel or timeout an unstored end is
            left to the worker that followed it; None for ``LEASE_SECONDS``.
    """

    def __init__(
        self,
        queue_manager: JobQueueManager,
        containers: Containers,
        state: WorkerState,
        interval_seconds: float | None = None,
        grace_seconds: float | None = None,
    ) -> None:
        super().__init__(name=f"sweeper-{state.worker_id}", daemon=True)
        self.queue_manager = queue_manager
        self.containers = containers
        self.state = state
        self.interval_seconds = float(
            settings.CLEANUP_INTERVAL_SECONDS if interval_seconds is None else interval_seconds
        )
        self.grace_seconds = float(
            settings.LEASE_SECONDS if grace_seconds is None else grace_seconds
        )
        self._stop_event = threading.Event()
        self._failing_hosts: set[int] = set()

    def stop(self) -> None:
        """Ask the thread to end after its current pass."""
        self._stop_event.set()

    def run(self) -> None:
        # The first pass comes at once: a worker starting after a crash
        # clears what the crash left without waiting a whole interval.
        try:
            while True:
                close_old_connections()
                self.sweep()
                self.fold_tally()
                self.apply_retention()
                # A broken connection is replaced at the next pass.
                drop_connection_if_broken()
                if self._stop_event.wait(self.interval_seconds):
                    break
        finally:
            connection.close()

    def sweep(self, now: datetime | None = None) -> int:
        """Run one pass over every host to sweep; errors are logged, not raised.

        Args:
            now: The present; None for now.

        Returns:
            How many containers were removed, killed or had their end recorded.
        """
        try:
            hosts = self.queue_manager.hosts_to_sweep()
        except Exception:
            logger.warning(
                "Clean-up of leftover containers could not read the hosts",
                extra={"worker_id": self.state.worker_id},
                exc_info=True,
            )
            return 0
        done = 0
        for host in hosts:
            if self._stop_event.is_set():
                break
            tally = self.sweep_host(host, now)
            done += tally.removed + tally.killed + tally.finished
        return done

    def apply_retention(self) -> int:
        """Delete finished jobs and stopped workers' rows older than ``RETENTION_DAYS``, if set.

        Returns:
            How many jobs were deleted.
        """
        age = retention_age()
        if age is None:
            return 0
        try:
            return self.queue_manager.prune(age).jobs
        except Exception:
            logger.warning(
                "Could not delete old finished jobs; it is tried again at the next pass",
                extra={"worker_id": self.state.worker_id},
                exc_info=True,
            )
            return 0

    def fold_tally(self) -> None:
        """Fold the finished jobs' tally rows of every connection into one (``models.tally``)."""
        try:
            compact_tallies()
        except Exception:
            logger.warning(
                "Could not fold the tally of finished jobs; it is tried again at the next pass",
                extra={"worker_id": self.state.worker_id},
                exc_info=True,
            )

    def sweep_host(self, host: ExecutorHost, now: datetime | None = None) -> _Tally:
        """Run one pass over one host's containers."""
        tally = _Tally()
        jobs: dict[int, ContainerJob] = {}
        ended: dict[str, ExitStatus] = {}
        try:
            refs = self.containers.list_managed(host)
            if refs:
                # Read after the listing: a container listed is never newer than its row.
                jobs = self.queue_manager.jobs_of_containers(refs)
                ended = {
                    status.ref.container_id: status
                    for status in self.containers.wait_finished(host, refs, 0)
                }
        except Exception as exc:
            self._host_failed(host, exc)
            return tally
        if host.pk in self._failing_hosts:
            self._failing_hosts.discard(host.pk)
            logger.info(
                "Clean-up of leftover containers reaches host %s again",
                host.name,
                extra={"worker_id": self.state.worker_id},
            )
        if not refs:
            return tally
        now = now or timezone.now()
        for ref in refs:
            if self._stop_event.is_set():
                break
            job = jobs.get(ref.job_id)
            status = ended.get(ref.container_id)
            decision = decide(ref, job, status is None, int(host.pk), now, self.grace_seconds)
            self._apply(host, ref, job, status, decision, tally)
        if tally:
            logger.info(
                "Clean-up of leftover containers on host %s: %d removed, %d killed, "
                "%d ends recorded, %d failed",
                host.name,
                tally.removed,
                tally.killed,
                tally.finished,
                tally.failed,
                extra={"worker_id": self.state.worker_id},
            )
        return tally

    def _host_failed(self, host: ExecutorHost, exc: Exception) -> None:
        """Log a host that cannot be swept now: once, until it answers again."""
        level = logging.DEBUG if host.pk in self._failing_hosts else logging.WARNING
        self._failing_hosts.add(host.pk)
        logger.log(
            level,
            "Clean-up of leftover containers cannot reach host %s (%s: %s); trying again "
            "at the next pass",
            host.name,
            type(exc).__name__,
            exc,
            extra={"worker_id": self.state.worker_id},
        )

    def _apply(
        self,
        host: ExecutorHost,
        ref: ContainerRef,
        job: ContainerJob | None,
        status: ExitStatus | None,
        decision: Decision,
        tally: _Tally,
    ) -> None:
        """Carry out one decision; an error is logged and left for the next pass."""
        if decision.action == LEAVE:
            return
        extra = {"job_id": ref.job_id, "worker_id": self.state.worker_id}
        name = f"container {ref.container_id[:12]} of job {ref.job_id} (attempt {ref.attempt})"
        try:
            if decision.is_double_run:
                logger.warning(
                    "Killing %s, which ran beside its job's later attempt", name, extra=extra
                )
            if status is None and decision.action in (DISCARD, KILL):
                self.containers.kill_ref(host, ref)
                tally.killed += 1
                self.state.stats.count("containers_killed")
                logger.debug("Killed leftover %s: %s", name, decision.reason, extra=extra)
            if decision.action == DISCARD and self.containers.discard(
                host, ref, decision.is_success
            ):
                tally.removed += 1
                self.state.stats.count("containers_removed")
                logger.debug("Removed leftover %s: %s", name, decision.reason, extra=extra)
            if decision.action == FINISH and job is not None and status is not None:
                self.queue_manager.finish_job(job, status)
                tally.finished += 1
                self.state.stats.count("container_ends_recorded")
                logger.debug("Recorded the end of %s: %s", name, decision.reason, extra=extra)
        except Exception as exc:
            tally.failed += 1
            logger.warning(
                "Clean-up of %s failed (%s: %s); trying again at the next pass",
                name,
                type(exc).__name__,
                exc,
                extra=extra,
            )


__all__ = ["DISCARD", "FINISH", "KILL", "LEAVE", "Decision", "Sweeper", "decide"]
