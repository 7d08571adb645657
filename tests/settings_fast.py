"""Settings for worker subprocesses in the acceptance tests: short leases, kept containers.

The demo's settings, with a lease of 3 s renewed every second, so that a
killed worker's jobs are rescued within seconds, and finished containers
kept (``CONTAINER_RETENTION = "keep"``) so that tests can count the
containers of every job and attempt. The test run's container labels and
name prefix come from the environment, as the test process sets them.
"""

from __future__ import annotations

import os

from demo.settings import *  # noqa: F403
from demo.settings import CONTAINER_MANAGER as _DEMO_CONTAINER_MANAGER

CONTAINER_MANAGER = {
    **_DEMO_CONTAINER_MANAGER,
    "LEASE_SECONDS": int(os.environ.get("CM_TEST_LEASE_SECONDS", "3")),
    "HEARTBEAT_SECONDS": int(os.environ.get("CM_TEST_HEARTBEAT_SECONDS", "1")),
    "CONTAINER_RETENTION": os.environ.get("CM_TEST_RETENTION", "keep"),
}
if os.environ.get("CM_TEST_RUN_LABEL"):
    label, _, value = os.environ["CM_TEST_RUN_LABEL"].partition("=")
    CONTAINER_MANAGER["CONTAINER_LABELS"] = {label: value}
if os.environ.get("CM_TEST_NAME_PREFIX"):
    CONTAINER_MANAGER["CONTAINER_NAME_PREFIX"] = os.environ["CM_TEST_NAME_PREFIX"]
if os.environ.get("CM_TEST_REGISTRY"):
    # One registry's credentials, the password in CM_TEST_REGISTRY_PASSWORD.
    address, _, username = os.environ["CM_TEST_REGISTRY"].partition("=")
    CONTAINER_MANAGER["REGISTRIES"] = {
        address: {"username": username, "password_env": "CM_TEST_REGISTRY_PASSWORD"}
    }
