"""What every part of ``JobQueueManager`` shares: database alias, worker id, executor glue."""

from __future__ import annotations

import importlib
import os
import socket
import threading
from typing import Any


def default_worker_id() -> str:
    """Return ``<hostname>:<pid>``, the id of a worker that names none."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ManagerBase:
    """State of a ``JobQueueManager``.

    Args:
        worker_id: The id this manager claims jobs under in ``launch_job`` and
            ``launch_next_batch``; None for ``<hostname>:<pid>`` (read at each use,
            so a forked process gets its own).
        job_service: The executor glue; None imports
            ``container_manager.services.job_service`` on first use.
        using: The database alias.
    """

    def __init__(
        self, worker_id: str | None = None, job_service: Any = None, using: str = "default"
    ) -> None:
        self._worker_id = worker_id
        self._job_service = job_service
        self.using = using
        self._local = threading.local()
        self._waiters: list[Any] = []
        self._waiters_lock = threading.Lock()

    @property
    def worker_id(self) -> str:
        """The id used by ``launch_job`` and ``launch_next_batch``."""
        return self._worker_id or default_worker_id()

    def get_job_service(self) -> Any:
        """Return the executor glue, imported on first use (it imports the executors)."""
        if self._job_service is None:
            return importlib.import_module("container_manager.services").job_service
        return self._job_service
