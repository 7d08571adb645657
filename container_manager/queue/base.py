"""What every part of ``JobQueueManager`` shares: database alias, worker id, container layer."""

from __future__ import annotations

import os
import socket
import threading

from container_manager.containers import Containers
from container_manager.containers import containers as shared_containers
from container_manager.notify import WorkWaiter


def default_worker_id() -> str:
    """Return ``<hostname>:<pid>``, the id of a worker that names none."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ManagerBase:
    """State of a ``JobQueueManager``.

    Args:
        worker_id: The id this manager claims jobs under in ``launch_job`` and
            ``launch_next_batch``; None for ``<hostname>:<pid>`` (read at each use,
            so a forked process gets its own).
        containers: The container layer the queue asks to launch, stop, pause
            and resume containers; None for ``container_manager.containers.containers``.
        using: The database alias.
    """

    def __init__(
        self,
        worker_id: str | None = None,
        containers: Containers | None = None,
        using: str = "default",
    ) -> None:
        self._worker_id = worker_id
        self.containers = containers if containers is not None else shared_containers
        self.using = using
        self._local = threading.local()
        self._waiters: list[WorkWaiter] = []
        self._waiters_lock = threading.Lock()
        #: Per worker id, the hosts and limited queues of its last claim (queue/claims.py).
        self._last_slots: dict[str, tuple[set[int], set[str]]] = {}

    @property
    def worker_id(self) -> str:
        """The id used by ``launch_job`` and ``launch_next_batch``."""
        return self._worker_id or default_worker_id()
