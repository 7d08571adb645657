"""Counts of finished jobs, kept by PostgreSQL itself, so that statistics never scan history.

On PostgreSQL, triggers on the job table (installed by migration
``0004_job_tally``; :func:`install_sql` is that migration's SQL: change it
only with a new migration) add one to a row of ``JobTally`` when a job
enters a finished status (completed, failed, cancelled, timeout) and take
one away when a finished job changes or is deleted, in the same transaction
as the change: the counts are exact whoever writes (the queue, the admin, a
``QuerySet.update``, raw SQL, a retention ``DELETE``), and a rolled-back
change leaves them as they were. Each database connection writes rows of
its own (``backend`` is its ``pg_backend_pid()``), so that workers ending
jobs at the same moment never wait for each other on a counter, and no two
transactions can lock counters in opposite orders; :func:`compact_tallies`
folds those rows into ``backend = 0`` from time to time (the worker's
sweeper does it at each pass). The statistics add the rows up: a few
hundred rows, whatever the number of jobs.

Jobs not finished (waiting, launching, running) are few and change all the
time: the statistics count them directly, over the indexes on ``status``.

On SQLite no trigger is installed and the table stays empty: the statistics
count the finished jobs directly there (:func:`history_from_jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connections, models, transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum

from container_manager.states import TERMINAL_STATUSES, JobStatus

JOB_TABLE = "container_manager_containerjob"
TALLY_TABLE = "container_manager_jobtally"
#: Advisory lock key of :func:`compact_tallies` ("cm" + "tally"): one compaction at a time.
COMPACT_LOCK_KEY = 0x636D_7461_6C6C_79

#: The columns a tally row is keyed by, besides ``backend``.
KEY_COLUMNS = (
    "queue",
    "status",
    "error_code",
    "retry_strategy",
    "max_retries",
    "retry_count",
    "launch_failed",
)


class JobTally(models.Model):
    """How many finished jobs share one set of the values the statistics group by.

    ``max_retries`` is -1 for a job without its own. ``timed`` counts those
    with both ``started_at`` and ``completed_at``, and ``seconds`` sums their
    ``completed_at - started_at``. Rows are written by the database only.
    """

    backend = models.IntegerField()
    queue = models.CharField(max_length=100)
    status = models.CharField(max_length=20)
    error_code = models.CharField(max_length=64)
    retry_strategy = models.CharField(max_length=50)
    max_retries = models.BigIntegerField()
    retry_count = models.BigIntegerField()
    launch_failed = models.BooleanField()
    jobs = models.BigIntegerField(default=0)
    timed = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0)

    class Meta:
        verbose_name = "job tally"
        constraints = [
            models.UniqueConstraint(fields=["backend", *KEY_COLUMNS], name="cm_tally_key"),
        ]

    def __str__(self) -> str:
        return f"{self.queue}/{self.status}/{self.error_code or '-'}: {self.jobs}"


@dataclass(frozen=True)
class HistoryGroup:
    """Finished jobs that share one key of the tally, with their count and timings."""

    queue: str
    status: str
    error_code: str
    retry_strategy: str
    max_retries: int | None
    retry_count: int
    launch_failed: bool
    jobs: int
    timed: int
    seconds: float


def _terminal_sql() -> str:
    return ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))


def _delta_sql(row: str, sign: str) -> str:
    """The upsert that adds ``sign``1 job ``row`` (OLD or NEW) to this connection's tally row."""
    return f"""
    INSERT INTO {TALLY_TABLE} AS t (backend, {", ".join(KEY_COLUMNS)}, jobs, timed, seconds)
    VALUES (
        pg_backend_pid(), {row}.queue, {row}.status, {row}.error_code, {row}.retry_strategy,
        COALESCE({row}.max_retries, -1), {row}.retry_count,
        {row}.status = '{JobStatus.FAILED}' AND {row}.launched_at IS NULL
            AND {row}.queued_at IS NOT NULL,
        {sign}1,
        CASE WHEN {row}.started_at IS NOT NULL AND {row}.completed_at IS NOT NULL
             THEN {sign}1 ELSE 0 END,
        {sign}COALESCE(EXTRACT(EPOCH FROM {row}.completed_at - {row}.started_at)::float8, 0)
    )
    ON CONFLICT (backend, {", ".join(KEY_COLUMNS)}) DO UPDATE SET
        jobs = t.jobs + EXCLUDED.jobs,
        timed = t.timed + EXCLUDED.timed,
        seconds = t.seconds + EXCLUDED.seconds;"""


def _grouped_sql(table: str, sign: str, backend: str = "pg_backend_pid()") -> str:
    """The upsert that adds (``sign``) the finished jobs of ``table``, grouped."""
    key = ", ".join(KEY_COLUMNS)
    return f"""
    INSERT INTO {TALLY_TABLE} AS t (backend, {key}, jobs, timed, seconds)
    SELECT {backend}, queue, status, error_code, retry_strategy,
           COALESCE(max_retries, -1), retry_count,
           status = '{JobStatus.FAILED}' AND launched_at IS NULL AND queued_at IS NOT NULL,
           {sign}COUNT(*),
           {sign}COUNT(*) FILTER (WHERE started_at IS NOT NULL AND completed_at IS NOT NULL),
           {sign}COALESCE(SUM(EXTRACT(EPOCH FROM completed_at - started_at)::float8), 0)
    FROM {table}
    WHERE status IN ({_terminal_sql()})
    GROUP BY 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT (backend, {key}) DO UPDATE SET
        jobs = t.jobs + EXCLUDED.jobs,
        timed = t.timed + EXCLUDED.timed,
        seconds = t.seconds + EXCLUDED.seconds;"""


def _function(name: str, body: str) -> str:
    """A trigger function ``container_manager_tally_<name>`` that runs ``body``."""
    return f"""
        CREATE OR REPLACE FUNCTION container_manager_tally_{name}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN {body}
            RETURN NULL;
        END $$"""


def install_sql() -> list[str]:
    """The statements that create the tally's functions and triggers (PostgreSQL).

    Updates are counted row by row, and only those that move a job into,
    out of or within the finished statuses (the ``WHEN`` of the trigger),
    so that the many updates of jobs at work cost nothing. Inserts and
    deletes are counted once per statement, grouped: a ``bulk_create`` of
    finished jobs or a retention ``DELETE`` of thousands writes each tally
    row once.
    """
    terminal = _terminal_sql()
    compared = (
        "status, queue, error_code, retry_strategy, max_retries, retry_count, "
        "launched_at IS NULL, queued_at IS NULL, started_at, completed_at"
    )
    old = ", ".join(f"OLD.{c}" for c in compared.split(", "))
    new = ", ".join(f"NEW.{c}" for c in compared.split(", "))
    return [
        _function(
            "job",
            f"""
            IF OLD.status IN ({terminal}) THEN {_delta_sql("OLD", "-")}
            END IF;
            IF NEW.status IN ({terminal}) THEN {_delta_sql("NEW", "")}
            END IF;""",
        ),
        _function("inserted", _grouped_sql("inserted", "")),
        _function("deleted", _grouped_sql("deleted", "-")),
        _function("truncate", f"DELETE FROM {TALLY_TABLE};"),
        f"""
        CREATE TRIGGER container_manager_tally_insert AFTER INSERT ON {JOB_TABLE}
        REFERENCING NEW TABLE AS inserted
        FOR EACH STATEMENT EXECUTE FUNCTION container_manager_tally_inserted()""",
        f"""
        CREATE TRIGGER container_manager_tally_update AFTER UPDATE ON {JOB_TABLE}
        FOR EACH ROW WHEN (
            (OLD.status IN ({terminal}) OR NEW.status IN ({terminal}))
            AND ROW({old}) IS DISTINCT FROM ROW({new})
        )
        EXECUTE FUNCTION container_manager_tally_job()""",
        f"""
        CREATE TRIGGER container_manager_tally_delete AFTER DELETE ON {JOB_TABLE}
        REFERENCING OLD TABLE AS deleted
        FOR EACH STATEMENT EXECUTE FUNCTION container_manager_tally_deleted()""",
        f"""
        CREATE TRIGGER container_manager_tally_truncate AFTER TRUNCATE ON {JOB_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION container_manager_tally_truncate()""",
    ]


def uninstall_sql() -> list[str]:
    """The statements that drop what :func:`install_sql` creates."""
    return [
        *(
            f"DROP TRIGGER IF EXISTS container_manager_tally_{event} ON {JOB_TABLE}"
            for event in ("insert", "update", "delete", "truncate")
        ),
        *(
            f"DROP FUNCTION IF EXISTS container_manager_tally_{name}()"
            for name in ("job", "inserted", "deleted", "truncate")
        ),
    ]


def backfill_sql() -> str:
    """Count the finished jobs already stored into ``backend = 0`` rows."""
    return _grouped_sql(JOB_TABLE, "", backend="0")


def is_kept(using: str = "default") -> bool:
    """Tell whether the database keeps the tally (PostgreSQL does; SQLite does not)."""
    return connections[using].vendor == "postgresql"


def compact_tallies(using: str = "default") -> int:
    """Fold every connection's tally rows into the ``backend = 0`` rows; drop empty ones.

    Rows a transaction is writing at that moment are left for the next time.
    One compaction runs at a time (the others return at once).

    Returns:
        How many rows were folded (0 on SQLite, or when another compaction ran).
    """
    if not is_kept(using):
        return 0
    key = ", ".join(KEY_COLUMNS)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [COMPACT_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute(
            f"""
            WITH moved AS (
                DELETE FROM {TALLY_TABLE} WHERE id IN (
                    SELECT id FROM {TALLY_TABLE} WHERE backend <> 0
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING {key}, jobs, timed, seconds
            )
            INSERT INTO {TALLY_TABLE} AS t (backend, {key}, jobs, timed, seconds)
            SELECT 0, {key}, SUM(jobs), SUM(timed), SUM(seconds) FROM moved
            GROUP BY {key} ORDER BY {key}
            ON CONFLICT (backend, {key}) DO UPDATE SET
                jobs = t.jobs + EXCLUDED.jobs,
                timed = t.timed + EXCLUDED.timed,
                seconds = t.seconds + EXCLUDED.seconds"""
        )
        folded = cursor.rowcount
        cursor.execute(f"DELETE FROM {TALLY_TABLE} WHERE backend = 0 AND jobs = 0 AND timed = 0")
        return folded


def _group(
    row: dict[str, Any], *, max_retries: int | None, launch_failed: bool, seconds: float
) -> HistoryGroup:
    return HistoryGroup(
        queue=row["queue"],
        status=row["status"],
        error_code=row["error_code"],
        retry_strategy=row["retry_strategy"],
        max_retries=max_retries,
        retry_count=row["retry_count"],
        launch_failed=launch_failed,
        jobs=row["n"],
        timed=row["t"],
        seconds=seconds,
    )


def history_from_tally(using: str = "default", queue: str | None = None) -> list[HistoryGroup]:
    """The finished jobs' groups, added up from the tally (PostgreSQL)."""
    rows = JobTally.objects.using(using).all()
    if queue is not None:
        rows = rows.filter(queue=queue)
    summed = (
        rows.values(*KEY_COLUMNS)
        .annotate(n=Sum("jobs"), t=Sum("timed"), s=Sum("seconds"))
        .order_by()
        .filter(~Q(n=0))
    )
    return [
        _group(
            row,
            max_retries=None if row["max_retries"] < 0 else row["max_retries"],
            launch_failed=row["launch_failed"],
            seconds=float(row["s"] or 0.0),
        )
        for row in summed
    ]


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        return value.total_seconds()
    # Some backends answer a sum of durations in microseconds.
    return float(value) / 1_000_000


def history_from_jobs(jobs: models.QuerySet[Any]) -> list[HistoryGroup]:
    """The finished jobs' groups, counted from the job rows themselves (any database)."""
    timed_q = Q(started_at__isnull=False, completed_at__isnull=False)
    duration = ExpressionWrapper(F("completed_at") - F("started_at"), output_field=DurationField())
    launch_failed_q = Q(status=JobStatus.FAILED, launched_at__isnull=True, queued_at__isnull=False)
    rows = (
        jobs.filter(status__in=sorted(TERMINAL_STATUSES))
        .annotate(
            lf=models.Case(
                models.When(launch_failed_q, then=models.Value(True)),
                default=models.Value(False),
                output_field=models.BooleanField(),
            )
        )
        .values(
            "queue", "status", "error_code", "retry_strategy", "max_retries", "retry_count", "lf"
        )
        .annotate(n=Count("id"), t=Count("id", filter=timed_q), s=Sum(duration, filter=timed_q))
        .order_by()
    )
    return [
        _group(
            row,
            max_retries=row["max_retries"],
            launch_failed=bool(row["lf"]),
            seconds=_seconds(row["s"]),
        )
        for row in rows
    ]
