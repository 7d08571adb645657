"""Helpers of the worker acceptance tests: real ``process_container_jobs`` subprocesses.

Each worker runs ``manage.py process_container_jobs --queue-mode`` with
``tests.settings_fast`` (lease 3 s, heartbeat 1 s, finished containers kept)
against the pytest-django test database, named in ``DATABASE_URL``, and the
real Docker engine. Its output is read line by line by a thread, so tests
wait on lines ("ready", "Launched job ...") with deadlines instead of sleeping.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

from container_manager.executors.base import LABEL_ATTEMPT, LABEL_JOB
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from tests.docker_fixtures import DOCKER_URL, NAME_PREFIX, RUN_ID, RUN_LABEL

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"Worker \S+ ready")


def database_url() -> str:
    """The URL of the test database the test process is connected to."""
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or "5432"
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    """Environment of a worker subprocess on the test database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        DJANGO_SETTINGS_MODULE="tests.settings_fast",
        CM_TEST_RUN_LABEL=f"{RUN_LABEL}={RUN_ID}",
        CM_TEST_NAME_PREFIX=NAME_PREFIX,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerProcess:
    """One ``process_container_jobs`` subprocess and its output."""

    def __init__(self, *args: str, queue_mode: bool = True, **env: str) -> None:
        command = [sys.executable, "-u", "manage.py", "process_container_jobs"]
        if queue_mode:
            command.append("--queue-mode")
        self.args = args
        self.proc = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env=worker_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 20.0) -> str:
        """Return the first output line matching ``pattern``, waiting up to ``timeout``."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"No line matching {regex.pattern!r} within {timeout} s; output:\n"
                        + "\n".join(self.lines)
                    )
                self._changed.wait(min(remaining, 0.2))

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.wait_for_line(READY, timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> object:
    """Poll ``predicate`` until it is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def make_docker_host(**fields: object) -> ExecutorHost:
    fields.setdefault("max_concurrent_jobs", 50)
    fields.setdefault("auto_pull_images", False)
    return ExecutorHost.objects.create(
        name=f"docker-{RUN_ID}-{ExecutorHost.objects.count()}",
        executor_type="docker",
        connection_string=DOCKER_URL,
        executor_config={"default_network": "none"},
        **fields,
    )


def queue_jobs(
    count: int,
    host: ExecutorHost | None,
    command: str = "sleep 1",
    name: str = "job",
    **fields: object,
) -> list[ContainerJob]:
    jobs = []
    for n in range(count):
        job = ContainerJob.objects.create(
            name=f"{name}-{n}",
            command=command,
            is_shell_command=True,
            host=host,
            **fields,
        )
        queue_manager.queue_job(job)
        jobs.append(job)
    return jobs


def containers_by_attempt(docker_client, job_ids: list[int]) -> dict[int, dict[int, int]]:
    """Count the containers of this test run per job and attempt, from their labels."""
    rows = docker_client.api.containers(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    wanted = set(job_ids)
    counts: dict[int, dict[int, int]] = {job_id: {} for job_id in job_ids}
    for row in rows:
        labels = row.get("Labels") or {}
        job_id = int(labels.get(LABEL_JOB, 0))
        if job_id in wanted:
            attempt = int(labels[LABEL_ATTEMPT])
            counts[job_id][attempt] = counts[job_id].get(attempt, 0) + 1
    return counts


def remove_containers(docker_client, job_ids: list[int]) -> None:
    rows = docker_client.api.containers(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
    wanted = {str(job_id) for job_id in job_ids}
    for row in rows:
        if (row.get("Labels") or {}).get(LABEL_JOB) in wanted:
            docker_client.api.remove_container(row["Id"], force=True)


def statuses(jobs: list[ContainerJob]) -> dict[int, str]:
    return dict(
        ContainerJob.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "status")
    )
