"""A container reports its own error code with an ``::error CODE detail`` line."""

from __future__ import annotations

import pytest

from container_manager import classification
from container_manager.classification import describe, register_error_code
from container_manager.logcap import parse_error_line
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.operations import queue_task_status
from container_manager.queue import queue_manager
from container_manager.stats import get_statistics
from container_manager.testing import end_job, mock_executor

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "::error OLLAMA_MODEL_NOT_FOUND model llama3 is not pulled",
            ("OLLAMA_MODEL_NOT_FOUND", "model llama3 is not pulled"),
        ),
        ("a\n::error FIRST one\nb\n::error SECOND two\n", ("SECOND", "two")),
        ("::error SECOND two\n::error bad code\n", ("SECOND", "two")),
        ("::error CODE_ONLY", ("CODE_ONLY", "")),
        ("::error lower case", None),
        ("::error 9STARTS_WITH_DIGIT x", None),
        ("::error " + "A" * 65 + " too long", None),
        ("  ::error INDENTED x", None),
        ("no marker here", None),
    ],
)
def test_the_last_well_formed_error_line_counts(text, expected):
    assert parse_error_line(text) == expected


@pytest.fixture
def custom_codes():
    saved = dict(classification.CATALOGUE)
    yield
    classification.CATALOGUE.clear()
    classification.CATALOGUE.update(saved)


def test_a_project_registers_codes_of_its_own(custom_codes):
    entry = register_error_code("MYAPP_BROKEN", "It broke", "Fix it.", transient=False)
    assert describe("MYAPP_BROKEN") == entry
    assert register_error_code("MYAPP_BROKEN", "It broke", "Fix it.", transient=False) == entry
    with pytest.raises(ValueError, match="built-in"):
        register_error_code("DOCKER_PULL_FAILED", "mine", "mine")
    with pytest.raises(ValueError, match="upper-case"):
        register_error_code("my-code", "x", "y")


def run_to_end(stdout: str, stderr: str, exit_code: int) -> ContainerJob:
    host, _ = ExecutorHost.objects.get_or_create(
        name="mock", executor_type="mock", defaults={"executor_config": {"run_seconds": None}}
    )
    ExecutorHost.objects.filter(pk=host.pk).update(
        executor_config={"run_seconds": None, "stdout": stdout, "stderr": stderr}
    )
    host.refresh_from_db()
    from container_manager.executors import close_executors

    close_executors()
    job = ContainerJob.objects.create(command="work", host=host)
    queue_manager.process_job(job)
    assert mock_executor(host).find(job.pk, job.attempt) is not None
    end_job(job, exit_code=exit_code)
    queue_manager.process_job(job)
    job.refresh_from_db()
    return job


def test_a_failed_container_gets_the_code_it_reported():
    job = run_to_end("loading\n", "::error OLLAMA_MODEL_NOT_FOUND model llama3 is not pulled\n", 1)
    assert (job.status, job.exit_code, job.error_code) == ("failed", 1, "OLLAMA_MODEL_NOT_FOUND")
    assert job.last_error == "model llama3 is not pulled (exited with code 1)"
    task = queue_task_status(job.pk)["task"]
    assert task["error_info"]["description"] == "Ollama model not found"
    stats = get_statistics()
    assert stats["error_distribution"]["OLLAMA_MODEL_NOT_FOUND"]["count"] == 1


def test_a_code_without_detail_is_described_from_the_catalogue(custom_codes):
    register_error_code("MYAPP_NO_INPUT", "The day's input is missing", "Upload it.")
    job = run_to_end("::error MYAPP_NO_INPUT\n", "", 4)
    assert job.error_code == "MYAPP_NO_INPUT"
    assert job.last_error == "The day's input is missing (exited with code 4)"


def test_a_container_that_exits_0_completed_whatever_it_printed():
    job = run_to_end("::error OLLAMA_INFERENCE_FAILED but recovered\n", "", 0)
    assert (job.status, job.error_code, job.last_error) == ("completed", "", "")


def test_a_failure_without_an_error_line_keeps_the_exit_code_error():
    job = run_to_end("::error not-a-code here\n", "", 2)
    assert (job.error_code, job.last_error) == ("CONTAINER_EXIT_NONZERO", "Exited with code 2")


@pytest.mark.docker
@pytest.mark.postgres
def test_a_container_on_the_real_engine_reports_its_code(docker_engine, docker_host, test_image):
    from container_manager.containers import containers
    from tests.acceptance.worker_process import remove_containers

    docker_host.save()
    job = ContainerJob.objects.create(
        command='echo "::error DOCKER_BUILD_FAILED step 3/7 failed" >&2; exit 3',
        is_shell_command=True,
        host=docker_host,
        image=test_image,
    )
    try:
        assert queue_manager.process_job(job).detail == "launched"
        ref = containers.current_ref(job)
        assert containers.wait_finished(job.host, [ref], 30), "the container did not end"
        assert queue_manager.process_job(job).detail == "finished"
        job.refresh_from_db()
        assert (job.status, job.exit_code, job.error_code) == ("failed", 3, "DOCKER_BUILD_FAILED")
        assert job.last_error == "step 3/7 failed (exited with code 3)"
    finally:
        remove_containers(docker_engine, [job.pk])
