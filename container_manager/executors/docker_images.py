"""Image tasks on a Docker engine: pull, build and push, followed as the engine streams them.

:class:`~container_manager.executors.docker.DockerExecutor` calls :func:`pull`,
:func:`build` and :func:`push` with an :class:`ImageEngine`: the SDK's calls
stay there (the only module that imports ``docker``), what is read from the
engine is handled here. Each task gets a client of its own; a thread reads
its stream and hands each entry to the caller's thread, which turns it into
output, progress and errors. So ``on_step`` is always called on the caller's
thread (it writes to the database), a step held back by the throttle is sent
even while the engine is silent, and when ``cancel`` is set the caller's
thread cuts the client's connection: the engine then stops the build
(killing its step's container), the pull or the push (docs/image-tasks.md).
"""

from __future__ import annotations

import io
import logging
import posixpath
import queue
import re
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from container_manager.classification import PERMANENT, UNKNOWN, classify_image_response
from container_manager.conf import settings
from container_manager.exceptions import (
    ExecutorError,
    ExecutorPermissionError,
    ExecutorUnavailableError,
    ImageBuildError,
    ImageNotFoundError,
    ImagePullError,
    ImagePushError,
    ImageTaskCancelled,
    RegistryAuthenticationError,
    RegistryError,
)
from container_manager.executors.base import BuildSpec, ImageResult, ImageStep, ImageStepCallback
from container_manager.logcap import TRUNCATION_MARKER, CappedBuffer, storable_text
from container_manager.models.validation import image_reference_problem

logger = logging.getLogger(__name__)

#: Least time between two ``on_step`` calls of one phase (each one is a database write).
STEP_INTERVAL_SECONDS = 0.25
#: How often the caller's thread looks at ``cancel`` while the engine is silent.
CANCEL_CHECK_SECONDS = 0.1
#: How long a task waits for its reader thread once the connection is cut.
READER_JOIN_SECONDS = 2.0
#: The longest step text (the job's ``current_step`` holds 200 characters).
STEP_MAX_CHARS = 200
#: A build output line longer than this is not searched for ``Step N/M``.
MAX_LINE_CHARS = 4096

# A build's tag as the SDK's build() accepts it: a lower-case registry, no digest.
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
BUILD_TAG = re.compile(rf"{_PATH}(?::[0-9]+)?(?:/{_PATH})*(?::[\w][\w.-]{{0,127}})?")
#: ``Step 3/7 : RUN make``: the classic builder's line at the start of each step.
STEP_LINE = re.compile(r"Step (\d+)/(\d+) : ")
_PULLED = frozenset({"Pull complete", "Already exists"})
#: The first words on each layer; the layers are all known once one goes further.
_ANNOUNCED = frozenset({"Already exists", "Pulling fs layer", "Waiting", "Preparing"})
_PUSHED = ("Pushed", "Layer already exists", "Mounted from")


# --- references ----------------------------------------------------------------


def check_reference(reference: str, *, is_tag: bool = False, allows_digest: bool = True) -> None:
    """Refuse a malformed image reference before the engine is asked.

    Args:
        reference: ``[registry[:port]/]name[:tag][@digest]``.
        is_tag: It is a tag a build gives (checked as the SDK checks it too).
        allows_digest: A ``@sha256:...`` part is allowed (not for a push).

    Raises:
        ExecutorError: ``VALIDATION_INVALID_FORMAT``, permanent.
    """
    problem = image_reference_problem(reference) if reference else "An image reference is empty."
    if not problem and "@" in reference and not (allows_digest and not is_tag):
        problem = f"{reference!r} names a digest; a tag is needed here."
    if not problem and is_tag and not BUILD_TAG.fullmatch(reference):
        problem = f"{reference!r} cannot be a build's tag (its registry must be lower case)."
    if problem:
        raise ExecutorError(problem, code="VALIDATION_INVALID_FORMAT", transient=False)


def split_reference(reference: str) -> tuple[str, str]:
    """Split ``registry/name:tag`` into ``(registry/name, tag)``; the tag defaults to ``latest``.

    A digest (``name@sha256:...``) is returned in place of the tag.
    """
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, digest
    repository, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        return reference, "latest"
    return repository, tag


# --- output and progress ---------------------------------------------------------


class OutputLog:
    """A task's readable output, at most ``max_bytes``: all of it, or its start and its end.

    Output that fits is kept whole, as :class:`~container_manager.logcap.CappedBuffer`
    keeps it. Output that outgrows the cap keeps its first half and its last
    half, with the marker of :mod:`container_manager.logcap` between them
    counting what was left out, so a failed build's last lines always survive.
    """

    def __init__(self, max_bytes: int) -> None:
        self._start = CappedBuffer(max_bytes)
        self._tail_bytes = max_bytes // 2
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._written_bytes = 0

    def write(self, text: str) -> None:
        """Add text (a stream chunk, or a line with its newline)."""
        data = text.encode("utf-8", errors="surrogatepass")
        self._written_bytes += len(data)
        self._start.feed(data)
        self._tail.append(data)
        self._tail_size += len(data)
        while self._tail and self._tail_size - len(self._tail[0]) >= self._tail_bytes:
            self._tail_size -= len(self._tail.popleft())

    def result(self) -> tuple[str, bool]:
        """Return the kept text (with the marker when something was left out) and the flag."""
        whole = self._start.result()
        if not whole.is_truncated:
            return whole.text, False
        start = whole.text.removesuffix(TRUNCATION_MARKER.format(omitted=whole.omitted_bytes))
        head = start.encode()[: self._start.max_bytes - self._tail_bytes]
        head_text = head.decode("utf-8", errors="ignore")  # drops only a character cut in two
        tail = b"".join(self._tail)[-self._tail_bytes :] if self._tail_bytes else b""
        skip = 0
        while skip < len(tail) and tail[skip] & 0xC0 == 0x80:  # start on a whole character
            skip += 1
        tail_text = storable_text(tail[skip:].decode("utf-8", errors="replace"))
        omitted = self._written_bytes - len(head_text.encode()) - (len(tail) - skip)
        return f"{head_text}{TRUNCATION_MARKER.format(omitted=omitted)}{tail_text}", True


def _fraction(entry: dict[str, Any]) -> float:
    """How far one layer's transfer is (0-1), from the entry's ``progressDetail``."""
    detail = entry.get("progressDetail") or {}
    current, total = detail.get("current"), detail.get("total")
    if not isinstance(current, int | float) or not isinstance(total, int | float) or total <= 0:
        return 0.0
    return min(0.99, max(0.0, current / total))  # "Pushing" overshoots its total


class LayerProgress:
    """The layers of a pull or a push, from the stream's entries that name one.

    A layer's entries carry its short id and ``progressDetail``; other
    entries (``Pulling from``, ``Digest``, the push's summary) are not layers.
    A layer counts 1 once done (pulled or already there, pushed or already
    in the registry); before that a pull's layer counts half its download
    and half its extraction, a push's layer the part of its bytes sent.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self._statuses: dict[str, str] = {}
        self._fractions: dict[str, float] = {}
        self._percent = 0
        # A layer went past its first word: the others are (about to be) announced.
        self.is_moving = False

    def feed(self, entry: dict[str, Any]) -> str | None:
        """Take one entry; return its readable line when something changed, else None."""
        status = str(entry.get("status") or "")
        layer = str(entry.get("id") or "")
        if not layer or "progressDetail" not in entry:
            if not status:
                return None
            return f"{layer}: {status}" if layer else status
        if self._fractions.get(layer) == 1.0:
            return None
        self._fractions[layer] = self._layer_fraction(status, entry)
        self.is_moving = self.is_moving or status not in _ANNOUNCED
        if self._statuses.get(layer) == status:
            return None
        self._statuses[layer] = status
        return f"{layer}: {status}"

    def _layer_fraction(self, status: str, entry: dict[str, Any]) -> float:
        if self.operation == "push":
            if status.startswith(_PUSHED):
                return 1.0
            return _fraction(entry) if status == "Pushing" else 0.0
        if status in _PULLED:
            return 1.0
        if status == "Downloading":
            return _fraction(entry) / 2
        if status in ("Verifying Checksum", "Download complete"):
            return 0.5
        if status == "Extracting":
            return 0.5 + _fraction(entry) / 2
        return 0.0

    @property
    def total(self) -> int:
        """Layers announced so far."""
        return len(self._fractions)

    @property
    def done(self) -> int:
        """Layers done."""
        return sum(1 for fraction in self._fractions.values() if fraction == 1.0)

    @property
    def percent(self) -> int | None:
        """0-100 over all layers, or None until they are known; it never goes down.

        (A layer announced late, while others already move, would lower it.)
        """
        if not self.is_moving:
            return None
        now = int(100 * sum(self._fractions.values()) / len(self._fractions))
        self._percent = max(self._percent, now)
        return self._percent


class BuildSteps:
    """Finds the classic builder's ``Step N/M : ...`` lines in a build's output chunks."""

    def __init__(self) -> None:
        self._line = ""

    def feed(self, text: str) -> list[ImageStep]:
        """Take one ``stream`` chunk; return a step for each step line it completes."""
        steps = []
        *lines, rest = (self._line + text).split("\n")
        self._line = rest if len(rest) <= MAX_LINE_CHARS else ""
        for line in lines:
            found = STEP_LINE.match(line)
            if found:
                number, count = int(found.group(1)), int(found.group(2))
                percent = min(100, int(100 * number / count)) if count else None
                steps.append(ImageStep("building", line.rstrip("\r"), percent))
        return steps


class StepReporter:
    """Passes image steps to ``on_step``, at most one per interval within a phase.

    A new phase is reported at once; a change within a phase waits until
    :data:`STEP_INTERVAL_SECONDS` passed since the last call, the newest
    waiting step replacing an older one; a repeat is never sent. The caller
    sends a waiting step when it is due (:meth:`flush`), even if nothing else
    comes. A failing callback is logged and does not stop the task.
    """

    def __init__(
        self,
        on_step: ImageStepCallback | None,
        interval_seconds: float = STEP_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_step = on_step
        self._interval = interval_seconds
        self._clock = clock
        self.last: ImageStep | None = None
        self._sent_at = 0.0
        self._waiting: ImageStep | None = None

    def offer(self, step: ImageStep) -> None:
        """Report ``step`` now, or keep it until the interval has passed."""
        if len(step.step) > STEP_MAX_CHARS:
            step = ImageStep(step.phase, step.step[: STEP_MAX_CHARS - 3] + "...", step.percent)
        if step == self.last:
            self._waiting = None
        elif self.last is None or step.phase != self.last.phase or self.seconds_to_due() == 0:
            self._send(step)
        else:
            self._waiting = step

    def seconds_to_due(self) -> float:
        """Seconds until another step of the same phase may be sent (0: now)."""
        return max(0.0, self._sent_at + self._interval - self._clock())

    @property
    def is_waiting(self) -> bool:
        """A step is held back by the interval."""
        return self._waiting is not None

    def flush(self, *, is_final: bool = False) -> None:
        """Send the waiting step if it is due (or at once when ``is_final``)."""
        if self._waiting is not None and (is_final or self.seconds_to_due() == 0):
            self._send(self._waiting)

    def _send(self, step: ImageStep) -> None:
        self.last, self._sent_at, self._waiting = step, self._clock(), None
        if self._on_step is None:
            return
        try:
            self._on_step(step)
        except Exception:
            logger.exception("Image step callback failed on %s", step)


# --- errors ------------------------------------------------------------------------

_LEAVES: dict[str, type[ExecutorError]] = {
    "DOCKER_PULL_FAILED": ImagePullError,
    "DOCKER_BUILD_FAILED": ImageBuildError,
    "DOCKER_PUSH_FAILED": ImagePushError,
    "DOCKER_REGISTRY_ERROR": RegistryError,
    "DOCKER_AUTHENTICATION_FAILED": RegistryAuthenticationError,
    "DOCKER_IMAGE_NOT_FOUND": ImageNotFoundError,
    "DOCKER_PERMISSION_DENIED": ExecutorPermissionError,
    "DOCKER_NETWORK_ERROR": ExecutorUnavailableError,
}


def image_error(
    operation: str,
    message: str,
    *,
    status: int | None = None,
    detail: str = "",
    exit_code: int | None = None,
    output: str = "",
) -> ExecutorError:
    """Build the ExecutorError leaf of a failed pull, build or push.

    Args:
        operation: ``pull``, ``build`` or ``push``.
        message: What failed, for people.
        status: The HTTP status of the engine's answer; None for a stream's error.
        detail: The engine's message (searched for the registry's error code).
        exit_code: A failed build step's exit code (``errorDetail.code``).
        output: The task's output so far, capped.

    Returns:
        The error, with the code and verdict of ``classify_image_response``.
    """
    found = classify_image_response(operation, status, detail, message, exit_code)
    leaf = _LEAVES.get(found.code, ExecutorError)
    transient = None if found.category == UNKNOWN else found.category != PERMANENT
    return leaf(message, code=found.code, transient=transient, output=output)


# --- running a task ----------------------------------------------------------------


class TaskClient(Protocol):
    """A client of one task's own (``api`` is the SDK's APIClient), and the way to cut it."""

    api: Any

    def close(self) -> None:
        """Cut the open stream and close the connections (from any thread)."""


@dataclass(frozen=True)
class ImageEngine:
    """What the image tasks need from the Docker executor, which alone imports the SDK.

    Attributes:
        api: The executor's APIClient (short timeouts), for inspect and tag.
        open_task: Makes a client for one task's stream, with no read timeout
            (a build may be silent for minutes), sending the given registry
            credentials to the engine (registry -> credentials) when not None.
        translate: Turns an SDK or transport error into an ExecutorError leaf.
        api_error: The SDK's error for an engine's HTTP error answer.
        not_found: The SDK's error for a 404 answer.
    """

    api: Any
    open_task: Callable[[dict[str, dict[str, str]] | None], TaskClient]
    translate: Callable[[Exception, str], ExecutorError]
    api_error: type[Exception]
    not_found: type[Exception]


_END = object()


class _ImageTask:
    """One pull, build or push: its output, its steps, and the stream it follows."""

    def __init__(
        self,
        engine: ImageEngine,
        operation: str,
        subject: str,
        on_step: ImageStepCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.engine = engine
        self.operation = operation
        self.subject = subject
        self.output = OutputLog(settings.LOG_MAX_BYTES)
        self.reporter = StepReporter(on_step)
        self.cancel = cancel
        self.check_cancelled()

    @property
    def name(self) -> str:
        """``Pull of 127.0.0.1:5000/app:1``."""
        return f"{self.operation.capitalize()} of {self.subject}"

    def check_cancelled(self) -> None:
        """Raise ImageTaskCancelled when the task's job was cancelled."""
        if self.cancel is not None and self.cancel.is_set():
            raise ImageTaskCancelled(f"{self.name} was cancelled")

    def follow(
        self,
        auth: dict[str, dict[str, str]] | None,
        start: Callable[[Any], Iterable[dict[str, Any]]],
        handle: Callable[[dict[str, Any]], None],
    ) -> None:
        """Open a client of the task's own, read ``start(api)`` in a thread, handle each entry here.

        Returns when the stream ends. When ``cancel`` is set the connection is
        cut (the engine stops the work) and ImageTaskCancelled is raised.

        Raises:
            ImageTaskCancelled: ``cancel`` was set.
            ExecutorError: The engine refused or failed the task (a leaf with its code).
        """
        try:
            task = self.engine.open_task(auth)
        except ExecutorError:
            raise
        except Exception as exc:
            raise self.engine.translate(exc, f"connection for {self.name}") from exc
        entries: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def read() -> None:
            try:
                for entry in start(task.api):
                    entries.put(entry)
            except Exception as exc:  # handed over to the caller's thread
                entries.put(exc)
                return
            entries.put(_END)

        reader = threading.Thread(target=read, name=f"cm-image-{self.operation}", daemon=True)
        reader.start()
        try:
            self._handle_entries(entries, handle)
        finally:
            task.close()
            reader.join(READER_JOIN_SECONDS)

    def _handle_entries(
        self, entries: queue.SimpleQueue[Any], handle: Callable[[dict[str, Any]], None]
    ) -> None:
        while True:
            self.check_cancelled()
            waits = [CANCEL_CHECK_SECONDS] if self.cancel is not None else []
            if self.reporter.is_waiting:
                waits.append(self.reporter.seconds_to_due())
            timeout = min(waits) if waits else None
            try:
                item = entries.get(timeout=timeout)
            except queue.Empty:
                self.reporter.flush()
                continue
            if item is _END:
                return
            if isinstance(item, Exception):
                self.check_cancelled()  # a cut connection fails the read: not an error
                self.reporter.flush(is_final=True)
                raise self.sdk_error(item) from item
            if isinstance(item, dict):
                if item.get("error") or item.get("errorDetail"):
                    self.reporter.flush(is_final=True)
                    raise self.stream_error(item)
                handle(item)
            self.reporter.flush()

    def sdk_error(self, exc: Exception) -> ExecutorError:
        """Turn what the SDK raised into the task's error: the engine's answer, or no answer."""
        if isinstance(exc, self.engine.api_error):
            detail = str(getattr(exc, "explanation", "") or exc)
            self.output.write(f"{detail}\n")
            return image_error(
                self.operation,
                f"{self.name} failed: {detail}",
                status=getattr(exc, "status_code", None),
                detail=detail,
                output=self.output.result()[0],
            )
        error = self.engine.translate(exc, self.name.lower())
        error.output = error.output or self.output.result()[0]
        return error

    def stream_error(self, entry: dict[str, Any]) -> ExecutorError:
        """Turn a stream's ``errorDetail`` into the task's error, with the output's tail."""
        detail_entry = entry.get("errorDetail")
        detail_entry = detail_entry if isinstance(detail_entry, dict) else {}
        detail = str(detail_entry.get("message") or entry.get("error") or "unknown error")
        code = detail_entry.get("code")
        is_exit_code = self.operation == "build" and isinstance(code, int) and code > 0
        self.output.write(f"{detail}\n")
        return image_error(
            self.operation,
            f"{self.name} failed: {detail}",
            detail=detail,
            exit_code=code if is_exit_code else None,
            output=self.output.result()[0],
        )

    def result(self, image_id: str, digest: str) -> ImageResult:
        """The task's result, once the final step is reported."""
        self.reporter.flush(is_final=True)
        text, is_truncated = self.output.result()
        return ImageResult(image_id, digest, text, is_truncated)

    def call(self, action: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the executor's client (inspect, tag); map an error as the task's own."""
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            raise self.sdk_error(exc) from exc


# --- the operations ------------------------------------------------------------------


def pull(
    engine: ImageEngine,
    reference: str,
    *,
    platform: str = "",
    auth: dict[str, str] | None = None,
    on_step: ImageStepCallback | None = None,
    cancel: threading.Event | None = None,
) -> ImageResult:
    """Pull ``reference``, reporting ``pulling`` then ``downloading`` with the layers done.

    Returns:
        The image's id, the registry's digest, and one line per layer state change.

    Raises:
        ImageTaskCancelled: ``cancel`` was set.
        ExecutorError: A leaf of :func:`image_error` (``operation="pull"``).
    """
    check_reference(reference)
    task = _ImageTask(engine, "pull", reference, on_step, cancel)
    layers = LayerProgress("pull")
    found: dict[str, str] = {}
    task.reporter.offer(ImageStep("pulling", f"Pulling {reference}"))

    def handle(entry: dict[str, Any]) -> None:
        line = layers.feed(entry)
        if line is not None:
            task.output.write(f"{line}\n")
        status = str(entry.get("status") or "")
        for prefix, key in (("Digest: ", "digest"), ("Status: ", "status")):
            if status.startswith(prefix):
                found[key] = status.removeprefix(prefix)
        if layers.is_moving:
            step = f"Downloading {layers.done}/{layers.total} layers"
            task.reporter.offer(ImageStep("downloading", step, layers.percent))

    task.follow(
        None,
        lambda api: api.pull(
            reference,
            platform=platform or None,
            auth_config=auth,
            stream=True,
            decode=True,
        ),
        handle,
    )
    phase = "downloading" if layers.is_moving else "pulling"
    task.reporter.offer(ImageStep(phase, found.get("status") or f"Pulled {reference}", 100))
    image_id = task.call(f"inspect of {reference}", engine.api.inspect_image, reference)["Id"]
    logger.info("Pulled image %s (%s)", reference, image_id[:19])
    return task.result(image_id, found.get("digest", ""))


def build_context(spec: BuildSpec) -> tuple[bytes, str | None, str | None]:
    """Return the build context to send: the archive, its Dockerfile's path and its encoding.

    With ``spec.context`` that archive is sent as it is (gzip-compressed or
    not). Without, a tar archive is made in memory of ``spec.dockerfile`` (as
    ``Dockerfile``) and ``spec.files``.

    Raises:
        ExecutorError: ``VALIDATION_INVALID_PARAMS``, permanent: no Dockerfile,
            or a file's path leaves the context.
    """
    if spec.context:
        encoding = "gzip" if spec.context[:2] == b"\x1f\x8b" else None
        return spec.context, spec.dockerfile or None, encoding
    if not spec.dockerfile.strip():
        raise ExecutorError(
            "A build needs a Dockerfile or a context",
            code="VALIDATION_INVALID_PARAMS",
            transient=False,
        )
    members = {"Dockerfile": spec.dockerfile}
    for path, text in spec.files.items():
        name = posixpath.normpath(path)
        if name.startswith(("/", "../")) or name in (".", "..", "Dockerfile"):
            raise ExecutorError(
                f"Build file {path!r} must be a relative path in the context, not the Dockerfile",
                code="VALIDATION_INVALID_PARAMS",
                transient=False,
            )
        members[name] = text
    archive = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue(), None, None


def build(
    engine: ImageEngine,
    spec: BuildSpec,
    *,
    auth: dict[str, dict[str, str]] | None = None,
    on_step: ImageStepCallback | None = None,
    cancel: threading.Event | None = None,
) -> ImageResult:
    """Build ``spec`` with the classic builder, reporting each ``Step N/M`` line.

    The first tag is given by the build, the others by tagging its image.

    Returns:
        The image's id and the build's output.

    Raises:
        ImageTaskCancelled: ``cancel`` was set (the engine stops the build).
        ExecutorError: A leaf of :func:`image_error` (``operation="build"``);
            a failed build's carries the output's tail in ``output``.
    """
    for tag in spec.tags:
        check_reference(tag, is_tag=True)
    archive, dockerfile, encoding = build_context(spec)
    task = _ImageTask(engine, "build", spec.tags[0] if spec.tags else "an image", on_step, cancel)
    steps, layers = BuildSteps(), LayerProgress("pull")
    found: dict[str, str] = {}
    task.reporter.offer(ImageStep("building", "Sending the build context"))

    def handle(entry: dict[str, Any]) -> None:
        text = entry.get("stream")
        if isinstance(text, str):
            task.output.write(text)
            for step in steps.feed(text):
                task.reporter.offer(step)
        elif entry.get("status"):  # a base image being pulled
            line = layers.feed(entry)
            if line is not None:
                task.output.write(f"{line}\n")
        aux = entry.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            found["image_id"] = str(aux["ID"])

    task.follow(
        auth,
        lambda api: api.build(
            fileobj=io.BytesIO(archive),
            custom_context=True,
            encoding=encoding,
            dockerfile=dockerfile,
            tag=spec.tags[0] if spec.tags else None,
            buildargs=dict(spec.build_args) or None,
            target=spec.target or None,
            labels=dict(spec.labels) or None,
            platform=spec.platform or None,
            decode=True,
            rm=True,
            forcerm=True,
        ),
        handle,
    )
    image_id = found.get("image_id", "")
    if not image_id:
        raise image_error("build", f"{task.name} gave no image", output=task.output.result()[0])
    for tag in spec.tags[1:]:
        repository, name = split_reference(tag)
        task.call(f"tag {tag}", engine.api.tag, image_id, repository, name)
    task.reporter.offer(
        ImageStep("building", f"Built {image_id.removeprefix('sha256:')[:12]}", 100)
    )
    logger.info("Built image %s (%s)", ", ".join(spec.tags) or "untagged", image_id[:19])
    return task.result(image_id, "")


def push(
    engine: ImageEngine,
    reference: str,
    *,
    auth: dict[str, str] | None = None,
    on_step: ImageStepCallback | None = None,
    cancel: threading.Event | None = None,
) -> ImageResult:
    """Push the local image ``reference`` to its registry, reporting ``uploading`` per layer.

    Returns:
        The image's id, the digest the registry gave it, and one line per
        layer state change.

    Raises:
        ImageTaskCancelled: ``cancel`` was set (the engine stops the upload).
        ExecutorError: A leaf of :func:`image_error` (``operation="push"``);
            ``DOCKER_IMAGE_NOT_FOUND`` when the host has no such image.
    """
    check_reference(reference, allows_digest=False)
    task = _ImageTask(engine, "push", reference, on_step, cancel)
    try:
        image_id = str(engine.api.inspect_image(reference)["Id"])
    except engine.not_found as exc:
        raise ImageNotFoundError(
            f"Image {reference} is not on the host; build or pull it first"
        ) from exc
    except Exception as exc:
        raise task.sdk_error(exc) from exc
    repository, tag = split_reference(reference)
    layers = LayerProgress("push")
    found: dict[str, str] = {}
    task.reporter.offer(ImageStep("uploading", f"Pushing {reference}"))

    def handle(entry: dict[str, Any]) -> None:
        line = layers.feed(entry)
        if line is not None:
            task.output.write(f"{line}\n")
        aux = entry.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            found["digest"] = str(aux["Digest"])
        if layers.is_moving:
            step = f"Uploading {layers.done}/{layers.total} layers"
            task.reporter.offer(ImageStep("uploading", step, layers.percent))

    task.follow(
        None,
        lambda api: api.push(repository, tag=tag, auth_config=auth, stream=True, decode=True),
        handle,
    )
    task.reporter.offer(ImageStep("uploading", f"Pushed {reference}", 100))
    logger.info("Pushed image %s (%s)", reference, found.get("digest", "no digest"))
    return task.result(image_id, found.get("digest", ""))
