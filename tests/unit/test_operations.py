"""queue_status, queue_task_status and queue_manage: the answers' shapes, the seed's requests as
written, every action on a real (mock) container, and bad input refused with nothing changed."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from container_manager import operations
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.queue import queue_manager
from container_manager.testing import end_job, mock_executor

pytestmark = pytest.mark.django_db

SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "003_5a691322aa08c968.txt"
#: The keys seed 003 lists under "Enhanced Task Information".
TASK_KEYS = {
    "id",
    "task_type",
    "status",
    "progress",
    "current_step",
    "created_at",
    "started_at",
    "completed_at",
    "duration",
    "error",
    "error_code",
    "error_details",
    "error_info",
    "retry_count",
    "max_retries",
    "can_retry",
}


@pytest.fixture
def host():
    return ExecutorHost.objects.create(
        name="mock", executor_type="mock", executor_config={"run_seconds": None}
    )


def running(host, name="run"):
    job = ContainerJob.objects.create(name=name, command="echo hi", host=host)
    assert queue_manager.process_job(job).detail == "launched"
    return job


def failed(host):
    job = running(host, "fails")
    end_job(job, exit_code=2)
    queue_manager.process_job(job)
    job.refresh_from_db()
    assert job.status == "failed"
    return job


def snapshot():
    return sorted(ContainerJob.objects.values_list("id", "status", "retry_count", "attempt"))


def test_a_tasks_answer_has_every_field_the_seed_lists(host):
    job = failed(host)
    answer = operations.queue_task_status(job.pk, include_logs=True, detailed=True)
    task = answer["task"]
    assert answer["success"] is True
    assert set(task) >= TASK_KEYS | {"status_description", "retry", "logs"}
    assert (task["id"], task["task_type"], task["status"], task["status_description"]) == (
        job.pk,
        "run",
        "failed",
        "Failed",
    )
    assert task["error_code"] == "CONTAINER_EXIT_NONZERO"
    assert task["error_info"]["description"] == "The container exited with a non-zero code"
    assert task["error_details"]["exit_code"] == 2
    assert task["can_retry"] is True
    assert task["retry"] == {"retry_count": 0, "max_retries": 3, "can_retry": True}
    assert task["logs"] == {"stdout": "mock: echo hi\n", "stderr": ""}
    assert task["duration"] >= 0
    assert json.loads(json.dumps(answer)) == answer


def seed_requests() -> list[dict]:
    """The JSON request bodies of seed 003's "Task Management Commands", as written."""
    text = SEED.read_text()
    section = text.split("### 3. Task Management Commands", 1)[1].split("### 4.", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def test_the_seeds_requests_run_as_written():
    requests = seed_requests()
    assert [r["action"] for r in requests] == ["queue_status", "queue_task_status", "queue_manage"]
    status, task, manage = (operations.run(r) for r in requests)
    assert status["success"] is True
    assert "tasks" in status  # detailed: true
    assert task == {
        "success": False,
        "error": "No task with id '123e4567-e89b-12d3-a456-426614174000'",
        "error_code": "QUEUE_TASK_NOT_FOUND",
        "error_info": {
            "description": "Task not found in queue",
            "suggestion": "The job was deleted or dequeued; check its id.",
        },
    }
    # The seed writes the choice of actions as "pause|resume|retry|cancel".
    assert manage["error_code"] == "VALIDATION_INVALID_PARAMS"
    assert "pause, resume, retry, cancel" in manage["error"]


def test_a_1_0_uuid_finds_the_upgraded_job(host):
    job = running(host)
    ContainerJob.objects.filter(pk=job.pk).update(legacy_id="123e4567-e89b-12d3-a456-426614174000")
    answer = operations.run(
        {
            "action": "queue_task_status",
            "params": {"task_id": "123e4567-e89b-12d3-a456-426614174000"},
        }
    )
    assert answer["task"]["id"] == job.pk


def test_pause_resume_cancel_a_running_task_on_its_container(host):
    job = running(host)
    executor = mock_executor(host)
    ref = executor.find(job.pk, job.attempt)

    assert operations.queue_manage("pause", job.pk)["task"]["status"] == "paused"
    assert executor._containers[(ref.job_id, ref.attempt)].is_paused
    assert operations.queue_manage("resume", str(job.pk))["task"]["status"] == "running"
    assert not executor._containers[(ref.job_id, ref.attempt)].is_paused
    answer = operations.queue_manage("cancel", f"#{job.pk}")
    assert (answer["action"], answer["task"]["status"]) == ("cancel", "cancelled")
    assert executor._containers[(ref.job_id, ref.attempt)].ended.exit_code == 137


def test_retry_queues_a_failed_task_again(host):
    job = failed(host)
    answer = operations.queue_manage("retry", job.pk)
    assert answer["task"]["status"] == "queued"
    assert answer["task"]["can_retry"] is False


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("retry", "QUEUE_TASK_ALREADY_RUNNING"),
        ("resume", "QUEUE_TASK_INVALID_STATE"),
    ],
)
def test_an_action_the_tasks_state_refuses_changes_nothing(host, action, code):
    job = running(host)
    before = snapshot()
    with pytest.raises(operations.OperationError) as caught:
        operations.queue_manage(action, job.pk)
    assert (caught.value.code, caught.value.kind) == (code, "conflict")
    assert f"task {job.pk}" in caught.value.message.lower()
    assert snapshot() == before


def test_a_finished_task_cannot_be_paused_or_cancelled(host):
    job = failed(host)
    before = snapshot()
    for action in ("pause", "cancel", "resume"):
        answer = operations.run(
            {"action": "queue_manage", "params": {"action": action, "task_id": job.pk}}
        )
        assert answer["error_code"] == "QUEUE_TASK_INVALID_STATE", action
    assert snapshot() == before


def test_whole_queues_and_hosts_are_paused_and_resumed(host):
    assert operations.queue_manage("pause", queue="reports")["queue"] == {
        "name": "reports",
        "is_paused": True,
    }
    assert JobQueue.objects.get(name="reports").is_paused
    assert operations.queue_manage("resume", queue="reports")["queue"]["is_paused"] is False
    assert operations.queue_manage("pause", host="mock")["host"] == {
        "name": "mock",
        "is_paused": True,
    }
    assert operations.queue_manage("resume", host="mock")["host"]["is_paused"] is False
    with pytest.raises(operations.OperationError, match="No host named 'nope'"):
        operations.queue_manage("pause", host="nope")


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        ("not a dict", "VALIDATION_INVALID_PARAMS", "object with action and params"),
        (
            {"action": "queue_delete"},
            "VALIDATION_INVALID_PARAMS",
            "queue_status, queue_task_status",
        ),
        (
            {"action": "queue_status", "extra": 1},
            "VALIDATION_INVALID_PARAMS",
            "Unknown request fields",
        ),
        (
            {"action": "queue_status", "params": []},
            "VALIDATION_INVALID_PARAMS",
            "params must be an object",
        ),
        (
            {"action": "queue_status", "params": {"detailed": "yes"}},
            "VALIDATION_INVALID_PARAMS",
            "true or false",
        ),
        (
            {"action": "queue_status", "params": {"verbose": True}},
            "VALIDATION_INVALID_PARAMS",
            "Unknown params",
        ),
        (
            {"action": "queue_task_status", "params": {}},
            "VALIDATION_MISSING_REQUIRED",
            "needs task_id",
        ),
        (
            {"action": "queue_task_status", "params": {"task_id": -3}},
            "VALIDATION_INVALID_FORMAT",
            "-3",
        ),
        (
            {"action": "queue_task_status", "params": {"task_id": True}},
            "VALIDATION_INVALID_FORMAT",
            "True",
        ),
        (
            {"action": "queue_task_status", "params": {"task_id": 2**70}},
            "VALIDATION_INVALID_FORMAT",
            "task_id",
        ),
        (
            {"action": "queue_task_status", "params": {"task_id": "1; DROP"}},
            "VALIDATION_INVALID_FORMAT",
            "DROP",
        ),
        (
            {"action": "queue_task_status", "params": {"task_id": 999999}},
            "QUEUE_TASK_NOT_FOUND",
            "999999",
        ),
        (
            {"action": "queue_manage", "params": {"task_id": 1}},
            "VALIDATION_MISSING_REQUIRED",
            "needs action",
        ),
        (
            {"action": "queue_manage", "params": {"action": "retry", "queue": "q"}},
            "VALIDATION_INVALID_PARAMS",
            "applies to a task",
        ),
        (
            {"action": "queue_manage", "params": {"action": "pause"}},
            "VALIDATION_INVALID_PARAMS",
            "exactly one",
        ),
        (
            {"action": "queue_manage", "params": {"action": "pause", "queue": "  "}},
            "VALIDATION_INVALID_PARAMS",
            "queue name",
        ),
    ],
)
def test_bad_requests_get_a_specific_error_and_change_nothing(host, request_, code, words):
    running(host)
    before = snapshot()
    answer = operations.run(request_)
    assert answer["success"] is False
    assert answer["error_code"] == code
    assert words in answer["error"]
    assert answer["error_info"]["description"]
    assert snapshot() == before
    assert not JobQueue.objects.exists()


# The commands ------------------------------------------------------------------


def command(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def test_the_commands_print_the_same_shapes_with_json(host):
    job = failed(host)
    assert json.loads(
        command("queue_task_status", str(job.pk), "--json")
    ) == operations.queue_task_status(job.pk)
    shown = json.loads(command("queue_status", "--json", "--detailed"))
    assert [t["id"] for t in shown["tasks"]] == [job.pk]
    assert (
        json.loads(command("queue_manage", "retry", str(job.pk), "--json"))["task"]["status"]
        == "queued"
    )


def test_the_commands_print_readable_lines(host):
    job = failed(host)
    text = command("queue_status", "--detailed")
    assert "Tasks: 1 in all, 0 running, 0 waiting, capacity 10" in text
    assert re.search(rf"^{job.pk}\s+fails\s+failed\s+default", text, re.M)
    text = command("queue_task_status", str(job.pk), "--include-logs")
    assert "Error       CONTAINER_EXIT_NONZERO" in text
    assert "Suggestion  Read the job's stderr; the command itself failed." in text
    assert "mock: echo hi" in text
    assert command("queue_manage", "pause", "--host", "mock") == "Paused host mock\n"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("queue_task_status", "424242"), 3, "No task with id '424242' (QUEUE_TASK_NOT_FOUND)"),
        (("queue_task_status", "abc"), 2, "(VALIDATION_INVALID_FORMAT)"),
        (
            ("queue_manage", "pause", "1", "--queue", "q"),
            2,
            "exactly one of task_id, queue or host",
        ),
        (("queue_manage", "resume", "--host", "missing"), 3, "No host named 'missing'"),
    ],
)
def test_the_commands_exit_status_says_what_went_wrong(host, args, status, message):
    with pytest.raises(CommandError) as caught:
        command(*args)
    assert caught.value.returncode == status
    assert message in str(caught.value)


def test_a_refused_action_exits_1_and_prints_the_json_error(host):
    job = running(host)
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("queue_manage", "retry", str(job.pk), "--json", stdout=out, stderr=StringIO())
    assert caught.value.returncode == 1
    assert json.loads(out.getvalue())["error_code"] == "QUEUE_TASK_ALREADY_RUNNING"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_script_sees_the_exit_status_of_the_real_command():
    import subprocess
    import sys

    from tests.acceptance.worker_process import ROOT, worker_env

    done = subprocess.run(
        [sys.executable, "manage.py", "queue_task_status", "424242"],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "No task with id '424242' (QUEUE_TASK_NOT_FOUND)" in done.stderr


def test_the_seeds_requests_as_commands(host):
    """Each request of the seed, given to the command of the same name."""
    status, task, manage = seed_requests()
    args = ["queue_status", "--json"]
    args += ["--detailed"] if status["params"]["detailed"] else []
    args += ["--include-logs"] if status["params"]["include_logs"] else []
    assert json.loads(command(*args))["success"] is True

    with pytest.raises(CommandError) as caught:
        command(
            "queue_task_status",
            task["params"]["task_id"],
            *(["--include-logs"] if task["params"]["include_logs"] else []),
            *(["--detailed"] if task["params"]["detailed"] else []),
        )
    assert caught.value.returncode == 3
    assert "QUEUE_TASK_NOT_FOUND" in str(caught.value)

    with pytest.raises(
        CommandError, match=re.escape("invalid choice: 'pause|resume|retry|cancel'")
    ):
        command("queue_manage", manage["params"]["action"], manage["params"]["task_id"])
