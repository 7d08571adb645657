"""Wake-ups: tell idle workers that there is new work, at once.

On PostgreSQL an enqueue sends ``NOTIFY <NOTIFY_CHANNEL>`` after its
transaction commits (:func:`announce_work`), and a waiting worker
(:class:`WorkWaiter`) holds its own psycopg connection, not Django's, on
which it has run ``LISTEN``; it sleeps in ``select()`` on that socket and on
a wake-up socket pair, so it returns as soon as a notification arrives, when
:meth:`WorkWaiter.interrupt` is called (from a signal handler, say), or at
the timeout. Elsewhere (SQLite, MySQL) the same ``select()`` runs on the
wake-up pair only: enqueues made in the same process wake it, other
processes' are found by polling.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
import weakref
from typing import Any

from django.db import connections, transaction

from container_manager.conf import settings

logger = logging.getLogger(__name__)

_WORK = b"w"
_STOP = b"s"

# Every live waiter of this process, so that an in-process enqueue (and
# interrupt()) can reach them all.
_WAITERS: weakref.WeakSet[WorkWaiter] = weakref.WeakSet()
_WAITERS_LOCK = threading.Lock()


def is_postgresql(using: str = "default") -> bool:
    """Tell whether the database alias runs on PostgreSQL."""
    return connections[using].vendor == "postgresql"


def announce_work(queue: str = "", using: str = "default") -> None:
    """Announce new work once the current transaction commits.

    Outside a transaction the announcement goes out at once. On PostgreSQL it
    is a ``NOTIFY`` on ``NOTIFY_CHANNEL`` with the queue name as payload;
    inside a transaction it is sent as part of it (PostgreSQL delivers it at
    the commit, once however many times the same queue is announced, and
    drops it on a rollback), which saves a transaction of its own. Waiters
    of this process are woken after the commit, on every database.

    Args:
        queue: The named queue that got work (the payload; may be empty).
        using: The database alias.
    """
    connection = connections[using]
    if connection.in_atomic_block and is_postgresql(using):
        _notify(queue, using)
        transaction.on_commit(_wake_local, using=using)
        return
    transaction.on_commit(lambda: _send(queue, using), using=using)


def _wake_local() -> None:
    for waiter in _live_waiters():
        waiter.wake(_WORK)


def _notify(queue: str, using: str) -> None:
    try:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [str(settings.NOTIFY_CHANNEL), queue])
    except Exception:
        # A lost wake-up only costs one poll interval.
        logger.warning("Could not send NOTIFY for queue %r", queue, exc_info=True)
        raise


def _send(queue: str, using: str) -> None:
    _wake_local()
    if not is_postgresql(using):
        return
    # The job is committed; a lost wake-up only costs one poll interval.
    with contextlib.suppress(Exception):
        _notify(queue, using)


def _live_waiters() -> list[WorkWaiter]:
    with _WAITERS_LOCK:
        return list(_WAITERS)


class WorkWaiter:
    """One thread's way of sleeping until there is work.

    Create one per thread (the queue manager keeps one per thread for you).
    The first :meth:`wait` only starts listening and returns True, so that
    the caller looks at the queue again: a notification sent between its
    last look and the ``LISTEN`` would otherwise be missed.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._pg: Any = None
        self._is_started = False
        # Whatever thread drops the last reference, the sockets get closed.
        self._resources: list[Any] = [self._reader, self._writer]
        self._finalizer = weakref.finalize(self, _close_all, self._resources)
        with _WAITERS_LOCK:
            _WAITERS.add(self)

    def wake(self, kind: bytes = _STOP) -> None:
        """Wake this waiter (safe from signal handlers and other threads)."""
        try:
            self._writer.send(kind)
        except OSError:
            # The pair is full (it is woken anyway) or closed (nobody waits).
            return

    def interrupt(self) -> None:
        """Wake this waiter without work: :meth:`wait` returns False at once."""
        self.wake(_STOP)

    def close(self) -> None:
        """Close the listening connection and the wake-up sockets."""
        with _WAITERS_LOCK:
            _WAITERS.discard(self)
        self._close_pg()
        self._finalizer()

    def wait(self, timeout_seconds: float) -> bool:
        """Sleep until there is work, an interrupt, or the timeout.

        Args:
            timeout_seconds: Longest wait, in seconds (the poll interval).

        Returns:
            True when work was announced (or listening just started, or the
            listening connection failed: look again), False after the timeout
            or an interrupt.
        """
        if not self._is_started:
            self._is_started = True
            self._listen()
            return True
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        while True:
            if self._pg is not None and self._drain_pg():
                return True
            remaining = deadline - time.monotonic()
            sockets: list[Any] = [self._reader]
            if self._pg is not None:
                sockets.append(self._pg.fileno())
            ready, _, _ = select.select(sockets, [], [], max(remaining, 0.0))
            if self._reader in ready:
                return self._read_wakeups()
            if not ready:
                return False

    def _read_wakeups(self) -> bool:
        try:
            data = self._reader.recv(4096)
        except BlockingIOError:
            return False
        return _WORK in data

    def _listen(self) -> None:
        if not is_postgresql(self.using):
            return
        try:
            import psycopg

            params = connections[self.using].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params.pop("server_side_binding", None)
            self._pg = psycopg.connect(**params, autocommit=True)
            self._resources.append(self._pg)
            channel = psycopg.sql.Identifier(str(settings.NOTIFY_CHANNEL))
            self._pg.execute(psycopg.sql.SQL("LISTEN {}").format(channel))
        except Exception:
            logger.warning("Cannot LISTEN for new jobs; falling back to polling", exc_info=True)
            self._close_pg()

    def _drain_pg(self) -> bool:
        """Consume pending notifications; True when there was at least one."""
        try:
            return any(True for _ in self._pg.notifies(timeout=0))
        except Exception:
            logger.warning("Lost the LISTEN connection; will listen again", exc_info=True)
            self._close_pg()
            self._is_started = False
            return True

    def _close_pg(self) -> None:
        if self._pg is not None:
            if self._pg in self._resources:
                self._resources.remove(self._pg)
            _close_all([self._pg])
            self._pg = None


def _close_all(resources: list[Any]) -> None:
    """Close sockets and connections, logging (not raising) what fails."""
    for resource in resources:
        try:
            resource.close()
        except Exception:
            logger.debug("Error closing %r", resource, exc_info=True)
    resources.clear()


def interrupt_all() -> None:
    """Wake every waiter of this process without work (used on SIGTERM)."""
    for waiter in _live_waiters():
        waiter.interrupt()
