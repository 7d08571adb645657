"""Settings of container_manager: every default, in one place.

Projects override them in one dict::

    CONTAINER_MANAGER = {
        "DEFAULT_IMAGE": "python:3.12-slim",
        "QUEUES": {"reports": {"max_concurrent": 2}},
    }

and the code reads them as attributes of :data:`settings`, which looks at
Django's settings on every access (so ``override_settings`` works in tests).
The system check ``container_manager.E001`` validates the dict at start-up.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

#: Most jobs one worker holds at once (``process_container_jobs --max-concurrent``,
#: ``Worker(max_concurrent=...)``, ``launch_next_batch(max_concurrent=...)``).
DEFAULT_MAX_CONCURRENT = 5
#: Longest wait for the claim's host and queue locks, and for launches in flight when a worker
#: stops (``--timeout``, ``Worker(acquire_timeout_seconds=...)``,
#: ``launch_next_batch(timeout=...)``).
DEFAULT_ACQUIRE_TIMEOUT_SECONDS = 30

DEFAULTS: dict[str, Any] = {
    # Image of a job created without one (ContainerJob.objects.create(command=...)).
    "DEFAULT_IMAGE": "busybox:latest",
    # Name of the ExecutorHost used by a job without one; None routes the job to
    # any active host with capacity, by weight.
    "DEFAULT_HOST": None,
    # Named queue of a job created without one.
    "DEFAULT_QUEUE": "default",
    # Priority of a new job (0-100, higher runs first).
    "DEFAULT_PRIORITY": 50,
    # Launch attempts before a transiently failing job is given up.
    "DEFAULT_MAX_RETRIES": 3,
    # Retry strategy name of a new job (see container_manager.retry).
    "DEFAULT_RETRY_STRATEGY": "default",
    # Wall-clock limit of a job that sets none, and the largest one accepted.
    "DEFAULT_TIMEOUT_SECONDS": 3600,
    "MAX_TIMEOUT_SECONDS": 7 * 24 * 3600,
    # Per named queue: {"max_concurrent": int or None}. Unlisted queues are unlimited.
    "QUEUES": {},
    # A worker's claim on a job lasts this long unless its heartbeat renews it.
    "LEASE_SECONDS": 60,
    "HEARTBEAT_SECONDS": 10,
    # How often each worker looks, on every Docker host that answers, for
    # containers that faults left behind (their job deleted, their attempt
    # superseded, their job ended) and kills or removes them.
    "CLEANUP_INTERVAL_SECONDS": 60,
    # How long an idle worker waits before looking again when it gets no NOTIFY
    # (the default of Worker(poll_interval_seconds=...) and --poll-interval).
    "POLL_INTERVAL_SECONDS": 10,
    # PostgreSQL channel on which enqueues are announced.
    "NOTIFY_CHANNEL": "container_manager_jobs",
    # Bytes of stdout and of stderr kept per job; the rest is cut with a marker.
    "LOG_MAX_BYTES": 1024 * 1024,
    # On SQLite: wait for the write lock, begin transactions IMMEDIATE, and use
    # write-ahead logging, unless DATABASES' OPTIONS say otherwise (container_manager.sqlite).
    "SQLITE_TUNING": True,
    # What happens to a finished container: "remove", "keep", or "keep_failed".
    "CONTAINER_RETENTION": "remove",
    # Extra labels put on every container, e.g. {"com.example.team": "reports"}.
    "CONTAINER_LABELS": {},
    # Containers are named "<prefix>-job-<id>-a<attempt>"; give each project
    # sharing a Docker host its own prefix so their names never collide.
    "CONTAINER_NAME_PREFIX": "cm",
    # Network of a Docker job that names none, on a host whose executor_config
    # has no "default_network". "none" gives no network at all.
    "DOCKER_DEFAULT_NETWORK": "none",
    # Registry credentials by address: {"username": ..., "password_env": VAR}
    # or {"username": ..., "password_file": PATH}; read when needed, never
    # stored (container_manager.registries, docs/image-tasks.md).
    "REGISTRIES": {},
    # Largest build context (a tar archive) an image build job may carry.
    "BUILD_CONTEXT_MAX_BYTES": 50 * 1024 * 1024,
    # Days after which finished jobs and stopped workers' rows are deleted by
    # each worker's clean-up pass (None: kept for ever; prune_jobs by hand).
    "RETENTION_DAYS": None,
    # Bearer token that Prometheus sends to /metrics/ (container_manager.api.metrics);
    # None: only staff users with the admin's view permission may scrape.
    "METRICS_TOKEN": None,
}


class Settings:
    """Attribute access to ``CONTAINER_MANAGER`` merged over :data:`DEFAULTS`."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"container_manager has no setting {name!r}")
        user = getattr(django_settings, "CONTAINER_MANAGER", {}) or {}
        return user.get(name, DEFAULTS[name])

    def queue_limit(self, queue: str) -> int | None:
        """Return the concurrency limit of a named queue, or None when it has none.

        Args:
            queue: The queue name.

        Returns:
            The ``max_concurrent`` of that queue in ``QUEUES``, or None.
        """
        limit = self.QUEUES.get(queue, {}).get("max_concurrent")
        return None if limit is None else int(limit)


settings = Settings()
