"""Image tasks and dependencies in the queue, with an in-memory executor.

The engine's side (streams, progress, errors) is tested against the real
engine and registry in tests/integration/; here the point is what the queue
writes: the kinds, the phases, the outcomes, cancel, timeout, a stopping
worker, and jobs that wait for jobs.
"""

from __future__ import annotations

import io
import tarfile
import threading

import pytest
from django.core.exceptions import ValidationError

from container_manager import operations
from container_manager.exceptions import ImageBuildError, RegistryError
from container_manager.executors.base import ImageStep
from container_manager.models import ContainerJob, ExecutorHost, ImageBuildContext, JobDependency
from container_manager.queue import queue_manager
from container_manager.states import JobKind, JobStatus
from container_manager.stats import get_statistics as get_queue_statistics
from container_manager.worker import Worker
from tests.unit import fake_executor as fakes

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

pytestmark = pytest.mark.django_db(transaction=True)
threaded = pytest.mark.postgres


def tar_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def claim(job: ContainerJob) -> ContainerJob:
    [claimed] = queue_manager.claim_jobs("w1", 1)
    assert claimed.pk == job.pk
    return claimed


def in_thread(target) -> threading.Thread:
    """Run ``target`` in a thread that closes its database connection at the end."""

    def run():
        from django.db import connection

        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def row(job: ContainerJob) -> ContainerJob:
    return ContainerJob.objects.get(pk=job.pk)


# Queueing ----------------------------------------------------------------------


def test_a_pull_is_queued_on_the_named_host_with_its_kind(fake_host):
    job = queue_manager.pull_image(
        "127.0.0.1:5000/team/app:1.2", host=fake_host, platform="linux/amd64"
    )
    stored = row(job)
    assert (stored.kind, stored.status, stored.host_id) == ("image_pull", "queued", fake_host.pk)
    assert stored.image_options == {"platform": "linux/amd64"}
    assert stored.name == "pull 127.0.0.1:5000/team/app:1.2"


def test_a_pull_on_all_hosts_makes_one_job_per_active_image_host(fake_host):
    other = ExecutorHost.objects.create(name="fake-2", executor_type="fake")
    ExecutorHost.objects.create(name="off", executor_type="fake", is_active=False)
    ExecutorHost.objects.create(name="local", executor_type="process")
    jobs = queue_manager.pull_image("app:1", host="all")
    assert sorted(job.host_id for job in jobs) == sorted([fake_host.pk, other.pk])


def test_an_image_task_on_a_host_that_runs_no_images_is_refused(db):
    local = ExecutorHost.objects.create(name="local", executor_type="process")
    with pytest.raises(ValidationError, match="cannot pull, build or push images"):
        queue_manager.pull_image("app:1", host=local)
    assert not ContainerJob.objects.exists()


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({}, "dockerfile", "Give a Dockerfile text, or a context archive"),
        ({"context": b"not a tar archive at all"}, "context", "not a tar archive"),
        ({"dockerfile": "FROM x", "tags": ["Not Valid!"]}, "image_options", "Tag 'Not Valid!'"),
        ({"dockerfile": "FROM x", "build_args": {"A": 1}}, "image_options", "build_args"),
    ],
)
def test_a_bad_build_is_refused_naming_the_field_and_nothing_is_stored(
    fake_host, options, field, message
):
    with pytest.raises(ValidationError) as caught:
        queue_manager.build_image("127.0.0.1:5000/app:1", host=fake_host, **options)
    assert field in caught.value.message_dict
    assert message in " ".join(caught.value.message_dict[field])
    assert not ContainerJob.objects.exists()


def test_a_build_context_above_the_limit_is_refused(fake_host, settings):
    settings.CONTAINER_MANAGER = {"BUILD_CONTEXT_MAX_BYTES": 1024}
    with pytest.raises(ValidationError, match="above BUILD_CONTEXT_MAX_BYTES"):
        queue_manager.build_image("app:1", host=fake_host, context=tar_of({"big": "x" * 4096}))
    assert not ContainerJob.objects.exists()


def test_a_build_keeps_its_options_and_its_context_apart(fake_host):
    archive = tar_of({"Dockerfile": "FROM base\n"})
    job = queue_manager.build_image(
        "127.0.0.1:5000/app:1",
        host=fake_host,
        context=archive,
        build_args={"V": "2"},
        tags=["127.0.0.1:5000/app:latest"],
        push=True,
    )
    stored = row(job)
    assert stored.kind == "image_build"
    assert stored.image_options == {
        "build_args": {"V": "2"},
        "tags": ["127.0.0.1:5000/app:latest"],
        "push": True,
    }
    assert bytes(ImageBuildContext.objects.get(job=job).archive) == archive


def test_an_image_task_names_its_image_and_runs_no_command(fake_host):
    with pytest.raises(ValidationError) as caught:
        ContainerJob.objects.create(kind="image_pull", image="", command="echo", host=fake_host)
    assert set(caught.value.message_dict) == {"image", "command"}


def test_a_push_without_a_host_is_refused(db):
    with pytest.raises(ValidationError, match="name the host"):
        ContainerJob.objects.create(kind="image_push", image="127.0.0.1:5000/app:1")


# Running -----------------------------------------------------------------------


def test_a_pull_passes_through_its_phases_and_completes_with_its_result(fake_host, fake_executor):
    fake_executor.image_steps = [
        ImageStep("pulling", "Resolving 127.0.0.1:5000/app:1"),
        ImageStep("downloading", "Downloading 1/2 layers", 50),
        ImageStep("downloading", "Downloading 2/2 layers", 100),
    ]
    seen: list[tuple[str, int, str]] = []
    original = queue_manager.record_image_step

    def spy(job, step):
        written = original(job, step)
        stored = row(job)
        seen.append((stored.status, stored.progress, stored.current_step))
        return written

    job = claim(queue_manager.pull_image("127.0.0.1:5000/app:1", host=fake_host))
    queue_manager.record_image_step = spy  # type: ignore[method-assign]
    try:
        outcome = queue_manager.run_image_task(job)
    finally:
        del queue_manager.record_image_step
    assert outcome.success
    assert outcome.finished
    assert seen == [
        ("pulling", 0, "Resolving 127.0.0.1:5000/app:1"),
        ("downloading", 50, "Downloading 1/2 layers"),
        ("downloading", 100, "Downloading 2/2 layers"),
    ]
    stored = row(job)
    assert (stored.status, stored.exit_code, stored.progress) == ("completed", 0, 100)
    assert stored.image_result == {"image_id": "sha256:fake", "digest": "sha256:d1"}
    assert stored.stdout == "done\n"
    assert stored.worker_id == ""
    assert stored.started_at is not None
    assert fake_executor.image_calls[0][:2] == ("pull", "127.0.0.1:5000/app:1")


def test_a_transient_failure_is_retried_and_a_permanent_one_fails_with_the_output(
    fake_host, fake_executor
):
    fake_executor.image_fail_next = [RegistryError("registry said 503")]
    job = claim(queue_manager.build_image("app:1", host=fake_host, dockerfile="FROM base"))
    outcome = queue_manager.run_image_task(job)
    assert outcome.retry_scheduled
    assert outcome.error_code == "DOCKER_REGISTRY_ERROR"
    assert row(job).status == "retrying"

    failing = ImageBuildError("The command '/bin/sh -c exit 7' returned a non-zero code: 7")
    failing.output = "Step 2/2 : RUN exit 7\n"  # type: ignore[attr-defined]
    fake_executor.image_fail_next = [failing]
    ContainerJob.objects.filter(pk=job.pk).update(scheduled_for=None)
    job = claim(job)
    outcome = queue_manager.run_image_task(job)
    stored = row(job)
    assert (stored.status, stored.error_code) == ("failed", "DOCKER_BUILD_FAILED")
    assert stored.stdout == "Step 2/2 : RUN exit 7\n"
    assert "returned a non-zero code: 7" in stored.last_error


@threaded
def test_a_cancel_stops_the_engine_work_and_the_job_stays_cancelled(fake_host, fake_executor):
    fake_executor.image_hold = True
    fake_executor.image_steps = [ImageStep("building", "Step 1/3 : FROM base", 33)]
    job = claim(queue_manager.build_image("app:1", host=fake_host, dockerfile="FROM base"))
    outcomes = []
    thread = in_thread(lambda: outcomes.append(queue_manager.run_image_task(job)))
    assert fake_executor.image_started.wait(10)
    assert row(job).status == "building"
    queue_manager.cancel_job(row(job))
    thread.join(10)
    assert not thread.is_alive()
    assert outcomes[0].success is False
    assert "cancelled" in outcomes[0].error
    assert row(job).status == "cancelled"


@threaded
def test_an_image_task_past_its_timeout_is_stopped_and_times_out(fake_host, fake_executor):
    fake_executor.image_hold = True
    job = claim(queue_manager.pull_image("app:1", host=fake_host, timeout_seconds=1))
    outcome = queue_manager.run_image_task(job)
    assert outcome.error_code == "SYSTEM_TIMEOUT"
    stored = row(job)
    assert (stored.status, stored.error_code) == ("timeout", "SYSTEM_TIMEOUT")


@threaded
def test_a_stopping_worker_puts_the_image_task_back_in_the_queue(fake_host, fake_executor):
    fake_executor.image_hold = True
    job = claim(queue_manager.pull_image("app:1", host=fake_host))
    stop = threading.Event()
    outcomes = []
    thread = in_thread(lambda: outcomes.append(queue_manager.run_image_task(job, stop.is_set)))
    assert fake_executor.image_started.wait(10)
    stop.set()
    thread.join(10)
    stored = row(job)
    assert (stored.status, stored.worker_id, stored.attempt) == ("queued", "", 1)
    assert "worker stopping" in outcomes[0].error


@threaded
def test_a_worker_runs_an_image_task_and_follows_nothing(fake_host, fake_executor):
    job = queue_manager.pull_image("app:1", host=fake_host)
    stats = Worker(worker_id="w-images", once=True).run()
    assert row(job).status == "completed"
    # A finished job keeps the id of the worker that ran it.
    assert (row(job).worker_id, row(job).last_worker_id) == ("", "w-images")
    assert stats.jobs_finished == 1
    assert fake_executor.launches == []  # No container was started.


# Dependencies ------------------------------------------------------------------


def test_a_job_waiting_for_another_is_ready_only_once_it_completed(fake_host, fake_executor):
    build = queue_manager.build_image("app:1", host=fake_host, dockerfile="FROM base", push=True)
    run = queue_manager.queue_after(ContainerJob(name="use it", image="app:1"), after=[build])
    assert list(run.depends_on.all()) == [build]
    assert list(ContainerJob.objects.ready().values_list("pk", flat=True)) == [build.pk]
    statistics = get_queue_statistics()
    assert statistics["admin"]["waiting_for_jobs"] == 1
    assert statistics["admin"]["ready"] == 1
    queue_manager.run_image_task(claim(build))
    assert list(ContainerJob.objects.ready().values_list("pk", flat=True)) == [run.pk]


def test_a_failed_dependency_fails_the_whole_chain_with_a_clear_code(fake_host, fake_executor):
    fake_executor.image_fail_next = [ImageBuildError("step failed")]
    build = queue_manager.build_image("app:1", host=fake_host, dockerfile="FROM base")
    first = queue_manager.queue_after(ContainerJob(name="first"), after=[build])
    second = queue_manager.queue_after(ContainerJob(name="second"), after=[first])
    unrelated = queue_manager.create_and_queue(name="unrelated")
    queue_manager.run_image_task(claim(build))
    assert row(build).status == "failed"
    assert queue_manager.fail_dependents() == 2
    for job, waited_for in ((first, build), (second, first)):
        stored = row(job)
        assert (stored.status, stored.error_code) == ("failed", "DEPENDENCY_FAILED")
        assert f"Job {waited_for.pk}, which this job waits for, ended failed" in stored.last_error
    assert row(unrelated).status == "queued"
    assert queue_manager.fail_dependents() == 0


def test_a_job_cannot_wait_for_itself_or_for_an_unsaved_job(fake_host):
    job = queue_manager.create_and_queue(name="a")
    with pytest.raises(ValidationError, match="Not a saved job"):
        queue_manager.queue_after(ContainerJob(name="b"), after=[ContainerJob(name="unsaved")])
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        JobDependency.objects.create(job=job, depends_on=job)


def test_statistics_and_task_info_show_the_kind(fake_host):
    queue_manager.pull_image("app:1", host=fake_host)
    queue_manager.build_image("app:2", host=fake_host, dockerfile="FROM base")
    queue_manager.create_and_queue(name="plain")
    distribution = get_queue_statistics()["task_type_distribution"]
    assert distribution == {"run": 1, "image_pull": 1, "image_build": 1, "image_push": 0}
    kinds = {operations.task_info(job)["task_type"] for job in ContainerJob.objects.all()}
    assert kinds == {JobKind.RUN, JobKind.IMAGE_PULL, JobKind.IMAGE_BUILD}
    assert JobStatus.BUILDING.label == "Building image"


def test_running_a_build_again_copies_its_kind_options_and_context(fake_host):
    archive = tar_of({"Dockerfile": "FROM base\n"})
    build = queue_manager.build_image("app:1", host=fake_host, context=archive, target="prod")
    again = queue_manager.run_again(build)
    assert again.pk != build.pk
    assert (again.kind, again.image, again.image_options, again.status) == (
        "image_build",
        "app:1",
        {"target": "prod"},
        "queued",
    )
    assert bytes(ImageBuildContext.objects.get(job=again).archive) == archive


def test_the_base_images_of_a_context_are_read_from_its_dockerfile(fake_host):
    from container_manager.containers import base_images, build_spec

    archive = tar_of({"./docker/Build.file": "FROM 127.0.0.1:5001/base:1 AS b\nFROM b\n"})
    job = queue_manager.build_image(
        "app:1", host=fake_host, context=archive, dockerfile="docker/Build.file"
    )
    assert base_images(build_spec(job)) == ["127.0.0.1:5001/base:1", "b"]
