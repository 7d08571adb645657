"""Removal of ended containers, off the path that records ends.

Removing a container takes the engine tens to hundreds of milliseconds
(Docker unmounts its file system). The follower records the ends that one
wait brought, then hands their containers here (``CONTAINER_RETENTION``
decides what is removed), and goes back to waiting at once: the next end is
recorded without waiting for the previous removals. The output of each is
stored before it comes here, so nothing is lost if the worker dies first:
the clean-up of leftovers (``worker/sweeper.py``) removes what is left.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from container_manager.containers import Containers
from container_manager.executors.base import ContainerRef
from container_manager.models import ContainerJob

logger = logging.getLogger(__name__)

#: How long a stopping worker keeps removing what is still to remove.
DRAIN_SECONDS = 5.0

_Item = tuple[ContainerJob, ContainerRef, bool]


class Remover(threading.Thread):
    """A thread that applies ``CONTAINER_RETENTION`` to the containers handed to it.

    Args:
        containers: The container layer that removes (and logs a failure).
        name: The thread's name.
    """

    def __init__(self, containers: Containers, name: str = "remover") -> None:
        super().__init__(name=name, daemon=True)
        self.containers = containers
        self._items: queue.Queue[_Item | None] = queue.Queue()

    def submit(self, items: list[_Item]) -> None:
        """Remove (or keep, per retention) each ``(job, container, is_success)`` soon."""
        for item in items:
            self._items.put(item)

    def stop(self, timeout_seconds: float = DRAIN_SECONDS) -> None:
        """Remove what was handed in, for at most ``timeout_seconds``, then end."""
        self._items.put(None)
        self.join(timeout_seconds)
        if self.is_alive():
            logger.warning(
                "%d container removal(s) left for the clean-up of leftovers",
                self._items.qsize(),
            )

    def run(self) -> None:
        while True:
            item = self._items.get()
            if item is None:
                return
            job, ref, is_success = item
            started = time.monotonic()
            self.containers.apply_retention(job, ref, is_success=is_success)
            logger.debug(
                "Retention applied to the container of job %s in %.3f s",
                job.pk,
                time.monotonic() - started,
                extra={"job_id": job.pk},
            )
