"""What a person can do to jobs from the admin, one job at a time or in bulk.

Every operation goes through ``queue_manager`` (the sole writer of job
state), so the state machine decides: a job in the wrong state is skipped
and named, with the reason, in the message shown to the person.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from container_manager import states
from container_manager.exceptions import ContainerStopDeferredError
from container_manager.models import ContainerJob
from container_manager.models.job import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL
from container_manager.queue import queue_manager
from container_manager.states import JobStatus

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

logger = logging.getLogger(__name__)

#: The Django permission behind each verb of the job admin. Operating jobs
#: needs the model's change permission; reading their logs its view permission.
JOB_PERMISSIONS: dict[str, str] = {
    "queue": "container_manager.change_containerjob",
    "cancel": "container_manager.change_containerjob",
    "pause": "container_manager.change_containerjob",
    "logs": "container_manager.view_containerjob",
}
#: Most jobs one bulk action handles; each job is one guarded UPDATE (and,
#: for a running one, a call to its host), so "select all" on a million-row
#: list is refused rather than run for minutes inside one request.
MAX_BULK_JOBS = 10_000
#: Jobs named one by one in a message; the rest are counted.
MAX_NAMED_JOBS = 20
#: Statuses whose priority still matters: the job may yet wait in the queue.
REPRIORITISABLE_STATUSES = frozenset(
    {JobStatus.PENDING, JobStatus.PAUSED, JobStatus.FAILED, JobStatus.TIMEOUT}
    | states.READY_STATUSES
)

Operation = Callable[[ContainerJob], Any]

#: The bulk actions of the job list, in the order docs/queue-management.md lists them.
JOB_ACTIONS = (
    "queue_selected_jobs",
    "dequeue_selected_jobs",
    "cancel_selected_jobs",
    "retry_failed_jobs",
    "run_jobs_again",
    "set_priority_high",
    "set_priority_normal",
    "set_priority_low",
)


@dataclass
class Outcome:
    """What an operation did to a set of jobs."""

    done: list[ContainerJob] = field(default_factory=list)
    refused: list[tuple[ContainerJob, str]] = field(default_factory=list)
    #: Done, with something the person should know (a container stopped later).
    notes: list[tuple[ContainerJob, str]] = field(default_factory=list)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc) or type(exc).__name__


def apply_to_jobs(jobs: Iterable[ContainerJob], operation: Operation, verb: str) -> Outcome:
    """Run ``operation`` on each job, collecting what it did and what it refused.

    A ``ValueError`` (the queue's state errors) or ``ValidationError`` is a
    refusal; anything else (an executor that cannot be reached) is logged
    with its traceback and reported as a failure of that job only.

    Args:
        jobs: The jobs.
        operation: Called with each job; raises to refuse.
        verb: What the operation does, for the log ("cancel").

    Returns:
        The :class:`Outcome`.
    """
    outcome = Outcome()
    for job in jobs:
        try:
            operation(job)
        except ContainerStopDeferredError as exc:
            outcome.done.append(job)
            outcome.notes.append((job, str(exc)))
        except (ValueError, ValidationError) as exc:
            outcome.refused.append((job, _reason(exc)))
        except Exception as exc:
            logger.exception("Admin could not %s job %s", verb, job.pk, extra={"job_id": job.pk})
            outcome.refused.append((job, f"failed: {_reason(exc)}"))
        else:
            outcome.done.append(job)
    return outcome


def _names(jobs: list[ContainerJob]) -> str:
    shown = ", ".join(str(job) for job in jobs[:MAX_NAMED_JOBS])
    more = len(jobs) - MAX_NAMED_JOBS
    return shown + (f" and {more} more" if more > 0 else "")


#: Up to this many jobs a message names each one; above it, one line with a
#: count, and the jobs in a list that opens on demand.
INLINE_JOBS = 3
#: The most jobs that list names.
MAX_LISTED_JOBS = 500


def _listed(summary: str, lines: Iterable[str]) -> SafeString:
    """``summary`` on one line, then ``lines`` in a list that opens on demand."""
    return format_html(
        '{} <details class="cm-details"><summary>Which jobs</summary><ul>{}</ul></details>',
        summary,
        format_html_join("", "<li>{}</li>", ((line,) for line in lines)),
    )


def report(model_admin: ModelAdmin, request: HttpRequest, outcome: Outcome, past: str) -> None:
    """Tell the person what was done and what was skipped, and why.

    A few jobs are named in the line itself; more are counted in one line
    (the skipped ones by status) and listed on demand.

    Args:
        model_admin: The admin that shows the messages.
        request: The request.
        outcome: What happened.
        past: The verb in the past tense ("Cancelled").
    """
    if outcome.done:
        count = len(outcome.done)
        noun = "job" if count == 1 else "jobs"
        if count <= INLINE_JOBS:
            done: str | SafeString = f"{past} {count} {noun}: {_names(outcome.done)}."
        else:
            done = _listed(
                f"{past} {count} {noun}.", (str(job) for job in outcome.done[:MAX_LISTED_JOBS])
            )
        model_admin.message_user(request, done, messages.SUCCESS)
    for _job, note in outcome.notes[:MAX_NAMED_JOBS]:
        model_admin.message_user(request, f"{note}.", messages.WARNING)
    refused = outcome.refused
    if len(refused) > INLINE_JOBS:
        by_status = Counter(job.status for job, _ in refused)
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        model_admin.message_user(
            request,
            _listed(
                f"Skipped {len(refused)} jobs ({statuses}): their status does not allow it.",
                (f"{job}: {reason}" for job, reason in refused[:MAX_LISTED_JOBS]),
            ),
            messages.WARNING,
        )
    elif refused:
        shown = "; ".join(f"{job}: {reason}" for job, reason in refused)
        noun = "job" if len(refused) == 1 else "jobs"
        model_admin.message_user(
            request, f"Skipped {len(refused)} {noun}: {shown}.", messages.WARNING
        )
    if not outcome.done and not outcome.refused:
        model_admin.message_user(request, "No jobs were selected.", messages.WARNING)


def set_priority(job: ContainerJob, priority: int) -> None:
    """Give a job a new priority, if it may still wait in the queue.

    Args:
        job: The job.
        priority: 0-100.

    Raises:
        ValueError: The job has launched or ended for good, or its status
            changed meanwhile; nothing is written.
    """
    if job.status not in REPRIORITISABLE_STATUSES:
        raise ValueError(f"is {job.status}; priority only orders jobs that have yet to launch")
    changed = ContainerJob.objects.filter(
        pk=job.pk, status__in=sorted(REPRIORITISABLE_STATUSES)
    ).update(priority=priority)
    if not changed:
        raise ValueError("its status changed meanwhile")
    job.priority = priority


def _retry(job: ContainerJob) -> Any:
    return queue_manager.retry_failed_job(job, reset_count=True)


class JobActionsMixin:
    """The bulk actions of the job list; mixed into ``ContainerJobAdmin``."""

    def has_queue_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May the user queue, dequeue, retry and reprioritise jobs?"""
        return request.user.has_perm(JOB_PERMISSIONS["queue"])

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May the user cancel jobs (stopping their containers)?"""
        return request.user.has_perm(JOB_PERMISSIONS["cancel"])

    def has_pause_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May the user pause and resume jobs?"""
        return request.user.has_perm(JOB_PERMISSIONS["pause"])

    def has_logs_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May the user read jobs' output?"""
        return request.user.has_perm(JOB_PERMISSIONS["logs"])

    def _run(
        self, request: HttpRequest, queryset: QuerySet[ContainerJob], op: Operation, verb: str
    ) -> Outcome:
        jobs = queryset.select_related("host").defer("stdout", "stderr").order_by("pk")
        if jobs[: MAX_BULK_JOBS + 1].count() > MAX_BULK_JOBS:
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"Select at most {MAX_BULK_JOBS:,} jobs for one action; "
                "narrow the list with the filters first.",
                messages.ERROR,
            )
            return Outcome()
        outcome = apply_to_jobs(jobs, op, verb)
        report(self, request, outcome, verb)  # type: ignore[arg-type]
        return outcome

    @admin.action(permissions=["queue"], description="Queue selected jobs")
    def queue_selected_jobs(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Add the selected jobs to the queue (pending, failed or timed-out ones)."""
        self._run(request, queryset, queue_manager.queue_job, "Queued")

    @admin.action(permissions=["queue"], description="Remove selected jobs from queue")
    def dequeue_selected_jobs(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Take the selected waiting jobs out of the queue (back to pending)."""
        self._run(request, queryset, queue_manager.dequeue_job, "Removed from queue")

    @admin.action(permissions=["cancel"], description="Cancel selected jobs")
    def cancel_selected_jobs(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Cancel the selected jobs; running containers are stopped."""
        self._run(request, queryset, queue_manager.cancel_job, "Cancelled")

    @admin.action(permissions=["queue"], description="Retry failed jobs (reset retry count)")
    def retry_failed_jobs(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Queue the selected failed or timed-out jobs again with a fresh retry count."""
        self._run(request, queryset, _retry, "Requeued")

    @admin.action(permissions=["queue"], description="Run again with the same settings (new jobs)")
    def run_jobs_again(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Queue a new job for each selected one, with its settings; the selected ones stay."""
        made: list[ContainerJob] = []

        def again(job: ContainerJob) -> None:
            made.append(queue_manager.run_again(job))

        self._run(request, queryset, again, "Ran again")
        if made:
            self.message_user(  # type: ignore[attr-defined]
                request,
                "New jobs: "
                + ", ".join(f"#{job.pk}" for job in made[:MAX_NAMED_JOBS])
                + (f" and {len(made) - MAX_NAMED_JOBS} more" if len(made) > MAX_NAMED_JOBS else ""),
                messages.INFO,
            )

    @admin.action(permissions=["queue"], description=f"Set priority: high ({PRIORITY_HIGH})")
    def set_priority_high(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Give the selected jobs ``ContainerJob.PRIORITY_HIGH``."""
        self._run(
            request, queryset, lambda j: set_priority(j, PRIORITY_HIGH), "Set high priority on"
        )

    @admin.action(permissions=["queue"], description=f"Set priority: normal ({PRIORITY_NORMAL})")
    def set_priority_normal(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Give the selected jobs ``ContainerJob.PRIORITY_NORMAL``."""
        self._run(
            request, queryset, lambda j: set_priority(j, PRIORITY_NORMAL), "Set normal priority on"
        )

    @admin.action(permissions=["queue"], description=f"Set priority: low ({PRIORITY_LOW})")
    def set_priority_low(self, request: HttpRequest, queryset: QuerySet[ContainerJob]) -> None:
        """Give the selected jobs ``ContainerJob.PRIORITY_LOW``."""
        self._run(request, queryset, lambda j: set_priority(j, PRIORITY_LOW), "Set low priority on")
