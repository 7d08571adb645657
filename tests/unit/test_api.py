"""The JSON API: the seed's request bodies as written, resources, authentication, permissions,
CSRF, and every error as JSON with a code of the catalogue."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework.authtoken.models import Token

from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.queue import queue_manager
from tests.unit.test_operations import seed_requests

pytestmark = pytest.mark.django_db


def token_client(user: User) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture
def admin_user():
    return User.objects.create_superuser("api-admin", password="x")


@pytest.fixture
def api(admin_user):
    return token_client(admin_user)


@pytest.fixture
def host():
    return ExecutorHost.objects.create(
        name="mock", executor_type="mock", executor_config={"run_seconds": None}
    )


def post(client: Client, url: str, body=None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def snapshot():
    return sorted(ContainerJob.objects.values_list("id", "status", "retry_count"))


def test_the_seeds_request_bodies_run_as_written(api, host):
    job = queue_manager.create_and_queue(command="echo hi", host=host)
    status, task, manage = (post(api, "/api/operations/", body) for body in seed_requests())
    assert status.status_code == 200
    assert status.json()["tasks"][0]["id"] == job.pk
    assert task.status_code == 404
    assert task.json()["error_code"] == "QUEUE_TASK_NOT_FOUND"
    assert manage.status_code == 400
    assert "pause, resume, retry, cancel" in manage.json()["error"]


def test_operations_manage_a_task(api, host):
    job = queue_manager.create_and_queue(command="echo hi", host=host)
    paused = post(
        api,
        "/api/operations/",
        {"action": "queue_manage", "params": {"action": "pause", "task_id": job.pk}},
    )
    assert (paused.status_code, paused.json()["task"]["status"]) == (200, "paused")
    again = post(
        api,
        "/api/operations/",
        {"action": "queue_manage", "params": {"action": "pause", "task_id": job.pk}},
    )
    assert (again.status_code, again.json()["error_code"]) == (409, "QUEUE_TASK_INVALID_STATE")


def test_job_resources(api, host):
    jobs = [
        queue_manager.create_and_queue(name=f"j{n}", command="echo hi", host=host) for n in range(3)
    ]
    ContainerJob.objects.filter(pk=jobs[0].pk).update(
        legacy_id="123e4567-e89b-12d3-a456-426614174000"
    )

    page = api.get("/api/jobs/", {"limit": 2}).json()
    assert [t["id"] for t in page["results"]] == [jobs[2].pk, jobs[1].pk]
    assert page["next_offset"] == 2
    assert [
        t["id"] for t in api.get("/api/jobs/", {"limit": 2, "offset": 2}).json()["results"]
    ] == [jobs[0].pk]
    assert api.get("/api/jobs/", {"status": "completed"}).json()["results"] == []
    one = api.get(f"/api/jobs/{jobs[1].pk}/", {"detailed": "true", "include_logs": "true"}).json()
    assert (one["task"]["id"], one["task"]["host"], one["task"]["logs"]) == (
        jobs[1].pk,
        "mock",
        {"stdout": "", "stderr": ""},
    )
    by_uuid = api.get("/api/jobs/123e4567-e89b-12d3-a456-426614174000/").json()
    assert by_uuid["task"]["id"] == jobs[0].pk
    cancelled = post(api, f"/api/jobs/{jobs[2].pk}/cancel/")
    assert cancelled.json()["task"]["status"] == "cancelled"


def test_create_a_job(api, host):
    created = post(
        api,
        "/api/jobs/",
        {
            "name": "from-api",
            "command": "echo hi",
            "host": "mock",
            "priority": 80,
            "environment": {"A": "1"},
        },
    )
    assert created.status_code == 201
    task = created.json()["task"]
    job = ContainerJob.objects.get(pk=task["id"])
    assert (job.status, job.priority, job.host, job.environment) == ("queued", 80, host, {"A": "1"})


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"commandd": "x"}, 400, "VALIDATION_INVALID_PARAMS", "Unknown fields: commandd"),
        ({"priority": 101}, 400, "VALIDATION_INVALID_PARAMS", "priority"),
        ({"host": "nope"}, 404, "QUEUE_TASK_NOT_FOUND", "No host named 'nope'"),
        (
            {"environment": {"1BAD": "x"}},
            400,
            "VALIDATION_INVALID_PARAMS",
            "not a valid variable name",
        ),
        ({"retry_strategy": "sometimes"}, 400, "VALIDATION_INVALID_PARAMS", "sometimes"),
    ],
)
def test_a_bad_job_is_refused_with_a_specific_error(api, host, body, status, code, words):
    answer = post(api, "/api/jobs/", body)
    assert answer.status_code == status, answer.content
    assert answer.json()["error_code"] == code
    assert words in answer.json()["error"]
    assert not ContainerJob.objects.exists()


@pytest.mark.parametrize(
    ("method", "url", "status", "code"),
    [
        ("get", "/api/jobs/999999/", 404, "QUEUE_TASK_NOT_FOUND"),
        ("get", "/api/jobs/not-an-id/", 400, "VALIDATION_INVALID_FORMAT"),
        ("get", "/api/jobs/?limit=0", 400, "VALIDATION_INVALID_PARAMS"),
        ("get", "/api/jobs/?status=done", 400, "VALIDATION_INVALID_PARAMS"),
        ("get", "/api/jobs/1/?detailed=maybe", 400, "VALIDATION_INVALID_PARAMS"),
        ("post", "/api/jobs/1/explode/", 400, "VALIDATION_INVALID_PARAMS"),
        ("post", "/api/queues/reports/retry/", 400, "VALIDATION_INVALID_PARAMS"),
        ("post", "/api/hosts/missing/pause/", 404, "QUEUE_TASK_NOT_FOUND"),
        ("delete", "/api/jobs/", 405, "VALIDATION_INVALID_PARAMS"),
    ],
)
def test_bad_requests_answer_json_with_a_code_and_change_nothing(
    api, host, method, url, status, code
):
    queue_manager.create_and_queue(command="echo hi", host=host)
    before = snapshot()
    answer = getattr(api, method)(url)
    assert answer.status_code == status, answer.content
    assert answer.json()["error_code"] == code
    assert answer.json()["success"] is False
    assert snapshot() == before
    assert not JobQueue.objects.exists()


def test_malformed_json_is_a_format_error(api):
    answer = api.post("/api/operations/", "{not json", content_type="application/json")
    assert (answer.status_code, answer.json()["error_code"]) == (400, "VALIDATION_INVALID_FORMAT")


def test_queues_hosts_workers_statistics(api, host):
    assert post(api, "/api/queues/reports/pause/").json()["queue"] == {
        "name": "reports",
        "is_paused": True,
    }
    assert api.get("/api/queues/").json()["results"] == [
        {"name": "reports", "is_paused": True, "max_concurrent": None}
    ]
    assert post(api, "/api/hosts/mock/pause/").json()["host"]["is_paused"] is True
    assert api.get("/api/hosts/").json()["results"][0]["name"] == "mock"
    assert api.get("/api/workers/").json() == {"success": True, "results": []}
    stats = api.get("/api/statistics/").json()["statistics"]
    assert set(stats) >= {
        "summary",
        "status_distribution",
        "performance",
        "retries",
        "recent_activity",
    }


def test_the_openapi_schema_is_served(api):
    answer = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert answer.status_code == 200
    schema = json.loads(answer.content)
    assert schema["openapi"].startswith("3.")
    assert {"/api/operations/", "/api/jobs/", "/api/jobs/{task_id}/{action}/"} <= set(
        schema["paths"]
    )


# Who may do what ---------------------------------------------------------------


def test_without_credentials_the_answer_is_401_json():
    answer = Client().get("/api/jobs/")
    assert answer.status_code == 401
    assert answer.json()["error_code"] == "AUTHENTICATION_REQUIRED"
    assert answer["WWW-Authenticate"].startswith("Token")
    bad = Client(HTTP_AUTHORIZATION="Token nope").get("/api/jobs/")
    assert (bad.status_code, bad.json()["error_code"]) == (401, "AUTHENTICATION_REQUIRED")


def staff(*codenames: str) -> User:
    user = User.objects.create_user(
        f"staff-{len(codenames)}-{'-'.join(codenames)}"[:150], is_staff=True
    )
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_reading_needs_view_and_managing_needs_change(host):
    job = queue_manager.create_and_queue(command="echo hi", host=host)
    reader = token_client(staff("view_containerjob"))
    assert reader.get(f"/api/jobs/{job.pk}/").status_code == 200
    refused = post(reader, f"/api/jobs/{job.pk}/pause/")
    assert (refused.status_code, refused.json()["error_code"]) == (403, "ACCESS_DENIED")
    assert "container_manager.change_containerjob" in refused.json()["error"]
    refused = post(
        reader,
        "/api/operations/",
        {"action": "queue_manage", "params": {"action": "cancel", "task_id": job.pk}},
    )
    assert refused.status_code == 403
    assert post(reader, "/api/jobs/", {"command": "x"}).status_code == 403
    assert reader.get("/api/hosts/").status_code == 403
    job.refresh_from_db()
    assert job.status == "queued"
    manager = token_client(staff("view_containerjob", "change_containerjob"))
    assert post(manager, f"/api/jobs/{job.pk}/pause/").status_code == 200
    nobody = token_client(User.objects.create_user("not-staff"))
    assert nobody.get("/api/jobs/").status_code == 403


def test_a_browser_session_needs_the_csrf_token_to_change_anything(admin_user, host):
    job = queue_manager.create_and_queue(command="echo hi", host=host)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert browser.get(f"/api/jobs/{job.pk}/").status_code == 200
    refused = browser.post(f"/api/jobs/{job.pk}/pause/")
    assert (refused.status_code, refused.json()["error_code"]) == (403, "ACCESS_DENIED")
    assert "CSRF" in refused.json()["error"]
    browser.get("/admin/")  # sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    assert browser.post(f"/api/jobs/{job.pk}/pause/", HTTP_X_CSRFTOKEN=token).status_code == 200


@pytest.fixture
def docker_host():
    return ExecutorHost.objects.create(
        name="docker", executor_type="docker", connection_string="unix:///var/run/docker.sock"
    )


def test_image_tasks_and_a_job_that_waits_are_created_through_the_api(api, docker_host):
    import base64
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"FROM base\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    build = post(
        api,
        "/api/jobs/",
        {
            "kind": "image_build",
            "image": "127.0.0.1:5000/team/app:2",
            "host": "docker",
            "context": base64.b64encode(buffer.getvalue()).decode(),
            "image_options": {"push": True, "build_args": {"V": "2"}},
        },
    )
    assert build.status_code == 201, build.content
    build_task = build.json()["task"]
    assert (build_task["task_type"], build_task["status"]) == ("image_build", "queued")
    run = post(
        api,
        "/api/jobs/",
        {"image": "127.0.0.1:5000/team/app:2", "command": "app", "after": [build_task["id"]]},
    )
    assert run.status_code == 201, run.content
    waiting = ContainerJob.objects.get(pk=run.json()["task"]["id"])
    assert list(waiting.depends_on.values_list("pk", flat=True)) == [build_task["id"]]
    pulls = post(api, "/api/jobs/", {"kind": "image_pull", "image": "app:1", "host": "all"})
    assert [task["task_type"] for task in pulls.json()["tasks"]] == ["image_pull"]
    statistics = api.get("/api/statistics/").json()
    assert statistics["statistics"]["task_type_distribution"]["image_build"] == 1


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"kind": "image_pull", "image": "app:1", "image_options": {"push": True}}, 400, "push"),
        ({"kind": "image_push", "image": "app:1"}, 400, "a push runs on the host"),
        ({"kind": "image_build", "image": "app:1", "context": "%%%"}, 400, "not base64"),
        ({"kind": "image_build", "image": "app:1"}, 400, "Give a Dockerfile text"),
        ({"kind": "image_build", "image": "app:1", "command": "x"}, 400, "runs no command"),
        ({"command": "x", "image_options": {"platform": "a"}}, 400, "for image tasks"),
        ({"command": "x", "after": [999999]}, 404, "No job with id 999999"),
        ({"kind": "image_pull", "image": "app:1", "host": "all"}, 201, ""),
    ],
)
def test_bad_image_tasks_are_refused_with_a_specific_error(api, docker_host, body, status, words):
    answer = post(api, "/api/jobs/", body)
    assert answer.status_code == status, answer.content
    if status != 201:
        assert words in answer.json()["error"]
        assert not ContainerJob.objects.exists()
