"""A backend for Django's tasks framework that runs each task in a container of its own.

``TASKS = {"default": {"BACKEND": "container_manager.tasks.ContainerBackend", ...}}``
makes ``@task`` functions queue jobs: ``my_task.enqueue(...)`` creates a
queued ``ContainerJob`` whose container runs ``python -m container_manager.tasks``
in an image of your project (or as a local process on a ``process`` host),
which imports the task, calls it and prints its return value. The queue's
guarantees apply to it like to any job: priorities, limits, retries of
failed launches, leases and adoption, cancel, the admin. ``get_result``
reads the job back. docs/api-reference.md ("Django tasks") has the options.

Works with ``django.tasks`` (Django 6.0) and with the ``django-tasks``
backport (Django 5.2).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable
from typing import Any

from container_manager.tasks.compat import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from container_manager.tasks.protocol import (
    ERROR_MARKER,
    MAX_SPEC_BYTES,
    RESULT_MARKER,
    SPEC_VARIABLE,
    TaskContainerError,
    last_marked,
)

#: The command run in the container by default.
DEFAULT_COMMAND = ("python3", "-m", "container_manager.tasks")
#: Job options the backend's OPTIONS may set, passed to the job as they are.
JOB_OPTIONS = (
    "image",
    "timeout_seconds",
    "memory_limit_mb",
    "cpu_limit_cores",
    "network",
    "user",
    "working_directory",
    "retry_strategy",
    "max_retries",
)

_RUNNING = {"validating", "preparing", "pulling", "running", "paused"}
_FAILED = {"failed", "cancelled", "timeout"}


def job_priority(task_priority: int) -> int:
    """A job priority (0-100, default 50) from a task priority (-100-100, default 0)."""
    return round((int(task_priority) + 100) / 2)


class ContainerBackend(BaseTaskBackend):
    """Runs each enqueued task as a container job (docs/api-reference.md, "Django tasks").

    OPTIONS:
        host: Name of the host to run on (e.g. a ``process`` host); None: any.
        command: The command run (a list), default ``python3 -m container_manager.tasks``.
        environment: Variables for the container (``DJANGO_SETTINGS_MODULE``
            defaults to this process's).
        image, timeout_seconds, memory_limit_mb, cpu_limit_cores, network,
        user, working_directory, retry_strategy, max_retries: the job's fields.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        unknown = set(options) - {"host", "command", "environment", *JOB_OPTIONS}
        if unknown:
            raise InvalidTaskError(
                f"Unknown OPTIONS of the {alias!r} task backend: {', '.join(sorted(unknown))}"
            )
        command = options.get("command", DEFAULT_COMMAND)
        if isinstance(command, str) or not all(isinstance(part, str) for part in command):
            raise InvalidTaskError(f'OPTIONS["command"] must be a list of strings, not {command!r}')
        self.command = tuple(command)
        environment = options.get("environment") or {}
        if not isinstance(environment, dict):
            raise InvalidTaskError('OPTIONS["environment"] must be a dict of strings')
        self.environment = {str(k): str(v) for k, v in environment.items()}
        self.host_name = options.get("host")
        self.job_options = {key: options[key] for key in JOB_OPTIONS if key in options}

    def _environment(self, spec: str) -> dict[str, str]:
        environment = dict(self.environment)
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
        if settings_module:
            environment.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
        environment[SPEC_VARIABLE] = spec
        return environment

    def enqueue(self, task: Task, args: Iterable[Any], kwargs: dict[str, Any]) -> TaskResult:
        """Queue a job that runs ``task(*args, **kwargs)`` in a container.

        Raises:
            InvalidTaskError: The task is not valid for this backend, or its
                arguments are not JSON or too large to pass.
        """
        from container_manager.models import ExecutorHost
        from container_manager.queue import queue_manager

        self.validate_task(task)
        spec = {
            "module_path": task.module_path,
            "args": list(args),
            "kwargs": dict(kwargs),
            "backend": self.alias,
            "takes_context": task.takes_context,
        }
        try:
            text = json.dumps(spec, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidTaskError(f"The task's arguments must be JSON: {exc}") from exc
        if len(text.encode()) > MAX_SPEC_BYTES:
            raise InvalidTaskError(
                f"The task's arguments take {len(text.encode())} bytes as JSON; at most "
                f"{MAX_SPEC_BYTES} are passed to a container (pass an id and read the rest)"
            )
        host = None
        if self.host_name:
            host = ExecutorHost.objects.filter(name=self.host_name).first()
            if host is None:
                raise InvalidTaskError(
                    f'OPTIONS["host"] of the {self.alias!r} task backend names no host: '
                    f"{self.host_name!r}"
                )
        job = queue_manager.create_and_queue(
            schedule_for=task.run_after,
            name=task.module_path[-200:],
            queue=task.queue_name,
            priority=job_priority(task.priority),
            host=host,
            command=shlex.join(self.command),
            environment=self._environment(text),
            **self.job_options,
        )
        result = self._result(task, job, spec)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The result of the job ``result_id``, read from its row.

        Raises:
            TaskResultDoesNotExist: No job has this id, or it is not a task's job.
        """
        from django.utils.module_loading import import_string

        from container_manager.models import ContainerJob

        try:
            job = ContainerJob.objects.get(pk=int(result_id))
        except (ValueError, TypeError, ContainerJob.DoesNotExist):
            raise TaskResultDoesNotExist(result_id) from None
        try:
            spec = json.loads((job.environment or {})[SPEC_VARIABLE])
            task = import_string(spec["module_path"])
        except (KeyError, ValueError, TypeError, ImportError):
            raise TaskResultDoesNotExist(result_id) from None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(result_id)
        return self._result(task, job, spec)

    def _result(self, task: Task, job: Any, spec: dict[str, Any]) -> TaskResult:
        status = job.status
        if status == "completed":
            state = TaskResultStatus.SUCCESSFUL
        elif status in _FAILED:
            state = TaskResultStatus.FAILED
        elif status in _RUNNING:
            state = TaskResultStatus.RUNNING
        else:
            state = TaskResultStatus.READY
        errors: list[TaskError] = []
        if state == TaskResultStatus.FAILED:
            found = last_marked(job.stderr or "", ERROR_MARKER)
            if isinstance(found, dict) and {"exception_class_path", "traceback"} <= set(found):
                errors.append(
                    TaskError(
                        exception_class_path=str(found["exception_class_path"]),
                        traceback=str(found["traceback"]),
                    )
                )
            else:
                reason = job.last_error or (job.stderr or "")[-2000:] or status
                errors.append(
                    TaskError(
                        exception_class_path=f"{TaskContainerError.__module__}.TaskContainerError",
                        traceback=f"{job.error_code or status}: {reason}",
                    )
                )
        result: Any = TaskResult(
            task=task,
            id=str(job.pk),
            status=state,
            enqueued_at=job.queued_at or job.created_at,
            started_at=job.started_at,
            finished_at=job.completed_at
            if state in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
            else None,
            last_attempted_at=job.launched_at,
            args=spec.get("args", []),
            kwargs=spec.get("kwargs", {}),
            backend=self.alias,
            errors=errors,
            worker_ids=[job.worker_id or "container_manager"] * int(job.attempt or 0),
        )
        if state == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(
                result, "_return_value", last_marked(job.stdout or "", RESULT_MARKER)
            )
        return result


__all__ = ["DEFAULT_COMMAND", "ContainerBackend", "TaskContainerError", "job_priority"]
