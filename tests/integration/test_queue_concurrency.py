"""Several worker processes claim from one PostgreSQL queue of thousands of jobs.

Each worker is a real OS process (``python -c`` with ``demo.settings``) on
the pytest-django test database. It claims batches with
``queue_manager.claim_jobs``, logs what it got, starts and completes some of
the jobs it holds (so slots free up and the limits matter), and stops when
nothing is ready and it holds nothing. Meanwhile the test samples, as fast as
it can, how many jobs hold a slot on each host and in the limited queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.states import JobStatus

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
JOBS = 3000
#: (worker processes, host limits, limited queues): the limits are sampled while they claim.
LAYOUTS = {
    "4 processes, 2 hosts": (4, {"alpha": 12, "beta": 8}, {"reports": 4}),
    "8 processes, 3 hosts": (8, {"alpha": 12, "beta": 8, "gamma": 5}, {"reports": 4, "mail": 3}),
}
#: A guard against a hang, not a speed target (bench/ measures claims): on a
#: machine loaded by other suites the 3,000 claims take well over a minute.
DEADLINE_SECONDS = 240
SAMPLE_SECONDS = 0.01

WORKER_SCRIPT = textwrap.dedent(
    """
    import json, random, sys
    import django
    django.setup()
    from container_manager.models import ContainerJob
    from container_manager.queue import queue_manager
    from container_manager.states import JobStatus, READY_STATUSES

    worker_id, log_path = sys.argv[1], sys.argv[2]
    rng = random.Random(worker_id)
    held = []
    jobs = ContainerJob.objects
    with open(log_path, "w") as log:
        while True:
            batch = queue_manager.claim_jobs(worker_id, rng.randint(1, 12))
            log.write(json.dumps([[j.pk, j.priority, j.queued_at.isoformat(), j.queue,
                                   j.host_id, j.attempt] for j in batch]) + "\\n")
            ids = [j.pk for j in batch]
            if ids:
                jobs.filter(pk__in=ids).update(status=JobStatus.RUNNING)
            held.extend(ids)
            rng.shuffle(held)
            done, held = held[: len(held) // 2 + 1], held[len(held) // 2 + 1:]
            if done:
                jobs.filter(pk__in=done).update(status=JobStatus.COMPLETED)
            if not held and not jobs.filter(status__in=READY_STATUSES).exists():
                break
    """
)


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def create_queue(host_limits, queue_limits):
    hosts = [
        ExecutorHost.objects.create(
            name=name, executor_type="process", max_concurrent_jobs=limit, weight=100 - 25 * n
        )
        for n, (name, limit) in enumerate(host_limits.items())
    ]
    for name, limit in queue_limits.items():
        JobQueue.objects.create(name=name, max_concurrent=limit)
    # Every host and queue gets jobs pinned to it and jobs without a host.
    routes = [None, None, *hosts]
    queue_names = [*queue_limits, *(["default"] * 8)]
    start = timezone.now() - timedelta(hours=1)
    rows = []
    for n in range(JOBS):
        rows.append(
            ContainerJob(
                command=f"echo {n}",
                image="busybox",
                status=JobStatus.QUEUED,
                priority=(n * 37) % 5 * 20,
                queued_at=start + timedelta(milliseconds=n),
                queue=queue_names[n % len(queue_names)],
                host=routes[n % len(routes)],
            )
        )
    ContainerJob.objects.bulk_create(rows, batch_size=1000)
    return set(ContainerJob.objects.filter(host__isnull=False).values_list("id", flat=True))


def sample_loads(queue_limits):
    holding = ContainerJob.objects.holding()
    hosts = Counter(dict(holding.values_list("host__name").annotate(n=Count("id")).order_by()))
    queues = Counter(
        dict(
            holding.filter(queue__in=list(queue_limits))
            .values_list("queue")
            .annotate(n=Count("id"))
            .order_by()
        )
    )
    return hosts, queues


def key(row):
    _pk, priority, queued_at, *_ = row
    return (-priority, queued_at, row[0])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_worker_processes_claim_each_job_once_in_order_within_limits(tmp_path, layout):
    workers, host_limits, queue_limits = LAYOUTS[layout]
    pinned = create_queue(host_limits, queue_limits)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
    }
    logs = [tmp_path / f"worker-{n}.jsonl" for n in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, f"worker-{n}", str(log)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for n, log in enumerate(logs)
    ]
    peaks: Counter[str] = Counter()
    samples = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while any(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "workers did not finish in time"
            hosts, queues = sample_loads(queue_limits)
            samples += 1
            for name, load in hosts.items():
                assert load <= host_limits[name], f"host {name} held {load} jobs"
                peaks[name] = max(peaks[name], load)
            for name, load in queues.items():
                assert load <= queue_limits[name], f"queue {name} held {load} jobs"
                peaks[name] = max(peaks[name], load)
            # Pace the sampling (and give the workers the CPU) by waiting on a worker's exit.
            with contextlib.suppress(subprocess.TimeoutExpired):
                procs[0].wait(timeout=SAMPLE_SECONDS)
    finally:
        errors = []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stderr is not None
            errors.append(proc.stderr.read().decode()[-3000:])
            proc.stderr.close()
    for proc, error in zip(procs, errors, strict=True):
        assert proc.returncode == 0, error

    claims = defaultdict(list)
    for n, log in enumerate(logs):
        for line in log.read_text().splitlines():
            claims[n].append(json.loads(line))
    every = [row for batches in claims.values() for batch in batches for row in batch]
    ids = [row[0] for row in every]
    # Each job acquired exactly once, all of them, and each on its first attempt.
    assert len(ids) == JOBS
    assert len(set(ids)) == JOBS
    assert set(ContainerJob.objects.values_list("attempt", flat=True)) == {1}
    assert ContainerJob.objects.exclude(status=JobStatus.COMPLETED).count() == 0
    # Every worker took part.
    assert all(any(batch for batch in claims[n]) for n in range(workers))
    # Priority first, then FIFO: within every batch, and for each worker
    # within each class of jobs that share the same limits (queue, pinned host).
    for batches in claims.values():
        for batch in batches:
            assert batch == sorted(batch, key=key)
        by_class = defaultdict(list)
        for batch in batches:
            for row in batch:
                by_class[(row[3], row[4] if row[0] in pinned else None)].append(row)
        for rows in by_class.values():
            assert rows == sorted(rows, key=key)
    # The limits were reached (the test means something) and never exceeded.
    assert samples > 20
    assert peaks == Counter({**host_limits, **queue_limits})
