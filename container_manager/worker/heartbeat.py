"""Worker registration and heartbeat.

A worker registers a :class:`~container_manager.models.Worker` row at start,
and a background thread beats every ``HEARTBEAT_SECONDS``: it stamps the row
and renews the lease of every job the worker holds. A worker that stops
beating (SIGKILL, machine loss) lets its leases run out after
``LEASE_SECONDS``; other workers then adopt or requeue its jobs.

The heartbeat also starts and stops the worker's host checks
(:class:`~container_manager.worker.hosts.HostMonitor`) and its clean-up of
leftover containers (:class:`~container_manager.worker.sweeper.Sweeper`),
each on a thread of its own: a call to an engine that does not answer may
take the API timeout, and must never delay a beat.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from datetime import timedelta

from django.db import close_old_connections, connection
from django.utils import timezone

from container_manager.conf import settings
from container_manager.exceptions import ContainerManagerError
from container_manager.models import Worker as WorkerRow
from container_manager.models import WorkerStatus
from container_manager.queue import JobQueueManager
from container_manager.worker.hosts import HostMonitor
from container_manager.worker.state import WorkerState
from container_manager.worker.sweeper import Sweeper

logger = logging.getLogger(__name__)


class WorkerIdInUseError(ContainerManagerError, ValueError):
    """Another live worker already runs under this worker id."""

    def __init__(self, worker_id: str, hostname: str, pid: int) -> None:
        self.worker_id = worker_id
        super().__init__(
            f"Worker id {worker_id!r} is in use by pid {pid} on {hostname}, "
            "which heartbeats; choose another --worker-id"
        )


def _pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register(worker_id: str, queues: Sequence[str] | None, max_concurrent: int) -> WorkerRow:
    """Create or revive the worker's row.

    Args:
        worker_id: The worker's id.
        queues: The named queues it serves; None for all.
        max_concurrent: Its container limit.

    Returns:
        The row.

    Raises:
        WorkerIdInUseError: A row with this id heartbeats within ``LEASE_SECONDS``
            and belongs to another process that is alive (on this machine) or
            to another machine.
    """
    hostname, pid, now = socket.gethostname(), os.getpid(), timezone.now()
    fresh_after = now - timedelta(seconds=int(settings.LEASE_SECONDS))
    existing = WorkerRow.objects.filter(worker_id=worker_id).first()
    if (
        existing is not None
        and existing.status != WorkerStatus.STOPPED
        and existing.last_heartbeat_at > fresh_after
        and (existing.hostname != hostname or (existing.pid != pid and _pid_is_alive(existing.pid)))
    ):
        raise WorkerIdInUseError(worker_id, existing.hostname, existing.pid)
    row, _ = WorkerRow.objects.update_or_create(
        worker_id=worker_id,
        defaults={
            "hostname": hostname,
            "pid": pid,
            "queues": list(queues or []),
            "max_concurrent": max_concurrent,
            "status": WorkerStatus.RUNNING,
            "last_heartbeat_at": now,
            "stopped_at": None,
            "jobs_launched": 0,
            "jobs_finished": 0,
        },
    )
    return row


def mark_stopped(worker_id: str, launched: int, finished: int) -> None:
    """Record a clean stop of the worker.

    Args:
        worker_id: The worker's id.
        launched: Jobs it launched.
        finished: Jobs whose end it recorded.
    """
    now = timezone.now()
    WorkerRow.objects.filter(worker_id=worker_id).update(
        status=WorkerStatus.STOPPED,
        stopped_at=now,
        last_heartbeat_at=now,
        jobs_launched=launched,
        jobs_finished=finished,
    )


class Heartbeat(threading.Thread):
    """Background thread: stamp the worker row and renew leases, every interval.

    Args:
        queue_manager: The queue that renews the leases.
        state: The worker's shared state.
        interval_seconds: Time between two beats.
        monitor: The host checks, started and stopped with the heartbeat; None for none.
        sweeper: The clean-up of leftover containers, started and stopped
            likewise; None for none.
    """

    def __init__(
        self,
        queue_manager: JobQueueManager,
        state: WorkerState,
        interval_seconds: float,
        monitor: HostMonitor | None = None,
        sweeper: Sweeper | None = None,
    ) -> None:
        super().__init__(name=f"heartbeat-{state.worker_id}", daemon=True)
        self.queue_manager = queue_manager
        self.state = state
        self.interval_seconds = interval_seconds
        self.monitor = monitor
        self.sweeper = sweeper
        self._stop_event = threading.Event()

    def _companions(self) -> list[HostMonitor | Sweeper]:
        return [part for part in (self.monitor, self.sweeper) if part is not None]

    def stop(self) -> None:
        """Ask the thread (and the host checks and clean-up) to end after the current beat."""
        self._stop_event.set()
        for part in self._companions():
            part.stop()

    def run(self) -> None:
        for part in self._companions():
            if not part.is_alive() and not self._stop_event.is_set():
                part.start()
        try:
            while not self._stop_event.wait(self.interval_seconds):
                self.beat()
        finally:
            for part in self._companions():
                part.stop()
            connection.close()

    def beat(self) -> None:
        """Stamp the row and renew leases once; errors are logged, not raised."""
        state = self.state
        try:
            close_old_connections()
            status = WorkerStatus.STOPPING if state.is_stopping else WorkerStatus.RUNNING
            WorkerRow.objects.filter(worker_id=state.worker_id).update(
                last_heartbeat_at=timezone.now(),
                status=status,
                jobs_launched=state.stats.jobs_launched,
                jobs_finished=state.stats.jobs_finished,
            )
            self.queue_manager.renew_leases(state.worker_id, state.lease_seconds)
        except Exception:
            logger.warning(
                "Heartbeat of worker %s failed",
                state.worker_id,
                extra={"worker_id": state.worker_id},
                exc_info=True,
            )
            # A broken connection is replaced at the next beat.
            connection.close()
