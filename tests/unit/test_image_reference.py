"""An image reference that cannot be valid is refused when the job is made, naming the field."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from container_manager.models import ContainerJob
from container_manager.models.validation import image_reference_problem
from container_manager.queue import queue_manager


@pytest.mark.parametrize(
    "image",
    [
        "",
        "busybox",
        "busybox:latest",
        "python:3.12-slim",
        "container-manager-test/busybox:latest",
        "127.0.0.1:5000/container-manager-test/busybox:latest",
        "registry.example.com:5000/team/app:1.2",
        "Registry.Example.com/app",
        "localhost/x_y__z-w:v1.2-rc",
        "[::1]:5000/app",
        "ubuntu@sha256:" + "a" * 64,
        "ubuntu:22.04@sha256:" + "0" * 64,
    ],
)
def test_references_docker_accepts_are_accepted(image):
    assert image_reference_problem(image) == ""


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("Not A Valid Image!!", "is not an image reference"),
        ("UPPER/case", "neither a registry host"),
        ("a//b", "is not an image reference"),
        ("x:", "is not an image reference"),
        ("-bad", "is not an image reference"),
        ("app:" + "t" * 129, "is not an image reference"),
        ("app@sha256:abc", "is not an image reference"),
        ("a" * 256, "at most 255"),
    ],
)
def test_references_that_cannot_be_valid_are_refused_with_the_reason(image, words):
    assert words in image_reference_problem(image)


@pytest.mark.django_db
def test_a_job_with_such_an_image_is_not_stored():
    with pytest.raises(ValidationError) as caught:
        queue_manager.create_and_queue(command="echo", image="Not A Valid Image!!")
    assert "image" in caught.value.message_dict
    assert "is not an image reference" in caught.value.message_dict["image"][0]
    assert not ContainerJob.objects.exists()
