"""The job queue: ``JobQueueManager`` and the module-level ``queue_manager``.

``queue.py`` of the seeds became this package, split by responsibility:

- :mod:`.manager`   the class, and the seed's queue operations (queue, dequeue, ready jobs, retry);
- :mod:`.claims`    atomic multi-worker acquisition under the host and queue limits;
- :mod:`.leases`    lease renewal, release, takeover and requeue of expired jobs;
- :mod:`.launching` launch, retry on transient errors, batches;
- :mod:`.control`   pause, resume and cancel of queues, hosts and jobs;
- :mod:`.reporting` queue statistics and worker metrics.

Example::

    from container_manager.queue import queue_manager

    queue_manager.queue_job(job)
"""

from __future__ import annotations

from container_manager.queue.launching import LaunchOutcome
from container_manager.queue.manager import JobQueueManager

#: The instance everyone imports.
queue_manager = JobQueueManager()

__all__ = ["JobQueueManager", "LaunchOutcome", "queue_manager"]
