"""@task functions run in Docker containers, in an image of this project built by the test.

The image holds this run's Python, its packages and the project
(:mod:`tests.tasks.python_image`); each task's container runs on the real
engine, with the host's network so that it reaches the test database, under
a real worker process. The engine's own record of the containers is the
witness that each task ran in a container of that image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.test import override_settings

from container_manager.executors.base import LABEL_JOB
from container_manager.models import ExecutorHost
from container_manager.tasks.compat import TaskResultStatus
from tests.acceptance.worker_process import (
    WorkerProcess,
    database_url,
    remove_containers,
    wait_until,
)
from tests.docker_fixtures import DOCKER_URL
from tests.tasks import examples, python_image

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="session")
def project_image(docker_engine) -> str:
    return python_image.build(docker_engine)


def test_tasks_run_in_containers_of_the_projects_image(docker_engine, project_image):
    ExecutorHost.objects.create(
        name="tasks-docker",
        executor_type="docker",
        connection_string=DOCKER_URL,
        auto_pull_images=False,
        max_concurrent_jobs=4,
    )
    tasks = {
        examples.BACKEND: {
            "BACKEND": "container_manager.tasks.ContainerBackend",
            "OPTIONS": {
                "host": "tasks-docker",
                "image": project_image,
                "network": "host",
                "command": [sys.executable, "-m", "container_manager.tasks"],
                "working_directory": str(ROOT),
                "memory_limit_mb": 256,
                "environment": {
                    "DATABASE_URL": database_url(),
                    "DJANGO_SETTINGS_MODULE": "tests.settings_fast",
                },
            },
        }
    }
    with override_settings(TASKS=tasks):
        added = examples.add.enqueue(40, 2)
        failed = examples.boom.enqueue("in a container")
        counted = examples.count_hosts.enqueue()
        results = [added, failed, counted]
        worker = WorkerProcess("--worker-id=tasks-docker")
        try:
            worker.wait_ready(30)

            def finished() -> bool:
                for result in results:
                    result.refresh()
                return all(result.is_finished for result in results)

            wait_until(finished, 90, 0.5, what="the three tasks finished")
        finally:
            worker.stop()
            ids = [int(result.id) for result in results]
        try:
            assert (added.status, added.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
            assert counted.return_value == 1
            assert failed.status == TaskResultStatus.FAILED
            assert failed.errors[0].exception_class is ValueError
            assert "ValueError: in a container" in failed.errors[0].traceback
            for job_id in ids:
                [container] = docker_engine.containers.list(
                    all=True, filters={"label": f"{LABEL_JOB}={job_id}"}
                )
                assert container.attrs["Config"]["Image"] == project_image
                assert container.attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
        finally:
            remove_containers(docker_engine, ids)
