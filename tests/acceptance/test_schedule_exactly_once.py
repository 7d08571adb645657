"""A schedule firing every second for a minute, four workers, one killed: one job per fire time.

Real ``process_container_jobs`` processes on PostgreSQL and the Docker
engine. The witness is the engine: every container of the schedule's jobs,
found by its labels, with the fire time it was given in its environment
(``CM_SCHEDULE_FIRE_AT``): one container per fire time, none missing
between the first and the last, none doubled.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from container_manager.executors.base import LABEL_JOB
from container_manager.models import ContainerJob, Schedule
from container_manager.queue import queue_manager
from container_manager.states import TERMINAL_STATUSES
from tests.acceptance.worker_process import WorkerProcess, make_docker_host, wait_until
from tests.docker_fixtures import RUN_ID, RUN_LABEL

pytestmark = [pytest.mark.postgres, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

FIRING_SECONDS = 60
KILL_AFTER_SECONDS = 25


def engine_fire_times(docker_engine, job_ids: set[int]) -> Counter[str]:
    """The fire time in the environment of every container of these jobs, as the engine has it."""
    found: Counter[str] = Counter()
    rows = docker_engine.api.containers(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    for row in rows:
        if int((row.get("Labels") or {}).get(LABEL_JOB, 0)) not in job_ids:
            continue
        env = docker_engine.api.inspect_container(row["Id"])["Config"]["Env"] or []
        fire = [item.split("=", 1)[1] for item in env if item.startswith("CM_SCHEDULE_FIRE_AT=")]
        found.update(fire)
    return found


def test_every_second_for_a_minute_with_four_workers_one_killed(docker_engine):
    host = make_docker_host(max_concurrent_jobs=40)
    schedule = Schedule.objects.create(
        name=f"every-second-{RUN_ID}",
        cron="* * * * * *",
        job={"command": 'echo "$CM_SCHEDULE_FIRE_AT"', "is_shell_command": True},
        host=host,
        catch_up="all",
        max_catch_up=30,
    )
    workers = [WorkerProcess("--max-concurrent", "10") for _ in range(4)]
    try:
        for worker in workers:
            worker.wait_ready(30)
        started = time.monotonic()
        wait_until(
            lambda: time.monotonic() - started > KILL_AFTER_SECONDS,
            timeout=KILL_AFTER_SECONDS + 5,
            interval=0.5,
        )
        workers[1].signal(signal.SIGKILL)
        workers[1].wait_exit(10)
        wait_until(
            lambda: time.monotonic() - started > FIRING_SECONDS,
            timeout=FIRING_SECONDS,
            interval=0.5,
        )
        queue_manager.suspend_schedule(schedule)
        suspended_at = timezone.now()
        jobs = ContainerJob.objects.filter(schedule=schedule)
        wait_until(
            lambda: not jobs.exclude(status__in=sorted(TERMINAL_STATUSES)).exists(),
            timeout=90,
            interval=0.5,
            what="the schedule's jobs to end",
        )
    finally:
        for worker in workers:
            worker.stop()

    rows = list(jobs.order_by("scheduled_fire_at"))
    fire_times = [job.scheduled_fire_at for job in rows]
    assert len(fire_times) >= FIRING_SECONDS - 5
    # No second missing between the first fire time and the last, none doubled.
    first = fire_times[0]
    expected = [first + timedelta(seconds=n) for n in range(len(fire_times))]
    assert fire_times == expected
    assert fire_times[-1] <= suspended_at
    assert {job.status for job in rows} == {"completed"}
    assert [job.stdout.strip() for job in rows] == [t.isoformat() for t in fire_times]
    # The engine ran one container per fire time.
    seen = engine_fire_times(docker_engine, {job.pk for job in rows})
    assert sorted(seen) == sorted(t.isoformat() for t in fire_times)
    assert set(seen.values()) == {1}
    # The jobs were spread over the workers.
    assert len({job.last_worker_id for job in rows}) >= 2
