"""System checks for the CONTAINER_MANAGER settings dict."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, register

from container_manager.conf import DEFAULTS
from container_manager.registries import settings_problems as registry_problems

_POSITIVE_INTS = (
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_TIMEOUT_SECONDS",
    "LEASE_SECONDS",
    "HEARTBEAT_SECONDS",
    "CLEANUP_INTERVAL_SECONDS",
    "POLL_INTERVAL_SECONDS",
    "LOG_MAX_BYTES",
    "BUILD_CONTEXT_MAX_BYTES",
)
_RETENTION = ("remove", "keep", "keep_failed")


def _error(msg: str, hint: str = "") -> Error:
    return Error(msg, hint=hint or None, id="container_manager.E001")


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``settings.CONTAINER_MANAGER``.

    Returns:
        One ``container_manager.E001`` error per problem found.
    """
    user = getattr(django_settings, "CONTAINER_MANAGER", {})
    if not isinstance(user, dict):
        return [_error("CONTAINER_MANAGER must be a dict.")]
    errors: list[CheckMessage] = []
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            _error(
                f"CONTAINER_MANAGER has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
            )
        )
    for key in _POSITIVE_INTS:
        value = user.get(key, DEFAULTS[key])
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(_error(f"CONTAINER_MANAGER[{key!r}] must be a positive integer."))
    priority = user.get("DEFAULT_PRIORITY", DEFAULTS["DEFAULT_PRIORITY"])
    if not isinstance(priority, int) or not 0 <= priority <= 100:
        errors.append(_error("CONTAINER_MANAGER['DEFAULT_PRIORITY'] must be 0-100."))
    if user.get("CONTAINER_RETENTION", "remove") not in _RETENTION:
        errors.append(
            _error(f"CONTAINER_MANAGER['CONTAINER_RETENTION'] must be one of {_RETENTION}.")
        )
    days = user.get("RETENTION_DAYS")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        errors.append(_error("CONTAINER_MANAGER['RETENTION_DAYS'] must be None or a number >= 1."))
    if not isinstance(user.get("SQLITE_TUNING", True), bool):
        errors.append(_error("CONTAINER_MANAGER['SQLITE_TUNING'] must be True or False."))
    errors.extend(_check_queues(user.get("QUEUES", {})))
    errors.extend(_check_containers(user))
    errors.extend(
        _error(f"CONTAINER_MANAGER: {problem}.", hint="See docs/image-tasks.md, Registries.")
        for problem in registry_problems()
    )
    return errors


def _check_containers(user: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    labels = user.get("CONTAINER_LABELS", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        errors.append(_error("CONTAINER_MANAGER['CONTAINER_LABELS'] must map strings to strings."))
    prefix = user.get("CONTAINER_NAME_PREFIX", "cm")
    if not isinstance(prefix, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}", prefix):
        errors.append(
            _error(
                "CONTAINER_MANAGER['CONTAINER_NAME_PREFIX'] must be 1-64 letters, digits, "
                "'_', '.' or '-', starting with a letter or digit."
            )
        )
    token = user.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        errors.append(
            _error("CONTAINER_MANAGER['METRICS_TOKEN'] must be None or a string of 16+ characters.")
        )
    network = user.get("DOCKER_DEFAULT_NETWORK", "none")
    if not isinstance(network, str) or not network:
        errors.append(_error("CONTAINER_MANAGER['DOCKER_DEFAULT_NETWORK'] must be a network name."))
    return errors


def _check_queues(queues: Any) -> list[CheckMessage]:
    if not isinstance(queues, dict):
        return [_error("CONTAINER_MANAGER['QUEUES'] must be a dict of queue name to options.")]
    errors: list[CheckMessage] = []
    for name, options in queues.items():
        limit = options.get("max_concurrent") if isinstance(options, dict) else "?"
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            errors.append(
                _error(f"CONTAINER_MANAGER['QUEUES'][{name!r}]['max_concurrent'] must be >= 1.")
            )
    return errors
