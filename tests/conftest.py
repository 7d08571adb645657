"""Shared fixtures.

Tests marked ``postgres`` or ``docker`` need the real part. Without it they
are skipped on a developer's machine and fail when ``CI`` is set: under CI a
missing part is a failure, never a skip.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.docker_fixtures"]

IS_CI = bool(os.environ.get("CI"))

#: Tests whose point does not depend on Django's version and that take most
#: of the suite's time: real worker processes killed and restarted, fault
#: injection, thousands of claims, the Docker engine's image work, wheels
#: built and installed. They carry the ``once`` marker; scripts/test.sh runs
#: them in its first pass (Django 5.2), and its Django 6.0 pass leaves them
#: out (``-m "not once"``). Everything else runs on both.
ONCE = (
    "tests/acceptance/test_worker_process.py",
    "tests/acceptance/test_database_outage.py",
    "tests/acceptance/test_timeouts.py",
    "tests/acceptance/test_schedule_exactly_once.py",
    "tests/acceptance/test_arrays_and_chains.py",
    "tests/acceptance/test_sqlite_beside_a_shell.py",
    "tests/chaos/test_short_run.py",
    "tests/integration/test_queue_concurrency.py",
    "tests/integration/test_image_ops_docker.py",
    "tests/integration/test_image_tasks_docker.py",
    "tests/docs/test_quickstart.py",
    "tests/docs/test_package.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`ONCE` ``once``."""
    root = str(config.rootpath)
    for item in items:
        path = str(item.path).removeprefix(root).lstrip("/")
        if path in ONCE:
            item.add_marker(pytest.mark.once)


def missing_part(what: str) -> None:
    """Fail under CI, skip elsewhere, saying which part is missing."""
    if IS_CI:
        pytest.fail(f"{what} is required under CI but is not available", pytrace=False)
    pytest.skip(f"{what} is not available")


@pytest.fixture(autouse=True)
def _require_parts(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres"):
        from django.db import connection

        if connection.vendor != "postgresql":
            missing_part("PostgreSQL (set DATABASE_URL=postgres://...)")
