"""The executor interface: what the worker needs from any backend.

An executor knows its engine, not the queue: it takes a :class:`LaunchSpec`
(plain data built from a job) and answers with frozen dataclasses, never
with SDK objects. One instance serves one :class:`ExecutorHost` and is used
from several threads of one worker, so implementations must be thread-safe.

Every container carries labels that tie it to its job and attempt
(``LABEL_JOB``, ``LABEL_ATTEMPT``), and a deterministic name, so that a
worker that restarts (or adopts another worker's jobs) finds the container
of an attempt instead of starting a second one.
"""

from __future__ import annotations

import abc
import shlex
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from container_manager import logcap

if TYPE_CHECKING:
    from container_manager.models import ContainerJob, ExecutorHost

LABEL_MANAGED = "container_manager.managed"
LABEL_JOB = "container_manager.job_id"
LABEL_ATTEMPT = "container_manager.attempt"
LABEL_HOST = "container_manager.host"
#: Extra labels for every container, e.g. a test run's id.
LABEL_EXTRA_SETTING = "CONTAINER_LABELS"

#: A line of this form on stdout or stderr reports progress (0-100) and the
#: current step: ``::progress 42 Loading data`` (defined with the line parser
#: in ``container_manager.logcap``).
PROGRESS_PREFIX = logcap.PROGRESS_PREFIX


def container_name(job_id: int, attempt: int) -> str:
    """Return the deterministic container name of one attempt of one job.

    The name starts with the ``CONTAINER_NAME_PREFIX`` setting (``cm`` by
    default): ``cm-job-42-a1``.
    """
    from container_manager.conf import settings

    return f"{settings.CONTAINER_NAME_PREFIX}-job-{job_id}-a{attempt}"


def container_labels(spec: LaunchSpec) -> dict[str, str]:
    """Return every label a container of ``spec`` carries.

    The ``CONTAINER_LABELS`` setting first, then the spec's own labels, then
    the standard ones, which nothing may override.
    """
    from container_manager.conf import settings

    return {
        **settings.CONTAINER_LABELS,
        **spec.labels,
        LABEL_MANAGED: "1",
        LABEL_JOB: str(spec.job_id),
        LABEL_ATTEMPT: str(spec.attempt),
    }


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one attempt of one job."""

    job_id: int
    attempt: int
    image: str
    command: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    working_directory: str = ""
    memory_limit_mb: int | None = None
    cpu_limit_cores: float | None = None
    network: str = ""
    user: str = ""
    timeout_seconds: int = 3600
    labels: dict[str, str] = field(default_factory=dict)
    #: The credentials of the image's registry (``REGISTRIES``), for a pull
    #: the launch needs; never printed.
    registry_auth: dict[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The container's deterministic name."""
        return container_name(self.job_id, self.attempt)

    @classmethod
    def from_job(cls, job: ContainerJob, extra_labels: dict[str, str] | None = None) -> LaunchSpec:
        """Build the spec of the job's current attempt.

        The environment is the template's variables with the job's own on top,
        then ``CM_JOB_ID`` and ``CM_ATTEMPT`` (the job's id and this attempt's
        number), for a job of an array ``CM_ARRAY_INDEX`` and
        ``CM_ARRAY_SIZE``, and for a job of a schedule ``CM_SCHEDULE_FIRE_AT``
        (its fire time, ISO 8601), which the job's own variables cannot override.
        The command is split like a shell would split it, and run without a
        shell unless ``job.is_shell_command``.

        Args:
            job: The job, with ``attempt`` already incremented by the claim.
            extra_labels: Labels to add to the standard ones.

        Returns:
            The spec.
        """
        env: dict[str, str] = {}
        if job.environment_template_id is not None and job.environment_template is not None:
            env.update(job.environment_template.get_environment_variables_dict())
        env.update(job.environment or {})
        env.update(CM_JOB_ID=str(job.pk), CM_ATTEMPT=str(job.attempt))
        if job.array_id is not None and job.array is not None:
            env.update(CM_ARRAY_INDEX=str(job.array_index), CM_ARRAY_SIZE=str(job.array.size))
        if job.scheduled_fire_at is not None:
            env["CM_SCHEDULE_FIRE_AT"] = job.scheduled_fire_at.isoformat()
        if job.is_shell_command:
            command: tuple[str, ...] = ("/bin/sh", "-c", job.command)
        else:
            command = tuple(shlex.split(job.command))
        labels = {
            LABEL_MANAGED: "1",
            LABEL_JOB: str(job.pk),
            LABEL_ATTEMPT: str(job.attempt),
            **(extra_labels or {}),
        }
        if job.host_id is not None:
            labels[LABEL_HOST] = str(job.host_id)
        return cls(
            job_id=int(job.pk),
            attempt=int(job.attempt),
            image=job.image,
            command=command,
            environment=env,
            working_directory=job.working_directory,
            memory_limit_mb=job.memory_limit_mb,
            cpu_limit_cores=job.cpu_limit_cores,
            network=job.network,
            user=job.user,
            timeout_seconds=job.timeout_seconds,
            labels=labels,
        )


@dataclass(frozen=True)
class ContainerRef:
    """A container (or process) that an executor started for one attempt of a job."""

    job_id: int
    attempt: int
    container_id: str


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended."""

    ref: ContainerRef
    exit_code: int | None
    is_oom_killed: bool = False
    finished_at: datetime | None = None
    error: str = ""


@dataclass(frozen=True)
class Logs:
    """A container's output, each stream cut at the size cap with a visible marker."""

    stdout: str
    stderr: str
    is_stdout_truncated: bool = False
    is_stderr_truncated: bool = False


@dataclass(frozen=True)
class Progress:
    """A progress report a container printed (``::progress 42 Loading data``)."""

    ref: ContainerRef
    percent: int
    step: str


@dataclass(frozen=True)
class HealthReport:
    """Result of a host health check."""

    is_healthy: bool
    detail: str = ""


@dataclass(frozen=True)
class ImageStep:
    """Where an image task is: its phase, a readable step and, when known, a percentage.

    Attributes:
        phase: ``pulling`` (resolving what to fetch), ``downloading`` (layers
            coming in), ``building`` or ``uploading`` (layers going out): the
            job status the task is in.
        step: What a person reads: ``Downloading 3/5 layers``, ``Step 3/7 : RUN make``.
        percent: 0-100, or None when the engine gives no measure.
    """

    phase: str
    step: str
    percent: int | None = None


@dataclass(frozen=True)
class BuildSpec:
    """What to build: a context (a tar archive, or a Dockerfile text and files) and options.

    Attributes:
        context: A tar archive of the build context, or empty to build from
            ``dockerfile`` and ``files``.
        dockerfile: With a context: the Dockerfile's path in it (empty for
            ``Dockerfile``). Without one: the Dockerfile's text.
        files: Without a context: more files of the context, path to text.
        build_args: ``ARG`` values.
        target: The stage to build, or empty for the last.
        tags: The references the image gets (``registry/name:tag``); the first
            is the job's image.
        labels: Labels of the image.
        platform: ``os/arch`` to build for, or empty for the engine's own.
    """

    context: bytes = b""
    dockerfile: str = ""
    files: dict[str, str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    platform: str = ""


@dataclass(frozen=True)
class ImageResult:
    """How an image task ended, when it succeeded.

    Attributes:
        image_id: The image's id (``sha256:...``) on the host.
        digest: The registry's digest of a pushed or pulled image, when known.
        output: The task's readable log (build output, or the pull's/push's
            status lines), at most ``LOG_MAX_BYTES`` with a marker.
        is_output_truncated: The cap was reached.
        pushed: A build that pushed its tags: each tag with its digest.
    """

    image_id: str = ""
    digest: str = ""
    output: str = ""
    is_output_truncated: bool = False
    pushed: dict[str, str] = field(default_factory=dict)


#: Called with each progress line a running container prints.
ProgressCallback = Callable[[Progress], None]
#: Called with each launch step the executor passes through ("pulling", "preparing").
StepCallback = Callable[[str], None]
#: Called with each step of an image task (pull, build, push).
ImageStepCallback = Callable[[ImageStep], None]


class Executor(abc.ABC):
    """One backend (Docker engine, local processes, ...) serving one host."""

    supports_pause: ClassVar[bool] = False
    """Can a running container be paused and resumed?"""

    outlives_worker: ClassVar[bool] = True
    """Does a container go on when the worker that launched it exits? False for
    local processes: a worker run with ``--once`` then waits for them to end."""

    def __init__(self, host: ExecutorHost) -> None:
        self.host = host

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec, on_step: StepCallback | None = None) -> ContainerRef:
        """Start the attempt described by ``spec`` and return at once.

        Idempotent per attempt: if a container of this job and attempt exists,
        return it instead of starting a second one.

        Raises:
            ExecutorError: A subclass that says whether the cause is transient.
        """

    @abc.abstractmethod
    def find(self, job_id: int, attempt: int) -> ContainerRef | None:
        """Return the container of this attempt if it exists, running or not."""

    @abc.abstractmethod
    def list_managed(self) -> list[ContainerRef]:
        """Return every container of this host that carries our labels."""

    @abc.abstractmethod
    def wait_finished(
        self, refs: Iterable[ContainerRef], timeout_seconds: float
    ) -> list[ExitStatus]:
        """Return the containers among ``refs`` that have ended, waiting up to the timeout.

        Returns as soon as one has ended; an empty list after the timeout.
        """

    @abc.abstractmethod
    def logs(self, ref: ContainerRef, max_bytes: int) -> Logs:
        """Return stdout and stderr apart, each at most ``max_bytes`` plus a marker."""

    @abc.abstractmethod
    def kill(self, ref: ContainerRef) -> None:
        """Stop the container now (timeout or cancel). No error if it already ended."""

    @abc.abstractmethod
    def remove(self, ref: ContainerRef) -> None:
        """Remove an ended container and what it left. No error if it is gone."""

    def follow_progress(self, ref: ContainerRef, callback: ProgressCallback) -> None:
        """Call ``callback`` with each progress line the container prints, until it ends.

        Blocks; the worker runs it in a thread. The default does nothing.
        """
        return None

    def pause(self, ref: ContainerRef) -> None:
        """Freeze a running container."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause")

    def resume(self, ref: ContainerRef) -> None:
        """Thaw a paused container."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume")

    # Image tasks: pull, build and push as jobs of their own (docs/image-tasks.md).
    # Each blocks until done; it stops early, raising ImageTaskCancelled, once
    # ``cancel`` is set (the worker sets it when the job is cancelled). Errors
    # are ExecutorError leaves with the codes DOCKER_PULL_FAILED,
    # DOCKER_BUILD_FAILED, DOCKER_PUSH_FAILED, DOCKER_AUTHENTICATION_FAILED,
    # DOCKER_REGISTRY_ERROR or DOCKER_IMAGE_NOT_FOUND. ``auth`` is the
    # registry's credentials as the engine takes them (``username``,
    # ``password``, ``serveraddress``), or None.

    supports_images: ClassVar[bool] = False
    """Can this executor pull, build and push images?"""

    def pull_image(
        self,
        reference: str,
        *,
        platform: str = "",
        auth: dict[str, str] | None = None,
        on_step: ImageStepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Pull ``reference`` onto this host."""
        raise NotImplementedError(f"{type(self).__name__} cannot pull images")

    def build_image(
        self,
        spec: BuildSpec,
        *,
        auth: dict[str, dict[str, str]] | None = None,
        on_step: ImageStepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Build an image on this host; ``auth`` maps registries to credentials for base images."""
        raise NotImplementedError(f"{type(self).__name__} cannot build images")

    def push_image(
        self,
        reference: str,
        *,
        auth: dict[str, str] | None = None,
        on_step: ImageStepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Push ``reference`` (a local image's tag) to its registry."""
        raise NotImplementedError(f"{type(self).__name__} cannot push images")

    @abc.abstractmethod
    def health_check(self) -> HealthReport:
        """Tell whether the host answers and can run containers."""

    def close(self) -> None:
        """Release connections and threads."""
        return None
