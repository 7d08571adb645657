"""What the worker's parts share: who the worker is, whether it stops, what it did.

Each part of the worker (claimer, follower, rescuer, heartbeat, host checks,
clean-up) is built with the queue, the container layer, this small state and
the callbacks it needs, never with the whole
:class:`~container_manager.worker.loop.Worker`, so that each can be built and
tested alone (docs/architecture.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """What a worker did; returned by :meth:`Worker.run`."""

    iterations: int = 0
    jobs_launched: int = 0
    jobs_finished: int = 0
    jobs_adopted: int = 0
    jobs_requeued: int = 0
    #: Launches that failed for good (no retry left, or a permanent cause).
    launches_failed: int = 0
    #: The clean-up of leftover containers (worker/sweeper.py): containers
    #: removed, killed, and ends of cancelled or timed-out jobs recorded.
    containers_removed: int = 0
    containers_killed: int = 0
    container_ends_recorded: int = 0
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str) -> None:
        """Add one to the counter ``name``; safe from any thread."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def add_error(self, message: str) -> None:
        """Remember one error; safe from any thread."""
        with self._lock:
            self.errors.append(message)


class WorkerState:
    """The worker's identity, its stop flag, its statistics and its voice.

    Args:
        worker_id: The id its jobs and its row carry.
        queues: Named queues it serves; None for all.
        lease_seconds: Lease of the jobs it claims or adopts; None for ``LEASE_SECONDS``.
        wake: Wakes the main loop (a slot came free, or a stop was asked).
        echo: Called with each line of human output; None logs it.
    """

    def __init__(
        self,
        worker_id: str,
        queues: Sequence[str] | None = None,
        lease_seconds: int | None = None,
        wake: Callable[[], None] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.queues = list(queues) if queues else None
        self.lease_seconds = lease_seconds
        self.stats = WorkerStats()
        #: The worker's Prometheus counters (worker.metrics.WorkerMetrics), when served.
        self.metrics: Any = None
        self._wake = wake
        self._echo = echo
        self._stop_event = threading.Event()

    @property
    def is_stopping(self) -> bool:
        """True once a stop was requested: no new work is taken."""
        return self._stop_event.is_set()

    def stop(self) -> None:
        """Raise the stop flag and wake the loop (safe from a signal handler)."""
        self._stop_event.set()
        self.wake()

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``, less if a stop is requested; True when stopping."""
        return self._stop_event.wait(seconds)

    def wake(self) -> None:
        """Wake the main loop: a slot came free, or something changed."""
        if self._wake is not None:
            self._wake()

    def serves(self, queue: str) -> bool:
        """Tell whether this worker takes jobs of the named queue."""
        return self.queues is None or queue in self.queues

    def echo(
        self,
        message: str,
        *,
        level: int = logging.INFO,
        job_id: int | None = None,
        attempt: int | None = None,
        logged: bool = False,
    ) -> None:
        """Report one event: to the ``echo`` callback if one was given, else to the log.

        Args:
            message: One line, for people.
            level: Its logging level.
            job_id: The job it is about, for the record's ``extra``.
            attempt: The attempt it is about.
            logged: The layer below logged this event already: only the
                callback gets it, so that the log has one record per event.
        """
        if self._echo is not None:
            self._echo(message)
            return
        if logged:
            return
        extra: dict[str, object] = {"worker_id": self.worker_id}
        if job_id is not None:
            extra["job_id"] = job_id
        if attempt is not None:
            extra["attempt"] = attempt
        logger.log(level, "%s", message, extra=extra)
