"""The tally of finished jobs on a real PostgreSQL: writers at once, compaction, upgrade.

``tests/property/test_statistics.py`` checks the figures after generated
writes in one connection; here several connections end and reopen jobs at
the same moment while another folds the tally, and a database with finished
jobs is migrated from before the tally existed.
"""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from container_manager.models import ContainerJob, JobTally
from container_manager.models.tally import compact_tallies, history_from_jobs, history_from_tally
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from container_manager.worker.state import WorkerState
from container_manager.worker.sweeper import Sweeper

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITERS = 4
JOBS_PER_WRITER = 40
TRANSACTIONS = 120
STATUSES = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED]
QUEUES = ["default", "reports", "mail", "images"]


def normalised(groups):
    return sorted(
        (
            g.queue,
            g.status,
            g.error_code,
            g.retry_strategy,
            g.max_retries,
            g.retry_count,
            g.launch_failed,
            g.jobs,
            g.timed,
            round(g.seconds, 3),
        )
        for g in groups
    )


def test_connections_ending_jobs_at_once_with_a_compaction_keep_the_tally_exact():
    ContainerJob.objects.bulk_create(
        ContainerJob(command="true", status=JobStatus.RUNNING)
        for _ in range(WRITERS * JOBS_PER_WRITER)
    )
    ids = list(ContainerJob.objects.order_by("pk").values_list("pk", flat=True))
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        # Each writer ends and reopens jobs of its own, several per transaction,
        # in a random order of queues and statuses: the tally rows it touches
        # come in any order.
        rng = random.Random(n)
        mine = ids[n * JOBS_PER_WRITER : (n + 1) * JOBS_PER_WRITER]
        try:
            for _ in range(TRANSACTIONS):
                with transaction.atomic():
                    for pk in rng.sample(mine, 12):
                        ContainerJob.objects.filter(pk=pk).update(
                            status=rng.choice([*STATUSES, JobStatus.RUNNING]),
                            queue=rng.choice(QUEUES),
                            retry_count=rng.randint(0, 2),
                        )
        except BaseException as exc:  # a deadlock or any error fails the test
            errors.append(exc)
        finally:
            connection.close()

    def compactor() -> None:
        try:
            while not stop.is_set():
                compact_tallies()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    folding = threading.Thread(target=compactor)
    folding.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    stop.set()
    folding.join(30)
    assert not errors, errors
    assert normalised(history_from_tally()) == normalised(
        history_from_jobs(ContainerJob.objects.all())
    )
    # Every connection wrote rows of its own; a compaction folds them all.
    compact_tallies()
    assert not JobTally.objects.exclude(backend=0).exists()
    assert not JobTally.objects.filter(jobs=0, timed=0).exists()
    assert normalised(history_from_tally()) == normalised(
        history_from_jobs(ContainerJob.objects.all())
    )


def test_migrating_a_database_with_finished_jobs_counts_them_in_the_tally():
    executor = MigrationExecutor(connections["default"])
    executor.migrate([("container_manager", "0003_version_2")])
    try:
        old = (
            MigrationExecutor(connections["default"])
            .loader.project_state(("container_manager", "0003_version_2"))
            .apps
        )
        Job = old.get_model("container_manager", "ContainerJob")
        Job.objects.bulk_create(
            Job(command="true", status=status, queue=queue, retry_count=n % 3)
            for n, (status, queue) in enumerate(
                [(s, q) for s in [*STATUSES, JobStatus.QUEUED] for q in QUEUES] * 3
            )
        )
    finally:
        executor = MigrationExecutor(connections["default"])
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    tally = normalised(history_from_tally())
    assert tally == normalised(history_from_jobs(ContainerJob.objects.all()))
    assert sum(row[7] for row in tally) == len(STATUSES) * len(QUEUES) * 3
    # The triggers are in place after the migration: an end is counted.
    ContainerJob.objects.filter(status=JobStatus.QUEUED).update(status=JobStatus.COMPLETED)
    assert normalised(history_from_tally()) == normalised(
        history_from_jobs(ContainerJob.objects.all())
    )


def test_each_pass_of_a_workers_sweeper_folds_the_tally():
    # Two connections end jobs: each writes tally rows of its own.
    ContainerJob.objects.bulk_create(
        ContainerJob(command="true", status=JobStatus.RUNNING) for _ in range(4)
    )
    ids = list(ContainerJob.objects.values_list("pk", flat=True))

    def end(pks):
        ContainerJob.objects.filter(pk__in=pks).update(status=JobStatus.COMPLETED)
        connection.close()

    for pks in (ids[:2], ids[2:]):
        thread = threading.Thread(target=end, args=(pks,))
        thread.start()
        thread.join(10)
    assert JobTally.objects.exclude(backend=0).values("backend").distinct().count() == 2
    sweeper = Sweeper(
        queue_manager, queue_manager.containers, WorkerState("w-fold"), interval_seconds=3600
    )
    sweeper.start()
    sweeper.stop()
    sweeper.join(30)
    assert not sweeper.is_alive()
    assert list(JobTally.objects.values_list("backend", "status", "jobs")) == [
        (0, JobStatus.COMPLETED, 4)
    ]
