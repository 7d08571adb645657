"""Bulk and per-job actions of the job admin: what they do, and what they refuse and why."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from container_manager.executors import close_executors, get_executor
from container_manager.executors.base import LaunchSpec
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.states import JobStatus
from tests.unit.test_admin_jobs import CHANGELIST, make_job, superuser_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_cm():
    return superuser_client()


def run_action(client, action, *jobs):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [job.pk for job in jobs]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def status(job) -> str:
    return ContainerJob.objects.values_list("status", flat=True).get(pk=job.pk)


@pytest.fixture
def process_host():
    host = ExecutorHost.objects.create(name="local", executor_type="process")
    yield host
    close_executors()  # kills any process a test left running


def start_running_job(host, command="sleep 30") -> tuple[ContainerJob, object]:
    """A job in 'running' whose process really runs on the local process executor."""
    now = timezone.now()
    job = make_job(
        JobStatus.RUNNING,
        host=host,
        command=command,
        attempt=1,
        queued_at=now,
        launched_at=now,
        started_at=now,
    )
    ref = get_executor(host).launch(LaunchSpec.from_job(job))
    ContainerJob.objects.filter(pk=job.pk).update(container_id=ref.container_id)
    job.refresh_from_db()
    return job, ref


# Bulk actions --------------------------------------------------------------


def test_queue_action_queues_pending_jobs_and_names_the_ones_it_skips(admin_client_cm):
    pending = make_job(name="fresh")
    done = make_job(JobStatus.COMPLETED, name="finished")
    response = run_action(admin_client_cm, "queue_selected_jobs", pending, done)
    assert status(pending) == JobStatus.QUEUED
    assert status(done) == JobStatus.COMPLETED
    text = " ".join(messages_of(response))
    assert f"Queued 1 job: Job {pending.pk} (fresh)." in text
    assert f"Skipped 1 job: Job {done.pk} (finished): Cannot queue completed job {done.pk}" in text


def test_dequeue_action_returns_queued_jobs_to_pending_and_skips_others(admin_client_cm):
    queued = make_job(JobStatus.QUEUED, queued_at=timezone.now())
    pending = make_job()
    response = run_action(admin_client_cm, "dequeue_selected_jobs", queued, pending)
    assert status(queued) == JobStatus.PENDING
    assert status(pending) == JobStatus.PENDING
    text = " ".join(messages_of(response))
    assert f"Removed from queue 1 job: Job {queued.pk}." in text
    assert f"Job {pending.pk}: Job {pending.pk} is not queued" in text


def test_cancel_action_really_stops_a_running_process(admin_client_cm, process_host):
    running, ref = start_running_job(process_host)
    waiting = make_job(JobStatus.QUEUED, queued_at=timezone.now())
    finished = make_job(JobStatus.COMPLETED)
    response = run_action(admin_client_cm, "cancel_selected_jobs", running, waiting, finished)
    assert status(running) == JobStatus.CANCELLED
    assert status(waiting) == JobStatus.CANCELLED
    assert status(finished) == JobStatus.COMPLETED
    ended = get_executor(process_host).wait_finished([ref], timeout_seconds=10)
    assert [e.ref.container_id for e in ended] == [ref.container_id]
    assert ended[0].exit_code != 0  # killed, not finished
    text = " ".join(messages_of(response))
    assert "Cancelled 2 jobs" in text
    assert f"Job {finished.pk}: Job {finished.pk} cannot move from 'completed'" in text


def test_retry_failed_action_requeues_with_a_fresh_retry_count(admin_client_cm):
    failed = make_job(JobStatus.FAILED, retry_count=3, last_error="pull failed")
    timed_out = make_job(JobStatus.TIMEOUT, retry_count=1)
    done = make_job(JobStatus.COMPLETED)
    response = run_action(admin_client_cm, "retry_failed_jobs", failed, timed_out, done)
    failed.refresh_from_db()
    timed_out.refresh_from_db()
    assert (failed.status, failed.retry_count) == (JobStatus.QUEUED, 0)
    assert (timed_out.status, timed_out.retry_count) == (JobStatus.QUEUED, 0)
    assert status(done) == JobStatus.COMPLETED
    text = " ".join(messages_of(response))
    assert "Requeued 2 jobs" in text
    assert "Only failed or timed-out jobs can be retried" in text


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("set_priority_high", ContainerJob.PRIORITY_HIGH),
        ("set_priority_normal", ContainerJob.PRIORITY_NORMAL),
        ("set_priority_low", ContainerJob.PRIORITY_LOW),
    ],
)
def test_set_priority_changes_waiting_jobs_and_skips_launched_ones(
    admin_client_cm, action, expected
):
    waiting = make_job(JobStatus.QUEUED, queued_at=timezone.now(), priority=33)
    pending = make_job(priority=33)
    running = make_job(JobStatus.RUNNING, priority=33)
    done = make_job(JobStatus.COMPLETED, priority=33)
    response = run_action(admin_client_cm, action, waiting, pending, running, done)
    priorities = dict(ContainerJob.objects.values_list("pk", "priority"))
    assert priorities[waiting.pk] == expected
    assert priorities[pending.pk] == expected
    assert priorities[running.pk] == 33
    assert priorities[done.pk] == 33
    text = " ".join(messages_of(response))
    assert "Skipped 2 jobs" in text
    assert "is running; priority only orders jobs that have yet to launch" in text


def test_a_bulk_action_on_many_jobs_says_it_in_one_line_and_lists_them_on_demand(admin_client_cm):
    done = [make_job(JobStatus.COMPLETED) for _ in range(23)] + [make_job(JobStatus.CANCELLED)]
    response = run_action(admin_client_cm, "cancel_selected_jobs", *done)
    assert '<details class="cm-details"><summary>Which jobs</summary>' in response.content.decode()
    [text] = messages_of(response)
    summary, _, listed = text.partition("<details")
    assert (
        summary.strip()
        == "Skipped 24 jobs (1 cancelled, 23 completed): their status does not allow it."
    )
    assert listed.count("<li>") == 24
    assert f"<li>Job {done[0].pk}" in listed
    waiting = [make_job(JobStatus.QUEUED) for _ in range(5)]
    [text] = messages_of(run_action(admin_client_cm, "cancel_selected_jobs", *waiting))
    assert text.startswith("Cancelled 5 jobs. <details")
    assert text.count("<li>") == 5


# Per-job buttons -----------------------------------------------------------


def press(client, job, operation, follow=True):
    url = reverse("admin:container_manager_containerjob_operation", args=[job.pk, operation])
    return client.post(url, follow=follow)


def test_queue_and_dequeue_buttons_toggle_the_queue(admin_client_cm):
    job = make_job()
    response = press(admin_client_cm, job, "queue")
    assert response.redirect_chain[-1][0].endswith(f"/containerjob/{job.pk}/change/")
    assert status(job) == JobStatus.QUEUED
    assert messages_of(response) == [f"Queued 1 job: Job {job.pk}."]
    press(admin_client_cm, job, "dequeue")
    assert status(job) == JobStatus.PENDING


def test_button_refuses_a_job_in_the_wrong_state_and_says_why(admin_client_cm):
    job = make_job(JobStatus.COMPLETED)
    response = press(admin_client_cm, job, "dequeue")
    assert status(job) == JobStatus.COMPLETED
    assert messages_of(response) == [f"Skipped 1 job: Job {job.pk}: Job {job.pk} is not queued."]


def test_pause_and_resume_buttons_freeze_and_thaw_a_running_process(admin_client_cm, process_host):
    job, ref = start_running_job(process_host)
    press(admin_client_cm, job, "pause")
    assert status(job) == JobStatus.PAUSED
    press(admin_client_cm, job, "resume")
    assert status(job) == JobStatus.RUNNING
    press(admin_client_cm, job, "cancel")
    assert status(job) == JobStatus.CANCELLED
    assert get_executor(process_host).wait_finished([ref], timeout_seconds=10)


def test_pause_and_resume_a_waiting_job_keeps_it_in_the_queue(admin_client_cm):
    job = make_job(JobStatus.QUEUED, queued_at=timezone.now())
    press(admin_client_cm, job, "pause")
    assert status(job) == JobStatus.PAUSED
    press(admin_client_cm, job, "resume")
    assert status(job) == JobStatus.QUEUED


def test_cancel_button_on_an_unreachable_host_cancels_and_says_the_worker_stops_it(
    admin_client_cm,
):
    host = ExecutorHost.objects.create(
        name="gone", connection_string="tcp://127.0.0.1:9", executor_config={"timeout": 1}
    )
    job = make_job(JobStatus.RUNNING, host=host, container_id="abc123", attempt=1)
    response = press(admin_client_cm, job, "cancel")
    assert status(job) == JobStatus.CANCELLED
    texts = messages_of(response)
    assert texts[0] == f"Cancelled 1 job: Job {job.pk}."
    assert texts[1].startswith(f"Job {job.pk} is cancelled; its container could not be stopped")
    assert "will be stopped by the worker holding it" in texts[1]
    close_executors()


def test_buttons_only_accept_post(admin_client_cm):
    job = make_job()
    url = reverse("admin:container_manager_containerjob_operation", args=[job.pk, "queue"])
    assert admin_client_cm.get(url).status_code == 405
    assert status(job) == JobStatus.PENDING


def test_unknown_operation_or_job_is_404(admin_client_cm):
    job = make_job()
    assert press(admin_client_cm, job, "explode", follow=False).status_code == 404
    url = reverse("admin:container_manager_containerjob_operation", args=["nope", "queue"])
    assert admin_client_cm.post(url).status_code == 404
    url = reverse("admin:container_manager_containerjob_operation", args=[999999, "queue"])
    assert admin_client_cm.post(url).status_code == 404


def test_buttons_need_the_csrf_token():
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", password=None))
    job = make_job()
    assert press(client, job, "queue", follow=False).status_code == 403
    assert status(job) == JobStatus.PENDING


def test_bulk_action_refuses_more_jobs_than_the_limit(admin_client_cm, monkeypatch):
    from container_manager.admin import actions

    monkeypatch.setattr(actions, "MAX_BULK_JOBS", 2)
    jobs = [make_job() for _ in range(3)]
    response = run_action(admin_client_cm, "queue_selected_jobs", *jobs)
    assert messages_of(response) == [
        "Select at most 2 jobs for one action; narrow the list with the filters first."
    ]
    assert {status(job) for job in jobs} == {JobStatus.PENDING}
