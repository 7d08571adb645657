"""Named queues: their pause switch and concurrency limit."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class JobQueue(models.Model):
    """The stored state of a named queue.

    A row exists only for queues someone paused or limited; a job may name
    any queue, and a queue without a row runs unpaused with the limit of
    ``CONTAINER_MANAGER['QUEUES']`` (or none).
    """

    name = models.CharField(max_length=100, unique=True)
    is_paused = models.BooleanField(default=False, help_text="Paused queues launch nothing.")
    max_concurrent = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Jobs of this queue active at once, across all workers. "
        "Empty: the QUEUES setting, or no limit.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "queue"

    def __str__(self) -> str:
        return self.name
