"""Schedules: validation, fire times in a time zone, catch-up, concurrency, exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from container_manager.executors.base import LaunchSpec
from container_manager.models import ContainerJob, Schedule
from container_manager.queue import queue_manager

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make(**fields) -> Schedule:
    fields.setdefault("name", "nightly")
    fields.setdefault("cron", "*/5 * * * *")
    fields.setdefault("job", {"command": "report"})
    return Schedule.objects.create(**fields)


def jobs_of(schedule: Schedule) -> list[tuple[str, str]]:
    return [
        (job.scheduled_fire_at.strftime("%H:%M:%S"), job.status)
        for job in ContainerJob.objects.filter(schedule=schedule).order_by("scheduled_fire_at")
    ]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "is not a valid cron expression"),
        ({"cron": "* * * *"}, "cron", "has 4 fields"),
        ({"timezone": "Mars/Olympus"}, "timezone", "is not a time zone name"),
        ({"job": {"command": "x", "colour": "red"}}, "job", "Unknown job field(s) colour"),
        ({"job": {"command": "x", "priority": 101}}, "job", "priority"),
        ({"job": ["not", "an", "object"]}, "job", "Must be an object"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(fields, field, words):
    with pytest.raises(ValidationError) as caught:
        make(**fields)
    assert words in " ".join(caught.value.message_dict[field])
    assert not Schedule.objects.exists()


def test_fire_times_follow_the_time_zone_including_its_clock_changes():
    schedule = make(cron="0 2 * * *", timezone="Europe/Paris")
    winter = schedule.fire_times_after(at("2026-01-10T12:00:00"), 1)
    assert winter == [at("2026-01-11T01:00:00")]
    # 2026-03-29: 02:00 does not exist in Paris; croniter fires at 03:00 (01:00 UTC).
    spring = schedule.fire_times_after(at("2026-03-28T12:00:00"), 2)
    assert spring == [at("2026-03-29T01:00:00"), at("2026-03-30T00:00:00")]
    assert schedule.next_fire_at is not None


def test_each_fire_time_makes_one_job_however_often_it_is_fired():
    schedule = make()
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=at("2026-12-07T10:05:00"))
    made = queue_manager.fire_schedules(now=at("2026-12-07T10:05:00.400"))
    assert [job.scheduled_fire_at for job in made] == [at("2026-12-07T10:05:00")]
    # A second worker reading the same schedule row at the same moment:
    schedule.refresh_from_db()
    assert schedule.next_fire_at == at("2026-12-07T10:10:00")
    assert queue_manager._fire_once(schedule, at("2026-12-07T10:05:00")) is None
    assert queue_manager.fire_schedules(now=at("2026-12-07T10:05:00.900")) == []
    assert jobs_of(schedule) == [("10:05:00", "queued")]
    job = made[0]
    job.attempt = 1
    assert LaunchSpec.from_job(job).environment["CM_SCHEDULE_FIRE_AT"] == (
        "2026-12-07T10:05:00+00:00"
    )


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("skip", []),
        ("once", ["10:25:00"]),
        ("all", ["10:15:00", "10:20:00", "10:25:00"]),
    ],
)
def test_missed_fire_times_follow_the_catch_up_policy(catch_up, expected):
    schedule = make(catch_up=catch_up, max_catch_up=3)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=at("2026-12-07T10:00:00"))
    queue_manager.fire_schedules(now=at("2026-12-07T10:28:00"))
    assert [time for time, _ in jobs_of(schedule)] == expected
    schedule.refresh_from_db()
    assert schedule.next_fire_at == at("2026-12-07T10:30:00")


def test_a_fire_time_on_time_runs_with_catch_up_skip():
    schedule = make(catch_up="skip")
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=at("2026-12-07T10:00:00"))
    queue_manager.fire_schedules(now=at("2026-12-07T10:20:30"))
    assert [time for time, _ in jobs_of(schedule)] == ["10:20:00"]


@pytest.mark.parametrize(
    ("concurrency", "expected"),
    [
        ("allow", [("10:00:00", "queued"), ("10:05:00", "queued")]),
        ("forbid", [("10:00:00", "queued")]),
        ("replace", [("10:00:00", "cancelled"), ("10:05:00", "queued")]),
    ],
)
def test_a_run_still_going_follows_the_concurrency_policy(concurrency, expected):
    schedule = make(concurrency=concurrency)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=at("2026-12-07T10:00:00"))
    queue_manager.fire_schedules(now=at("2026-12-07T10:00:01"))
    queue_manager.fire_schedules(now=at("2026-12-07T10:05:01"))
    assert jobs_of(schedule) == expected


def test_a_suspended_schedule_does_not_fire_and_resumes_from_now():
    schedule = make()
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=at("2026-12-07T10:00:00"))
    queue_manager.suspend_schedule(schedule)
    assert queue_manager.fire_schedules(now=at("2026-12-07T10:30:00")) == []
    before = timezone.now()
    queue_manager.resume_schedule(schedule)
    assert before < schedule.next_fire_at <= before + timedelta(minutes=5)
    assert not schedule.is_suspended
    assert jobs_of(schedule) == []


def test_a_wall_clock_time_that_comes_twice_fires_once():
    schedule = make(cron="30 2 * * *", timezone="Europe/Paris")
    # 2026-10-25: 02:30 comes at 00:30 UTC (summer time) and again at 01:30 UTC.
    assert schedule.fire_times_after(at("2026-10-24T12:00:00"), 2) == [
        at("2026-10-25T00:30:00"),
        at("2026-10-26T01:30:00"),
    ]
    Schedule.objects.filter(pk=schedule.pk).update(
        next_fire_at=at("2026-10-25T00:30:00"), catch_up="all"
    )
    schedule.refresh_from_db()
    queue_manager.fire_schedules(now=at("2026-10-25T01:45:00"))
    assert [time for time, _ in jobs_of(schedule)] == ["00:30:00"]


def test_last_fired_at_names_the_last_fire_time_that_made_a_job():
    schedule = make(concurrency="forbid")
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=at("2026-12-07T10:00:00"))
    queue_manager.fire_schedules(now=at("2026-12-07T10:00:01"))
    queue_manager.fire_schedules(now=at("2026-12-07T10:05:01"))  # forbidden: no job
    schedule.refresh_from_db()
    assert schedule.last_fired_at == at("2026-12-07T10:00:00")


def test_a_user_who_may_only_view_schedules_cannot_suspend_them(client):
    from django.contrib.auth.models import Permission, User
    from django.urls import reverse

    schedule = make()
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client.force_login(viewer)
    page = client.get(reverse("admin:container_manager_schedule_changelist"))
    assert page.status_code == 200
    assert "suspend_selected" not in page.content.decode()
    client.post(
        reverse("admin:container_manager_schedule_changelist"),
        {"action": "suspend_selected", "_selected_action": [schedule.pk]},
    )
    assert not Schedule.objects.get().is_suspended
