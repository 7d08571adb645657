"""Signals a project's own code can receive: a job was queued, started, ended.

Each is sent by the queue once the transaction that wrote the change has
committed (never for a change that was rolled back), with
``sender=ContainerJob`` and the job as ``job``. A receiver that raises is
logged and does not stop the others, nor the worker or the request that
made the change::

    from django.dispatch import receiver

    from container_manager.models import ContainerJob
    from container_manager.signals import job_finished


    @receiver(job_finished, sender=ContainerJob)
    def tell_the_team(sender, job, status, error_code, **kwargs):
        if status != "completed":
            notify(f"Job {job.pk} ended {status} ({error_code})")

- :data:`job_queued`: ``job``: it waits in the queue (queued, queued again
  by a person, or made queued with ``create_and_queue``/``queue_jobs``).
- :data:`job_started`: ``job``: its container runs, or an image task's work began.
- :data:`job_finished`: ``job``, ``status`` (``completed``, ``failed``,
  ``timeout`` or ``cancelled``) and ``error_code`` ("" when none).

A job adopted by another worker after a crash does not start again; a
launch that fails and is retried sends nothing until the job ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

from container_manager.models import ContainerJob

logger = logging.getLogger(__name__)

job_queued = Signal()
job_started = Signal()
job_finished = Signal()


def send_after_commit(
    signal: Signal, jobs: Iterable[ContainerJob], using: str, **extra: Any
) -> None:
    """Send ``signal`` for each of ``jobs`` once the current transaction commits.

    Outside a transaction it is sent at once. Nothing is queued when no
    receiver listens.
    """
    if not signal.has_listeners(ContainerJob):
        return
    batch = list(jobs)
    if batch:
        transaction.on_commit(lambda: _send(signal, batch, extra), using=using)


def send_finished(job: ContainerJob, using: str) -> None:
    """Send :data:`job_finished` for a job that has just ended (its instance as written)."""
    send_after_commit(
        job_finished, [job], using, status=str(job.status), error_code=job.error_code or ""
    )


def _send(signal: Signal, jobs: list[ContainerJob], extra: dict[str, Any]) -> None:
    name = _NAMES.get(id(signal), "signal")
    for job in jobs:
        for receiver, result in signal.send_robust(sender=ContainerJob, job=job, **extra):
            if isinstance(result, Exception):
                logger.error(
                    "A receiver of %s (%s) raised for job %s; the job is not affected",
                    name,
                    getattr(receiver, "__qualname__", receiver),
                    job.pk,
                    exc_info=(type(result), result, result.__traceback__),
                    extra={"job_id": job.pk},
                )


_NAMES = {
    id(job_queued): "job_queued",
    id(job_started): "job_started",
    id(job_finished): "job_finished",
}

__all__ = ["job_finished", "job_queued", "job_started", "send_after_commit", "send_finished"]
