"""The admin in a real browser: Debian's chromium driven by Playwright.

A staff user logs in, filters the job list, runs a bulk action, opens a
job's logs (stored output shown as text; a running job's output followed
live) and the statistics page. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from container_manager.executors import close_executors, get_executor
from container_manager.executors.base import LaunchSpec
from container_manager.models import ContainerJob, ExecutorHost, Worker
from container_manager.states import JobStatus
from tests.acceptance.browser import chromium, create_staff_user, shot, staff_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture
def page(browser, live_server, settings):
    create_staff_user(settings)
    # The navigation sidebar collapsed, as a person who closed it has it.
    page = staff_page(browser, live_server.url, width=1600, sidebar_open=False)
    yield page
    page.context.close()


@pytest.fixture
def process_host():
    host = ExecutorHost.objects.create(name="local", executor_type="process", max_concurrent_jobs=4)
    yield host
    close_executors()


def some_jobs(host) -> dict[str, ContainerJob]:
    now = timezone.now()
    jobs = {
        "report": ContainerJob.objects.create(
            name="nightly report", command="python report.py", queue="reports", priority=90
        ),
        "export": ContainerJob.objects.create(name="weekly export", command="pg_dump app"),
        "queued": ContainerJob.objects.create(
            name="resize images", command="resize", status=JobStatus.QUEUED, queued_at=now
        ),
        "done": ContainerJob.objects.create(
            name="backup",
            command="backup",
            status=JobStatus.COMPLETED,
            host=host,
            queued_at=now,
            launched_at=now,
            started_at=now - timezone.timedelta(seconds=42),
            completed_at=now,
            progress=100,
        ),
        "failed": ContainerJob.objects.create(
            name="fetch prices",
            command="fetch",
            status=JobStatus.FAILED,
            host=host,
            queued_at=now,
            completed_at=now,
            retry_count=3,
            error_code="DOCKER_PULL_FAILED",
            last_error="pull access denied for prices:latest",
            stdout="<script>window.pwned = 1</script>starting\n",
            stderr="Error: pull access denied\n",
        ),
    }
    return jobs


def test_staff_filters_the_list_and_queues_jobs_in_bulk(page, process_host):
    jobs = some_jobs(process_host)
    page.goto("/admin/container_manager/containerjob/")
    shot(page, "job-list")
    page.click("#changelist-filter a:text-is('Not Queued')")
    page.wait_for_url(re.compile(r"queue_status=not_queued"))
    names = page.locator("#result_list tbody td.field-name_display").all_inner_texts()
    assert sorted(names) == ["nightly report", "weekly export"]
    page.check("#action-toggle")
    page.select_option("select[name=action]", "queue_selected_jobs")
    page.click("button[name=index]")
    message = page.locator("ul.messagelist li.success")
    message.wait_for()
    assert "Queued 2 jobs" in message.inner_text()
    shot(page, "bulk-action")
    page.goto("/admin/container_manager/containerjob/")
    shot(page, "job-list-after-bulk-action")
    statuses = dict(
        ContainerJob.objects.filter(pk__in=[jobs["report"].pk, jobs["export"].pk]).values_list(
            "name", "status"
        )
    )
    assert statuses == {"nightly report": "queued", "weekly export": "queued"}


def test_refused_jobs_are_named_with_the_reason(page, process_host):
    jobs = some_jobs(process_host)
    page.goto("/admin/container_manager/containerjob/")
    for key in ("done", "queued"):
        page.check(f"input[name=_selected_action][value='{jobs[key].pk}']")
    page.select_option("select[name=action]", "cancel_selected_jobs")
    page.click("button[name=index]")
    warning = page.locator("ul.messagelist li.warning")
    warning.wait_for()
    assert f"Job {jobs['done'].pk} (backup)" in warning.inner_text()
    assert "already ended" in warning.inner_text()
    assert ContainerJob.objects.get(pk=jobs["queued"].pk).status == JobStatus.CANCELLED


def test_job_page_shows_output_as_text_and_opens_logs_in_a_popup(page, process_host):
    failed = some_jobs(process_host)["failed"]
    page.goto(f"/admin/container_manager/containerjob/{failed.pk}/change/")
    assert (
        "<script>window.pwned = 1</script>starting"
        in page.locator(".field-stdout_display pre").inner_text()
    )
    assert page.evaluate("window.pwned") is None
    assert "Docker pull failed" in page.locator(".cm-error-info").inner_text()
    shot(page, "job-detail")
    with page.expect_popup() as popup_info:
        page.click("a.cm-logs-link")
    popup = popup_info.value
    popup.wait_for_selector("#cm-log-stdout")
    assert popup.locator("#cm-log-stdout").inner_text().startswith("<script>")
    assert popup.evaluate("window.pwned") is None
    popup.close()


def test_log_view_follows_a_running_job(page, process_host):
    now = timezone.now()
    job = ContainerJob.objects.create(
        name="counter",
        command="for i in 1 2 3; do echo tick $i; sleep 0.3; done; echo '<b>done</b>'; sleep 30",
        is_shell_command=True,
        status=JobStatus.RUNNING,
        host=process_host,
        attempt=1,
        queued_at=now,
        launched_at=now,
        started_at=now,
        progress=25,
        current_step="Counting",
    )
    ref = get_executor(process_host).launch(LaunchSpec.from_job(job))
    ContainerJob.objects.filter(pk=job.pk).update(container_id=ref.container_id)
    page.goto(f"/admin/container_manager/containerjob/{job.pk}/logs/")
    stdout = page.locator("#cm-log-stdout")
    page.wait_for_function(
        "document.getElementById('cm-log-stdout').textContent.includes('<b>done</b>')"
    )
    assert stdout.inner_text().splitlines() == ["tick 1", "tick 2", "tick 3", "<b>done</b>"]
    assert page.locator("#cm-log-live").inner_text() == "following"
    shot(page, "live-logs")
    # Cancelling stops the process; the page notices and stops following.
    ContainerJob.objects.filter(pk=job.pk).update(progress=60)
    get_executor(process_host).kill(ref)
    ContainerJob.objects.get(pk=job.pk).mark_as_cancelled()
    page.wait_for_function("document.getElementById('cm-log-live').textContent === 'finished'")
    assert page.locator("#cm-log-status").inner_text() == "Cancelled"


def test_statistics_page_shows_figures_charts_and_queue_selector(page, process_host):
    some_jobs(process_host)
    Worker.objects.create(
        worker_id="web-1:4242", hostname="web-1", pid=4242, last_heartbeat_at=timezone.now()
    )
    page.goto("/admin/container_manager/containerjob/")
    page.click("a.cm-stats-link")
    page.wait_for_url("**/admin/container_manager/containerjob/queue-stats/")
    assert page.locator("#cm-figure-queue_depth .cm-figure-value").inner_text() == "1"
    assert page.locator("#cm-success-rate").inner_text() == "50.0%"
    assert page.locator("#cm-error-distribution").inner_text().count("DOCKER_PULL_FAILED") == 1
    shot(page, "queue-stats")
    page.select_option("#cm-queue", "reports")
    page.click(".cm-queue-selector button")
    page.wait_for_url(re.compile(r"queue=reports"))
    assert page.locator("#cm-selected-queue").inner_text() == "reports"
    assert page.locator("#cm-total").inner_text() == "1"
    page.locator("#cm-queues tr[data-queue=reports] button[value=pause]").click()
    page.locator("ul.messagelist li").first.wait_for()
    assert "Paused queue reports" in page.locator("ul.messagelist").inner_text()
    page.goto("/admin/container_manager/executorhost/")
    assert "1 / 4" not in page.content()  # nothing runs on the host
    assert page.locator("td.field-capacity_in_use").inner_text().strip() == "0 / 4"
    shot(page, "hosts")
    page.goto("/admin/container_manager/worker/")
    assert page.locator("td.field-alive_badge").inner_text() == "Alive"
    shot(page, "workers")
