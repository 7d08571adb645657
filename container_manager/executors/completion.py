"""Where executors post the containers that ended, and where the worker waits for them.

One :class:`CompletionBoard` per executor. The executor's own follower (the
Docker events thread, or the local executor's waiter threads) posts an
:class:`~container_manager.executors.base.ExitStatus` when a container ends;
:meth:`CompletionBoard.wait` wakes as soon as one of the awaited containers
is on the board. Nothing polls per container.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

from container_manager.executors.base import ExitStatus

#: Statuses nobody collected are forgotten after this long (a worker that
#: keeps finished containers around does not make the board grow forever).
KEEP_SECONDS = 24 * 3600


class CompletionBoard:
    """Thread-safe record of ended containers, keyed by container id."""

    def __init__(self, keep_seconds: float = KEEP_SECONDS) -> None:
        self._keep_seconds = keep_seconds
        self._condition = threading.Condition()
        self._ended: dict[str, tuple[float, ExitStatus]] = {}
        self._wakes = 0

    def post(self, status: ExitStatus) -> None:
        """Record that a container ended and wake the waiters.

        The first post for a container wins: a later one (the reconciliation
        finding what the events stream already reported) changes nothing.

        Args:
            status: How it ended.
        """
        now = time.monotonic()
        with self._condition:
            self._ended.setdefault(status.ref.container_id, (now, status))
            self._forget_older_than(now - self._keep_seconds)
            self._condition.notify_all()

    def get(self, container_id: str) -> ExitStatus | None:
        """Return the recorded end of a container, if any."""
        with self._condition:
            entry = self._ended.get(container_id)
        return entry[1] if entry else None

    def forget(self, container_id: str) -> None:
        """Drop a container's record (it was removed)."""
        with self._condition:
            self._ended.pop(container_id, None)

    def wake(self) -> None:
        """Wake every waiter, e.g. so it runs a reconciliation now."""
        with self._condition:
            self._wakes += 1
            self._condition.notify_all()

    def wait(self, container_ids: Collection[str], timeout_seconds: float) -> list[ExitStatus]:
        """Wait until one of the containers has ended, or the timeout passes.

        Args:
            container_ids: The containers to watch.
            timeout_seconds: The longest wait; 0 only looks.

        Returns:
            The statuses of those that ended, or an empty list on timeout or
            on :meth:`wake`.
        """
        with self._condition:
            wakes = self._wakes
            self._condition.wait_for(
                lambda: self._wakes != wakes or bool(self._collect(container_ids)),
                max(0.0, timeout_seconds),
            )
            return self._collect(container_ids)

    def _collect(self, container_ids: Collection[str]) -> list[ExitStatus]:
        return [self._ended[cid][1] for cid in container_ids if cid in self._ended]

    def _forget_older_than(self, limit: float) -> None:
        stale = [cid for cid, (posted, _) in self._ended.items() if posted < limit]
        for cid in stale:
            del self._ended[cid]
