"""Executor hosts (where jobs run) and environment templates (what they get)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from container_manager.environment import parse_env_text
from container_manager.models.queries import HostQuerySet

MAX_WEIGHT = 1000


class ExecutorType(models.TextChoices):
    """The backends a host can be; each has a module in container_manager.executors."""

    DOCKER = "docker", "Docker engine"
    PROCESS = "process", "Local process"


class HealthStatus(models.TextChoices):
    """Result of the last health check of a host.

    ``unknown`` (never checked) and ``healthy`` hosts are given jobs; an
    ``unhealthy`` one is not, until a check finds it answering again
    (docs/queue-management.md, "Host health").
    """

    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


_SCHEMES = {
    ExecutorType.DOCKER: ("unix://", "tcp://", "ssh://", "npipe://"),
    ExecutorType.PROCESS: ("",),
}


class ExecutorHost(models.Model):
    """A place that runs containers: a Docker engine, or this machine's processes.

    Example::

        ExecutorHost.objects.create(
            name="docker-local",
            executor_type="docker",
            connection_string="unix:///var/run/docker.sock",
            max_concurrent_jobs=8,
        )
    """

    name = models.CharField(max_length=100, unique=True)
    executor_type = models.CharField(
        max_length=20, choices=ExecutorType.choices, default=ExecutorType.DOCKER
    )
    connection_string = models.CharField(
        max_length=500,
        blank=True,
        help_text="Docker: unix:///var/run/docker.sock or tcp://host:2376. Empty for process.",
    )
    executor_config = models.JSONField(
        default=dict,
        blank=True,
        help_text='Backend options, e.g. {"tls": {"ca_cert": "...", "client_cert": "...", '
        '"client_key": "..."}, "default_network": "none"}.',
    )
    is_active = models.BooleanField(default=True, help_text="Inactive hosts get no new jobs.")
    is_paused = models.BooleanField(
        default=False, help_text="Paused hosts get no new jobs; running ones go on."
    )
    max_concurrent_jobs = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    weight = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_WEIGHT)],
        help_text="Routing weight, 1-1000: a host with twice the weight gets twice the jobs.",
    )
    auto_pull_images = models.BooleanField(
        default=True, help_text="Pull an image that the engine does not have."
    )
    health_status = models.CharField(
        max_length=20, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    health_error = models.TextField(blank=True)
    last_health_check_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = "executor host"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Check that the connection string fits the executor type."""
        super().clean()
        if not isinstance(self.executor_config, dict):
            raise ValidationError({"executor_config": "Must be a JSON object."})
        if self.executor_type == ExecutorType.DOCKER and not self.connection_string.startswith(
            _SCHEMES[ExecutorType.DOCKER]
        ):
            raise ValidationError(
                {
                    "connection_string": "A Docker host needs a URL starting with "
                    "unix://, tcp://, ssh:// or npipe://."
                }
            )

    @property
    def is_available(self) -> bool:
        """True when the host may receive new jobs (active and not paused)."""
        return self.is_active and not self.is_paused


class EnvironmentVariableTemplate(models.Model):
    """A reusable set of environment variables, as ``KEY=VALUE`` lines.

    A job that names a template gets its variables, then its own on top.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    environment_variables_text = models.TextField(
        blank=True,
        verbose_name="environment variables",
        help_text="One KEY=VALUE a line. Blank lines and lines starting with # are skipped.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "environment template"

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate the variables before writing, so a bad template is never stored."""
        parse_env_text(self.environment_variables_text)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Reject malformed lines, naming the line."""
        super().clean()
        try:
            parse_env_text(self.environment_variables_text)
        except ValidationError as exc:
            raise ValidationError({"environment_variables_text": exc.messages}) from exc

    def get_environment_variables_dict(self) -> dict[str, str]:
        """Return the template's variables.

        Returns:
            The parsed variables.

        Raises:
            ValidationError: When the stored text has a malformed line.
        """
        return parse_env_text(self.environment_variables_text)
