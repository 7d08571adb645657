"""Host health checks: unhealthy hosts checked again with backoff, unknown ones once.

A host is marked unhealthy when a launch cannot reach it (queue/launching.py)
or a check fails; claims then skip it. :class:`HostMonitor`, a thread of
every worker (started and stopped with its heartbeat), checks such hosts
again after 1, 2, 4 ... s, at most every ``HEALTH_RECHECK_MAX_SECONDS``
(30 s), and marks them healthy once they answer, which wakes the workers.
Any worker may check: the delay runs from the host's ``last_health_check_at``,
which every check stamps, and it grows with every failed check seen, whoever
made it, so many workers do not check more often than one. Hosts never
checked (``unknown``) are checked once when the worker starts, so a worker
started during an outage claims nothing for the dead host. Every write goes
through the queue (``JobQueueManager.record_host_health``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from django.db import close_old_connections, connection
from django.utils import timezone

from container_manager.models.host import HealthStatus
from container_manager.queue import JobQueueManager
from container_manager.queue.hosts import recheck_delay
from container_manager.worker.db import drop_connection_if_broken
from container_manager.worker.state import WorkerState

logger = logging.getLogger(__name__)

#: How often the thread looks for hosts whose next check is due.
TICK_SECONDS = 0.5


@dataclass
class _Seen:
    """What this worker knows of one unhealthy host's outage."""

    stamp: datetime | None
    failed_checks: int


class HostMonitor(threading.Thread):
    """Background thread: check unknown and unhealthy hosts, with backoff.

    Args:
        queue_manager: The queue that checks hosts and records their health.
        state: The worker's shared state.
        tick_seconds: How often due checks are looked for.
    """

    def __init__(
        self,
        queue_manager: JobQueueManager,
        state: WorkerState,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        super().__init__(name=f"hosts-{state.worker_id}", daemon=True)
        self.queue_manager = queue_manager
        self.state = state
        self.tick_seconds = tick_seconds
        self._stop_event = threading.Event()
        self._seen: dict[int, _Seen] = {}

    def stop(self) -> None:
        """Ask the thread to end after its current pass."""
        self._stop_event.set()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                close_old_connections()
                self.check_due()
                # A broken connection is replaced at the next pass.
                drop_connection_if_broken()
                self._stop_event.wait(self.tick_seconds)
        finally:
            connection.close()

    def delay_for(self, host_id: int) -> float:
        """Seconds between the last check of an unhealthy host and its next one."""
        seen = self._seen.get(host_id)
        return recheck_delay(seen.failed_checks if seen else 1)

    def check_due(self, now: datetime | None = None) -> int:
        """Check every host whose check is due; errors are logged, not raised.

        Runs on the caller's connection (the thread's own, in :meth:`run`).

        Args:
            now: The present; None for now.

        Returns:
            How many hosts were checked.
        """
        checked = 0
        try:
            hosts = self.queue_manager.hosts_to_check()
            now = now or timezone.now()
            self._seen = {pk: v for pk, v in self._seen.items() if pk in {h.pk for h in hosts}}
            for host in hosts:
                if self._stop_event.is_set():
                    break
                if host.health_status == HealthStatus.UNHEALTHY:
                    seen = self._seen.setdefault(host.pk, _Seen(host.last_health_check_at, 1))
                    if host.last_health_check_at != seen.stamp:
                        # Another worker checked it meanwhile, and it failed.
                        seen.stamp = host.last_health_check_at
                        seen.failed_checks += 1
                    stamp = host.last_health_check_at
                    if stamp is not None and (now - stamp).total_seconds() < self.delay_for(
                        host.pk
                    ):
                        continue
                report = self.queue_manager.check_host(host)
                checked += 1
                if report.is_healthy:
                    self._seen.pop(host.pk, None)
                else:
                    seen = self._seen.setdefault(host.pk, _Seen(None, 0))
                    seen.stamp = host.last_health_check_at
                    seen.failed_checks += 1
                    logger.debug(
                        "Host %s still does not answer; next check in %.0f s",
                        host.name,
                        self.delay_for(host.pk),
                        extra={"worker_id": self.state.worker_id},
                    )
        except Exception:
            logger.warning(
                "Checking the health of hosts failed",
                extra={"worker_id": self.state.worker_id},
                exc_info=True,
            )
        return checked
