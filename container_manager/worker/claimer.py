"""Acquiring jobs and launching them, several at a time.

The claimer asks the queue for as many ready jobs as the worker has free
slots (``JobQueueManager.claim_jobs``: one short transaction, committed
before any executor call, so no row lock is held while Docker works), then
hands each job to a small pool of launch threads. Launches overlap; the
slots they take are counted from the claim on, so the worker never holds
more than ``max_concurrent`` jobs.

A launch that has not started when the worker begins to stop is not
started: the job is released back to the queue. A launch in progress is
let finish.
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
from collections.abc import Callable

from django.db import OperationalError, connection

from container_manager.containers import job_ref
from container_manager.executors.base import ContainerRef
from container_manager.models import ContainerJob
from container_manager.queue import JobQueueManager
from container_manager.states import IMAGE_KINDS
from container_manager.worker.db import drop_connection_if_broken
from container_manager.worker.state import WorkerState

logger = logging.getLogger(__name__)

#: Launch threads per worker, at most; launches beyond wait their turn.
MAX_LAUNCH_THREADS = 16


class LaunchPool:
    """Daemon threads running launch tasks; they never delay the process's exit."""

    def __init__(self, size: int, name: str) -> None:
        self._tasks: stdlib_queue.Queue[Callable[[], None] | None] = stdlib_queue.Queue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True) for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the next free thread."""
        self._tasks.put(task)

    def close(self) -> None:
        """Let the threads end once the queued tasks are done."""
        for _ in self._threads:
            self._tasks.put(None)

    def _run(self) -> None:
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    return
                try:
                    task()
                except Exception:
                    logger.exception("Launch task failed")
                finally:
                    # The thread keeps its connection for its next launch.
                    drop_connection_if_broken()
        finally:
            connection.close()


class Claimer:
    """Claim ready jobs for free slots and launch them in the pool.

    Args:
        queue_manager: The queue that claims, launches and releases jobs.
        state: The worker's shared state.
        max_concurrent: The worker's limit (sizes the launch pool).
        acquire_timeout_seconds: Longest wait for the claim's host and queue locks.
        free_slots: Answers how many more jobs the worker may take on.
        on_launched: Called with each job whose container now runs, before
            the job stops counting as launching (so its slot is never free
            in between).
    """

    def __init__(
        self,
        queue_manager: JobQueueManager,
        state: WorkerState,
        *,
        max_concurrent: int,
        acquire_timeout_seconds: float,
        free_slots: Callable[[], int],
        on_launched: Callable[[ContainerJob, ContainerRef], None],
    ) -> None:
        self.queue_manager = queue_manager
        self.state = state
        self.max_concurrent = max_concurrent
        self.acquire_timeout_seconds = acquire_timeout_seconds
        self._free_slots = free_slots
        self._on_launched = on_launched
        self._lock = threading.Lock()
        self._launching: dict[int, ContainerJob] = {}
        self._idle = threading.Condition(self._lock)
        self._pool: LaunchPool | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._launching)

    def holds_image_tasks(self) -> bool:
        """True while an image task of this worker is in flight (its work is done here)."""
        with self._lock:
            return any(job.kind in IMAGE_KINDS for job in self._launching.values())

    def job_ids(self) -> list[int]:
        """Return the ids of the jobs claimed and not yet launched."""
        with self._lock:
            return sorted(self._launching)

    def acquire(self) -> list[ContainerJob]:
        """Claim up to the free slots' worth of ready jobs and start launching them.

        Returns:
            The claimed jobs (empty when none were ready, no slot was free, or
            the claim's locks were not had within the acquisition timeout).
        """
        state = self.state
        free = self._free_slots()
        if free <= 0:
            return []
        try:
            jobs = self.queue_manager.claim_jobs(
                state.worker_id,
                free,
                queues=state.queues,
                lease_seconds=state.lease_seconds,
                lock_timeout_seconds=self.acquire_timeout_seconds,
            )
        except OperationalError as exc:
            if "lock" not in str(exc).lower():
                raise  # Not a claim lock: the database is away, and the loop waits for it.
            message = f"Could not acquire jobs within {self.acquire_timeout_seconds} s: {exc}"
            logger.warning(message, extra={"worker_id": state.worker_id})
            state.stats.add_error(message)
            connection.close()
            return []
        for job in jobs:
            self._start(job)
        return jobs

    def relaunch(self, job: ContainerJob) -> None:
        """Finish the launch of an adopted job whose container exists (idempotent launch)."""
        self._start(job)

    def _start(self, job: ContainerJob) -> None:
        with self._lock:
            self._launching[int(job.pk)] = job
            if self._pool is None:
                # Started on first use: a worker that never launches starts no thread.
                size = min(self.max_concurrent, MAX_LAUNCH_THREADS)
                self._pool = LaunchPool(size, name=f"launch-{self.state.worker_id}")
            pool = self._pool
        pool.submit(lambda: self._launch(job))

    def _launch(self, job: ContainerJob) -> None:
        state = self.state
        try:
            if state.is_stopping:
                self.queue_manager.release_job(job, state.worker_id, "worker stopping")
                return
            if job.kind in IMAGE_KINDS:
                # The worker does an image task's work itself, in this thread.
                outcome = self.queue_manager.run_image_task(job, lambda: state.is_stopping)
            else:
                outcome = self.queue_manager.launch_claimed(job)
            if state.metrics is not None:
                if outcome.success:
                    state.metrics.launched(job)
                else:
                    state.metrics.launch_failed(outcome.error_code, outcome.retry_scheduled)
            if outcome.finished:
                state.stats.count("jobs_launched")
                state.stats.count("jobs_finished")
                state.echo(f"Image task job {job.pk} ({job.kind}) completed", logged=True)
            elif outcome.success:
                state.stats.count("jobs_launched")
                # Followed first, then no longer launching: the slot is never
                # counted free in between.
                self._on_launched(job, job_ref(job))
                self._done(job)
                # The queue logged the launch; the echo is for a caller's own output.
                state.echo(f"Launched job {job.pk} (attempt {job.attempt})", logged=True)
            else:
                state.stats.add_error(f"Job {job.pk}: {outcome.error}")
                if not outcome.retry_scheduled:
                    state.stats.count("launches_failed")
                state.echo(f"Launch of job {job.pk} failed: {outcome.error}", logged=True)
                if not outcome.retry_scheduled and job.kind in IMAGE_KINDS:
                    # Jobs waiting for this one learn now, not at the next heartbeat.
                    self.queue_manager.fail_dependents()
        except Exception as exc:
            logger.exception(
                "Launching job %s failed",
                job.pk,
                extra={"job_id": job.pk, "worker_id": state.worker_id},
            )
            state.stats.add_error(f"Job {job.pk}: {type(exc).__name__}: {exc}")
        finally:
            self._done(job)
            state.wake()

    def _done(self, job: ContainerJob) -> None:
        with self._lock:
            self._launching.pop(int(job.pk), None)
            self._idle.notify_all()

    def wait_idle(self, timeout_seconds: float) -> bool:
        """Wait until no launch is in flight.

        Returns:
            True when none is; False when some still are after the timeout.
        """
        with self._idle:
            return self._idle.wait_for(lambda: not self._launching, timeout_seconds)

    def close(self) -> None:
        """Stop the launch threads once their queued tasks are done."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
