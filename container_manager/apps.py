from __future__ import annotations

from django.apps import AppConfig


class ContainerManagerConfig(AppConfig):
    """App config: registers the system checks and the SQLite tuning."""

    name = "container_manager"
    verbose_name = "Container manager"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from container_manager import checks  # noqa: F401  (registers the checks)
        from container_manager.sqlite import tune_connection

        connection_created.connect(tune_connection, dispatch_uid="container_manager.sqlite")
