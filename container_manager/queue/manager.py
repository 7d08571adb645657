"""``JobQueueManager``: the class that joins the queue's parts, and waiting for work.

The manager is the only writer of job state: the worker, the admin and the
commands call it, and every change of a job's status, lease, attempt,
container id, progress or result is made by one of its parts (see
docs/architecture.md). It knows the database, not Docker: container work goes
through the container layer (``container_manager.containers``).

- :mod:`.queueing`  queue, dequeue, ready jobs, retry of failed jobs;
- :mod:`.claims`    atomic multi-worker acquisition under the host and queue limits;
- :mod:`.launching` a claimed job's launch and its outcome;
- :mod:`.finishing` launch steps, progress, ends and timeouts;
- :mod:`.leases`    lease renewal, release, expiry, takeover and requeue;
- :mod:`.hosts`     host health: checks, unhealthy and healthy again;
- :mod:`.cleanup`   what the clean-up of leftover containers reads;
- :mod:`.control`   pause, resume and cancel of queues, hosts and jobs;
- :mod:`.reporting` queue statistics and worker metrics;
- :mod:`.images`    image tasks: queue a pull, build or push, and run a claimed one;
- :mod:`.dependencies` jobs waiting for jobs: fail those whose wait ended badly;
- :mod:`.schedules` firing schedules: one job per fire time, whichever worker fires it;
- :mod:`.retention` deleting old finished jobs and stopped workers' rows;
- :mod:`.legacy`    the one-call launch paths and the command's legacy mode.
"""

from __future__ import annotations

import threading

from container_manager.notify import WorkWaiter, interrupt_all
from container_manager.queue.bulk import BulkQueueMixin
from container_manager.queue.cleanup import CleanupMixin
from container_manager.queue.control import ControlMixin
from container_manager.queue.dependencies import DependencyMixin
from container_manager.queue.hosts import HostHealthMixin
from container_manager.queue.images import ImageTaskMixin
from container_manager.queue.leases import LeaseMixin
from container_manager.queue.legacy import LegacyMixin
from container_manager.queue.reporting import ReportingMixin
from container_manager.queue.retention import RetentionMixin
from container_manager.queue.schedules import ScheduleMixin


class JobQueueManager(
    ScheduleMixin,
    ImageTaskMixin,
    DependencyMixin,
    BulkQueueMixin,
    LegacyMixin,
    LeaseMixin,
    ControlMixin,
    ReportingMixin,
    HostHealthMixin,
    CleanupMixin,
    RetentionMixin,
):
    """High-level API of the job queue.

    Args:
        worker_id: The id this manager claims jobs under in ``launch_job`` and
            ``launch_next_batch``; None for ``<hostname>:<pid>`` (read at each use,
            so a forked process gets its own).
        containers: The container layer (``container_manager.containers.Containers``);
            None for the module's shared instance. Tests pass a fake.
        using: The database alias.

    Example::

        from container_manager.queue import queue_manager

        queue_manager.queue_job(job, priority=80)
    """

    # Waiting for work ----------------------------------------------------------

    def _waiter(self) -> WorkWaiter:
        waiter: WorkWaiter | None = getattr(self._local, "waiter", None)
        if waiter is None:
            waiter = WorkWaiter(using=self.using)
            self._local.waiter = waiter
            with self._waiters_lock:
                self._waiters.append(waiter)
        return waiter

    def wait_for_work(self, timeout_seconds: float) -> bool:
        """Sleep until new work is announced, or ``timeout_seconds`` pass.

        On PostgreSQL the calling thread LISTENs on ``NOTIFY_CHANNEL`` with a
        dedicated psycopg connection (not Django's), so an enqueue committed by
        any process wakes it at once. Elsewhere only enqueues of this process
        wake it, and the caller polls. The first call of a thread starts
        listening and returns True at once, so that the caller looks at the
        queue again after the ``LISTEN`` (nothing sent in between is lost).

        Args:
            timeout_seconds: The poll interval.

        Returns:
            True when there may be new work, False after the timeout or
            :meth:`interrupt`.
        """
        return self._waiter().wait(timeout_seconds)

    def interrupt(self) -> None:
        """Wake every thread waiting in :meth:`wait_for_work` (safe in a signal handler)."""
        interrupt_all()

    def close(self) -> None:
        """Close the listening connections of every thread (a later wait opens a new one)."""
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.close()
        self._local = threading.local()
