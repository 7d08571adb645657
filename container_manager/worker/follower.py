"""Following running containers: completion, timeouts and progress.

The follower keeps the jobs a worker holds whose container runs. One thread
per host asks the container layer which of them ended
(``Containers.wait_finished``, which the Docker executor answers from one
events stream per host, not one poll per container) and has the queue record
each end (``JobQueueManager.finish_job``). The same thread enforces
timeouts, within ``WAIT_SLICE_SECONDS`` of the deadline: the queue records
``timeout`` and kills the container (``JobQueueManager.timeout_job``), and
the job stays followed until its container's end brings the output, like a
cancelled one. The worker's maintenance pass (:meth:`Follower.sync`) drops
jobs the worker no longer holds (taken over) and kills the containers of
jobs cancelled elsewhere. Progress lines a container
prints are recorded by the queue (``record_progress``), at most every
``PROGRESS_MIN_INTERVAL_SECONDS``. The follower writes nothing itself.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from container_manager.containers import Containers
from container_manager.executors.base import ContainerRef, ExitStatus, Progress
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.job import has_run_past_timeout
from container_manager.queue import JobQueueManager
from container_manager.states import JobStatus
from container_manager.worker.db import drop_connection_if_broken
from container_manager.worker.remover import Remover
from container_manager.worker.state import WorkerState

logger = logging.getLogger(__name__)

#: Longest single wait for ends; a job added meanwhile is watched after it.
WAIT_SLICE_SECONDS = 0.5
#: Progress of one job is written at most this often.
PROGRESS_MIN_INTERVAL_SECONDS = 0.5
#: A container's end that could not be recorded (database or engine away) is
#: tried again after 0.5, 1, 2, 4 ... s, at most every 30 s.
FINISH_RETRY_FIRST_SECONDS = 0.5
FINISH_RETRY_MAX_SECONDS = 30.0


@dataclass
class Tracked:
    """A job whose container runs, held by this worker."""

    job: ContainerJob
    ref: ContainerRef
    host_id: int
    last_progress_at: float = 0.0
    is_done: bool = field(default=False)
    #: Failed attempts to record its end, and when (monotonic) to try again.
    finish_failures: int = 0
    retry_finish_at: float = 0.0
    #: True once its timeout is recorded: it stays followed for its output.
    is_timed_out: bool = False
    #: When (monotonic) its deadline may be looked at again (paused, or a failed try).
    next_deadline_check: float = 0.0

    def is_waiting_to_retry(self, now: float) -> bool:
        """True while a failed record of its end waits for its backoff."""
        return self.retry_finish_at > now

    def finish_failed(self, now: float) -> float:
        """Count one failed record of the end; return the backoff before the next try."""
        self.finish_failures += 1
        delay = min(
            FINISH_RETRY_FIRST_SECONDS * 2 ** (self.finish_failures - 1),
            FINISH_RETRY_MAX_SECONDS,
        )
        self.retry_finish_at = now + delay
        return delay


class Follower:
    """Watch the running containers of one worker, host by host.

    Args:
        queue_manager: The queue that records ends, timeouts and progress.
        containers: The container layer that waits for ends and kills.
        state: The worker's shared state.
    """

    def __init__(
        self, queue_manager: JobQueueManager, containers: Containers, state: WorkerState
    ) -> None:
        self.queue_manager = queue_manager
        self.containers = containers
        self.state = state
        self._lock = threading.Condition()
        self._tracked: dict[int, Tracked] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._stop_event = threading.Event()
        self._is_threaded = False
        #: Removes ended containers off the recording path (threaded only).
        self._remover: Remover | None = None

    # Tracking ------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._tracked)

    def job_ids(self) -> list[int]:
        """Return the ids of the jobs being followed."""
        with self._lock:
            return sorted(self._tracked)

    def add(self, job: ContainerJob, ref: ContainerRef) -> None:
        """Follow a running job's container until it ends.

        Args:
            job: The job, ``running`` and held by this worker.
            ref: Its container.
        """
        if job.host_id is None:
            raise ValueError(f"Job {job.pk} has no host")
        tracked = Tracked(job=job, ref=ref, host_id=int(job.host_id))
        with self._lock:
            self._tracked[int(job.pk)] = tracked
            if self._is_threaded:
                self._ensure_host_thread(tracked.host_id)
            self._lock.notify_all()
        if self._is_threaded:
            threading.Thread(
                target=self._follow_progress,
                args=(tracked,),
                name=f"progress-{job.pk}",
                daemon=True,
            ).start()

    def has_unadoptable(self) -> bool:
        """True while a followed job runs on a host whose containers no other worker can adopt.

        Local processes belong to the worker that started them
        (``Executor.outlives_worker``).
        """
        with self._lock:
            jobs = [t.job for t in self._tracked.values() if t.job.host is not None]
        return any(not self.containers.outlives_worker(job) for job in jobs)

    def _drop(self, job_id: int) -> Tracked | None:
        with self._lock:
            tracked = self._tracked.pop(job_id, None)
            if tracked is not None:
                tracked.is_done = True
        if tracked is not None:
            self.state.wake()
        return tracked

    def _refs_of_host(self, host_id: int) -> list[ContainerRef]:
        """The host's followed containers, but those whose end waits for a retry."""
        now = time.monotonic()
        with self._lock:
            return [
                t.ref
                for t in self._tracked.values()
                if t.host_id == host_id and not t.is_waiting_to_retry(now)
            ]

    # Threads -------------------------------------------------------------------

    def start(self) -> None:
        """Start following in background threads (one per host, started on demand)."""
        with self._lock:
            self._is_threaded = True
            if self._remover is None:
                self._remover = Remover(self.containers, name=f"remover-{self.state.worker_id}")
                self._remover.start()
            for host_id in {t.host_id for t in self._tracked.values()}:
                self._ensure_host_thread(host_id)

    def stop(self, timeout_seconds: float = 2.0) -> None:
        """Stop following; the containers keep running.

        Args:
            timeout_seconds: How long to wait for the threads, in all.
        """
        self._stop_event.set()
        with self._lock:
            self._lock.notify_all()
            threads = list(self._threads.values())
        deadline = time.monotonic() + timeout_seconds
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if self._remover is not None:
            self._remover.stop()

    def _ensure_host_thread(self, host_id: int) -> None:
        thread = self._threads.get(host_id)
        if thread is None or not thread.is_alive():
            thread = threading.Thread(
                target=self._follow_host,
                args=(host_id,),
                name=f"follow-host-{host_id}",
                daemon=True,
            )
            self._threads[host_id] = thread
            thread.start()

    def _follow_host(self, host_id: int) -> None:
        try:
            while not self._stop_event.is_set():
                if not self._refs_of_host(host_id):
                    # Nothing to wait for (or only ends waiting for a retry).
                    with self._lock:
                        self._lock.wait(WAIT_SLICE_SECONDS)
                    continue
                self.poll_host(host_id, WAIT_SLICE_SECONDS)
                self.enforce_deadlines(host_id)
                drop_connection_if_broken()
        finally:
            connection.close()

    def poll_host(self, host_id: int, timeout_seconds: float) -> int:
        """Record the ends of this host's followed containers, waiting up to the timeout.

        Args:
            host_id: The host.
            timeout_seconds: Longest wait for an end; 0 only looks.

        Returns:
            How many jobs were finished.
        """
        refs = self._refs_of_host(host_id)
        if not refs:
            return 0
        try:
            ended = self.containers.wait_finished(
                self._tracked_host(refs[0]), refs, timeout_seconds
            )
        except Exception:
            logger.warning(
                "Waiting for containers on host %s failed",
                host_id,
                extra={"worker_id": self.state.worker_id},
                exc_info=True,
            )
            self._stop_event.wait(min(timeout_seconds, 1.0) or 0.1)
            return 0
        return self.finish_many(ended)

    def _tracked_host(self, ref: ContainerRef) -> ExecutorHost:
        with self._lock:
            tracked = self._tracked[ref.job_id]
        if tracked.job.host is None:
            raise ValueError(f"Job {tracked.job.pk} has no host")
        return tracked.job.host

    def poll_all(self, timeout_seconds: float = 0.0) -> int:
        """Record the ends of every followed container (used with ``--once``).

        Returns:
            How many jobs were finished.
        """
        with self._lock:
            hosts = {t.host_id for t in self._tracked.values()}
        return sum(self.poll_host(host_id, timeout_seconds) for host_id in sorted(hosts))

    def finish_many(self, statuses: list[ExitStatus]) -> int:
        """Record several ends of followed containers in one transaction.

        Ends this worker does not follow, or that wait for a retry, are left
        out, as :meth:`finish` leaves them. An end whose output cannot be
        read now, or a batch whose transaction fails, is kept and tried
        again after a backoff, one by one.

        Returns:
            How many of them are now handled.
        """
        now = time.monotonic()
        batch: list[tuple[Tracked, ExitStatus]] = []
        with self._lock:
            for status in statuses:
                tracked = self._tracked.get(status.ref.job_id)
                if tracked is None or tracked.ref.attempt != status.ref.attempt:
                    continue
                if not tracked.is_waiting_to_retry(now):
                    batch.append((tracked, status))
        if not batch:
            return 0
        remover = self._remover
        try:
            outcome = self.queue_manager.finish_jobs(
                [(tracked.job, status) for tracked, status in batch],
                self.state.worker_id,
                defer_retention=remover is not None,
            )
        except Exception as exc:
            for tracked, _ in batch:
                self._finish_failed(tracked, exc)
            return 0
        done = 0
        for tracked, status in batch:
            failure = outcome.failed.get(tracked.job.pk)
            if failure is not None:
                self._finish_failed(tracked, failure)
                continue
            self._finished(tracked, status, tracked.job.pk in outcome.written)
            done += 1
        if remover is not None:
            remover.submit(outcome.to_retain)
        return done

    def _finish_failed(self, tracked: Tracked, exc: Exception) -> None:
        # Kept: the end stays on the executor's board and is tried again
        # after a backoff; the first failure is logged with its trace.
        delay = tracked.finish_failed(time.monotonic())
        logger.warning(
            "Recording the end of job %s failed (%s: %s); trying again in %.1f s",
            tracked.job.pk,
            type(exc).__name__,
            exc,
            delay,
            extra={"job_id": tracked.job.pk, "worker_id": self.state.worker_id},
            exc_info=tracked.finish_failures == 1,
        )

    def _finished(self, tracked: Tracked, status: ExitStatus, wrote: bool) -> None:
        self._drop(status.ref.job_id)
        if wrote:
            self.state.stats.count("jobs_finished")
            if self.state.metrics is not None:
                self.state.metrics.ended(tracked.job)
            self.state.echo(
                f"Job {tracked.job.pk} {tracked.job.status} (exit code {status.exit_code})",
                logged=True,
            )

    def finish(self, status: ExitStatus) -> bool:
        """Record the end of one followed container.

        Returns:
            True when the job was followed here and its end is now handled.
        """
        with self._lock:
            tracked = self._tracked.get(status.ref.job_id)
        if tracked is None or tracked.ref.attempt != status.ref.attempt:
            return False
        if tracked.is_waiting_to_retry(time.monotonic()):
            return False
        try:
            # The queue also wakes idle workers of every process: the slot is free.
            wrote = self.queue_manager.finish_job(
                tracked.job, status, worker_id=self.state.worker_id
            )
        except Exception as exc:
            self._finish_failed(tracked, exc)
            return False
        self._finished(tracked, status, wrote)
        return True

    # Timeouts ---------------------------------------------------------------------

    def enforce_deadlines(self, host_id: int | None = None) -> int:
        """Time out the followed jobs (of one host, or all) whose deadline passed.

        The deadline is read from the job as followed (no query); the row is
        read only for a job past it, to see that it still runs (not paused,
        cancelled or taken over) before the queue times it out.

        Returns:
            How many jobs were timed out.
        """
        now, at = timezone.now(), time.monotonic()
        with self._lock:
            due = [
                t
                for t in self._tracked.values()
                if (host_id is None or t.host_id == host_id)
                and not t.is_timed_out
                and t.next_deadline_check <= at
                and has_run_past_timeout(t.job.started_at, t.job.timeout_seconds, now)
            ]
        return sum(1 for tracked in due if self._enforce_timeout(tracked))

    # Maintenance ------------------------------------------------------------------

    def sync(self) -> None:
        """Enforce timeouts and forget jobs this worker no longer holds."""
        with self._lock:
            ids = list(self._tracked)
        if not ids:
            return
        rows = {
            row["pk"]: row
            for row in ContainerJob.objects.filter(pk__in=ids).values(
                "pk", "status", "worker_id", "started_at", "timeout_seconds", "attempt"
            )
        }
        now = timezone.now()
        for job_id in ids:
            with self._lock:
                tracked = self._tracked.get(job_id)
            if tracked is None:
                continue
            row = rows.get(job_id)
            if (
                row is not None
                and row["status"] in (JobStatus.CANCELLED, JobStatus.TIMEOUT)
                and row["attempt"] == tracked.ref.attempt
            ):
                self._stop_cancelled(tracked)
                continue
            if (
                row is None
                or row["worker_id"] != self.state.worker_id
                or row["attempt"] != tracked.ref.attempt
                or row["status"] not in (JobStatus.RUNNING, JobStatus.PAUSED)
            ):
                self._drop(job_id)
                continue
            if row["status"] == JobStatus.RUNNING and has_run_past_timeout(
                row["started_at"], row["timeout_seconds"], now
            ):
                self._enforce_timeout(tracked)

    def _stop_cancelled(self, tracked: Tracked) -> None:
        """Kill the container of a job cancelled or timed out (the admin may not reach the host).

        The job stays followed: its container's end is recorded by
        :meth:`finish` like any other, which keeps the output and applies the
        retention setting. Killing an ended container again is harmless.
        """
        try:
            self.containers.kill(tracked.job, tracked.ref)
        except Exception:
            logger.exception(
                "Stopping the container of cancelled job %s failed; trying again next pass",
                tracked.ref.job_id,
                extra={"job_id": tracked.ref.job_id, "worker_id": self.state.worker_id},
            )

    def _enforce_timeout(self, tracked: Tracked) -> bool:
        """Have the queue time the job out if it still runs this attempt past its limit.

        The job stays followed: the end of its killed container brings its
        output (:meth:`finish`). A kill that failed is tried again by the
        next maintenance pass (:meth:`sync` kills timed-out jobs' containers).
        """
        job = tracked.job
        try:
            job.refresh_from_db()
            if (
                job.status != JobStatus.RUNNING
                or job.attempt != tracked.ref.attempt
                or not has_run_past_timeout(job.started_at, job.timeout_seconds, timezone.now())
            ):
                # Paused, cancelled, taken over, or started later than we knew:
                # sync() sorts those out; look again in a second.
                tracked.next_deadline_check = time.monotonic() + 1.0
                return False
            wrote = self.queue_manager.timeout_job(job, tracked.ref)
        except Exception:
            tracked.next_deadline_check = time.monotonic() + 1.0
            logger.exception(
                "Enforcing the timeout of job %s failed",
                job.pk,
                extra={"job_id": job.pk, "worker_id": self.state.worker_id},
            )
            return False
        tracked.is_timed_out = True
        if wrote:
            self.state.echo(f"Job {job.pk} timed out after {job.timeout_seconds} s", logged=True)
        return wrote

    # Progress --------------------------------------------------------------------

    def _follow_progress(self, tracked: Tracked) -> None:
        try:
            if tracked.job.host is None or tracked.is_done:
                return
            self.containers.follow_progress(
                tracked.job, tracked.ref, lambda p: self._record_progress(tracked, p)
            )
        except Exception:
            logger.warning(
                "Following the progress of job %s failed",
                tracked.job.pk,
                extra={"job_id": tracked.job.pk, "worker_id": self.state.worker_id},
                exc_info=True,
            )
        finally:
            connection.close()

    def _record_progress(self, tracked: Tracked, progress: Progress) -> None:
        now = time.monotonic()
        if tracked.is_done or (
            now - tracked.last_progress_at < PROGRESS_MIN_INTERVAL_SECONDS
            and progress.percent < 100
        ):
            return
        tracked.last_progress_at = now
        self.queue_manager.record_progress(tracked.ref, progress.percent, progress.step)
