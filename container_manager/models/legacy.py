"""The names of django-container-manager 1.0.x, kept working for one major version.

Each 1.0.x name of a field, method or lookup still works and raises a
``DeprecationWarning`` that names its 2.x replacement (docs/migration-guide.md,
"What to change in your code", lists them all). They are removed in 3.0.

- Fields become properties over their 2.x field, so they work as attributes,
  as constructor and ``create()`` keyword arguments, and (through
  :func:`translate_lookups`) in ``filter()``, ``exclude()`` and ``get()``.
- Methods (``get_execution_identifier`` ...) are thin calls of the 2.x way.

None of them writes job state: a 1.0.x name of a state field
(``execution_id``, ``stdout_log``) reads it, and setting it changes only
the Python object, as setting the 2.x field would.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import FieldError

from container_manager.environment import parse_env_text

#: 1.0.x job field -> 2.x field, for attributes, arguments and lookups.
JOB_RENAMES: Mapping[str, str] = {
    "docker_host": "host",
    "docker_image": "image",
    "memory_limit": "memory_limit_mb",
    "cpu_limit": "cpu_limit_cores",
    "execution_id": "container_id",
    "stdout_log": "stdout",
    "stderr_log": "stderr",
}
#: 1.0.x job fields whose 2.x field holds the value in another form: a lookup
#: cannot be translated, and is refused with the new field's name.
JOB_RESHAPED: Mapping[str, str] = {
    "override_environment": (
        "override_environment (KEY=value text) is now environment, a JSON object: "
        "filter with environment__KEY='value'"
    ),
}
#: 1.0.x host fields that 2.x reads from elsewhere.
HOST_RESHAPED: Mapping[str, str] = {
    "host_type": "host_type is now the scheme of connection_string (unix://, tcp://)",
    "tls_enabled": 'tls_enabled is now executor_config["tls"]',
    "tls_verify": 'tls_verify is now executor_config["tls"]["verify"]',
}

REMOVED_IN = "3.0"

#: Lookups of a job's primary key; given a UUID (1.0.x's ids), they look up ``legacy_id``.
_PK_LOOKUPS = {
    "id": "legacy_id",
    "pk": "legacy_id",
    "id__exact": "legacy_id",
    "pk__exact": "legacy_id",
}


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) == 36:
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def translate_job_ids(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Look a job up by its 1.0.x UUID when ``id`` or ``pk`` is given one (deprecated).

    1.0.x jobs had UUID primary keys; the upgrade keeps them in ``legacy_id``.
    """
    if not any(key in _PK_LOOKUPS and _as_uuid(value) for key, value in kwargs.items()):
        return kwargs
    translated: dict[str, Any] = {}
    for key, value in kwargs.items():
        found = _as_uuid(value) if key in _PK_LOOKUPS else None
        if found is not None:
            warn(f"Looking a job up by its 1.0.x UUID ({key}=...)", "legacy_id=...", stacklevel=5)
            translated[_PK_LOOKUPS[key]] = found
        else:
            translated[key] = value
    return translated


def warn(old: str, new: str, stacklevel: int = 3) -> None:
    """Raise the ``DeprecationWarning`` of one 1.0.x name, naming what replaces it."""
    warnings.warn(
        f"{old} is deprecated since 2.0 and removed in {REMOVED_IN}; use {new} "
        f"(docs/migration-guide.md)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def translate_lookups(
    model: str, kwargs: dict[str, Any], renames: Mapping[str, str], reshaped: Mapping[str, str]
) -> dict[str, Any]:
    """Rewrite 1.0.x field names in query keyword arguments to 2.x's, warning for each.

    Args:
        model: The model's name, for the messages.
        kwargs: The lookups, e.g. ``{"docker_host__name": "a"}``.
        renames: 1.0.x name -> 2.x name.
        reshaped: 1.0.x names that cannot be translated -> the error message.

    Returns:
        The lookups with 2.x names (the same dict when none was old).

    Raises:
        FieldError: A lookup on a field whose value changed form, naming the new field.
    """
    if not any(
        key.split("__", 1)[0] in renames or key.split("__", 1)[0] in reshaped for key in kwargs
    ):
        return kwargs
    translated: dict[str, Any] = {}
    for key, value in kwargs.items():
        first, sep, rest = key.partition("__")
        if first in reshaped:
            raise FieldError(f"{model}: {reshaped[first]} (docs/migration-guide.md)")
        if first in renames:
            warn(f"The {model} lookup {first!r}", repr(renames[first]), stacklevel=5)
            key = renames[first] + sep + rest
        translated[key] = value
    return translated


def _renamed(old: str, new: str) -> property:
    def get(self: Any) -> Any:
        warn(f"{type(self).__name__}.{old}", f"{type(self).__name__}.{new}")
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        warn(f"{type(self).__name__}.{old}", f"{type(self).__name__}.{new}")
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated 1.0.x name of ``{new}``.")


class LegacyJobNames:
    """The 1.0.x names of ``ContainerJob``'s fields and methods (deprecated)."""

    docker_host = _renamed("docker_host", "host")
    docker_image = _renamed("docker_image", "image")
    memory_limit = _renamed("memory_limit", "memory_limit_mb")
    cpu_limit = _renamed("cpu_limit", "cpu_limit_cores")
    execution_id = _renamed("execution_id", "container_id")
    stdout_log = _renamed("stdout_log", "stdout")
    stderr_log = _renamed("stderr_log", "stderr")

    @property
    def override_environment(self) -> str:
        """Deprecated: ``environment`` as 1.0.x's ``KEY=value`` lines."""
        warn("ContainerJob.override_environment", "ContainerJob.environment (a dict)")
        environment = getattr(self, "environment", None) or {}
        return "\n".join(f"{key}={value}" for key, value in environment.items())

    @override_environment.setter
    def override_environment(self, text: str) -> None:
        warn("ContainerJob.override_environment", "ContainerJob.environment (a dict)")
        self.environment = parse_env_text(text or "")

    def get_execution_identifier(self) -> str:
        """Deprecated: the container's id (``container_id``)."""
        warn("ContainerJob.get_execution_identifier()", "ContainerJob.container_id")
        return str(getattr(self, "container_id", "") or "")

    def set_execution_identifier(self, execution_id: str) -> None:
        """Deprecated: 2.x records the container's id itself when it launches the job.

        Accepted only with the id already recorded (1.0.x code calls it with
        the id that ``launch_job`` returned); another id is refused, since
        only the worker knows which container runs the job.

        Raises:
            ValueError: ``execution_id`` is not the recorded container id.
        """
        warn(
            "ContainerJob.set_execution_identifier()",
            "nothing: the worker records container_id when it launches the job",
        )
        recorded = str(getattr(self, "container_id", "") or "")
        if execution_id != recorded:
            raise ValueError(
                f"Job {getattr(self, 'pk', None)} runs as container {recorded or '(none yet)'}, "
                f"not {execution_id!r}: the container id is recorded by the launch, not set by hand"
            )


class LegacyHostNames:
    """The 1.0.x names of ``ExecutorHost``'s fields and methods (deprecated)."""

    @property
    def host_type(self) -> str:
        """Deprecated: ``unix`` or ``tcp``, from ``connection_string``'s scheme."""
        warn("ExecutorHost.host_type", "the scheme of ExecutorHost.connection_string")
        scheme = str(getattr(self, "connection_string", "")).partition("://")[0]
        return scheme or "unix"

    @host_type.setter
    def host_type(self, value: str) -> None:
        warn("ExecutorHost.host_type", "the scheme of ExecutorHost.connection_string")
        scheme = str(getattr(self, "connection_string", "")).partition("://")[0]
        if scheme and value and scheme != value:
            raise ValueError(
                f"host_type {value!r} does not match connection_string "
                f"{getattr(self, 'connection_string', '')!r}: 2.x reads the type from its scheme"
            )

    def _tls(self) -> dict[str, Any]:
        config = getattr(self, "executor_config", None)
        tls = config.get("tls") if isinstance(config, dict) else None
        return dict(tls) if isinstance(tls, dict) else {}

    @property
    def tls_enabled(self) -> bool:
        """Deprecated: whether ``executor_config["tls"]`` is set."""
        warn("ExecutorHost.tls_enabled", 'ExecutorHost.executor_config["tls"]')
        return bool(self._tls())

    @tls_enabled.setter
    def tls_enabled(self, value: bool) -> None:
        warn("ExecutorHost.tls_enabled", 'ExecutorHost.executor_config["tls"]')
        config = dict(getattr(self, "executor_config", None) or {})
        if value:
            config["tls"] = self._tls() or {"verify": False}
        else:
            config.pop("tls", None)
        self.executor_config = config

    @property
    def tls_verify(self) -> bool:
        """Deprecated: ``executor_config["tls"]["verify"]``."""
        warn("ExecutorHost.tls_verify", 'ExecutorHost.executor_config["tls"]["verify"]')
        return bool(self._tls().get("verify", False))

    @tls_verify.setter
    def tls_verify(self, value: bool) -> None:
        warn("ExecutorHost.tls_verify", 'ExecutorHost.executor_config["tls"]["verify"]')
        config = dict(getattr(self, "executor_config", None) or {})
        if value or "tls" in config:
            config["tls"] = {**self._tls(), "verify": bool(value)}
        self.executor_config = config

    def get_display_name(self) -> str:
        """Deprecated: ``"name (Type)"``; ``str(host)`` is the name."""
        warn("ExecutorHost.get_display_name()", "str(host) or host.get_executor_type_display()")
        return f"{getattr(self, 'name', '')} ({str(getattr(self, 'executor_type', '')).title()})"


class CallableBool:
    """A truth value that may also be called, as 1.0.x's ``is_available()`` was.

    ``if host.is_available:`` is the 2.x way; ``host.is_available()`` still
    works and raises a ``DeprecationWarning``.
    """

    __slots__ = ("_new", "_old", "_value")

    def __init__(self, value: bool, old: str, new: str) -> None:
        self._value = bool(value)
        self._old = old
        self._new = new

    def __bool__(self) -> bool:
        return self._value

    def __call__(self) -> bool:
        warn(self._old, self._new)
        return self._value

    def __eq__(self, other: object) -> bool:
        return self._value == other

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return repr(self._value)


__all__ = [
    "HOST_RESHAPED",
    "JOB_RENAMES",
    "JOB_RESHAPED",
    "CallableBool",
    "LegacyHostNames",
    "LegacyJobNames",
    "translate_job_ids",
    "translate_lookups",
]
