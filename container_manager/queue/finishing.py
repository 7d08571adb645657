"""What happens to a job between its launch and its end: steps, progress, end, timeout.

Every write here is one guarded UPDATE that matches only the attempt it is
about (and, where given, the worker that holds it), so a late report of an
old attempt, or of a job cancelled meanwhile, changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from container_manager.classification import describe
from container_manager.exceptions import (
    ContainerNotFoundError,
    ExecutorError,
    InvalidStateTransition,
)
from container_manager.executors.base import ContainerRef, ExitStatus, Logs
from container_manager.logcap import parse_error_line, storable_text
from container_manager.models import ContainerJob
from container_manager.notify import announce_work
from container_manager.queue.base import ManagerBase
from container_manager.signals import send_finished
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)

#: Error codes of a container that ended badly.
EXIT_NONZERO = "CONTAINER_EXIT_NONZERO"
OOM_KILLED = "CONTAINER_OOM_KILLED"
#: Error code of a job whose output can never be read (its container is gone).
LOGS_UNAVAILABLE = "LOGS_UNAVAILABLE"
#: Launch steps an executor may report, and the status each one is recorded as.
STEP_STATUSES = {"preparing": JobStatus.PREPARING, "pulling": JobStatus.PULLING}
#: Longest ``current_step`` stored (the column's length).
MAX_STEP_LENGTH = 200


class FinishMixin(ManagerBase):
    """Launch steps, progress, ends and timeouts; mixed into ``JobQueueManager``."""

    def record_step(self, job: ContainerJob, step: str) -> bool:
        """Record a launch step the executor reports (``preparing``, ``pulling``).

        Never fails the launch: an unknown step, or a job that changed
        meanwhile (cancelled, say), is left as it is.

        Args:
            job: The job being launched; its instance is updated.
            step: The step's name.

        Returns:
            True when the step was written.
        """
        status = STEP_STATUSES.get(step)
        if status is None or job.status == status or not job.can_transition_to(status):
            return False
        try:
            job.transition_to(status, current_step=JobStatus(status).label)
        except InvalidStateTransition:
            logger.info(
                "Job %s changed during launch (now %s)",
                job.pk,
                job.status,
                extra={"job_id": job.pk, "worker_id": job.worker_id},
            )
            return False
        return True

    def record_progress(self, ref: ContainerRef, percent: int, step: str) -> bool:
        """Store the progress a running container reported.

        Args:
            ref: The container (job and attempt) that reported it.
            percent: 0-100; values outside are clamped.
            step: The current step, cut to ``MAX_STEP_LENGTH`` characters.

        Returns:
            True when the job was still running this attempt and was updated.
        """
        moved = (
            ContainerJob.objects.using(self.using)
            .filter(pk=ref.job_id, status=JobStatus.RUNNING, attempt=ref.attempt)
            .update(progress=max(0, min(percent, 100)), current_step=step[:MAX_STEP_LENGTH])
        )
        return bool(moved)

    def finish_job(
        self, job: ContainerJob, exit_status: ExitStatus, worker_id: str | None = None
    ) -> bool:
        """Store how a job's container ended, and apply ``CONTAINER_RETENTION``.

        Exit code 0 completes the job; any other code fails it with
        ``CONTAINER_EXIT_NONZERO``, or ``CONTAINER_OOM_KILLED`` when the engine
        killed it for memory. Output is stored capped at ``LOG_MAX_BYTES``.
        An end is never stored without its output: when the engine cannot be
        read now, this raises and nothing is written or removed (the worker
        tries again); when the output is gone for good (the container was
        removed by someone else), the job is finished with ``LOGS_UNAVAILABLE``
        as its error code, so that empty output is never silent.
        The write is one guarded UPDATE: only a job still ``running`` (and,
        with ``worker_id``, still held by that worker) is changed, so a job
        cancelled or timed out meanwhile keeps that status and gets its
        output, once (while its ``exit_code`` is still None). Idle workers
        are woken: the job's slot is free.

        Args:
            job: The running job.
            exit_status: What the executor reported.
            worker_id: The worker holding the job; None to skip that guard.

        Returns:
            True when this call wrote the job's end.

        Raises:
            ExecutorError: The output could not be read now; nothing was written.
        """
        outcome = self.finish_jobs([(job, exit_status)], worker_id)
        if job.pk in outcome.failed:
            raise outcome.failed[job.pk]
        return job.pk in outcome.written

    def finish_jobs(
        self,
        ends: list[tuple[ContainerJob, ExitStatus]],
        worker_id: str | None = None,
        *,
        defer_retention: bool = False,
    ) -> FinishOutcome:
        """Store several ends at once, as :meth:`finish_job` does one, in one transaction.

        The output of each is read first (outside the transaction); an end
        whose output cannot be read now is left out (nothing of it written
        or removed) and reported in ``failed``. The others are written in
        one transaction, each with its own guarded UPDATE, with one wake-up
        per queue; then ``CONTAINER_RETENTION`` is applied to each.

        Args:
            ends: Each running job with what its executor reported.
            worker_id: The worker holding the jobs; None to skip that guard.
            defer_retention: Do not remove the containers here: they are
                listed in ``FinishOutcome.to_retain`` for the caller to hand
                to ``Containers.apply_retention`` later (a worker does it on
                a thread of its own, so that removals never delay the next
                end's record). Their output is stored either way.

        Returns:
            Which ends this call wrote, and which could not be read now.

        Raises:
            django.db.DatabaseError: The transaction failed; nothing was
                written or removed (the worker tries again).
        """
        outcome = FinishOutcome()
        ready: list[tuple[ContainerJob, ExitStatus, dict[str, Any]]] = []
        for job, exit_status in ends:
            try:
                logs, unreadable = self._read_output(job, exit_status.ref)
            except ExecutorError as exc:
                outcome.failed[job.pk] = exc
                continue
            ready.append((job, exit_status, _end_fields(job, exit_status, logs, unreadable)))
        if not ready:
            return outcome
        jobs = ContainerJob.objects.using(self.using)
        # One transaction: the ends, and the wake-up of idle workers (their
        # slots are free), which PostgreSQL delivers when it commits.
        with transaction.atomic(using=self.using):
            for job, exit_status, fields in ready:
                qs = jobs.filter(
                    pk=job.pk, status=JobStatus.RUNNING, attempt=exit_status.ref.attempt
                )
                if worker_id is not None:
                    qs = qs.filter(worker_id=worker_id)
                if qs.update(**fields):
                    outcome.written.add(job.pk)
                else:
                    _store_output_once(jobs, job, exit_status, fields)
            for queue in sorted({job.queue for job, _, _ in ready if job.pk in outcome.written}):
                announce_work(queue, using=self.using)
        for job, exit_status, fields in ready:
            if job.pk in outcome.written:
                job.set_stored(fields)
                send_finished(job, self.using)
                logger.info(
                    "Job %s ended with exit code %s: %s",
                    job.pk,
                    exit_status.exit_code,
                    fields["status"],
                    extra={
                        "job_id": job.pk,
                        "attempt": exit_status.ref.attempt,
                        "worker_id": worker_id,
                        "error_code": fields.get("error_code") or None,
                    },
                )
            else:
                logger.info(
                    "Job %s was no longer running when its container ended",
                    job.pk,
                    extra={"job_id": job.pk, "worker_id": worker_id},
                )
            is_success = fields["status"] == JobStatus.COMPLETED
            if defer_retention:
                outcome.to_retain.append((job, exit_status.ref, is_success))
            else:
                self.containers.apply_retention(job, exit_status.ref, is_success=is_success)
        return outcome

    def _read_output(self, job: ContainerJob, ref: ContainerRef) -> tuple[Logs, str]:
        """The container's output, and why it is empty when it can never be read ("" if read).

        Raises:
            ExecutorError: The engine cannot be read now (it may be later).
        """
        try:
            return self.containers.logs(job, ref), ""
        except ContainerNotFoundError as exc:
            logger.error(
                "The output of job %s is gone: %s",
                job.pk,
                exc,
                extra={"job_id": job.pk},
            )
            return Logs(stdout="", stderr=""), str(exc)

    def timeout_job(self, job: ContainerJob, ref: ContainerRef) -> bool:
        """Record ``timeout`` for a job that ran past ``timeout_seconds``, and kill it.

        The timeout is written before the kill: the other way round, the
        worker following the container could record the killed container's
        end (exit 137) as a failure first. The output is not read here: the
        killed container's end, recorded by :meth:`finish_job` like any
        other, stores it with the exit code (137 on every executor) and
        applies ``CONTAINER_RETENTION``, so an engine that cannot be read at
        this moment loses nothing.

        Args:
            job: The running job.
            ref: Its container.

        Returns:
            True when this call recorded the timeout.

        Raises:
            ExecutorError: The kill failed; the timeout is stored all the same.
        """
        try:
            job.mark_as_timeout()
        except InvalidStateTransition:
            return False
        send_finished(job, self.using)
        logger.warning(
            "Job %s timed out after %s s; killing it",
            job.pk,
            job.timeout_seconds,
            extra={"job_id": job.pk},
        )
        self.containers.kill(job, ref)
        return True


@dataclass
class FinishOutcome:
    """What :meth:`FinishMixin.finish_jobs` did.

    Attributes:
        written: Ids of the jobs whose end this call wrote.
        failed: Ids of the jobs whose output could not be read now, with the
            error; nothing of them was written or removed.
        to_retain: With ``defer_retention``, each recorded job with its
            container and whether it counts as a success, for
            ``Containers.apply_retention``.
    """

    written: set[int] = field(default_factory=set)
    failed: dict[int, ExecutorError] = field(default_factory=dict)
    to_retain: list[tuple[ContainerJob, ContainerRef, bool]] = field(default_factory=list)


def _end_fields(
    job: ContainerJob, exit_status: ExitStatus, logs: Logs, unreadable: str
) -> dict[str, Any]:
    """The columns of a job's end, with a note when its output can never be read."""
    fields = _final_fields(job, exit_status, logs)
    if unreadable:
        note = f"The output could not be read: {unreadable}"
        if fields["status"] == JobStatus.COMPLETED:
            fields.update(error_code=LOGS_UNAVAILABLE, last_error=note)
        else:
            fields["last_error"] = f"{fields['last_error']}. {note}"
        fields["last_error_at"] = timezone.now()
    return fields


def _store_output_once(
    jobs: QuerySet[ContainerJob], job: ContainerJob, exit_status: ExitStatus, fields: dict[str, Any]
) -> None:
    """Give a job cancelled or timed out meanwhile its output and exit code, once.

    A second report of the same end (the worker's clean-up, or a follower
    that read after the container was removed) must not write over the
    output stored first: only a row whose ``exit_code`` is still None moves.
    """
    jobs.filter(
        pk=job.pk,
        status__in=(JobStatus.CANCELLED, JobStatus.TIMEOUT),
        attempt=exit_status.ref.attempt,
        exit_code__isnull=True,
    ).update(stdout=fields["stdout"], stderr=fields["stderr"], exit_code=fields["exit_code"])


def _reported_error(logs: Logs) -> tuple[str, str] | None:
    """The ``::error`` line a failed container printed last: stderr first, then stdout."""
    return parse_error_line(logs.stderr) or parse_error_line(logs.stdout)


def _final_fields(job: ContainerJob, exit_status: ExitStatus, logs: Logs) -> dict[str, Any]:
    """The columns of a job's end: exit code, output, status, error."""
    now = timezone.now()
    code = exit_status.exit_code
    ended = exit_status.finished_at or now
    if job.started_at is not None and ended < job.started_at:
        # The engine's clock, or a container that ended before we recorded its start.
        ended = now
    fields: dict[str, Any] = {
        "exit_code": code,
        # Whatever an executor answers, the row must take it (NUL on PostgreSQL).
        "stdout": storable_text(logs.stdout),
        "stderr": storable_text(logs.stderr),
        "completed_at": ended,
        "worker_id": "",
        "lease_expires_at": None,
    }
    if code == 0 and not exit_status.is_oom_killed:
        # An error of an earlier attempt (a lost worker, a failed launch) is
        # not this job's outcome: a completed job carries none.
        fields.update(
            status=JobStatus.COMPLETED,
            progress=100,
            error_code="",
            last_error="",
            last_error_at=None,
        )
        return fields
    error_code = OOM_KILLED if exit_status.is_oom_killed else EXIT_NONZERO
    message = exit_status.error or (
        "Killed for using more memory than its limit"
        if exit_status.is_oom_killed
        else f"Exited with code {code}"
    )
    reported = None if exit_status.is_oom_killed else _reported_error(logs)
    if reported is not None:
        # The container said why it failed (an ``::error CODE detail`` line).
        error_code = reported[0]
        message = f"{reported[1] or describe(reported[0]).description} (exited with code {code})"
    fields.update(
        status=JobStatus.FAILED, error_code=error_code, last_error=message, last_error_at=now
    )
    return fields
