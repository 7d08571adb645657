"""The no-op task of the django-tasks-db measurement (imported by its worker)."""

from __future__ import annotations

from django_tasks import task


@task()
def noop() -> None:
    """Do nothing."""
    return None
