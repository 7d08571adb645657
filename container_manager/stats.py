"""Queue statistics for the admin's statistics page, the command line and the API.

:func:`get_statistics` answers with the sections of docs/api-reference.md
(summary, distributions, performance, retries, recent activity) and the admin
figures (queue depth, ready, running, scheduled, completed and failed today,
high priority waiting), from six aggregate queries whatever the number of jobs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import (
    Avg,
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from container_manager.classification import describe
from container_manager.conf import settings
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.job import PRIORITY_HIGH
from container_manager.models.queries import due_q, launching_q, waiting_q
from container_manager.retry import RETRY_STRATEGIES
from container_manager.states import JobStatus

#: Statuses that count against the success rate (cancelled jobs do not).
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT)


def _attempts_allowed() -> Coalesce:
    """SQL for ``effective_max_retries``: ``max_retries``, else the strategy's attempts."""
    by_strategy = Case(
        *[
            When(retry_strategy=name, then=Value(strategy.max_attempts))
            for name, strategy in RETRY_STRATEGIES.items()
        ],
        default=Value(int(settings.DEFAULT_MAX_RETRIES)),
        output_field=IntegerField(),
    )
    return Coalesce(F("max_retries"), by_strategy, output_field=IntegerField())


def _counts(jobs: Any) -> dict[str, Any]:
    now = timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    waiting = waiting_q()
    due = due_q(now)
    annotated = jobs.annotate(attempts_allowed=_attempts_allowed())
    return dict(
        annotated.aggregate(
            total=Count("id"),
            queue_depth=Count("id", filter=waiting),
            ready=Count("id", filter=waiting & due),
            scheduled=Count("id", filter=waiting & ~due),
            launching=Count("id", filter=launching_q()),
            running=Count("id", filter=Q(status=JobStatus.RUNNING)),
            paused=Count("id", filter=Q(status=JobStatus.PAUSED)),
            high_priority_waiting=Count("id", filter=waiting & Q(priority__gte=PRIORITY_HIGH)),
            completed=Count("id", filter=Q(status=JobStatus.COMPLETED)),
            failed=Count("id", filter=Q(status__in=[JobStatus.FAILED, JobStatus.TIMEOUT])),
            completed_today=Count(
                "id", filter=Q(status=JobStatus.COMPLETED, completed_at__gte=today)
            ),
            failed_today=Count(
                "id",
                filter=Q(status__in=[JobStatus.FAILED, JobStatus.TIMEOUT], completed_at__gte=today),
            ),
            last_24h=Count("id", filter=Q(created_at__gte=now - timedelta(hours=24))),
            last_hour=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))),
            total_retries=Coalesce(Sum("retry_count"), 0),
            tasks_with_retries=Count("id", filter=Q(retry_count__gt=0)),
            max_retries_reached=Count(
                "id",
                filter=Q(status=JobStatus.FAILED, retry_count__gte=F("attempts_allowed")),
            ),
        )
    )


def _average_duration_seconds(jobs: Any) -> float | None:
    duration = ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField())
    finished = jobs.filter(
        status=JobStatus.COMPLETED, started_at__isnull=False, completed_at__isnull=False
    )
    value = finished.aggregate(avg=Avg(duration))["avg"]
    if value is None:
        return None
    if isinstance(value, timedelta):
        return round(value.total_seconds(), 3)
    # Some backends return microseconds as a number.
    return round(float(value) / 1_000_000, 3)


def get_statistics(queue: str | None = None) -> dict[str, Any]:
    """Return the queue's statistics.

    Args:
        queue: Only this named queue; None for all jobs.

    Returns:
        A dict with these sections:

        - ``summary``: ``total_tasks``, ``max_concurrent_tasks`` (summed
          ``max_concurrent_jobs`` of active, unpaused hosts), ``current_running``,
          ``queue_size`` (jobs waiting, due or not);
        - ``status_distribution``: ``{status: count}`` for every status;
        - ``queue_distribution``: ``{queue name: count}``;
        - ``error_distribution``: ``{error code: {count, description, suggestion}}``;
        - ``performance``: ``success_rate`` (percent of completed among
          completed, failed and timed-out; None without any), ``average_duration_seconds``
          (of completed jobs; None without any), ``completed_tasks``, ``failed_tasks``;
        - ``retries``: ``total_retries``, ``tasks_with_retries``, ``max_retries_reached``;
        - ``recent_activity``: ``last_24h``, ``last_hour`` (jobs created);
        - ``admin``: ``queue_depth``, ``ready``, ``running``, ``scheduled``,
          ``launching``, ``paused``, ``completed_today``, ``failed_today``,
          ``high_priority_waiting`` (priority 80 or more).
    """
    jobs = ContainerJob.objects.all()
    if queue is not None:
        jobs = jobs.filter(queue=queue)
    counts = _counts(jobs)
    by_status = dict(
        jobs.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    by_queue = dict(
        jobs.order_by().values_list("queue").annotate(n=Count("id")).values_list("queue", "n")
    )
    by_error = (
        jobs.exclude(error_code="")
        .order_by()
        .values_list("error_code")
        .annotate(n=Count("id"))
        .values_list("error_code", "n")
    )
    capacity = ExecutorHost.objects.filter(is_active=True, is_paused=False).aggregate(
        total=Coalesce(Sum("max_concurrent_jobs"), 0)
    )["total"]
    finished = counts["completed"] + counts["failed"]
    return {
        "summary": {
            "total_tasks": counts["total"],
            "max_concurrent_tasks": capacity,
            "current_running": counts["running"],
            "queue_size": counts["queue_depth"],
        },
        "status_distribution": {status: by_status.get(status, 0) for status in JobStatus.values},
        "queue_distribution": by_queue,
        "error_distribution": {
            code: {
                "count": n,
                "description": describe(code).description,
                "suggestion": describe(code).suggestion,
            }
            for code, n in sorted(by_error)
        },
        "performance": {
            "success_rate": round(100 * counts["completed"] / finished, 1) if finished else None,
            "average_duration_seconds": _average_duration_seconds(jobs),
            "completed_tasks": counts["completed"],
            "failed_tasks": counts["failed"],
        },
        "retries": {
            key: counts[key]
            for key in ("total_retries", "tasks_with_retries", "max_retries_reached")
        },
        "recent_activity": {"last_24h": counts["last_24h"], "last_hour": counts["last_hour"]},
        "admin": {
            key: counts[key]
            for key in (
                "queue_depth",
                "ready",
                "running",
                "scheduled",
                "launching",
                "paused",
                "completed_today",
                "failed_today",
                "high_priority_waiting",
            )
        },
    }
