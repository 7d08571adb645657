"""Named queues: their pause switch and concurrency limit."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models

from container_manager.models.validation import CheckedFieldsMixin, text_problem

#: The longest queue name (the column of ``JobQueue.name`` and ``ContainerJob.queue``).
MAX_QUEUE_NAME_LENGTH = 100


def check_queue_name(name: object) -> str:
    """Return ``name`` if it can name a queue.

    Raises:
        ValueError: Not a string, empty, over 100 characters, or with a NUL
            character or a lone surrogate; the message says which.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("A queue name must be a non-empty string")
    if len(name) > MAX_QUEUE_NAME_LENGTH:
        raise ValueError(
            f"A queue name has at most {MAX_QUEUE_NAME_LENGTH} characters "
            f"(this one has {len(name)})"
        )
    problem = text_problem(name)
    if problem:
        raise ValueError(f"Not a valid queue name: {problem}")
    return name


class JobQueue(CheckedFieldsMixin, models.Model):
    """The stored state of a named queue.

    A row exists only for queues someone paused or limited; a job may name
    any queue, and a queue without a row runs unpaused with the limit of
    ``CONTAINER_MANAGER['QUEUES']`` (or none).
    """

    name = models.CharField(max_length=MAX_QUEUE_NAME_LENGTH, unique=True)
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
