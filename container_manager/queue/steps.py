"""Launch steps written only when they last: ``preparing`` after a short delay.

Creating and starting a container usually takes a few milliseconds (a
local process) to a few hundred (Docker). Writing ``preparing`` at the start
of every launch would cost each job a transaction of its own, for a status
nobody sees. So the step is written only if the launch is still going
:data:`PREPARING_RECORD_DELAY_SECONDS` after it began: a person watching
sees ``preparing`` for every launch that lasts, and a fast launch goes from
``validating`` straight to ``running`` (a move the state machine allows).
Nothing of the recovery depends on it: the rescue treats ``validating``,
``preparing`` and ``pulling`` alike.

One daemon thread per process writes the steps that come due, on a
database connection of its own that it closes after each write. A write is
one guarded UPDATE (the job must still be ``validating`` at the same
attempt, held by the same worker), so a launch that ended, a cancel or a
takeover meanwhile makes it write nothing. The launch thread settles its
step before writing anything else (:meth:`DeferredStep.settle`): it cancels
a step not yet due, or waits for one being written and learns whether it
was, so that its own guarded writes start from the status the row has.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from django.db import connection

from container_manager.models import ContainerJob
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: How long a launch runs before ``preparing`` is written.
PREPARING_RECORD_DELAY_SECONDS = 0.25

_PENDING, _WRITING, _WRITTEN, _SKIPPED, _CANCELLED = range(5)


class DeferredStep:
    """One launch step to be written at a later time, unless settled first."""

    def __init__(self, write: Callable[[], bool]) -> None:
        self._write = write
        self._state = _PENDING
        self._changed = threading.Condition()

    def fire(self) -> None:
        """Write the step now, if nobody settled it (the timer thread calls this).

        The timer's connection is closed after each write, before the step
        counts as written: only launches that last get here, and an idle
        timer holds no connection (a test database can be dropped, a
        restarted server is met with a fresh connection).
        """
        with self._changed:
            if self._state != _PENDING:
                return
            self._state = _WRITING
        written = False
        try:
            written = self._write()
        except Exception:
            logger.warning("Could not record a launch step", exc_info=True)
        finally:
            connection.close()
        with self._changed:
            self._state = _WRITTEN if written else _SKIPPED
            self._changed.notify_all()

    def settle(self) -> bool:
        """Cancel the step if it is not due yet; wait for it if it is being written.

        Returns:
            True when the step was written (the row moved).
        """
        with self._changed:
            if self._state == _PENDING:
                self._state = _CANCELLED
                return False
            self._changed.wait_for(lambda: self._state != _WRITING)
            return self._state == _WRITTEN


class _StepTimer(threading.Thread):
    """The thread that fires deferred steps when they come due."""

    def __init__(self) -> None:
        super().__init__(name="cm-launch-steps", daemon=True)
        self._due: list[tuple[float, int, DeferredStep]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()

    def schedule(self, delay_seconds: float, step: DeferredStep) -> None:
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay_seconds, next(self._order), step))
            self._changed.notify()

    def run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(timeout)
                _, _, step = heapq.heappop(self._due)
            step.fire()


_timer: _StepTimer | None = None
_timer_lock = threading.Lock()


def _shared_timer() -> _StepTimer:
    global _timer
    with _timer_lock:
        if _timer is None or not _timer.is_alive():
            _timer = _StepTimer()
            _timer.start()
        return _timer


def defer_preparing(job: ContainerJob, using: str = "default") -> DeferredStep:
    """Write ``preparing`` for ``job`` after :data:`PREPARING_RECORD_DELAY_SECONDS`.

    Args:
        job: A claimed job, ``validating``.
        using: The database alias.

    Returns:
        The step, to settle before the launch writes anything else.
    """
    pk, attempt, worker_id = job.pk, job.attempt, job.worker_id

    def write() -> bool:
        # Guarded on the holder too: a job taken over meanwhile is not ours to move.
        moved = (
            ContainerJob.objects.using(using)
            .filter(pk=pk, attempt=attempt, worker_id=worker_id, status=JobStatus.VALIDATING)
            .update(status=JobStatus.PREPARING, current_step=JobStatus.PREPARING.label)
        )
        return bool(moved)

    step = DeferredStep(write)
    _shared_timer().schedule(PREPARING_RECORD_DELAY_SECONDS, step)
    return step


__all__ = ["PREPARING_RECORD_DELAY_SECONDS", "DeferredStep", "defer_preparing"]
