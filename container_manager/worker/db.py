"""The worker's database connections: kept open, dropped only when broken.

Django closes a connection at the end of each request when ``CONN_MAX_AGE``
is 0 (its default). A worker has no requests: it runs for days and talks to
the database many times a second, so reconnecting at every claim or launch
would cost more than the work itself. Its threads keep their connection and
drop it only after an error left it unusable; the next query reconnects.
"""

from __future__ import annotations

from django.db import connection


def drop_connection_if_broken() -> None:
    """Close this thread's connection if an error left it unusable."""
    if connection.connection is None or not connection.errors_occurred:
        return
    if connection.is_usable():
        connection.errors_occurred = False
    else:
        connection.close()
