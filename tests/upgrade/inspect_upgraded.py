"""Runs under this package on an upgraded database: prints what the upgrade test checks, as JSON.

``python -m tests.upgrade.inspect_upgraded`` (``DATABASE_URL`` and
``DJANGO_SETTINGS_MODULE`` set) prints the hosts, templates and jobs, and
the status code of the admin's pages for each; ``--queue NAME`` first
queues the job of that name with ``queue_manager``.
"""

from __future__ import annotations

import json
import sys

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from container_manager.models import (  # noqa: E402
    ContainerJob,
    EnvironmentVariableTemplate,
    ExecutorHost,
)
from container_manager.queue import queue_manager  # noqa: E402

JOB_FIELDS = (
    "id",
    "legacy_id",
    "legacy_data",
    "name",
    "status",
    "error_code",
    "last_error",
    "image",
    "command",
    "environment",
    "environment_template_id",
    "host_id",
    "memory_limit_mb",
    "cpu_limit_cores",
    "timeout_seconds",
    "network",
    "priority",
    "retry_count",
    "max_retries",
    "attempt",
    "exit_code",
    "container_id",
    "stdout",
    "stderr",
    "queued_at",
    "started_at",
    "completed_at",
    "created_at",
)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--queue"]:
        queue_manager.queue_job(ContainerJob.objects.get(name=args[1]))
        return
    admin, _ = User.objects.get_or_create(
        username="upgrade-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)
    pages = {
        "jobs": client.get(reverse("admin:container_manager_containerjob_changelist")).status_code,
        "hosts": client.get(reverse("admin:container_manager_executorhost_changelist")).status_code,
        "templates": client.get(
            reverse("admin:container_manager_environmentvariabletemplate_changelist")
        ).status_code,
        "stats": client.get(
            reverse("admin:container_manager_containerjob_queue_stats")
        ).status_code,
    }
    jobs = {}
    for job in ContainerJob.objects.order_by("id").values(*JOB_FIELDS):
        page = client.get(reverse("admin:container_manager_containerjob_change", args=[job["id"]]))
        job["page"] = page.status_code
        job["page_shows_legacy_id"] = str(job["legacy_id"]) in page.content.decode()
        jobs[job["name"]] = job
    hosts = {}
    for host in ExecutorHost.objects.values():
        page = client.get(reverse("admin:container_manager_executorhost_change", args=[host["id"]]))
        host["page"] = page.status_code
        hosts[host["name"]] = host
    templates = {t["name"]: t for t in EnvironmentVariableTemplate.objects.values()}
    print(
        json.dumps(
            {"pages": pages, "jobs": jobs, "hosts": hosts, "templates": templates}, default=str
        )
    )


if __name__ == "__main__":
    main()
