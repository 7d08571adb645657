"""Django's tasks framework: ``django.tasks`` (Django 6.0), else the ``django-tasks`` backport."""

from __future__ import annotations

try:
    from django.tasks import TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError
    from django.tasks.exceptions import InvalidTask as InvalidTaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued

    FRAMEWORK = "django.tasks"
except ImportError:  # Django 5.2: the backport, ``pip install django-container-manager[tasks]``
    try:
        import django_tasks.signals  # noqa: F401  (resets the backends when TASKS changes)
        from django_tasks import TaskResult, TaskResultStatus  # type: ignore[assignment]
        from django_tasks.backends.base import BaseTaskBackend  # type: ignore[assignment]
        from django_tasks.base import Task, TaskContext, TaskError  # type: ignore[assignment]
        from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist  # type: ignore[assignment]
        from django_tasks.signals import task_enqueued
    except ImportError as exc:  # pragma: no cover - a set-up error, said plainly
        raise ImportError(
            "container_manager.tasks needs Django's tasks framework: Django 6.0's "
            "django.tasks, or on Django 5.2 the django-tasks package "
            "(pip install 'django-container-manager[tasks]')"
        ) from exc

    FRAMEWORK = "django_tasks"

__all__ = [
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTaskError",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "task_enqueued",
]
