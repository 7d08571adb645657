"""Queue statistics for the admin's statistics page, the command line and the API.

:func:`get_statistics` answers with the sections of docs/api-reference.md
(summary, distributions, performance, retries, recent activity) and the admin
figures (queue depth, ready, running, scheduled, completed and failed today,
high priority waiting), without reading the history of finished jobs:

- finished jobs are added up from their tally (``models.tally``: counts kept
  by PostgreSQL's triggers, a few hundred rows whatever the number of jobs;
  on SQLite they are counted from the job rows);
- jobs not finished are counted over the indexes on ``status``;
- the jobs finished today and created in the last day and hour are counted
  over the indexes on ``completed_at`` and ``created_at``.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from container_manager.classification import describe
from container_manager.models import ContainerJob, ExecutorHost, JobDependency, JobQueue
from container_manager.models.job import PRIORITY_HIGH, attempts_allowed
from container_manager.models.queries import due_q, ready_q
from container_manager.models.tally import (
    HistoryGroup,
    history_from_jobs,
    history_from_tally,
    is_kept,
)
from container_manager.states import (
    LAUNCHING_STATUSES,
    READY_STATUSES,
    UNFINISHED_STATUSES,
    JobKind,
    JobStatus,
)

#: Statuses that count against the success rate (cancelled jobs do not).
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT)


def _history(jobs: Any, queue: str | None) -> list[HistoryGroup]:
    """The finished jobs' groups: from the tally on PostgreSQL, else counted from the jobs."""
    if is_kept(jobs.db):
        return history_from_tally(jobs.db, queue)
    return history_from_jobs(jobs)


def _live(jobs: Any) -> list[dict[str, Any]]:
    """The jobs not finished, grouped by queue, status and error code, over the status indexes."""
    now = timezone.now()
    # Every column read is in cm_job_unfinished_idx: an index-only scan.
    return list(
        jobs.filter(status__in=sorted(UNFINISHED_STATUSES))
        .values("queue", "status", "error_code")
        .annotate(
            n=Count("status"),
            due=Count("status", filter=due_q(now)),
            high=Count("status", filter=Q(priority__gte=PRIORITY_HIGH)),
            retries=Coalesce(Sum("retry_count"), 0),
            with_retries=Count("status", filter=Q(retry_count__gt=0)),
        )
        .order_by()
    )


def _kinds(jobs: Any, total: int) -> dict[str, int]:
    """Jobs by kind: image tasks counted over their own index, the rest are ``run`` jobs."""
    images = dict(
        jobs.exclude(kind=JobKind.RUN).values_list("kind").annotate(n=Count("kind")).order_by()
    )
    counts = {kind: int(images.get(kind, 0)) for kind in JobKind.values if kind != JobKind.RUN}
    return {JobKind.RUN.value: max(total - sum(counts.values()), 0), **counts}


def _waiting_for_jobs(jobs: Any, now: Any) -> int:
    """Due waiting jobs held back by a dependency that has not completed (not ready)."""
    return int(
        JobDependency.objects.filter(job__in=jobs.filter(ready_q(now)))
        .exclude(depends_on__status=JobStatus.COMPLETED)
        .values("job_id")
        .distinct()
        .count()
    )


def _windows(jobs: Any) -> dict[str, int]:
    """Jobs finished today and created lately, each from an index over its time column."""
    now = timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    ended = dict(
        jobs.filter(completed_at__gte=today, status__in=FINISHED_STATUSES)
        .values_list("status")
        .annotate(n=Count("status"))
        .order_by()
    )
    created = jobs.filter(created_at__gte=now - timedelta(hours=24)).aggregate(
        last_24h=Count("created_at"),
        last_hour=Count("created_at", filter=Q(created_at__gte=now - timedelta(hours=1))),
    )
    return {
        "completed_today": ended.get(JobStatus.COMPLETED, 0),
        "failed_today": ended.get(JobStatus.FAILED, 0) + ended.get(JobStatus.TIMEOUT, 0),
        **created,
    }


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
        - ``task_type_distribution``: ``{kind: count}`` for every job kind
          (``run``, ``image_pull``, ``image_build``, ``image_push``);
        - ``error_distribution``: ``{error code: {count, description, suggestion}}``;
        - ``performance``: ``success_rate`` (percent of completed among
          completed, failed and timed-out; None without any), ``average_duration_seconds``
          (of completed jobs; None without any), ``completed_tasks``, ``failed_tasks``;
        - ``retries``: ``total_retries``, ``tasks_with_retries``, ``max_retries_reached``;
        - ``recent_activity``: ``last_24h``, ``last_hour`` (jobs created);
        - ``admin``: ``queue_depth``, ``ready`` (due, in a queue not paused),
          ``ready_in_paused_queues`` (due, but their queue is paused), ``waiting_for_jobs``
          (due, but a job they wait for has not completed), ``running``, ``scheduled``,
          ``launching``, ``paused``, ``completed_today``, ``failed_today``,
          ``high_priority_waiting`` (priority 80 or more).
    """
    jobs = ContainerJob.objects.all()
    if queue is not None:
        jobs = jobs.filter(queue=queue)
    by_status: Counter[str] = Counter()
    by_queue: Counter[str] = Counter()
    by_error: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    timed, seconds = 0, 0.0
    for group in _history(jobs, queue):
        by_status[group.status] += group.jobs
        by_queue[group.queue] += group.jobs
        if group.error_code:
            by_error[group.error_code] += group.jobs
        counts["total_retries"] += group.retry_count * group.jobs
        if group.retry_count > 0:
            counts["tasks_with_retries"] += group.jobs
        if group.status == JobStatus.FAILED and group.retry_count >= attempts_allowed(
            group.max_retries, group.retry_strategy
        ):
            counts["max_retries_reached"] += group.jobs
        if group.status == JobStatus.COMPLETED:
            timed += group.timed
            seconds += group.seconds
    waiting, launching = set(READY_STATUSES), set(LAUNCHING_STATUSES)
    paused_queues = set(JobQueue.objects.filter(is_paused=True).values_list("name", flat=True))
    for row in _live(jobs):
        status, n = row["status"], row["n"]
        by_status[status] += n
        by_queue[row["queue"]] += n
        if row["error_code"]:
            by_error[row["error_code"]] += n
        counts["total_retries"] += row["retries"]
        counts["tasks_with_retries"] += row["with_retries"]
        if status in waiting:
            counts["queue_depth"] += n
            # A job of a paused queue is due but not ready: its queue is the reason.
            counts["ready_in_paused_queues" if row["queue"] in paused_queues else "ready"] += row[
                "due"
            ]
            counts["scheduled"] += n - row["due"]
            counts["high_priority_waiting"] += row["high"]
        elif status in launching:
            counts["launching"] += n
    counts.update(_windows(jobs))
    counts["waiting_for_jobs"] = _waiting_for_jobs(jobs, timezone.now())
    counts["ready"] = max(counts["ready"] - counts["waiting_for_jobs"], 0)
    counts["total"] = sum(by_status.values())
    counts["running"] = by_status[JobStatus.RUNNING]
    counts["paused"] = by_status[JobStatus.PAUSED]
    counts["completed"] = by_status[JobStatus.COMPLETED]
    counts["failed"] = by_status[JobStatus.FAILED] + by_status[JobStatus.TIMEOUT]
    capacity = ExecutorHost.objects.filter(is_active=True, is_paused=False).aggregate(
        total=Coalesce(Sum("max_concurrent_jobs"), 0)
    )["total"]
    finished = counts["completed"] + counts["failed"]
    by_queue = Counter({name: n for name, n in by_queue.items() if n})
    by_error = Counter({code: n for code, n in by_error.items() if n})
    return {
        "summary": {
            "total_tasks": counts["total"],
            "max_concurrent_tasks": capacity,
            "current_running": counts["running"],
            "queue_size": counts["queue_depth"],
        },
        "status_distribution": {status: by_status.get(status, 0) for status in JobStatus.values},
        "queue_distribution": dict(sorted(by_queue.items())),
        "task_type_distribution": _kinds(jobs, counts["total"]),
        "error_distribution": {
            code: {
                "count": n,
                "description": describe(code).description,
                "suggestion": describe(code).suggestion,
            }
            for code, n in sorted(by_error.items())
        },
        "performance": {
            "success_rate": round(100 * counts["completed"] / finished, 1) if finished else None,
            "average_duration_seconds": round(seconds / timed, 3) if timed else None,
            "completed_tasks": counts["completed"],
            "failed_tasks": counts["failed"],
        },
        "retries": {
            key: int(counts[key])
            for key in ("total_retries", "tasks_with_retries", "max_retries_reached")
        },
        "recent_activity": {"last_24h": counts["last_24h"], "last_hour": counts["last_hour"]},
        "admin": {
            key: counts[key]
            for key in (
                "queue_depth",
                "ready",
                "ready_in_paused_queues",
                "waiting_for_jobs",
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
