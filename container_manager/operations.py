"""The queue's three operations as data: ``queue_status``, ``queue_task_status``, ``queue_manage``.

Each takes plain parameters and answers a JSON-ready dict, so that the
management commands of the same names and any program (a JSON API, a
script) see the same shapes (docs/command-reference.md, "queue_status,
queue_task_status, queue_manage"). :func:`run` takes a whole request,
``{"action": "queue_task_status", "params": {"task_id": 12}}``, checks it
strictly and dispatches it.

A refused operation raises :class:`OperationError`, whose :meth:`~OperationError.answer`
is the error's JSON shape (``success`` false, the message, the catalogue's
``error_code`` with its description and suggestion); nothing was changed.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone

from container_manager import states
from container_manager.classification import describe
from container_manager.exceptions import (
    ContainerStopDeferredError,
    InvalidStateTransition,
    JobNotQueueableError,
)
from container_manager.models import ContainerJob, ExecutorHost, JobQueue, Schedule, Worker
from container_manager.models.images import options_problem
from container_manager.models.validation import json_problem, text_problem
from container_manager.queue import queue_manager
from container_manager.queue.bulk import window_start
from container_manager.queue.retention import parse_age
from container_manager.states import JobKind, JobStatus
from container_manager.stats import get_statistics

#: The actions of ``queue_manage``.
MANAGE_ACTIONS = ("pause", "resume", "retry", "cancel")
#: The operations :func:`run` dispatches, with the parameters each accepts.
OPERATIONS: dict[str, frozenset[str]] = {
    "queue_status": frozenset({"include_logs", "detailed", "queue"}),
    "queue_task_status": frozenset({"task_id", "include_logs", "detailed"}),
    "queue_manage": frozenset({"action", "task_id", "queue", "host"}),
}
#: Finished tasks listed by a detailed ``queue_status``, newest first.
RECENT_FINISHED = 20


class OperationError(Exception):
    """An operation was refused; nothing was changed.

    Attributes:
        code: The catalogue's error code (``QUEUE_TASK_NOT_FOUND``, ...).
        message: What was wrong, naming the input.
        kind: ``"not_found"``, ``"invalid"`` (bad parameters) or ``"conflict"``
            (the task's state does not allow the action): a command's exit
            status and an API's HTTP status follow from it.
    """

    def __init__(self, code: str, message: str, kind: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind

    def answer(self) -> dict[str, Any]:
        """The error as the operations' JSON shape."""
        entry = describe(self.code)
        return {
            "success": False,
            "error": self.message,
            "error_code": self.code,
            "error_info": {"description": entry.description, "suggestion": entry.suggestion},
        }


def _invalid(message: str) -> OperationError:
    return OperationError("VALIDATION_INVALID_PARAMS", message, "invalid")


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be true or false, not {value!r}")
    return value


def find_task(task_id: Any) -> ContainerJob:
    """The job a task id names: its integer id (``12``, ``"12"``, ``"#12"``) or its 1.0.x UUID.

    Raises:
        OperationError: ``VALIDATION_INVALID_FORMAT`` for an id of another
            form, ``QUEUE_TASK_NOT_FOUND`` when no job has it.
    """
    if isinstance(task_id, bool) or task_id is None:
        raise OperationError(
            "VALIDATION_INVALID_FORMAT",
            f"task_id must be a job id (a positive integer) or a 1.0.x UUID, not {task_id!r}",
            "invalid",
        )
    text = str(task_id).strip().lstrip("#")
    jobs = ContainerJob.objects.select_related("host")
    job: ContainerJob | None
    if text.isascii() and text.isdigit() and 0 < int(text) < 2**63:
        job = jobs.filter(pk=int(text)).first()
    else:
        try:
            legacy = uuid.UUID(text)
        except (ValueError, AttributeError):
            raise OperationError(
                "VALIDATION_INVALID_FORMAT",
                f"task_id must be a job id (a positive integer) or a 1.0.x UUID, not {task_id!r}",
                "invalid",
            ) from None
        job = jobs.filter(legacy_id=legacy).first()
    if job is None:
        raise OperationError("QUEUE_TASK_NOT_FOUND", f"No task with id {task_id!r}", "not_found")
    return job


def can_retry(job: ContainerJob) -> bool:
    """True when ``queue_manage retry`` would queue the job again (it failed or timed out)."""
    return job.status in states.RETRYABLE_STATUSES


def task_info(
    job: ContainerJob, *, include_logs: bool = False, detailed: bool = False
) -> dict[str, Any]:
    """The task information of one job (docs/command-reference.md, "The task's shape").

    Args:
        job: The job.
        include_logs: Add ``logs`` (its stdout and stderr, as stored).
        detailed: Add what to run, where and the queue's fields.
    """
    duration = job.duration
    entry = describe(job.error_code) if job.error_code else None
    retry = {
        "retry_count": job.retry_count,
        "max_retries": job.effective_max_retries,
        "can_retry": can_retry(job),
    }
    info: dict[str, Any] = {
        "id": job.pk,
        "task_type": job.kind,
        "name": job.name,
        "queue": job.queue,
        "status": job.status,
        "status_description": str(JobStatus(job.status).label),
        "progress": job.progress,
        "current_step": job.live_step,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "completed_at": _time(job.completed_at),
        "duration": round(duration.total_seconds(), 3) if duration is not None else None,
        "error": job.last_error or None,
        "error_code": job.error_code or None,
        "error_details": (
            {"exit_code": job.exit_code, "last_error_at": _time(job.last_error_at)}
            if job.error_code or job.last_error
            else None
        ),
        "error_info": (
            {"description": entry.description, "suggestion": entry.suggestion} if entry else None
        ),
        **retry,
        "retry": retry,
    }
    if detailed:
        info.update(
            priority=job.priority,
            queue_status=job.queue_status,
            host=job.host.name if job.host is not None else None,
            image=job.image,
            command=job.command,
            exit_code=job.exit_code,
            attempt=job.attempt,
            worker_id=job.worker_id or None,
            last_worker_id=job.last_worker_id or None,
            container_id=job.container_id or None,
            queued_at=_time(job.queued_at),
            scheduled_for=_time(job.scheduled_for),
            launched_at=_time(job.launched_at),
            legacy_id=str(job.legacy_id) if job.legacy_id else None,
            image_options=job.image_options,
            image_result=job.image_result,
            depends_on=sorted(job.depends_on.values_list("pk", flat=True)),
        )
    if include_logs:
        info["logs"] = {"stdout": job.stdout, "stderr": job.stderr}
    return info


def queues_info() -> list[dict[str, Any]]:
    """Each named queue: ``name``, ``is_paused``, ``max_concurrent``."""
    return [
        {"name": row.name, "is_paused": row.is_paused, "max_concurrent": row.max_concurrent}
        for row in JobQueue.objects.order_by("name")
    ]


def hosts_info() -> list[dict[str, Any]]:
    """Each host: ``name``, ``executor_type``, ``is_active``, ``is_paused``, ``health_status``,
    ``max_concurrent_jobs``."""
    return [
        {
            "name": host.name,
            "executor_type": host.executor_type,
            "is_active": host.is_active,
            "is_paused": host.is_paused,
            "health_status": host.health_status,
            "max_concurrent_jobs": host.max_concurrent_jobs,
        }
        for host in ExecutorHost.objects.order_by("name")
    ]


def workers_info() -> list[dict[str, Any]]:
    """Each worker not stopped: ``worker_id``, ``status``, ``is_alive``, ``last_heartbeat_at``,
    ``jobs_launched``, ``jobs_finished``."""
    now = timezone.now()
    return [
        {
            "worker_id": worker.worker_id,
            "status": worker.status,
            "is_alive": worker.is_alive(now),
            "last_heartbeat_at": _time(worker.last_heartbeat_at),
            "jobs_launched": worker.jobs_launched,
            "jobs_finished": worker.jobs_finished,
        }
        for worker in Worker.objects.exclude(status="stopped").order_by("worker_id")
    ]


def queue_status(
    *, include_logs: bool = False, detailed: bool = False, queue: str | None = None
) -> dict[str, Any]:
    """The queue's statistics, its named queues, hosts and workers; with ``detailed``, its tasks.

    Args:
        include_logs: With ``detailed``, each task's logs too.
        detailed: Add ``tasks``: every task not finished, then the last
            finished ones (at most :data:`RECENT_FINISHED`).
        queue: Only this named queue's jobs (statistics and tasks).
    """
    jobs = ContainerJob.objects.select_related("host")
    if queue is not None:
        if not isinstance(queue, str) or text_problem(queue):
            raise _invalid(f"queue must be a queue name, not {queue!r}")
        jobs = jobs.filter(queue=queue)
    answer: dict[str, Any] = {
        "success": True,
        "statistics": get_statistics(queue),
        "queues": queues_info(),
        "hosts": hosts_info(),
        "workers": workers_info(),
    }
    if detailed:
        unfinished = list(
            jobs.filter(status__in=sorted(states.UNFINISHED_STATUSES)).order_by("-priority", "id")
        )
        finished = list(
            jobs.filter(status__in=sorted(states.TERMINAL_STATUSES)).order_by(
                "-completed_at", "-id"
            )[:RECENT_FINISHED]
        )
        answer["tasks"] = [
            task_info(job, include_logs=include_logs, detailed=True)
            for job in unfinished + finished
        ]
    return answer


def queue_task_status(
    task_id: Any, *, include_logs: bool = False, detailed: bool = False
) -> dict[str, Any]:
    """One task's information.

    Raises:
        OperationError: The id is malformed or names no task.
    """
    job = find_task(task_id)
    return {"success": True, "task": task_info(job, include_logs=include_logs, detailed=detailed)}


def _manage_task(action: str, job: ContainerJob) -> dict[str, Any]:
    note = ""
    try:
        if action == "pause":
            queue_manager.pause_job(job)
        elif action == "resume":
            queue_manager.resume_job(job)
        elif action == "retry":
            if job.status in states.ACTIVE_STATUSES | {JobStatus.PAUSED}:
                raise OperationError(
                    "QUEUE_TASK_ALREADY_RUNNING",
                    f"Task {job.pk} is {job.status}: only failed or timed-out tasks can be retried",
                    "conflict",
                )
            queue_manager.retry_failed_job(job)
        else:
            queue_manager.cancel_job(job)
    except (InvalidStateTransition, JobNotQueueableError) as exc:
        raise OperationError(
            "QUEUE_TASK_INVALID_STATE", f"Cannot {action} task {job.pk}: {exc}", "conflict"
        ) from exc
    except ContainerStopDeferredError as exc:
        note = f"cancelled; its container is stopped by the worker holding it ({exc})"
    job.refresh_from_db()
    answer: dict[str, Any] = {"success": True, "action": action, "task": task_info(job)}
    if note:
        answer["note"] = note
    return answer


def queue_manage(
    action: str, task_id: Any = None, *, queue: str | None = None, host: str | None = None
) -> dict[str, Any]:
    """Pause, resume, retry or cancel a task; or pause or resume a whole named queue or a host.

    Args:
        action: One of :data:`MANAGE_ACTIONS`.
        task_id: The task, for a task's action.
        queue: A named queue, instead of a task (pause and resume only).
        host: A host's name, instead of a task (pause and resume only).

    Raises:
        OperationError: Bad parameters, an unknown task or host, or a task
            whose state does not allow the action. Nothing was changed.
    """
    if action not in MANAGE_ACTIONS:
        raise _invalid(f"action must be one of {', '.join(MANAGE_ACTIONS)}, not {action!r}")
    targets = [
        name
        for name, value in (("task_id", task_id), ("queue", queue), ("host", host))
        if value is not None
    ]
    if len(targets) != 1:
        raise _invalid("Give exactly one of task_id, queue or host")
    if task_id is not None:
        return _manage_task(action, find_task(task_id))
    if action not in ("pause", "resume"):
        raise _invalid(f"{action} applies to a task; a queue or a host can be paused or resumed")
    if queue is not None:
        if not isinstance(queue, str) or not queue.strip():
            raise _invalid(f"queue must be a queue name, not {queue!r}")
        row = (
            queue_manager.pause_queue(queue)
            if action == "pause"
            else queue_manager.resume_queue(queue)
        )
        return {
            "success": True,
            "action": action,
            "queue": {"name": row.name, "is_paused": row.is_paused},
        }
    if not isinstance(host, str) or not host.strip():
        raise _invalid(f"host must be a host's name, not {host!r}")
    try:
        found = (
            queue_manager.pause_host(host) if action == "pause" else queue_manager.resume_host(host)
        )
    except ExecutorHost.DoesNotExist:
        raise OperationError(
            "QUEUE_TASK_NOT_FOUND", f"No host named {host!r}", "not_found"
        ) from None
    return {
        "success": True,
        "action": action,
        "host": {"name": found.name, "is_paused": found.is_paused},
    }


def run(request: Any) -> dict[str, Any]:
    """Run one request ``{"action": ..., "params": {...}}`` and answer its JSON shape.

    Errors are answered, not raised: ``{"success": false, "error": ...,
    "error_code": ..., "error_info": ...}``.
    """
    try:
        return dispatch(request)
    except OperationError as exc:
        return exc.answer()


def dispatch(request: Any) -> dict[str, Any]:
    """As :func:`run`, but a refused request raises :class:`OperationError` (with its ``kind``).

    Raises:
        OperationError: The request is malformed, or the operation refused.
    """
    if not isinstance(request, dict):
        raise _invalid(
            f"A request is an object with action and params, not {type(request).__name__}"
        )
    unknown = set(request) - {"action", "params"}
    if unknown:
        raise _invalid(f"Unknown request fields: {', '.join(sorted(map(str, unknown)))}")
    action = request.get("action")
    if not isinstance(action, str) or action not in OPERATIONS:
        raise OperationError(
            "VALIDATION_INVALID_PARAMS",
            f"action must be one of {', '.join(OPERATIONS)}, not {action!r}",
            "invalid",
        )
    params = request.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _invalid(f"params must be an object, not {type(params).__name__}")
    problem = json_problem(params)
    if problem:
        raise OperationError("VALIDATION_INVALID_FORMAT", f"params: {problem}", "invalid")
    unknown = set(params) - OPERATIONS[action]
    if unknown:
        raise _invalid(
            f"Unknown params of {action}: {', '.join(sorted(map(str, unknown)))} "
            f"(it takes {', '.join(sorted(OPERATIONS[action]))})"
        )
    if action == "queue_status":
        queue = params.get("queue")
        if queue is not None and not isinstance(queue, str):
            raise _invalid(f"queue must be a queue name, not {queue!r}")
        return queue_status(
            include_logs=_flag(params, "include_logs"),
            detailed=_flag(params, "detailed"),
            queue=queue,
        )
    if action == "queue_task_status":
        if "task_id" not in params:
            raise OperationError(
                "VALIDATION_MISSING_REQUIRED", "queue_task_status needs task_id", "invalid"
            )
        return queue_task_status(
            params["task_id"],
            include_logs=_flag(params, "include_logs"),
            detailed=_flag(params, "detailed"),
        )
    if "action" not in params:
        raise OperationError("VALIDATION_MISSING_REQUIRED", "queue_manage needs action", "invalid")
    return queue_manage(
        params["action"], params.get("task_id"), queue=params.get("queue"), host=params.get("host")
    )


def create_task(fields: dict[str, Any]) -> ContainerJob | list[ContainerJob]:
    """Queue a job or an image task, waiting for jobs or not (``POST jobs/``, ``queue_image``).

    Args:
        fields: The job's fields, with ``host`` a host's name (``"all"`` for a
            pull onto every active host), and optionally ``kind``,
            ``image_options``, ``context`` (a build's tar archive, base64),
            ``after`` (ids of jobs to wait for), ``schedule_for``,
            ``unique_key``/``unique_for`` and ``array_size``.

    Returns:
        The queued job; a list of them for a pull onto ``"all"`` hosts, or
        for an array (``array_size``), in index order.

    Raises:
        OperationError: A host or a job to wait for does not exist, or the
            fields do not fit the kind.
        ValidationError: A field is invalid (named); nothing is written.
    """
    fields = dict(fields)
    host_name = fields.pop("host", None)
    kind = fields.pop("kind", JobKind.RUN)
    if host_name == "all" and kind == JobKind.IMAGE_PULL:
        fields["host"] = "all"
    elif host_name is not None:
        host = ExecutorHost.objects.filter(name=host_name).first()
        if host is None:
            raise OperationError(
                "QUEUE_TASK_NOT_FOUND", f"No host named {host_name!r}", "not_found"
            )
        fields["host"] = host
    options = dict(fields.pop("image_options", {}))
    after_ids = list(dict.fromkeys(fields.pop("after", [])))
    after = list(ContainerJob.objects.filter(pk__in=after_ids))
    missing = sorted(set(after_ids) - {job.pk for job in after})
    if missing:
        raise OperationError(
            "QUEUE_TASK_NOT_FOUND", f"No job with id {missing[0]} to wait for", "not_found"
        )
    encoded = fields.pop("context", None)
    unique_for = fields.pop("unique_for", None)
    array_size = fields.pop("array_size", None)
    if array_size is not None and kind != JobKind.RUN:
        raise OperationError("VALIDATION_INVALID_PARAMS", "array_size is for run jobs", "invalid")
    if unique_for is not None and kind != JobKind.RUN:
        raise OperationError("VALIDATION_INVALID_PARAMS", "unique_for is for run jobs", "invalid")
    if kind == JobKind.RUN:
        if options or encoded is not None:
            raise OperationError(
                "VALIDATION_INVALID_PARAMS",
                "image_options and context are for image tasks (kind image_pull, image_build, "
                "image_push)",
                "invalid",
            )
        if array_size is not None:
            if unique_for is not None or fields.get("unique_key"):
                raise OperationError(
                    "VALIDATION_INVALID_PARAMS",
                    "The jobs of an array cannot share a unique key",
                    "invalid",
                )
            schedule_for = fields.pop("schedule_for", None)
            array = queue_manager.create_array(
                array_size, after=after, schedule_for=schedule_for, **fields
            )
            return list(array.jobs.order_by("array_index"))
        if after:
            schedule_for = fields.pop("schedule_for", None)
            job = ContainerJob(scheduled_for=schedule_for, **fields)
            if unique_for is not None:
                job.unique_window_start = window_start(unique_for, bool(job.unique_key))
            return queue_manager.queue_after(job, after)
        return queue_manager.create_and_queue(unique_for=unique_for, **fields)
    if fields.pop("schedule_for", None) is not None or fields.get("command"):
        raise OperationError(
            "VALIDATION_INVALID_PARAMS",
            "An image task runs now and runs no command: leave schedule_for and command out",
            "invalid",
        )
    fields.pop("command", None)
    image = fields.pop("image", "")
    host = fields.pop("host", None)
    problem = options_problem(kind, options)
    if problem:
        raise OperationError("VALIDATION_INVALID_PARAMS", f"image_options: {problem}", "invalid")
    if kind == JobKind.IMAGE_PULL:
        if after:
            raise OperationError("VALIDATION_INVALID_PARAMS", "A pull waits for no job", "invalid")
        return queue_manager.pull_image(image, host=host, **options, **fields)
    if kind == JobKind.IMAGE_PUSH:
        if host is None:
            raise OperationError(
                "VALIDATION_INVALID_PARAMS",
                "host: a push runs on the host that holds the image; name it",
                "invalid",
            )
        return queue_manager.push_image(image, host=host, after=after, **options, **fields)
    context = None
    if encoded is not None:
        try:
            context = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise OperationError(
                "VALIDATION_INVALID_FORMAT", f"context: not base64 ({exc})", "invalid"
            ) from exc
    return queue_manager.build_image(
        image, host=host, context=context, after=after, **options, **fields
    )


#: The actions of ``queue_schedule`` and ``POST schedules/<name>/<action>/``.
SCHEDULE_ACTIONS = ("suspend", "resume")
#: The fields a schedule is made with (``POST schedules/``, ``queue_schedule add``).
SCHEDULE_FIELDS = frozenset(
    {"name", "cron", "timezone", "job", "host", "catch_up", "max_catch_up", "concurrency"}
)


def schedule_info(schedule: Schedule, upcoming: int = 3) -> dict[str, Any]:
    """One schedule: its fields, state and next ``upcoming`` fire times."""
    times: list[str | None] = []
    if not schedule.is_suspended and schedule.next_fire_at is not None:
        following = schedule.fire_times_after(schedule.next_fire_at, max(upcoming - 1, 0))
        times = [_time(schedule.next_fire_at), *(_time(t) for t in following)][:upcoming]
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "job": schedule.job,
        "host": schedule.host.name if schedule.host is not None else None,
        "catch_up": schedule.catch_up,
        "max_catch_up": schedule.max_catch_up,
        "concurrency": schedule.concurrency,
        "is_suspended": schedule.is_suspended,
        "next_fire_times": times,
        "last_fired_at": _time(schedule.last_fired_at),
    }


def schedules_info() -> list[dict[str, Any]]:
    """Every schedule, by name (``GET schedules/``, ``queue_schedule list``)."""
    return [schedule_info(s) for s in Schedule.objects.select_related("host").order_by("name")]


def create_schedule(fields: dict[str, Any]) -> dict[str, Any]:
    """Make a schedule from ``fields`` (``host`` by name); answer its information.

    Raises:
        OperationError: An unknown field, or no such host.
        ValidationError: A field is invalid (named); nothing is written.
    """
    fields = dict(fields)
    unknown = sorted(set(fields) - SCHEDULE_FIELDS)
    if unknown:
        raise OperationError(
            "VALIDATION_INVALID_PARAMS",
            f"Unknown schedule field(s) {', '.join(map(str, unknown))}; known: "
            f"{', '.join(sorted(SCHEDULE_FIELDS))}",
            "invalid",
        )
    host_name = fields.pop("host", None)
    if host_name is not None:
        host = ExecutorHost.objects.filter(name=host_name).first()
        if host is None:
            raise OperationError(
                "QUEUE_TASK_NOT_FOUND", f"No host named {host_name!r}", "not_found"
            )
        fields["host"] = host
    if Schedule.objects.filter(name=fields.get("name")).exists():
        raise OperationError(
            "VALIDATION_INVALID_PARAMS",
            f"A schedule named {fields.get('name')!r} exists already",
            "invalid",
        )
    schedule = Schedule(**fields)
    schedule.save()
    return {"success": True, "schedule": schedule_info(schedule)}


def manage_schedule(name: str, action: str) -> dict[str, Any]:
    """Suspend or resume the schedule ``name``.

    Raises:
        OperationError: An unknown action, or no such schedule.
    """
    if action not in SCHEDULE_ACTIONS:
        raise OperationError(
            "VALIDATION_INVALID_PARAMS",
            f"action must be one of {', '.join(SCHEDULE_ACTIONS)}, not {action!r}",
            "invalid",
        )
    schedule = Schedule.objects.select_related("host").filter(name=name).first()
    if schedule is None:
        raise OperationError("QUEUE_TASK_NOT_FOUND", f"No schedule named {name!r}", "not_found")
    if action == "suspend":
        queue_manager.suspend_schedule(schedule)
    else:
        queue_manager.resume_schedule(schedule)
    return {"success": True, "action": action, "schedule": schedule_info(schedule)}


def prune(older_than: str, *, dry_run: bool = False, keep_workers: bool = False) -> dict[str, Any]:
    """Delete finished jobs (and stopped workers' rows) older than ``older_than`` (``30d``).

    Raises:
        OperationError: The age is not one (``VALIDATION_INVALID_PARAMS``).
    """
    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise OperationError("VALIDATION_INVALID_PARAMS", str(exc), "invalid") from exc
    result = queue_manager.prune(age, workers=not keep_workers, dry_run=dry_run)
    return {
        "success": True,
        "dry_run": dry_run,
        "older_than_seconds": int(age.total_seconds()),
        "jobs": result.jobs,
        "workers": result.workers,
        "kept_for_dependents": result.kept_for_dependents,
    }


__all__ = [
    "MANAGE_ACTIONS",
    "OPERATIONS",
    "SCHEDULE_ACTIONS",
    "SCHEDULE_FIELDS",
    "OperationError",
    "can_retry",
    "create_schedule",
    "create_task",
    "dispatch",
    "find_task",
    "hosts_info",
    "manage_schedule",
    "prune",
    "queue_manage",
    "queue_status",
    "queue_task_status",
    "queues_info",
    "run",
    "schedule_info",
    "schedules_info",
    "task_info",
    "workers_info",
]
