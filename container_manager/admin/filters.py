"""List filters of the job admin: queue status, priority band and queue name."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from container_manager import states
from container_manager.conf import settings
from container_manager.models import ContainerJob, JobQueue
from container_manager.models.job import PRIORITY_HIGH, PRIORITY_LOW
from container_manager.models.queries import queue_status_q

#: The queue-status filter (docs/api-reference.md, Admin): value and label.
QUEUE_STATUS_CHOICES: tuple[tuple[str, str], ...] = (
    ("not_queued", "Not Queued"),
    ("queued", "Queued (Ready)"),
    ("scheduled", "Scheduled (Future)"),
    ("launched", "Launched"),
    ("launch_failed", "Launch Failed"),
)

#: Priority bands: "high" from ``PRIORITY_HIGH`` (80, where the statistics'
#: "high priority waiting" starts too), "low" up to ``PRIORITY_LOW`` (20),
#: "normal" in between; "Set priority" puts a job in the band of its name.
HIGH_BAND_MIN = PRIORITY_HIGH
LOW_BAND_MAX = PRIORITY_LOW
PRIORITY_BANDS: dict[str, Q] = {
    "high": Q(priority__gte=HIGH_BAND_MIN),
    "normal": Q(priority__gt=LOW_BAND_MAX, priority__lt=HIGH_BAND_MIN),
    "low": Q(priority__lte=LOW_BAND_MAX),
}


def priority_band(priority: int) -> str:
    """Return the band of a priority: ``'high'``, ``'normal'`` or ``'low'``.

    Args:
        priority: 0-100.

    Returns:
        The band's name.
    """
    if priority >= HIGH_BAND_MIN:
        return "high"
    if priority <= LOW_BAND_MAX:
        return "low"
    return "normal"


#: Distinct queues of jobs in one status, read as a skip scan of the
#: (status, queue) index: one index probe per queue instead of one row read
#: per job. Recursive CTEs work on PostgreSQL, SQLite and MySQL 8.
_QUEUES_OF_STATUS_SQL = """
WITH RECURSIVE names(queue) AS (
    SELECT (SELECT queue FROM {table} WHERE status = %s ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {table} WHERE status = %s AND queue > names.queue
            ORDER BY queue LIMIT 1)
    FROM names WHERE names.queue IS NOT NULL
)
SELECT queue FROM names WHERE queue IS NOT NULL
"""


def queues_in_use(statuses: list[str]) -> set[str]:
    """Return the distinct queue names of jobs in any of ``statuses``.

    Each status is one recursive query walking the ``(status, queue)`` index,
    so the cost grows with the number of queues, not of jobs.

    Args:
        statuses: Job statuses.

    Returns:
        The queue names.
    """
    table = connection.ops.quote_name(ContainerJob._meta.db_table)
    sql = _QUEUES_OF_STATUS_SQL.format(table=table)
    names: set[str] = set()
    with connection.cursor() as cursor:
        for status in statuses:
            cursor.execute(sql, [status, status])
            names.update(row[0] for row in cursor.fetchall())
    return names


def known_queue_names(extra: str | None = None) -> list[str]:
    """Return the queue names worth offering in a filter or selector.

    The default queue, the queues of the ``QUEUES`` setting, every ``JobQueue``
    row, and the queues of jobs that are not finished. Queues whose jobs all
    finished are left out on purpose: finding them means reading the whole
    table.

    Args:
        extra: A name to include anyway (the one currently selected).

    Returns:
        Sorted, distinct names.
    """
    names: set[str] = {str(settings.DEFAULT_QUEUE), *settings.QUEUES}
    names.update(JobQueue.objects.values_list("name", flat=True))
    names.update(queues_in_use(sorted(set(states.JobStatus.values) - states.TERMINAL_STATUSES)))
    if extra:
        names.add(extra)
    return sorted(names)


class QueueStatusFilter(admin.SimpleListFilter):
    """The queue status: not queued, queued, scheduled, launched, launch failed."""

    title = "queue status"
    parameter_name = "queue_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return QUEUE_STATUS_CHOICES

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ContainerJob]
    ) -> QuerySet[ContainerJob]:
        value = self.value()
        if value in dict(QUEUE_STATUS_CHOICES):
            return queryset.filter(queue_status_q(value))
        return queryset


class PriorityBandFilter(admin.SimpleListFilter):
    """High, normal or low priority (see ``HIGH_BAND_MIN`` and ``LOW_BAND_MAX``)."""

    title = "priority"
    parameter_name = "priority_band"

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return (
            ("high", f"High ({HIGH_BAND_MIN}-100)"),
            ("normal", f"Normal ({LOW_BAND_MAX + 1}-{HIGH_BAND_MIN - 1})"),
            ("low", f"Low (0-{LOW_BAND_MAX})"),
        )

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ContainerJob]
    ) -> QuerySet[ContainerJob]:
        value = self.value()
        if value in PRIORITY_BANDS:
            return queryset.filter(PRIORITY_BANDS[value])
        return queryset


class QueueNameFilter(admin.SimpleListFilter):
    """The named queue; offers the names of :func:`known_queue_names`."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in known_queue_names(extra=self.value())]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ContainerJob]
    ) -> QuerySet[ContainerJob]:
        value = self.value()
        return queryset.filter(queue=value) if value else queryset
