"""Error classification: real exception types first, message patterns second."""

from __future__ import annotations

import errno

import docker.errors
import pytest
import requests
from django.core.exceptions import ValidationError

from container_manager.classification import (
    CATALOGUE,
    MESSAGE_PATTERNS,
    Classification,
    category_of,
    classify,
    classify_message,
    classify_result,
    describe,
    register_classifier,
    unregister_classifier,
)
from container_manager.exceptions import (
    ExecutorError,
    ExecutorUnavailableError,
    ImageNotFoundError,
    ImagePullError,
    InvalidLaunchSpecError,
)

SEED_003_CODES = [
    "DOCKER_IMAGE_NOT_FOUND",
    "DOCKER_AUTHENTICATION_FAILED",
    "DOCKER_PERMISSION_DENIED",
    "DOCKER_NETWORK_ERROR",
    "DOCKER_REGISTRY_ERROR",
    "DOCKER_BUILD_FAILED",
    "DOCKER_PUSH_FAILED",
    "DOCKER_PULL_FAILED",
    "SYSTEM_TIMEOUT",
    "SYSTEM_RESOURCE_LIMIT",
    "SYSTEM_DISK_SPACE",
    "SYSTEM_MEMORY_LIMIT",
    "VALIDATION_INVALID_PARAMS",
    "VALIDATION_MISSING_REQUIRED",
    "VALIDATION_INVALID_FORMAT",
    "QUEUE_FULL",
    "QUEUE_TASK_NOT_FOUND",
    "QUEUE_TASK_ALREADY_RUNNING",
    "OLLAMA_MODEL_NOT_FOUND",
    "OLLAMA_SERVICE_UNAVAILABLE",
    "OLLAMA_INFERENCE_FAILED",
    "UNKNOWN_ERROR",
    "INTERNAL_ERROR",
]


def api_error(status, message="server said no", explanation=""):
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(message, response=response, explanation=explanation)


def test_catalogue_has_every_seed_code_with_a_description_and_a_suggestion():
    assert set(SEED_003_CODES) <= set(CATALOGUE)
    for code, entry in CATALOGUE.items():
        assert entry.code == code
        assert entry.description
        assert entry.suggestion
        assert entry.transient in (True, False, None)
    assert CATALOGUE["DOCKER_IMAGE_NOT_FOUND"].description == "Docker image not found locally"


def test_every_code_the_rules_produce_is_in_the_catalogue():
    codes = {code for _, code, _ in MESSAGE_PATTERNS}
    codes |= {ImageNotFoundError.code, ImagePullError.code, ExecutorUnavailableError.code}
    codes |= {InvalidLaunchSpecError.code, "CONTAINER_EXIT_NONZERO", "CONTAINER_OOM_KILLED"}
    assert codes <= set(CATALOGUE)


def test_describe_falls_back_to_unknown_error_for_unknown_codes():
    assert describe("NOPE") == CATALOGUE["UNKNOWN_ERROR"]
    assert category_of("NOPE") == "unknown"
    assert category_of("SYSTEM_DISK_SPACE") == "transient"
    assert category_of("DOCKER_BUILD_FAILED") == "permanent"


@pytest.mark.parametrize(
    ("exc", "category", "code"),
    [
        (ImageNotFoundError("gone"), "permanent", "DOCKER_IMAGE_NOT_FOUND"),
        (ImagePullError("slow registry"), "transient", "DOCKER_PULL_FAILED"),
        (ExecutorUnavailableError("daemon down"), "transient", "DOCKER_NETWORK_ERROR"),
        (InvalidLaunchSpecError("bad cpu"), "permanent", "VALIDATION_INVALID_PARAMS"),
        (ExecutorError("odd", code="DOCKER_PUSH_FAILED"), "transient", "DOCKER_PUSH_FAILED"),
        (ExecutorError("odd", code="X", transient=False), "permanent", "X"),
        (ExecutorError("weird thing"), "unknown", "INTERNAL_ERROR"),
    ],
)
def test_executor_errors_are_classified_by_their_code_and_transient_flag(exc, category, code):
    assert classify(exc) == Classification(category, code, str(exc))


@pytest.mark.parametrize(
    ("exc", "category", "code"),
    [
        (docker.errors.ImageNotFound("No such image: x"), "permanent", "DOCKER_IMAGE_NOT_FOUND"),
        (api_error(404, "Not Found", "No such image: x"), "permanent", "DOCKER_IMAGE_NOT_FOUND"),
        (api_error(401), "permanent", "DOCKER_AUTHENTICATION_FAILED"),
        (api_error(403), "permanent", "DOCKER_PERMISSION_DENIED"),
        (api_error(409, "Conflict"), "permanent", "DOCKER_CONFLICT"),
        (api_error(429), "transient", "DOCKER_REGISTRY_ERROR"),
        (
            api_error(400, "Bad Request", "invalid reference format"),
            "permanent",
            "VALIDATION_INVALID_FORMAT",
        ),
        (api_error(500, "Server Error"), "transient", "DOCKER_DAEMON_ERROR"),
        (
            api_error(500, "Server Error", 'exec: "nope": executable file not found in $PATH'),
            "permanent",
            "COMMAND_NOT_FOUND",
        ),
        (
            docker.errors.DockerException("Error while fetching server API version"),
            "transient",
            "DOCKER_NETWORK_ERROR",
        ),
        (
            docker.errors.BuildError("step 3 failed", build_log=[]),
            "permanent",
            "DOCKER_BUILD_FAILED",
        ),
        (docker.errors.TLSParameterError("bad cert"), "permanent", "VALIDATION_INVALID_PARAMS"),
    ],
)
def test_docker_sdk_errors_are_classified_by_type_and_status(exc, category, code):
    found = classify(exc)
    assert (found.category, found.code) == (category, code)


@pytest.mark.parametrize(
    ("exc", "category", "code"),
    [
        (requests.exceptions.ConnectionError("refused"), "transient", "DOCKER_NETWORK_ERROR"),
        (requests.exceptions.ReadTimeout("read timed out"), "transient", "NETWORK_TIMEOUT"),
        (TimeoutError("slow"), "transient", "NETWORK_TIMEOUT"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "transient", "CONNECTION_ERROR"),
        (OSError(errno.ENOSPC, "No space left on device"), "transient", "SYSTEM_DISK_SPACE"),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), "transient", "SYSTEM_MEMORY_LIMIT"),
        (
            FileNotFoundError(errno.ENOENT, "No such file", "/bin/nope"),
            "permanent",
            "COMMAND_NOT_FOUND",
        ),
        (PermissionError(errno.EACCES, "Permission denied"), "permanent", "PERMISSION_DENIED"),
        (MemoryError(), "transient", "SYSTEM_MEMORY_LIMIT"),
        (ValidationError("bad"), "permanent", "VALIDATION_INVALID_PARAMS"),
    ],
)
def test_requests_and_builtin_errors_are_classified_by_type(exc, category, code):
    found = classify(exc)
    assert (found.category, found.code) == (category, code)


def test_types_win_over_messages():
    # The message says "image not found", the type says the daemon is unreachable.
    found = classify(ExecutorUnavailableError("image not found? daemon did not answer"))
    assert (found.category, found.code) == ("transient", "DOCKER_NETWORK_ERROR")


@pytest.mark.parametrize(
    ("message", "category", "code"),
    [
        (
            "pull access denied for ghost, repository does not exist",
            "permanent",
            "DOCKER_IMAGE_NOT_FOUND",
        ),
        ("unauthorized: authentication required", "permanent", "DOCKER_AUTHENTICATION_FAILED"),
        ("write /data: no space left on device", "transient", "SYSTEM_DISK_SPACE"),
        (
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock",
            "transient",
            "DOCKER_NETWORK_ERROR",
        ),
        ("toomanyrequests: rate limit reached", "transient", "DOCKER_REGISTRY_ERROR"),
        ("operation timed out", "transient", "NETWORK_TIMEOUT"),
        ("the moon is in the wrong phase", "unknown", "UNKNOWN_ERROR"),
    ],
)
def test_messages_are_the_last_resort(message, category, code):
    assert classify(RuntimeError(message)) == Classification(category, code, message)
    assert classify_message(message).code == code


def test_unknown_errors_are_unknown_and_still_retryable():
    found = classify(ValueError("something nobody expected"))
    assert found.category == "unknown"
    assert found.is_transient is True
    assert classify(ImageNotFoundError("x")).is_transient is False


def test_classify_result_prefers_the_executor_verdict_then_the_code_then_the_message():
    assert classify_result("x", "DOCKER_BUILD_FAILED", True).category == "transient"
    assert classify_result("x", "DOCKER_BUILD_FAILED").category == "permanent"
    assert classify_result("no space left on device").code == "SYSTEM_DISK_SPACE"
    assert classify_result("odd", "MY_CODE") == Classification("unknown", "MY_CODE", "odd")


def test_registered_classifier_is_consulted_first():
    class VendorError(Exception):
        pass

    def hook(exc):
        if isinstance(exc, VendorError):
            return Classification("permanent", "QUEUE_FULL", str(exc))
        return None

    register_classifier(hook)
    try:
        assert classify(VendorError("timed out")).code == "QUEUE_FULL"
        assert classify(TimeoutError("timed out")).code == "NETWORK_TIMEOUT"
    finally:
        unregister_classifier(hook)
    assert classify(VendorError("timed out")).code == "NETWORK_TIMEOUT"
