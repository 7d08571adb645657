"""Everything this package raises, under one root.

A leaf also inherits the built-in exception that the documentation promises
(``queue_job`` is documented to raise ``ValueError``), so ``except ValueError``
keeps working for code written against the documented API (docs/api-reference.md).
"""

from __future__ import annotations


class ContainerManagerError(Exception):
    """Base class of everything this package raises."""


class InvalidStateTransition(ContainerManagerError, ValueError):
    """A job was asked to move between two statuses that the state machine forbids."""

    def __init__(self, job_id: int | None, current: str, new: str, detail: str = "") -> None:
        # str(): a JobStatus member's repr would read "JobStatus.COMPLETED".
        self.job_id = job_id
        self.current = str(current)
        self.new = str(new)
        message = f"Job {job_id} cannot move from {self.current!r} to {self.new!r}"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(message)


class StaleJobError(InvalidStateTransition):
    """The job's row changed under us: its status is no longer the one we read."""


class QueueError(ContainerManagerError):
    """Base exception for queue operations."""


class JobNotQueuedError(QueueError, ValueError):
    """The job is not queued, so it cannot be dequeued or launched from the queue."""


class JobAlreadyQueuedError(QueueError, ValueError):
    """The job is already queued; dequeue it first."""


class JobNotQueueableError(QueueError, ValueError):
    """The job is in a status from which it cannot be queued (completed, cancelled, running)."""


class QueueCapacityError(QueueError):
    """The queue, host or worker is at its concurrency limit."""


class ContainerStopDeferredError(QueueError):
    """The job is cancelled, but its container could not be stopped now.

    The worker holding the job stops the container at its next pass.
    """

    def __init__(self, job_id: int, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(
            f"Job {job_id} is cancelled; its container could not be stopped now ({reason}) "
            "and will be stopped by the worker holding it"
        )


class StaleLeaseError(QueueError):
    """A worker tried to change a job whose lease it no longer holds."""

    def __init__(self, job_id: int, worker_id: str) -> None:
        self.job_id = job_id
        self.worker_id = worker_id
        super().__init__(f"Worker {worker_id!r} no longer holds the lease on job {job_id}")


class ConfigurationError(ContainerManagerError, ValueError):
    """The CONTAINER_MANAGER settings or a host's configuration is invalid."""


class ExecutorError(ContainerManagerError):
    """An executor could not do what was asked.

    Attributes:
        code: The error code of the catalogue (container_manager.classification).
        transient: True when trying again later may succeed.
        output: What the engine printed up to the failure (a failed build's
            output, a pull's or push's status lines), capped at
            ``LOG_MAX_BYTES`` with a marker; empty when there was none.
    """

    code: str = "INTERNAL_ERROR"
    transient: bool | None = None
    output: str = ""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        transient: bool | None = None,
        output: str = "",
    ):
        super().__init__(message)
        if code is not None:
            self.code = code
        if transient is not None:
            self.transient = transient
        if output:
            self.output = output


class ExecutorUnavailableError(ExecutorError):
    """The engine does not answer (daemon down, socket missing, network error)."""

    code = "DOCKER_NETWORK_ERROR"
    transient = True


class ImageNotFoundError(ExecutorError):
    """The image is not on the host and may not, or cannot, be pulled."""

    code = "DOCKER_IMAGE_NOT_FOUND"
    transient = False


class ImagePullError(ExecutorError):
    """Pulling the image failed."""

    code = "DOCKER_PULL_FAILED"
    transient = True


class InvalidLaunchSpecError(ExecutorError):
    """The job's command, limits or options cannot be run as given."""

    code = "VALIDATION_INVALID_PARAMS"
    transient = False


class ExecutorPermissionError(ExecutorError):
    """The engine refused us: no permission on its socket, or the operation is forbidden."""

    code = "DOCKER_PERMISSION_DENIED"
    transient = False


class RegistryAuthenticationError(ExecutorError):
    """The registry refused the credentials (or has none) for the image."""

    code = "DOCKER_AUTHENTICATION_FAILED"
    transient = False


class ImageBuildError(ExecutorError):
    """A build failed: a step of the Dockerfile, or the context, is wrong."""

    code = "DOCKER_BUILD_FAILED"
    transient = False


class ImagePushError(ExecutorError):
    """Pushing an image to its registry failed."""

    code = "DOCKER_PUSH_FAILED"
    transient = True


class RegistryError(ExecutorError):
    """The registry failed or refused a request for a reason that may pass (5xx, rate limit)."""

    code = "DOCKER_REGISTRY_ERROR"
    transient = True


class ImageTaskCancelled(ContainerManagerError):
    """An image task stopped early because its job was cancelled (its ``cancel`` event was set)."""


class ContainerNotFoundError(ExecutorError):
    """The container of an attempt is gone (removed by someone else, or never created)."""

    code = "INTERNAL_ERROR"
    transient = False
