"""The statistics against a count made in Python over every job row, after generated writes.

Each example writes jobs in every state through the paths a project uses
(``bulk_create``, ``QuerySet.update`` of any counted column, ``delete``, raw
SQL, a savepoint rolled back, a compaction of the tally in between), then
compares ``get_statistics()`` (and one queue's) and ``get_queue_stats()``
with the same figures counted here, row by row, from the jobs themselves.
On PostgreSQL this checks the tally its triggers keep (``models.tally``)
against the jobs; on SQLite the direct counts.

Each example runs in a savepoint that is rolled back. ``CM_PROPERTY_EXAMPLES``
sets the examples (12 by default).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from container_manager.models import ContainerJob, ExecutorHost
from container_manager.models.tally import compact_tallies
from container_manager.queue import queue_manager
from container_manager.retry import RETRY_STRATEGIES
from container_manager.states import (
    LAUNCHING_STATUSES,
    READY_STATUSES,
    JobStatus,
)
from container_manager.stats import attempts_allowed, get_statistics
from tests.property.tally import record
from tests.property.test_admin_input import PROPERTY, rolled_back

pytestmark = pytest.mark.django_db

STATUSES = [member.value for member in JobStatus]
QUEUES = ["default", "reports", "mail"]
CODES = ["", "DOCKER_PULL_FAILED", "SYSTEM_TIMEOUT"]

offsets = st.one_of(st.none(), st.integers(-40 * 86_400, 3_600))
job_values = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "queue": st.sampled_from(QUEUES),
        "error_code": st.sampled_from(CODES),
        "retry_count": st.integers(0, 4),
        "max_retries": st.one_of(st.none(), st.integers(1, 4)),
        "retry_strategy": st.sampled_from(sorted(RETRY_STRATEGIES)),
        "priority": st.sampled_from([0, 50, 80, 100]),
        "created": st.integers(0, 40 * 86_400),
        "started": offsets,
        "duration": st.integers(0, 5_000),
        "queued": st.booleans(),
        "launched": st.booleans(),
        "scheduled": offsets,
    }
)
changes = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(STATUSES)),
    st.tuples(st.just("queue"), st.sampled_from(QUEUES)),
    st.tuples(st.just("error_code"), st.sampled_from(CODES)),
    st.tuples(st.just("retry_count"), st.integers(0, 4)),
    st.tuples(st.just("max_retries"), st.one_of(st.none(), st.integers(1, 4))),
    st.tuples(st.just("completed_at"), offsets),
    st.tuples(st.just("started_at"), offsets),
    st.tuples(st.just("launched_at"), offsets),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.lists(job_values, min_size=1, max_size=12)),
        st.tuples(st.just("update"), st.integers(0, 2**16), changes),
        st.tuples(st.just("sql"), st.integers(0, 2**16), st.sampled_from(STATUSES)),
        st.tuples(st.just("delete"), st.integers(0, 2**16)),
        st.tuples(st.just("undone"), st.integers(0, 2**16), changes),
        st.tuples(st.just("compact")),
    ),
    min_size=1,
    max_size=10,
)


def build(values: dict[str, Any], now: Any) -> ContainerJob:
    created = now - timedelta(seconds=values["created"])
    started = None if values["started"] is None else now + timedelta(seconds=values["started"])
    return ContainerJob(
        command="true",
        status=values["status"],
        queue=values["queue"],
        error_code=values["error_code"],
        retry_count=values["retry_count"],
        max_retries=values["max_retries"],
        retry_strategy=values["retry_strategy"],
        priority=values["priority"],
        queued_at=created if values["queued"] else None,
        launched_at=started if values["launched"] else None,
        started_at=started,
        completed_at=None if started is None else started + timedelta(seconds=values["duration"]),
        scheduled_for=(
            None if values["scheduled"] is None else now + timedelta(seconds=values["scheduled"])
        ),
    )


def some(seed: int) -> list[int]:
    """A subset of the job ids, chosen by ``seed``."""
    ids = list(ContainerJob.objects.order_by("pk").values_list("pk", flat=True))
    return [pk for n, pk in enumerate(ids) if (seed >> (n % 16)) & 1]


def apply(operation: tuple[Any, ...], now: Any) -> None:
    kind = operation[0]
    if kind == "insert":
        jobs = ContainerJob.objects.bulk_create([build(v, now) for v in operation[1]])
        # created_at is set on insert: put it back where the example wants it.
        for job, values in zip(jobs, operation[1], strict=True):
            created = now - timedelta(seconds=values["created"])
            ContainerJob.objects.filter(pk=job.pk).update(created_at=created)
    elif kind in ("update", "undone"):
        field, value = operation[2]
        if field.endswith("_at") and value is not None:
            value = now + timedelta(seconds=value)
        rows = ContainerJob.objects.filter(pk__in=some(operation[1]))
        if kind == "update":
            rows.update(**{field: value})
        else:
            with rolled_back():
                rows.update(**{field: value})
    elif kind == "sql":
        ids = some(operation[1])
        if ids:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {ContainerJob._meta.db_table} SET status = %s WHERE id = ANY(%s)"
                    if connection.vendor == "postgresql"
                    else f"UPDATE {ContainerJob._meta.db_table} SET status = %s "
                    f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
                    [operation[2], ids]
                    if connection.vendor == "postgresql"
                    else [operation[2], *ids],
                )
    elif kind == "delete":
        ContainerJob.objects.filter(pk__in=some(operation[1])).delete()
    else:
        compact_tallies()


def counted(
    jobs: list[ContainerJob], now: Any, paused: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The figures of ``get_statistics`` counted in Python, one job at a time.

    ``paused``: the named queues that are paused (their due jobs are not ready).
    """
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    c: Counter[str] = Counter()
    status: Counter[str] = Counter()
    queues: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    seconds = 0.0
    for job in jobs:
        status[job.status] += 1
        queues[job.queue] += 1
        if job.error_code:
            errors[job.error_code] += 1
        c["total_retries"] += job.retry_count
        c["tasks_with_retries"] += job.retry_count > 0
        failed = job.status in (JobStatus.FAILED, JobStatus.TIMEOUT)
        if job.status == JobStatus.FAILED and job.retry_count >= attempts_allowed(
            job.max_retries, job.retry_strategy
        ):
            c["max_retries_reached"] += 1
        if job.status == JobStatus.COMPLETED and job.started_at and job.completed_at:
            c["timed"] += 1
            seconds += (job.completed_at - job.started_at).total_seconds()
        if job.status in READY_STATUSES:
            c["queue_depth"] += 1
            due = job.scheduled_for is None or job.scheduled_for <= now
            if not due:
                c["scheduled"] += 1
            else:
                c["ready_in_paused_queues" if job.queue in paused else "ready"] += 1
            c["high_priority_waiting"] += job.priority >= 80
        c["launching"] += job.status in LAUNCHING_STATUSES
        if job.completed_at and job.completed_at >= today:
            c["completed_today"] += job.status == JobStatus.COMPLETED
            c["failed_today"] += failed
        c["last_24h"] += job.created_at >= now - timedelta(hours=24)
        c["last_hour"] += job.created_at >= now - timedelta(hours=1)
        c["launch_failed"] += (
            job.status == JobStatus.FAILED and job.launched_at is None and job.queued_at is not None
        )
    completed = status[JobStatus.COMPLETED]
    failed = status[JobStatus.FAILED] + status[JobStatus.TIMEOUT]
    return {
        "total": len(jobs),
        "status": {s: status[s] for s in STATUSES},
        "queues": {q: n for q, n in sorted(queues.items())},
        "errors": {e: n for e, n in sorted(errors.items())},
        "completed": completed,
        "failed": failed,
        "success_rate": round(100 * completed / (completed + failed), 1)
        if completed + failed
        else None,
        "average": round(seconds / c["timed"], 3) if c["timed"] else None,
        "counts": c,
    }


def check(stats: dict[str, Any], want: dict[str, Any]) -> None:
    c = want["counts"]
    assert stats["summary"]["total_tasks"] == want["total"]
    assert stats["summary"]["current_running"] == want["status"][JobStatus.RUNNING]
    assert stats["summary"]["queue_size"] == c["queue_depth"]
    assert stats["status_distribution"] == want["status"]
    assert stats["queue_distribution"] == want["queues"]
    assert {k: v["count"] for k, v in stats["error_distribution"].items()} == want["errors"]
    performance = stats["performance"]
    assert performance["completed_tasks"] == want["completed"]
    assert performance["failed_tasks"] == want["failed"]
    assert performance["success_rate"] == want["success_rate"]
    if want["average"] is None:
        assert performance["average_duration_seconds"] is None
    else:
        assert performance["average_duration_seconds"] == pytest.approx(want["average"], abs=0.002)
    for key in ("total_retries", "tasks_with_retries", "max_retries_reached"):
        assert stats["retries"][key] == c[key], key
    assert stats["recent_activity"] == {"last_24h": c["last_24h"], "last_hour": c["last_hour"]}
    admin = stats["admin"]
    for key in (
        "queue_depth",
        "ready",
        "ready_in_paused_queues",
        "scheduled",
        "launching",
        "high_priority_waiting",
    ):
        assert admin[key] == c[key], key
    for key in ("completed_today", "failed_today"):
        assert admin[key] == c[key], key
    assert admin["running"] == want["status"][JobStatus.RUNNING]
    assert admin["paused"] == want["status"][JobStatus.PAUSED]


@PROPERTY
@given(operations=operations, paused=st.frozensets(st.sampled_from(QUEUES), max_size=2))
def test_statistics_count_every_job_whatever_wrote_it(operations, paused):
    record("statistics after generated writes", 200)
    ExecutorHost.objects.get_or_create(name="stats-host", defaults={"executor_type": "process"})
    with rolled_back():
        # The figures are "now": keep the examples' times clear of midnight.
        now = timezone.now()
        for operation in operations:
            apply(operation, now)
        for name in paused:
            queue_manager.pause_queue(name)
        jobs = list(ContainerJob.objects.all())
        now = timezone.now()
        check(get_statistics(), counted(jobs, now, paused))
        reports = [j for j in jobs if j.queue == "reports"]
        check(get_statistics(queue="reports"), counted(reports, now, paused))
        stats = queue_manager.get_queue_stats()
        assert stats["launch_failed"] == counted(jobs, now)["counts"]["launch_failed"]
        assert stats["running"] == sum(j.status == JobStatus.RUNNING for j in jobs)


def test_an_example_with_every_kind_of_write_is_counted():
    """The operations above, once each, fixed: what the generated ones build on."""
    ExecutorHost.objects.create(name="stats-host", executor_type="process")
    now = timezone.now()
    values = {
        "status": JobStatus.COMPLETED,
        "queue": "reports",
        "error_code": "",
        "retry_count": 1,
        "max_retries": None,
        "retry_strategy": sorted(RETRY_STRATEGIES)[0],
        "priority": 80,
        "created": 60,
        "started": -120,
        "duration": 30,
        "queued": True,
        "launched": False,
        "scheduled": None,
    }
    with transaction.atomic():
        for operation in [
            (
                "insert",
                [values, {**values, "status": JobStatus.FAILED}, {**values, "status": "queued"}],
            ),
            ("update", 0b010, ("status", JobStatus.COMPLETED)),
            ("update", 0b001, ("completed_at", 500)),
            ("compact",),
            ("update", 0b001, ("started_at", 100)),
            ("sql", 0b100, JobStatus.TIMEOUT),
            ("undone", 0b111, ("queue", "mail")),
            ("delete", 0b010),
        ]:
            apply(operation, now)
    jobs = list(ContainerJob.objects.all())
    assert sorted(j.status for j in jobs) == [JobStatus.COMPLETED, JobStatus.TIMEOUT]
    check(get_statistics(), counted(jobs, timezone.now()))
