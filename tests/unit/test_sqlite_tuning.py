"""Each SQLite connection is tuned for a worker beside a shell unless the project opts out."""

from __future__ import annotations

import pytest
from django.db.backends.sqlite3.base import DatabaseWrapper
from django.test import override_settings

from container_manager.conf import settings as cm_settings


@pytest.fixture(autouse=True)
def _own_connections(django_db_blocker):
    """These tests open connections of their own, to files of their own."""
    with django_db_blocker.unblock():
        yield


def open_sqlite(path, **options):
    wrapper = DatabaseWrapper(
        {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": options,
            "TIME_ZONE": None,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "AUTOCOMMIT": True,
            "ATOMIC_REQUESTS": False,
            "TEST": {},
            "USER": "",
            "PASSWORD": "",
            "HOST": "",
            "PORT": "",
        },
        alias="tuning-test",
    )
    wrapper.ensure_connection()
    return wrapper


def pragma(wrapper, name):
    with wrapper.cursor() as cursor:
        cursor.execute(f"PRAGMA {name}")
        return cursor.fetchone()[0]


def test_a_new_sqlite_connection_waits_for_the_lock_and_begins_immediate(tmp_path):
    wrapper = open_sqlite(tmp_path / "db.sqlite3")
    try:
        assert pragma(wrapper, "busy_timeout") == 20000
        assert pragma(wrapper, "journal_mode") == "wal"
        assert wrapper.transaction_mode == "IMMEDIATE"
    finally:
        wrapper.close()


def test_the_projects_own_options_win(tmp_path):
    wrapper = open_sqlite(tmp_path / "db.sqlite3", timeout=2, transaction_mode="EXCLUSIVE")
    try:
        assert pragma(wrapper, "busy_timeout") == 2000
        assert wrapper.transaction_mode == "EXCLUSIVE"
    finally:
        wrapper.close()


def test_the_tuning_can_be_turned_off(tmp_path):
    with override_settings(CONTAINER_MANAGER={"SQLITE_TUNING": False}):
        assert cm_settings.SQLITE_TUNING is False
        wrapper = open_sqlite(tmp_path / "db.sqlite3")
        try:
            assert pragma(wrapper, "busy_timeout") == 5000  # Python's default
            assert pragma(wrapper, "journal_mode") == "delete"
            assert wrapper.transaction_mode is None
        finally:
            wrapper.close()


def test_a_tuning_setting_that_is_not_a_boolean_is_reported():
    from container_manager.checks import check_settings

    with override_settings(CONTAINER_MANAGER={"SQLITE_TUNING": "no"}):
        [problem] = check_settings()
    assert "SQLITE_TUNING" in problem.msg
