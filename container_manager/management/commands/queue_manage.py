"""``queue_manage ACTION TASK_ID``: pause, resume, retry or cancel; or pause a --queue or --host."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from container_manager.management.operations_command import OperationCommand
from container_manager.operations import MANAGE_ACTIONS, queue_manage


class Command(OperationCommand):
    help = (
        "Pause, resume, retry or cancel a task; or pause or resume a named queue (--queue) or a "
        "host (--host). Exit status 0 done; 1 the task's state does not allow it; 2 bad "
        "arguments; 3 no such task or host; 4 the database refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=MANAGE_ACTIONS)
        parser.add_argument(
            "task_id", nargs="?", default=None, help="The task (a job id, or a 1.0.x UUID)"
        )
        super().add_arguments(parser)
        parser.add_argument("--queue", default=None, help="A named queue, instead of a task")
        parser.add_argument("--host", default=None, help="A host's name, instead of a task")

    def perform(self, options: dict[str, Any]) -> dict[str, Any]:
        return queue_manage(
            options["action"], options["task_id"], queue=options["queue"], host=options["host"]
        )

    def render(self, answer: dict[str, Any], options: dict[str, Any]) -> None:
        done = {
            "pause": "Paused",
            "resume": "Resumed",
            "retry": "Queued again",
            "cancel": "Cancelled",
        }
        verb = done[answer["action"]]
        if "task" in answer:
            task = answer["task"]
            self.line(f"{verb} task {task['id']}: now {task['status']}")
        elif "queue" in answer:
            self.line(f"{verb} queue {answer['queue']['name']}")
        else:
            self.line(f"{verb} host {answer['host']['name']}")
        if answer.get("note"):
            self.line(f"Note: {answer['note']}")
