"""The demo behind ``make demo``: a worker runs a handful of jobs; a table says what happened.

Run by ``scripts/demo.sh`` after ``migrate`` on a fresh SQLite database
(``demo/db.sqlite3``). What it does:

1. Picks where jobs run: the local Docker engine when ``docker version``
   answers and the demo image is there, else local processes (also with
   ``CONTAINER_MANAGER_DEMO_EXECUTOR=process``).
2. Queues six jobs of different priorities: one fails with exit code 3, one
   is scheduled a few seconds ahead, and one hits a real transient launch
   failure first: its program is still being written when the first launch
   comes (the kernel refuses to run it, "Text file busy"), so the launch is
   retried after a short backoff, by which time the program is complete.
3. Runs a worker in this process until every job has ended.
4. Prints a table: order of start, id, name, priority, status, exit code,
   duration, retries.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings as django_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from container_manager.models import ContainerJob, ExecutorHost  # noqa: E402
from container_manager.queue import queue_manager  # noqa: E402
from container_manager.states import TERMINAL_STATUSES, JobStatus  # noqa: E402
from container_manager.worker import Worker  # noqa: E402

DEADLINE_SECONDS = 90
SCHEDULED_AHEAD_SECONDS = 4
WORK_DIR = Path(tempfile.mkdtemp(prefix="cm-demo-"))
TOOL = WORK_DIR / "late-tool.sh"


def docker_image() -> str | None:
    """The image to run on Docker, or None when no engine answers or the image is missing."""
    image = str(django_settings.CONTAINER_MANAGER.get("DEFAULT_IMAGE", "busybox:latest"))
    if os.environ.get("CONTAINER_MANAGER_DEMO_EXECUTOR") == "process":
        return None
    if shutil.which("docker") is None:
        return None
    for command in (["docker", "version"], ["docker", "image", "inspect", image]):
        try:
            done = subprocess.run(command, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            if command[1] == "image":
                print(f"Docker answers but has no image {image}; using local processes.")
                print("  (scripts/ensure-docker.sh builds it.)")
            return None
    return image


def make_hosts() -> tuple[ExecutorHost, ExecutorHost, str]:
    local = ExecutorHost.objects.create(
        name="local-processes", executor_type="process", max_concurrent_jobs=4
    )
    if docker_image() is None:
        return local, local, "local processes"
    docker = ExecutorHost.objects.create(
        name="docker-local",
        executor_type="docker",
        connection_string="unix:///var/run/docker.sock",
        executor_config={"default_network": "none"},
        auto_pull_images=False,
        max_concurrent_jobs=3,
    )
    return docker, local, "Docker (unix:///var/run/docker.sock)"


def queue_jobs(main: ExecutorHost, local: ExecutorHost) -> list[ContainerJob]:
    specs = [
        ("nightly-report", 90, "echo '::progress 50 Rendering'; sleep 2; echo report ready"),
        ("cleanup", 10, "sleep 1; echo cleaned up"),
        ("ingest", 50, "sleep 2; echo 1000 rows ingested"),
        ("bad-input", 60, "echo 'bad input: line 7' >&2; exit 3"),
    ]
    jobs = []
    for name, priority, command in specs:
        job = ContainerJob.objects.create(
            name=name, command=command, is_shell_command=True, host=main, priority=priority
        )
        jobs.append(queue_manager.queue_job(job))
    later = ContainerJob.objects.create(
        name="scheduled",
        command="echo ran on schedule",
        is_shell_command=True,
        host=main,
        priority=95,
    )
    jobs.append(
        queue_manager.queue_job(
            later, schedule_for=timezone.now() + timedelta(seconds=SCHEDULED_AHEAD_SECONDS)
        )
    )
    flaky = ContainerJob.objects.create(
        name="late-tool", command=str(TOOL), host=local, priority=70, retry_strategy="high_priority"
    )
    jobs.append(queue_manager.queue_job(flaky))
    return jobs


def start_writing_tool() -> object:
    """Begin writing the late tool and keep it open: running it now fails with ETXTBSY."""
    handle = TOOL.open("w")
    handle.write("#!/bin/sh\necho late tool ran\n")
    handle.flush()
    TOOL.chmod(0o755)
    return handle


def run_worker(worker: Worker) -> threading.Thread:
    def target() -> None:
        from django.db import connection

        try:
            worker.run()
        finally:
            connection.close()

    thread = threading.Thread(target=target, name="demo-worker", daemon=True)
    thread.start()
    return thread


def wait_for_jobs(jobs: list[ContainerJob], flaky: ContainerJob, handle: object) -> bool:
    deadline = time.monotonic() + DEADLINE_SECONDS
    ids = [job.pk for job in jobs]
    while time.monotonic() < deadline:
        rows = dict(ContainerJob.objects.filter(pk__in=ids).values_list("pk", "status"))
        if handle is not None and rows[flaky.pk] in (JobStatus.RETRYING, JobStatus.FAILED):
            handle.close()  # type: ignore[attr-defined]
            handle = None
            print("  late-tool: first launch failed (program still being written); retrying")
        if all(status in TERMINAL_STATUSES for status in rows.values()):
            return True
        time.sleep(0.2)
    return False


def seconds(value: timedelta | None, sign: str = "") -> str:
    return "-" if value is None else f"{sign}{value.total_seconds():.1f} s"


def print_table(jobs: list[ContainerJob], started: float, t0: datetime) -> None:
    rows = list(ContainerJob.objects.filter(pk__in=[j.pk for j in jobs]).select_related("host"))
    rows.sort(key=lambda j: (j.started_at is None, j.started_at or timezone.now(), j.pk))
    header = (
        f"{'order':>5}  {'id':>3}  {'name':<15} {'priority':>8}  {'start':>7}  {'status':<10} "
        f"{'exit':>4}  {'duration':>8}  {'retries':>7}  {'attempts':>8}  {'error':<22} host"
    )
    print()
    print(header)
    print("-" * len(header))
    for order, job in enumerate(rows, start=1):
        exit_code = "-" if job.exit_code is None else str(job.exit_code)
        print(
            f"{order:>5}  {job.pk:>3}  {job.name:<15} {job.priority:>8}  "
            f"{seconds(job.started_at - t0 if job.started_at else None, '+'):>7}  {job.status:<10} "
            f"{exit_code:>4}  {seconds(job.duration):>8}  {job.retry_count:>7}  "
            f"{job.attempt:>8}  {job.error_code or '-':<22} {job.host.name if job.host else '-'}"
        )
    print()
    print(f"All {len(rows)} jobs ended in {time.monotonic() - started:.1f} s.")
    print("Jobs start by priority (higher first), then first in, first out.")
    print(f"'scheduled' has the top priority but was held until {SCHEDULED_AHEAD_SECONDS} s after")
    print("it was queued.")
    print("'late-tool' could not be launched while its program was still being written")
    print("(a transient error), and ran on its retry. 'bad-input' exited with code 3.")


def main() -> int:
    # A name prefix of this run: containers left by an interrupted run are never reused.
    django_settings.CONTAINER_MANAGER["CONTAINER_NAME_PREFIX"] = f"cm-demo-{secrets.token_hex(3)}"
    main_host, local_host, where = make_hosts()
    print(f"Jobs run on: {where}")
    handle = start_writing_tool()
    jobs = queue_jobs(main_host, local_host)
    print(f"Queued {len(jobs)} jobs; starting a worker that runs one job at a time.")
    started, t0 = time.monotonic(), timezone.now()
    worker = Worker(
        worker_id="demo-worker",
        max_concurrent=1,
        poll_interval_seconds=1,
        echo=lambda line: print(f"  {line}"),
    )
    thread = run_worker(worker)
    try:
        is_done = wait_for_jobs(jobs, jobs[-1], handle)
    finally:
        if not handle.closed:  # type: ignore[attr-defined]
            handle.close()  # type: ignore[attr-defined]
    worker.request_stop("demo finished")
    thread.join(30)
    print_table(jobs, started, t0)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    if not is_done:
        print(f"Some jobs had not ended after {DEADLINE_SECONDS} s.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
