"""``queue_task_status TASK_ID``: one task's status, progress, times, error and retries."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from container_manager.management.operations_command import OperationCommand
from container_manager.operations import queue_task_status


class Command(OperationCommand):
    help = (
        "Show one task (a job id, or a 1.0.x UUID). Exit status 0; 2 for a malformed id, "
        "3 when no task has it, 4 when the database refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_id", help="The task's id (a job id, or a 1.0.x UUID)")
        super().add_arguments(parser)
        parser.add_argument(
            "--detailed", action="store_true", help="What it runs, where, and its queue fields"
        )
        parser.add_argument("--include-logs", action="store_true", help="Its stdout and stderr")

    def perform(self, options: dict[str, Any]) -> dict[str, Any]:
        return queue_task_status(
            options["task_id"], include_logs=options["include_logs"], detailed=options["detailed"]
        )

    def render(self, answer: dict[str, Any], options: dict[str, Any]) -> None:
        task = answer["task"]
        self.line(f"Task {task['id']}" + (f" ({task['name']})" if task["name"] else ""))
        rows = [
            ("Status", f"{task['status']} ({task['status_description']})"),
            (
                "Progress",
                f"{task['progress']} %"
                + (f", {task['current_step']}" if task["current_step"] else ""),
            ),
            ("Queue", task["queue"]),
            ("Created", task["created_at"]),
            ("Started", task["started_at"]),
            ("Completed", task["completed_at"]),
            ("Duration", f"{task['duration']} s" if task["duration"] is not None else None),
            (
                "Retries",
                f"{task['retry_count']} of {task['max_retries']}, can retry: "
                f"{'yes' if task['can_retry'] else 'no'}",
            ),
        ]
        if task["error_code"] or task["error"]:
            rows.append(("Error", f"{task['error_code'] or '-'}: {task['error'] or ''}".strip()))
        if task["error_info"]:
            rows.append(("Meaning", task["error_info"]["description"]))
            rows.append(("Suggestion", task["error_info"]["suggestion"]))
        for key in (
            "priority",
            "queue_status",
            "host",
            "image",
            "command",
            "exit_code",
            "attempt",
            "worker_id",
            "container_id",
            "queued_at",
            "scheduled_for",
            "launched_at",
            "legacy_id",
        ):
            if key in task:
                rows.append((key.replace("_", " ").capitalize(), task[key]))
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            self.line(f"  {label.ljust(width)}  {'-' if value in (None, '') else value}")
        logs = task.get("logs")
        if logs is not None:
            for stream in ("stdout", "stderr"):
                self.line(f"--- {stream} ---")
                self.line(logs[stream].rstrip("\n") if logs[stream] else "(empty)")
