"""Routing: which host a job may get, and what fails at once at its validation step.

- Jobs without a host never go to a process host while a host that runs
  images exists; with process hosts only they do.
- A job naming an image on a process host fails at validation, never runs
  with its image ignored.
- A host whose executor_type has no executor gets no unrouted job; a job
  pinned to it fails at once (permanent), naming the host and its type.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from container_manager.classification import PERMANENT, classify
from container_manager.exceptions import ConfigurationError
from container_manager.executors import can_load, close_executors, register_executor, runs_images
from container_manager.executors.local import LocalProcessExecutor
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.unit.fake_executor import FakeExecutor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _executors():
    register_executor("fake", FakeExecutor)
    yield
    close_executors()
    register_executor("process", LocalProcessExecutor)


def host(name, executor_type, **fields):
    return ExecutorHost.objects.create(
        name=name, executor_type=executor_type, max_concurrent_jobs=100, **fields
    )


def queued(n=1, **fields):
    jobs = []
    for _ in range(n):
        job = ContainerJob.objects.create(command="echo hi", **fields)
        queue_manager.queue_job(job)
        jobs.append(job)
    return jobs


def claimed_hosts(limit=100):
    return [job.host.name for job in queue_manager.claim_jobs("w-route", limit)]


# Image jobs and process hosts ------------------------------------------------


def test_jobs_without_a_host_never_go_to_a_process_host_beside_a_docker_host():
    host("docker", "docker", connection_string="unix:///var/run/docker.sock")
    # Twice the weight: by weight alone, two thirds would go to the process host.
    host("local", "process", weight=200)
    queued(12, image="alpine:3")
    queued(6)

    assert claimed_hosts() == ["docker"] * 18


def test_jobs_without_a_host_wait_for_the_docker_host_rather_than_run_as_processes():
    docker = host("docker", "docker", connection_string="unix:///var/run/docker.sock")
    host("local", "process")
    queue_manager.pause_host(docker)
    queued(3)

    assert claimed_hosts() == []


def test_a_process_host_still_takes_the_jobs_pinned_to_it_beside_a_docker_host():
    host("docker", "docker", connection_string="unix:///var/run/docker.sock")
    local = host("local", "process")
    queued(2, host=local)

    assert claimed_hosts() == ["local", "local"]


def test_with_process_hosts_only_jobs_without_a_host_go_to_them():
    host("local", "process")
    queued(2)

    assert claimed_hosts() == ["local", "local"]


def test_a_job_naming_an_image_on_a_process_host_fails_at_validation():
    local = host("local", "process")
    [job] = queued(1, host=local, image="python:3.12-slim")
    [job] = queue_manager.claim_jobs("w-route", 1)

    outcome = queue_manager.launch_claimed(job)

    job.refresh_from_db()
    assert not outcome.success
    assert not outcome.retry_scheduled
    assert (job.status, job.error_code) == (JobStatus.FAILED, "VALIDATION_INVALID_PARAMS")
    assert "python:3.12-slim" in job.last_error
    assert "'local'" in job.last_error
    assert job.container_id == ""
    assert job.launched_at is None


def test_a_job_with_the_default_image_runs_on_its_process_host():
    local = host("local", "process")
    queued(1, host=local)
    [job] = queue_manager.claim_jobs("w-route", 1)

    outcome = queue_manager.launch_claimed(job)

    assert outcome.success, outcome.error
    queue_manager.containers.stop(job)


def test_the_capabilities_of_the_built_in_executors():
    assert runs_images("docker")
    assert not runs_images("process")
    assert can_load("docker")
    assert can_load("process")
    assert can_load("mock")
    assert runs_images("mock")
    assert not can_load("scaleway")
    assert not runs_images("scaleway")


def test_registering_process_again_keeps_it_imageless():
    register_executor("process", LocalProcessExecutor)
    assert not runs_images("process")
    register_executor("imageless", LocalProcessExecutor, runs_images=False)
    assert not runs_images("imageless")


# Unknown executor types ------------------------------------------------------


@pytest.mark.parametrize("legacy_type", ["scaleway", "cloudrun", "fargate"])
def test_jobs_without_a_host_are_never_routed_to_a_host_without_an_executor(legacy_type):
    host("old", legacy_type, weight=1000)
    host("fake", "fake", weight=1)
    queued(10)

    assert claimed_hosts() == ["fake"] * 10


def test_a_job_pinned_to_a_host_without_an_executor_fails_at_once_naming_it():
    old = host("old", "scaleway")
    queued(1, host=old, max_retries=5)
    [job] = queue_manager.claim_jobs("w-route", 1)

    outcome = queue_manager.launch_claimed(job)

    job.refresh_from_db()
    assert not outcome.retry_scheduled
    assert (job.status, job.error_code, job.attempt) == (JobStatus.FAILED, "CONFIGURATION_ERROR", 1)
    assert "'old'" in job.last_error
    assert "'scaleway'" in job.last_error


def test_a_configuration_error_is_permanent():
    found = classify(ConfigurationError("Unknown executor type 'mock' (known: docker)"))
    assert (found.category, found.code) == (PERMANENT, "CONFIGURATION_ERROR")


def test_a_host_whose_executor_config_is_invalid_fails_its_job_at_once_naming_the_host():
    bad = host("bad-docker", "docker", connection_string="unix:///var/run/docker.sock")
    # save() refuses this config; a row stored before (by 1.0.x, or an
    # UPDATE) still fails its jobs clearly.
    ExecutorHost.objects.filter(pk=bad.pk).update(executor_config={"api_timeout_seconds": -1})
    bad.refresh_from_db()
    queued(1, host=bad)
    [job] = queue_manager.claim_jobs("w-route", 1)

    queue_manager.launch_claimed(job)

    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "CONFIGURATION_ERROR")
    assert "'bad-docker'" in job.last_error
    assert "api_timeout_seconds" in job.last_error


@override_settings(CONTAINER_MANAGER={"DEFAULT_HOST": "old"})
def test_default_host_without_an_executor_routes_nothing():
    host("old", "scaleway")
    host("fake", "fake")
    queued(2)

    assert claimed_hosts() == []
