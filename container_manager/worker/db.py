"""The worker's database connections: kept open, dropped only when broken.

Django closes a connection at the end of each request when ``CONN_MAX_AGE``
is 0 (its default). A worker has no requests: it runs for days and talks to
the database many times a second, so reconnecting at every claim or launch
would cost more than the work itself. Its threads keep their connection and
drop it only after an error left it unusable; the next query reconnects.

When the database is away (a restart, a failover, a worker started before
it), :class:`DatabaseWatch` makes the worker wait for it instead of failing:
it tries again after 0.5, 1, 2 ... 30 s, logs once when the outage starts
and once when it ends, and gives up only when the worker is asked to stop.
"""

from __future__ import annotations

import logging
import time

from django.db import DatabaseError, InterfaceError, OperationalError, connection

from container_manager.worker.state import WorkerState

logger = logging.getLogger(__name__)

#: Pauses between tries while the database is away: 0.5, 1, 2 ... at most 30 s.
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0


def drop_connection_if_broken() -> None:
    """Close this thread's connection if an error left it unusable."""
    if connection.connection is None or not connection.errors_occurred:
        return
    if connection.is_usable():
        connection.errors_occurred = False
    else:
        connection.close()


def is_connection_error(exc: BaseException) -> bool:
    """True for an error that says the database cannot be reached (not a bad query)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DatabaseError) and not connection.is_usable()


class DatabaseWatch:
    """Waits out database outages for one worker.

    Args:
        state: The worker's shared state (its stop flag and output).
    """

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        #: Outages waited out so far.
        self.outages = 0

    def is_up(self) -> bool:
        """Try one query on this thread's connection; True when it answered."""
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except (OperationalError, InterfaceError):
            connection.close()
            return False
        return True

    def wait_until_up(self, error: BaseException | None = None) -> bool:
        """Return once the database answers, waiting with backoff while it does not.

        Args:
            error: The error that showed the outage, for the log line.

        Returns:
            True when the database answers; False when a stop was requested first.
        """
        if error is None and self.is_up():
            return True
        connection.close()
        started = time.monotonic()
        delay = FIRST_RETRY_SECONDS
        self.outages += 1
        detail = f" ({type(error).__name__}: {str(error).strip()})" if error else ""
        self.state.echo(
            f"Database unreachable{detail}; waiting for it, trying again every "
            f"{FIRST_RETRY_SECONDS:.1f}-{MAX_RETRY_SECONDS:.0f} s",
            level=logging.WARNING,
        )
        while not self.state.is_stopping:
            if self.is_up():
                waited = time.monotonic() - started
                self.state.echo(
                    f"Database reachable again after {waited:.1f} s", level=logging.WARNING
                )
                return True
            self.state.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
        return False
