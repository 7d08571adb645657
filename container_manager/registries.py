"""Registry credentials: named in settings, read from where the secret lives, never stored.

The ``REGISTRIES`` setting maps a registry's address (as image references
name it: ``registry.example.com``, ``127.0.0.1:5000``) to a user name and
where its password comes from: an environment variable (``password_env``) or
a file (``password_file``, e.g. a mounted secret). The password is read when
a worker needs it (a pull, a build's base image, a push, a launch that pulls)
and handed to the engine; it is never written to a job, a log or a page::

    CONTAINER_MANAGER = {
        "REGISTRIES": {
            "registry.example.com": {
                "username": "ci",
                "password_env": "REGISTRY_PASSWORD",
            },
        },
    }

A reference whose first path component has no ``.`` or ``:`` and is not
``localhost`` names Docker Hub (``docker.io``), as the engine reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from container_manager.conf import settings
from container_manager.exceptions import ConfigurationError

#: The registry of references that name none.
DOCKER_HUB = "docker.io"
#: The keys a ``REGISTRIES`` entry may have.
ENTRY_KEYS = frozenset({"username", "password_env", "password_file"})


def registry_of(reference: str) -> str:
    """Return the registry address an image reference names (``docker.io`` when none).

    Example::

        registry_of("127.0.0.1:5000/team/app:1.2") == "127.0.0.1:5000"
        registry_of("busybox:latest") == "docker.io"
    """
    first, slash, _ = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def entry_problem(address: Any, entry: Any) -> str:
    """Say what is wrong with one ``REGISTRIES`` entry, or "" when nothing."""
    if not isinstance(address, str) or not address or "/" in address:
        return f"REGISTRIES key {address!r} must be a registry address like 'registry.example.com'"
    if not isinstance(entry, dict):
        return f"REGISTRIES[{address!r}] must be a dict, not {type(entry).__name__}"
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        return (
            f"REGISTRIES[{address!r}] has unknown keys {unknown}; known: {sorted(ENTRY_KEYS)} "
            "(a password itself is never a setting: name the variable or file that holds it)"
        )
    if not isinstance(entry.get("username"), str) or not entry["username"]:
        return f"REGISTRIES[{address!r}] needs a 'username'"
    sources = [key for key in ("password_env", "password_file") if key in entry]
    if len(sources) != 1:
        return f"REGISTRIES[{address!r}] needs exactly one of 'password_env' or 'password_file'"
    if not isinstance(entry[sources[0]], str) or not entry[sources[0]]:
        return f"REGISTRIES[{address!r}][{sources[0]!r}] must be a non-empty string"
    return ""


def settings_problems() -> list[str]:
    """Every problem of the ``REGISTRIES`` setting (the system check reports them)."""
    registries = settings.REGISTRIES
    if not isinstance(registries, dict):
        return [f"REGISTRIES must be a dict, not {type(registries).__name__}"]
    found = [entry_problem(address, entry) for address, entry in registries.items()]
    return [problem for problem in found if problem]


def credentials_for(reference: str, environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """Return the engine's credentials for the registry ``reference`` names, or None.

    Args:
        reference: An image reference, or a registry address itself.
        environ: Where ``password_env`` is read; None for ``os.environ``.

    Returns:
        ``{"username", "password", "serveraddress"}``, or None when
        ``REGISTRIES`` has no entry for the registry.

    Raises:
        ConfigurationError: The entry is malformed, or its variable or file
            cannot be read (the message names which, never the secret).
    """
    import os

    registries = settings.REGISTRIES
    if not isinstance(registries, dict):
        raise ConfigurationError(settings_problems()[0])
    address = reference if reference in registries else registry_of(reference)
    entry = registries.get(address)
    if entry is None:
        return None
    problem = entry_problem(address, entry)
    if problem:
        raise ConfigurationError(problem)
    if "password_env" in entry:
        name = entry["password_env"]
        password = (os.environ if environ is None else environ).get(name)
        if password is None:
            raise ConfigurationError(
                f"The password of registry {address!r} is to come from the environment "
                f"variable {name}, which the worker's environment does not have"
            )
    else:
        path = Path(entry["password_file"])
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"The password file of registry {address!r} ({path}) cannot be read: "
                f"{exc.strerror or exc}"
            ) from exc
    return {"username": entry["username"], "password": password, "serveraddress": address}


def build_credentials(references: list[str]) -> dict[str, dict[str, str]]:
    """The credentials of every registry ``references`` name that has an entry, by address."""
    found: dict[str, dict[str, str]] = {}
    for reference in references:
        credentials = credentials_for(reference)
        if credentials is not None:
            found[credentials["serveraddress"]] = credentials
    return found
