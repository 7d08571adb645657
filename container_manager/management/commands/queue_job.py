"""``queue_job``: queue a job from the command line, waiting for jobs, as an array, or unique."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser

from container_manager.management.operations_command import (
    OperationCommand,
    name_value_pairs,
    refused,
)
from container_manager.operations import create_task, task_info


class Command(OperationCommand):
    help = (
        "Queue a job: a command (run without a shell unless --shell) in an image or as a local "
        "process; after other jobs (--after), as an array of N jobs (--array), or only if no "
        "job of its queue holds its key (--unique-key). Exit status 0 queued (or the job "
        "holding the key answered); 2 bad arguments; 3 no such host or job; 4 the database "
        "refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_command", metavar="COMMAND", help="What the job runs")
        super().add_arguments(parser)
        parser.add_argument("--image", default=None, help="The image (DEFAULT_IMAGE if none)")
        parser.add_argument("--shell", action="store_true", help="Run through /bin/sh -c")
        parser.add_argument("--name", default=None)
        parser.add_argument("--queue", default=None)
        parser.add_argument("--priority", type=int, default=None, help="0-100")
        parser.add_argument("--host", default=None, help="A host's name")
        parser.add_argument(
            "--env", action="append", default=[], metavar="NAME=value", help="Repeatable"
        )
        parser.add_argument("--timeout", type=int, default=None, help="Seconds")
        parser.add_argument(
            "--after",
            action="append",
            type=int,
            default=[],
            metavar="JOB_ID",
            help="Wait for this job to complete first (repeatable)",
        )
        parser.add_argument(
            "--array",
            type=int,
            default=None,
            metavar="N",
            help="Queue N jobs, each with CM_ARRAY_INDEX 0..N-1 and CM_ARRAY_SIZE N",
        )
        parser.add_argument("--unique-key", default=None, help="One unfinished job per key")
        parser.add_argument(
            "--unique-for",
            type=int,
            default=None,
            metavar="SECONDS",
            help="With --unique-key: one job per key in each window of this length",
        )

    def perform(self, options: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {"command": options["job_command"], "after": options["after"]}
        for field, option in (
            ("image", "image"),
            ("name", "name"),
            ("queue", "queue"),
            ("priority", "priority"),
            ("host", "host"),
            ("timeout_seconds", "timeout"),
            ("array_size", "array"),
            ("unique_key", "unique_key"),
            ("unique_for", "unique_for"),
        ):
            if options[option] is not None:
                fields[field] = options[option]
        if options["shell"]:
            fields["is_shell_command"] = True
        if options["env"]:
            fields["environment"] = name_value_pairs(options["env"], "--env")
        try:
            made = create_task(fields)
        except ValidationError as exc:
            raise refused(exc) from exc
        jobs = made if isinstance(made, list) else [made]
        return {"success": True, "tasks": [task_info(job, detailed=True) for job in jobs]}

    def render(self, answer: dict[str, Any], options: dict[str, Any]) -> None:
        tasks = answer["tasks"]
        if len(tasks) > 1:
            self.line(
                f"Queued {len(tasks)} jobs {tasks[0]['id']}..{tasks[-1]['id']} "
                f"({tasks[0]['name']} to {tasks[-1]['name']})"
            )
            return
        [task] = tasks
        waits = task.get("depends_on") or []
        after = f", after {', '.join(map(str, waits))}" if waits else ""
        self.line(f"Job {task['id']} ({task['name'] or 'unnamed'}): {task['status']}{after}")
