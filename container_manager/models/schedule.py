"""Schedule: a job template queued at each fire time of a cron expression.

A schedule's jobs carry ``schedule`` and ``scheduled_fire_at``; the database
holds at most one job per schedule and fire time (``cm_job_schedule_fire``),
so however many workers fire schedules at once, each fire time makes one job
(queue/schedules.py). The expression is read by croniter: five fields
(minute to weekday), or six with seconds last (``* * * * * */10``: every
10 seconds), in the schedule's time zone.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone as django_timezone

from container_manager.models.job import ContainerJob
from container_manager.models.validation import CheckedFieldsMixin


class CatchUp(models.TextChoices):
    """What a schedule does with the fire times it missed (no worker was running)."""

    SKIP = "skip", "Skip missed runs"
    ONCE = "once", "Run once for all missed runs"
    ALL = "all", "Run every missed run (up to max_catch_up)"


class Concurrency(models.TextChoices):
    """What a fire time does while a job of the schedule has not finished (Kubernetes' policy)."""

    ALLOW = "allow", "Allow: queue another"
    FORBID = "forbid", "Forbid: skip this run"
    REPLACE = "replace", "Replace: cancel the unfinished one, queue the new"


#: The job fields a schedule's template may set (as ``create_and_queue`` takes them).
TEMPLATE_FIELDS = frozenset(
    {
        "name",
        "image",
        "command",
        "is_shell_command",
        "working_directory",
        "environment",
        "memory_limit_mb",
        "cpu_limit_cores",
        "timeout_seconds",
        "network",
        "user",
        "queue",
        "priority",
        "max_retries",
        "retry_strategy",
    }
)


def cron_problem(expression: str) -> str:
    """Say why ``expression`` is not a cron expression croniter reads, or "" when it is."""
    if not isinstance(expression, str) or not expression.strip():
        return "A cron expression is needed, e.g. '0 2 * * *' (every day at 02:00)."
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"{expression!r} has {len(fields)} fields; a cron expression has 5 (minute hour "
            "day month weekday) or 6 (the same, then seconds)."
        )
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression."
    return ""


def validate_cron(value: str) -> None:
    """The validator of ``Schedule.cron``."""
    problem = cron_problem(value)
    if problem:
        raise ValidationError(problem, code="invalid_cron")


def validate_timezone(value: str) -> None:
    """The validator of ``Schedule.timezone``: an IANA name (``Europe/Paris``, ``UTC``)."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValidationError(
            f"{value!r} is not a time zone name like 'UTC' or 'Europe/Paris'.",
            code="invalid_timezone",
        ) from exc


class Schedule(CheckedFieldsMixin, models.Model):
    """Queue a job made from ``job`` at each fire time of ``cron`` (docs/schedules.md)."""

    CatchUp = CatchUp
    Concurrency = Concurrency

    name = models.CharField(max_length=200, unique=True)
    cron = models.CharField(
        max_length=200,
        validators=[validate_cron],
        help_text="5 fields (minute hour day month weekday), or 6 with seconds last.",
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    job = models.JSONField(
        default=dict,
        help_text="The job to queue: image, command, environment, queue, priority, limits, "
        "retry settings (the fields of create_and_queue).",
    )
    host = models.ForeignKey(
        "container_manager.ExecutorHost",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="schedules",
        help_text="Empty: the worker picks a host, as for any job.",
    )
    catch_up = models.CharField(max_length=10, choices=CatchUp.choices, default=CatchUp.SKIP)
    max_catch_up = models.PositiveIntegerField(
        default=10, help_text="With catch-up 'all': most missed runs queued at once."
    )
    concurrency = models.CharField(
        max_length=10, choices=Concurrency.choices, default=Concurrency.ALLOW
    )
    is_suspended = models.BooleanField(default=False)
    next_fire_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="The next fire time not handled yet."
    )
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(
                fields=["next_fire_at"],
                name="cm_schedule_due_idx",
                condition=models.Q(is_suspended=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Validate, and set the first fire time of a new (or re-timed) schedule."""
        self.full_clean(exclude=["host"], validate_unique=False, validate_constraints=False)
        if self.next_fire_at is None:
            self.next_fire_at = self.fire_times_after(django_timezone.now(), 1)[0]
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if not isinstance(self.job, dict):
            errors["job"] = f"Must be an object of job fields, not {type(self.job).__name__}."
        else:
            unknown = sorted(set(self.job) - TEMPLATE_FIELDS)
            if unknown:
                errors["job"] = (
                    f"Unknown job field(s) {', '.join(map(str, unknown))}; known: "
                    f"{', '.join(sorted(TEMPLATE_FIELDS))}."
                )
            else:
                problem = template_problem(self.job)
                if problem:
                    errors["job"] = problem
        if isinstance(self.max_catch_up, int) and self.max_catch_up < 1:
            errors["max_catch_up"] = "At least 1."
        if errors:
            raise ValidationError(errors)

    def _wall(self, when: datetime) -> datetime:
        """The local wall-clock time of ``when`` (naive): two instants of a repeated hour match."""
        return when.astimezone(zoneinfo.ZoneInfo(self.timezone)).replace(tzinfo=None, fold=0)

    def fire_times_after(self, start: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times strictly after ``start`` (aware, in UTC).

        When the clocks go back, a wall-clock time that comes twice fires
        once (its first coming), as cron does.
        """
        zone = zoneinfo.ZoneInfo(self.timezone)
        it = croniter(self.cron, start.astimezone(zone))
        found: list[datetime] = []
        previous = self._wall(start)
        while len(found) < count:
            following = it.get_next(datetime).astimezone(UTC)
            wall = self._wall(following)
            if wall != previous:
                found.append(following)
            previous = wall
        return found

    def fire_times_between(self, first: datetime, until: datetime, limit: int) -> list[datetime]:
        """The fire times from ``first`` to ``until`` (both included), the last ``limit`` of them.

        Walked backwards from ``until``, so a schedule every second that
        missed a day costs ``limit`` steps, not 86,400. A repeated
        wall-clock time counts once, as in :meth:`fire_times_after`.
        """
        zone = zoneinfo.ZoneInfo(self.timezone)
        # From a second past ``until``: croniter works in whole seconds, and
        # ``until`` itself may be a fire time.
        it = croniter(self.cron, (until + timedelta(seconds=1)).astimezone(zone))
        walked: list[datetime] = []
        while len(walked) < limit + 2:
            previous = it.get_prev(datetime).astimezone(UTC)
            if previous < first:
                break
            if previous <= until:
                walked.append(previous)
        times: list[datetime] = []
        for when in reversed(walked):
            if times and self._wall(when) == self._wall(times[-1]):
                continue
            times.append(when)
        return times[-limit:]


def template_problem(template: dict[str, Any]) -> str:
    """Say what is wrong with a schedule's job template, or "": it must make a valid job."""
    try:
        ContainerJob(**template).validate_for_save()
    except ValidationError as exc:
        problems = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in problems.items())
    except (TypeError, ValueError) as exc:
        return str(exc)
    return ""
