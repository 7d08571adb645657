"""ContainerJob: one unit of work, run as one container."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from container_manager import states
from container_manager.conf import settings
from container_manager.environment import validate_env_mapping
from container_manager.exceptions import InvalidStateTransition, StaleJobError
from container_manager.models.images import image_task_problems
from container_manager.models.legacy import LegacyJobNames
from container_manager.models.queries import JobQuerySet
from container_manager.models.validation import CheckedFieldsMixin, validate_image_reference
from container_manager.retry import RETRY_STRATEGIES, get_strategy, next_retry_at
from container_manager.states import JobKind, JobStatus

PRIORITY_HIGH = 80
PRIORITY_NORMAL = 50
PRIORITY_LOW = 20

# Fields whose validators run on every save(); foreign keys are left to the
# database so that a save costs no extra query.
_SAVE_EXCLUDE = ("host", "environment_template")


#: What a job runs, where and with what limits: the fields a person sets (the
#: admin's "What to run"), and what a job run again copies.
SPEC_FIELDS = (
    "name",
    "queue",
    "host",
    "kind",
    "image",
    "image_options",
    "command",
    "is_shell_command",
    "working_directory",
    "environment",
    "environment_template",
    "memory_limit_mb",
    "cpu_limit_cores",
    "timeout_seconds",
    "network",
    "user",
)
#: How a job waits in the queue, besides when (``scheduled_for``).
QUEUE_SETTINGS_FIELDS = ("priority", "max_retries", "retry_strategy", "unique_key")

#: The steps a launch records in ``current_step`` (the labels of the launch statuses).
_LAUNCH_STEPS = frozenset(str(JobStatus(status).label) for status in states.LAUNCHING_STATUSES)


def _default_priority() -> int:
    return int(settings.DEFAULT_PRIORITY)


def _default_timeout() -> int:
    return int(settings.DEFAULT_TIMEOUT_SECONDS)


def _default_retry_strategy() -> str:
    return str(settings.DEFAULT_RETRY_STRATEGY)


def _default_queue() -> str:
    return str(settings.DEFAULT_QUEUE)


def attempts_allowed(max_retries: int | None, retry_strategy: str) -> int:
    """Launch attempts allowed a job with these fields: ``max_retries``, else the strategy's."""
    if max_retries is not None:
        return max_retries
    strategy = RETRY_STRATEGIES.get(retry_strategy)
    return strategy.max_attempts if strategy else int(settings.DEFAULT_MAX_RETRIES)


def has_run_past_timeout(started_at: datetime | None, timeout_seconds: int, now: datetime) -> bool:
    """Tell whether a container started at ``started_at`` has run past its timeout.

    The one definition of "timed out", for the worker's follower (which reads
    rows as values) and :meth:`ContainerJob.is_past_timeout` alike.

    Args:
        started_at: When the container started; None if it has not.
        timeout_seconds: The job's limit.
        now: The present.

    Returns:
        True when more than ``timeout_seconds`` have passed since the start.
    """
    return started_at is not None and now - started_at > timedelta(seconds=timeout_seconds)


class ContainerJob(LegacyJobNames, CheckedFieldsMixin, models.Model):
    """A job: what to run (image, command, environment, limits) and what happened.

    Example::

        job = ContainerJob.objects.create(command="echo hello")
        queue_manager.queue_job(job)
    """

    Status = JobStatus
    PRIORITY_HIGH: ClassVar[int] = PRIORITY_HIGH
    PRIORITY_NORMAL: ClassVar[int] = PRIORITY_NORMAL
    PRIORITY_LOW: ClassVar[int] = PRIORITY_LOW

    # What to run.
    name = models.CharField(max_length=200, blank=True)
    queue = models.CharField(max_length=100, default=_default_queue)
    host = models.ForeignKey(
        "container_manager.ExecutorHost",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
        help_text="Empty: the worker picks an active host with capacity.",
    )
    image = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_image_reference],
        help_text="Empty: DEFAULT_IMAGE. E.g. registry.example.com/team/app:1.2.",
    )
    command = models.TextField(
        blank=True, help_text="Split like a shell would, but run without one."
    )
    is_shell_command = models.BooleanField(
        default=False, help_text="Run the command through /bin/sh -c."
    )
    working_directory = models.CharField(max_length=500, blank=True)
    environment = models.JSONField(default=dict, blank=True, validators=[validate_env_mapping])
    environment_template = models.ForeignKey(
        "container_manager.EnvironmentVariableTemplate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )
    memory_limit_mb = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    cpu_limit_cores = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.01), MaxValueValidator(1024)]
    )
    timeout_seconds = models.PositiveIntegerField(
        default=_default_timeout, validators=[MinValueValidator(1)]
    )
    network = models.CharField(max_length=200, blank=True, help_text="Empty: the host's default.")
    user = models.CharField(max_length=100, blank=True)

    # Image tasks (docs/image-tasks.md): what kind of work, and its options.
    kind = models.CharField(
        max_length=20,
        choices=JobKind.choices,
        default=JobKind.RUN,
        help_text="Run a container, or pull, build or push the image named in Image.",
    )
    image_options = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "Image tasks only: platform; for a build dockerfile, files, build_args, "
            "target, tags, labels, push."
        ),
    )
    image_result = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="What an image task left: image_id, digest, pushed tags.",
    )
    depends_on = models.ManyToManyField(
        "self",
        symmetrical=False,
        through="container_manager.JobDependency",
        through_fields=("job", "depends_on"),
        related_name="dependents",
        blank=True,
        help_text="Jobs that must complete before this one starts.",
    )

    # Life cycle.
    status = models.CharField(
        max_length=20, choices=JobStatus.choices, default=JobStatus.PENDING, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    container_id = models.CharField(max_length=100, blank=True)
    stdout = models.TextField(blank=True)
    stderr = models.TextField(blank=True)
    progress = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    current_step = models.CharField(max_length=200, blank=True)

    # The queue.
    priority = models.IntegerField(
        default=_default_priority,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="0-100; higher runs first, then first in, first out.",
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Launch attempts allowed. Empty: the retry strategy's max_attempts.",
    )
    retry_strategy = models.CharField(max_length=50, default=_default_retry_strategy)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)

    # The worker holding the job, and until when its claim lasts.
    worker_id = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempt = models.PositiveIntegerField(
        default=0, help_text="Incremented at each claim; labels the container."
    )
    # Arrays (docs/queue-management.md, "Job arrays").
    array = models.ForeignKey(
        "container_manager.JobArray",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.CASCADE,
        related_name="jobs",
    )
    array_index = models.PositiveIntegerField(null=True, blank=True, editable=False)

    # Schedules (docs/schedules.md): the schedule and fire time that made the job.
    schedule = models.ForeignKey(
        "container_manager.Schedule",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    scheduled_fire_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Uniqueness (docs/queue-management.md, "Unique jobs"): queueing a job
    # whose key a job of its queue already holds returns that job instead.
    unique_key = models.CharField(
        max_length=200,
        blank=True,
        help_text="Empty: none. Else one job per queue with this key, while it is not finished "
        "(or, with unique_window_start, in that window).",
    )
    unique_window_start = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set by unique_for: the start of the window the key is unique in.",
    )
    last_worker_id = models.CharField(
        max_length=200,
        blank=True,
        editable=False,
        help_text="The worker that last claimed or adopted the job; kept once it ends.",
    )

    # Kept by the upgrade of a 1.0.x database (docs/migration-guide.md).
    legacy_id = models.UUIDField(
        null=True,
        blank=True,
        unique=True,
        editable=False,
        help_text="The job's id under 1.0.x; empty for jobs made since.",
    )
    legacy_data = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="1.0.x values that have no field here (description, docker_log, ...).",
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "container job"
        indexes = [
            # The ready-job query: queued or retrying, priority desc, then FIFO.
            models.Index(
                models.F("priority").desc(),
                "queued_at",
                "id",
                name="cm_job_ready_idx",
                condition=Q(status__in=sorted(states.READY_STATUSES)),
            ),
            # Lease recovery: active jobs by lease expiry.
            models.Index(
                fields=["lease_expires_at"],
                name="cm_job_lease_idx",
                condition=Q(status__in=sorted(states.LEASED_STATUSES)),
            ),
            models.Index(fields=["status", "queue"], name="cm_job_status_queue_idx"),
            models.Index(fields=["host", "status"], name="cm_job_host_status_idx"),
            models.Index(fields=["-created_at", "-id"], name="cm_job_created_idx"),
            # The jobs not finished, counted by the statistics from the index alone.
            models.Index(
                fields=["status", "queue"],
                include=["error_code", "retry_count", "priority", "scheduled_for"],
                name="cm_job_unfinished_idx",
                condition=Q(status__in=sorted(states.UNFINISHED_STATUSES)),
            ),
            # Image tasks by kind (the statistics); run jobs are the rest.
            models.Index(fields=["kind"], name="cm_job_kind_idx", condition=~Q(kind="run")),
            # Finished today / in a window, counted from the index alone.
            models.Index(
                fields=["completed_at", "status"],
                name="cm_job_completed_idx",
                condition=Q(completed_at__isnull=False),
            ),
        ]
        constraints = [
            # One unfinished job per queue and unique key...
            models.UniqueConstraint(
                fields=["queue", "unique_key"],
                name="cm_job_unique_unfinished",
                condition=Q(
                    unique_window_start__isnull=True,
                    status__in=sorted(states.UNFINISHED_STATUSES),
                )
                & ~Q(unique_key=""),
                violation_error_message="A job of this queue with this unique key is not "
                "finished yet.",
            ),
            # ...or one per queue, key and window, whatever its status.
            models.UniqueConstraint(
                fields=["queue", "unique_key", "unique_window_start"],
                name="cm_job_unique_window",
                condition=Q(unique_window_start__isnull=False) & ~Q(unique_key=""),
                violation_error_message="A job of this queue with this unique key was made "
                "in this window.",
            ),
            # Each fire time of a schedule makes one job, whichever worker fires it.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_fire_at"],
                name="cm_job_schedule_fire",
                condition=Q(schedule__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["array", "array_index"],
                name="cm_job_array_index_unique",
                condition=Q(array__isnull=False),
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=0, priority__lte=100),
                name="cm_job_priority_range",
                violation_error_message="Priority must be between 0 and 100.",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=100),
                name="cm_job_progress_range",
                violation_error_message="Progress must be between 0 and 100.",
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=1),
                name="cm_job_timeout_positive",
                violation_error_message="Timeout must be at least 1 second.",
            ),
            models.CheckConstraint(
                condition=Q(memory_limit_mb__isnull=True) | Q(memory_limit_mb__gte=1),
                name="cm_job_memory_positive",
                violation_error_message="Memory limit must be at least 1 MB.",
            ),
            models.CheckConstraint(
                condition=Q(cpu_limit_cores__isnull=True) | Q(cpu_limit_cores__gt=0),
                name="cm_job_cpu_positive",
                violation_error_message="CPU limit must be above 0.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values),
                name="cm_job_status_known",
                violation_error_message="Status must be one of the job states.",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=JobKind.values),
                name="cm_job_kind_known",
                violation_error_message="Kind must be one of the job kinds.",
            ),
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_status: str | None = None if self._state.adding else self.status

    def __str__(self) -> str:
        return f"Job {self.pk}" + (f" ({self.name})" if self.name else "")

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Fill defaults, validate, and refuse an invalid status change.

        Raises:
            ValidationError: A field is invalid; nothing is written.
            InvalidStateTransition: ``status`` was changed to a status the
                state machine does not allow from the stored one.
        """
        self.validate_for_save()
        if self._state.adding or self.status == self._loaded_status:
            super().save(*args, **kwargs)
        else:
            self._save_with_transition(*args, **kwargs)
        self._loaded_status = self.status

    def validate_for_save(self) -> None:
        """Fill defaults (``DEFAULT_IMAGE``) and check the fields, as ``save()`` does first.

        Raises:
            ValidationError: A field is invalid, named.
        """
        if not self.image and self.kind == JobKind.RUN:
            self.image = str(settings.DEFAULT_IMAGE)
        self.clean_fields(exclude=_SAVE_EXCLUDE)
        self.clean()

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        # The covering index (cm_job_unfinished_idx) speeds up PostgreSQL's
        # statistics; SQLite makes it a plain partial index, which is all it
        # needs. Django's warning about that (models.W040) would otherwise be
        # printed by every command of a project on SQLite.
        return [error for error in super().check(**kwargs) if error.id != "models.W040"]

    @classmethod
    def from_db(cls, *args: Any, **kwargs: Any) -> ContainerJob:
        # **kwargs passes Django 6.0's fetch_mode through.
        instance = super().from_db(*args, **kwargs)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    # Validation -----------------------------------------------------------

    def clean(self) -> None:
        """Check what single-field validators cannot: strategy names and the timeout ceiling."""
        super().clean()
        errors: dict[str, str] = {}
        if self.retry_strategy not in RETRY_STRATEGIES:
            known = ", ".join(sorted(RETRY_STRATEGIES))
            errors["retry_strategy"] = (
                f"Unknown retry strategy {self.retry_strategy!r}; known: {known}."
            )
        ceiling = int(settings.MAX_TIMEOUT_SECONDS)
        if isinstance(self.timeout_seconds, int) and self.timeout_seconds > ceiling:
            errors["timeout_seconds"] = (
                f"Timeout of {self.timeout_seconds} s is above the maximum of {ceiling} s "
                "(CONTAINER_MANAGER['MAX_TIMEOUT_SECONDS'])."
            )
        if self.working_directory and not self.working_directory.startswith("/"):
            errors["working_directory"] = "Working directory must be an absolute path."
        if not self.queue:
            errors["queue"] = "Queue name cannot be empty."
        if self.status not in JobStatus.values:
            errors["status"] = (
                f"Unknown status {self.status!r}; known: {', '.join(JobStatus.values)}."
            )
        errors.update(image_task_problems(self))
        if not isinstance(self.environment, dict):
            errors["environment"] = (
                "Environment must be an object of NAME: value, not "
                f"{type(self.environment).__name__}."
            )
        if errors:
            raise ValidationError(errors)

    def _save_with_transition(self, *args: Any, **kwargs: Any) -> None:
        loaded = self._loaded_status or ""
        if not states.can_transition(loaded, self.status):
            raise InvalidStateTransition(self.pk, loaded, self.status)
        with transaction.atomic():
            # Lock the row so the status we compare with cannot change before we write.
            current = (
                type(self)
                ._base_manager.select_for_update()
                .filter(pk=self.pk)
                .values_list("status", flat=True)
                .first()
            )
            if current != loaded:
                raise StaleJobError(
                    self.pk, str(current), self.status, f"stored status is {current!r}"
                )
            super().save(*args, **kwargs)

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._loaded_status = self.status

    def set_stored(self, fields: dict[str, Any]) -> None:
        """Set what a guarded UPDATE just wrote on this instance, instead of reading it back.

        Args:
            fields: The columns written, ``status`` included if it was.
        """
        for name, value in fields.items():
            setattr(self, name, value)
        self._loaded_status = self.status

    # State machine --------------------------------------------------------

    def can_transition_to(self, new_status: str) -> bool:
        """Tell whether this job may move from its status to ``new_status``."""
        return states.can_transition(self.status, new_status)

    def transition_to(self, new_status: str, **fields: Any) -> None:
        """Move the job to ``new_status`` in one guarded UPDATE, with other fields.

        The row changes only if its stored status is still the one this
        instance holds, so two processes can never both make a move.

        Args:
            new_status: The target status.
            **fields: Other columns to write in the same UPDATE.

        Raises:
            InvalidStateTransition: The move is not allowed; nothing is written.
            StaleJobError: The stored status changed since this instance was loaded;
                the instance is refreshed and nothing is written.
        """
        current = self.status
        if not states.can_transition(current, new_status):
            raise InvalidStateTransition(self.pk, current, new_status)
        moved = (
            type(self)
            .objects.filter(pk=self.pk, status=current)
            .update(status=new_status, **fields)
        )
        if not moved:
            self.refresh_from_db()
            raise StaleJobError(self.pk, current, new_status, f"stored status is {self.status!r}")
        for name, value in fields.items():
            setattr(self, name, value)
        self.status = new_status
        self._loaded_status = new_status

    def mark_as_queued(
        self, scheduled_for: datetime | None = None, priority: int | None = None
    ) -> None:
        """Queue the job: it becomes ready now, or at ``scheduled_for``.

        Args:
            scheduled_for: When the job may start; None for now.
            priority: New priority (0-100), or None to keep it.
        """
        fields: dict[str, Any] = {
            "queued_at": timezone.now(),
            "scheduled_for": scheduled_for,
            "launched_at": None,
            "started_at": None,
            "completed_at": None,
            "exit_code": None,
            "container_id": "",
            "worker_id": "",
            "lease_expires_at": None,
            "progress": 0,
            "current_step": "",
        }
        if priority is not None:
            if not 0 <= priority <= 100:
                raise ValidationError({"priority": f"Priority must be 0-100, not {priority}."})
            fields["priority"] = priority
        self.transition_to(JobStatus.QUEUED, **fields)

    def mark_as_running(self, container_id: str | None = None) -> None:
        """Record that the container started; sets ``launched_at`` and ``started_at``."""
        now = timezone.now()
        fields: dict[str, Any] = {"launched_at": self.launched_at or now, "started_at": now}
        if container_id is not None:
            fields["container_id"] = container_id
        self.transition_to(JobStatus.RUNNING, **fields)

    def mark_as_completed(self, exit_code: int | None = 0) -> None:
        """Record a successful end; sets ``completed_at`` and the exit code."""
        self.transition_to(
            JobStatus.COMPLETED,
            completed_at=timezone.now(),
            exit_code=exit_code,
            progress=100,
            worker_id="",
            lease_expires_at=None,
        )

    def mark_as_failed(
        self, should_retry: bool = False, error: str = "", error_code: str = ""
    ) -> bool:
        """Record a failure; with ``should_retry``, schedule another attempt if any are left.

        A retry moves the job to ``retrying`` with ``scheduled_for`` set by its
        retry strategy's backoff, so the queue picks it up like a scheduled job.

        Args:
            should_retry: The failure is transient and the job may run again.
            error: The error message, stored in ``last_error``.
            error_code: A code of the error catalogue, stored in ``error_code``.

        Returns:
            True when a retry was scheduled, False when the job is finally failed.
        """
        now = timezone.now()
        retry_count = self.retry_count + 1
        fields: dict[str, Any] = {
            "retry_count": retry_count,
            "worker_id": "",
            "lease_expires_at": None,
        }
        if error:
            fields.update(last_error=error, last_error_at=now)
        if error_code:
            fields["error_code"] = error_code
        if should_retry and retry_count < self.effective_max_retries:
            strategy = get_strategy(self.retry_strategy)
            fields["scheduled_for"] = next_retry_at(strategy, retry_count, now=now)
            self.transition_to(JobStatus.RETRYING, **fields)
            return True
        self.transition_to(JobStatus.FAILED, completed_at=now, **fields)
        return False

    def mark_as_cancelled(self) -> None:
        """Record that a person cancelled the job."""
        self.transition_to(
            JobStatus.CANCELLED, completed_at=timezone.now(), worker_id="", lease_expires_at=None
        )

    def mark_as_timeout(self) -> None:
        """Record that the job ran past ``timeout_seconds`` and was killed."""
        self.transition_to(
            JobStatus.TIMEOUT,
            completed_at=timezone.now(),
            error_code="SYSTEM_TIMEOUT",
            last_error=f"Timed out after {self.timeout_seconds} s",
            last_error_at=timezone.now(),
            worker_id="",
            lease_expires_at=None,
        )

    # Properties -----------------------------------------------------------

    @property
    def effective_max_retries(self) -> int:
        """Launch attempts allowed: ``max_retries``, or the strategy's ``max_attempts``."""
        return attempts_allowed(self.max_retries, self.retry_strategy)

    @property
    def is_queued(self) -> bool:
        """True when the job waits in the queue (queued or retrying) and has not launched."""
        return self.status in states.READY_STATUSES and self.launched_at is None

    @property
    def is_ready_to_launch(self) -> bool:
        """True when the job is queued and its scheduled time, if any, has come."""
        return self.is_queued and (
            self.scheduled_for is None or self.scheduled_for <= timezone.now()
        )

    @property
    def is_terminal(self) -> bool:
        """True when the job has ended (completed, failed, cancelled or timed out)."""
        return self.status in states.TERMINAL_STATUSES

    @property
    def queue_status(self) -> str:
        """The job's place in the queue (docs/queue-management.md).

        Returns:
            ``'not_queued'``, ``'queued'``, ``'scheduled'``, ``'launched'`` or ``'launch_failed'``.
        """
        if self.launched_at is not None:
            return "launched"
        if self.status == JobStatus.FAILED and self.queued_at is not None:
            return "launch_failed"
        if self.status in states.LAUNCHING_STATUSES:
            return "queued"
        if self.is_queued:
            return "queued" if self.is_ready_to_launch else "scheduled"
        return "not_queued"

    def is_past_timeout(self, now: datetime) -> bool:
        """Tell whether the job's container has run longer than ``timeout_seconds``."""
        return has_run_past_timeout(self.started_at or self.launched_at, self.timeout_seconds, now)

    @property
    def live_step(self) -> str:
        """The step to show beside the progress.

        The launch step while the job is launching; after that only a step the
        container reported itself (where a failed job got to), never a launch
        step left over; none for a completed job.
        """
        if self.status in states.LAUNCHING_STATUSES:
            return self.current_step
        if self.status == JobStatus.COMPLETED or self.current_step in _LAUNCH_STEPS:
            return ""
        return self.current_step

    @property
    def duration(self) -> timedelta | None:
        """How long the container ran: to ``completed_at``, or to now while it runs."""
        if self.started_at is None:
            return None
        end = self.completed_at or (timezone.now() if self.status == JobStatus.RUNNING else None)
        return None if end is None else end - self.started_at
