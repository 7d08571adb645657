"""The system check validates the container settings the executors read."""

from __future__ import annotations

import pytest

from container_manager.checks import check_settings


@pytest.mark.parametrize(
    "options",
    [
        {"CONTAINER_LABELS": ["not", "a", "dict"]},
        {"CONTAINER_LABELS": {"team": 7}},
        {"CONTAINER_NAME_PREFIX": "has space"},
        {"CONTAINER_NAME_PREFIX": "-leading-dash"},
        {"CONTAINER_NAME_PREFIX": ""},
        {"DOCKER_DEFAULT_NETWORK": ""},
    ],
)
def test_invalid_container_settings_are_reported(settings, options):
    settings.CONTAINER_MANAGER = options
    errors = check_settings()
    assert [error.id for error in errors] == ["container_manager.E001"]
    assert next(iter(options)) in errors[0].msg


def test_valid_container_settings_pass(settings):
    settings.CONTAINER_MANAGER = {
        "CONTAINER_LABELS": {"com.example.team": "reports"},
        "CONTAINER_NAME_PREFIX": "reports.v2",
        "DOCKER_DEFAULT_NETWORK": "bridge",
    }
    assert check_settings() == []
