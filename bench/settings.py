"""Django settings of the benchmarks: the example project's, on the bench database.

``DATABASE_URL`` is set by the runner to its own database (``cm_bench``).
The database backend of Django's Tasks framework is added when installed
(``pip install -e '.[bench]'``), so that it can be measured on the same
server. ``BENCH_NOTIFY_CHANNEL`` lets a worker listen on a channel nobody
notifies, which leaves it polling only.
"""

from __future__ import annotations

import importlib.util
import os

from demo.settings import *  # noqa: F403
from demo.settings import CONTAINER_MANAGER, INSTALLED_APPS

DEBUG = False
# Persistent connections for every process: with CONN_MAX_AGE = 0 (the example
# project's) each loop of a worker opens a new connection, which costs more
# than the work being measured, for us and for django-tasks-db alike.
DATABASES["default"]["CONN_MAX_AGE"] = None  # noqa: F405

INSTALLED_APPS = list(INSTALLED_APPS)
if importlib.util.find_spec("django_tasks_db") is not None:
    INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

CONTAINER_MANAGER = {
    **CONTAINER_MANAGER,
    "NOTIFY_CHANNEL": os.environ.get("BENCH_NOTIFY_CHANNEL", "container_manager_jobs"),
    # Marks the containers of a run, for cleaning up after an interrupted one.
    "CONTAINER_LABELS": {"cm-bench": "worker"},
}
