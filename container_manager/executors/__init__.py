"""Executors run jobs' containers; this module picks one for a host.

``get_executor(host)`` returns the executor of an :class:`ExecutorHost`,
built once per host and configuration and shared by every thread of the
process::

    from container_manager.executors import get_executor

    executor = get_executor(host)
    ref = executor.launch(LaunchSpec.from_job(job))

Backends are chosen by ``host.executor_type``: ``"docker"``
(:class:`~container_manager.executors.docker.DockerExecutor`) and
``"process"`` (:class:`~container_manager.executors.local.LocalProcessExecutor`).
Another backend is added with :func:`register_executor`. The Docker SDK is
only imported when a Docker host is first used.

Two questions the queue asks before it routes a job to a host, without
building its executor: :func:`can_load` (is there an executor for this
``executor_type`` at all: a 1.0.x row may still say ``mock`` or
``cloudrun``) and :func:`runs_images` (does it run the job's image, or, like
``process``, the command on the worker's machine).
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from typing import TYPE_CHECKING

from container_manager.exceptions import ConfigurationError
from container_manager.executors.base import Executor

if TYPE_CHECKING:
    from container_manager.models import ExecutorHost

logger = logging.getLogger(__name__)

#: Built-in backends, imported on first use ("module:Class").
BUILTIN_EXECUTORS: dict[str, str] = {
    "docker": "container_manager.executors.docker:DockerExecutor",
    "process": "container_manager.executors.local:LocalProcessExecutor",
    # For tests of projects that use this package (container_manager.testing).
    "mock": "container_manager.testing:MockExecutor",
}

#: Built-in backends that run the command on the worker's machine and ignore images.
IMAGELESS_EXECUTORS: frozenset[str] = frozenset({"process"})

_lock = threading.Lock()
_classes: dict[str, type[Executor] | str] = dict(BUILTIN_EXECUTORS)
_runs_images: dict[str, bool] = {name: name not in IMAGELESS_EXECUTORS for name in _classes}
_cache: dict[object, tuple[str, Executor]] = {}

__all__ = [
    "BUILTIN_EXECUTORS",
    "IMAGELESS_EXECUTORS",
    "can_load",
    "close_executors",
    "executor_class",
    "get_executor",
    "register_executor",
    "runs_images",
]


def register_executor(
    executor_type: str, cls: type[Executor] | str, *, runs_images: bool | None = None
) -> None:
    """Make ``executor_type`` hosts use ``cls``.

    Args:
        executor_type: The value of ``ExecutorHost.executor_type``.
        cls: An :class:`Executor` subclass, or its dotted path as
            ``"package.module:Class"`` to import it on first use.
        runs_images: True when the backend runs the job's image (jobs without
            a host may be routed to it), False when it ignores images (it
            takes only jobs pinned to its hosts); None keeps what was known
            of ``executor_type`` (True for a new name).

    Raises:
        TypeError: When ``cls`` is a class but not an Executor.
    """
    if isinstance(cls, type) and not issubclass(cls, Executor):
        raise TypeError(f"{cls!r} is not an Executor subclass")
    with _lock:
        _classes[executor_type] = cls
        if runs_images is not None:
            _runs_images[executor_type] = runs_images
        else:
            _runs_images.setdefault(executor_type, True)
        stale = [key for key, (_, ex) in _cache.items() if ex.host.executor_type == executor_type]
        retired = [_cache.pop(key)[1] for key in stale]
    for executor in retired:
        executor.close()


def executor_class(executor_type: str) -> type[Executor]:
    """Return the class registered for a backend, importing it if needed.

    Args:
        executor_type: ``"docker"``, ``"process"`` or a registered name.

    Returns:
        The Executor subclass.

    Raises:
        ConfigurationError: When nothing is registered under that name.
    """
    with _lock:
        entry = _classes.get(executor_type)
    if entry is None:
        known = ", ".join(sorted(_classes))
        raise ConfigurationError(f"Unknown executor type {executor_type!r} (known: {known})")
    if isinstance(entry, str):
        module_name, _, class_name = entry.partition(":")
        loaded = getattr(importlib.import_module(module_name), class_name)
        if not (isinstance(loaded, type) and issubclass(loaded, Executor)):
            raise ConfigurationError(f"{entry} is not an Executor subclass")
        with _lock:
            _classes[executor_type] = loaded
        return loaded
    return entry


def can_load(executor_type: str) -> bool:
    """Tell whether hosts of ``executor_type`` have an executor (registered and importable).

    Args:
        executor_type: The value of ``ExecutorHost.executor_type``.

    Returns:
        False for a name nothing is registered under (a 1.0.x ``mock``,
        ``cloudrun`` or ``fargate`` row) or whose module cannot be imported.
    """
    try:
        executor_class(executor_type)
    except (ConfigurationError, ImportError, AttributeError):
        return False
    return True


def runs_images(executor_type: str) -> bool:
    """Tell whether hosts of ``executor_type`` run the job's image.

    Args:
        executor_type: The value of ``ExecutorHost.executor_type``.

    Returns:
        True for ``docker`` and registered backends (unless registered with
        ``runs_images=False``); False for ``process`` and for unknown names.
    """
    with _lock:
        return _runs_images.get(executor_type, False) and executor_type in _classes


def _cache_key(host: ExecutorHost) -> tuple[object, str]:
    """The identity of a host (its id, or the object when unsaved) and its configuration.

    The creation time is part of it: a host deleted and made again under the
    same id (tests, a restored database) gets an executor of its own.
    """
    identity: object = ("pk", host.pk) if host.pk is not None else ("obj", id(host))
    fingerprint = json.dumps(
        [
            getattr(host, "created_at", None),
            host.executor_type,
            host.connection_string,
            host.executor_config,
            host.auto_pull_images,
        ],
        sort_keys=True,
        default=str,
    )
    return identity, fingerprint


def get_executor(host: ExecutorHost) -> Executor:
    """Return the executor of a host, building it on first use.

    One executor per host and configuration lives in the process; when the
    host's type, connection string, ``executor_config`` or pull setting
    change, the next call builds a new one and closes the old one (a local
    executor kills the processes it still runs when closed).

    Args:
        host: The host.

    Returns:
        The shared executor. Thread-safe.

    Raises:
        ConfigurationError: When the host's executor type is unknown.
    """
    identity, fingerprint = _cache_key(host)
    with _lock:
        cached = _cache.get(identity)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
    cls = executor_class(host.executor_type)
    with _lock:
        cached = _cache.get(identity)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        executor = cls(host)
        _cache[identity] = (fingerprint, executor)
    if cached is not None:
        logger.info("Configuration of host %s changed; replacing its executor", host.name)
        cached[1].close()
    return executor


def close_executors() -> None:
    """Close and forget every cached executor (worker shutdown, tests)."""
    with _lock:
        executors = [executor for _, executor in _cache.values()]
        _cache.clear()
    for executor in executors:
        try:
            executor.close()
        except Exception:
            logger.exception("Closing executor %s failed", type(executor).__name__)
