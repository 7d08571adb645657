"""Job arrays: N jobs of one template, their indexes, waiting for an array, the admin's view."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from container_manager.executors.base import LaunchSpec
from container_manager.models import ContainerJob, ExecutorHost, JobArray
from container_manager.queue import queue_manager

pytestmark = pytest.mark.django_db


def test_an_array_makes_its_jobs_with_their_indexes_and_environment(db):
    array = queue_manager.create_array(
        4, array_name="shard", command="work", environment={"MODE": "full"}, priority=70
    )
    jobs = list(array.jobs.order_by("array_index"))
    assert [(job.name, job.array_index, job.status) for job in jobs] == [
        (f"shard[{n}]", n, "queued") for n in range(4)
    ]
    assert {job.priority for job in jobs} == {70}
    jobs[2].attempt = 1
    environment = LaunchSpec.from_job(jobs[2]).environment
    assert (environment["CM_ARRAY_INDEX"], environment["CM_ARRAY_SIZE"]) == ("2", "4")
    assert environment["MODE"] == "full"
    plain = queue_manager.create_and_queue(name="plain")
    assert "CM_ARRAY_INDEX" not in LaunchSpec.from_job(plain).environment


def test_a_job_waiting_for_an_array_waits_for_all_of_it(db):
    array = queue_manager.create_array(3, command="work")
    after = queue_manager.queue_after(ContainerJob(name="merge"), after=[array])
    assert after.depends_on.count() == 3
    ready = set(ContainerJob.objects.ready().values_list("pk", flat=True))
    assert after.pk not in ready
    for job in array.jobs.order_by("array_index")[:2]:
        ContainerJob.objects.filter(pk=job.pk).update(status="validating")
        ContainerJob.objects.filter(pk=job.pk).update(status="running")
        ContainerJob.objects.filter(pk=job.pk).update(status="completed")
    assert array.outcome() == "running"
    assert after.pk not in set(ContainerJob.objects.ready().values_list("pk", flat=True))
    last = array.jobs.get(array_index=2)
    queue_manager.cancel_job(last)
    assert array.outcome() == "failed"
    assert queue_manager.fail_dependents() == 1
    assert ContainerJob.objects.get(pk=after.pk).error_code == "DEPENDENCY_FAILED"


@pytest.mark.parametrize(
    ("size", "fields", "field"),
    [
        (0, {}, "size"),
        (10_001, {}, "size"),
        (True, {}, "size"),
        (2, {"unique_key": "k"}, "unique_key"),
        (2, {"priority": 101}, "priority"),
    ],
)
def test_a_bad_array_is_refused_and_nothing_is_stored(db, size, fields, field):
    with pytest.raises(ValidationError) as caught:
        queue_manager.create_array(size, command="x", **fields)
    assert field in caught.value.message_dict
    assert not JobArray.objects.exists()
    assert not ContainerJob.objects.exists()


def test_the_admin_shows_an_array_as_one_thing(admin_client):
    array = queue_manager.create_array(4, array_name="render", command="x")
    job = array.jobs.get(array_index=0)
    ContainerJob.objects.filter(pk=job.pk).update(status="validating")
    ContainerJob.objects.filter(pk=job.pk).update(status="running")
    ContainerJob.objects.filter(pk=job.pk).update(status="completed")
    page = admin_client.get(reverse("admin:container_manager_jobarray_changelist"))
    text = page.content.decode()
    assert page.status_code == 200
    assert "1/4 ended, 1 completed" in text
    assert "Running" in text
    jobs = admin_client.get(
        reverse("admin:container_manager_containerjob_changelist") + f"?array={array.pk}"
    )
    assert jobs.status_code == 200
    assert jobs.context["cl"].result_count == 4
    detail = admin_client.get(reverse("admin:container_manager_jobarray_change", args=[array.pk]))
    assert "Queued: 3, Completed: 1" in detail.content.decode()


def test_the_api_makes_an_array(admin_client):
    ExecutorHost.objects.create(name="local", executor_type="process")
    answer = admin_client.post(
        "/api/jobs/",
        json.dumps({"name": "shard", "command": "work", "array_size": 3}),
        content_type="application/json",
    )
    assert answer.status_code == 201, answer.content
    tasks = answer.json()["tasks"]
    assert [task["name"] for task in tasks] == ["shard[0]", "shard[1]", "shard[2]"]
