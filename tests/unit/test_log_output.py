"""The worker command's log: one line per event, with time, level and ids; JSON for log systems."""

from __future__ import annotations

import json
import logging
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from container_manager.management.log_output import JsonFormatter, TextFormatter, configure
from container_manager.models import ExecutorHost
from container_manager.queue import queue_manager


def record(message: str, **extra) -> logging.LogRecord:
    rec = logging.LogRecord(
        "container_manager.x", logging.WARNING, __file__, 1, message, None, None
    )
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_text_lines_carry_time_level_and_ids():
    line = TextFormatter().format(record("Launch failed", worker_id="w1", job_id=7, attempt=2))
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(stamp + r" WARNING Launch failed \[worker=w1 job=7 attempt=2\]", line)


def test_json_lines_are_objects_with_the_ids():
    entry = json.loads(
        JsonFormatter().format(record("x", job_id=7, error_code="DOCKER_PULL_FAILED"))
    )
    assert entry["level"] == "WARNING"
    assert (entry["job_id"], entry["error_code"], entry["message"]) == (
        7,
        "DOCKER_PULL_FAILED",
        "x",
    )
    assert "attempt" not in entry


def test_configure_owns_the_loggers_and_puts_them_back():
    root = logging.getLogger("container_manager")
    before = (list(root.handlers), root.propagate, root.level)
    out = StringIO()
    restore = configure("json", out, "w9", logging.INFO)
    logging.getLogger("container_manager.queue").info("hello")
    restore()
    assert (list(root.handlers), root.propagate, root.level) == before
    assert json.loads(out.getvalue())["worker_id"] == "w9"
    with pytest.raises(ValueError, match="--log-format"):
        configure("xml", out, "w9", logging.INFO)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failed_launch_is_one_line_and_once_exits_3():
    host = ExecutorHost.objects.create(
        name="mock-log", executor_type="mock", executor_config={"run_seconds": 0}
    )
    good = queue_manager.create_and_queue(command="echo hi", host=host)
    # A host whose executor type nobody runs: the launch fails for good.
    ExecutorHost.objects.filter(pk=host.pk).update(executor_type="scaleway")
    from container_manager.executors import close_executors

    close_executors()
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(
            "process_container_jobs", "--queue-mode", "--once", "--log-format", "json", stdout=out
        )
    assert caught.value.returncode == 3
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    failures = [e for e in entries if e["message"].startswith(f"Launch of job {good.pk} failed")]
    assert len(failures) == 1, entries
    assert failures[0]["level"] == "ERROR"
    assert failures[0]["error_code"] == "CONFIGURATION_ERROR"
    assert failures[0]["job_id"] == good.pk
    assert all(e["worker_id"] for e in entries)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_once_says_how_many_jobs_it_launched_in_words():
    host = ExecutorHost.objects.create(
        name="mock-one", executor_type="mock", executor_config={"run_seconds": 0}
    )
    queue_manager.create_and_queue(command="echo hi", host=host)
    out = StringIO()
    call_command("process_container_jobs", "--queue-mode", "--once", stdout=out)
    assert "Processed queue: launched 1 job [" in out.getvalue()


@pytest.mark.django_db
def test_version_is_the_packages_and_minus_v_2_is_verbose(monkeypatch):
    import subprocess
    import sys

    import container_manager
    from tests.acceptance.worker_process import ROOT

    for command in ("process_container_jobs", "queue_status"):
        done = subprocess.run(
            [sys.executable, "manage.py", command, "--version"],
            cwd=ROOT,
            env={**__import__("os").environ, "DATABASE_URL": "sqlite:///:memory:"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == container_manager.__version__
    root = logging.getLogger("container_manager")
    monkeypatch.setattr(root, "level", root.level)
    call_command(
        "process_container_jobs", "--queue-mode", "--dry-run", "-v", "2", stdout=StringIO()
    )
    assert root.level == logging.DEBUG
