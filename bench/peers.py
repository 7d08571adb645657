"""The floor and the peers, each draining no-op jobs on the bench database.

Run by the runner, one measurement per process::

    python -m bench.peers floor --dsn DSN [--go]        # plain psycopg loop
    python -m bench.peers pgqueuer --dsn DSN --jobs N --batch 10
    python -m bench.peers procrastinate --dsn DSN --jobs N --concurrency 10
    python -m bench.peers django-tasks-db --dsn DSN --jobs N

Each prints one JSON line: ``{"start": t0, "end": t1, "jobs": n, "peak_rss_kb": k}``
with wall-clock times (``time.time()``), so the runner can join several
processes. Peers enqueue their own jobs first; only the drain is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import timedelta

JOB_TABLE = "container_manager_containerjob"
#: The floor: one job claimed and finished per transaction, nothing else.
FLOOR_CLAIM = f"""
SELECT id FROM {JOB_TABLE}
WHERE status IN ('queued', 'retrying') AND (scheduled_for IS NULL OR scheduled_for <= now())
ORDER BY priority DESC, queued_at, id
LIMIT 1 FOR UPDATE SKIP LOCKED
"""
FLOOR_FINISH = f"""
UPDATE {JOB_TABLE} SET status = 'completed', completed_at = now(), exit_code = 0,
    progress = 100, worker_id = '', lease_expires_at = NULL
WHERE id = %s
"""


def peak_rss_kb() -> int:
    """This process's peak resident set size (VmHWM), in KiB."""
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def emit(start: float, end: float, jobs: int, **extra: object) -> None:
    print(
        json.dumps(
            {"start": start, "end": end, "jobs": jobs, "peak_rss_kb": peak_rss_kb(), **extra}
        ),
        flush=True,
    )


def floor(dsn: str, wait_go: bool) -> None:
    """Claim one job per transaction (FOR UPDATE SKIP LOCKED) and finish it, until none is left."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1").fetchone()
        conn.commit()
        if wait_go:
            print("ready", flush=True)
            sys.stdin.readline()
        start = time.time()
        done = 0
        while True:
            with conn.transaction():
                row = conn.execute(FLOOR_CLAIM, prepare=True).fetchone()
                if row is None:
                    break
                conn.execute(FLOOR_FINISH, row, prepare=True)
            done += 1
        emit(start, time.time(), done)


async def pgqueuer(dsn: str, jobs: int, batch: int) -> None:
    """PgQueuer with batch dequeue, draining ``jobs`` no-op jobs."""
    import psycopg
    from pgqueuer import PsycopgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    setup = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    queries = Queries(PsycopgDriver(setup))
    if not await queries.has_table("pgqueuer"):
        await queries.install()
    chunk = 1000
    for first in range(0, jobs, chunk):
        n = min(chunk, jobs - first)
        await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
    # Fresh statistics, as autovacuum would have after a bulk load.
    await setup.execute("ANALYZE pgqueuer")
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    manager = QueueManager(Queries(PsycopgDriver(conn)))

    @manager.entrypoint("noop")
    async def noop(job: object) -> None:
        return None

    start = time.time()
    await manager.run(
        batch_size=batch,
        mode=QueueExecutionMode.drain,
        dequeue_timeout=timedelta(seconds=1),
        log_aggregation_interval=timedelta(0),
    )
    end = time.time()
    left = await (await setup.execute("SELECT count(*) FROM pgqueuer")).fetchone()
    emit(start, end, jobs, left=left[0] if left else None)
    await conn.close()
    await setup.close()


async def procrastinate_drain(dsn: str, jobs: int, concurrency: int) -> None:
    """Procrastinate's worker (psycopg connector), draining ``jobs`` no-op jobs."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", queue="bench")
    async def noop() -> None:
        return None

    async with app.open_async():
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            row = await cur.fetchone()
        if not row[0]:
            await app.schema_manager.apply_schema_async()
        chunk = 1000
        for first in range(0, jobs, chunk):
            n = min(chunk, jobs - first)
            await noop.batch_defer_async(*([{}] * n))
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            await conn.execute("ANALYZE procrastinate_jobs")
        start = time.time()
        await app.run_worker_async(
            queues=["bench"],
            concurrency=concurrency,
            wait=False,
            install_signal_handlers=False,
            delete_jobs="always",
        )
        end = time.time()
    emit(start, end, jobs)


def django_tasks_db(dsn: str, jobs: int) -> None:
    """django-tasks-db's ``db_worker --batch``, draining ``jobs`` no-op tasks."""
    os.environ["DATABASE_URL"] = dsn
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django_tasks_db.models import DBTaskResult

    from bench.peer_tasks import noop

    with transaction.atomic():
        for _ in range(jobs):
            noop.enqueue()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {DBTaskResult._meta.db_table}")
    start = time.time()
    call_command(
        "db_worker", batch=True, interval=0.0, no_startup_delay=True, reload=False, verbosity=0
    )
    end = time.time()
    left = DBTaskResult.objects.ready().count()
    DBTaskResult.objects.all().delete()
    emit(start, end, jobs, left=left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["floor", "pgqueuer", "procrastinate", "django-tasks-db"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--go", action="store_true", help="print 'ready', start on a stdin line")
    args = parser.parse_args()
    if args.name == "floor":
        floor(args.dsn, args.go)
    elif args.name == "pgqueuer":
        asyncio.run(pgqueuer(args.dsn, args.jobs, args.batch))
    elif args.name == "procrastinate":
        asyncio.run(procrastinate_drain(args.dsn, args.jobs, args.concurrency))
    else:
        django_tasks_db(args.dsn, args.jobs)


if __name__ == "__main__":
    main()
