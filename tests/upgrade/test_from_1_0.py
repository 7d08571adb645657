"""An upgrade in place from django-container-manager 1.0.14 (its real wheel), PostgreSQL and SQLite.

The old database is made by 1.0.14 itself: its wheel from PyPI is installed
in a scratch virtual environment, whose Python runs ``old_release.py``
(1.0.14's ``migrate``, then hosts, a template and a job in every 1.0.x
status through 1.0.14's API). This package's ``migrate`` then upgrades it,
``inspect_upgraded.py`` reads back every row and the admin's pages, and a
real worker runs the jobs that were waiting, in containers on the real
Docker engine.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.acceptance.worker_process import WorkerProcess, remove_containers, wait_until
from tests.conftest import missing_part
from tests.docker_fixtures import DOCKER_URL

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OLD_RELEASE = "1.0.14"

pytestmark = [pytest.mark.postgres, pytest.mark.docker]


@pytest.fixture(scope="session")
def old_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Python of a scratch virtual environment with django-container-manager 1.0.14."""
    where = tmp_path_factory.mktemp("release-1.0")
    venv.create(where, with_pip=True)
    python = str(where / "bin" / "python")
    done = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"django-container-manager=={OLD_RELEASE}",
            "psycopg[binary]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        missing_part(
            f"django-container-manager {OLD_RELEASE} from PyPI ({done.stderr.strip()[-500:]})"
        )
    return python


def _pg_server() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        missing_part("PostgreSQL (set DATABASE_URL=postgres://...)")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(params=["postgres", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database of that kind, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
        return
    import psycopg

    server = _pg_server()
    name = f"cm_upgrade_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ours(url: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run this package's Python (a module or manage.py) on the database at ``url``."""
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="tests.settings_fast")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def make_old_database(old_python: str, url: str, image: str) -> dict:
    env = dict(os.environ, DATABASE_URL=url)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [old_python, str(HERE / "old_release.py"), image, DOCKER_URL],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def inspect(url: str) -> dict:
    done = ours(url, "-m", "tests.upgrade.inspect_upgraded")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_sql(url: str, statement: str) -> list[tuple]:
    if url.startswith("sqlite"):
        with sqlite3.connect(urlsplit(url).path) as db:
            return db.execute(statement).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(statement)
        return cursor.fetchall() if cursor.description else []


def test_migrate_upgrades_a_1_0_14_database_keeping_every_row_and_runs_its_waiting_jobs(
    old_python, empty_database, docker_engine, test_image
):
    url = empty_database
    old = make_old_database(old_python, url, test_image)

    migrated = ours(url, "manage.py", "migrate", "--noinput")

    assert migrated.returncode == 0, migrated.stderr
    assert "Applying container_manager.0001_initial" not in migrated.stdout
    assert "Applying container_manager.0003_version_2" in migrated.stdout
    assert (
        "Upgraded 9 job(s) of 1.0.x; 2 were launching or running and are now failed "
        "with UPGRADE_INTERRUPTED" in migrated.stdout
    )
    state = inspect(url)
    assert state["pages"] == {"jobs": 200, "hosts": 200, "templates": 200, "stats": 200}

    # Hosts keep their ids and settings; TLS moves into executor_config.
    hosts = state["hosts"]
    assert {name: h["id"] for name, h in hosts.items()} == old["hosts"]
    docker = hosts["old-docker"]
    assert (docker["executor_type"], docker["connection_string"], docker["is_active"]) == (
        "docker",
        DOCKER_URL,
        True,
    )
    assert (docker["max_concurrent_jobs"], docker["weight"], docker["auto_pull_images"]) == (
        4,
        250,
        False,
    )
    assert hosts["old-tls"]["executor_config"] == {"tls": {"verify": True}}
    assert hosts["old-tls"]["is_active"] is False
    assert (hosts["old-cloudrun"]["executor_type"], hosts["old-cloudrun"]["is_active"]) == (
        "cloudrun",
        False,
    )
    assert {h["page"] for h in hosts.values()} == {200}
    template = state["templates"]["old-template"]
    assert template["id"] == old["template"]
    assert template["environment_variables_text"] == "FROM_TEMPLATE=yes\nSHARED=template"

    # Every job, found by its old UUID, with its fields mapped.
    jobs = state["jobs"]
    assert {name.removeprefix("old-"): j["legacy_id"] for name, j in jobs.items()} == old["jobs"]
    assert [j["name"] for j in sorted(jobs.values(), key=lambda j: j["id"])] == [
        f"old-{s}" for s in old["jobs"]
    ], "ids follow the order the jobs were made in"
    expected_status = {
        "pending": "pending",
        "queued": "queued",
        "launching": "failed",
        "running": "failed",
        "completed": "completed",
        "failed": "failed",
        "timeout": "timeout",
        "cancelled": "cancelled",
        "retrying": "retrying",
    }
    assert {n.removeprefix("old-"): j["status"] for n, j in jobs.items()} == expected_status
    for n, (status, job) in enumerate((s, jobs[f"old-{s}"]) for s in old["jobs"]):
        assert job["page"] == 200, status
        assert job["page_shows_legacy_id"], status
        assert job["image"] == test_image
        assert job["command"] == f"echo upgraded-{status}"
        assert job["environment"] == {"FROM_TEMPLATE": "yes", "SHARED": "job", "STATUS": status}
        assert job["environment_template_id"] == old["template"]
        assert job["host_id"] == old["hosts"]["old-docker"]
        assert (job["memory_limit_mb"], job["cpu_limit_cores"], job["timeout_seconds"]) == (
            64,
            0.5,
            120 + n,
        )
        assert (job["network"], job["priority"]) == ("none", 40 + n)
        assert job["legacy_data"]["description"] == f"a {status} job"
        assert job["legacy_data"]["created_by_id"] == old["user"]
        assert "network_configuration" not in job["legacy_data"], "one network is all of it"
    for status in ("completed", "failed", "timeout", "cancelled"):
        job = jobs[f"old-{status}"]
        assert job["stdout"] == f"out of {status}\n"
        assert job["completed_at"]
        assert job["container_id"].startswith("c0ffee")
        assert job["legacy_data"]["docker_log"] == "engine log"
        assert job["legacy_data"]["max_memory_usage"] == 1048576
    assert [jobs[f"old-{s}"]["exit_code"] for s in ("completed", "failed", "timeout")] == [
        0,
        3,
        137,
    ]
    assert (jobs["old-failed"]["last_error"], jobs["old-failed"]["retry_count"]) == ("boom", 1)
    for status in ("launching", "running"):
        job = jobs[f"old-{status}"]
        assert job["error_code"] == "UPGRADE_INTERRUPTED"
        assert f"was {status} under django-container-manager 1.0.x" in job["last_error"]
        assert job["container_id"] in job["last_error"]
    assert jobs["old-retrying"]["queued_at"]
    assert jobs["old-queued"]["queued_at"]

    # A worker runs the jobs that were waiting: queued, retrying, and pending once queued.
    assert (
        ours(url, "-m", "tests.upgrade.inspect_upgraded", "--queue", "old-pending").returncode == 0
    )
    waiting = [jobs[f"old-{s}"]["id"] for s in ("pending", "queued", "retrying")]
    worker = WorkerProcess("--worker-id=after-upgrade", DATABASE_URL=url)
    try:
        worker.wait_ready(30)

        def ran() -> bool:
            done = inspect(url)["jobs"]
            return all(
                done[f"old-{s}"]["status"] == "completed" for s in ("pending", "queued", "retrying")
            )

        wait_until(ran, 60, 0.5, what="the upgraded waiting jobs completed")
    finally:
        worker.stop()
        remove_containers(docker_engine, waiting)
    after = inspect(url)["jobs"]
    for status in ("pending", "queued", "retrying"):
        assert after[f"old-{status}"]["stdout"] == f"upgraded-{status}\n"
    # Nothing else was started: the jobs 1.0.x had launched stay as the upgrade left them.
    for status in ("launching", "running", "completed", "failed", "timeout", "cancelled"):
        assert after[f"old-{status}"]["status"] == jobs[f"old-{status}"]["status"]


def test_migrate_on_a_fresh_database_needs_nothing_else(empty_database):
    done = ours(empty_database, "manage.py", "migrate", "--noinput")
    assert done.returncode == 0, done.stderr
    assert "Upgraded" not in done.stdout
    state = inspect(empty_database)
    assert state["jobs"] == {}
    assert state["pages"]["jobs"] == 200


def _migrated(url: str) -> None:
    done = ours(url, "manage.py", "migrate", "--noinput")
    assert done.returncode == 0, done.stderr
    run_sql(
        url,
        "INSERT INTO container_manager_executorhost (name, executor_type, connection_string, "
        "executor_config, is_active, is_paused, max_concurrent_jobs, weight, auto_pull_images, "
        "health_status, health_error, created_at, updated_at) VALUES ('kept', 'process', '', "
        "'{}', true, false, 1, 100, false, 'unknown', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )


def _tables(url: str) -> list[str]:
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if url.startswith("sqlite")
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    return sorted(row[0] for row in run_sql(url, query) if row[0].startswith("container_manager"))


@pytest.mark.parametrize(
    ("recorded", "message"),
    [
        pytest.param(
            [],
            "already exists, but the database records no container_manager migration",
            id="tables-without-migrations",
        ),
        pytest.param(
            ["0001_initial"],
            "already has 2.x's columns, but the database records only 1.0.x's migrations",
            id="2.x-tables-recorded-as-1.0",
        ),
    ],
)
def test_a_database_this_version_does_not_know_is_refused_and_left_as_it_was(
    empty_database, recorded, message
):
    url = empty_database
    _migrated(url)
    before = _tables(url)
    run_sql(url, "DELETE FROM django_migrations WHERE app = 'container_manager'")
    for name in recorded:
        run_sql(
            url,
            "INSERT INTO django_migrations (app, name, applied) "
            f"VALUES ('container_manager', '{name}', CURRENT_TIMESTAMP)",
        )

    done = ours(url, "manage.py", "migrate", "--noinput")

    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-2000:]
    assert "Nothing was changed" in done.stderr
    assert _tables(url) == before
    assert run_sql(url, "SELECT name FROM container_manager_executorhost") == [("kept",)]
    recorded_now = run_sql(
        url, "SELECT name FROM django_migrations WHERE app = 'container_manager' ORDER BY name"
    )
    assert [row[0] for row in recorded_now] == recorded
