"""The upgrade of a 1.0.x database: how its rows become 2.x rows.

Migration ``0003_version_2`` calls these on every host and job of a
database made by django-container-manager 1.0.x (docs/migration-guide.md,
"What the upgrade does with your rows"). They are plain functions of a
row's values, so that the mapping is tested on its own and the migration
stays a loop.

Nothing is dropped: a 1.0.x job keeps its old UUID in ``legacy_id`` and the
1.0.x values that 2.x has no field for in ``legacy_data``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError

from container_manager.environment import parse_env_text
from container_manager.states import JobStatus

#: The executor types 2.x runs. 1.0.x hosts of other types (``cloudrun``,
#: ``fargate``, ``scaleway``) are kept, but made inactive.
RUNNABLE_EXECUTOR_TYPES = ("docker", "process")

#: The error code given to jobs that were ``launching`` or ``running`` under
#: 1.0.x when the database was upgraded: 2.x cannot follow a container that
#: 1.0.x started, and will not start the job a second time on its own.
UPGRADE_INTERRUPTED = "UPGRADE_INTERRUPTED"

#: 1.0.x job columns that 2.x has no field for; their values go to
#: ``legacy_data`` (empty values are left out).
LEGACY_ONLY_FIELDS = (
    "description",
    "executor_metadata",
    "max_memory_usage",
    "cpu_usage_percent",
    "docker_log",
    "clean_output",
    "updated_at",
    "created_by_id",
    "network_configuration",
)

#: Columns that only a 1.0.x job table has, and one that only a 2.x one has:
#: how the migrations tell the schema they are given.
V1_JOB_COLUMNS = frozenset({"docker_image", "docker_host_id", "execution_id", "stdout_log"})
V2_JOB_COLUMNS = frozenset({"image", "host_id", "container_id", "stdout"})

_STATUSES = {
    "pending": JobStatus.PENDING,
    "queued": JobStatus.QUEUED,
    "retrying": JobStatus.RETRYING,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "timeout": JobStatus.TIMEOUT,
    "cancelled": JobStatus.CANCELLED,
}


class UnknownSchemaError(RuntimeError):
    """The database's tables are not those the recorded migrations say."""


def check_v1_job_table(columns: set[str], table: str) -> None:
    """Refuse to go on unless ``table`` has 1.0.x's job columns.

    Args:
        columns: The table's column names, as the database reports them.
        table: Its name, for the message.

    Raises:
        UnknownSchemaError: The table is missing, or has another shape.
    """
    if not columns:
        raise UnknownSchemaError(
            f"The database records container_manager's 1.0.x migrations as applied, but it has "
            f"no {table} table. Nothing was changed. Restore the database from a backup made "
            f"with 1.0.x, or start from an empty database (docs/migration-guide.md)."
        )
    if columns >= V1_JOB_COLUMNS:
        return
    if columns >= V2_JOB_COLUMNS:
        raise UnknownSchemaError(
            f"{table} already has 2.x's columns, but the database records only 1.0.x's "
            f"migrations: it was made by a development build of 2.0 whose migrations have "
            f"other names. Nothing was changed. Recreate it with `migrate` on an empty "
            f"database (docs/migration-guide.md, 'A database this version does not know')."
        )
    missing = ", ".join(sorted(V1_JOB_COLUMNS - columns))
    raise UnknownSchemaError(
        f"{table} does not have the columns of django-container-manager 1.0.x (missing: "
        f"{missing}). Nothing was changed (docs/migration-guide.md, 'A database this version "
        f"does not know')."
    )


def check_no_tables(tables: set[str], table: str) -> None:
    """Refuse a first migration over tables that are already there.

    Raises:
        UnknownSchemaError: ``table`` exists although no migration of the app is recorded.
    """
    if table in tables:
        raise UnknownSchemaError(
            f"{table} already exists, but the database records no container_manager "
            f"migration (was django_migrations emptied, or `migrate --fake` used?). Nothing "
            f"was changed (docs/migration-guide.md, 'A database this version does not know')."
        )


def host_changes(
    executor_type: str, tls_enabled: bool, tls_verify: bool, config: Any
) -> dict[str, Any]:
    """The 2.x values of a 1.0.x host's ``executor_config`` and ``is_active``.

    1.0.x's ``tls_enabled`` and ``tls_verify`` become ``executor_config["tls"]``
    (``{"verify": ...}``, as 1.0.x used no certificates of its own); a host of
    an executor type that 2.x does not run is made inactive.

    Returns:
        The fields to update: ``executor_config``, and ``is_active`` when it must be False.
    """
    new_config = dict(config) if isinstance(config, dict) else {"1.0.x": config}
    if tls_enabled and not new_config.get("tls"):
        new_config["tls"] = {"verify": bool(tls_verify)}
    changes: dict[str, Any] = {"executor_config": new_config}
    if executor_type not in RUNNABLE_EXECUTOR_TYPES:
        changes["is_active"] = False
    return changes


def _environment(text: str) -> tuple[dict[str, str], str]:
    """The variables of 1.0.x's ``override_environment``, and the lines that did not parse."""
    try:
        return parse_env_text(text or ""), ""
    except ValidationError:
        pass
    good: dict[str, str] = {}
    bad: list[str] = []
    for line in (text or "").splitlines():
        try:
            good.update(parse_env_text(line))
        except ValidationError:
            bad.append(line)
    return good, "\n".join(bad)


def _network(value: Any) -> tuple[str, bool]:
    """The first network of 1.0.x's ``network_configuration``; True when that is all of it."""
    if not value:
        return "", True
    if isinstance(value, list) and value and isinstance(value[0], dict):
        name = value[0].get("network_name")
        if isinstance(name, str):
            whole = len(value) == 1 and not value[0].get("aliases")
            return name[:200], whole
    return "", False


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def job_fields(old: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The 2.x fields of one 1.0.x job.

    Args:
        old: The 1.0.x row's values, by column attribute name (``docker_host_id``, ...).
        now: The time of the upgrade.

    Returns:
        Keyword arguments for a 2.x ``ContainerJob``.

    A job ``launching`` or ``running`` under 1.0.x is recorded ``failed`` with
    :data:`UPGRADE_INTERRUPTED`: its container (``container_id``) may still be
    running, unfollowed, and only its owner knows whether running it again is
    safe (``retry_failed_job``). Every other status keeps its meaning.
    """
    status = old["status"]
    environment, unparsed = _environment(old.get("override_environment") or "")
    network, network_whole = _network(old.get("network_configuration"))
    legacy: dict[str, Any] = {}
    for name in LEGACY_ONLY_FIELDS:
        value = old.get(name)
        if name == "network_configuration" and network_whole:
            continue
        if value not in (None, "", {}, []):
            legacy[name] = _json_value(value)
    if unparsed:
        legacy["override_environment"] = old.get("override_environment")
    max_retries = old.get("max_retries")
    retry_count = max(int(old.get("retry_count") or 0), 0)
    launched = bool(old.get("launched_at") or old.get("started_at") or old.get("execution_id"))
    fields: dict[str, Any] = {
        "legacy_id": old["id"],
        "legacy_data": legacy,
        "name": old.get("name") or "",
        "host_id": old.get("docker_host_id"),
        "image": old.get("docker_image") or "",
        "command": old.get("command") or "",
        "working_directory": old.get("working_directory") or "",
        "environment": environment,
        "environment_template_id": old.get("environment_template_id"),
        "memory_limit_mb": old.get("memory_limit") or None,
        "cpu_limit_cores": old.get("cpu_limit") or None,
        "timeout_seconds": max(int(old.get("timeout_seconds") or 1), 1),
        "network": network,
        "status": _STATUSES.get(status, JobStatus.FAILED),
        "created_at": old.get("created_at") or now,
        "started_at": old.get("started_at"),
        "completed_at": old.get("completed_at"),
        "exit_code": old.get("exit_code"),
        "container_id": (old.get("execution_id") or "")[:100],
        "stdout": old.get("stdout_log") or "",
        "stderr": old.get("stderr_log") or "",
        "priority": min(max(int(old.get("priority", 50)), 0), 100),
        "queued_at": old.get("queued_at"),
        "scheduled_for": old.get("scheduled_for"),
        "launched_at": old.get("launched_at"),
        "retry_count": retry_count,
        "max_retries": max(int(max_retries), 1) if max_retries is not None else None,
        "last_error": old.get("last_error") or "",
        "last_error_at": old.get("last_error_at"),
        "attempt": retry_count + (1 if launched else 0),
    }
    if old.get("retry_strategy"):
        fields["retry_strategy"] = old["retry_strategy"]
    if fields["status"] in (JobStatus.QUEUED, JobStatus.RETRYING) and fields["queued_at"] is None:
        # 2.x orders ready jobs by queued_at; 1.0.x could leave it empty.
        fields["queued_at"] = fields["created_at"]
    if fields["status"] == JobStatus.COMPLETED:
        fields["progress"] = 100
    if status in ("launching", "running"):
        fields["error_code"] = UPGRADE_INTERRUPTED
        fields["last_error"] = (
            f"This job was {status} under django-container-manager 1.0.x when the database was "
            f"upgraded. 2.x does not follow containers that 1.0.x started"
            + (f" (container {fields['container_id']})" if fields["container_id"] else "")
            + "; check whether it ran, then retry it if it must run again."
        )
        fields["last_error_at"] = now
        fields["completed_at"] = fields["completed_at"] or now
    elif status not in _STATUSES:
        fields["error_code"] = UPGRADE_INTERRUPTED
        fields["last_error"] = f"Status {status!r} of 1.0.x is not known to 2.x."
        fields["last_error_at"] = now
        fields["completed_at"] = fields["completed_at"] or now
        legacy["status"] = status
    return fields
