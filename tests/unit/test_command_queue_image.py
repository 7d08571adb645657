"""``queue_image``: pull, build and push queued from the command line; every bad input refused."""

from __future__ import annotations

import io
import json
import tarfile
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from container_manager.models import ContainerJob, ExecutorHost, ImageBuildContext

pytestmark = pytest.mark.django_db


@pytest.fixture
def host():
    return ExecutorHost.objects.create(
        name="docker", executor_type="docker", connection_string="unix:///var/run/docker.sock"
    )


def command(*args: str) -> str:
    out = StringIO()
    call_command("queue_image", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_build_from_a_dockerfile_with_its_options_is_queued(host, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM base\nARG V\nRUN echo $V\n")
    printed = command(
        "build",
        "127.0.0.1:5000/team/app:3",
        "--dockerfile",
        str(dockerfile),
        "--build-arg",
        "V=3",
        "--label",
        "team=reports",
        "--tag",
        "127.0.0.1:5000/team/app:latest",
        "--push",
    )
    job = ContainerJob.objects.get()
    assert printed == f"Queued task {job.pk}: image_build 127.0.0.1:5000/team/app:3 on docker\n"
    assert (job.kind, job.status, job.host) == ("image_build", "queued", host)
    assert job.image_options == {
        "dockerfile": "FROM base\nARG V\nRUN echo $V\n",
        "build_args": {"V": "3"},
        "labels": {"team": "reports"},
        "tags": ["127.0.0.1:5000/team/app:latest"],
        "push": True,
    }


def test_a_build_from_a_directory_packs_it_as_its_context(host, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY data.txt /\n")
    (tmp_path / "data.txt").write_text("42\n")
    command("build", "app:1", "--context", str(tmp_path))
    archive = bytes(ImageBuildContext.objects.get().archive)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert {"./Dockerfile", "./data.txt"} <= set(tar.getnames())


def test_a_push_waits_for_its_build_and_prints_json(host):
    build = ContainerJob.objects.create(
        kind="image_build", image="app:1", host=host, image_options={"dockerfile": "FROM x"}
    )
    answer = json.loads(
        command(
            "push", "127.0.0.1:5000/app:1", "--host", "docker", "--after", str(build.pk), "--json"
        )
    )
    [task] = answer["tasks"]
    assert (task["task_type"], task["depends_on"]) == ("image_push", [build.pk])


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("push", "app:1"), 2, "a push runs on the host that holds the image"),
        (("pull", "Bad Ref!", "--host", "docker"), 2, "is not an image reference"),
        (("pull", "app:1", "--tag", "x:2"), 2, "--tag: only for a build"),
        (("build", "app:1", "--all-hosts"), 2, "--all-hosts is for a pull"),
        (("build", "app:1", "--host", "docker"), 2, "Give a Dockerfile text, or a context"),
        (("build", "app:1", "--dockerfile", "/no/such/file"), 2, "--dockerfile /no/such/file"),
        (("build", "app:1", "--dockerfile", __file__, "--build-arg", "NOVALUE"), 2, "NAME=value"),
        (("build", "app:1", "--context", "/no/such.tar"), 2, "--context /no/such.tar"),
        (("pull", "app:1", "--host", "nowhere"), 3, "No host named 'nowhere'"),
        (("pull", "app:1", "--after", "999"), 3, "No job with id 999 to wait for"),
    ],
)
def test_bad_input_exits_with_a_status_and_a_specific_message(host, args, status, message):
    with pytest.raises(CommandError) as caught:
        command(*args)
    assert caught.value.returncode == status
    assert message in str(caught.value)
    assert not ContainerJob.objects.exists()
