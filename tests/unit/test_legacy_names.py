"""Code written for 1.0.x still runs; each 1.0.x name warns, naming its replacement.

The calls below are those of 1.0.14's documented API (its README and
docstrings): hosts with ``host_type`` and TLS flags, ``create_job`` with a
template by name, the renamed fields as attributes, arguments and lookups,
``is_available()``, the execution identifier methods, the service functions
and the ``mock`` executor.
"""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.exceptions import FieldError
from django.core.management import call_command

from container_manager.models import ContainerJob, EnvironmentVariableTemplate, ExecutorHost
from container_manager.testing import end_job, mock_executor

pytestmark = pytest.mark.django_db


def deprecated(old: str, new: str):
    """Expect one DeprecationWarning naming the 1.0.x name and its replacement."""
    return pytest.warns(
        DeprecationWarning, match=rf"{re.escape(old)} is deprecated.*use .*{re.escape(new)}"
    )


@pytest.fixture
def old_host():
    with deprecated("ExecutorHost.host_type", "connection_string"):
        return ExecutorHost.objects.create(
            name="docker-1",
            host_type="unix",
            connection_string="unix:///var/run/docker.sock",
            executor_type="docker",
        )


def test_hosts_made_the_1_0_way_keep_working(old_host):
    with deprecated("ExecutorHost.is_available()", "is_available (a property)"):
        assert old_host.is_available() is True
    assert old_host.is_available
    with deprecated("ExecutorHost.get_display_name()", "str(host)"):
        assert old_host.get_display_name() == "docker-1 (Docker)"
    with deprecated("ExecutorHost.host_type", "connection_string"):
        assert old_host.host_type == "unix"


def test_tls_flags_of_1_0_become_the_tls_settings():
    with pytest.warns(DeprecationWarning, match="is deprecated since 2.0") as caught:
        host = ExecutorHost.objects.create(
            name="remote",
            host_type="tcp",
            connection_string="tcp://10.0.0.2:2376",
            tls_enabled=True,
            tls_verify=True,
        )
    assert {str(w.message).split(" is ")[0] for w in caught} == {
        "ExecutorHost.host_type",
        "ExecutorHost.tls_enabled",
        "ExecutorHost.tls_verify",
    }
    host.refresh_from_db()
    assert host.executor_config == {"tls": {"verify": True}}


def test_a_host_type_that_contradicts_the_connection_string_is_refused():
    with (
        pytest.warns(DeprecationWarning, match="is deprecated since 2.0"),
        pytest.raises(ValueError, match="does not match"),
    ):
        ExecutorHost(name="x", connection_string="tcp://h:2376", host_type="unix")


def test_create_job_with_a_template_by_name_and_1_0_field_names(old_host):
    EnvironmentVariableTemplate.objects.create(name="base", environment_variables_text="A=1")
    with pytest.warns(DeprecationWarning, match="is deprecated since 2.0") as caught:
        job = ContainerJob.objects.create_job(
            image="busybox:latest",
            command="echo hi",
            name="old-style",
            environment_template="base",
            environment_vars={"B": "2"},
            docker_host=old_host,
            memory_limit=64,
            cpu_limit=0.5,
        )
    names = {str(w.message).split(" is ")[0] for w in caught}
    assert names == {
        "ContainerJob.objects.create_job()",
        "ContainerJob.docker_host",
        "ContainerJob.memory_limit",
        "ContainerJob.cpu_limit",
    }
    job.refresh_from_db()
    assert (job.image, job.host, job.memory_limit_mb, job.cpu_limit_cores) == (
        "busybox:latest",
        old_host,
        64,
        0.5,
    )
    assert job.environment == {"B": "2"}
    assert job.environment_template.name == "base"
    assert job.status == "pending"
    with (
        pytest.raises(ValueError, match="'missing' not found"),
        pytest.warns(DeprecationWarning, match="is deprecated since 2.0"),
    ):
        ContainerJob.objects.create_job(image="x", environment_template="missing")


def test_renamed_fields_read_and_write_their_2x_field(old_host):
    job = ContainerJob.objects.create(image="busybox", host=old_host, environment={"A": "1"})
    with deprecated("ContainerJob.docker_image", "ContainerJob.image"):
        assert job.docker_image == "busybox"
    with deprecated("ContainerJob.docker_host", "ContainerJob.host"):
        assert job.docker_host == old_host
    with deprecated("ContainerJob.override_environment", "ContainerJob.environment"):
        assert job.override_environment == "A=1"
    with deprecated("ContainerJob.override_environment", "ContainerJob.environment"):
        job.override_environment = "A=2\nB=x"
    assert job.environment == {"A": "2", "B": "x"}
    with deprecated("ContainerJob.stdout_log", "ContainerJob.stdout"):
        assert job.stdout_log == ""
    with deprecated("ContainerJob.get_execution_identifier()", "container_id"):
        assert job.get_execution_identifier() == ""


def test_lookups_with_1_0_names_are_translated_or_refused_naming_the_new_field(old_host):
    ContainerJob.objects.create(image="busybox", host=old_host)
    with deprecated("The ContainerJob lookup 'docker_image'", "'image'"):
        assert ContainerJob.objects.filter(docker_image="busybox").count() == 1
    with deprecated("The ContainerJob lookup 'docker_host'", "'host'"):
        assert ContainerJob.objects.exclude(docker_host__name="docker-1").count() == 0
    with pytest.warns(DeprecationWarning, match="is deprecated since 2.0") as caught:
        assert ContainerJob.objects.get(docker_image="busybox", memory_limit__isnull=True)
    assert sorted(str(w.message).split(";")[1] for w in caught) == [
        " use 'image' (docs/migration-guide.md)",
        " use 'memory_limit_mb' (docs/migration-guide.md)",
    ]
    with pytest.raises(FieldError, match="environment__KEY"):
        ContainerJob.objects.filter(override_environment__contains="A=1")
    with pytest.raises(FieldError, match="scheme of connection_string"):
        ExecutorHost.objects.filter(host_type="unix")


def test_setting_another_execution_identifier_is_refused(old_host):
    job = ContainerJob.objects.create(image="busybox", host=old_host)
    with (
        pytest.warns(DeprecationWarning, match="is deprecated since 2.0"),
        pytest.raises(ValueError, match="recorded by the launch"),
    ):
        job.set_execution_identifier("abc")


@pytest.fixture
def mock_host():
    return ExecutorHost.objects.create(
        name="mock", executor_type="mock", executor_config={"run_seconds": None}
    )


def test_the_1_0_service_functions_launch_follow_and_harvest_through_the_queue(mock_host):
    from container_manager import services

    job = ContainerJob.objects.create(command="echo hello", host=mock_host)

    with deprecated("container_manager.services.launch_job()", "queue_manager.queue_job"):
        result = services.launch_job(job)

    assert result == {"success": True, "execution_id": job.container_id}
    assert job.container_id.startswith("mock-")
    assert job.status == "running", "a pending job is launched directly, as 1.0.x allowed"
    with deprecated("ContainerJob.set_execution_identifier()", "nothing"):
        job.set_execution_identifier(result["execution_id"])
    with deprecated("container_manager.services.check_job_status()", "queue_job"):
        assert services.check_job_status(job)["status"] == "running"
    with deprecated("container_manager.services.harvest_job_results()", "queue_job"):
        early = services.harvest_job_results(job)
    assert (early["success"], early["error"]) == (False, f"Job {job.pk} is still running")

    assert end_job(job, exit_code=0)
    with pytest.warns(DeprecationWarning, match="is deprecated since 2.0"):
        status = services.check_job_status(job)
    assert status == {"status": "exited", "execution_id": job.container_id, "error": None}
    with pytest.warns(DeprecationWarning, match="is deprecated since 2.0"):
        harvest = services.harvest_job_results(job)
    assert harvest == {
        "success": True,
        "status": "completed",
        "logs_collected": True,
        "error": None,
    }
    job.refresh_from_db()
    assert (job.status, job.stdout) == ("completed", "mock: echo hello\n")
    assert [spec.command for spec in mock_executor(mock_host).launches] == [("echo", "hello")]


def test_job_management_service_validates_jobs(mock_host):
    from container_manager.services import JobManagementService

    with deprecated("container_manager.services.JobManagementService", "queue_manager"):
        service = JobManagementService()
    job = ContainerJob(command="x", host=mock_host, timeout_seconds=0)
    assert service.validate_job_for_execution(job) == [
        "timeout_seconds: Ensure this value is greater than or equal to 1."
    ]


def test_the_commands_1_0_options_are_accepted_with_a_warning():
    out, err = StringIO(), StringIO()
    call_command(
        "process_container_jobs",
        "--queue-mode",
        "--dry-run",
        "--max-jobs=3",
        "--graceful-shutdown",
        "--cleanup",
        stdout=out,
        stderr=err,
    )
    warnings = err.getvalue()
    assert "Warning: --max-jobs is deprecated: use --max-concurrent" in warnings
    assert "Warning: --graceful-shutdown is deprecated and has no effect" in warnings
    assert "Warning: --cleanup is deprecated and has no effect" in warnings
    assert "max_concurrent=3" in out.getvalue()


def test_the_host_option_of_1_0_limits_the_legacy_pass_to_that_host(mock_host, old_host):
    ContainerJob.objects.create(command="a", host=mock_host)
    out, err = StringIO(), StringIO()
    call_command(
        "process_container_jobs",
        "--status=pending",
        "--host=mock",
        "--dry-run",
        stdout=out,
        stderr=err,
    )
    assert "Found 1 job(s) to process" in out.getvalue()
    assert "--host is deprecated" in err.getvalue()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_run_once_waits_for_mock_containers_and_records_their_end():
    from container_manager.queue import queue_manager

    host = ExecutorHost.objects.create(
        name="mock-once",
        executor_type="mock",
        executor_config={"stdout": "done\n", "run_seconds": 0.3, "exit_code": 0},
    )
    jobs = [queue_manager.create_and_queue(command=f"job {n}", host=host) for n in range(3)]

    call_command("process_container_jobs", "--queue-mode", "--once", stdout=StringIO())

    for job in jobs:
        job.refresh_from_db()
        assert (job.status, job.stdout, job.exit_code) == ("completed", "done\n", 0)


def test_a_1_0_uuid_given_as_the_primary_key_finds_the_upgraded_job(old_host):
    import uuid

    old_id = uuid.uuid4()
    job = ContainerJob.objects.create(image="busybox", host=old_host)
    ContainerJob.objects.filter(pk=job.pk).update(legacy_id=old_id)
    with deprecated("Looking a job up by its 1.0.x UUID (id=...)", "legacy_id=..."):
        assert ContainerJob.objects.get(id=str(old_id)) == job
    with deprecated("Looking a job up by its 1.0.x UUID (pk=...)", "legacy_id=..."):
        assert ContainerJob.objects.filter(pk=old_id).count() == 1
    assert ContainerJob.objects.get(pk=job.pk) == job  # integer ids as before, no warning


def test_a_host_made_again_under_the_same_id_gets_a_fresh_mock_executor():
    first = ExecutorHost.objects.create(name="again", executor_type="mock")
    executor = mock_executor(first)
    pk = first.pk
    first.delete()
    second = ExecutorHost.objects.create(pk=pk, name="again", executor_type="mock")
    assert mock_executor(second) is not executor
