"""Runs jobs as containers on a Docker engine, local or remote, through the ``docker`` SDK.

One :class:`DockerExecutor` per host. It creates and starts containers (never
a blocking ``run``), named and labelled per attempt so a repeated launch finds
the container instead of making a second one; it follows completion through
one events stream per host (:mod:`~container_manager.executors.docker_events`)
with a periodic reconciliation as a safety net; and it reads output as a
stream, keeping at most the cap per stream.

Host options (``ExecutorHost.executor_config``: ``tls``, ``default_network``,
timeouts, ``registry_auth``) are listed in ``docs/api-reference.md`` (Executors).

Every SDK error leaves this module as an
:class:`~container_manager.exceptions.ExecutorError` subclass with its
``code`` and ``transient`` set (see :func:`translate_error`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import docker
import docker.auth
import docker.errors
import requests
import urllib3
from docker.tls import TLSConfig
from docker.types import CancellableStream
from docker.utils import parse_repository_tag

from container_manager.classification import UNKNOWN, Classification, classify_engine_response
from container_manager.conf import settings
from container_manager.exceptions import (
    ConfigurationError,
    ContainerNotFoundError,
    ExecutorError,
    ExecutorPermissionError,
    ExecutorUnavailableError,
    ImageNotFoundError,
    ImagePullError,
    InvalidLaunchSpecError,
    RegistryAuthenticationError,
)
from container_manager.executors import docker_images
from container_manager.executors.base import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_MANAGED,
    BuildSpec,
    ContainerRef,
    Executor,
    ExitStatus,
    HealthReport,
    ImageResult,
    ImageStepCallback,
    LaunchSpec,
    Logs,
    Progress,
    ProgressCallback,
    StepCallback,
    container_labels,
    container_name,
)
from container_manager.executors.docker_events import CompletionTracker
from container_manager.executors.docker_streams import read_capped, ref_from_labels, report_progress
from container_manager.registries import registry_of

if TYPE_CHECKING:
    from container_manager.models import ExecutorHost

logger = logging.getLogger(__name__)

DEFAULT_URL = "unix:///var/run/docker.sock"
#: Spoken only to ask the engine for its own version.
MINIMUM_API_VERSION = "1.24"
DEFAULT_API_TIMEOUT_SECONDS = 10.0
DEFAULT_PULL_TIMEOUT_SECONDS = 600.0
DEFAULT_RECONCILE_INTERVAL_SECONDS = 30.0
DEFAULT_LOG_READ_TIMEOUT_SECONDS = 60.0
READ_CHUNK_BYTES = 64 * 1024
#: How often a taken name is looked up again while its container is being created.
NAME_RETRY_SECONDS = 0.05
#: Executor errors by catalogue code; other codes become a plain ExecutorError
#: (or InvalidLaunchSpecError for a spec Docker refused) carrying the code.
_LEAVES: dict[str, type[ExecutorError]] = {
    "DOCKER_IMAGE_NOT_FOUND": ImageNotFoundError,
    "DOCKER_AUTHENTICATION_FAILED": RegistryAuthenticationError,
    "DOCKER_PERMISSION_DENIED": ExecutorPermissionError,
    "PERMISSION_DENIED": InvalidLaunchSpecError,
    "COMMAND_NOT_FOUND": InvalidLaunchSpecError,
}


def error_of(found: Classification) -> ExecutorError:
    """Build the ExecutorError leaf that says what a classified engine answer means.

    Args:
        found: The answer's classification (``classify_engine_response``).

    Returns:
        The error, with the classification's message, code and verdict.
    """
    leaf = _LEAVES.get(found.code)
    if leaf is None:
        leaf = InvalidLaunchSpecError if found.code.startswith("VALIDATION_") else ExecutorError
    transient = None if found.category == UNKNOWN else found.is_transient
    return leaf(found.message, code=found.code, transient=transient)


def translate_error(exc: Exception, action: str) -> ExecutorError:
    """Turn an SDK or transport error into the ExecutorError leaf that says what happened.

    Args:
        exc: What the SDK raised.
        action: What we were doing, for the message ("start job 4").

    Returns:
        The error to raise (``from exc``).
    """
    message = f"Docker {action} failed: {exc}"
    if isinstance(exc, ExecutorError):
        return exc
    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageNotFoundError(message)
    if isinstance(exc, docker.errors.NotFound):
        return ContainerNotFoundError(message)
    if isinstance(exc, docker.errors.APIError):
        return error_of(
            classify_engine_response(exc.status_code, str(exc.explanation or ""), message)
        )
    if "permission denied" in str(exc).lower():
        return ExecutorPermissionError(message)
    if isinstance(
        exc,
        requests.exceptions.RequestException
        | docker.errors.DockerException
        | urllib3.exceptions.HTTPError,
    ):
        return ExecutorUnavailableError(message)
    if isinstance(exc, OSError):
        return ExecutorUnavailableError(message)
    return ExecutorError(message)


def _tls_config(options: Any) -> TLSConfig | None:
    """Build the SDK's TLS settings from ``executor_config["tls"]``."""
    if not options:
        return None
    if not isinstance(options, dict):
        raise ConfigurationError('executor_config["tls"] must be an object')
    cert = options.get("client_cert")
    key = options.get("client_key")
    try:
        return TLSConfig(
            client_cert=(cert, key) if cert and key else None,
            ca_cert=options.get("ca_cert"),
            verify=options.get("verify", True) and (options.get("ca_cert") or True),
        )
    except docker.errors.TLSParameterError as exc:
        raise ConfigurationError(f"Invalid TLS settings: {exc}") from exc


def _seconds(config: dict[str, Any], key: str, default: float) -> float:
    """Read a positive number of seconds from ``executor_config``."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f'executor_config["{key}"] must be a positive number of seconds')
    return float(value)


def _cut_stream(response: requests.Response) -> None:
    """Shut down the socket under a streamed response, so a read blocked on it fails now."""
    try:
        CancellableStream(None, response).close()
    except Exception as exc:
        logger.debug("Closing a stream: %s", exc)
    response.close()


class _ImageTaskClient:
    """A client of one image task's own, whose stream another thread can cut.

    Every response it receives is kept (requests' response hook), so
    :meth:`close` can shut down the socket a blocked stream read waits on;
    a response that arrives after that is cut at once.
    """

    def __init__(self, client: docker.DockerClient, auth: dict[str, dict[str, str]] | None):
        self.api = client.api
        self._lock = threading.Lock()
        self._responses: list[requests.Response] = []
        self._is_closed = False
        self.api.hooks["response"].append(self._keep)
        if auth:
            # What the SDK sends a build as X-Registry-Config: only these
            # credentials, instead of the worker's own ~/.docker/config.json.
            self.api._auth_configs = docker.auth.AuthConfig({"auths": dict(auth)})

    def _keep(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            is_closed = self._is_closed
            if not is_closed:
                self._responses.append(response)
        if is_closed:
            _cut_stream(response)

    def close(self) -> None:
        with self._lock:
            self._is_closed = True
            responses, self._responses = self._responses, []
        for response in responses:
            _cut_stream(response)
        self.api.close()


class DockerExecutor(Executor):
    """Runs attempts as containers on one Docker engine."""

    supports_pause = True
    supports_images = True

    def __init__(self, host: ExecutorHost) -> None:
        super().__init__(host)
        config = host.executor_config or {}
        self.api_timeout_seconds = _seconds(
            config, "api_timeout_seconds", DEFAULT_API_TIMEOUT_SECONDS
        )
        self.pull_timeout_seconds = _seconds(
            config, "pull_timeout_seconds", DEFAULT_PULL_TIMEOUT_SECONDS
        )
        self.reconcile_interval_seconds = _seconds(
            config, "reconcile_interval_seconds", DEFAULT_RECONCILE_INTERVAL_SECONDS
        )
        self.log_read_timeout_seconds = _seconds(
            config, "log_read_timeout_seconds", DEFAULT_LOG_READ_TIMEOUT_SECONDS
        )
        self.default_network = str(config.get("default_network") or "")
        self._registry_auth: dict[str, str] | None = config.get("registry_auth")
        self._tls = _tls_config(config.get("tls"))
        self._lock = threading.Lock()
        self._clients: dict[float | None, docker.DockerClient] = {}
        self._streams: set[requests.Response] = set()
        self._tracker = CompletionTracker(
            open_stream=self._open_events,
            list_states=self._list_states,
            inspect=self._inspect,
            reconcile_interval_seconds=self.reconcile_interval_seconds,
            name=f"cm-events-{host.name}",
        )

    # --- connection -----------------------------------------------------

    def _client(self, timeout: float | None = None) -> docker.DockerClient:
        """Return the client whose API calls time out after ``timeout`` (default: the short one)."""
        timeout = self.api_timeout_seconds if timeout is None else timeout
        with self._lock:
            client = self._clients.get(timeout)
            if client is not None:
                return client
            known = next(iter(self._clients.values()), None)
        url = self.host.connection_string or DEFAULT_URL
        if url.startswith("unix://") and not os.path.exists(url[len("unix://") :]):
            raise ExecutorUnavailableError(
                f"Docker socket {url} of {self.host.name} does not exist"
            )
        try:
            version = known.api.api_version if known else self._server_api_version(url)
            client = self._connect(url, timeout, version)
        except ExecutorError:
            raise
        except Exception as exc:
            raise translate_error(exc, f"connection to {self.host.name}") from exc
        with self._lock:
            return self._clients.setdefault(timeout, client)

    def _connect(self, url: str, timeout: float | None, version: str) -> docker.DockerClient:
        client = docker.DockerClient(
            base_url=url, timeout=timeout, tls=self._tls or False, version=version
        )
        if self._tls is not None:
            # Else requests lets REQUESTS_CA_BUNDLE replace the host's own CA.
            client.api.trust_env = False
        return client

    def _server_api_version(self, url: str) -> str:
        """Ask the engine which API version it speaks (what the SDK's "auto" does)."""
        probe = self._connect(url, self.api_timeout_seconds, MINIMUM_API_VERSION)
        try:
            return str(probe.api.version(api_version=False)["ApiVersion"])
        finally:
            probe.close()

    def _call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            raise translate_error(exc, action) from exc

    # --- launch ---------------------------------------------------------

    def launch(self, spec: LaunchSpec, on_step: StepCallback | None = None) -> ContainerRef:
        """Create and start the attempt's container; return the existing one if there is one.

        Raises:
            ImageNotFoundError: The image is missing and may not or cannot be pulled.
            ImagePullError: Pulling failed for a reason that may pass.
            InvalidLaunchSpecError: Docker rejected the command, user or limits.
            ExecutorUnavailableError: The engine does not answer.
        """
        self._validate(spec)
        client = self._client()
        self._tracker.follower.ensure_started()
        existing = self._inspect_by_name(spec.job_id, spec.attempt)
        if existing is not None:
            return self._adopt(existing)
        self._ensure_image(spec.image, on_step, spec.registry_auth)
        try:
            container = client.containers.create(**self._create_options(spec))
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # another launcher created it first: use theirs
                existing = self._await_by_name(spec.job_id, spec.attempt)
                if existing is not None:
                    return self._adopt(existing)
            raise translate_error(exc, f"create for job {spec.job_id}") from exc
        except Exception as exc:
            raise translate_error(exc, f"create for job {spec.job_id}") from exc
        self._start(container.id, spec.job_id)
        logger.info(
            "Started job %s attempt %s as container %s on %s",
            spec.job_id,
            spec.attempt,
            container.id[:12],
            self.host.name,
            extra={"job_id": spec.job_id},
        )
        return ContainerRef(spec.job_id, spec.attempt, container.id)

    @staticmethod
    def _validate(spec: LaunchSpec) -> None:
        if not spec.image:
            raise InvalidLaunchSpecError("A Docker job needs an image")
        if spec.memory_limit_mb is not None and spec.memory_limit_mb < 6:
            raise InvalidLaunchSpecError("Docker needs a memory limit of at least 6 MB")
        if spec.cpu_limit_cores is not None and spec.cpu_limit_cores <= 0:
            raise InvalidLaunchSpecError("cpu_limit_cores must be positive")

    def _create_options(self, spec: LaunchSpec) -> dict[str, Any]:
        options: dict[str, Any] = {
            "image": spec.image,
            "command": list(spec.command) or None,
            "name": spec.name,
            "labels": container_labels(spec),
            "environment": dict(spec.environment),
            "working_dir": spec.working_directory or None,
            "user": spec.user or None,
            "network_mode": spec.network or self.default_network or settings.DOCKER_DEFAULT_NETWORK,
            "detach": True,
        }
        if spec.memory_limit_mb:
            # Swap equal to memory: going over the limit kills, it never swaps.
            options["mem_limit"] = options["memswap_limit"] = f"{spec.memory_limit_mb}m"
        if spec.cpu_limit_cores:
            options["nano_cpus"] = int(spec.cpu_limit_cores * 1_000_000_000)
        return options

    def _start(self, container_id: str, job_id: int) -> None:
        try:
            self._client().api.start(container_id)
        except Exception as exc:
            error = translate_error(exc, f"start of job {job_id}")
            if error.transient is False:
                # It can never start: don't leave a created container behind.
                self._remove_quietly(container_id)
            raise error from exc

    def _inspect_by_name(self, job_id: int, attempt: int) -> dict[str, Any] | None:
        name = container_name(job_id, attempt)
        try:
            attrs: dict[str, Any] = self._client().api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            raise translate_error(exc, f"inspect of {name}") from exc
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_JOB) != str(job_id) or labels.get(LABEL_ATTEMPT) != str(attempt):
            raise ExecutorError(
                f"Container {name} exists on {self.host.name} but is not job {job_id} "
                f"attempt {attempt}; give this project its own CONTAINER_NAME_PREFIX",
                transient=False,
            )
        return attrs

    def _await_by_name(self, job_id: int, attempt: int) -> dict[str, Any] | None:
        """Inspect a container whose name is taken; the engine may not show it for a moment."""
        deadline = time.monotonic() + self.api_timeout_seconds
        pause = threading.Event()
        while True:
            attrs = self._inspect_by_name(job_id, attempt)
            if attrs is not None or time.monotonic() >= deadline:
                return attrs
            pause.wait(NAME_RETRY_SECONDS)

    def _adopt(self, attrs: dict[str, Any]) -> ContainerRef:
        labels = attrs["Config"]["Labels"]
        ref = ContainerRef(int(labels[LABEL_JOB]), int(labels[LABEL_ATTEMPT]), attrs["Id"])
        if (attrs.get("State") or {}).get("Status") == "created":
            # The launcher that created it died before starting it.
            self._start(ref.container_id, ref.job_id)
        return ref

    def _ensure_image(
        self, image: str, on_step: StepCallback | None, auth: dict[str, str] | None = None
    ) -> None:
        try:
            self._client().api.inspect_image(image)
            return
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            raise translate_error(exc, f"inspect of image {image}") from exc
        if not self.host.auto_pull_images:
            raise ImageNotFoundError(
                f"Image {image} is not on host {self.host.name}, and the host does not pull"
            )
        if on_step is not None:
            on_step("pulling")
        self._pull(image, auth)

    def _pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        repository, tag = parse_repository_tag(image)
        if tag is None and "@" not in image:
            tag = "latest"
        api = self._client(self.pull_timeout_seconds).api
        try:
            for line in api.pull(
                repository,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=auth or self._registry_auth,
            ):
                if isinstance(line, dict) and line.get("error"):
                    raise _pull_error(image, str(line["error"]))
        except ExecutorError:
            raise
        except docker.errors.APIError as exc:
            raise _pull_error(image, str(exc.explanation or exc), exc.status_code) from exc
        except Exception as exc:
            error = translate_error(exc, f"pull of {image}")
            raise ImagePullError(str(error), code=error.code) from exc
        logger.info("Pulled image %s on %s", image, self.host.name)

    # --- image tasks ----------------------------------------------------

    def _image_engine(self) -> docker_images.ImageEngine:
        url = self.host.connection_string or DEFAULT_URL
        version = self._client().api.api_version

        def open_task(auth: dict[str, dict[str, str]] | None) -> _ImageTaskClient:
            # No read timeout: a build step may print nothing for minutes;
            # cancelling the job is what stops a task that hangs.
            return _ImageTaskClient(self._connect(url, None, version), auth)

        return docker_images.ImageEngine(
            api=self._client().api,
            open_task=open_task,
            translate=translate_error,
            api_error=docker.errors.APIError,
            not_found=docker.errors.NotFound,
        )

    def _registry_auth_for(self, registry: str) -> dict[str, str] | None:
        """The host's ``registry_auth``, if it is for ``registry``; never sent elsewhere."""
        auth = self._registry_auth
        if not auth or not auth.get("serveraddress"):
            return None
        address = auth["serveraddress"].split("://")[-1].split("/")[0]
        hub = ("docker.io", "index.docker.io", "registry-1.docker.io")
        return auth if address == registry or (registry in hub and address in hub) else None

    def pull_image(
        self,
        reference: str,
        *,
        platform: str = "",
        auth: dict[str, str] | None = None,
        on_step: ImageStepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Pull ``reference``; see :func:`~container_manager.executors.docker_images.pull`.

        Without ``auth``, the host's ``registry_auth`` is used if it is for
        the reference's registry.
        """
        auth = auth or self._registry_auth_for(registry_of(reference))
        return docker_images.pull(
            self._image_engine(),
            reference,
            platform=platform,
            auth=auth,
            on_step=on_step,
            cancel=cancel,
        )

    def build_image(
        self,
        spec: BuildSpec,
        *,
        auth: dict[str, dict[str, str]] | None = None,
        on_step: ImageStepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Build ``spec``; see :func:`~container_manager.executors.docker_images.build`.

        Without ``auth``, the host's ``registry_auth`` is sent for its own
        registry (``serveraddress``), for base images.
        """
        if auth is None and self._registry_auth and self._registry_auth.get("serveraddress"):
            auth = {self._registry_auth["serveraddress"]: self._registry_auth}
        return docker_images.build(
            self._image_engine(), spec, auth=auth, on_step=on_step, cancel=cancel
        )

    def push_image(
        self,
        reference: str,
        *,
        auth: dict[str, str] | None = None,
        on_step: ImageStepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Push ``reference``; see :func:`~container_manager.executors.docker_images.push`.

        Without ``auth``, the host's ``registry_auth`` is used if it is for
        the reference's registry.
        """
        auth = auth or self._registry_auth_for(registry_of(reference))
        return docker_images.push(
            self._image_engine(), reference, auth=auth, on_step=on_step, cancel=cancel
        )

    # --- following ------------------------------------------------------

    def find(self, job_id: int, attempt: int) -> ContainerRef | None:
        """Return the container of this attempt, running or not, or None."""
        try:
            attrs = self._inspect_by_name(job_id, attempt)
        except ExecutorError as exc:
            if exc.transient is False:
                logger.warning("%s", exc, extra={"job_id": job_id})
                return None
            raise
        return None if attrs is None else ContainerRef(job_id, attempt, attrs["Id"])

    def list_managed(self) -> list[ContainerRef]:
        """Return every container of this project (name prefix and labels) on the host."""
        rows = self._call(
            "list", self._client().api.containers, all=True, filters={"label": f"{LABEL_MANAGED}=1"}
        )
        prefix = f"/{settings.CONTAINER_NAME_PREFIX}-job-"
        refs = []
        for row in rows:
            if any(name.startswith(prefix) for name in row.get("Names") or ()):
                ref = ref_from_labels(row["Id"], row.get("Labels") or {})
                if ref is not None:
                    refs.append(ref)
        return refs

    def _open_events(self, since: float | None) -> CancellableStream:
        return self._client().api.events(
            since=since,
            decode=True,
            filters={"type": "container", "event": ["die", "oom"], "label": f"{LABEL_MANAGED}=1"},
        )

    def wait_finished(
        self, refs: Iterable[ContainerRef], timeout_seconds: float
    ) -> list[ExitStatus]:
        """Wait on the events stream until one of ``refs`` ended, or the timeout passes.

        A ref seen for the first time is looked up at once (it may have ended
        before it was followed); all are looked up again every
        ``reconcile_interval_seconds`` (every 2 s while the stream is down).
        """
        return self._tracker.wait(list(refs), timeout_seconds)

    def _list_states(self) -> dict[str, str]:
        rows = self._client().api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"})
        return {row["Id"]: row.get("State") or "" for row in rows}

    def _inspect(self, container_id: str) -> dict[str, Any]:
        attrs: dict[str, Any] = self._client().api.inspect_container(container_id)
        return attrs

    # --- output -----------------------------------------------------------

    def _open_logs(self, container_id: str, follow: bool) -> requests.Response:
        """Open the raw multiplexed logs stream of a container (both streams)."""
        api = self._client().api
        url = f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs"
        params = {"stdout": 1, "stderr": 1, "follow": int(follow)}
        try:
            # Following waits for output as long as the container runs; a plain
            # read gives up when the engine sends nothing for api_timeout_seconds.
            read_timeout = None if follow else self.api_timeout_seconds
            response = api.get(
                url, params=params, stream=True, timeout=(self.api_timeout_seconds, read_timeout)
            )
        except Exception as exc:
            raise translate_error(exc, f"logs of {container_id[:12]}") from exc
        if response.status_code == 404:
            response.close()
            raise ContainerNotFoundError(f"Container {container_id[:12]} is gone")
        if response.status_code >= 400:
            detail = response.text[:500]
            response.close()
            raise ExecutorError(f"Docker logs of {container_id[:12]} failed: {detail}")
        with self._lock:
            self._streams.add(response)
        return response

    def _close_stream(self, response: requests.Response) -> None:
        with self._lock:
            self._streams.discard(response)
        try:
            CancellableStream(None, response).close()
        except Exception as exc:
            logger.debug("Closing a logs stream: %s", exc)
        response.close()

    def logs(self, ref: ContainerRef, max_bytes: int) -> Logs:
        """Read stdout and stderr apart in one pass, keeping at most ``max_bytes`` of each.

        The stream is read in 64 KiB chunks and only the kept bytes are held.
        Reading stops after ``log_read_timeout_seconds``; the marker then
        gives a lower bound of what was left out.
        """
        deadline = time.monotonic() + self.log_read_timeout_seconds
        response = self._open_logs(ref.container_id, follow=False)
        try:
            chunks = response.raw.stream(READ_CHUNK_BYTES, decode_content=False)
            out, err = read_capped(chunks, max_bytes, deadline)
        except Exception as exc:
            raise translate_error(exc, f"logs of job {ref.job_id}") from exc
        finally:
            self._close_stream(response)
        return Logs(out.text, err.text, out.is_truncated, err.is_truncated)

    def follow_progress(self, ref: ContainerRef, callback: ProgressCallback) -> None:
        """Follow the container's output and report each progress line until it ends.

        Malformed progress lines are ignored. Returns when the container ends,
        when it is gone, or when the executor is closed.
        """

        def report(percent: int, step: str) -> None:
            try:
                callback(Progress(ref=ref, percent=percent, step=step))
            except Exception:
                logger.exception(
                    "Progress callback failed for job %s", ref.job_id, extra={"job_id": ref.job_id}
                )

        try:
            response = self._open_logs(ref.container_id, follow=True)
        except ContainerNotFoundError:
            return
        try:
            report_progress(response.raw.stream(READ_CHUNK_BYTES, decode_content=False), report)
        except Exception as exc:
            logger.debug("Progress stream of %s ended: %s", ref.container_id[:12], exc)
        finally:
            self._close_stream(response)

    # --- control ----------------------------------------------------------

    def kill(self, ref: ContainerRef) -> None:
        """Kill the container (SIGKILL). No error if it already ended or is gone."""
        try:
            self._client().api.kill(ref.container_id)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # not running (any more)
                return
            raise translate_error(exc, f"kill of job {ref.job_id}") from exc
        except Exception as exc:
            raise translate_error(exc, f"kill of job {ref.job_id}") from exc

    def pause(self, ref: ContainerRef) -> None:
        """Freeze the container (``docker pause``)."""
        self._call(f"pause of job {ref.job_id}", self._client().api.pause, ref.container_id)

    def resume(self, ref: ContainerRef) -> None:
        """Thaw the container (``docker unpause``)."""
        self._call(f"unpause of job {ref.job_id}", self._client().api.unpause, ref.container_id)

    def remove(self, ref: ContainerRef) -> None:
        """Remove the container and its anonymous volumes, killing it if it runs."""
        try:
            self._client().api.remove_container(ref.container_id, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a removal is already in progress
                raise translate_error(exc, f"removal of job {ref.job_id}") from exc
        except Exception as exc:
            raise translate_error(exc, f"removal of job {ref.job_id}") from exc
        self._tracker.forget(ref.container_id)

    def _remove_quietly(self, container_id: str) -> None:
        try:
            self._client().api.remove_container(container_id, v=True, force=True)
        except Exception as exc:
            logger.warning("Could not remove container %s: %s", container_id[:12], exc)

    def health_check(self) -> HealthReport:
        """Ping the engine and read its version; never raises."""
        try:
            client = self._client()
            client.api.ping()
            version = client.api.version()
        except Exception as exc:
            return HealthReport(False, str(translate_error(exc, f"health check of {self.host}")))
        return HealthReport(
            True, f"Docker {version.get('Version')} (API {version.get('ApiVersion')})"
        )

    def close(self) -> None:
        """Stop the events thread, close open log streams and the connections."""
        self._tracker.close()
        with self._lock:
            streams, clients = list(self._streams), list(self._clients.values())
            self._clients.clear()
        for response in streams:
            self._close_stream(response)
        for client in clients:
            client.close()


def _pull_error(image: str, detail: str, status: int | None = None) -> ExecutorError:
    """The error of a failed pull: missing image, refused credentials, or a passing failure."""
    message = f"Pull of {image} failed: {detail}"
    found = classify_engine_response(status, detail, message)
    if found.code in ("DOCKER_IMAGE_NOT_FOUND", "DOCKER_AUTHENTICATION_FAILED"):
        return error_of(found)
    return ImagePullError(message)
