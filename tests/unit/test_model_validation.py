"""Bad field values are a ValidationError naming the field, on every database, and store nothing.

These run on SQLite and on PostgreSQL (whose text columns refuse NUL: there,
without the checks, the same inputs fail in the database with a DataError).
"""

from __future__ import annotations

import math

import pytest
from django.core.exceptions import ValidationError

from container_manager.models import (
    ContainerJob,
    EnvironmentVariableTemplate,
    ExecutorHost,
    JobQueue,
)
from container_manager.models.validation import MAX_JSON_DEPTH, field_problems
from container_manager.queue import queue_manager

pytestmark = pytest.mark.django_db


def refused(make, field: str) -> str:
    """Call ``make``; assert it raises a ValidationError naming ``field``; return the message."""
    with pytest.raises(ValidationError) as caught:
        make()
    errors = caught.value.message_dict
    assert field in errors, errors
    return " ".join(errors[field])


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


# Jobs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", "a\x00b", "NUL character"),
        ("command", "echo \x00", "NUL character"),
        ("queue", "q\x00", "NUL character"),
        ("name", "\udcff", "lone surrogate"),
        ("command", "echo \ud800", "lone surrogate"),
        ("name", "x" * 201, "At most 200 characters"),
        ("environment", {"A": "\x00"}, "NUL character"),
        ("environment", {"A": "\udcff"}, "lone surrogate"),
        ("environment", [], "not list"),
        ("environment", None, "cannot be null"),
        ("environment", nested(MAX_JSON_DEPTH + 5), "Nested deeper"),
        ("cpu_limit_cores", math.nan, "finite"),
        ("cpu_limit_cores", math.inf, "finite"),
        ("timeout_seconds", "", "required"),
        ("timeout_seconds", True, "not true or false"),
        ("timeout_seconds", 2**40, "between"),
        ("memory_limit_mb", "abc", "not a whole number"),
        ("priority", 1.5, "not a whole number"),
        ("status", "bogus", "Unknown status"),
        ("name", None, "cannot be null"),
        ("is_shell_command", None, "cannot be null"),
        ("memory_limit_mb", [], "not list"),
        ("timeout_seconds", {}, "not dict"),
        ("scheduled_for", 0, "not a date and time"),
    ],
)
def test_a_bad_job_field_is_refused_by_save_and_full_clean_naming_it(field, value, expected):
    before = ContainerJob.objects.count()
    fields = {"command": "echo", field: value}

    message = refused(lambda: ContainerJob.objects.create(**fields), field)
    assert expected in message
    job = ContainerJob(**fields)
    assert expected in refused(job.full_clean, field)
    assert ContainerJob.objects.count() == before


def test_an_empty_nullable_number_is_none_as_a_form_would_send_it():
    job = ContainerJob(command="echo", memory_limit_mb="", cpu_limit_cores="")
    job.full_clean()
    assert (job.memory_limit_mb, job.cpu_limit_cores) == (None, None)


def test_a_refused_change_leaves_the_stored_job_as_it_was():
    job = ContainerJob.objects.create(name="kept", command="echo")
    job.name = "bad\x00"
    refused(job.save, "name")
    assert ContainerJob.objects.get(pk=job.pk).name == "kept"


def test_good_values_pass_unchanged():
    job = ContainerJob.objects.create(
        name="r\u00e9sum\u00e9 \U0001f600",
        command="echo ok",
        environment={"A": "b\tc", "B": ""},
        cpu_limit_cores=0.5,
        memory_limit_mb=64,
    )
    job.refresh_from_db()
    assert job.name == "r\u00e9sum\u00e9 \U0001f600"
    assert job.environment == {"A": "b\tc", "B": ""}
    assert field_problems(job) == {}


# Hosts and templates -----------------------------------------------------------


def docker_host(**fields) -> ExecutorHost:
    values = {"name": "h", "executor_type": "docker", "connection_string": "unix:///x.sock"}
    values.update(fields)
    return ExecutorHost.objects.create(**values)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tcp://", "needs a host name"),
        ("unix://", "needs the path"),
        ("tcp://127.0.0.1:99999", "Not a valid tcp:// URL"),
        ("tcp://127.0.0.1:0", "between 1 and 65535"),
        ("ssh://", "needs a host name"),
        ("http://127.0.0.1", "starting with unix://"),
        ("tcp://a\x00b", "NUL character"),
    ],
)
def test_a_docker_connection_string_that_cannot_work_is_refused_at_save(value, expected):
    assert expected in refused(lambda: docker_host(connection_string=value), "connection_string")
    assert not ExecutorHost.objects.exists()


@pytest.mark.parametrize(
    "value",
    ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2376", "ssh://me@box", "tcp://[::1]:2375"],
)
def test_a_good_connection_string_is_accepted(value):
    assert docker_host(connection_string=value).pk


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"tls": 5}, '"tls" must be an object'),
        ({"tls": {"client_cert": "/c.pem"}}, "both"),
        ({"tls": {"ca_cert": 3}}, "path of a file"),
        ({"tls": {"verify": "yes"}}, "true or false"),
        ({"api_timeout_seconds": "abc"}, "positive number of seconds"),
        ({"pull_timeout_seconds": 0}, "positive number of seconds"),
        ({"log_read_timeout_seconds": math.nan}, "positive number of seconds"),
        ({"default_network": 3}, "network name"),
        ({"registry_auth": "me:secret"}, "object of strings"),
        ([], "JSON object"),
    ],
)
def test_a_docker_executor_config_that_cannot_work_is_refused_at_save(config, expected):
    assert expected in refused(lambda: docker_host(executor_config=config), "executor_config")
    assert not ExecutorHost.objects.exists()


def test_unknown_executor_config_keys_are_kept_for_hosts_of_older_releases():
    host = docker_host(executor_config={"timeout": 5, "api_timeout_seconds": 2.5})
    host.refresh_from_db()
    assert host.executor_config == {"timeout": 5, "api_timeout_seconds": 2.5}


def test_a_process_host_needs_an_absolute_output_dir():
    message = refused(
        lambda: ExecutorHost.objects.create(
            name="p", executor_type="process", executor_config={"output_dir": "out"}
        ),
        "executor_config",
    )
    assert "absolute path" in message


@pytest.mark.parametrize("name", ["a\x00b", "\udcff", "x" * 101])
def test_host_and_template_names_are_a_validation_error_in_full_clean(name):
    host = ExecutorHost(name=name, executor_type="docker", connection_string="unix:///x.sock")
    refused(host.full_clean, "name")
    refused(host.save, "name")
    template = EnvironmentVariableTemplate(name=name, environment_variables_text="A=b")
    refused(template.full_clean, "name")
    refused(template.save, "name")
    assert not ExecutorHost.objects.exists()
    assert not EnvironmentVariableTemplate.objects.exists()


# Queues ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("\x00", "NUL character"),
        ("q\udcff", "lone surrogate"),
        ("q" * 101, "at most 100 characters"),
        ("", "non-empty"),
        (None, "non-empty"),
    ],
)
def test_pausing_a_queue_with_a_name_no_column_can_hold_is_a_value_error(name, expected):
    for call in (queue_manager.pause_queue, queue_manager.resume_queue):
        with pytest.raises(ValueError, match=expected):
            call(name)
    assert not JobQueue.objects.exists()


def test_an_executor_type_longer_than_its_column_is_refused_at_save():
    host = ExecutorHost(name="h", executor_type="x" * 21, connection_string="")

    assert "At most 20 characters" in refused(host.save, "executor_type")
    assert not ExecutorHost.objects.exists()


def test_a_template_without_text_is_refused_naming_the_field():
    template = EnvironmentVariableTemplate(name="t", environment_variables_text=None)

    assert "cannot be null" in refused(template.save, "environment_variables_text")
    assert "cannot be null" in refused(template.full_clean, "environment_variables_text")
    assert not EnvironmentVariableTemplate.objects.exists()
