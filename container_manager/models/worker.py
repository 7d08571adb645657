"""Workers: who is alive, and since when."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from container_manager.conf import settings
from container_manager.models.validation import CheckedFieldsMixin


class WorkerStatus(models.TextChoices):
    """A worker's own account of itself."""

    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"


class Worker(CheckedFieldsMixin, models.Model):
    """A ``process_container_jobs --queue-mode`` process.

    Workers register at start, heartbeat every ``HEARTBEAT_SECONDS`` and mark
    themselves stopped on a clean exit. A worker whose heartbeat is older
    than ``LEASE_SECONDS`` is presumed dead; its jobs' leases have expired
    and other workers adopt or requeue them.
    """

    worker_id = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, blank=True)
    max_concurrent = models.PositiveIntegerField(default=5)
    status = models.CharField(
        max_length=20, choices=WorkerStatus.choices, default=WorkerStatus.RUNNING
    )
    started_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    jobs_launched = models.PositiveIntegerField(default=0)
    jobs_finished = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-last_heartbeat_at"]

    def __str__(self) -> str:
        return self.worker_id

    def is_alive(self, now: datetime | None = None) -> bool:
        """True when it runs and its heartbeat is younger than ``LEASE_SECONDS``."""
        since = (now or timezone.now()) - timedelta(seconds=int(settings.LEASE_SECONDS))
        return self.status != WorkerStatus.STOPPED and self.last_heartbeat_at >= since
