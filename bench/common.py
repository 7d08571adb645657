"""Set-up shared by the benchmarks: the bench database, Django, job rows, processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = os.environ.get("BENCH_DB_NAME", "cm_bench")
DSN = f"{SERVER_URL}/{DB_NAME}"
JOB_TABLE = "container_manager_containerjob"
NOOP_HOST = "bench-noop"
DOCKER_HOST = "bench-docker"
IMAGE = "container-manager-test/busybox:latest"
PYTHON = sys.executable


def recreate_database() -> None:
    """Drop and create the bench database (never a test database)."""
    import psycopg

    if not DB_NAME.startswith("cm_bench"):
        raise SystemExit(f"refusing to drop {DB_NAME!r}: the bench database must be cm_bench*")
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [DB_NAME]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def drop_database() -> None:
    """Drop the bench database at the end of a run."""
    import psycopg

    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [DB_NAME]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')


def remove_leftover_containers() -> None:
    """Remove the containers an interrupted run left (label ``cm-bench``); no Docker, no-op."""
    try:
        import docker

        client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
        for container in client.containers.list(all=True, filters={"label": "cm-bench"}):
            container.remove(force=True)
        client.close()
    except Exception:
        return


def child_env(**extra: str) -> dict[str, str]:
    """Environment of every process the runner starts."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=DSN,
        DJANGO_SETTINGS_MODULE="bench.settings",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        CONTAINER_MANAGER_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def setup_django() -> None:
    """Point this process's Django at the bench database and migrate it."""
    os.environ.update(child_env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def hosts() -> tuple[Any, Any]:
    """The no-op host and the Docker host of the benchmarks (created once)."""
    from container_manager.models import ExecutorHost

    noop, _ = ExecutorHost.objects.get_or_create(
        name=NOOP_HOST,
        defaults={"executor_type": "noop", "max_concurrent_jobs": 100_000, "weight": 1},
    )
    docker, _ = ExecutorHost.objects.get_or_create(
        name=DOCKER_HOST,
        defaults={
            "executor_type": "docker",
            "connection_string": "unix:///var/run/docker.sock",
            "max_concurrent_jobs": 1000,
            "auto_pull_images": False,
        },
    )
    return noop, docker


def new_job(host: Any, command: str = "true", queued: bool = True) -> Any:
    """An unsaved job on ``host``, queued (ready) or pending."""
    from django.utils import timezone

    from container_manager.models import ContainerJob

    now = timezone.now()
    return ContainerJob(
        name="bench",
        host=host,
        image=IMAGE,
        command=command,
        status="queued" if queued else "pending",
        queued_at=now if queued else None,
        created_at=now,
    )


def clear_jobs() -> None:
    """Empty the jobs table (and reset the worker rows)."""
    from django.db import connection

    with connection.cursor() as cursor:
        # CASCADE: the tables that point at jobs (dependencies, build contexts) go too.
        cursor.execute(f"TRUNCATE {JOB_TABLE} CASCADE")
        cursor.execute("DELETE FROM container_manager_worker")
        cursor.execute(f"VACUUM ANALYZE {JOB_TABLE}")


def count_not_done(status: str = "completed") -> int:
    """Jobs not yet in ``status``."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {JOB_TABLE} WHERE status <> %s", [status])
        return int(cursor.fetchone()[0])


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def peak_rss_kb(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process, in KiB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


class WorkerProcess:
    """A ``process_container_jobs --queue-mode`` worker in its own process."""

    def __init__(
        self, index: int, max_concurrent: int, poll: int = 10, queues: str = "", **env: str
    ) -> None:
        self.log = Path(f"/tmp/cm-bench-worker-{os.getpid()}-{index}.log")
        self._out = self.log.open("wb")
        args = [
            PYTHON, "-m", "bench.worker_proc", "--queue-mode",
            "--max-concurrent", str(max_concurrent),
            "--poll-interval", str(int(poll)),
            "--worker-id", f"bench-{index}",
            *(["--queues", queues] if queues else []),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=child_env(**env), stdout=self._out, stderr=subprocess.STDOUT
        )

    def is_ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
        return b" ready (pid " in self.log.read_bytes()[:4000]

    def peak_rss_kb(self) -> int:
        return peak_rss_kb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self.log.unlink(missing_ok=True)


def start_workers(
    count: int, max_concurrent: int, poll: int = 10, own_queues: bool = False, **env: str
) -> list[WorkerProcess]:
    """Start ``count`` workers and wait until every one is idle in its loop.

    With ``own_queues``, worker ``i`` serves only the queue ``q<i>``.
    """
    workers = [
        WorkerProcess(i, max_concurrent, poll, f"q{i}" if own_queues else "", **env)
        for i in range(count)
    ]
    try:
        if not wait_until(lambda: all(w.is_ready() for w in workers), 60, 0.05):
            raise RuntimeError("workers not ready within 60 s")
    except BaseException:
        stop_workers(workers)
        raise
    time.sleep(0.3)  # past the first wait_for_work call, which only starts LISTEN
    return workers


def stop_workers(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.stop()


def run_json(args: list[str], timeout: float, **env: str) -> dict[str, Any]:
    """Run a helper process and return the JSON object of its last output line."""
    done = subprocess.run(
        [PYTHON, *args], cwd=ROOT, env=child_env(**env), capture_output=True, timeout=timeout
    )
    lines = [line for line in done.stdout.decode().splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.decode() or done.stdout.decode())[-600:]
        raise RuntimeError(f"exit {done.returncode}: {tail.strip()}")
    return dict(json.loads(lines[-1]))
