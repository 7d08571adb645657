"""``queue_status``: statistics, named queues, hosts and workers; the tasks with --detailed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from container_manager.management.operations_command import OperationCommand
from container_manager.operations import queue_status


class Command(OperationCommand):
    help = (
        "Show the queue: statistics, named queues, hosts and workers; --detailed lists "
        "the tasks. Exit status 0, or 4 when the database refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--detailed", action="store_true", help="List the tasks too")
        parser.add_argument(
            "--include-logs", action="store_true", help="With --detailed, each task's output"
        )
        parser.add_argument("--queue", default=None, help="Only this named queue's tasks")

    def perform(self, options: dict[str, Any]) -> dict[str, Any]:
        return queue_status(
            include_logs=options["include_logs"],
            detailed=options["detailed"],
            queue=options["queue"],
        )

    def render(self, answer: dict[str, Any], options: dict[str, Any]) -> None:
        stats = answer["statistics"]
        summary, performance = stats["summary"], stats["performance"]
        retries, recent = stats["retries"], stats["recent_activity"]
        self.line(
            f"Tasks: {summary['total_tasks']} in all, {summary['current_running']} running, "
            f"{summary['queue_size']} waiting, capacity {summary['max_concurrent_tasks']}"
        )
        rate = performance["success_rate"]
        average = performance["average_duration_seconds"]
        self.line(
            f"Finished: {performance['completed_tasks']} completed, "
            f"{performance['failed_tasks']} failed"
            + (f", success rate {rate} %" if rate is not None else "")
            + (f", average {average} s" if average is not None else "")
        )
        self.line(
            f"Retries: {retries['total_retries']} in all, {retries['tasks_with_retries']} tasks "
            f"retried, {retries['max_retries_reached']} at their maximum"
        )
        self.line(f"Created: {recent['last_hour']} in the last hour, {recent['last_24h']} in 24 h")
        counts = {k: v for k, v in stats["status_distribution"].items() if v}
        if counts:
            self.line("By status: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if stats["error_distribution"]:
            self.line(
                "By error: "
                + ", ".join(
                    f"{code} {e['count']}" for code, e in stats["error_distribution"].items()
                )
            )
        for title, rows, columns in (
            (
                "Queues",
                answer["queues"],
                [("name", "NAME"), ("is_paused", "PAUSED"), ("max_concurrent", "LIMIT")],
            ),
            (
                "Hosts",
                answer["hosts"],
                [
                    ("name", "NAME"),
                    ("executor_type", "TYPE"),
                    ("is_active", "ACTIVE"),
                    ("is_paused", "PAUSED"),
                    ("health_status", "HEALTH"),
                    ("max_concurrent_jobs", "LIMIT"),
                ],
            ),
            (
                "Workers",
                answer["workers"],
                [
                    ("worker_id", "WORKER"),
                    ("status", "STATUS"),
                    ("is_alive", "ALIVE"),
                    ("last_heartbeat_at", "LAST HEARTBEAT"),
                    ("jobs_launched", "LAUNCHED"),
                ],
            ),
        ):
            self.line()
            if rows:
                self.line(f"{title}:")
                self.table(rows, columns)
            else:
                self.line(f"{title}: none")
        if "tasks" in answer:
            self.line()
            self.line("Tasks:" if answer["tasks"] else "Tasks: none")
            if answer["tasks"]:
                self.table(
                    answer["tasks"],
                    [
                        ("id", "ID"),
                        ("name", "NAME"),
                        ("status", "STATUS"),
                        ("queue", "QUEUE"),
                        ("priority", "PRIORITY"),
                        ("progress", "%"),
                        ("host", "HOST"),
                        ("error_code", "ERROR"),
                    ],
                )
            if options["include_logs"]:
                for task in answer["tasks"]:
                    logs = task.get("logs") or {}
                    for stream in ("stdout", "stderr"):
                        if logs.get(stream):
                            self.line(f"\n--- task {task['id']} {stream} ---")
                            self.line(logs[stream].rstrip("\n"))
