"""Error classification: is a failure worth retrying, and what is it called?

:func:`classify` turns an exception (or a failed launch result) into a
:class:`Classification` with a category (``transient``, ``permanent`` or
``unknown``), a code of the :data:`CATALOGUE` and a message. It decides in
this order, most reliable first:

1. hooks registered with :func:`register_classifier` (an executor may add one);
2. our own :class:`~container_manager.exceptions.ExecutorError` subclasses,
   which carry ``code`` and ``transient``, and
   :class:`~container_manager.exceptions.ConfigurationError` (permanent,
   ``CONFIGURATION_ERROR``);
3. the docker SDK's exceptions (``ImageNotFound``, ``NotFound``, ``APIError``
   with its HTTP status code, ``DockerException``), recognised by module and
   class name: ``import docker`` may only appear in ``executors/docker.py``,
   and the SDK may not even be installed where the local executor runs;
4. ``requests`` and ``urllib3`` connection errors and timeouts, by name too;
5. built-in ``TimeoutError``, ``ConnectionError``, ``OSError`` (by ``errno``),
   ``MemoryError`` and Django's ``ValidationError``;
6. only then, the message, against :data:`MESSAGE_PATTERNS`.

Unknown errors are treated as transient with conservative limits by the
queue (see :data:`UNKNOWN_MAX_ATTEMPTS`).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from container_manager.exceptions import ConfigurationError, ExecutorError
from container_manager.logcap import ERROR_CODE_PATTERN

Category = Literal["transient", "permanent", "unknown"]
TRANSIENT: Category = "transient"
PERMANENT: Category = "permanent"
UNKNOWN: Category = "unknown"

#: Launch attempts an unknown error gets at most (the conservative strategy's 2).
UNKNOWN_MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class ErrorCode:
    """One entry of the error catalogue.

    Attributes:
        code: The stable identifier stored in ``ContainerJob.error_code``.
        description: What went wrong, for people.
        suggestion: What to do about it.
        transient: True when trying again later may succeed, False when it cannot,
            None when nobody can tell.
    """

    code: str
    description: str
    suggestion: str
    transient: bool | None


def _codes(*entries: ErrorCode) -> dict[str, ErrorCode]:
    return {entry.code: entry for entry in entries}


E = ErrorCode

#: Every error code, by name: the catalogue of docs/troubleshooting.md and the
#: codes the executors need.
CATALOGUE: dict[str, ErrorCode] = _codes(
    # Docker errors.
    E(
        "DOCKER_IMAGE_NOT_FOUND",
        "Docker image not found locally",
        "Check the image name and tag; build or pull it on the host, or allow pulls "
        "(ExecutorHost.auto_pull_images).",
        False,
    ),
    E(
        "DOCKER_AUTHENTICATION_FAILED",
        "Docker authentication failed",
        "Log the Docker host in to the registry (docker login) or fix the credentials.",
        False,
    ),
    E(
        "DOCKER_PERMISSION_DENIED",
        "Docker permission denied",
        "Give the worker's user access to the Docker socket (docker group) or fix the "
        "TLS client certificate.",
        False,
    ),
    E(
        "DOCKER_NETWORK_ERROR",
        "Docker network connection error",
        "Check that the Docker daemon runs and that the host's connection string is right.",
        True,
    ),
    E(
        "DOCKER_REGISTRY_ERROR",
        "Docker registry error",
        "The registry refused or failed the request; check its status and rate limits.",
        True,
    ),
    E(
        "DOCKER_BUILD_FAILED",
        "Docker build failed",
        "Read the build log; fix the Dockerfile or the build context.",
        False,
    ),
    E(
        "DOCKER_PUSH_FAILED",
        "Docker push failed",
        "Check the registry address, credentials and free space on the registry.",
        True,
    ),
    E(
        "DOCKER_PULL_FAILED",
        "Docker pull failed",
        "Check the registry address and the network from the Docker host to it.",
        True,
    ),
    E(
        "DOCKER_DAEMON_ERROR",
        "The Docker daemon answered with a server error",
        "Read the daemon's log (journalctl -u docker); the next attempt may succeed.",
        True,
    ),
    E(
        "DOCKER_CONFLICT",
        "A container with the same name already exists",
        "A container of this attempt exists already; the worker adopts it, or remove it.",
        False,
    ),
    # System errors.
    E(
        "SYSTEM_TIMEOUT",
        "Task execution timed out",
        "Raise the job's timeout_seconds or make the job faster.",
        False,
    ),
    E(
        "SYSTEM_RESOURCE_LIMIT",
        "System resource limit exceeded",
        "The host is overloaded (processes, files); lower max_concurrent_jobs or add hosts.",
        True,
    ),
    E(
        "SYSTEM_DISK_SPACE",
        "Insufficient disk space",
        "Free disk space on the host (docker system prune) or add storage.",
        True,
    ),
    E(
        "SYSTEM_MEMORY_LIMIT",
        "Insufficient memory",
        "Free memory on the host or lower the number of concurrent jobs.",
        True,
    ),
    E(
        "NETWORK_TIMEOUT",
        "A network request timed out",
        "The host or registry is slow or unreachable; the next attempt may succeed.",
        True,
    ),
    E(
        "CONNECTION_ERROR",
        "A network connection failed",
        "Check that the service is up and reachable from the worker.",
        True,
    ),
    # Validation errors.
    E(
        "VALIDATION_INVALID_PARAMS",
        "Invalid task parameters",
        "Fix the job's command, limits or options.",
        False,
    ),
    E(
        "VALIDATION_MISSING_REQUIRED",
        "Missing required parameters",
        "Give the job the missing field (image, command or host).",
        False,
    ),
    E(
        "VALIDATION_INVALID_FORMAT",
        "Invalid parameter format",
        "Fix the format of the value (image reference, environment line, path).",
        False,
    ),
    E(
        "COMMAND_NOT_FOUND",
        "The command does not exist in the image",
        "Check the command's spelling and that the image contains it.",
        False,
    ),
    E(
        "PERMISSION_DENIED",
        "Permission denied",
        "Check file permissions and the user the job runs as.",
        False,
    ),
    # Queue errors.
    E("QUEUE_FULL", "Task queue is full", "Wait, or raise the queue's max_concurrent.", True),
    E(
        "QUEUE_TASK_NOT_FOUND",
        "Task not found in queue",
        "The job was deleted or dequeued; check its id.",
        False,
    ),
    E(
        "QUEUE_TASK_ALREADY_RUNNING",
        "Task is already running",
        "Wait for it to end, or cancel it first.",
        False,
    ),
    E(
        "QUEUE_TASK_INVALID_STATE",
        "The task's status does not allow this action",
        "Check the task's status: pause takes queued or running tasks, resume paused ones, "
        "retry failed or timed-out ones, cancel any that has not ended.",
        False,
    ),
    E(
        "AUTHENTICATION_REQUIRED",
        "The API request is not authenticated",
        "Send a token (Authorization: Token <key>, made with manage.py drf_create_token) "
        "or log in to the admin first.",
        False,
    ),
    E(
        "ACCESS_DENIED",
        "The user may not do this",
        "Give the user the permission the message names (Django's model permissions, as "
        "in the admin), or use another account.",
        False,
    ),
    E(
        "NO_HOST_AVAILABLE",
        "No active executor host can take the job",
        "Create or resume an executor host, or raise max_concurrent_jobs.",
        True,
    ),
    E(
        "HOST_UNAVAILABLE",
        "The job's host did not answer (its engine is down or restarting)",
        "Nothing to do if the engine is restarting: the host is marked unhealthy, "
        "checked again with backoff, and the job waits for it without spending a retry. "
        "If it lasts, check that the engine runs and that the host's connection string "
        "is right.",
        True,
    ),
    E(
        "CONFIGURATION_ERROR",
        "The job's host or the CONTAINER_MANAGER settings are configured wrongly",
        "Fix what last_error names (the host's executor_type or executor_config, or the "
        "setting), then retry the job; it failed at once, since no attempt can succeed.",
        False,
    ),
    E(
        "WORKER_LOST",
        "The worker holding the job was lost (killed, stopped or cut off) and no "
        "container of its attempt runs",
        "Nothing to do: the job was put back in the queue without spending a retry, "
        "once its attempt was known not to run; last_error says what became of it.",
        True,
    ),
    E(
        "UPGRADE_INTERRUPTED",
        "The job was launching or running under 1.0.x when the database was upgraded",
        "2.x does not follow containers that 1.0.x started, and does not run the job again "
        "by itself: check whether it ran (container_id names its container), then retry it "
        "if it must run again.",
        False,
    ),
    E(
        "DEPENDENCY_FAILED",
        "A job this one waits for failed, timed out or was cancelled, so this one cannot run",
        "Look at the job last_error names; fix it and run it again, then run this job "
        "again (Run again in the admin) with the new job among its dependencies.",
        False,
    ),
    E(
        "LOGS_UNAVAILABLE",
        "The container ended but its output could not be read",
        "The container was removed before its output was stored (by hand, or by "
        "another tool); the exit code is kept. Keep containers until their job ends.",
        False,
    ),
    # Container outcome.
    E(
        "CONTAINER_EXIT_NONZERO",
        "The container exited with a non-zero code",
        "Read the job's stderr; the command itself failed.",
        False,
    ),
    E(
        "CONTAINER_OOM_KILLED",
        "The container was killed for using more memory than its limit",
        "Raise memory_limit_mb or make the job use less memory.",
        False,
    ),
    # Ollama errors (model-serving jobs).
    E(
        "OLLAMA_MODEL_NOT_FOUND",
        "Ollama model not found",
        "Pull the model on the Ollama server first.",
        False,
    ),
    E(
        "OLLAMA_SERVICE_UNAVAILABLE",
        "Ollama service unavailable",
        "Start the Ollama service or check its address.",
        True,
    ),
    E(
        "OLLAMA_INFERENCE_FAILED",
        "Ollama inference failed",
        "Read the Ollama server's log; check the prompt and model.",
        None,
    ),
    # Generic errors.
    E(
        "UNKNOWN_ERROR",
        "Unknown error occurred",
        "Read last_error; retried a few times with conservative limits.",
        None,
    ),
    E(
        "INTERNAL_ERROR",
        "Internal system error",
        "Read the worker's log for the traceback and report it.",
        None,
    ),
)
del E
#: The codes this package defines (register_error_code may not change them).
_BUILT_IN = frozenset(CATALOGUE)


@dataclass(frozen=True)
class Classification:
    """What :func:`classify` concluded.

    Attributes:
        category: ``'transient'`` (retry), ``'permanent'`` (fail now) or ``'unknown'``.
        code: A key of :data:`CATALOGUE`.
        message: The error message to store in ``last_error``.
    """

    category: Category
    code: str
    message: str

    @property
    def is_transient(self) -> bool:
        """True for transient and unknown errors: both may be retried."""
        return self.category != PERMANENT


#: (pattern, code, category), tried in order on the lower-cased message.
MESSAGE_PATTERNS: list[tuple[re.Pattern[str], str, Category]] = [
    (re.compile(p), code, cat)
    for p, code, cat in [
        (
            r"no such image|image not found|manifest unknown|manifest for .* not found"
            r"|repository does not exist|pull access denied|name unknown|repository name must",
            "DOCKER_IMAGE_NOT_FOUND",
            PERMANENT,
        ),
        (
            r"unauthorized|authentication required|authentication failed|incorrect username"
            r"|no basic auth credentials|requested access to the resource is denied",
            "DOCKER_AUTHENTICATION_FAILED",
            PERMANENT,
        ),
        (r"oomkilled|oom.killed", "CONTAINER_OOM_KILLED", PERMANENT),
        (
            r"executable file not found|command not found|no such file or directory",
            "COMMAND_NOT_FOUND",
            PERMANENT,
        ),
        (r"permission denied|operation not permitted", "PERMISSION_DENIED", PERMANENT),
        (r"unable to find user", "VALIDATION_INVALID_PARAMS", PERMANENT),
        (
            r"invalid reference format|invalid argument|invalid config|invalid mount"
            r"|not a directory",
            "VALIDATION_INVALID_FORMAT",
            PERMANENT,
        ),
        (r"no space left on device|disk quota exceeded", "SYSTEM_DISK_SPACE", TRANSIENT),
        (r"out of memory|cannot allocate memory", "SYSTEM_MEMORY_LIMIT", TRANSIENT),
        (r"too many requests|toomanyrequests|rate limit", "DOCKER_REGISTRY_ERROR", TRANSIENT),
        (
            r"cannot connect to the docker daemon|is the docker daemon running"
            r"|connection refused|connection reset|connection aborted|broken pipe"
            r"|network is unreachable|name or service not known"
            r"|temporary failure in name resolution",
            "DOCKER_NETWORK_ERROR",
            TRANSIENT,
        ),
        (r"timed out|timeout", "NETWORK_TIMEOUT", TRANSIENT),
        (
            r"too many open files|resource temporarily unavailable|service unavailable"
            r"|overloaded|try again later",
            "SYSTEM_RESOURCE_LIMIT",
            TRANSIENT,
        ),
    ]
]

Classifier = Callable[[BaseException], "Classification | None"]
_HOOKS: list[Classifier] = []


def register_classifier(hook: Classifier) -> Classifier:
    """Add a function consulted before the built-in rules.

    An executor can register one to classify its SDK's exception types
    exactly. The hook returns None for exceptions it does not know.

    Args:
        hook: ``hook(exc) -> Classification | None``.

    Returns:
        The hook, so this works as a decorator.
    """
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def unregister_classifier(hook: Classifier) -> None:
    """Remove a hook added by :func:`register_classifier` (absent hooks are ignored)."""
    if hook in _HOOKS:
        _HOOKS.remove(hook)


def register_error_code(
    code: str, description: str, suggestion: str, transient: bool | None = None
) -> ErrorCode:
    """Add a code of your project's own to the catalogue, for ``::error`` lines and classifiers.

    A container that prints ``::error MYAPP_INPUT_MISSING no rows for 2026-12-06``
    and fails gets that code; registered, it is shown with this description
    and suggestion in the admin, ``queue_task_status`` and the statistics.

    Args:
        code: Upper-case letters, digits and ``_``, starting with a letter, at most 64.
        description: What went wrong, for people.
        suggestion: What to do about it.
        transient: Whether trying again may succeed (None: nobody can tell).

    Returns:
        The entry.

    Raises:
        ValueError: The code is malformed, or is a built-in code with other text.
    """
    if not isinstance(code, str) or not ERROR_CODE_PATTERN.match(code):
        raise ValueError(
            f"An error code is upper-case letters, digits and _, starting with a letter "
            f"(2-64 characters), not {code!r}"
        )
    entry = ErrorCode(code, description, suggestion, transient)
    existing = CATALOGUE.get(code)
    if existing is not None and existing != entry and code in _BUILT_IN:
        raise ValueError(f"{code} is a built-in error code; choose a name of your own")
    CATALOGUE[code] = entry
    return entry


def unregister_error_code(code: str) -> None:
    """Remove a code added by :func:`register_error_code` (absent codes are ignored).

    Raises:
        ValueError: ``code`` is a built-in code.
    """
    if code in _BUILT_IN:
        raise ValueError(f"{code} is a built-in error code and cannot be removed")
    CATALOGUE.pop(code, None)


def describe(code: str) -> ErrorCode:
    """Return the catalogue entry of a code; unknown codes get ``UNKNOWN_ERROR``'s text.

    Args:
        code: An error code, as stored in ``ContainerJob.error_code``.

    Returns:
        The :class:`ErrorCode`.
    """
    return CATALOGUE.get(code) or CATALOGUE["UNKNOWN_ERROR"]


def category_of(code: str) -> Category:
    """Return the category that a catalogue code implies.

    Args:
        code: An error code.

    Returns:
        ``'transient'``, ``'permanent'``, or ``'unknown'`` for codes without a
        transient flag and for codes not in the catalogue.
    """
    entry = CATALOGUE.get(code)
    if entry is None or entry.transient is None:
        return UNKNOWN
    return TRANSIENT if entry.transient else PERMANENT


def classify_message(message: str) -> Classification:
    """Classify an error from its text alone (the last resort).

    Args:
        message: The error message.

    Returns:
        The first matching pattern's classification, else ``unknown``/``UNKNOWN_ERROR``.
    """
    lowered = message.lower()
    for pattern, code, category in MESSAGE_PATTERNS:
        if pattern.search(lowered):
            return Classification(category, code, message)
    return Classification(UNKNOWN, "UNKNOWN_ERROR", message)


def classify_result(
    error: str, error_code: str = "", transient: bool | None = None
) -> Classification:
    """Classify a failed launch result (the answer of ``Containers.launch``).

    Args:
        error: The result's message.
        error_code: The result's code, if the executor gave one.
        transient: The executor's verdict, if it gave one.

    Returns:
        The executor's verdict when it gave one, else the code's catalogue
        flag, else the message patterns.
    """
    if transient is not None:
        return Classification(
            TRANSIENT if transient else PERMANENT, error_code or ("UNKNOWN_ERROR"), error
        )
    if error_code and category_of(error_code) != UNKNOWN:
        return Classification(category_of(error_code), error_code, error)
    found = classify_message(error)
    if error_code and found.category == UNKNOWN:
        return Classification(UNKNOWN, error_code, error)
    return found


def classify(exc: BaseException) -> Classification:
    """Classify an exception: types first, message patterns second.

    Args:
        exc: The exception raised while launching (or running) a job.

    Returns:
        Its :class:`Classification`.
    """
    message = str(exc) or type(exc).__name__
    for hook in list(_HOOKS):
        found = hook(exc)
        if found is not None:
            return found
    rules = (
        _by_executor_error,
        _by_configuration_error,
        _by_docker_type,
        _by_requests_type,
        _by_builtin_type,
    )
    for rule in rules:
        found = rule(exc, message)
        if found is not None:
            return found
    return classify_message(message)


def _class_names(exc: BaseException, module_prefix: str) -> list[str]:
    """Names of the exception's classes (MRO) that live under ``module_prefix``."""
    return [
        cls.__name__
        for cls in type(exc).__mro__
        if cls.__module__ == module_prefix or cls.__module__.startswith(module_prefix + ".")
    ]


def _by_executor_error(exc: BaseException, message: str) -> Classification | None:
    if not isinstance(exc, ExecutorError):
        return None
    if exc.transient is not None:
        return Classification(TRANSIENT if exc.transient else PERMANENT, exc.code, message)
    category = category_of(exc.code)
    if category == UNKNOWN:
        found = classify_message(message)
        if found.category != UNKNOWN:
            return found
    return Classification(category, exc.code, message)


def _by_configuration_error(exc: BaseException, message: str) -> Classification | None:
    # Invalid configuration (an unknown executor_type, a bad executor_config)
    # fails every attempt alike: permanent, never retried.
    if isinstance(exc, ConfigurationError):
        return Classification(PERMANENT, "CONFIGURATION_ERROR", message)
    return None


def _docker_api_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _by_docker_type(exc: BaseException, message: str) -> Classification | None:
    names = _class_names(exc, "docker")
    if not names:
        return None
    explained = f"{message} {getattr(exc, 'explanation', '') or ''}"
    if "ImageNotFound" in names:
        return Classification(PERMANENT, "DOCKER_IMAGE_NOT_FOUND", message)
    if "ContainerError" in names:
        return Classification(PERMANENT, "CONTAINER_EXIT_NONZERO", message)
    if "BuildError" in names:
        return Classification(PERMANENT, "DOCKER_BUILD_FAILED", message)
    if "TLSParameterError" in names or "InvalidArgument" in names:
        return Classification(PERMANENT, "VALIDATION_INVALID_PARAMS", message)
    if "APIError" in names:
        detail = str(getattr(exc, "explanation", "") or "")
        return classify_engine_response(_docker_api_status(exc), detail, message)
    # DockerException without a response: the client could not reach the daemon.
    found = classify_message(explained)
    if found.category != UNKNOWN:
        return Classification(found.category, found.code, message)
    return Classification(TRANSIENT, "DOCKER_NETWORK_ERROR", message)


def classify_engine_response(status: int | None, detail: str, message: str) -> Classification:
    """Classify an engine's error answer: its HTTP status first, its text second.

    The one mapping of Docker's answers to catalogue codes: the Docker
    executor builds its ``ExecutorError`` leaves from it, and :func:`classify`
    uses it for SDK errors that reach it untranslated.

    Args:
        status: The HTTP status of the answer; None when there was none.
        detail: The engine's explanation (searched for known causes).
        message: The message to keep in the classification.

    Returns:
        The :class:`Classification`.
    """
    explained = f"{message} {detail}"
    by_text = classify_message(explained)
    if status == 404:
        if by_text.code == "COMMAND_NOT_FOUND":
            return Classification(PERMANENT, "COMMAND_NOT_FOUND", message)
        return Classification(PERMANENT, "DOCKER_IMAGE_NOT_FOUND", message)
    if status == 401:
        return Classification(PERMANENT, "DOCKER_AUTHENTICATION_FAILED", message)
    if status == 403:
        return Classification(PERMANENT, "DOCKER_PERMISSION_DENIED", message)
    if status == 409:
        return Classification(PERMANENT, "DOCKER_CONFLICT", message)
    if status == 429:
        return Classification(TRANSIENT, "DOCKER_REGISTRY_ERROR", message)
    if status is not None and 400 <= status < 500:
        code = by_text.code if by_text.category == PERMANENT else "VALIDATION_INVALID_PARAMS"
        return Classification(PERMANENT, code, message)
    # 5xx: the daemon failed; its text may still say the cause is permanent
    # ("executable file not found" comes back as a 500 from start()).
    if by_text.category != UNKNOWN:
        return Classification(by_text.category, by_text.code, message)
    return Classification(TRANSIENT, "DOCKER_DAEMON_ERROR", message)


#: What an image task calls its own failure, by operation.
IMAGE_TASK_FAILURES: dict[str, str] = {
    "pull": "DOCKER_PULL_FAILED",
    "build": "DOCKER_BUILD_FAILED",
    "push": "DOCKER_PUSH_FAILED",
}
#: Error codes of the registry API (the distribution specification) and what
#: they mean for an image task; None stands for the operation's own failure
#: code (:data:`IMAGE_TASK_FAILURES`). For a push, ``MANIFEST_UNKNOWN`` and
#: ``NAME_UNKNOWN`` are the registry refusing what it was sent, not a missing image.
REGISTRY_ERROR_CODES: dict[str, tuple[str | None, Category]] = {
    "UNAUTHORIZED": ("DOCKER_AUTHENTICATION_FAILED", PERMANENT),
    "DENIED": ("DOCKER_AUTHENTICATION_FAILED", PERMANENT),
    "MANIFEST_UNKNOWN": ("DOCKER_IMAGE_NOT_FOUND", PERMANENT),
    "NAME_UNKNOWN": ("DOCKER_IMAGE_NOT_FOUND", PERMANENT),
    "TOOMANYREQUESTS": ("DOCKER_REGISTRY_ERROR", TRANSIENT),
    "UNAVAILABLE": ("DOCKER_REGISTRY_ERROR", TRANSIENT),
    "NAME_INVALID": (None, PERMANENT),
    "TAG_INVALID": (None, PERMANENT),
    "MANIFEST_INVALID": (None, PERMANENT),
    "MANIFEST_UNVERIFIED": (None, PERMANENT),
    "MANIFEST_BLOB_UNKNOWN": (None, PERMANENT),
    "DIGEST_INVALID": (None, PERMANENT),
    "SIZE_INVALID": (None, PERMANENT),
    "UNSUPPORTED": (None, PERMANENT),
    "BLOB_UNKNOWN": (None, TRANSIENT),
    "BLOB_UPLOAD_INVALID": (None, TRANSIENT),
    "BLOB_UPLOAD_UNKNOWN": (None, TRANSIENT),
    "RANGE_INVALID": (None, TRANSIENT),
}
# The engine passes a registry's error on as the code in lower case with
# spaces, a colon and the registry's message ("manifest unknown: manifest
# unknown"), after its own context ("manifest for x:1 not found: ").
_REGISTRY_CODE_TEXT = re.compile(
    r"(?:^|: |\n)("
    + "|".join(re.escape(code.lower().replace("_", " ")) for code in REGISTRY_ERROR_CODES)
    + r"): "
)
#: The engine's own words when it has no credentials for a registry that asks for them.
NO_CREDENTIALS_TEXT = "no basic auth credentials"
# Go's network errors, as the engine quotes them when the registry does not
# answer ("dial tcp 127.0.0.1:5999: connect: connection refused").
_REGISTRY_UNREACHABLE = re.compile(
    r"\bdial (?:tcp|udp)\b|\bi/o timeout\b|tls handshake timeout|connection reset by peer"
    r"|no such host|no route to host|network is unreachable"
)


def registry_error_code(detail: str) -> str | None:
    """Find the registry's error code (``MANIFEST_UNKNOWN``, ...) in an engine's message.

    Args:
        detail: The engine's message: an HTTP answer's explanation or a stream's
            ``errorDetail.message``.

    Returns:
        The first code of :data:`REGISTRY_ERROR_CODES` the message carries, or None.
    """
    found = _REGISTRY_CODE_TEXT.search(detail)
    return found.group(1).upper().replace(" ", "_") if found else None


def classify_image_response(
    operation: str,
    status: int | None,
    detail: str,
    message: str,
    exit_code: int | None = None,
) -> Classification:
    """Classify a failed pull, build or push: structure first, the engine's words last.

    In this order: a build step's exit code (``errorDetail.code``); the HTTP
    status 401 or 429; the registry's error code passed on in the message;
    the engine's "no basic auth credentials"; a registry that does not answer;
    then the status (404: not found; other 4xx as for any engine answer, but a
    build's are its Dockerfile's fault); full disk or memory; and last the
    operation's own failure: a 5xx is a registry error, a stream's error a
    failed build (permanent) or a failed pull or push (transient). A build's
    5xx (its context or Dockerfile cannot be read) is a failed build too.

    Args:
        operation: ``pull``, ``build`` or ``push``.
        status: The HTTP status of the engine's answer; None for an error
            that came in the stream.
        detail: The engine's message.
        message: The message to keep in the classification.
        exit_code: A build step's exit code (``errorDetail.code``), if any.

    Returns:
        The :class:`Classification`.
    """
    failure = IMAGE_TASK_FAILURES[operation]
    if exit_code is not None:
        return Classification(PERMANENT, "DOCKER_BUILD_FAILED", message)
    if status == 401:
        return Classification(PERMANENT, "DOCKER_AUTHENTICATION_FAILED", message)
    if status == 429:
        return Classification(TRANSIENT, "DOCKER_REGISTRY_ERROR", message)
    registry_code = registry_error_code(detail)
    if registry_code is not None:
        code, category = REGISTRY_ERROR_CODES[registry_code]
        if operation == "push" and code == "DOCKER_IMAGE_NOT_FOUND":
            code = None
        return Classification(category, code or failure, message)
    lowered = detail.lower()
    if NO_CREDENTIALS_TEXT in lowered:
        return Classification(PERMANENT, "DOCKER_AUTHENTICATION_FAILED", message)
    if _REGISTRY_UNREACHABLE.search(lowered):
        return Classification(TRANSIENT, "DOCKER_REGISTRY_ERROR", message)
    if status == 404 and operation != "build":
        return Classification(PERMANENT, "DOCKER_IMAGE_NOT_FOUND", message)
    if status is not None and 400 <= status < 500:
        if operation == "build":
            return Classification(PERMANENT, failure, message)
        return classify_engine_response(status, detail, message)
    by_text = classify_message(detail)
    if by_text.code in ("SYSTEM_DISK_SPACE", "SYSTEM_MEMORY_LIMIT"):
        return Classification(by_text.category, by_text.code, message)
    if operation == "build":
        return Classification(PERMANENT, failure, message)
    if status is not None:
        return Classification(TRANSIENT, "DOCKER_REGISTRY_ERROR", message)
    return Classification(TRANSIENT, failure, message)


def _by_requests_type(exc: BaseException, message: str) -> Classification | None:
    names = _class_names(exc, "requests") + _class_names(exc, "urllib3")
    if not names:
        return None
    if any("Timeout" in name for name in names):
        return Classification(TRANSIENT, "NETWORK_TIMEOUT", message)
    if any("Connection" in name or "Protocol" in name for name in names):
        return Classification(TRANSIENT, "DOCKER_NETWORK_ERROR", message)
    return None


_ERRNO_CODES: dict[int, tuple[str, Category]] = {
    errno.ENOSPC: ("SYSTEM_DISK_SPACE", TRANSIENT),
    errno.ENOMEM: ("SYSTEM_MEMORY_LIMIT", TRANSIENT),
    errno.EMFILE: ("SYSTEM_RESOURCE_LIMIT", TRANSIENT),
    errno.ENFILE: ("SYSTEM_RESOURCE_LIMIT", TRANSIENT),
    errno.EAGAIN: ("SYSTEM_RESOURCE_LIMIT", TRANSIENT),
    errno.ENOENT: ("COMMAND_NOT_FOUND", PERMANENT),
    errno.EACCES: ("PERMISSION_DENIED", PERMANENT),
    errno.EPERM: ("PERMISSION_DENIED", PERMANENT),
    errno.ENOEXEC: ("COMMAND_NOT_FOUND", PERMANENT),
}


def _by_builtin_type(exc: BaseException, message: str) -> Classification | None:
    from django.core.exceptions import ValidationError

    if isinstance(exc, TimeoutError):
        return Classification(TRANSIENT, "NETWORK_TIMEOUT", message)
    if isinstance(exc, ConnectionError):
        return Classification(TRANSIENT, "CONNECTION_ERROR", message)
    if isinstance(exc, MemoryError):
        return Classification(TRANSIENT, "SYSTEM_MEMORY_LIMIT", message)
    if isinstance(exc, ValidationError):
        return Classification(PERMANENT, "VALIDATION_INVALID_PARAMS", message)
    if isinstance(exc, OSError):
        if exc.errno in _ERRNO_CODES:
            code, category = _ERRNO_CODES[exc.errno]
            return Classification(category, code, message)
        found = classify_message(message)
        if found.category != UNKNOWN:
            return found
        return Classification(TRANSIENT, "CONNECTION_ERROR", message)
    return None
