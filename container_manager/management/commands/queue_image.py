"""``queue_image {pull,build,push} IMAGE``: queue an image task (docs/image-tasks.md)."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser

from container_manager.management.operations_command import (
    OperationCommand,
    name_value_pairs,
    refused,
)
from container_manager.operations import OperationError, create_task, task_info
from container_manager.states import JobKind

KINDS = {"pull": JobKind.IMAGE_PULL, "build": JobKind.IMAGE_BUILD, "push": JobKind.IMAGE_PUSH}


def _context(path: str) -> bytes:
    """A build context: a tar archive as it is, or a directory packed into one."""
    source = Path(path)
    if source.is_dir():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(str(source), arcname=".")
        return buffer.getvalue()
    try:
        return source.read_bytes()
    except OSError as exc:
        raise OperationError(
            "VALIDATION_INVALID_PARAMS",
            f"--context {path}: {exc.strerror or exc}",
            "invalid",
        ) from exc


class Command(OperationCommand):
    help = (
        "Queue an image task: pull an image onto a host (or --all-hosts), build one from a "
        "Dockerfile or a context (--push to push its tags), or push one from the host that "
        "holds it. Exit status 0 queued; 2 bad arguments; 3 no such host or job; 4 the "
        "database refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("operation", choices=sorted(KINDS), help="pull, build or push")
        parser.add_argument("image", help="The image reference (for a build: its first tag)")
        super().add_arguments(parser)
        parser.add_argument("--host", default=None, help="The host's name")
        parser.add_argument(
            "--all-hosts", action="store_true", help="pull: onto every active Docker host"
        )
        parser.add_argument("--platform", default="", help="pull, build: os/arch")
        parser.add_argument(
            "--dockerfile",
            default=None,
            help="build: a Dockerfile to read; with --context, its path inside the context",
        )
        parser.add_argument("--context", default=None, help="build: a directory or a tar archive")
        parser.add_argument(
            "--build-arg", action="append", default=[], metavar="NAME=value", help="build: ARG"
        )
        parser.add_argument("--target", default="", help="build: the stage to build")
        parser.add_argument("--tag", action="append", default=[], help="build: another tag")
        parser.add_argument(
            "--label", action="append", default=[], metavar="NAME=value", help="build: a label"
        )
        parser.add_argument("--push", action="store_true", help="build: push the tags once built")
        parser.add_argument(
            "--after",
            action="append",
            type=int,
            default=[],
            metavar="JOB_ID",
            help="Wait for this job to complete first (repeatable)",
        )
        parser.add_argument("--name", default=None, help="The job's name")
        parser.add_argument("--queue", default=None, help="The named queue")
        parser.add_argument("--priority", type=int, default=None, help="0-100")

    def perform(self, options: dict[str, Any]) -> dict[str, Any]:
        operation = options["operation"]
        kind = KINDS[operation]
        fields: dict[str, Any] = {
            "kind": kind,
            "image": options["image"],
            "after": options["after"],
        }
        for name in ("name", "queue", "priority"):
            if options[name] is not None:
                fields[name] = options[name]
        if options["all_hosts"]:
            if operation != "pull":
                raise OperationError(
                    "VALIDATION_INVALID_PARAMS", "--all-hosts is for a pull", "invalid"
                )
            fields["host"] = "all"
        elif options["host"] is not None:
            fields["host"] = options["host"]
        image_options: dict[str, Any] = {}
        if options["platform"]:
            image_options["platform"] = options["platform"]
        build_only = ("dockerfile", "context", "build_arg", "target", "tag", "label", "push")
        if operation != "build":
            given = [f"--{name.replace('_', '-')}" for name in build_only if options[name]]
            if given:
                raise OperationError(
                    "VALIDATION_INVALID_PARAMS",
                    f"{', '.join(given)}: only for a build",
                    "invalid",
                )
        else:
            image_options.update(self._build_options(options, fields))
        fields["image_options"] = image_options
        try:
            made = create_task(fields)
        except ValidationError as exc:
            raise refused(exc) from exc
        jobs = made if isinstance(made, list) else [made]
        return {"success": True, "tasks": [task_info(job, detailed=True) for job in jobs]}

    @staticmethod
    def _build_options(options: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        built: dict[str, Any] = {}
        dockerfile = options["dockerfile"]
        if options["context"] is not None:
            fields["context"] = base64.b64encode(_context(options["context"])).decode()
            if dockerfile:
                built["dockerfile"] = dockerfile
        elif dockerfile is not None:
            try:
                built["dockerfile"] = Path(dockerfile).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise OperationError(
                    "VALIDATION_INVALID_PARAMS", f"--dockerfile {dockerfile}: {exc}", "invalid"
                ) from exc
        if options["build_arg"]:
            built["build_args"] = name_value_pairs(options["build_arg"], "--build-arg")
        if options["label"]:
            built["labels"] = name_value_pairs(options["label"], "--label")
        if options["tag"]:
            built["tags"] = list(options["tag"])
        if options["target"]:
            built["target"] = options["target"]
        if options["push"]:
            built["push"] = True
        return built

    def render(self, answer: dict[str, Any], options: dict[str, Any]) -> None:
        for task in answer["tasks"]:
            where = f" on {task['host']}" if task.get("host") else ""
            waits = task.get("depends_on") or []
            after = f", after {', '.join(map(str, waits))}" if waits else ""
            self.line(
                f"Queued task {task['id']}: {task['task_type']} {task['image']}{where}{after}"
            )
