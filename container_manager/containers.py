"""What the queue and the worker ask of executors, job by job.

This layer turns a job into executor calls and executor answers into plain
values; it writes nothing to the database and never imports the queue
(docs/architecture.md). The queue records what these calls answer:

- :meth:`Containers.launch` starts the container of a claimed job's current
  attempt and answers with a :class:`LaunchResult`; the launch steps it goes
  through (``preparing``, ``pulling``) are reported to a callback;
- :meth:`Containers.find` looks up the container of the current attempt by
  its labels, :meth:`Containers.current_ref` answers from the row first;
- :meth:`Containers.stop`, :meth:`Containers.pause` and
  :meth:`Containers.resume` back cancel, pause and resume;
- :meth:`Containers.wait_finished` and :meth:`Containers.follow_progress`
  let the worker follow running containers;
- :meth:`Containers.check_host` asks a host's engine whether it answers;
- :meth:`Containers.logs` reads capped output, and
  :meth:`Containers.apply_retention` removes ended containers per
  ``CONTAINER_RETENTION``;
- :meth:`Containers.list_managed`, :meth:`Containers.kill_ref` and
  :meth:`Containers.discard` let the worker's clean-up find and remove the
  containers that faults left behind, host by host.

Example::

    from container_manager.containers import containers

    result = containers.launch(job)
    if not result.success:
        print(result.error_code, result.error)
"""

from __future__ import annotations

import io
import logging
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from container_manager.classification import PERMANENT, UNKNOWN, Classification, classify
from container_manager.conf import settings
from container_manager.exceptions import ConfigurationError
from container_manager.executors import close_executors, get_executor
from container_manager.executors.base import (
    BuildSpec,
    ContainerRef,
    Executor,
    ExitStatus,
    HealthReport,
    ImageResult,
    ImageStepCallback,
    LaunchSpec,
    Logs,
    ProgressCallback,
)
from container_manager.models import ContainerJob, ExecutorHost, ImageBuildContext
from container_manager.registries import (
    DOCKER_HUB,
    build_credentials,
    credentials_for,
    registry_of,
)
from container_manager.states import IMAGE_KINDS, JobKind

logger = logging.getLogger(__name__)

#: Called with each launch step an executor reports ("preparing", "pulling").
StepRecorder = Callable[[str], None]


@dataclass(frozen=True)
class LaunchResult:
    """What :meth:`Containers.launch` answers.

    Attributes:
        success: The container was started (or already existed for this attempt).
        error: The message when it was not.
        error_code: A code of ``classification.CATALOGUE`` when it was not.
        transient: True when trying again later may succeed, False when it
            cannot, None when nobody can tell.
        container_id: The started container's id.
        ref: The executor's reference to it.
        is_outcome_unknown: The launch failed in a way that may have left a
            container of this attempt behind (a timeout, an engine gone
            mid-call) and the host could not be asked: no new attempt may
            start until a later look finds the container or its absence.
    """

    success: bool
    error: str = ""
    error_code: str = ""
    transient: bool | None = None
    container_id: str = ""
    ref: ContainerRef | None = None
    is_outcome_unknown: bool = False


def job_ref(job: ContainerJob) -> ContainerRef:
    """Return the reference of the job's current attempt's container.

    Args:
        job: A job with ``container_id`` set (or not: the id is then "").

    Returns:
        The :class:`ContainerRef`.
    """
    return ContainerRef(job_id=int(job.pk), attempt=int(job.attempt), container_id=job.container_id)


class Containers:
    """Launch, find, stop, pause, resume, follow and clean up the containers of jobs."""

    def executor_for(self, job: ContainerJob) -> Executor:
        """Return the executor of the job's host.

        Raises:
            ValueError: The job has no host (it was never claimed).
        """
        if job.host is None:
            raise ValueError(f"Job {job.pk} has no host")
        return get_executor(job.host)

    # Launch ------------------------------------------------------------------

    def launch(self, job: ContainerJob, on_step: StepRecorder | None = None) -> LaunchResult:
        """Start the container of a claimed job's current attempt.

        Idempotent per attempt (the executor finds a container of this job
        and attempt instead of starting a second one). ``on_step`` hears
        ``"preparing"`` once the spec is valid and the container is being
        made, and ``"pulling"`` while the executor pulls the image. Any
        exception is caught and classified; nothing is raised.

        Args:
            job: A job claimed by a worker: ``host`` set, ``attempt`` incremented.
            on_step: Called with each launch step; None to ignore them.

        Returns:
            The :class:`LaunchResult`; on failure ``error``, ``error_code``
            and ``transient`` say what happened.
        """
        if job.host is None:
            return LaunchResult(False, f"Job {job.pk} has no host", "NO_HOST_AVAILABLE", True)
        step = on_step or (lambda name: None)
        try:
            executor = get_executor(job.host)
            # Building the spec validates the job (command, environment).
            spec = LaunchSpec.from_job(job)
            if job.host.auto_pull_images and executor.supports_images:
                # Read now, for a pull the launch may need; a missing secret
                # is a configuration error of the job's host, named.
                spec = replace(spec, registry_auth=credentials_for(spec.image))
        except Exception as exc:
            return _failed(job, classify(exc))
        try:
            step("preparing")
            ref = executor.launch(spec, on_step=step)
        except Exception as exc:
            found = classify(exc)
            if found.category == PERMANENT:
                return _failed(job, found)
            return self._settle(job, executor, spec, found)
        return LaunchResult(True, container_id=ref.container_id, ref=ref)

    def _settle(
        self, job: ContainerJob, executor: Executor, spec: LaunchSpec, found: Classification
    ) -> LaunchResult:
        """Find out whether a launch that failed left its container behind.

        A create or start call can fail on our side (a read timeout under
        load, the engine restarting) after the engine did the work. A new
        attempt may only start once this attempt's container is known to be
        absent, so the host is asked for it by its name and labels: found,
        the launch is completed (``launch`` is idempotent per attempt and
        starts a container that was only created); absent, the failure
        stands; unknown (the host does not answer), the result says so.
        """
        try:
            existing = executor.find(spec.job_id, spec.attempt)
            if existing is None:
                return _failed(job, found)
            ref = executor.launch(spec)
        except Exception as exc:
            logger.warning(
                "Launch of job %s failed (%s) and its host cannot say whether the container "
                "exists: %s",
                job.pk,
                found.code,
                exc,
                extra={"job_id": job.pk, "worker_id": job.worker_id},
            )
            return LaunchResult(
                False,
                found.message,
                found.code,
                None if found.category == UNKNOWN else found.is_transient,
                is_outcome_unknown=True,
            )
        logger.warning(
            "Launch of job %s raised %s, but its container %s exists; it is followed",
            job.pk,
            found.code,
            ref.container_id[:12],
            extra={"job_id": job.pk, "worker_id": job.worker_id},
        )
        return LaunchResult(True, container_id=ref.container_id, ref=ref)

    # Image tasks -------------------------------------------------------------

    def run_image_task(
        self,
        job: ContainerJob,
        on_step: ImageStepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Pull, build or push the image of a claimed image task, on its host; blocks until done.

        The registry credentials the job needs (``REGISTRIES``) are read now
        and handed to the engine, never kept. A build's tar context is read
        from its own row.

        Args:
            job: A claimed job of an image kind, ``host`` set.
            on_step: Called with each step the engine reports.
            cancel: Set it to stop the task early (ImageTaskCancelled is raised).

        Returns:
            The :class:`ImageResult`.

        Raises:
            ExecutorError: The task failed; its ``code`` and ``transient`` say how.
            ConfigurationError: The host cannot do image tasks, or a registry's
                credentials cannot be read.
            ImageTaskCancelled: ``cancel`` was set.
        """
        executor = self.executor_for(job)
        if not executor.supports_images:
            raise ConfigurationError(
                f"Host {job.host.name if job.host else '?'!r} (executor_type "
                f"{job.host.executor_type if job.host else '?'!r}) cannot pull, build or push "
                "images; give the job a Docker host"
            )
        options = dict(job.image_options)
        if job.kind == JobKind.IMAGE_PULL:
            return executor.pull_image(
                job.image,
                platform=str(options.get("platform", "")),
                auth=credentials_for(job.image),
                on_step=on_step,
                cancel=cancel,
            )
        if job.kind == JobKind.IMAGE_PUSH:
            return executor.push_image(
                job.image, auth=credentials_for(job.image), on_step=on_step, cancel=cancel
            )
        if job.kind != JobKind.IMAGE_BUILD:
            raise ValueError(f"Job {job.pk} is a {job.kind} job, not an image task")
        spec = build_spec(job)
        built = executor.build_image(
            spec,
            auth=build_credentials(base_images(spec)),
            on_step=on_step,
            cancel=cancel,
        )
        if not options.get("push"):
            return built
        digests: dict[str, str] = {}
        output = [built.output]
        for tag in spec.tags:
            if registry_of(tag) == DOCKER_HUB and "/" not in tag:
                continue  # A local name: nothing to push it to.
            pushed = executor.push_image(
                tag, auth=credentials_for(tag), on_step=on_step, cancel=cancel
            )
            digests[tag] = pushed.digest
            output.append(pushed.output)
        return ImageResult(
            image_id=built.image_id,
            digest=digests.get(spec.tags[0], "") if spec.tags else "",
            output="\n".join(part for part in output if part),
            is_output_truncated=built.is_output_truncated,
            pushed=digests,
        )

    # Finding and control -----------------------------------------------------

    def outlives_worker(self, job: ContainerJob) -> bool:
        """True when the job's container goes on after its worker exits (not a local process)."""
        return self.executor_for(job).outlives_worker

    def find(self, job: ContainerJob) -> ContainerRef | None:
        """Look up, on the job's host, the container of its current attempt by its labels.

        The row's ``container_id`` is not trusted here: this is how a rescue
        tells a container that exists from one that never did (or is gone).

        Returns:
            The container, running or not; None if there is none, the job has
            no host, or it is an image task (which makes no container).

        Raises:
            ExecutorError: The engine could not be asked (the container may exist).
        """
        if job.host is None or job.kind in IMAGE_KINDS:
            return None
        return self.executor_for(job).find(int(job.pk), int(job.attempt))

    def current_ref(self, job: ContainerJob) -> ContainerRef | None:
        """Return the container of the job's current attempt: the recorded one, else :meth:`find`.

        Raises:
            ExecutorError: The engine could not be asked.
        """
        if job.host is None:
            return None
        if job.container_id:
            return job_ref(job)
        return self.find(job)

    def stop(self, job: ContainerJob) -> bool:
        """Kill the container of the job's current attempt, if there is one.

        Args:
            job: The job (cancelled, timed out, or launched while being cancelled).

        Returns:
            True when a container was found and killed.

        Raises:
            ExecutorError: The engine failed (other than "already gone").
        """
        ref = self.current_ref(job)
        if ref is None:
            return False
        self.executor_for(job).kill(ref)
        logger.info("Stopped the container of job %s", job.pk, extra={"job_id": job.pk})
        return True

    def kill(self, job: ContainerJob, ref: ContainerRef) -> None:
        """Kill the container ``ref`` of ``job``; no error if it already ended.

        Raises:
            ExecutorError: The engine failed.
        """
        self.executor_for(job).kill(ref)

    def pause(self, job: ContainerJob) -> bool:
        """Freeze the container of a running job.

        Returns:
            True when a container was paused; False when there is none.

        Raises:
            NotImplementedError: The host's executor cannot pause.
            ExecutorError: The engine failed.
        """
        ref = self.current_ref(job)
        if ref is not None:
            self.executor_for(job).pause(ref)
        return ref is not None

    def resume(self, job: ContainerJob) -> bool:
        """Thaw the container of a paused job.

        Returns:
            True when a container was resumed; False when there is none.

        Raises:
            NotImplementedError: The host's executor cannot resume.
            ExecutorError: The engine failed.
        """
        ref = self.current_ref(job)
        if ref is not None:
            self.executor_for(job).resume(ref)
        return ref is not None

    # Hosts -------------------------------------------------------------------

    def check_host(self, host: ExecutorHost) -> HealthReport:
        """Ask the host's engine whether it answers, without writing anything.

        Returns:
            The executor's report; a host whose executor cannot be built (an
            unknown ``executor_type``, a bad ``executor_config``) or whose
            check raises answers unhealthy with the reason.
        """
        try:
            return get_executor(host).health_check()
        except Exception as exc:
            return HealthReport(False, f"{type(exc).__name__}: {exc}")

    # Following ---------------------------------------------------------------

    def wait_finished(
        self, host: ExecutorHost, refs: Sequence[ContainerRef], timeout_seconds: float
    ) -> list[ExitStatus]:
        """Return the containers among ``refs`` (all on ``host``) that ended.

        Waits up to ``timeout_seconds`` for the first end; 0 only looks.

        Raises:
            ExecutorError: The engine could not be asked.
        """
        return get_executor(host).wait_finished(refs, timeout_seconds)

    def follow_progress(
        self, job: ContainerJob, ref: ContainerRef, callback: ProgressCallback
    ) -> None:
        """Call ``callback`` with each progress line the container prints, until it ends.

        Blocks; the worker runs it in a thread of its own.
        """
        self.executor_for(job).follow_progress(ref, callback)

    # Output and clean-up -------------------------------------------------------

    def logs(self, job: ContainerJob, ref: ContainerRef, max_bytes: int | None = None) -> Logs:
        """Return the container's output, each stream capped at ``max_bytes``.

        Args:
            job: The job.
            ref: Its container.
            max_bytes: The cap per stream; None for ``LOG_MAX_BYTES``.

        Raises:
            ExecutorError: The engine could not be read.
        """
        cap = int(settings.LOG_MAX_BYTES) if max_bytes is None else max_bytes
        return self.executor_for(job).logs(ref, cap)

    def collect_logs(self, job: ContainerJob, ref: ContainerRef) -> Logs:
        """Return the container's output capped at ``LOG_MAX_BYTES``, or empty output.

        A failure to read is logged and answered with empty output: the
        result of the job matters more than its logs.
        """
        try:
            return self.logs(job, ref)
        except Exception:
            logger.warning(
                "Could not read the output of job %s",
                job.pk,
                extra={"job_id": job.pk},
                exc_info=True,
            )
            return Logs(stdout="", stderr="")

    def apply_retention(self, job: ContainerJob, ref: ContainerRef, is_success: bool) -> None:
        """Remove an ended container, or keep it, per ``CONTAINER_RETENTION``.

        ``"remove"`` removes every ended container, ``"keep_failed"`` keeps
        those of failed jobs, ``"keep"`` keeps all of them. A failure to
        remove is logged, not raised.
        """
        if is_kept(is_success):
            return
        try:
            self.executor_for(job).remove(ref)
        except Exception:
            logger.warning(
                "Could not remove the container of job %s",
                job.pk,
                extra={"job_id": job.pk},
                exc_info=True,
            )

    # Leftovers, host by host -----------------------------------------------------

    def list_managed(self, host: ExecutorHost) -> list[ContainerRef]:
        """Return every container of this project on ``host``, running or not.

        Raises:
            ExecutorError: The engine could not be asked.
        """
        return get_executor(host).list_managed()

    def kill_ref(self, host: ExecutorHost, ref: ContainerRef) -> None:
        """Kill the container ``ref`` on ``host``; no error if it already ended.

        Raises:
            ExecutorError: The engine failed.
        """
        get_executor(host).kill(ref)

    def discard(self, host: ExecutorHost, ref: ContainerRef, is_success: bool) -> bool:
        """Remove a container of ``host`` (killing it if it runs), unless retention keeps it.

        The rule of :meth:`apply_retention`: ``is_success`` says whether it
        counts as the container of a job that completed.

        Returns:
            True when it was removed, False when ``CONTAINER_RETENTION`` keeps it.

        Raises:
            ExecutorError: The engine failed.
        """
        if is_kept(is_success):
            return False
        get_executor(host).remove(ref)
        return True

    def close(self) -> None:
        """Release every executor's connections and threads (a worker's last step)."""
        close_executors()


def build_spec(job: ContainerJob) -> BuildSpec:
    """The :class:`BuildSpec` of a build job: its options, its tar context if it has one.

    The job's image is the first tag; ``tags`` adds more.
    """
    options = dict(job.image_options)
    context = ImageBuildContext.objects.filter(job_id=job.pk).values_list("archive", flat=True)
    archive = next(iter(context), None)
    return BuildSpec(
        context=bytes(archive) if archive is not None else b"",
        dockerfile=str(options.get("dockerfile", "")),
        files=dict(options.get("files", {})),
        build_args=dict(options.get("build_args", {})),
        target=str(options.get("target", "")),
        tags=(job.image, *[tag for tag in options.get("tags", []) if tag != job.image]),
        labels=dict(options.get("labels", {})),
        platform=str(options.get("platform", "")),
    )


def dockerfile_text(spec: BuildSpec) -> str:
    """The Dockerfile of a build: its text, or the file read from its tar context ("" if none)."""
    if not spec.context:
        return spec.dockerfile
    path = (spec.dockerfile or "Dockerfile").removeprefix("./")
    try:
        with tarfile.open(fileobj=io.BytesIO(spec.context), mode="r:*") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.removeprefix("./") == path:
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read().decode("utf-8", "replace")
    except (tarfile.TarError, EOFError, OSError):
        return ""
    return ""


def base_images(spec: BuildSpec) -> list[str]:
    """The images a build's Dockerfile starts ``FROM`` (for their registries' credentials)."""
    found = []
    for line in dockerfile_text(spec).splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            image = next((word for word in words[1:] if not word.startswith("--")), "")
            if image:
                found.append(image)
    return found


def is_kept(is_success: bool) -> bool:
    """Tell whether ``CONTAINER_RETENTION`` keeps an ended container.

    ``"keep"`` keeps all of them, ``"keep_failed"`` those of jobs that did
    not complete (``is_success`` False), ``"remove"`` none.
    """
    retention = str(settings.CONTAINER_RETENTION)
    return retention == "keep" or (retention == "keep_failed" and not is_success)


def _failed(job: ContainerJob, found: Classification) -> LaunchResult:
    """The result of a launch that failed and left nothing behind."""
    logger.debug(
        "Launch of job %s failed: %s (%s)",
        job.pk,
        found.message,
        found.code,
        extra={"job_id": job.pk, "worker_id": job.worker_id},
    )
    transient = None if found.category == UNKNOWN else found.is_transient
    return LaunchResult(False, found.message, found.code, transient)


#: The instance everyone imports.
containers = Containers()

__all__ = ["Containers", "LaunchResult", "StepRecorder", "containers", "is_kept", "job_ref"]
