"""Retention: old finished jobs and stopped workers' rows go; the statistics stay exact."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from container_manager.models import ContainerJob
from container_manager.models import Worker as WorkerRow
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from container_manager.stats import get_statistics

pytestmark = pytest.mark.django_db(transaction=True)


def ended(name: str, days_ago: float, status: str = JobStatus.COMPLETED) -> ContainerJob:
    job = queue_manager.create_and_queue(name=name)
    when = timezone.now() - timedelta(days=days_ago)
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.VALIDATING)
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=when)
    ContainerJob.objects.filter(pk=job.pk).update(status=status, completed_at=when, exit_code=0)
    return job


def worker_row(worker_id: str, days_ago: float, status: str = "stopped") -> WorkerRow:
    return WorkerRow.objects.create(
        worker_id=worker_id,
        hostname="h",
        pid=1,
        status=status,
        last_heartbeat_at=timezone.now() - timedelta(days=days_ago),
    )


def test_old_finished_jobs_and_workers_go_and_the_statistics_follow():
    old = [ended(f"old-{n}", 40) for n in range(5)] + [ended("old failed", 35, "failed")]
    recent = ended("recent", 2)
    waiting = queue_manager.create_and_queue(name="still queued")
    worker_row("w-gone", 40)
    worker_row("w-alive", 0, status="running")
    before = get_statistics()["status_distribution"]
    assert (before["completed"], before["failed"]) == (6, 1)

    result = queue_manager.prune(timedelta(days=30), batch_size=2)

    assert (result.jobs, result.workers, result.kept_for_dependents) == (6, 1, 0)
    left = set(ContainerJob.objects.values_list("pk", flat=True))
    assert left == {recent.pk, waiting.pk}
    assert not left & {job.pk for job in old}
    assert list(WorkerRow.objects.values_list("worker_id", flat=True)) == ["w-alive"]
    after = get_statistics()["status_distribution"]
    assert (after["completed"], after["failed"], after["queued"]) == (1, 0, 1)


def test_a_finished_job_a_waiting_job_depends_on_is_kept():
    build = ended("old build", 40)
    waiting = queue_manager.queue_after(ContainerJob(name="after it"), after=[build])
    result = queue_manager.prune(timedelta(days=30))
    assert (result.jobs, result.kept_for_dependents) == (0, 1)
    assert ContainerJob.objects.filter(pk=build.pk).exists()
    queue_manager.cancel_job(waiting)
    assert queue_manager.prune(timedelta(days=30)).jobs == 1


def test_the_command_counts_in_a_dry_run_then_deletes_with_progress():
    for n in range(3):
        ended(f"old-{n}", 10)
    out = StringIO()
    call_command("prune_jobs", "--older-than", "1w", "--dry-run", stdout=out)
    assert (
        out.getvalue() == "Would delete 3 finished job(s) and 0 worker row(s) older than 1 week\n"
    )
    assert ContainerJob.objects.count() == 3
    out = StringIO()
    call_command("prune_jobs", "--older-than", "7d", "--batch-size", "2", stdout=out)
    assert out.getvalue().splitlines() == [
        "  2/3 jobs deleted (66 %)",
        "  3/3 jobs deleted (100 %)",
        "Deleted 3 finished job(s) and 0 worker row(s) older than 1 week",
    ]
    assert not ContainerJob.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than", "soon"), "--older-than: An age is a number and a unit, like 30d"),
        ((), "Give --older-than (e.g. 30d), or set CONTAINER_MANAGER['RETENTION_DAYS']"),
        (("--older-than", "1d", "--batch-size", "0"), "--batch-size must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(args, message):
    with pytest.raises(CommandError) as caught:
        call_command("prune_jobs", *args, stdout=StringIO())
    assert caught.value.returncode == 2
    assert message in str(caught.value)


def test_the_worker_clean_up_prunes_when_retention_days_is_set(settings):
    from container_manager.containers import containers
    from container_manager.worker.state import WorkerState
    from container_manager.worker.sweeper import Sweeper

    ended("old", 5)
    ended("new", 1)
    sweeper = Sweeper(queue_manager, containers, WorkerState("w-ret"))
    assert sweeper.apply_retention() == 0  # Not set: nothing goes.
    settings.CONTAINER_MANAGER = {"RETENTION_DAYS": 3}
    assert sweeper.apply_retention() == 1
    assert list(ContainerJob.objects.values_list("name", flat=True)) == ["new"]


def test_finished_jobs_keep_the_id_of_the_worker_that_ran_them():
    from container_manager.models import ExecutorHost

    ExecutorHost.objects.create(name="local", executor_type="process")
    job = queue_manager.create_and_queue(name="x")
    [claimed] = queue_manager.claim_jobs("w-ran-it", 1)
    queue_manager.release_job(claimed, "w-ran-it")
    job.refresh_from_db()
    assert (job.worker_id, job.last_worker_id) == ("", "w-ran-it")


def test_the_api_prunes_for_a_user_who_may_delete_jobs(client):
    import json

    from django.contrib.auth.models import Permission, User

    ended("old", 40)
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_containerjob"))
    client.force_login(viewer)
    body = json.dumps({"older_than": "30d"})
    refused = client.post("/api/prune/", body, content_type="application/json")
    assert refused.status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="delete_containerjob"))
    dry = client.post(
        "/api/prune/",
        json.dumps({"older_than": "30d", "dry_run": True}),
        content_type="application/json",
    )
    assert (dry.status_code, dry.json()["jobs"]) == (200, 1)
    assert ContainerJob.objects.count() == 1
    done = client.post("/api/prune/", body, content_type="application/json")
    assert done.json()["jobs"] == 1
    assert not ContainerJob.objects.exists()
    bad = client.post(
        "/api/prune/", json.dumps({"older_than": "soon"}), content_type="application/json"
    )
    assert bad.status_code == 400
    assert "An age is a number and a unit" in bad.json()["error"]
