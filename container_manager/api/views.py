"""The API's views: thin calls of :mod:`container_manager.operations` and the queue."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from container_manager import operations
from container_manager.api.errors import error_body, handle_exception
from container_manager.api.permissions import ModelPermission, permission_for
from container_manager.models import ContainerJob
from container_manager.models.validation import json_problem, text_problem
from container_manager.operations import OperationError
from container_manager.states import JobKind, JobStatus
from container_manager.stats import get_statistics

#: Most jobs one page of ``GET jobs/`` lists.
MAX_PAGE = 500
DEFAULT_PAGE = 50

ANSWER = OpenApiTypes.OBJECT
ERRORS = {400: ANSWER, 401: ANSWER, 403: ANSWER, 404: ANSWER, 409: ANSWER}


class ApiView(APIView):
    """Session (with CSRF on changes) or token authentication; model permissions; JSON errors."""

    authentication_classes = [SessionAuthentication, TokenAuthentication]
    permission_classes = [ModelPermission]
    resource = "job"

    def get_exception_handler(self) -> Any:
        return handle_exception

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Authenticate and check permissions, then refuse text no database column can hold."""
        super().initial(request, *args, **kwargs)
        for name, value in [*kwargs.items(), *request.query_params.lists()]:
            for text in [name, *(value if isinstance(value, list) else [value])]:
                problem = text_problem(str(text))
                if problem:
                    raise OperationError(
                        "VALIDATION_INVALID_FORMAT", f"{name!r}: {problem}", "invalid"
                    )


def _checked_body(request: Request) -> Any:
    """The request's body, refused when it holds text no database column can store."""
    body = request.data
    problem = json_problem(dict(body.lists()) if hasattr(body, "lists") else body)
    if problem:
        raise OperationError("VALIDATION_INVALID_FORMAT", f"The body: {problem}", "invalid")
    return body


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise OperationError(
            "VALIDATION_INVALID_PARAMS", f"{name} must be true or false, not {value!r}", "invalid"
        )
    return value in ("true", "1", "yes")


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise OperationError(
            "VALIDATION_INVALID_PARAMS",
            f"{name} must be a whole number from {low} to {high}, not {raw!r}",
            "invalid",
        )
    return int(raw)


OPERATION_REQUEST = inline_serializer(
    "OperationRequest",
    {
        "action": serializers.ChoiceField(choices=list(operations.OPERATIONS)),
        "params": serializers.DictField(required=False),
    },
)


class OperationsView(ApiView):
    """``POST operations/``: a request body ``{"action": ..., "params": {...}}`` as written."""

    @extend_schema(
        operation_id="operations_run", request=OPERATION_REQUEST, responses={200: ANSWER, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        body = _checked_body(request)
        action = body.get("action") if isinstance(body, dict) else None
        params = body.get("params") if isinstance(body, dict) else None
        if action == "queue_manage":
            targets = params if isinstance(params, dict) else {}
            needed = [permission_for("job", True)]
            if targets.get("queue") is not None:
                needed = [permission_for("queue", True)]
            elif targets.get("host") is not None:
                needed = [permission_for("host", True)]
            for permission in needed:
                if not request.user.has_perm(permission):
                    raise PermissionDenied(f"You need the permission {permission!r} for this.")
        # A refusal raises OperationError; handle_exception answers it with its status.
        return Response(operations.dispatch(body))


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses fields it does not know, naming them."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = (
            set(self.initial_data) - set(self.fields)
            if isinstance(self.initial_data, dict)
            else set()
        )
        if unknown:
            raise serializers.ValidationError(
                f"Unknown fields: {', '.join(sorted(map(str, unknown)))}"
            )
        return attrs


class JobCreateSerializer(StrictSerializer):
    """What ``POST jobs/`` accepts: the job's fields, a host by name, and ``schedule_for``."""

    name = serializers.CharField(required=False, max_length=200, allow_blank=True)
    image = serializers.CharField(required=False, max_length=500, allow_blank=True)
    command = serializers.CharField(required=False, allow_blank=True)
    is_shell_command = serializers.BooleanField(required=False)
    queue = serializers.CharField(required=False, max_length=100)
    priority = serializers.IntegerField(required=False, min_value=0, max_value=100)
    host = serializers.CharField(required=False, allow_null=True)
    environment = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False
    )
    timeout_seconds = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    memory_limit_mb = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, allow_null=True
    )
    cpu_limit_cores = serializers.FloatField(
        required=False, min_value=0.01, max_value=1024, allow_null=True
    )
    max_retries = serializers.IntegerField(
        required=False, min_value=1, max_value=1000, allow_null=True
    )
    retry_strategy = serializers.CharField(required=False, max_length=50)
    schedule_for = serializers.DateTimeField(required=False, allow_null=True)
    unique_key = serializers.CharField(required=False, max_length=200, allow_blank=True)
    unique_for = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=10**9,
        help_text="With unique_key: seconds of the window the key is unique in.",
    )
    array_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=10_000,
        help_text="Make this many jobs of these fields, each with its CM_ARRAY_INDEX.",
    )
    kind = serializers.ChoiceField(choices=list(JobKind.values), required=False)
    image_options = serializers.DictField(required=False)
    context = serializers.CharField(
        required=False, help_text="A build's context: a tar archive, base64-encoded."
    )
    after = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        max_length=1000,
        help_text="Ids of jobs that must complete before this one starts.",
    )


class JobsView(ApiView):
    """``GET jobs/``: a page of jobs, newest first; ``POST jobs/``: create and queue one."""

    def resource_for(self, request: Request) -> str:
        return "new_job" if request.method == "POST" else "job"

    @extend_schema(
        operation_id="jobs_list",
        parameters=[
            OpenApiParameter("status", str, enum=list(JobStatus.values)),
            OpenApiParameter("queue", str),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses={200: ANSWER, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        jobs = ContainerJob.objects.select_related("host").defer("stdout", "stderr")
        status_ = request.query_params.get("status")
        if status_ is not None:
            if status_ not in JobStatus.values:
                raise OperationError(
                    "VALIDATION_INVALID_PARAMS",
                    f"status must be one of {', '.join(JobStatus.values)}, not {status_!r}",
                    "invalid",
                )
            jobs = jobs.filter(status=status_)
        queue = request.query_params.get("queue")
        if queue is not None:
            jobs = jobs.filter(queue=queue)
        limit = _int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        offset = _int(request, "offset", 0, 0, 10**9)
        page = list(jobs.order_by("-created_at", "-id")[offset : offset + limit + 1])
        results = [operations.task_info(job) for job in page[:limit]]
        return Response(
            {
                "success": True,
                "results": results,
                "next_offset": offset + limit if len(page) > limit else None,
            }
        )

    @extend_schema(
        operation_id="jobs_create", request=JobCreateSerializer, responses={201: ANSWER, **ERRORS}
    )
    def post(self, request: Request) -> Response:
        data, refused = _read_input(JobCreateSerializer, request)
        if refused is not None:
            return refused
        made = operations.create_task(data)
        body: dict[str, Any] = {"success": True}
        if isinstance(made, list):
            body["tasks"] = [operations.task_info(job, detailed=True) for job in made]
        else:
            body["task"] = operations.task_info(made, detailed=True)
        return Response(body, status=status.HTTP_201_CREATED)


def _read_input(
    serializer_class: type[serializers.Serializer], request: Request
) -> tuple[dict[str, Any], Response | None]:
    """The request's body, validated; or the 400 answer naming the first problem."""
    serializer = serializer_class(data=_checked_body(request))
    if serializer.is_valid():
        return dict(serializer.validated_data), None
    answer = Response(
        error_body("VALIDATION_INVALID_PARAMS", _first_error(serializer.errors), serializer.errors),
        status=status.HTTP_400_BAD_REQUEST,
    )
    return {}, answer


def _first_error(errors: Any) -> str:
    for field, messages in errors.items():
        text = messages[0] if isinstance(messages, list) and messages else messages
        return f"{field}: {text}"
    return "Invalid input"


class JobView(ApiView):
    """``GET jobs/<id>/``: one task (an id, or a 1.0.x UUID)."""

    @extend_schema(
        operation_id="jobs_retrieve",
        parameters=[
            OpenApiParameter("task_id", str, OpenApiParameter.PATH),
            OpenApiParameter("include_logs", bool),
            OpenApiParameter("detailed", bool),
        ],
        responses={200: ANSWER, **ERRORS},
    )
    def get(self, request: Request, task_id: str) -> Response:
        return Response(
            operations.queue_task_status(
                task_id,
                include_logs=_flag(request, "include_logs"),
                detailed=_flag(request, "detailed"),
            )
        )


class JobActionView(ApiView):
    """``POST jobs/<id>/<action>/``: pause, resume, retry or cancel."""

    @extend_schema(
        operation_id="jobs_manage",
        request=None,
        parameters=[
            OpenApiParameter("task_id", str, OpenApiParameter.PATH),
            OpenApiParameter(
                "action", str, OpenApiParameter.PATH, enum=list(operations.MANAGE_ACTIONS)
            ),
        ],
        responses={200: ANSWER, **ERRORS},
    )
    def post(self, request: Request, task_id: str, action: str) -> Response:
        return Response(operations.queue_manage(action, task_id))


class QueuesView(ApiView):
    """``GET queues/``: the named queues with their pause and limit."""

    resource = "queue"

    @extend_schema(operation_id="queues_list", responses={200: ANSWER, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response({"success": True, "results": operations.queues_info()})


def _pause_resume_view(target: str, path: str) -> type[ApiView]:
    """The view of ``POST <path>/<name>/<pause|resume>/`` for a named queue or a host."""

    class PauseResumeView(ApiView):
        resource = target

        @extend_schema(
            operation_id=f"{path}_manage",
            request=None,
            parameters=[
                OpenApiParameter("name", str, OpenApiParameter.PATH),
                OpenApiParameter("action", str, OpenApiParameter.PATH, enum=["pause", "resume"]),
            ],
            responses={200: ANSWER, **ERRORS},
        )
        def post(self, request: Request, name: str, action: str) -> Response:
            return Response(operations.queue_manage(action, **{target: name}))

    PauseResumeView.__name__ = PauseResumeView.__qualname__ = f"{target.title()}ActionView"
    PauseResumeView.__doc__ = f"``POST {path}/<name>/<pause|resume>/``."
    return PauseResumeView


QueueActionView = _pause_resume_view("queue", "queues")
HostActionView = _pause_resume_view("host", "hosts")


class ScheduleCreateSerializer(StrictSerializer):
    """What ``POST schedules/`` accepts: a schedule's fields, its host by name."""

    name = serializers.CharField(max_length=200)
    cron = serializers.CharField(max_length=200)
    timezone = serializers.CharField(required=False, max_length=64)
    job = serializers.DictField()
    host = serializers.CharField(required=False, max_length=200)
    catch_up = serializers.ChoiceField(choices=["skip", "once", "all"], required=False)
    max_catch_up = serializers.IntegerField(required=False, min_value=1, max_value=10_000)
    concurrency = serializers.ChoiceField(choices=["allow", "forbid", "replace"], required=False)


class SchedulesView(ApiView):
    """``GET schedules/``: every schedule; ``POST schedules/``: make one."""

    def resource_for(self, request: Request) -> str:
        return "new_schedule" if request.method == "POST" else "schedule"

    @extend_schema(operation_id="schedules_list", responses={200: ANSWER, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response({"success": True, "results": operations.schedules_info()})

    @extend_schema(
        operation_id="schedules_create",
        request=ScheduleCreateSerializer,
        responses={201: ANSWER, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data, refused = _read_input(ScheduleCreateSerializer, request)
        if refused is not None:
            return refused
        answer = operations.create_schedule(data)
        return Response(answer, status=status.HTTP_201_CREATED)


class ScheduleActionView(ApiView):
    """``POST schedules/<name>/<suspend|resume>/``."""

    resource = "schedule"

    @extend_schema(
        operation_id="schedules_manage",
        request=None,
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH),
            OpenApiParameter(
                "action", str, OpenApiParameter.PATH, enum=list(operations.SCHEDULE_ACTIONS)
            ),
        ],
        responses={200: ANSWER, **ERRORS},
    )
    def post(self, request: Request, name: str, action: str) -> Response:
        return Response(operations.manage_schedule(name, action))


class PruneSerializer(StrictSerializer):
    """What ``POST prune/`` accepts."""

    older_than = serializers.CharField(max_length=20, help_text="An age: 30d, 12h, 90m, 2w")
    dry_run = serializers.BooleanField(required=False, default=False)
    keep_workers = serializers.BooleanField(required=False, default=False)


class PruneView(ApiView):
    """``POST prune/``: delete finished jobs older than an age (docs/queue-management.md)."""

    resource = "prune"

    @extend_schema(operation_id="prune", request=PruneSerializer, responses={200: ANSWER, **ERRORS})
    def post(self, request: Request) -> Response:
        data, refused = _read_input(PruneSerializer, request)
        if refused is not None:
            return refused
        return Response(operations.prune(**data))


class HostsView(ApiView):
    """``GET hosts/``."""

    resource = "host"

    @extend_schema(operation_id="hosts_list", responses={200: ANSWER, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response({"success": True, "results": operations.hosts_info()})


class WorkersView(ApiView):
    """``GET workers/``: the workers not stopped."""

    resource = "worker"

    @extend_schema(operation_id="workers_list", responses={200: ANSWER, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response({"success": True, "results": operations.workers_info()})


class StatisticsView(ApiView):
    """``GET statistics/``: the statistics of the admin's page (``?queue=`` for one queue)."""

    @extend_schema(
        operation_id="statistics_retrieve",
        parameters=[OpenApiParameter("queue", str)],
        responses={200: ANSWER, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {"success": True, "statistics": get_statistics(request.query_params.get("queue"))}
        )
