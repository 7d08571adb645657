"""The worker: the loop behind ``process_container_jobs --queue-mode``.

- :mod:`.loop`      :class:`Worker`, its main loop, signals and shutdown;
- :mod:`.claimer`   claims jobs for free slots and launches them in a thread pool;
- :mod:`.follower`  follows running containers: completion, timeouts, progress;
- :mod:`.rescuer`   adopts or requeues the jobs of workers that disappeared;
- :mod:`.heartbeat` registration, heartbeat and lease renewal;
- :mod:`.state`     what the parts share: id, stop flag, statistics, output.

Example::

    from container_manager.worker import Worker

    stats = Worker(max_concurrent=10, poll_interval_seconds=5).run()
"""

from __future__ import annotations

from container_manager.worker.heartbeat import WorkerIdInUseError
from container_manager.worker.loop import Worker
from container_manager.worker.state import WorkerStats

__all__ = ["Worker", "WorkerIdInUseError", "WorkerStats"]
