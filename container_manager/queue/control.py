"""Pause, resume and cancel: of a named queue, of a host, of a single job.

A paused queue or host is never given new jobs; what already runs goes on.
A paused job that waited in the queue is skipped until resumed; a paused job
whose container runs has its container frozen (``docker pause``) and thawed
on resume. Cancelling a job that has a container stops the container.
Container work goes through the container layer (``Containers.pause``,
``resume`` and ``stop``); database-only cases never touch an executor.
"""

from __future__ import annotations

import logging

from django.db import transaction

from container_manager import states
from container_manager.exceptions import ContainerStopDeferredError, InvalidStateTransition
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.models.queue import check_queue_name
from container_manager.models.validation import text_problem
from container_manager.notify import announce_work
from container_manager.queue.base import ManagerBase
from container_manager.signals import send_finished
from container_manager.states import JobStatus

logger = logging.getLogger(__name__)


def _has_container(job: ContainerJob) -> bool:
    return job.status == JobStatus.RUNNING or (
        job.status == JobStatus.PAUSED and job.launched_at is not None
    )


class ControlMixin(ManagerBase):
    """Pause, resume and cancel; mixed into ``JobQueueManager``."""

    # Queues --------------------------------------------------------------------

    def _set_queue_paused(self, name: str, is_paused: bool) -> JobQueue:
        check_queue_name(name)
        row, _ = JobQueue.objects.using(self.using).update_or_create(
            name=name, defaults={"is_paused": is_paused}
        )
        logger.info("%s queue %s", "Paused" if is_paused else "Resumed", name)
        return row

    def pause_queue(self, name: str) -> JobQueue:
        """Pause a named queue: none of its jobs is launched until it is resumed.

        Args:
            name: The queue name (any name; the row is created if needed).

        Returns:
            The ``JobQueue`` row.

        Raises:
            ValueError: An empty name, one over 100 characters, or one with a
                NUL character or a lone surrogate.
        """
        return self._set_queue_paused(name, True)

    def resume_queue(self, name: str) -> JobQueue:
        """Resume a named queue and wake idle workers.

        Args:
            name: The queue name.

        Returns:
            The ``JobQueue`` row.

        Raises:
            ValueError: An empty name, one over 100 characters, or one with a
                NUL character or a lone surrogate.
        """
        row = self._set_queue_paused(name, False)
        announce_work(name, using=self.using)
        return row

    # Hosts ---------------------------------------------------------------------

    def _set_host_paused(self, host: ExecutorHost | str, is_paused: bool) -> ExecutorHost:
        hosts = ExecutorHost.objects.using(self.using)
        if isinstance(host, ExecutorHost):
            row = hosts.filter(pk=host.pk).first()
        elif isinstance(host, str) and not text_problem(host):
            row = hosts.filter(name=host).first()
        else:
            # Not a name any host can have (PostgreSQL would refuse a NUL in the query).
            row = None
        if row is None:
            raise ExecutorHost.DoesNotExist(f"No executor host {host!s}")
        hosts.filter(pk=row.pk).update(is_paused=is_paused)
        row.is_paused = is_paused
        if isinstance(host, ExecutorHost):
            host.is_paused = is_paused
        logger.info("%s host %s", "Paused" if is_paused else "Resumed", row.name)
        return row

    def pause_host(self, host: ExecutorHost | str) -> ExecutorHost:
        """Pause a host: it gets no new jobs; its running containers go on.

        Args:
            host: The host, or its name.

        Returns:
            The host row.

        Raises:
            ExecutorHost.DoesNotExist: No such host.
        """
        return self._set_host_paused(host, True)

    def resume_host(self, host: ExecutorHost | str) -> ExecutorHost:
        """Resume a paused host and wake idle workers.

        Args:
            host: The host, or its name.

        Returns:
            The host row.

        Raises:
            ExecutorHost.DoesNotExist: No such host.
        """
        row = self._set_host_paused(host, False)
        announce_work("", using=self.using)
        return row

    # Jobs ----------------------------------------------------------------------

    def pause_job(self, job: ContainerJob) -> ContainerJob:
        """Pause a job: a waiting one is skipped, a running one's container is frozen.

        Args:
            job: A queued, retrying or running job (its stored status counts).

        Returns:
            The job, now ``paused``.

        Raises:
            InvalidStateTransition: (a ValueError) any other status, e.g. a
                job being launched right now; nothing changes.
            Exception: Whatever the executor raised pausing the container;
                the job is left running.
        """
        job.refresh_from_db()
        if job.status in states.READY_STATUSES:
            job.transition_to(JobStatus.PAUSED)
        elif job.status == JobStatus.RUNNING:
            self.containers.pause(job)
            try:
                job.transition_to(JobStatus.PAUSED)
            except InvalidStateTransition:
                # It ended (or was cancelled) while we paused it: thaw what we froze.
                self.containers.resume(job)
                raise
        else:
            raise InvalidStateTransition(
                job.pk, job.status, JobStatus.PAUSED, "only queued or running jobs can be paused"
            )
        logger.info("Paused job %s", job.pk, extra={"job_id": job.pk})
        return job

    def resume_job(self, job: ContainerJob) -> ContainerJob:
        """Resume a paused job: back to the queue, or its container thawed.

        A job paused while waiting goes back to ``queued`` with its place in
        the queue (``queued_at``) and schedule kept; a job paused while
        running has its container unpaused and is ``running`` again.

        Args:
            job: A paused job.

        Returns:
            The job.

        Raises:
            InvalidStateTransition: (a ValueError) the job is not paused.
            Exception: Whatever the executor raised; the job stays paused.
        """
        job.refresh_from_db()
        if job.status != JobStatus.PAUSED:
            raise InvalidStateTransition(
                job.pk, job.status, JobStatus.QUEUED, "only paused jobs can be resumed"
            )
        if _has_container(job):
            self.containers.resume(job)
            job.transition_to(JobStatus.RUNNING)
        else:
            job.transition_to(JobStatus.QUEUED)
            announce_work(job.queue, using=self.using)
        logger.info("Resumed job %s", job.pk, extra={"job_id": job.pk})
        return job

    def cancel_job(self, job: ContainerJob) -> ContainerJob:
        """Cancel a job; a running (or paused running) container is stopped first.

        The cancel is stored first, then the container is stopped. A pending,
        queued, retrying or paused-before-launch job is cancelled in the
        database only. A job being launched is cancelled in the
        database; the launching worker then finds it cancelled and stops the
        container it may have started.

        Args:
            job: The job.

        Returns:
            The job, now ``cancelled``.

        Raises:
            InvalidStateTransition: (a ValueError) the job has already ended.
            ContainerStopDeferredError: The job is cancelled, but its container
                could not be stopped now; the worker holding the job stops it.
        """
        job.refresh_from_db()
        if job.status in states.TERMINAL_STATUSES:
            raise InvalidStateTransition(
                job.pk, job.status, JobStatus.CANCELLED, "the job has already ended"
            )
        has_container = _has_container(job)
        # The cancel is written before the container is stopped: were it the
        # other way round, the worker following the container could record
        # its end (killed, exit 137) as a failure first, and the cancel lost.
        with transaction.atomic(using=self.using):
            job.mark_as_cancelled()
            send_finished(job, self.using)
        logger.info("Cancelled job %s", job.pk, extra={"job_id": job.pk})
        if has_container:
            try:
                self.containers.stop(job)
            except Exception as exc:
                # The worker holding the job stops the container at its next
                # pass (Follower.sync), so the cancel still takes effect.
                logger.warning(
                    "Job %s is cancelled but its container could not be stopped now: %s",
                    job.pk,
                    exc,
                    extra={"job_id": job.pk},
                )
                raise ContainerStopDeferredError(job.pk, str(exc)) from exc
        return job
