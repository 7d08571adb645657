"""ContainerJob: defaults, validation, the state machine in the database, properties."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone

from container_manager.exceptions import InvalidStateTransition, StaleJobError
from container_manager.models import ContainerJob, EnvironmentVariableTemplate
from container_manager.states import TRANSITIONS, JobStatus
from tests.unit.test_states import INVALID_PAIRS, VALID_PAIRS

pytestmark = pytest.mark.django_db


def make_job(status=JobStatus.PENDING, **fields):
    return ContainerJob.objects.create(command="echo hello", status=status, **fields)


def stored(job, *fields):
    return ContainerJob.objects.filter(pk=job.pk).values(*fields).get()


# Defaults ------------------------------------------------------------------


def test_job_created_with_only_a_command_gets_documented_defaults():
    job = ContainerJob.objects.create(command="echo hello")
    assert job.pk == int(job.pk)
    assert job.status == JobStatus.PENDING
    assert job.image == "container-manager-test/busybox:latest"  # demo's DEFAULT_IMAGE
    assert job.queue == "default"
    assert job.priority == 50
    assert job.timeout_seconds == 3600
    assert job.retry_strategy == "default"
    assert job.effective_max_retries == 3
    assert job.host is None


@override_settings(CONTAINER_MANAGER={"DEFAULT_IMAGE": "alpine:3", "DEFAULT_PRIORITY": 70})
def test_defaults_come_from_container_manager_settings():
    job = ContainerJob.objects.create(command="true")
    assert (job.image, job.priority) == ("alpine:3", 70)


def test_max_retries_defaults_to_the_strategy_attempts():
    job = ContainerJob.objects.create(command="true", retry_strategy="aggressive")
    assert job.max_retries is None
    assert job.effective_max_retries == 5
    job.max_retries = 1
    assert job.effective_max_retries == 1


# Validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"priority": 101}, "priority"),
        ({"priority": -1}, "priority"),
        ({"memory_limit_mb": -5}, "memory_limit_mb"),
        ({"memory_limit_mb": 0}, "memory_limit_mb"),
        ({"cpu_limit_cores": -0.5}, "cpu_limit_cores"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": -10}, "timeout_seconds"),
        ({"timeout_seconds": 10**9}, "timeout_seconds"),
        ({"retry_strategy": "yolo"}, "retry_strategy"),
        ({"environment": {"1BAD": "x"}}, "environment"),
        ({"environment": {"GOOD": 3}}, "environment"),
        ({"environment": ["A=1"]}, "environment"),
        ({"working_directory": "relative/dir"}, "working_directory"),
        ({"queue": ""}, "queue"),
    ],
)
def test_invalid_field_is_rejected_with_its_name_and_nothing_is_stored(fields, field_name):
    with pytest.raises(ValidationError) as caught:
        ContainerJob.objects.create(command="true", **fields)
    assert field_name in caught.value.message_dict
    assert caught.value.message_dict[field_name][0]
    assert ContainerJob.objects.count() == 0


def test_invalid_change_to_a_stored_job_leaves_the_row_intact():
    job = make_job(priority=10)
    job.priority = 500
    with pytest.raises(ValidationError) as caught:
        job.save()
    assert "priority" in caught.value.message_dict
    assert stored(job, "priority") == {"priority": 10}


def test_unknown_retry_strategy_message_lists_known_ones():
    with pytest.raises(ValidationError) as caught:
        ContainerJob.objects.create(command="true", retry_strategy="yolo")
    message = caught.value.message_dict["retry_strategy"][0]
    assert "'yolo'" in message
    assert "aggressive" in message


def test_database_constraint_rejects_priority_written_around_validation():
    job = make_job()
    with pytest.raises(IntegrityError), transaction.atomic():
        ContainerJob.objects.filter(pk=job.pk).update(priority=1000)
    assert stored(job, "priority") == {"priority": 50}


def test_malformed_environment_template_names_the_line():
    template = EnvironmentVariableTemplate(
        name="bad", environment_variables_text="A=1\n# comment\nNOT A PAIR\n"
    )
    with pytest.raises(ValidationError) as caught:
        template.full_clean()
    message = caught.value.message_dict["environment_variables_text"][0]
    assert "Line 3" in message
    assert "NOT A PAIR" in message
    with pytest.raises(ValidationError):
        template.save()
    assert not EnvironmentVariableTemplate.objects.exists()


def test_template_variables_merge_under_the_job_environment():
    template = EnvironmentVariableTemplate.objects.create(
        name="base", environment_variables_text='A=1\nB="two words"\n\n'
    )
    assert template.get_environment_variables_dict() == {"A": "1", "B": "two words"}


# State machine in the database ---------------------------------------------


@pytest.mark.parametrize(("current", "new"), VALID_PAIRS)
def test_valid_transition_is_written(current, new):
    job = make_job(status=current)
    job.transition_to(new)
    assert job.status == new
    assert stored(job, "status") == {"status": new}


@pytest.mark.parametrize(("current", "new"), INVALID_PAIRS)
def test_invalid_transition_raises_and_leaves_the_row(current, new):
    job = make_job(status=current)
    with pytest.raises(InvalidStateTransition) as caught:
        job.transition_to(new)
    assert f"cannot move from {current!r} to {new!r}" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert stored(job, "status") == {"status": current}


@pytest.mark.parametrize(("current", "new"), [(a, b) for a, b in INVALID_PAIRS if a != b])
def test_plain_save_refuses_an_invalid_status_change(current, new):
    job = make_job(status=current)
    job.status = new
    with pytest.raises(InvalidStateTransition):
        job.save()
    assert stored(job, "status") == {"status": current}


def test_plain_save_allows_a_valid_status_change():
    job = make_job(status=JobStatus.PENDING)
    job.status = JobStatus.QUEUED
    job.save()
    assert stored(job, "status") == {"status": JobStatus.QUEUED}


def test_plain_save_refuses_when_the_stored_status_changed_meanwhile():
    job = make_job(status=JobStatus.QUEUED)
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    job.status = JobStatus.PAUSED
    with pytest.raises(StaleJobError):
        job.save()
    assert stored(job, "status") == {"status": JobStatus.CANCELLED}


def test_queryset_update_only_moves_rows_allowed_to_move():
    completed = make_job(status=JobStatus.COMPLETED)
    queued = make_job(status=JobStatus.QUEUED)
    moved = ContainerJob.objects.filter(pk__in=[completed.pk, queued.pk]).update(
        status=JobStatus.CANCELLED
    )
    assert moved == 1
    assert stored(completed, "status") == {"status": JobStatus.COMPLETED}
    assert stored(queued, "status") == {"status": JobStatus.CANCELLED}


def test_queryset_update_refuses_unknown_status_and_expressions():
    from django.db.models import Value

    job = make_job()
    with pytest.raises(ValueError, match="Unknown job status"):
        ContainerJob.objects.filter(pk=job.pk).update(status="exploded")
    with pytest.raises(TypeError):
        ContainerJob.objects.filter(pk=job.pk).update(status=Value("queued"))
    assert stored(job, "status") == {"status": JobStatus.PENDING}


def test_transition_error_names_statuses_by_their_values():
    job = make_job(status=JobStatus.COMPLETED)
    with pytest.raises(InvalidStateTransition) as caught:
        job.transition_to(JobStatus.RUNNING)
    assert str(caught.value) == f"Job {job.pk} cannot move from 'completed' to 'running'"


def test_transition_from_a_stale_instance_raises_and_refreshes():
    job = make_job(status=JobStatus.QUEUED)
    other = ContainerJob.objects.get(pk=job.pk)
    other.transition_to(JobStatus.CANCELLED)
    with pytest.raises(StaleJobError):
        job.transition_to(JobStatus.PAUSED)
    assert job.status == JobStatus.CANCELLED


# mark_as_* --------------------------------------------------------------------


def test_mark_as_queued_sets_queue_fields():
    job = make_job()
    later = timezone.now() + timedelta(hours=1)
    job.mark_as_queued(scheduled_for=later, priority=80)
    row = stored(job, "status", "queued_at", "scheduled_for", "priority")
    assert row["status"] == JobStatus.QUEUED
    assert row["queued_at"] is not None
    assert row["scheduled_for"] == later
    assert row["priority"] == 80


def test_mark_as_queued_refuses_a_bad_priority_without_writing():
    job = make_job()
    with pytest.raises(ValidationError):
        job.mark_as_queued(priority=101)
    assert stored(job, "status", "priority") == {"status": JobStatus.PENDING, "priority": 50}


def test_mark_as_running_sets_launched_and_started():
    job = make_job(status=JobStatus.QUEUED)
    job.mark_as_running(container_id="abc")
    row = stored(job, "status", "launched_at", "started_at", "container_id")
    assert row["status"] == JobStatus.RUNNING
    assert row["launched_at"] is not None
    assert row["started_at"] is not None
    assert row["container_id"] == "abc"


def test_mark_as_completed_sets_completed_at_and_exit_code():
    job = make_job(status=JobStatus.RUNNING)
    job.mark_as_completed()
    row = stored(job, "status", "completed_at", "exit_code", "progress")
    assert row["status"] == JobStatus.COMPLETED
    assert row["completed_at"] is not None
    assert row["exit_code"] == 0
    assert row["progress"] == 100


def test_mark_as_failed_without_retry_is_final():
    job = make_job(status=JobStatus.RUNNING)
    assert job.mark_as_failed(error="boom", error_code="UNKNOWN_ERROR") is False
    row = stored(job, "status", "last_error", "error_code", "retry_count")
    assert row == {
        "status": JobStatus.FAILED,
        "last_error": "boom",
        "error_code": "UNKNOWN_ERROR",
        "retry_count": 1,
    }


def test_mark_as_failed_with_retry_schedules_until_the_limit():
    job = make_job(status=JobStatus.VALIDATING, max_retries=3)
    before = timezone.now()
    assert job.mark_as_failed(should_retry=True, error="daemon down") is True
    row = stored(job, "status", "retry_count", "scheduled_for")
    assert row["status"] == JobStatus.RETRYING
    assert row["retry_count"] == 1
    # default strategy: first retry after 2 s, ±20 %
    assert before + timedelta(seconds=1.6) <= row["scheduled_for"]
    assert row["scheduled_for"] <= timezone.now() + timedelta(seconds=2.4)
    job.transition_to(JobStatus.VALIDATING)
    assert job.mark_as_failed(should_retry=True) is True
    job.transition_to(JobStatus.VALIDATING)
    assert job.mark_as_failed(should_retry=True) is False
    assert stored(job, "status", "retry_count") == {"status": JobStatus.FAILED, "retry_count": 3}


def test_mark_as_cancelled_and_timeout():
    job = make_job(status=JobStatus.RUNNING, timeout_seconds=5)
    job.mark_as_timeout()
    row = stored(job, "status", "error_code", "last_error")
    assert row == {
        "status": JobStatus.TIMEOUT,
        "error_code": "SYSTEM_TIMEOUT",
        "last_error": "Timed out after 5 s",
    }
    other = make_job(status=JobStatus.QUEUED)
    other.mark_as_cancelled()
    assert stored(other, "status") == {"status": JobStatus.CANCELLED}


def test_every_status_can_answer_can_transition_to():
    job = ContainerJob(command="true")
    for current, targets in TRANSITIONS.items():
        job.status = current
        assert {t for t in JobStatus.values if job.can_transition_to(t)} == set(targets)


# Properties ---------------------------------------------------------------------


def test_queue_status_values():
    now = timezone.now()
    assert make_job().queue_status == "not_queued"
    assert make_job(status=JobStatus.QUEUED, queued_at=now).queue_status == "queued"
    future = now + timedelta(hours=1)
    scheduled = make_job(status=JobStatus.QUEUED, queued_at=now, scheduled_for=future)
    assert scheduled.queue_status == "scheduled"
    assert scheduled.is_queued
    assert not scheduled.is_ready_to_launch
    launched = make_job(status=JobStatus.RUNNING, queued_at=now, launched_at=now)
    assert launched.queue_status == "launched"
    failed = make_job(status=JobStatus.FAILED, queued_at=now)
    assert failed.queue_status == "launch_failed"


def test_queue_status_filter_matches_the_property_for_every_job():
    now = timezone.now()
    jobs = [
        make_job(),
        make_job(status=JobStatus.QUEUED, queued_at=now),
        make_job(status=JobStatus.RETRYING, queued_at=now, scheduled_for=now + timedelta(hours=1)),
        make_job(status=JobStatus.VALIDATING, queued_at=now),
        make_job(status=JobStatus.RUNNING, queued_at=now, launched_at=now),
        make_job(status=JobStatus.FAILED, queued_at=now),
        make_job(status=JobStatus.PAUSED, queued_at=now),
        make_job(status=JobStatus.CANCELLED),
    ]
    for value in ("not_queued", "queued", "scheduled", "launched", "launch_failed"):
        expected = {j.pk for j in jobs if j.queue_status == value}
        assert (
            set(ContainerJob.objects.with_queue_status(value).values_list("pk", flat=True))
            == expected
        )
    with pytest.raises(ValueError, match="Unknown queue status"):
        ContainerJob.objects.with_queue_status("bogus")


def test_duration_from_start_to_completion():
    start = timezone.now() - timedelta(seconds=90)
    job = make_job(
        status=JobStatus.COMPLETED, started_at=start, completed_at=start + timedelta(seconds=30)
    )
    assert job.duration == timedelta(seconds=30)
    assert make_job().duration is None
