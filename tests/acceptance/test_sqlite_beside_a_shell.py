"""The embedded default: one worker on SQLite while a shell writes beside it, out of the box.

Nothing in the project's settings tunes SQLite (the demo's settings set no
``OPTIONS``): the worker and the shell must wait for each other's write
lock instead of failing with "database is locked".
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.acceptance.worker_process import ROOT, WorkerProcess, wait_until, worker_env

JOBS = 60

SHELL = f"""
from django.db import transaction
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
host = ExecutorHost.objects.get(name="local")
for n in range({JOBS}):
    with transaction.atomic():
        # Read, then write, in one transaction: what fails at once on SQLite
        # when another process wrote in between, unless it began IMMEDIATE.
        ExecutorHost.objects.filter(pk=host.pk).exists()
        job = ContainerJob.objects.create(
            name=f"shell-{{n}}", command=f"echo {{n}}", is_shell_command=True, host=host
        )
        queue_manager.queue_job(job)
print("queued", {JOBS})
"""


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute(
            "SELECT status, COUNT(*) FROM container_manager_containerjob GROUP BY status"
        ).fetchall()
    return dict(rows)


def test_one_worker_and_a_shell_share_sqlite_without_lock_errors(tmp_path):
    path = tmp_path / "db.sqlite3"
    env = worker_env(DATABASE_URL=f"sqlite:///{path}")
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(
        env,
        "shell",
        "-c",
        "from container_manager.models import ExecutorHost; "
        f"ExecutorHost.objects.create(name='local', executor_type='process', "
        f"max_concurrent_jobs=8, executor_config={{'output_dir': '{tmp_path}'}})",
    )
    worker = WorkerProcess(
        "--worker-id=sqlite-worker", "--max-concurrent=8", DATABASE_URL=env["DATABASE_URL"]
    )
    try:
        worker.wait_ready(30)
        shell_output = manage(env, "shell", "-c", SHELL, timeout=240)
        assert f"queued {JOBS}" in shell_output
        wait_until(
            lambda: counts(path).get("completed", 0) == JOBS,
            180,
            interval=0.5,
            what=f"{JOBS} jobs completed",
        )
        assert "database is locked" not in worker.output, worker.output
        assert "database is locked" not in shell_output
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(30) == 0
    finally:
        worker.stop()
    assert "database is locked" not in worker.output
