"""process_container_jobs: argument errors, help, dry runs and the legacy mode, in-process."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from container_manager.models import ContainerJob, ExecutorHost, Worker
from container_manager.queue import queue_manager
from container_manager.states import JobStatus

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("process_container_jobs", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--queue-mode", "--job-id=3"], "Cannot use --queue-mode with --job-id or --status"),
        (["--queue-mode", "--status=running"], "Cannot use --queue-mode with --job-id or --status"),
        (["--queue-mode", "--max-concurrent=0"], "--max-concurrent must be at least 1"),
        (["--max-concurrent=-2"], "--max-concurrent must be at least 1"),
        (["--queue-mode", "--poll-interval=0"], "--poll-interval must be at least 1"),
        (["--queue-mode", "--timeout=0"], "--timeout must be at least 1"),
        (["--job-id=0"], "--job-id must be a positive job id"),
        (["--once"], "--once only applies to --queue-mode"),
        (["--worker-id=a"], "--worker-id only applies to --queue-mode"),
        (["--queues=reports"], "--queues only applies to --queue-mode"),
        (["--queue-mode", "--queues=reports,,x"], "--queues must be comma-separated queue names"),
        (
            ["--queue-mode", "--max-concurrent=100000000000000000000"],
            "--max-concurrent must be at most 10000, not 100000000000000000000",
        ),
        (["--queue-mode", "--poll-interval=7200"], "--poll-interval must be at most 3600"),
        (["--queue-mode", "--once", "--timeout=10" + "0" * 19], "--timeout must be at most 86400"),
        (["--job-id=" + "9" * 30], "--job-id must be at most 9223372036854775807"),
        (["--queue-mode", "--worker-id=" + "w" * 250], "--worker-id has at most 200 characters"),
        (["--queue-mode", "--worker-id=a\x00b"], "--worker-id must be printable text"),
        (["--queue-mode", "--worker-id=a\nb"], "--worker-id must be printable text"),
    ],
)
def test_invalid_arguments_raise_command_error_naming_the_problem(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        run(*args)


def test_a_job_id_that_does_not_exist_is_an_error_not_an_empty_success():
    with pytest.raises(CommandError, match="No job with id 999999"):
        run("--job-id=999999")


def test_range_errors_leave_nothing_registered_or_claimed():
    job = ContainerJob.objects.create(command="echo")
    queue_manager.queue_job(job)
    with pytest.raises(CommandError):
        run("--queue-mode", "--once", "--max-concurrent=100000000000000000000")
    job.refresh_from_db()
    assert (job.status, job.attempt, job.worker_id) == (JobStatus.QUEUED, 0, "")
    assert not Worker.objects.exists()


@pytest.mark.parametrize(
    "args",
    [["--status=pending2"], ["--max-concurrent=many"], ["--poll-interval=1.5"], ["--job-id=x"]],
)
def test_malformed_values_are_rejected_by_the_parser(args):
    with pytest.raises(CommandError):
        run(*args)


def test_help_lists_every_flag_and_the_examples(capsys):
    with pytest.raises(SystemExit):
        call_command("process_container_jobs", "--help")
    text = capsys.readouterr().out
    for flag in (
        "--queue-mode",
        "--max-concurrent",
        "--poll-interval",
        "--once",
        "--timeout",
        "--job-id",
        "--status",
        "--dry-run",
        "--verbose",
        "--worker-id",
        "--queues",
    ):
        assert flag in text
    assert "Queue Mode (new):" in text
    assert "process_container_jobs --queue-mode --once" in text
    assert "kill -USR1 <pid>" in text


def test_queue_mode_dry_run_shows_the_seed_output_and_changes_nothing():
    host = ExecutorHost.objects.create(name="local", executor_type="process")
    now_job = ContainerJob.objects.create(name="now", command="echo", host=host, priority=70)
    queue_manager.queue_job(now_job)
    later = ContainerJob.objects.create(name="later", command="echo", host=host)
    queue_manager.queue_job(later, schedule_for=timezone.now() + timedelta(hours=1))
    before = list(ContainerJob.objects.order_by("pk").values())

    out = run("--queue-mode", "--dry-run")

    assert "Dry run: nothing is launched (max_concurrent=5)" in out
    assert "Starting queue processor" not in out
    assert "Queue Status (dry run):" in out
    assert "  Ready to launch now: 1" in out
    assert "  Scheduled for future: 1" in out
    assert "  Currently running: 0" in out
    assert "  Launch failed: 0" in out
    assert "Next 1 job(s) that would be launched:" in out
    queued = now_job.queued_at.strftime("%H:%M:%S")
    assert f"  - Job {now_job.pk}: now (priority=70, queued={queued})" in out
    assert list(ContainerJob.objects.order_by("pk").values()) == before


def test_queue_mode_dry_run_with_empty_queue_says_so():
    out = run("--queue-mode", "--dry-run")
    assert "No jobs ready for launch" in out


def test_legacy_dry_run_lists_running_jobs_by_default_and_changes_nothing():
    running = ContainerJob.objects.create(name="r", command="echo")
    ContainerJob.objects.filter(pk=running.pk).update(status=JobStatus.QUEUED)
    ContainerJob.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    ContainerJob.objects.create(name="p", command="echo")

    out = run("--dry-run")

    assert "Found 1 job(s) to process" in out
    assert f"Would process: Job {running.pk} (running) - r" in out
    assert ContainerJob.objects.get(pk=running.pk).status == JobStatus.RUNNING


def test_legacy_mode_without_matching_jobs_says_so():
    assert "No jobs found to process" in run("--status=failed")


def test_legacy_job_id_launches_a_pending_job_on_a_local_host(tmp_path):
    host = ExecutorHost.objects.create(
        name="local",
        executor_type="process",
        executor_config={"output_dir": str(tmp_path)},
    )
    job = ContainerJob.objects.create(name="p", command="true", host=host)

    out = run(f"--job-id={job.pk}", "--verbose")

    assert "Found 1 job(s) to process" in out
    assert f"Successfully processed job {job.pk}: launched (running)" in out
    assert "Processed: 1 jobs, Errors: 0" in out
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.container_id


def test_dry_run_says_when_a_paused_queue_is_why_nothing_is_ready():
    host = ExecutorHost.objects.create(name="local-paused", executor_type="process")
    for n in range(3):
        queue_manager.queue_job(
            ContainerJob.objects.create(name=f"r{n}", command="echo", host=host, queue="reports")
        )
    queue_manager.pause_queue("reports")

    out = run("--queue-mode", "--dry-run")

    assert "  Ready to launch now: 0 (3 more in paused queues)" in out
    assert "  Paused queues: reports (3 due job(s) wait for it)" in out
    assert "No jobs ready for launch: 3 due job(s) wait in the paused queue(s) reports" in out
