from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = StringIO()
    try:
        call_command("makemigrations", "container_manager", "--check", "--dry-run", stdout=out)
    except SystemExit as exc:  # makemigrations --check exits 1 when changes are missing
        pytest.fail(
            f"makemigrations --check found missing migrations (exit {exc.code}):\n{out.getvalue()}"
        )
    assert "No changes detected" in out.getvalue()
