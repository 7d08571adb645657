"""Runs under django-container-manager 1.0.x (a scratch virtual environment), not this package.

``python old_release.py`` migrates the database named in ``DATABASE_URL``
with 1.0.x's own migrations, then makes hosts, a template and one job in
every 1.0.x status through 1.0.x's own API, and prints them as JSON: what
the upgrade test expects to find after ``migrate`` with this package.
"""

import json
import os
import sys
from urllib.parse import urlsplit

import django
from django.conf import settings


def database() -> dict:
    url = urlsplit(os.environ["DATABASE_URL"])
    if url.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.path}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
    }


settings.configure(
    SECRET_KEY="old-release",
    USE_TZ=True,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "container_manager",
    ],
    DATABASES={"default": database()},
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from datetime import timedelta  # noqa: E402

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from container_manager.models import (  # noqa: E402
    ContainerJob,
    EnvironmentVariableTemplate,
    ExecutorHost,
)

IMAGE = sys.argv[1]
DOCKER_URL = sys.argv[2]

call_command("migrate", verbosity=0)
user = User.objects.create_user("old-admin")
docker = ExecutorHost.objects.create(
    name="old-docker",
    host_type="unix",
    connection_string=DOCKER_URL,
    executor_type="docker",
    executor_config={"default_network": "none"},
    max_concurrent_jobs=4,
    weight=250,
    auto_pull_images=False,
)
tls = ExecutorHost.objects.create(
    name="old-tls",
    host_type="tcp",
    connection_string="tcp://10.0.0.9:2376",
    tls_enabled=True,
    tls_verify=True,
    is_active=False,
)
cloud = ExecutorHost.objects.create(
    name="old-cloudrun",
    host_type="tcp",
    connection_string="https://run.example",
    executor_type="cloudrun",
    executor_config={"project": "p", "region": "r"},
)
template = EnvironmentVariableTemplate.objects.create(
    name="old-template",
    description="made by 1.0.x",
    environment_variables_text="FROM_TEMPLATE=yes\nSHARED=template",
    created_by=user,
)

now = timezone.now()
jobs = {}
for n, status in enumerate(
    [
        "pending",
        "queued",
        "launching",
        "running",
        "completed",
        "failed",
        "timeout",
        "cancelled",
        "retrying",
    ]
):
    job = ContainerJob.objects.create_job(
        image=IMAGE,
        command=f"echo upgraded-{status}",
        name=f"old-{status}",
        environment_template="old-template",
        environment_vars={"SHARED": "job", "STATUS": status},
        docker_host=docker,
        description=f"a {status} job",
        memory_limit=64,
        cpu_limit=0.5,
        timeout_seconds=120 + n,
        network_configuration=[{"network_name": "none", "aliases": []}],
        priority=40 + n,
        created_by=user,
    )
    if status == "queued":
        job.mark_as_queued()
    fields = {"status": status}
    if status in ("launching", "running", "completed", "failed", "timeout", "cancelled"):
        fields.update(execution_id=f"c0ffee{n:02d}", launched_at=now - timedelta(minutes=5))
    if status in ("running", "completed", "failed", "timeout"):
        fields["started_at"] = now - timedelta(minutes=4)
    if status in ("completed", "failed", "timeout", "cancelled"):
        fields.update(
            completed_at=now - timedelta(minutes=1),
            exit_code={"completed": 0, "failed": 3, "timeout": 137}.get(status),
            stdout_log=f"out of {status}\n",
            stderr_log=f"err of {status}\n" if status != "completed" else "",
            docker_log="engine log",
            clean_output=f"out of {status}",
            executor_metadata={"container_name": f"job-{n}"},
            max_memory_usage=1048576,
            cpu_usage_percent=12.5,
        )
    if status == "failed":
        fields.update(last_error="boom", last_error_at=now, retry_count=1)
    if status == "retrying":
        fields.update(
            retry_count=1,
            last_error="pull failed",
            last_error_at=now,
            queued_at=now - timedelta(seconds=30),
        )
    ContainerJob.objects.filter(pk=job.pk).update(**fields)
    jobs[status] = str(job.pk)

print(
    json.dumps(
        {
            "hosts": {h.name: h.pk for h in ExecutorHost.objects.all()},
            "template": template.pk,
            "jobs": jobs,
            "user": user.pk,
        }
    )
)
