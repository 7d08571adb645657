"""``process_container_jobs``: run a queue worker, or process jobs the legacy way.

Queue mode (``--queue-mode``) is a thin CLI over
:class:`container_manager.worker.Worker`. Without it, the command keeps its
old behaviour: it brings running jobs (or the jobs named by ``--job-id`` or
``--status``) up to date with their containers through
``queue_manager.process_job``. See docs/command-reference.md.
"""

from __future__ import annotations

import logging
from argparse import RawDescriptionHelpFormatter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from container_manager.conf import (
    DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
    DEFAULT_MAX_CONCURRENT,
    settings,
)
from container_manager.management import package_version
from container_manager.management.log_output import LOG_FORMATS
from container_manager.management.log_output import configure as configure_log_output
from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.queue.reporting import queue_counts
from container_manager.states import JobStatus
from container_manager.worker import Worker, WorkerIdInUseError

logger = logging.getLogger(__name__)

LEGACY_STATUSES = ["pending", "running", "failed"]

#: The range of each numeric flag (docs/command-reference.md, "Options").
FLAG_RANGES: dict[str, tuple[int, int]] = {
    "max_concurrent": (1, 10_000),
    "poll_interval": (1, 3_600),
    "timeout": (1, 86_400),
    "job_id": (1, 2**63 - 1),
    "metrics_port": (1, 65_535),
}
#: The longest ``--worker-id`` (the column of ``Worker.worker_id``).
MAX_WORKER_ID_LENGTH = 200
#: Exit status of ``--once`` when a launch failed for good (docs/command-reference.md).
EXIT_LAUNCH_FAILED = 3

EXAMPLES = """
Examples:

Queue Mode (new):
  %(prog)s --queue-mode                    # Continuous queue processing
  %(prog)s --queue-mode --once            # Process queue once and exit
  %(prog)s --queue-mode --max-concurrent=10 --poll-interval=5
  %(prog)s --queue-mode --dry-run         # See what would be processed
  %(prog)s --queue-mode --queues=reports,default --worker-id=node1-a

Legacy Mode (existing):
  %(prog)s                                # Process running jobs (default)
  %(prog)s --job-id=123                   # Process specific job
  %(prog)s --status=pending               # Process jobs with status
  %(prog)s --dry-run                      # Show what would be processed

Operational:
  kill -USR1 <pid>                        # Get queue status
  kill -TERM <pid>                        # Graceful shutdown
"""


class Command(BaseCommand):
    help = "Process container jobs - either existing jobs or queue mode"

    def get_version(self) -> str:
        """``--version``: this package's version (Django's is ``django-admin --version``)."""
        return package_version()

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        parser.epilog = EXAMPLES % {"prog": f"{prog_name} {subcommand}"}
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue-mode",
            action="store_true",
            help="Run in queue processing mode (launches queued jobs continuously)",
        )
        parser.add_argument(
            "--max-concurrent",
            type=int,
            default=DEFAULT_MAX_CONCURRENT,
            help=f"Maximum concurrent jobs when in queue mode (default: {DEFAULT_MAX_CONCURRENT})",
        )
        parser.add_argument(
            "--poll-interval",
            type=int,
            default=int(settings.POLL_INTERVAL_SECONDS),
            help="Polling interval in seconds for queue mode (default: the "
            f"POLL_INTERVAL_SECONDS setting, {int(settings.POLL_INTERVAL_SECONDS)}); "
            "on PostgreSQL new jobs wake the worker at once",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Process queue once and exit (don't run continuously)",
        )
        parser.add_argument(
            "--timeout",
            type=int,
            default=DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
            help="Timeout in seconds for job acquisition "
            f"(default: {DEFAULT_ACQUIRE_TIMEOUT_SECONDS}): the longest wait "
            "for the claim's host and queue locks, and for launches in flight "
            "when stopping or with --once",
        )
        parser.add_argument(
            "--worker-id",
            default="",
            help="Id of this worker in the database and on the jobs it holds "
            "(default: <hostname>:<pid>); keep it stable across restarts",
        )
        parser.add_argument(
            "--queues",
            default="",
            help="Comma-separated named queues to take jobs from (default: all)",
        )
        parser.add_argument("--job-id", type=int, help="Process specific job by ID (legacy mode)")
        parser.add_argument(
            "--status",
            choices=LEGACY_STATUSES,
            help="Process jobs with specific status (legacy mode)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show what would be processed without actually doing it",
        )
        parser.add_argument("--verbose", action="store_true", help="Verbose output")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="Serve this worker's Prometheus metrics on this port (queue mode; each "
            "worker of a machine needs its own)",
        )
        parser.add_argument(
            "--metrics-address",
            default="127.0.0.1",
            help="Address the metrics listen on (default 127.0.0.1)",
        )
        parser.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            default="text",
            help="Queue mode's log: text lines with time and level (default), one JSON "
            "object a line, or 'project' to leave it to your LOGGING setting",
        )
        legacy = parser.add_argument_group(
            "1.0.x options", "Still accepted, each with a warning; removed in 3.0."
        )
        legacy.add_argument(
            "--legacy-mode",
            action="store_true",
            help="Deprecated: the default without --queue-mode",
        )
        legacy.add_argument("--max-jobs", type=int, help="Deprecated: use --max-concurrent")
        legacy.add_argument(
            "--single-run", action="store_true", help="Deprecated: use --once (with --queue-mode)"
        )
        legacy.add_argument(
            "--host", default="", help="Deprecated: without --queue-mode, only this host's jobs"
        )
        for flag, kind in (
            ("--shutdown-timeout", int),
            ("--cleanup-hours", int),
            ("--executor-type", str),
        ):
            legacy.add_argument(flag, type=kind, help="Deprecated: has no effect")
        for flag in ("--graceful-shutdown", "--cleanup", "--use-factory"):
            legacy.add_argument(flag, action="store_true", help="Deprecated: has no effect")

    def apply_legacy_options(self, options: dict[str, Any]) -> None:
        """Warn about each 1.0.x option given, and apply those that still mean something."""
        notes = {
            "legacy_mode": "it is the default without --queue-mode",
            "shutdown_timeout": "a stopping worker waits --timeout for launches in flight and "
            "leaves running containers to the next worker",
            "graceful_shutdown": "every stop is graceful",
            "cleanup": "the worker removes ended containers itself (CONTAINER_RETENTION)",
            "cleanup_hours": "the worker removes ended containers itself (CONTAINER_RETENTION)",
            "use_factory": "hosts are chosen by capacity and weight",
            "executor_type": "hosts are chosen by capacity and weight",
        }
        for key, note in notes.items():
            if options.get(key) not in (None, False, ""):
                self._warn(f"--{key.replace('_', '-')} is deprecated and has no effect: {note}")
        if options.get("max_jobs") is not None:
            self._warn("--max-jobs is deprecated: use --max-concurrent")
            options["max_concurrent"] = options["max_jobs"]
        if options.get("single_run"):
            if options["queue_mode"]:
                self._warn("--single-run is deprecated: use --once")
                options["once"] = True
            else:
                self._warn(
                    "--single-run is deprecated: without --queue-mode one pass is the default"
                )
        if options.get("host") and options["queue_mode"]:
            self._warn(
                "--host is deprecated and has no effect with --queue-mode: "
                "pause the other hosts, or pin jobs to a host"
            )
        elif options.get("host"):
            self._warn("--host is deprecated: pin jobs to a host instead")

    def _warn(self, message: str) -> None:
        self.stderr.write(self.style.WARNING(f"Warning: {message}"))

    # Validation ------------------------------------------------------------------

    def validate(self, options: dict[str, Any]) -> list[str] | None:
        """Check the options together; return the parsed ``--queues`` (None: all).

        Raises:
            CommandError: With the message of the first problem found.
        """
        if options["queue_mode"] and (options["job_id"] or options["status"]):
            raise CommandError("Cannot use --queue-mode with --job-id or --status")
        for key, (low, high) in FLAG_RANGES.items():
            value = options[key]
            if value is None:
                continue
            name = "--" + key.replace("_", "-")
            if value < low:
                if key == "job_id":
                    raise CommandError("--job-id must be a positive job id")
                raise CommandError(f"{name} must be at least {low}")
            if value > high:
                raise CommandError(f"{name} must be at most {high}, not {value}")
        worker_id = options["worker_id"]
        if len(worker_id) > MAX_WORKER_ID_LENGTH:
            raise CommandError(
                f"--worker-id has at most {MAX_WORKER_ID_LENGTH} characters "
                f"(this one has {len(worker_id)})"
            )
        if worker_id and not worker_id.isprintable():
            raise CommandError(
                f"--worker-id must be printable text, without control characters: {worker_id!r}"
            )
        if not options["queue_mode"]:
            for flag in ("once", "worker_id", "queues", "metrics_port"):
                if options[flag]:
                    name = "--" + flag.replace("_", "-")
                    raise CommandError(f"{name} only applies to --queue-mode")
        raw = options["queues"]
        if not raw:
            return None
        names = [name.strip() for name in raw.split(",")]
        if any(not name for name in names):
            raise CommandError(
                f"--queues must be comma-separated queue names, not {raw!r} (empty name)"
            )
        return names

    def handle(self, *args: Any, **options: Any) -> None:
        # --verbose is -v 2 (Django's verbosity): either one logs at DEBUG.
        options["verbose"] = options["verbose"] or options.get("verbosity", 1) >= 2
        if options["verbose"]:
            logging.getLogger("container_manager").setLevel(logging.DEBUG)
        self.apply_legacy_options(options)
        queues = self.validate(options)
        try:
            if options["queue_mode"]:
                self._handle_queue_mode(options, queues)
            else:
                self._handle_legacy_mode(options)
        except KeyboardInterrupt:
            self.stdout.write(self.style.WARNING("Interrupted by user"))
        except (CommandError, WorkerIdInUseError) as exc:
            raise CommandError(str(exc), returncode=getattr(exc, "returncode", 1)) from exc
        except Exception as exc:
            logger.exception("Command failed: %s", exc)
            raise CommandError(f"Command failed: {exc}") from exc

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    # Queue mode ------------------------------------------------------------------

    def _handle_queue_mode(self, options: dict[str, Any], queues: list[str] | None) -> None:
        if options["dry_run"]:
            self._say(f"Dry run: nothing is launched (max_concurrent={options['max_concurrent']})")
            self._dry_run_queue_mode(options, queues)
            return
        worker = Worker(
            worker_id=options["worker_id"] or None,
            queues=queues,
            max_concurrent=options["max_concurrent"],
            poll_interval_seconds=options["poll_interval"],
            once=options["once"],
            acquire_timeout_seconds=options["timeout"],
        )
        restore = configure_log_output(
            options["log_format"],
            self.stdout,
            worker.worker_id,
            logging.DEBUG if options["verbose"] else logging.INFO,
        )
        try:
            self._run_worker(worker, options)
        finally:
            restore()

    def _run_worker(self, worker: Worker, options: dict[str, Any]) -> None:
        say = logging.getLogger("container_manager.command").info
        say(
            "Starting queue processor (max_concurrent=%s, poll_interval=%ss, once=%s)",
            options["max_concurrent"],
            options["poll_interval"],
            options["once"],
        )
        if options["metrics_port"] is not None:
            try:
                worker.serve_metrics(options["metrics_port"], options["metrics_address"])
            except (ImportError, OSError) as exc:
                raise CommandError(
                    f"Cannot serve metrics on {options['metrics_address']}:"
                    f"{options['metrics_port']}: {exc}"
                ) from exc
            say(
                "Serving metrics on http://%s:%s/metrics",
                options["metrics_address"],
                options["metrics_port"],
            )
        worker.install_signal_handlers()
        stats = worker.run()
        if options["once"]:
            say("Processed queue: launched %s", _jobs(stats.jobs_launched))
        else:
            say(
                "Queue processor finished. Processed %s iterations, launched %s",
                stats.iterations,
                _jobs(stats.jobs_launched),
            )
        if stats.errors:
            logging.getLogger("container_manager.command").warning(
                "Encountered %s error(s); each was logged when it happened", len(stats.errors)
            )
        if options["once"] and stats.launches_failed:
            # A cron job or a CI step must see it (docs/command-reference.md, "--once").
            raise CommandError(
                f"{stats.launches_failed} launch(es) failed for good", returncode=EXIT_LAUNCH_FAILED
            )

    def _dry_run_queue_mode(self, options: dict[str, Any], queues: list[str] | None) -> None:
        metrics = queue_manager.get_worker_metrics()
        # Jobs of a paused queue are due but wait for it: say so, not "ready".
        held = {name: queue_counts(queue=name)["ready_now"] for name in metrics["paused_queues"]}
        held = {name: count for name, count in sorted(held.items()) if count}
        waiting_paused = sum(held.values())
        self._say("Queue Status (dry run):")
        self._say(
            f"  Ready to launch now: {metrics['ready_now'] - waiting_paused}"
            + (f" ({waiting_paused} more in paused queues)" if waiting_paused else "")
        )
        if held:
            self._say(
                "  Paused queues: "
                + ", ".join(
                    f"{name} ({count} due job(s) wait for it)" for name, count in held.items()
                )
            )
        self._say(f"  Scheduled for future: {metrics['scheduled_future']}")
        self._say(f"  Currently running: {metrics['running']}")
        self._say(f"  Launch failed: {metrics['launch_failed']}")
        ready = list(queue_manager.get_ready_jobs(limit=options["max_concurrent"]))
        if queues is not None:
            ready = [job for job in ready if job.queue in queues]
        if not ready:
            if held:
                self._say(
                    f"\nNo jobs ready for launch: {waiting_paused} due job(s) wait in the paused "
                    f"queue(s) {', '.join(held)} (to resume one: queue_manage resume --queue NAME)"
                )
            elif metrics["ready_now"] and not metrics["available_hosts"]:
                self._say("\nNo jobs ready for launch: no host is active and not paused")
            else:
                self._say("\nNo jobs ready for launch")
            return
        self._say(f"\nNext {len(ready)} job(s) that would be launched:")
        for job in ready:
            queued = job.queued_at.strftime("%H:%M:%S") if job.queued_at else "-"
            self._say(f"  - Job {job.id}: {job.name} (priority={job.priority}, queued={queued})")

    # Legacy mode -----------------------------------------------------------------

    def _handle_legacy_mode(self, options: dict[str, Any]) -> None:
        if options["job_id"]:
            queryset = ContainerJob.objects.filter(id=options["job_id"])
        elif options["status"]:
            queryset = ContainerJob.objects.filter(status=options["status"])
        else:
            queryset = ContainerJob.objects.filter(status=JobStatus.RUNNING)
        if options.get("host"):
            queryset = queryset.filter(host__name=options["host"])
        jobs = list(queryset.select_related("host").order_by("id"))
        if not jobs and options["job_id"]:
            # What was asked for does not exist: a script must see it.
            raise CommandError(f"No job with id {options['job_id']}")
        if not jobs:
            self._say("No jobs found to process")
            return
        self._say(f"Found {len(jobs)} job(s) to process")
        if options["dry_run"]:
            for job in jobs:
                self._say(f"Would process: Job {job.id} ({job.status}) - {job.name}")
            return
        processed = errors = 0
        for job in jobs:
            if options["verbose"]:
                self._say(f"Processing job {job.id} ({job.status})")
            result = queue_manager.process_job(job)
            if result.success:
                processed += 1
                if options["verbose"]:
                    self._say(
                        self.style.SUCCESS(
                            f"Successfully processed job {job.id}: {result.detail} "
                            f"({result.status})"
                        )
                    )
            else:
                errors += 1
                self._say(self.style.ERROR(f"Failed to process job {job.id}: {result.error}"))
        self._say(self.style.SUCCESS(f"Processed: {processed} jobs, Errors: {errors}"))


def _jobs(count: int) -> str:
    """``1 job``, ``3 jobs``."""
    return f"{count} job" if count == 1 else f"{count} jobs"
