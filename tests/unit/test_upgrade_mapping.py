"""How a 1.0.x row becomes 2.x fields (``container_manager.upgrade``), odd rows included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from container_manager.upgrade import (
    UPGRADE_INTERRUPTED,
    UnknownSchemaError,
    check_v1_job_table,
    host_changes,
    job_fields,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def old_job(**fields):
    row = {
        "id": uuid.uuid4(),
        "status": "pending",
        "docker_image": "busybox",
        "docker_host_id": 1,
        "timeout_seconds": 3600,
        "priority": 50,
        "retry_count": 0,
        "max_retries": 3,
        "created_at": NOW,
    }
    row.update(fields)
    return row


def test_environment_lines_2x_refuses_are_kept_in_legacy_data_and_the_rest_used():
    text = "GOOD=1\nnot a variable\n2BAD=x\nALSO_GOOD='quoted'"
    fields = job_fields(old_job(override_environment=text), NOW)
    assert fields["environment"] == {"GOOD": "1", "ALSO_GOOD": "quoted"}
    assert fields["legacy_data"]["override_environment"] == text


def test_several_networks_keep_the_first_and_the_whole_configuration():
    networks = [{"network_name": "a", "aliases": ["x"]}, {"network_name": "b", "aliases": []}]
    fields = job_fields(old_job(network_configuration=networks), NOW)
    assert fields["network"] == "a"
    assert fields["legacy_data"]["network_configuration"] == networks


@pytest.mark.parametrize("status", ["launching", "running"])
def test_jobs_1_0_had_launched_fail_with_upgrade_interrupted_and_name_their_container(status):
    fields = job_fields(old_job(status=status, execution_id="abc123"), NOW)
    assert (fields["status"], fields["error_code"]) == ("failed", UPGRADE_INTERRUPTED)
    assert "container abc123" in fields["last_error"]
    assert fields["completed_at"] == NOW
    assert fields["attempt"] == 1


def test_a_status_2x_does_not_know_fails_and_is_kept():
    fields = job_fields(old_job(status="weird"), NOW)
    assert (fields["status"], fields["error_code"]) == ("failed", UPGRADE_INTERRUPTED)
    assert fields["legacy_data"]["status"] == "weird"


def test_values_out_of_2x_ranges_are_brought_into_them():
    fields = job_fields(old_job(priority=250, max_retries=0, timeout_seconds=0), NOW)
    assert (fields["priority"], fields["max_retries"], fields["timeout_seconds"]) == (100, 1, 1)


def test_a_queued_job_without_queued_at_is_queued_at_its_creation():
    assert job_fields(old_job(status="queued", queued_at=None), NOW)["queued_at"] == NOW


def test_hosts_tls_flags_move_into_executor_config_and_other_types_are_made_inactive():
    assert host_changes("docker", True, False, {"x": 1}) == {
        "executor_config": {"x": 1, "tls": {"verify": False}}
    }
    assert host_changes("fargate", False, False, {}) == {"executor_config": {}, "is_active": False}


def test_a_job_table_of_another_shape_is_refused_naming_what_is_missing():
    with pytest.raises(UnknownSchemaError, match="missing: docker_host_id, execution_id"):
        check_v1_job_table({"docker_image", "stdout_log", "id"}, "t")
    with pytest.raises(UnknownSchemaError, match="no t table"):
        check_v1_job_table(set(), "t")
