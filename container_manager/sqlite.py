"""SQLite, the embedded default, made fit for a worker beside a shell or the admin.

SQLite lets one writer at a time in. With Python's defaults, a second writer
waits only 5 s, and a transaction that began reading and then writes fails
at once with "database is locked" when another process wrote meanwhile (no
wait helps it). For every SQLite connection Django opens, unless the
project's ``DATABASES`` say otherwise, :func:`tune_connection`:

- waits up to ``SQLITE_BUSY_TIMEOUT_SECONDS`` (20 s) for the write lock
  (``PRAGMA busy_timeout``), unless ``OPTIONS["timeout"]`` is set;
- begins transactions with ``BEGIN IMMEDIATE`` (they take the write lock at
  their start, so none fails half-way), unless ``OPTIONS["transaction_mode"]``
  is set;
- switches a database file to write-ahead logging (``PRAGMA journal_mode=WAL``),
  so that readers (the admin) never wait for the writer (the worker).

``CONTAINER_MANAGER["SQLITE_TUNING"] = False`` turns all of it off. PostgreSQL
and other databases are left as they are. See docs/deployment.md.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from container_manager.conf import settings

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_SECONDS = 20


def tune_connection(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Receiver of ``connection_created``: tune a new SQLite connection (see the module)."""
    if connection.vendor != "sqlite" or not settings.SQLITE_TUNING:
        return
    options = connection.settings_dict.get("OPTIONS") or {}
    with connection.cursor() as cursor:
        if "timeout" not in options:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        if not connection.is_in_memory_db():  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode = WAL")
    if "transaction_mode" not in options and connection.transaction_mode is None:  # type: ignore[attr-defined]
        connection.transaction_mode = "IMMEDIATE"  # type: ignore[attr-defined]
