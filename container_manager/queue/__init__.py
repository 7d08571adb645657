"""The job queue: ``JobQueueManager`` and the module-level ``queue_manager``.

The queue is the only writer of job state; its parts are listed in
:mod:`container_manager.queue.manager` and docs/architecture.md.

Example::

    from container_manager.queue import queue_manager

    queue_manager.queue_job(job)
"""

from __future__ import annotations

from container_manager.queue.launching import LaunchOutcome
from container_manager.queue.legacy import ProcessResult
from container_manager.queue.manager import JobQueueManager

#: The instance everyone imports.
queue_manager = JobQueueManager()

__all__ = ["JobQueueManager", "LaunchOutcome", "ProcessResult", "queue_manager"]
