"""Output that is not text is stored, on real PostgreSQL, with the real engine and processes.

PostgreSQL's text columns refuse NUL; bytes that are not UTF-8 cannot be
decoded. Both become U+FFFD (docs/api-reference.md, "Output"), the job ends
as it would with plain text, and its container is removed.
"""

from __future__ import annotations

import pytest

from container_manager.executors import close_executors
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.acceptance.worker_process import wait_until
from tests.docker_fixtures import DOCKER_URL, RUN_ID, TEST_IMAGE
from tests.unit.test_worker import Running

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 60
#: NUL and a byte that is never UTF-8 among plain text, on both streams.
COMMAND = r'''sh -c "printf 'a\000b\377cd\n'; printf 'e\000f\n' >&2"'''
EXPECTED_STDOUT = "a\ufffdb\ufffdcd\n"
EXPECTED_STDERR = "e\ufffdf\n"


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "process"])
def host(request, tmp_path):
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
        row = ExecutorHost.objects.create(
            name=f"binary-docker-{RUN_ID}",
            executor_type="docker",
            connection_string=DOCKER_URL,
            executor_config={"default_network": "none"},
            auto_pull_images=False,
        )
    else:
        (tmp_path / "out").mkdir()
        row = ExecutorHost.objects.create(
            name=f"binary-process-{RUN_ID}",
            executor_type="process",
            executor_config={"output_dir": str(tmp_path / "out")},
        )
    yield row
    close_executors()


def test_nul_and_invalid_bytes_in_output_are_stored_as_replacement_characters(
    host, request, tmp_path
):
    fields = {"image": TEST_IMAGE} if host.executor_type == "docker" else {}
    job = ContainerJob.objects.create(command=COMMAND, host=host, **fields)
    queue_manager.queue_job(job)
    running = Running(worker_id=f"w-binary-{host.executor_type}", max_concurrent=2)
    try:
        wait_until(lambda: ContainerJob.objects.get(pk=job.pk).is_terminal, WAIT_SECONDS)
    finally:
        running.stop()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.last_error
    assert job.exit_code == 0
    assert job.stdout == EXPECTED_STDOUT
    assert job.stderr == EXPECTED_STDERR
    assert job.attempt == 1
    assert running.stats.errors == []
    if host.executor_type == "docker":
        engine = request.getfixturevalue("docker_engine")
        left = engine.containers.list(
            all=True, filters={"label": f"container_manager.job_id={job.pk}"}
        )
        assert left == [], "the container of a finished job is removed"
    else:
        assert list((tmp_path / "out").iterdir()) == [], "the output directory is removed"
