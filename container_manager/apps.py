from __future__ import annotations

from django.apps import AppConfig


class ContainerManagerConfig(AppConfig):
    """App config: registers the system checks."""

    name = "container_manager"
    verbose_name = "Container manager"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from container_manager import checks  # noqa: F401  (registers the checks)
