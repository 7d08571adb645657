"""Task functions the tasks backend's tests enqueue; imported again inside each container."""

from __future__ import annotations

import os

from container_manager.tasks.compat import FRAMEWORK

if FRAMEWORK == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task

BACKEND = "containers"


@task(backend=BACKEND)
def add(a: int, b: int) -> int:
    return a + b


@task(backend=BACKEND)
def boom(message: str) -> None:
    raise ValueError(message)


@task(backend=BACKEND, takes_context=True)
def who_am_i(context) -> dict:
    return {
        "id": context.task_result.id,
        "attempt": context.attempt,
        "job_id": os.environ["CM_JOB_ID"],
    }


@task(backend=BACKEND)
def count_hosts() -> int:
    from container_manager.models import ExecutorHost

    return ExecutorHost.objects.count()


@task(backend=BACKEND)
async def add_later(a: int, b: int) -> int:
    return a + b
