"""Executor hosts (where jobs run) and environment templates (what they get)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from container_manager.environment import parse_env_text
from container_manager.models.legacy import CallableBool, LegacyHostNames
from container_manager.models.queries import HostQuerySet
from container_manager.models.validation import CheckedFieldsMixin, text_problem

MAX_WEIGHT = 1000
#: The length of the ``executor_type`` column.
MAX_EXECUTOR_TYPE_LENGTH = 20


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
#: ``executor_config`` keys of the Docker executor that hold seconds.
DOCKER_SECONDS_KEYS = (
    "api_timeout_seconds",
    "pull_timeout_seconds",
    "reconcile_interval_seconds",
    "log_read_timeout_seconds",
)
#: Keys of ``executor_config["tls"]`` that hold file paths.
TLS_PATH_KEYS = ("ca_cert", "client_cert", "client_key")


def connection_string_problem(executor_type: str, value: str) -> str:
    """Say what is wrong with a host's connection string, or "" when nothing.

    A Docker host needs ``unix://<path>``, ``npipe://<path>``,
    ``tcp://<host>[:<port>]`` or ``ssh://[user@]<host>[:<port>]``, with a
    port from 1 to 65535. Other executor types take any string.
    """
    if executor_type != ExecutorType.DOCKER:
        return ""
    if not value.startswith(_SCHEMES[ExecutorType.DOCKER]):
        return "A Docker host needs a URL starting with unix://, tcp://, ssh:// or npipe://."
    scheme, _, rest = value.partition("://")
    if scheme in ("unix", "npipe"):
        return "" if rest.strip("/") else f"{scheme}:// needs the path of the engine's socket."
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"Not a valid {scheme}:// URL: {exc}."
    if not parts.hostname:
        return f"{scheme}:// needs a host name or address, e.g. {scheme}://127.0.0.1:2376."
    if port == 0:
        return "The port must be between 1 and 65535."
    return ""


def _positive_seconds(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def executor_config_problem(executor_type: str, config: Any) -> str:
    """Say what is wrong with a host's ``executor_config``, or "" when nothing.

    The keys the built-in executors read are checked (docs/api-reference.md,
    "Executors"); other keys are kept and ignored, as 1.0.x hosts may have them.
    """
    if not isinstance(config, dict):
        return f"Must be a JSON object, not {type(config).__name__}."
    if executor_type == ExecutorType.DOCKER:
        for key in DOCKER_SECONDS_KEYS:
            if key in config and not _positive_seconds(config[key]):
                return f'"{key}" must be a positive number of seconds, not {config[key]!r}.'
        network = config.get("default_network")
        if network is not None and not isinstance(network, str):
            return f'"default_network" must be a network name, not {network!r}.'
        tls = config.get("tls")
        if tls not in (None, {}, False):
            if not isinstance(tls, dict):
                return f'"tls" must be an object of {", ".join(TLS_PATH_KEYS)} and verify.'
            for key in TLS_PATH_KEYS:
                if key in tls and not isinstance(tls[key], str):
                    return f'"tls"."{key}" must be the path of a file, not {tls[key]!r}.'
            if bool(tls.get("client_cert")) != bool(tls.get("client_key")):
                return '"tls" needs both "client_cert" and "client_key", or neither.'
            if "verify" in tls and not isinstance(tls["verify"], bool):
                return f'"tls"."verify" must be true or false, not {tls["verify"]!r}.'
        auth = config.get("registry_auth")
        if auth is not None and not (
            isinstance(auth, dict) and all(isinstance(item, str) for item in auth.values())
        ):
            return '"registry_auth" must be an object of strings ("username", "password").'
    if executor_type == ExecutorType.PROCESS:
        output_dir = config.get("output_dir")
        if output_dir not in (None, "") and not (
            isinstance(output_dir, str) and output_dir.startswith("/")
        ):
            return f'"output_dir" must be an absolute path, not {output_dir!r}.'
    return ""


class ExecutorHost(LegacyHostNames, CheckedFieldsMixin, models.Model):
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
        max_length=MAX_EXECUTOR_TYPE_LENGTH,
        choices=ExecutorType.choices,
        default=ExecutorType.DOCKER,
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

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate, then write: a host that cannot work is never stored.

        Raises:
            ValidationError: A field is invalid (named); nothing is written.
        """
        # Executors registered by projects add types beyond the choices.
        self.clean_fields(exclude=["executor_type"])
        self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Check the connection string and ``executor_config`` against the executor type."""
        super().clean()
        errors: dict[str, str] = {}
        if not isinstance(self.executor_type, str) or not self.executor_type:
            errors["executor_type"] = "An executor type is required, e.g. docker or process."
        elif text_problem(self.executor_type):
            errors["executor_type"] = text_problem(self.executor_type)
        elif len(self.executor_type) > MAX_EXECUTOR_TYPE_LENGTH:
            errors["executor_type"] = (
                f"At most {MAX_EXECUTOR_TYPE_LENGTH} characters (it has {len(self.executor_type)})."
            )
        if isinstance(self.connection_string, str):
            problem = connection_string_problem(self.executor_type, self.connection_string)
            if problem:
                errors["connection_string"] = problem
        problem = executor_config_problem(self.executor_type, self.executor_config)
        if problem:
            errors["executor_config"] = problem
        if errors:
            raise ValidationError(errors)

    @property
    def is_available(self) -> CallableBool:
        """True when the host may receive new jobs (active and not paused).

        A truth value; calling it, as 1.0.x's ``is_available()``, still works
        (deprecated).
        """
        return CallableBool(
            self.is_active and not self.is_paused,
            "ExecutorHost.is_available()",
            "ExecutorHost.is_available (a property)",
        )


class EnvironmentVariableTemplate(CheckedFieldsMixin, models.Model):
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
        """Validate the fields and variables before writing, so a bad template is never stored."""
        self.clean_fields()
        self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Reject malformed lines, naming the line."""
        super().clean()
        if not isinstance(self.environment_variables_text, str):
            return  # clean_fields names the field
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
