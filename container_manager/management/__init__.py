"""The package's management commands (docs/command-reference.md)."""

from __future__ import annotations

from importlib import metadata

import container_manager


def package_version() -> str:
    """The installed django-container-manager's version (the source tree's when not installed)."""
    try:
        return metadata.version("django-container-manager")
    except metadata.PackageNotFoundError:
        return container_manager.__version__
