"""``prune_jobs --older-than 30d``: delete old finished jobs and stopped workers' rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from container_manager.management import package_version
from container_manager.queue import queue_manager
from container_manager.queue.retention import PRUNE_BATCH_SIZE, parse_age, retention_age


class Command(BaseCommand):
    help = (
        "Delete finished jobs (completed, failed, cancelled, timed out) that ended longer ago "
        "than --older-than, and the rows of workers stopped that long ago. Jobs a waiting job "
        "depends on are kept. Without --older-than, RETENTION_DAYS is used. Exit status 0 "
        "done; 2 bad arguments."
    )

    def get_version(self) -> str:
        """``--version``: this package's version."""
        return package_version()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", default=None, help="An age: 30d, 12h, 90m, 2w (default RETENTION_DAYS)"
        )
        parser.add_argument(
            "--keep-workers", action="store_true", help="Leave the workers' rows alone"
        )
        parser.add_argument("--dry-run", action="store_true", help="Count only; delete nothing")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=PRUNE_BATCH_SIZE,
            help=f"Jobs deleted per statement (default {PRUNE_BATCH_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text = options["older_than"]
        try:
            age = parse_age(text) if text is not None else retention_age()
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}", returncode=2) from exc
        if age is None:
            raise CommandError(
                "Give --older-than (e.g. 30d), or set CONTAINER_MANAGER['RETENTION_DAYS']",
                returncode=2,
            )
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1", returncode=2)
        shown = self._show_progress if options["verbosity"] >= 1 else None
        result = queue_manager.prune(
            age,
            workers=not options["keep_workers"],
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
            progress=shown,
        )
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(
            f"{verb} {result.jobs} finished job(s) and {result.workers} worker row(s) "
            f"older than {_words(age)}"
        )
        if result.kept_for_dependents:
            self.stdout.write(
                f"Kept {result.kept_for_dependents} old finished job(s) that waiting jobs depend on"
            )

    def _show_progress(self, done: int, total: int) -> None:
        self.stdout.write(f"  {done}/{total} jobs deleted ({100 * done // max(total, 1)} %)")


def _words(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} s"
