"""Django settings of the chaos driver and of the workers it starts.

The demo's settings, on the suite's own PostgreSQL cluster (``DATABASE_URL``,
set by the driver), with the lease, heartbeat, retention, container labels
and name prefix of the run taken from ``CHAOS_*`` variables, so that the
driver and every worker agree on them.
"""

from __future__ import annotations

import os
from typing import Any

from demo.settings import *  # noqa: F403
from demo.settings import CONTAINER_MANAGER as _DEMO_CONTAINER_MANAGER
from demo.settings import DATABASES as _DEMO_DATABASES

if _DEMO_DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError("chaos.settings needs DATABASE_URL=postgres://... (the suite's own cluster)")

# A connection attempt to a cluster that is down fails within seconds.
DATABASES = _DEMO_DATABASES
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 3

_overrides: dict[str, Any] = {
    "LEASE_SECONDS": int(os.environ.get("CHAOS_LEASE_SECONDS", "15")),
    "HEARTBEAT_SECONDS": int(os.environ.get("CHAOS_HEARTBEAT_SECONDS", "5")),
    "CONTAINER_RETENTION": os.environ.get("CHAOS_RETENTION", "remove"),
    "CONTAINER_NAME_PREFIX": os.environ.get("CHAOS_NAME_PREFIX", "chaos"),
    # Leftovers of faults are cleaned up well within the run's --cleanup-grace.
    "CLEANUP_INTERVAL_SECONDS": int(os.environ.get("CHAOS_CLEANUP_SECONDS", "10")),
}
if os.environ.get("CHAOS_RUN_ID"):
    _overrides["CONTAINER_LABELS"] = {"container_manager.chaos_run": os.environ["CHAOS_RUN_ID"]}
CONTAINER_MANAGER = {**_DEMO_CONTAINER_MANAGER, **_overrides}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "container_manager": {
            "handlers": ["console"],
            "level": os.environ.get("CONTAINER_MANAGER_LOG_LEVEL", "WARNING"),
        }
    },
}
