"""Image tasks: queue a pull, a build or a push, and run one a worker has claimed.

An image task is a job whose ``kind`` is ``image_pull``, ``image_build`` or
``image_push`` (docs/image-tasks.md). It waits in the queue, is claimed,
counted against its host's and queue's limits, retried and cancelled like
any job; but the worker does the work itself, through the host's engine,
instead of starting a container:

- claimed (``validating``), it moves to the phase the engine reports:
  ``pulling`` then ``downloading`` for a pull, ``building`` (then
  ``uploading`` when the build pushes) for a build, ``uploading`` for a push;
  ``progress`` and ``current_step`` follow the engine's stream;
- it ends ``completed`` with the output and ``image_result`` (image id,
  digest, pushed tags), or through :meth:`record_launch_failure`
  (``retrying`` or ``failed``, with the engine's error code), or ``timeout``
  after ``timeout_seconds``;
- a cancel (``cancel_job``) or a worker that stops interrupts the engine's
  work: the stream is closed and the engine stops. A stopping worker puts the
  job back in the queue; a worker that dies leaves it to the rescue, which
  queues it again as a new attempt (an interrupted pull, build or push is
  safe to start over).
"""

from __future__ import annotations

import io
import logging
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import close_old_connections, connections
from django.utils import timezone

from container_manager import logcap
from container_manager.classification import PERMANENT, Classification, classify
from container_manager.conf import settings
from container_manager.exceptions import ImageTaskCancelled, InvalidStateTransition
from container_manager.executors import runs_images
from container_manager.executors.base import ImageResult, ImageStep
from container_manager.models import (
    ContainerJob,
    ExecutorHost,
)
from container_manager.notify import announce_work
from container_manager.queue.dependencies import DependencyMixin
from container_manager.queue.launching import LaunchMixin, LaunchOutcome, host_problem
from container_manager.signals import job_started, send_after_commit, send_finished
from container_manager.states import IMAGE_KINDS, IMAGE_WORK_STATUSES, JobKind, JobStatus

logger = logging.getLogger(__name__)

#: How often a running image task looks whether its job was cancelled, or
#: its worker is stopping, while the engine works silently.
WATCH_INTERVAL_SECONDS = 0.5
#: Longest ``current_step`` stored (the column's length).
MAX_STEP_LENGTH = 200
#: The phases an engine reports, as job statuses.
PHASES = {str(status): status for status in IMAGE_WORK_STATUSES}


def image_hosts(hosts: ExecutorHost | Iterable[ExecutorHost] | str | None) -> list[ExecutorHost]:
    """The hosts an image task goes to: the one given, each given, or ``"all"`` active ones.

    None picks one: the active image host with the most weight (then by name).

    Raises:
        ValidationError: A host named runs no images, or there is none to pick.
    """
    if hosts == "all" or hosts is None:
        found = [
            host
            for host in ExecutorHost.objects.filter(is_active=True).order_by("-weight", "name")
            if runs_images(host.executor_type)
        ]
        if not found:
            raise ValidationError(
                {"host": "No active host runs images; image tasks need a Docker host."}
            )
        return found if hosts == "all" else found[:1]
    given: list[object] = [hosts] if isinstance(hosts, ExecutorHost) else list(hosts)
    chosen: list[ExecutorHost] = []
    for host in given:
        if not isinstance(host, ExecutorHost):
            raise ValidationError({"host": f"Not a host: {host!r}."})
        chosen.append(host)
        if not runs_images(host.executor_type):
            raise ValidationError(
                {
                    "host": f"Host {host.name!r} (executor_type {host.executor_type!r}) cannot "
                    "pull, build or push images; name a Docker host."
                }
            )
    return chosen


class ImageTaskMixin(DependencyMixin, LaunchMixin):
    """Queueing and running image tasks; mixed into ``JobQueueManager``."""

    # Queueing ------------------------------------------------------------------

    def pull_image(
        self,
        reference: str,
        *,
        host: ExecutorHost | Iterable[ExecutorHost] | str | None = None,
        platform: str = "",
        **fields: Any,
    ) -> ContainerJob | list[ContainerJob]:
        """Queue a pull of ``reference`` onto a host, or onto every active one.

        Args:
            reference: The image (``registry.example.com/team/app:1.2``).
            host: A host, several, ``"all"`` (every active host that runs
                images: one job each), or None for one picked.
            platform: ``os/arch`` to pull, or empty for the host's own.
            **fields: Other job fields (``name``, ``queue``, ``priority``, ...).

        Returns:
            The queued job; a list of them when ``host`` is ``"all"`` or several.

        Raises:
            ValidationError: A field is invalid (named); nothing is written.
        """
        options = {"platform": platform} if platform else {}
        jobs = [
            ContainerJob(
                kind=JobKind.IMAGE_PULL,
                image=reference,
                host=target,
                image_options=options,
                **{"name": f"pull {reference}", **fields},
            )
            for target in image_hosts(host)
        ]
        made = self.queue_jobs(jobs)
        if host is None or isinstance(host, ExecutorHost):
            return made[0]
        return made

    def build_image(
        self,
        tag: str,
        *,
        dockerfile: str = "",
        context: bytes | None = None,
        files: dict[str, str] | None = None,
        build_args: dict[str, str] | None = None,
        target: str = "",
        tags: Sequence[str] = (),
        labels: dict[str, str] | None = None,
        platform: str = "",
        push: bool = False,
        host: ExecutorHost | None = None,
        after: Iterable[ContainerJob] = (),
        **fields: Any,
    ) -> ContainerJob:
        """Queue a build of an image tagged ``tag``; with ``push``, push its tags after.

        Give either a ``context`` (a tar archive; ``dockerfile`` is then the
        Dockerfile's path in it, ``Dockerfile`` when empty) or a
        ``dockerfile`` text, with ``files`` to add beside it.

        Args:
            tag: The image's reference (``127.0.0.1:5000/team/app:1.3``).
            dockerfile: The Dockerfile's text, or its path in ``context``.
            context: A tar archive of the build context (at most
                ``BUILD_CONTEXT_MAX_BYTES``).
            files: More files of the context, path to text (without ``context``).
            build_args: ``ARG`` values.
            target: The stage to build; empty for the last.
            tags: More references for the image.
            labels: Labels of the image.
            platform: ``os/arch``, or empty for the host's own.
            push: Push every tag that names a registry once built.
            host: Where to build; None for one picked.
            after: Jobs to wait for.
            **fields: Other job fields (``name``, ``queue``, ``priority``, ...).

        Returns:
            The queued build job.

        Raises:
            ValidationError: A field or option is invalid (named); nothing is written.
        """
        if context is not None and not isinstance(context, bytes | bytearray | memoryview):
            raise ValidationError(
                {"context": "The build context must be the bytes of a tar archive."}
            )
        archive = bytes(context) if context is not None else b""
        if context is not None:
            limit = int(settings.BUILD_CONTEXT_MAX_BYTES)
            if len(archive) > limit:
                raise ValidationError(
                    {
                        "context": f"The build context is {len(archive)} bytes, above "
                        f"BUILD_CONTEXT_MAX_BYTES ({limit})."
                    }
                )
            problem = tar_problem(archive)
            if problem:
                raise ValidationError(
                    {"context": f"The build context is not a tar archive: {problem}"}
                )
            if files:
                raise ValidationError(
                    {"files": "Give files inside the context archive, not beside it."}
                )
        elif not dockerfile.strip():
            raise ValidationError({"dockerfile": "Give a Dockerfile text, or a context archive."})
        options: dict[str, Any] = {"dockerfile": dockerfile} if dockerfile else {}
        for name, value in (
            ("files", files),
            ("build_args", build_args),
            ("target", target),
            ("tags", list(tags)),
            ("labels", labels),
            ("platform", platform),
            ("push", push),
        ):
            if value:
                options[name] = value
        [target_host] = image_hosts(host)
        job = ContainerJob(
            kind=JobKind.IMAGE_BUILD,
            image=tag,
            host=target_host,
            image_options=options,
            **{"name": f"build {tag}", **fields},
        )
        return self._queue_with(job, after, archive if context is not None else None)

    def push_image(
        self,
        reference: str,
        *,
        host: ExecutorHost,
        after: Iterable[ContainerJob] = (),
        **fields: Any,
    ) -> ContainerJob:
        """Queue a push of ``reference``, an image on ``host``, to its registry.

        Args:
            reference: The image's tag, naming its registry.
            host: The host that holds the image.
            after: Jobs to wait for (the build that makes the image, say).
            **fields: Other job fields.

        Returns:
            The queued push job.
        """
        [target_host] = image_hosts(host)
        job = ContainerJob(
            kind=JobKind.IMAGE_PUSH,
            image=reference,
            host=target_host,
            **{"name": f"push {reference}", **fields},
        )
        return self._queue_with(job, after, None)

    # Running -------------------------------------------------------------------

    def launch_claimed(
        self, job: ContainerJob, should_stop: Callable[[], bool] | None = None
    ) -> LaunchOutcome:
        """Launch a claimed job; an image task is run to its end (:meth:`run_image_task`)."""
        if job.kind in IMAGE_KINDS:
            return self.run_image_task(job, should_stop)
        return super().launch_claimed(job)

    def run_image_task(
        self, job: ContainerJob, should_stop: Callable[[], bool] | None = None
    ) -> LaunchOutcome:
        """Do the work of a claimed image task, and record how it ended.

        Blocks until the engine is done. Every ``WATCH_INTERVAL_SECONDS`` a
        watcher looks whether the job was cancelled, timed out, or
        ``should_stop`` says the worker is stopping; any of these stops the
        engine's work.

        Args:
            job: A job of an image kind claimed by this worker.
            should_stop: True once the worker stops: the job goes back to the queue.

        Returns:
            The outcome: ``success`` when the job completed.
        """
        problem = self._image_task_problem(job)
        if problem is not None:
            return self.record_launch_failure(job, problem)
        send_after_commit(job_started, [job], self.using)
        cancel = threading.Event()
        why: list[str] = []
        watcher = threading.Thread(
            target=self._watch,
            args=(job, cancel, why, should_stop or (lambda: False)),
            name=f"image-task-{job.pk}",
            daemon=True,
        )
        started = time.monotonic()
        progress = _StepWriter(self, job)
        watcher.start()
        try:
            result = self.containers.run_image_task(job, progress.write, cancel)
        except ImageTaskCancelled:
            return self._interrupted(job, why[0] if why else "cancelled", started)
        except Exception as exc:
            if cancel.is_set() and why:
                return self._interrupted(job, why[0], started)
            found = classify(exc)
            output = str(getattr(exc, "output", "") or "")
            if output:
                self._store_output(job, output)
            return self.record_launch_failure(job, found)
        finally:
            cancel.set()
            watcher.join()
        return self.finish_image_task(job, result)

    def _image_task_problem(self, job: ContainerJob) -> Classification | None:
        found = host_problem(job)
        if found is not None:
            return found
        if job.host is not None and not runs_images(job.host.executor_type):
            return Classification(
                PERMANENT,
                "CONFIGURATION_ERROR",
                f"Host {job.host.name!r} (executor_type {job.host.executor_type!r}) cannot "
                f"pull, build or push images; give job {job.pk} a Docker host",
            )
        return None

    def _watch(
        self,
        job: ContainerJob,
        cancel: threading.Event,
        why: list[str],
        should_stop: Callable[[], bool],
    ) -> None:
        """Set ``cancel`` when the job was cancelled or timed out, or the worker stops."""
        deadline = time.monotonic() + int(job.timeout_seconds)
        try:
            while not cancel.wait(WATCH_INTERVAL_SECONDS):
                if should_stop():
                    why.append("stopping")
                elif time.monotonic() > deadline:
                    why.append("timeout")
                else:
                    held = (
                        ContainerJob.objects.using(self.using)
                        .filter(pk=job.pk, worker_id=job.worker_id, attempt=job.attempt)
                        .exclude(worker_id="")
                        .filter(status__in=[JobStatus.VALIDATING, *IMAGE_WORK_STATUSES])
                        .exists()
                    )
                    if held:
                        continue
                    why.append("cancelled")
                cancel.set()
                return
        except Exception:
            logger.exception("Watching image task %s failed", job.pk, extra={"job_id": job.pk})
        finally:
            connections[self.using].close()

    def _interrupted(self, job: ContainerJob, why: str, started: float) -> LaunchOutcome:
        if why == "stopping":
            self.release_job(job, job.worker_id, "worker stopping; the image task starts over")
            return LaunchOutcome(False, f"Job {job.pk} went back to the queue: worker stopping")
        if why == "timeout":
            return self.timeout_image_task(job)
        logger.info(
            "Image task %s stopped after %.1f s: the job was cancelled",
            job.pk,
            time.monotonic() - started,
            extra={"job_id": job.pk, "worker_id": self.worker_id},
        )
        return LaunchOutcome(False, f"Job {job.pk} was cancelled", error_code="")

    def timeout_image_task(self, job: ContainerJob) -> LaunchOutcome:
        """Record ``timeout`` for an image task that ran past ``timeout_seconds``."""
        job.refresh_from_db()
        try:
            job.mark_as_timeout()
        except InvalidStateTransition:
            return LaunchOutcome(False, f"Job {job.pk} changed to {job.status}")
        send_finished(job, self.using)
        logger.warning(
            "Image task %s timed out after %s s; the engine's work was stopped",
            job.pk,
            job.timeout_seconds,
            extra={"job_id": job.pk, "worker_id": self.worker_id, "error_code": "SYSTEM_TIMEOUT"},
        )
        return LaunchOutcome(
            False, f"Timed out after {job.timeout_seconds} s", False, "SYSTEM_TIMEOUT"
        )

    def record_image_step(self, job: ContainerJob, step: ImageStep) -> bool:
        """Write an image task's phase, step and progress, if it is still this worker's.

        One guarded UPDATE: only the attempt this worker holds, in a status
        from which the phase is a valid move (or the phase itself), changes.

        Returns:
            True when the row was written; False when the job changed
            (cancelled, say) or the phase is not a valid move.
        """
        status = PHASES.get(step.phase)
        if status is None:
            return False
        fields: dict[str, Any] = {"current_step": step.step[:MAX_STEP_LENGTH]}
        if step.percent is not None:
            fields["progress"] = max(0, min(int(step.percent), 100))
        held = (
            ContainerJob.objects.using(self.using)
            .filter(pk=job.pk, worker_id=job.worker_id, attempt=job.attempt)
            .exclude(worker_id="")
        )
        if job.status == status:
            moved = held.filter(status=status).update(**fields)
        elif job.can_transition_to(status):
            if job.started_at is None:
                fields["started_at"] = timezone.now()
            moved = held.filter(status=job.status).update(status=status, **fields)
        else:
            return False
        if moved:
            job.set_stored({"status": status, **fields})
        return bool(moved)

    def finish_image_task(self, job: ContainerJob, result: ImageResult) -> LaunchOutcome:
        """Record a completed image task: its output and what it left (``image_result``)."""
        now = timezone.now()
        image_result: dict[str, Any] = {"image_id": result.image_id, "digest": result.digest}
        if result.pushed:
            image_result["pushed"] = result.pushed
        fields: dict[str, Any] = {
            "status": JobStatus.COMPLETED,
            "completed_at": now,
            "started_at": job.started_at or now,
            "exit_code": 0,
            "progress": 100,
            "current_step": "",
            "stdout": logcap.storable_text(result.output),
            "image_result": image_result,
            "worker_id": "",
            "lease_expires_at": None,
            # An error of an earlier attempt is not this job's outcome.
            "error_code": "",
            "last_error": "",
            "last_error_at": None,
        }
        moved = (
            ContainerJob.objects.using(self.using)
            .filter(pk=job.pk, worker_id=job.worker_id, attempt=job.attempt)
            .exclude(worker_id="")
            .filter(status__in=[JobStatus.VALIDATING, *IMAGE_WORK_STATUSES])
            .update(**fields)
        )
        if not moved:
            job.refresh_from_db()
            return LaunchOutcome(False, f"Job {job.pk} changed to {job.status} meanwhile")
        job.set_stored(fields)
        send_finished(job, self.using)
        # Its slot is free, and jobs that waited for it may now be ready.
        announce_work(job.queue, using=self.using)
        logger.info(
            "Image task %s (%s %s) completed",
            job.pk,
            job.kind,
            job.image,
            extra={"job_id": job.pk, "attempt": job.attempt, "worker_id": self.worker_id},
        )
        return LaunchOutcome(True, finished=True)

    def _store_output(self, job: ContainerJob, output: str) -> None:
        """Keep a failed task's output (a build's log) before the failure is recorded."""
        stored = logcap.storable_text(output)
        ContainerJob.objects.using(self.using).filter(
            pk=job.pk, worker_id=job.worker_id, attempt=job.attempt
        ).exclude(worker_id="").update(stdout=stored)
        job.stdout = stored


class _StepWriter:
    """Writes the steps an engine reports; closes its thread's connection if called off-thread."""

    def __init__(self, queue: ImageTaskMixin, job: ContainerJob) -> None:
        self.queue = queue
        self.job = job

    def write(self, step: ImageStep) -> None:
        try:
            self.queue.record_image_step(self.job, step)
        except Exception:
            logger.warning(
                "Could not record step %r of image task %s",
                step.step,
                self.job.pk,
                extra={"job_id": self.job.pk},
                exc_info=True,
            )
            close_old_connections()


def tar_problem(archive: bytes) -> str:
    """Say why ``archive`` is not a readable tar archive (plain or compressed), or ""."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        return str(exc) or type(exc).__name__
    return ""


__all__ = ["ImageTaskMixin", "image_hosts", "tar_problem"]
