"""The public names of container_manager, found by introspection.

``tests/docs/test_api_reference.py`` checks that each has an entry in
``docs/api-reference.md``. A module is either public (its names are
documented) or listed in :data:`INTERNAL_MODULES` with the reason; a new
module is neither until someone decides, which fails the test.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import pkgutil
import signal
from collections.abc import Iterator
from types import ModuleType

from django.contrib.admin import ModelAdmin

import container_manager

#: Modules whose public names users import or call.
PUBLIC_MODULES = (
    "container_manager.admin",
    "container_manager.checks",
    "container_manager.classification",
    "container_manager.conf",
    "container_manager.environment",
    "container_manager.exceptions",
    "container_manager.executors",
    "container_manager.executors.base",
    "container_manager.executors.docker",
    "container_manager.executors.local",
    "container_manager.models",
    "container_manager.operations",
    "container_manager.metrics",
    "container_manager.queue",
    "container_manager.registries",
    "container_manager.retry",
    "container_manager.services",
    "container_manager.signals",
    "container_manager.tasks",
    "container_manager.testing",
    "container_manager.containers",
    "container_manager.states",
    "container_manager.stats",
    "container_manager.worker",
)

#: Modules that are not public API, with the reason.
INTERNAL_MODULES = {
    "container_manager.worker.db": "connection handling inside the worker's threads",
    "container_manager.sqlite": "connection tuning, on by itself; documented as SQLITE_TUNING",
    "container_manager.models.legacy": "1.0.x names on the models; each is listed in "
    "docs/migration-guide.md",
    "container_manager.tasks.compat": "which tasks framework is installed (django.tasks or "
    "django_tasks); documented in the Django tasks section",
    "container_manager.tasks.protocol": "what the backend and the runner exchange; documented "
    "in the Django tasks section",
    "container_manager.tasks.__main__": "the runner, `python -m container_manager.tasks`",
    "container_manager.management.operations_command": "what the three operation commands "
    "share; the commands are documented in docs/command-reference.md",
    "container_manager.api": "the JSON API's package; the API is documented in docs/api.md",
    "container_manager.api.views": "the API's views; docs/api.md",
    "container_manager.api.urls": "the API's URLconf; docs/api.md",
    "container_manager.api.errors": "the API's error bodies; docs/api.md, Errors",
    "container_manager.api.permissions": "the API's permissions; docs/api.md",
    "container_manager.management.log_output": "the worker command's log lines; "
    "docs/command-reference.md, Logs",
    "container_manager.api.metrics": "the /metrics/ view; docs/deployment.md, Metrics",
    "container_manager.worker.metrics": "a worker's Prometheus counters; docs/deployment.md, "
    "Metrics",
    "container_manager.upgrade": "called by migration 0003_version_2; the mapping is documented "
    "in docs/migration-guide.md",
    "container_manager.admin.actions": "admin callbacks; documented as admin actions",
    "container_manager.admin.display": "admin callbacks",
    "container_manager.admin.filters": "admin callbacks; documented as admin filters",
    "container_manager.admin.hosts": "re-exported by container_manager.admin",
    "container_manager.admin.inputs": "admin internals: checks of ids, query strings and JSON",
    "container_manager.admin.jobs": "re-exported by container_manager.admin",
    "container_manager.admin.pagination": "admin internals",
    "container_manager.admin.stats_view": "admin internals; the page is documented",
    "container_manager.admin.views": "admin internals; the pages are documented",
    "container_manager.admin.workers": "re-exported by container_manager.admin",
    "container_manager.admin.arrays": "re-exported by container_manager.admin",
    "container_manager.admin.schedules": "re-exported by container_manager.admin",
    "container_manager.apps": "Django app config",
    "container_manager.executors.completion": "executor internals",
    "container_manager.executors.docker_events": "Docker executor internals",
    "container_manager.executors.docker_streams": "Docker executor internals",
    "container_manager.executors.docker_images": "Docker executor internals",
    "container_manager.executors.process_supervisor": (
        "the local executor's per-attempt supervisor script; described with the executor"
    ),
    "container_manager.logcap": "log capture helpers of the executors",
    "container_manager.management": "package marker",
    "container_manager.management.commands": "package marker",
    "container_manager.management.commands.process_container_jobs": (
        "the command; its options are documented and parsed by test_deploy_files"
    ),
    "container_manager.management.commands.queue_status": "a command; docs/command-reference.md",
    "container_manager.management.commands.queue_task_status": "a command; "
    "docs/command-reference.md",
    "container_manager.management.commands.queue_manage": "a command; docs/command-reference.md",
    "container_manager.management.commands.queue_image": "a command; docs/command-reference.md "
    "and docs/image-tasks.md",
    "container_manager.management.commands.queue_schedule": "a command; "
    "docs/command-reference.md and docs/schedules.md",
    "container_manager.management.commands.prune_jobs": "a command; docs/command-reference.md",
    "container_manager.management.commands.queue_job": "a command; docs/command-reference.md",
    "container_manager.models.host": "re-exported by container_manager.models",
    "container_manager.models.job": "re-exported by container_manager.models",
    "container_manager.models.queue": "re-exported by container_manager.models",
    "container_manager.models.worker": "re-exported by container_manager.models",
    "container_manager.models.images": "JobDependency, ImageBuildContext and JobArray "
    "re-exported by container_manager.models; the option checks run by ContainerJob.clean()",
    "container_manager.models.schedule": "Schedule re-exported by container_manager.models; "
    "CatchUp, Concurrency, TEMPLATE_FIELDS and the checks of its fields run by Schedule.clean()",
    "container_manager.models.validation": "field checks run by the models' clean_fields()",
    "container_manager.notify": "LISTEN/NOTIFY plumbing behind JobQueueManager.wait_for_work",
    "container_manager.models.queries": "JobQuerySet re-exported by container_manager.models",
    "container_manager.models.tally": "JobTally re-exported by container_manager.models",
    "container_manager.queue.base": "re-exported by container_manager.queue",
    "container_manager.queue.finishing": "methods of JobQueueManager",
    "container_manager.queue.legacy": "methods of JobQueueManager; ProcessResult re-exported",
    "container_manager.queue.queueing": "methods of JobQueueManager",
    "container_manager.queue.bulk": "methods of JobQueueManager",
    "container_manager.queue.claims": "methods of JobQueueManager",
    "container_manager.queue.control": "methods of JobQueueManager",
    "container_manager.queue.launching": "methods of JobQueueManager; LaunchOutcome re-exported",
    "container_manager.queue.leases": "methods of JobQueueManager",
    "container_manager.queue.hosts": "methods of JobQueueManager",
    "container_manager.queue.cleanup": "methods of JobQueueManager",
    "container_manager.queue.manager": "re-exported by container_manager.queue",
    "container_manager.queue.reporting": "methods of JobQueueManager",
    "container_manager.queue.images": "methods of JobQueueManager; image tasks are documented "
    "in docs/image-tasks.md",
    "container_manager.queue.dependencies": "methods of JobQueueManager",
    "container_manager.queue.schedules": "methods of JobQueueManager; schedules are documented "
    "in docs/schedules.md",
    "container_manager.queue.retention": "methods of JobQueueManager; PruneResult and "
    "retention_age are documented with prune",
    "container_manager.worker.claimer": "worker internals",
    "container_manager.queue.steps": "launch internals: the deferred preparing step",
    "container_manager.worker.follower": "worker internals",
    "container_manager.worker.remover": "worker internals",
    "container_manager.worker.heartbeat": "worker internals; WorkerIdInUseError re-exported",
    "container_manager.worker.hosts": "worker internals",
    "container_manager.worker.loop": "re-exported by container_manager.worker",
    "container_manager.worker.rescuer": "worker internals",
    "container_manager.worker.state": "worker internals; WorkerStats re-exported",
    "container_manager.worker.sweeper": "worker internals",
}

#: Names that Django, dataclasses or enum put on a class, not ours to document.
INHERITED_NOISE = frozenset(
    {"DoesNotExist", "MultipleObjectsReturned", "objects", "Meta", "id", "pk"}
)


def all_modules() -> list[str]:
    """Every module of the package except migrations."""
    names = ["container_manager"]
    for info in pkgutil.walk_packages(container_manager.__path__, "container_manager."):
        if ".migrations" not in info.name:
            names.append(info.name)
    return sorted(names)


def module_names(module: ModuleType) -> list[str]:
    """Public top-level names: ``__all__``, else classes and functions defined there."""
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return list(exported)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
        and obj.__name__ == name  # not an alias
    ]


def _own_classes(cls: type) -> list[type]:
    """``cls`` and the internal mixins it is made of (their members are its own)."""
    return [k for k in cls.__mro__ if k is cls or k.__module__ in INTERNAL_MODULES]


def _is_own(cls: type, name: str) -> bool:
    """True unless ``name`` overrides a public or foreign base (documented there, or by Django)."""
    own = _own_classes(cls)
    return not any(name in vars(base) for base in cls.__mro__ if base not in own)


def _is_member(value: object) -> bool:
    return isinstance(
        value, property | functools.cached_property | classmethod | staticmethod
    ) or inspect.isfunction(value)


def class_members(cls: type) -> Iterator[str]:
    """Public methods, properties, enum members and model fields defined on ``cls``."""
    if issubclass(cls, enum.Enum):
        yield from (member.name for member in cls)  # type: ignore[var-annotated]
        return
    if issubclass(cls, ModelAdmin):
        return  # Django's hooks and list columns: the admin guide documents the pages
    seen: set[str] = set()
    for klass in _own_classes(cls):
        for name, value in vars(klass).items():
            if (
                name not in seen
                and not name.startswith("_")
                and name not in INHERITED_NOISE
                and _is_member(value)
                and _is_own(cls, name)
            ):
                seen.add(name)
                yield name
    meta = getattr(cls, "_meta", None)
    if meta is not None and getattr(meta, "concrete_model", None) is cls:
        for model_field in meta.local_fields:
            if model_field.name not in INHERITED_NOISE:
                yield model_field.name
    fields = getattr(cls, "__dataclass_fields__", None)
    if fields:
        yield from (name for name in fields if not name.startswith("_"))


def public_names() -> dict[str, list[str]]:
    """``{qualified name: [names that must appear in the reference]}``.

    A class needs its own name; each of its members needs ``Class.member``
    or the member's name, since the reference documents members under their
    class's heading.
    """
    found: dict[str, list[str]] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module_names(module):
            obj = getattr(module, name)
            found[f"{module_name}.{name}"] = [name]
            if inspect.isclass(obj) and obj.__module__.startswith("container_manager"):
                for member in class_members(obj):
                    spellings = [f"{name}.{member}", member]
                    if issubclass(obj, enum.Enum):
                        spellings.append(str(obj[member].value))
                    found[f"{module_name}.{name}.{member}"] = spellings
    return found


def settings_keys() -> list[str]:
    """Every key of ``CONTAINER_MANAGER``."""
    from container_manager.conf import DEFAULTS

    return sorted(DEFAULTS)


def worker_signals() -> list[str]:
    """The signals a worker installs handlers for (found by installing them)."""
    from container_manager.worker import Worker

    candidates = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)]
    before = {s: signal.getsignal(s) for s in candidates}
    try:
        Worker(worker_id="docs-introspection").install_signal_handlers()
        return sorted(s.name for s in candidates if signal.getsignal(s) is not before[s])
    finally:
        for sig, handler in before.items():
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
