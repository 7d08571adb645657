"""The real parts the suite relies on are there (fails under CI when one is missing)."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_answers_a_query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        (version,) = cursor.fetchone()
    assert version.startswith("PostgreSQL")
