"""``queue_job``: a job from the command line, after others, as an array, or unique."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from container_manager.models import ContainerJob, ExecutorHost

pytestmark = pytest.mark.django_db


def command(*args: str) -> str:
    out = StringIO()
    call_command("queue_job", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_job_is_queued_with_its_fields():
    ExecutorHost.objects.create(name="local", executor_type="process")
    printed = command(
        "echo $GREETING",
        "--shell",
        "--name",
        "hello",
        "--env",
        "GREETING=hi",
        "--host",
        "local",
        "--priority",
        "80",
    )
    job = ContainerJob.objects.get()
    assert printed == f"Job {job.pk} (hello): queued\n"
    assert (job.command, job.is_shell_command, job.environment, job.priority, job.host.name) == (
        "echo $GREETING",
        True,
        {"GREETING": "hi"},
        80,
        "local",
    )


def test_after_array_and_unique_key_from_the_command_line():
    first = json.loads(command("make data", "--json"))["tasks"][0]
    printed = command("use data", "--after", str(first["id"]), "--name", "use")
    use = ContainerJob.objects.get(name="use")
    assert printed == f"Job {use.pk} (use): queued, after {first['id']}\n"
    array = command("shard", "--array", "3", "--name", "part")
    assert array.startswith("Queued 3 jobs ")
    assert "(part[0] to part[2])" in array
    one = command("sync", "--unique-key", "sync", "--name", "sync")
    again = command("sync", "--unique-key", "sync", "--name", "sync again")
    assert one == again  # The job holding the key answers.
    assert ContainerJob.objects.filter(unique_key="sync").count() == 1


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("x", "--env", "NOEQUALS"), 2, "--env takes NAME=value"),
        (("x", "--priority", "101"), 2, "priority"),
        (("x", "--after", "999"), 3, "No job with id 999 to wait for"),
        (("x", "--host", "nowhere"), 3, "No host named 'nowhere'"),
        (("x", "--unique-for", "60"), 2, "unique_for needs a unique_key"),
        (("x", "--array", "0"), 2, "An array has 1 to"),
    ],
)
def test_bad_input_exits_with_a_status_and_a_specific_message(args, status, message):
    with pytest.raises(CommandError) as caught:
        command(*args)
    assert caught.value.returncode == status
    assert message in str(caught.value)
    assert not ContainerJob.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_script_sees_the_exit_status_of_the_real_command():
    from tests.acceptance.worker_process import ROOT, worker_env

    done = subprocess.run(
        [sys.executable, "manage.py", "queue_job", "x", "--after", "424242"],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "No job with id 424242 to wait for (QUEUE_TASK_NOT_FOUND)" in done.stderr
