"""Time the admin's job list and statistics pages on a large jobs table in PostgreSQL.

Fills a database of its own (``container_manager_bench`` by default, created
if missing, kept between runs) with ``--jobs`` jobs spread like a real
queue's history, then requests each page through Django's test client
several times and prints the median and slowest time of each, with the
number of SQL queries. Not part of the test suite::

    .venv/bin/python bench/bench_admin.py              # 100,000 jobs
    .venv/bin/python bench/bench_admin.py --jobs 1000000 --runs 5

Set ``BENCH_DATABASE_URL`` to use another PostgreSQL database.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/container_manager_bench"
BATCH = 5_000
#: Share of each final status in the generated history (the rest wait or run).
STATUS_WEIGHTS = {
    "completed": 80,
    "failed": 7,
    "timeout": 2,
    "cancelled": 2,
    "queued": 4,
    "retrying": 1,
    "running": 1,
    "pending": 3,
}
ERROR_CODES = ["DOCKER_PULL_FAILED", "DOCKER_IMAGE_NOT_FOUND", "SYSTEM_TIMEOUT", "UNKNOWN_ERROR"]
QUEUES = ["default", "default", "default", "reports", "images"]


def setup_django(url: str) -> None:
    """Point Django at the bench database, creating it if needed, and migrate it."""
    import psycopg

    os.environ["DATABASE_URL"] = url
    # DEBUG logs every query and slows every request: time as in production.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    sys.path.insert(0, str(ROOT))
    name = url.rsplit("/", 1)[1]
    server = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def analyze() -> None:
    """Refresh the planner's statistics and the visibility map, as autovacuum does after a load.

    Without the visibility map, index-only scans read the table too: right
    after loading 1,000,000 jobs and before autovacuum, the statistics page
    takes about 0.7 s instead of 0.1 s (docs/performance.md).
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def fill(count: int) -> None:
    """Add jobs until the table holds ``count`` of them, then ANALYZE it."""
    from django.db import connection
    from django.utils import timezone

    from container_manager.models import ContainerJob, ExecutorHost

    have = ContainerJob.objects.count()
    if have >= count:
        print(f"{have:,} jobs already there")
        analyze()
        return
    hosts = [
        ExecutorHost.objects.get_or_create(
            name=f"docker-{i}", defaults={"connection_string": "unix:///var/run/docker.sock"}
        )[0]
        for i in range(3)
    ]
    rng = random.Random(42)
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    now = timezone.now()
    started = time.monotonic()
    for start in range(have, count, BATCH):
        batch = []
        for i in range(start, min(start + BATCH, count)):
            status = rng.choices(statuses, weights)[0]
            created = now - timedelta(seconds=rng.randint(0, 30 * 86_400))
            job = ContainerJob(
                name=f"job {i}",
                command=f"python task.py --item {i}",
                image="busybox:latest",
                queue=rng.choice(QUEUES),
                priority=rng.choice([20, 50, 50, 50, 80]),
                status=status,
                queued_at=None if status == "pending" else created,
            )
            if status not in ("pending", "queued", "retrying", "cancelled"):
                job.host = rng.choice(hosts)
                job.launched_at = job.started_at = created + timedelta(seconds=rng.randint(1, 30))
            if status in ("completed", "failed", "timeout"):
                assert job.started_at is not None
                job.completed_at = job.started_at + timedelta(seconds=rng.randint(1, 600))
                job.exit_code = 0 if status == "completed" else 1
                job.stdout = "processed\n" * rng.randint(0, 50)
            if status in ("failed", "timeout", "retrying"):
                job.retry_count = rng.randint(1, 3)
                job.error_code = rng.choice(ERROR_CODES)
                job.last_error = "something went wrong"
            if status == "retrying":
                job.scheduled_for = now + timedelta(seconds=rng.randint(-60, 600))
            batch.append(job)
        ContainerJob.objects.bulk_create(batch)
        # created_at is auto_now_add: spread it over the month afterwards.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE container_manager_containerjob SET created_at = "
            "COALESCE(queued_at, now() - (id % 2592000) * interval '1 second')"
        )
    print(f"Added {count - have:,} jobs in {time.monotonic() - started:.1f} s")
    analyze()


PAGES = [
    ("job list", "/admin/container_manager/containerjob/", {}),
    ("job list, page 50", "/admin/container_manager/containerjob/", {"p": "50"}),
    ("job list, queued", "/admin/container_manager/containerjob/", {"queue_status": "queued"}),
    ("job list, failed", "/admin/container_manager/containerjob/", {"status__exact": "failed"}),
    (
        "job list, high priority",
        "/admin/container_manager/containerjob/",
        {"priority_band": "high"},
    ),
    ("job list, search id", "/admin/container_manager/containerjob/", {"q": "4242"}),
    ("job list, search text", "/admin/container_manager/containerjob/", {"q": "item 4242"}),
    ("statistics", "/admin/container_manager/containerjob/queue-stats/", {}),
    (
        "statistics, one queue",
        "/admin/container_manager/containerjob/queue-stats/",
        {"queue": "reports"},
    ),
    ("hosts", "/admin/container_manager/executorhost/", {}),
    ("workers", "/admin/container_manager/worker/", {}),
]


def measure(runs: int) -> None:
    """Request every page ``runs`` times and print the timings."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from container_manager.models import ContainerJob

    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", password=None
    )
    client = Client()
    client.force_login(user)
    total = ContainerJob.objects.count()
    print(f"\n{total:,} jobs, median and slowest of {runs} runs\n")
    print(f"{'page':<26} {'median ms':>10} {'max ms':>8} {'queries':>8}")
    for label, url, params in PAGES:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, params)  # warm-up, and the query count
        # Read it now: the next request's request_started signal empties the log.
        query_count = len(queries)
        if response.status_code != 200:
            raise SystemExit(f"{label}: HTTP {response.status_code}")
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            client.get(url, params)
            timings.append((time.perf_counter() - started) * 1000)
        print(
            f"{label:<26} {statistics.median(timings):>10.1f} {max(timings):>8.1f} {query_count:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the table")
    parser.add_argument("--runs", type=int, default=7, help="timed requests per page")
    args = parser.parse_args()
    setup_django(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    fill(args.jobs)
    measure(args.runs)


if __name__ == "__main__":
    main()
