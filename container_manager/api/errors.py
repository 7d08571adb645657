"""Every error of the API as JSON, with a code of the catalogue (docs/api.md, "Errors")."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response

from container_manager.classification import describe
from container_manager.operations import OperationError

#: HTTP status of each kind of refused operation.
STATUS_OF_KIND = {
    "not_found": status.HTTP_404_NOT_FOUND,
    "invalid": status.HTTP_400_BAD_REQUEST,
    "conflict": status.HTTP_409_CONFLICT,
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The JSON of an error: ``success`` false, the message, the code and its description."""
    entry = describe(code)
    body: dict[str, Any] = {
        "success": False,
        "error": message,
        "error_code": code,
        "error_info": {"description": entry.description, "suggestion": entry.suggestion},
    }
    if details is not None:
        body["error_details"] = details
    return body


def operation_error(exc: OperationError) -> Response:
    return Response(exc.answer(), status=STATUS_OF_KIND[exc.kind])


def _messages(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_messages(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_messages(item) for item in detail)
    return str(detail)


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler for the API's views: each error answered in the same shape."""
    if isinstance(exc, OperationError):
        return operation_error(exc)
    if isinstance(exc, DjangoValidationError):
        details = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response(
            error_body("VALIDATION_INVALID_PARAMS", _messages(details), details),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        code, http = "AUTHENTICATION_REQUIRED", status.HTTP_401_UNAUTHORIZED
    elif isinstance(exc, exceptions.PermissionDenied):
        code, http = "ACCESS_DENIED", status.HTTP_403_FORBIDDEN
    elif isinstance(exc, exceptions.NotFound):
        code, http = "QUEUE_TASK_NOT_FOUND", status.HTTP_404_NOT_FOUND
    elif isinstance(exc, exceptions.ParseError):
        code, http = "VALIDATION_INVALID_FORMAT", status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.APIException):
        code, http = "VALIDATION_INVALID_PARAMS", exc.status_code
    else:
        return None  # a bug: Django's 500 page, and the traceback in the log
    detail = getattr(exc, "detail", str(exc))
    response = Response(
        error_body(code, _messages(detail), detail if isinstance(detail, dict | list) else None),
        status=http,
    )
    if http == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Token realm="api"'
    return response
