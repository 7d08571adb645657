"""Schedules from the command line, the API and the admin."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from container_manager.models import ExecutorHost, Schedule

pytestmark = pytest.mark.django_db


def command(*args: str) -> str:
    out = StringIO()
    call_command("queue_schedule", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_schedule_is_added_listed_suspended_and_resumed_from_the_command_line():
    ExecutorHost.objects.create(name="local", executor_type="process")
    added = command(
        "add",
        "nightly",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Paris",
        "--command",
        "python report.py",
        "--host",
        "local",
        "--concurrency",
        "forbid",
    )
    assert added.startswith("Added schedule nightly: next fire times ")
    schedule = Schedule.objects.get()
    assert (schedule.job, schedule.host.name, schedule.concurrency) == (
        {"command": "python report.py"},
        "local",
        "forbid",
    )
    listed = json.loads(command("list", "--json"))["results"]
    assert [(row["name"], len(row["next_fire_times"])) for row in listed] == [("nightly", 3)]
    assert command("suspend", "nightly") == (
        "Suspended schedule nightly: next fire times none while suspended\n"
    )
    assert Schedule.objects.get().is_suspended
    assert command("resume", "nightly").startswith("Resumed schedule nightly: next fire times ")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("add", "x", "--cron", "99 * * * *", "--command", "c"), 2, "is not a valid cron"),
        (("add", "x", "--command", "c"), 2, "A cron expression is needed"),
        (("add", "x", "--cron", "* * * * *", "--job", "{nope"), 2, "--job is not JSON"),
        (("add", "x", "--cron", "* * * * *", "--host", "none"), 3, "No host named 'none'"),
        (("suspend", "missing"), 3, "No schedule named 'missing'"),
        (("suspend",), 2, "suspend needs a NAME"),
    ],
)
def test_bad_input_exits_with_a_status_and_a_specific_message(args, status, message):
    with pytest.raises(CommandError) as caught:
        command(*args)
    assert caught.value.returncode == status
    assert message in str(caught.value)
    assert not Schedule.objects.exists()


def test_the_api_makes_lists_and_suspends_schedules(admin_client):
    made = admin_client.post(
        "/api/schedules/",
        json.dumps({"name": "hourly", "cron": "0 * * * *", "job": {"command": "sync"}}),
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    assert made.json()["schedule"]["cron"] == "0 * * * *"
    bad = admin_client.post(
        "/api/schedules/",
        json.dumps({"name": "bad", "cron": "every hour", "job": {}}),
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "VALIDATION_INVALID_PARAMS"
    suspended = admin_client.post("/api/schedules/hourly/suspend/")
    assert suspended.json()["schedule"]["is_suspended"] is True
    listed = admin_client.get("/api/schedules/").json()["results"]
    assert [row["name"] for row in listed] == ["hourly"]
    assert admin_client.post("/api/schedules/nope/resume/").status_code == 404


def test_the_admin_shows_next_fire_times_and_suspends(admin_client):
    schedule = Schedule.objects.create(name="every5", cron="*/5 * * * *", job={"command": "x"})
    page = admin_client.get(reverse("admin:container_manager_schedule_change", args=[schedule.pk]))
    assert page.status_code == 200
    assert page.content.decode().count("<time datetime=") >= 5
    listing = admin_client.post(
        reverse("admin:container_manager_schedule_changelist"),
        {"action": "suspend_selected", "_selected_action": [schedule.pk]},
        follow=True,
    )
    assert "Suspended 1 schedule(s)." in listing.content.decode()
    assert Schedule.objects.get().is_suspended
