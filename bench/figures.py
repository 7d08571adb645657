"""The measurements: each function sets up, measures once, and cleans up after itself.

They run in the runner's process, with Django set up on the bench database;
workers, the floor and the peers run in processes of their own.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    DSN,
    IMAGE,
    JOB_TABLE,
    PYTHON,
    ROOT,
    child_env,
    clear_jobs,
    hosts,
    new_job,
    run_json,
    start_workers,
    stop_workers,
    wait_until,
)

TERMINAL = ("completed", "failed", "timeout", "cancelled")
#: Jobs a worker holds at once in the no-op drain (claims come in batches of its free slots).
DRAIN_CONCURRENCY = 20


def _not_terminal() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {JOB_TABLE} WHERE NOT (status = ANY(%s))", [list(TERMINAL)]
        )
        return int(cursor.fetchone()[0])


def _analyze() -> None:
    """Fresh planner statistics, as autovacuum would have after a bulk load."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {JOB_TABLE}")


def _count(status: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {JOB_TABLE} WHERE status = %s", [status])
        return int(cursor.fetchone()[0])


# Enqueue --------------------------------------------------------------------------


def _floor_row() -> tuple[list[str], tuple[Any, ...]]:
    """Column names and values of one queued no-op job, as the ORM would write them."""
    from django.db import connection

    from container_manager.models import ContainerJob

    noop, _ = hosts()
    job = new_job(noop)
    job.full_clean(exclude=["id"])
    fields = [f for f in ContainerJob._meta.concrete_fields if not f.primary_key]
    values = tuple(
        f.get_db_prep_save(f.pre_save(job, add=True), connection=connection) for f in fields
    )
    return [f'"{f.column}"' for f in fields], values


def enqueue_one_by_one(jobs: int) -> float:
    """Jobs/s: create each job, then ``queue_manager.queue_job`` it (its own transactions)."""
    from container_manager.models import ContainerJob
    from container_manager.queue import queue_manager

    clear_jobs()
    noop, _ = hosts()
    start = time.perf_counter()
    for _ in range(jobs):
        job = ContainerJob.objects.create(name="bench", host=noop, image=IMAGE, command="true")
        queue_manager.queue_job(job)
    return jobs / (time.perf_counter() - start)


def enqueue_bulk(jobs: int) -> float:
    """Jobs/s: ``queue_manager.queue_jobs`` (validated, one transaction, one NOTIFY)."""
    from container_manager.queue import queue_manager

    clear_jobs()
    noop, _ = hosts()
    start = time.perf_counter()
    queue_manager.queue_jobs([new_job(noop, queued=False) for _ in range(jobs)])
    return jobs / (time.perf_counter() - start)


def insert_floor(jobs: int, bulk: bool) -> float:
    """Jobs/s of plain psycopg INSERTs of the same rows: one per transaction, or all in one."""
    import psycopg

    clear_jobs()
    columns, values = _floor_row()
    sql = (
        f"INSERT INTO {JOB_TABLE} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    with psycopg.connect(DSN, autocommit=not bulk) as conn:
        start = time.perf_counter()
        if bulk:
            with conn.cursor() as cursor:
                cursor.executemany(sql, [values] * jobs)
            conn.commit()
        else:
            for _ in range(jobs):
                conn.execute(sql, values, prepare=True)
        elapsed = time.perf_counter() - start
    return jobs / elapsed


def fill_queued(jobs: int) -> None:
    """Put ``jobs`` queued no-op jobs in the table (one statement, no timing)."""
    from django.db import connection

    columns, values = _floor_row()
    placeholders = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {JOB_TABLE} ({', '.join(columns)}) "
            f"SELECT {placeholders} FROM generate_series(1, %s)",
            [*values, jobs],
        )


# Drain ----------------------------------------------------------------------------


def _xact_commits() -> int:
    """Committed transactions of this database so far, every backend's stats flushed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def _settled_xact_commits(timeout: float = 5.0) -> int:
    """:func:`_xact_commits` once it stops moving: ended workers' stats reach it at their exit."""
    last = _xact_commits()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.2)
        now = _xact_commits()
        # Each look is itself 2 transactions of this session.
        if now - last <= 2:
            return now
        last = now
    return last


def drain_worker(jobs: int, processes: int, own_hosts: bool = False) -> dict[str, float]:
    """Jobs/s of ``processes`` idle workers draining ``jobs`` jobs queued at once (no-op host).

    With ``own_hosts``, each worker serves a queue of its own (``q<i>``, its
    ``--queues``) whose jobs are pinned to a no-op host of their own: the
    deployment where claims need not wait for each other at all.

    The jobs are committed in one transaction with one NOTIFY; the clock runs
    from that commit until no job is left unfinished. Also counts the
    transactions the workers committed per job (``pg_stat_database``
    deltas, less this process's own looks at the table), from their start to
    their exit: the steady state plus a start-up and a stop of each worker.
    """
    from django.db import transaction

    from container_manager.models import ContainerJob, ExecutorHost
    from container_manager.notify import announce_work

    clear_jobs()
    noop, _ = hosts()
    rows = [new_job(noop) for _ in range(jobs)]
    if own_hosts:
        own = [
            ExecutorHost.objects.get_or_create(
                name=f"{noop.name}-{i}",
                defaults={"executor_type": "noop", "max_concurrent_jobs": 100_000},
            )[0]
            for i in range(processes)
        ]
        for n, job in enumerate(rows):
            job.host, job.queue = own[n % processes], f"q{n % processes}"
    looks = 0

    def drained() -> bool:
        nonlocal looks
        looks += 1
        return _not_terminal() == 0

    commits_before = _settled_xact_commits()
    workers = start_workers(processes, DRAIN_CONCURRENCY, own_queues=own_hosts)
    try:
        with transaction.atomic():
            ContainerJob.objects.bulk_create(rows, batch_size=1000)
            _analyze()
            announce_work("")
        start = time.perf_counter()
        if not wait_until(drained, 900, 0.05):
            raise RuntimeError(f"{_not_terminal()} jobs still unfinished after 900 s")
        elapsed = time.perf_counter() - start
        rss = max(w.peak_rss_kb() for w in workers)
    finally:
        stop_workers(workers)
    commits = _settled_xact_commits() - commits_before - looks - 1
    failed = jobs - _count("completed")
    if failed:
        raise RuntimeError(f"{failed} no-op jobs did not complete")
    return {"rate": jobs / elapsed, "rss_mb": rss / 1024, "xacts_per_job": commits / jobs}


def drain_floor(jobs: int, processes: int) -> float:
    """Jobs/s of plain psycopg loops (one job per transaction, SKIP LOCKED) in ``processes``."""
    clear_jobs()
    fill_queued(jobs)
    _analyze()
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "bench.peers", "floor", "--dsn", DSN, "--go"],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("floor process failed to start")
    start = time.time()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    done = sum(r["jobs"] for r in results)
    if done != jobs:
        raise RuntimeError(f"floor finished {done} of {jobs} jobs")
    return jobs / (max(r["end"] for r in results) - start)


def drain_peer(name: str, jobs: int) -> dict[str, float]:
    """Jobs/s of a peer draining ``jobs`` no-op tasks it enqueued itself (one process)."""
    extra = {"pgqueuer": ["--batch", "10"], "procrastinate": ["--concurrency", "10"]}
    result = run_json(
        ["-m", "bench.peers", name, "--dsn", DSN, "--jobs", str(jobs), *extra.get(name, [])],
        timeout=900,
    )
    if result.get("left"):
        raise RuntimeError(f"{result['left']} tasks left undone")
    return {
        "rate": result["jobs"] / (result["end"] - result["start"]),
        "rss_mb": result["peak_rss_kb"] / 1024,
    }


# Pickup latency ---------------------------------------------------------------------


def pickup_latency(samples: int, notify: bool, poll_interval: float) -> dict[str, float]:
    """p50/p95 ms from enqueue (``queued_at``) to launch (``launched_at``) for an idle worker.

    Without NOTIFY the worker listens on a channel nobody notifies, so it
    finds the job at its next poll; each job is then enqueued at a random
    point of the poll cycle.
    """
    from container_manager.models import ContainerJob
    from container_manager.queue import queue_manager

    clear_jobs()
    noop, _ = hosts()
    env = {} if notify else {"BENCH_NOTIFY_CHANNEL": "bench_nobody_notifies"}
    workers = start_workers(1, 4, poll=poll_interval, **env)
    latencies = []
    try:
        for _ in range(samples):
            time.sleep(random.uniform(0.05, 0.08) if notify else random.uniform(0, poll_interval))
            job = ContainerJob.objects.create(name="bench", host=noop, image=IMAGE, command="true")
            queue_manager.queue_job(job)
            qs = ContainerJob.objects.filter(pk=job.pk, status="completed")
            if not wait_until(qs.exists, poll_interval * 3 + 10, 0.002):
                raise RuntimeError(f"job {job.pk} not picked up")
            queued_at, launched_at = ContainerJob.objects.values_list(
                "queued_at", "launched_at"
            ).get(pk=job.pk)
            latencies.append((launched_at - queued_at).total_seconds() * 1000)
    finally:
        stop_workers(workers)
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
    }


# Ready query --------------------------------------------------------------------------


def _candidate_sql(limit: int) -> tuple[str, list[Any]]:
    """The SELECT of ``claim_jobs``: ready jobs, open hosts, priority then FIFO, SKIP LOCKED."""
    from django.db import transaction
    from django.db.models import Q
    from django.utils import timezone

    from container_manager.models import ContainerJob
    from container_manager.models.queries import READY_ORDER
    from container_manager.queue.claims import CANDIDATE_FACTOR, MAX_EXTRA_CANDIDATES

    noop, docker = hosts()
    extra = min(limit * (CANDIDATE_FACTOR - 1), MAX_EXTRA_CANDIDATES)
    qs = (
        ContainerJob.objects.ready(timezone.now())
        .filter(Q(host_id__in=sorted([noop.pk, docker.pk])) | Q(host__isnull=True))
        .order_by(*READY_ORDER)
        .select_for_update(skip_locked=True, of=("self",))[: limit + extra]
    )
    with transaction.atomic():
        sql, params = qs.query.sql_with_params()
    return sql, list(params)


def ready_query(size: int, repeats: int, limit: int = 10) -> dict[str, Any]:
    """Cost of acquisition with ``size`` queued jobs (the table is grown to that size first).

    Returns the median execution time of the candidate SELECT (EXPLAIN
    ANALYZE), the median time of a whole ``claim_jobs(limit)`` rolled back,
    and the plan.
    """
    from django.db import connection, transaction

    from container_manager.queue import queue_manager

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {JOB_TABLE}")
        have = int(cursor.fetchone()[0])
    if have < size:
        # Spread priorities and enqueue times like a real backlog.
        columns, values = _floor_row()
        sets = dict(zip(columns, values, strict=True))
        cols = [c for c in columns if c not in ('"priority"', '"queued_at"')]
        select = ", ".join(["%s"] * len(cols))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {JOB_TABLE} ({', '.join(cols)}, priority, queued_at) "
                f"SELECT {select}, (g %% 5) * 20, now() - (g || ' ms')::interval "
                f"FROM generate_series(%s, %s) AS g",
                [*(sets[c] for c in cols), have + 1, size],
            )
            cursor.execute(f"VACUUM ANALYZE {JOB_TABLE}")
    sql, params = _candidate_sql(limit)
    select_ms, claim_ms, plan = [], [], ""

    class Rollback(Exception):
        pass

    for _ in range(repeats):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            lines = [row[0] for row in cursor.fetchall()]
        plan = "\n".join(lines)
        select_ms.append(
            float(next(line for line in lines if line.startswith("Execution Time")).split()[2])
        )
        try:
            with transaction.atomic():
                start = time.perf_counter()
                claimed = queue_manager.claim_jobs("bench-ready-query", limit)
                claim_ms.append((time.perf_counter() - start) * 1000)
                if len(claimed) != limit:
                    raise RuntimeError(f"claimed {len(claimed)} of {limit}")
                raise Rollback
        except Rollback:
            pass
    return {
        "select_ms": statistics.median(select_ms),
        "claim_ms": statistics.median(claim_ms),
        "index_scan": "Index Scan using cm_job_ready_idx" in plan,
        "plan": plan,
    }


# Real containers ----------------------------------------------------------------------


def containers_worker(jobs: int, concurrency: int) -> float:
    """Jobs/s of one worker at ``max_concurrent`` running busybox ``true`` jobs on Docker."""
    from django.db import transaction

    from container_manager.models import ContainerJob
    from container_manager.notify import announce_work

    clear_jobs()
    _, docker = hosts()
    workers = start_workers(1, concurrency)
    try:
        with transaction.atomic():
            ContainerJob.objects.bulk_create([new_job(docker) for _ in range(jobs)])
            announce_work("")
        start = time.perf_counter()
        if not wait_until(lambda: _not_terminal() == 0, 900, 0.05):
            raise RuntimeError("containers not finished after 900 s")
        elapsed = time.perf_counter() - start
    finally:
        stop_workers(workers)
    completed = _count("completed")
    if completed != jobs:
        raise RuntimeError(f"only {completed} of {jobs} container jobs completed")
    return jobs / elapsed


def containers_sdk(jobs: int, concurrency: int) -> float:
    """Jobs/s of the docker SDK alone, ``concurrency`` threads, no queue.

    Each thread creates, starts and waits for a container, reads its logs and
    removes it: what the worker does for a job, minus the database.
    """
    import docker

    from container_manager.conf import settings

    client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    network = str(settings.DOCKER_DEFAULT_NETWORK)

    def one(n: int) -> int:
        container = client.containers.create(
            IMAGE, ["true"], network_mode=network, labels={"cm-bench": "sdk"}
        )
        container.start()
        code = int(container.wait()["StatusCode"])
        container.logs(stdout=True, stderr=False)
        container.logs(stdout=False, stderr=True)
        container.remove(force=True)
        return code

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        codes = list(pool.map(one, range(jobs)))
    elapsed = time.perf_counter() - start
    client.close()
    if any(codes):
        raise RuntimeError("some SDK containers failed")
    return jobs / elapsed


# Memory ------------------------------------------------------------------------------


def memory_big_output(megabytes: int) -> dict[str, float]:
    """Peak RSS (MB) of a worker while one Docker job prints ``megabytes`` MB to stdout."""
    from container_manager.models import ContainerJob
    from container_manager.queue import queue_manager

    clear_jobs()
    _, docker = hosts()
    workers = start_workers(1, 2)
    try:
        idle_kb = workers[0].peak_rss_kb()
        line = "0123456789" * 10
        command = f"yes {line} | head -c {megabytes * 1024 * 1024}"
        job = ContainerJob.objects.create(
            name="bench-big-output", host=docker, image=IMAGE, command=command,
            is_shell_command=True,
        )  # fmt: skip
        queue_manager.queue_job(job)
        if not wait_until(lambda: _not_terminal() == 0, 300, 0.1):
            raise RuntimeError("big-output job did not finish in 300 s")
        peak_kb = workers[0].peak_rss_kb()
    finally:
        stop_workers(workers)
    job.refresh_from_db()
    if job.status != "completed":
        raise RuntimeError(f"big-output job ended {job.status}: {job.last_error}")
    return {
        "rss_mb": peak_kb / 1024,
        "idle_rss_mb": idle_kb / 1024,
        "stored_kb": len(job.stdout) / 1024,
    }


# Statistics --------------------------------------------------------------------------

#: The history of the statistics figure: share of each status, like a queue that
#: has run for a month (the rest wait, run or are cancelled).
HISTORY_STATUSES = (
    ("completed", 0.80),
    ("failed", 0.87),
    ("timeout", 0.89),
    ("cancelled", 0.91),
    ("queued", 0.95),
    ("retrying", 0.96),
    ("running", 0.97),
    ("pending", 1.0),
)
HISTORY_CODES = ("DOCKER_PULL_FAILED", "DOCKER_IMAGE_NOT_FOUND", "SYSTEM_TIMEOUT", "UNKNOWN_ERROR")


def fill_history(jobs: int) -> float:
    """Put ``jobs`` jobs of a month's history in the table, in one INSERT; return its seconds.

    Statuses as ``HISTORY_STATUSES``, created over the last 30 days, five
    queues' worth of names, error codes and retries on the failed ones. The
    statement fires the tally's triggers like any insert.
    """
    from django.db import connection

    columns, values = _floor_row()
    status = (
        "CASE "
        + " ".join(f"WHEN a < {bound} THEN '{name}'" for name, bound in HISTORY_STATUSES)
        + " END"
    )
    failed = f"({status}) IN ('failed', 'timeout', 'retrying')"
    launched = f"({status}) IN ('running', 'completed', 'failed', 'timeout')"
    finished = f"({status}) IN ('completed', 'failed', 'timeout')"
    created = "now() - b * interval '30 days'"
    started = f"CASE WHEN {launched} THEN {created} + (1 + g %% 30) * interval '1 second' END"
    codes = ", ".join(f"'{code}'" for code in HISTORY_CODES)
    overrides = {
        '"status"': status,
        '"queue"': "(ARRAY['default', 'default', 'default', 'reports', 'images'])[1 + g %% 5]",
        '"priority"': "(ARRAY[20, 50, 50, 50, 80])[1 + g %% 5]",
        '"created_at"': created,
        '"queued_at"': f"CASE WHEN ({status}) <> 'pending' THEN {created} END",
        '"launched_at"': started,
        '"started_at"': started,
        '"completed_at"': f"CASE WHEN {finished} THEN {started} + c * interval '10 minutes' END",
        '"error_code"': f"CASE WHEN {failed} THEN (ARRAY[{codes}])[1 + g %% 4] ELSE '' END",
        '"retry_count"': f"CASE WHEN {failed} THEN 1 + g %% 3 ELSE 0 END",
        '"scheduled_for"': f"CASE WHEN ({status}) = 'retrying' "
        "THEN now() + (c * 600 - 60) * interval '1 second' END",
    }
    select, params = [], []
    for column, value in zip(columns, values, strict=True):
        if column in overrides:
            select.append(overrides[column])
        else:
            select.append("%s")
            params.append(value)
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            f"INSERT INTO {JOB_TABLE} ({', '.join(columns)}) SELECT {', '.join(select)} "
            "FROM (SELECT g, random() AS a, random() AS b, random() AS c "
            "FROM generate_series(1, %s) AS g) AS s",
            [*params, jobs],
        )
    seconds = time.perf_counter() - began
    with connection.cursor() as cursor:
        # As autovacuum does after a bulk load: statistics and the visibility map.
        cursor.execute(f"VACUUM ANALYZE {JOB_TABLE}")
        cursor.execute("VACUUM ANALYZE container_manager_jobtally")
    return seconds


def _median_ms(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def statistics_figures(repeats: int) -> dict[str, float]:
    """Time the statistics on the table as it is: ours, and the direct count of the jobs.

    ``direct_ms`` is the baseline: the finished jobs' groups counted from the
    job rows (``history_from_jobs``, what SQLite does and what every release
    before the tally did for all the figures).
    """
    from django.contrib.auth import get_user_model
    from django.test import Client

    from container_manager.models import ContainerJob
    from container_manager.models.tally import history_from_jobs
    from container_manager.queue import queue_manager
    from container_manager.stats import get_statistics

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first()
    if user is None:
        user = user_model.objects.create_superuser("bench", password=None)
    client = Client()
    client.force_login(user)
    url = "/admin/container_manager/containerjob/queue-stats/"

    def page() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"statistics page: HTTP {response.status_code}")

    return {
        "stats_ms": _median_ms(get_statistics, repeats),
        "stats_queue_ms": _median_ms(lambda: get_statistics(queue="reports"), repeats),
        "queue_stats_ms": _median_ms(queue_manager.get_queue_stats, repeats),
        "stats_page_ms": _median_ms(page, repeats),
        "direct_ms": _median_ms(lambda: history_from_jobs(ContainerJob.objects.all()), 3),
    }


# Following many running containers -----------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (/proc/<pid>/stat)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def follow_many(jobs: int, end_rate: float, window_seconds: float) -> dict[str, float]:
    """One worker following ``jobs`` running containers, then their ends, ``end_rate`` a second.

    Each container runs ``sh`` waiting on a ``sleep 3600`` and exits 0 on
    SIGTERM: once all run, the CPU window is measured, then the runner sends
    them SIGTERM through the engine, ``end_rate`` a second, so that the ends
    come steadily, as those of long jobs started one after another do.
    Measured by witnesses outside the worker: its CPU from /proc while every
    container runs and none is launched (``window_seconds``, as % of one
    core), its peak RSS (``VmHWM``), and how late each end is recorded: the
    engine's ``die`` event (from the engine's own event stream) against the
    first time a reader polling the jobs table every 0.1 s sees the job
    finished.
    """
    import threading

    import docker
    from django.db import connection, transaction

    from container_manager.models import ContainerJob
    from container_manager.notify import announce_work

    clear_jobs()
    _, host = hosts()
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    died: dict[str, float] = {}
    seen_done: dict[int, float] = {}
    stop = threading.Event()
    since = int(time.time())
    command = "sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'"

    def engine_events() -> None:
        stream = client.events(
            decode=True, since=since, filters={"event": "die", "label": "cm-bench=worker"}
        )
        for event in stream:
            died.setdefault(event["id"], event["timeNano"] / 1e9)
            if stop.is_set() or len(died) >= jobs:
                break

    def poll_jobs() -> None:
        try:
            while not stop.wait(0.1):
                now = time.time()
                for pk in ContainerJob.objects.filter(status__in=TERMINAL).values_list(
                    "pk", flat=True
                ):
                    seen_done.setdefault(pk, now)
        finally:
            connection.close()

    listener = threading.Thread(target=engine_events, daemon=True)
    listener.start()
    workers = start_workers(1, jobs)
    poller = threading.Thread(target=poll_jobs, daemon=True)
    try:
        pid = workers[0].proc.pid
        with transaction.atomic():
            ContainerJob.objects.bulk_create([new_job(host, command) for _ in range(jobs)])
            announce_work("")
        began = time.perf_counter()
        if not wait_until(lambda: _count("running") == jobs, 600, 0.2):
            raise RuntimeError(f"only {_count('running')} of {jobs} containers running in 600 s")
        launched_s = time.perf_counter() - began
        time.sleep(1.0)  # the last launch threads return
        cpu_before, wall_before = _cpu_seconds(pid), time.perf_counter()
        time.sleep(window_seconds)
        cpu = (_cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
        poller.start()
        ids = list(ContainerJob.objects.values_list("container_id", flat=True))
        for n, container_id in enumerate(ids):
            client.api.kill(container_id, signal="SIGTERM")
            pause = began + launched_s + 1.0 + window_seconds + (n + 1) / end_rate
            time.sleep(max(0.0, pause - time.perf_counter()))
        if not wait_until(lambda: _not_terminal() == 0, 120, 0.2):
            raise RuntimeError("containers not finished in time")
        time.sleep(0.3)
        rss_mb = workers[0].peak_rss_kb() / 1024
    finally:
        stop.set()
        stop_workers(workers)
        client.close()
    completed = _count("completed")
    if completed != jobs:
        raise RuntimeError(f"only {completed} of {jobs} followed jobs completed")
    by_container = dict(ContainerJob.objects.values_list("container_id", "pk"))
    lags = sorted(
        seen_done[by_container[cid]] - at
        for cid, at in died.items()
        if cid in by_container and by_container[cid] in seen_done
    )
    if len(lags) < jobs * 0.95:
        raise RuntimeError(f"only {len(lags)} of {jobs} ends seen by both witnesses")
    return {
        "follow_launch_s": launched_s,
        "follow_cpu_pct": 100 * cpu,
        "follow_rss_mb": rss_mb,
        "follow_end_p50_s": statistics.median(lags),
        "follow_end_max_s": lags[-1],
        "follow_ends_seen": float(len(lags)),
    }
