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
