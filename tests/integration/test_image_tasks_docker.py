"""Image tasks end to end: real worker processes, the real engine and real registries.

A build that pushes, and the job waiting for it running the new image; a
failing build and the job waiting for it; a pull the registry cannot serve;
a push to a registry that needs credentials, without and with them; a build
cancelled mid-way and a worker killed mid-build. The witnesses are the
registry's own answers (its manifests) and the engine's (its images and
containers), not only the jobs' rows.
"""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.request

import pytest

from container_manager.models import ContainerJob
from container_manager.queue import queue_manager
from container_manager.states import TERMINAL_STATUSES
from tests.acceptance.worker_process import WorkerProcess, make_docker_host, wait_until
from tests.docker_fixtures import REGISTRY, RUN_ID, TEST_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def row(job: ContainerJob) -> ContainerJob:
    return ContainerJob.objects.get(pk=job.pk)


def ended(*jobs: ContainerJob, timeout: float = 120) -> None:
    wait_until(
        lambda: all(row(job).status in TERMINAL_STATUSES for job in jobs),
        timeout=timeout,
        interval=0.2,
        what=f"jobs {[job.pk for job in jobs]} to end",
    )


def registry_digest(address: str, reference: str, auth: tuple[str, str] | None = None) -> str:
    """The digest the registry itself gives for ``reference`` (its manifest's)."""
    name, _, tag = reference.removeprefix(f"{address}/").rpartition(":")
    request = urllib.request.Request(
        f"http://{address}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
    )
    if auth is not None:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.headers["Docker-Content-Digest"])


@pytest.fixture
def images(docker_engine):
    """Tags made by a test, removed from the engine at its end."""
    made: list[str] = []
    yield made
    for tag in made:
        with contextlib.suppress(Exception):
            docker_engine.images.remove(tag, force=True)


@pytest.fixture
def worker():
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        process = WorkerProcess("--max-concurrent", "3", *args, **env)
        started.append(process)
        process.wait_ready(30)
        return process

    yield start
    for process in started:
        process.stop()


def test_a_build_pushes_and_the_job_waiting_for_it_runs_the_new_image(
    registry, images, worker, docker_engine
):
    host = make_docker_host()
    tag = f"{REGISTRY}/cm-it-{RUN_ID}/app:1"
    images.append(tag)
    build = queue_manager.build_image(
        tag,
        host=host,
        dockerfile=f"FROM {TEST_IMAGE}\nARG WHAT\nRUN echo built-$WHAT > /built\n",
        build_args={"WHAT": "here"},
        labels={"com.example.run": RUN_ID},
        push=True,
    )
    run = queue_manager.queue_after(
        ContainerJob(name="use it", image=tag, command="cat /built", host=host), after=[build]
    )
    assert list(ContainerJob.objects.ready().values_list("pk", flat=True)) == [build.pk]
    worker()
    ended(build, run)
    built = row(build)
    assert (built.status, built.kind, built.exit_code, built.progress) == (
        "completed",
        "image_build",
        0,
        100,
    )
    assert "Step 2/4 : ARG WHAT" in built.stdout
    assert built.image_result["pushed"] == {tag: built.image_result["digest"]}
    # The registry holds what the job says it pushed.
    assert registry_digest(REGISTRY, tag) == built.image_result["digest"]
    # The engine holds the image with its label.
    assert docker_engine.images.get(tag).labels["com.example.run"] == RUN_ID
    used = row(run)
    assert (used.status, used.stdout) == ("completed", "built-here\n")
    assert used.started_at >= built.completed_at


def test_a_failing_build_fails_with_its_log_and_the_job_waiting_for_it(registry, worker):
    host = make_docker_host()
    build = queue_manager.build_image(
        f"cm-it-{RUN_ID}/broken:1",
        host=host,
        dockerfile=f"FROM {TEST_IMAGE}\nRUN echo about to fail && exit 7\n",
    )
    waiting = queue_manager.queue_after(ContainerJob(name="never", host=host), after=[build])
    missing = queue_manager.pull_image(f"{REGISTRY}/cm-it-{RUN_ID}/absent:1", host=host)
    worker()
    ended(build, waiting, missing)
    failed = row(build)
    assert (failed.status, failed.error_code) == ("failed", "DOCKER_BUILD_FAILED")
    assert "about to fail" in failed.stdout
    assert failed.retry_count == 1  # Permanent: not tried again.
    stuck = row(waiting)
    assert (stuck.status, stuck.error_code) == ("failed", "DEPENDENCY_FAILED")
    assert f"Job {build.pk}, which this job waits for, ended failed" in stuck.last_error
    assert stuck.launched_at is None
    absent = row(missing)
    assert (absent.status, absent.error_code) == ("failed", "DOCKER_IMAGE_NOT_FOUND")


def test_a_push_to_a_registry_that_needs_credentials(auth_registry, images, worker, docker_engine):
    host = make_docker_host()
    address = auth_registry["address"]
    tag = f"{address}/cm-it-{RUN_ID}/private:1"
    docker_engine.images.get(TEST_IMAGE).tag(tag)
    images.append(tag)
    refused = queue_manager.push_image(tag, host=host, name="without credentials")
    first = worker()
    ended(refused)
    denied = row(refused)
    assert (denied.status, denied.error_code) == ("failed", "DOCKER_AUTHENTICATION_FAILED")
    assert denied.retry_count == 1
    first.signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0

    password = auth_registry["password"]
    pushed = queue_manager.push_image(tag, host=host, name="with credentials")
    worker(
        CM_TEST_REGISTRY=f"{address}={auth_registry['username']}",
        CM_TEST_REGISTRY_PASSWORD=password,
    )
    ended(pushed)
    done = row(pushed)
    assert done.status == "completed", done.last_error
    assert (
        registry_digest(address, tag, (auth_registry["username"], password))
        == (done.image_result["digest"])
    )
    # The password is in no row and no line of the worker's output.
    stored = json.dumps(list(ContainerJob.objects.values()), default=str)
    assert password not in stored


def test_a_build_cancelled_mid_way_stops_on_the_engine(worker, docker_engine):
    host = make_docker_host()
    build = queue_manager.build_image(
        f"cm-it-{RUN_ID}/slow:1",
        host=host,
        dockerfile=f"FROM {TEST_IMAGE}\nRUN sleep 47\nRUN echo never\n",
    )
    process = worker()

    def sleeping_build_containers() -> list:
        return [
            c
            for c in docker_engine.api.containers(filters={"status": "running"})
            if "sleep 47" in (c.get("Command") or "")
        ]

    wait_until(lambda: row(build).status == "building", timeout=60, what="the build to start")
    wait_until(sleeping_build_containers, timeout=60, what="the RUN step's container")
    queue_manager.cancel_job(row(build))
    process.wait_for_line(f"Image task {build.pk} stopped", timeout=15)
    # The engine's own answer: the step's container is gone, well before its 47 s.
    wait_until(lambda: not sleeping_build_containers(), timeout=15, what="the build to stop")
    assert row(build).status == "cancelled"
    assert "never" not in row(build).stdout


def test_a_build_whose_worker_is_killed_is_done_again_by_another(worker, images, docker_engine):
    host = make_docker_host()
    tag = f"cm-it-{RUN_ID}/again:1"
    images.append(tag)
    build = queue_manager.build_image(
        tag, host=host, dockerfile=f"FROM {TEST_IMAGE}\nRUN sleep 3\nRUN echo done > /done\n"
    )
    first = worker()
    wait_until(lambda: row(build).status == "building", timeout=60, what="the build to start")
    first.signal(signal.SIGKILL)
    first.wait_exit(10)
    worker()
    ended(build, timeout=120)
    done = row(build)
    assert (done.status, done.attempt, done.error_code) == ("completed", 2, "")
    assert docker_engine.images.get(tag).id == done.image_result["image_id"]


def test_a_launch_pulls_from_a_registry_that_needs_credentials(
    auth_registry, images, worker, docker_engine
):
    host = make_docker_host(auto_pull_images=True)
    address = auth_registry["address"]
    tag = f"{address}/cm-it-{RUN_ID}/runner:1"
    images.append(tag)
    pushed = queue_manager.push_image(tag, host=host, name="publish")
    # The image goes to the registry, then leaves the engine: the launch must pull it.
    docker_engine.images.get(TEST_IMAGE).tag(tag)
    credentials = {
        "CM_TEST_REGISTRY": f"{address}={auth_registry['username']}",
        "CM_TEST_REGISTRY_PASSWORD": auth_registry["password"],
    }
    first = worker(**credentials)
    ended(pushed)
    assert row(pushed).status == "completed", row(pushed).last_error
    first.signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0
    docker_engine.images.remove(tag, force=True)
    job = queue_manager.create_and_queue(name="run it", image=tag, command="echo pulled", host=host)
    worker(**credentials)
    ended(job)
    done = row(job)
    assert (done.status, done.stdout) == ("completed", "pulled\n"), done.last_error
