"""``queue_schedule {list,add,suspend,resume}``: schedules from the command line."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser

from container_manager.management.operations_command import OperationCommand, refused
from container_manager.operations import (
    OperationError,
    create_schedule,
    manage_schedule,
    schedules_info,
)

ACTIONS = ("list", "add", "suspend", "resume")


class Command(OperationCommand):
    help = (
        "List schedules, add one (a cron expression and the job to queue at each fire time), "
        "or suspend or resume one. Exit status 0 done; 2 bad arguments; 3 no such schedule or "
        "host; 4 the database refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("name", nargs="?", default=None, help="The schedule's name")
        super().add_arguments(parser)
        parser.add_argument("--cron", default=None, help="add: e.g. '0 2 * * *' (02:00 daily)")
        parser.add_argument("--timezone", default=None, help="add: e.g. Europe/Paris (UTC)")
        parser.add_argument("--command", dest="job_command", default=None, help="add: the job")
        parser.add_argument("--image", default=None, help="add: the job's image")
        parser.add_argument("--shell", action="store_true", help="add: run through /bin/sh -c")
        parser.add_argument(
            "--job", dest="job_json", default=None, help="add: more job fields, as JSON"
        )
        parser.add_argument("--host", default=None, help="add: the host's name")
        parser.add_argument("--catch-up", choices=("skip", "once", "all"), default=None)
        parser.add_argument("--concurrency", choices=("allow", "forbid", "replace"), default=None)

    def perform(self, options: dict[str, Any]) -> dict[str, Any]:
        action, name = options["action"], options["name"]
        if action == "list":
            return {"success": True, "results": schedules_info()}
        if not name:
            raise OperationError("VALIDATION_INVALID_PARAMS", f"{action} needs a NAME", "invalid")
        if action != "add":
            return manage_schedule(name, action)
        return self._add(name, options)

    def _add(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        if not options["cron"]:
            raise OperationError(
                "VALIDATION_INVALID_PARAMS",
                "A cron expression is needed: --cron '0 2 * * *' (every day at 02:00)",
                "invalid",
            )
        job: dict[str, Any] = {}
        if options["job_json"]:
            try:
                job = json.loads(options["job_json"])
            except json.JSONDecodeError as exc:
                raise OperationError(
                    "VALIDATION_INVALID_FORMAT", f"--job is not JSON: {exc}", "invalid"
                ) from exc
            if not isinstance(job, dict):
                raise OperationError(
                    "VALIDATION_INVALID_FORMAT", "--job must be a JSON object", "invalid"
                )
        if options["job_command"] is not None:
            job["command"] = options["job_command"]
        if options["image"] is not None:
            job["image"] = options["image"]
        if options["shell"]:
            job["is_shell_command"] = True
        fields: dict[str, Any] = {"name": name, "cron": options["cron"], "job": job}
        for key, option in (
            ("timezone", "timezone"),
            ("host", "host"),
            ("catch_up", "catch_up"),
            ("concurrency", "concurrency"),
        ):
            if options[option] is not None:
                fields[key] = options[option]
        try:
            return create_schedule(fields)
        except ValidationError as exc:
            raise refused(exc) from exc

    def render(self, answer: dict[str, Any], options: dict[str, Any]) -> None:
        if "results" in answer:
            if not answer["results"]:
                self.line("No schedules")
                return
            rows = [
                {**row, "next_fire_times": ", ".join(row["next_fire_times"][:1]) or None}
                for row in answer["results"]
            ]
            self.table(
                rows,
                [
                    ("name", "name"),
                    ("cron", "cron"),
                    ("timezone", "time zone"),
                    ("is_suspended", "suspended"),
                    ("next_fire_times", "next fire"),
                ],
            )
            return
        schedule = answer["schedule"]
        verb = {"suspend": "Suspended", "resume": "Resumed"}.get(answer.get("action", ""), "Added")
        upcoming = ", ".join(schedule["next_fire_times"]) or "none while suspended"
        self.line(f"{verb} schedule {schedule['name']}: next fire times {upcoming}")
