"""Schemathesis against the API's own OpenAPI schema: generated requests to every operation,
answered without a server error.

The schema is read from the running app (``/api/schema/``) and the requests
go to it in process (WSGI), as a superuser with a token, with a mock host,
jobs in several states and a paused queue in the database, so that ids and
names sometimes hit. ``CM_PROPERTY_EXAMPLES`` sets the examples per
operation (12 by default). The answers are counted per operation in the
summary printed at the end of the run.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error

from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from tests.property.tally import record

EXAMPLES = int(os.environ.get("CM_PROPERTY_EXAMPLES", "12"))

# Read once at collection: serving the schema touches no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def in_test_transaction():
    """Keep the test's connection across the WSGI requests, as Django's test client does.

    The WSGI handler closes the database connection at the end of each
    request (``close_old_connections``), which would end the test's
    transaction on PostgreSQL.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, in_test_transaction) -> str:
    user = User.objects.create_superuser("schemathesis", password="x")
    host = ExecutorHost.objects.create(
        name="mock", executor_type="mock", executor_config={"run_seconds": None}
    )
    for n in range(3):
        queue_manager.create_and_queue(name=f"s{n}", command="echo hi", host=host)
    running = ContainerJob.objects.create(name="running", command="echo", host=host)
    queue_manager.process_job(running)
    queue_manager.pause_queue("reports")
    return Token.objects.create(user=user).key


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_gets_a_server_error(case, token):
    response = case.call_and_validate(
        headers={"Authorization": f"Token {token}"}, checks=[not_a_server_error]
    )
    record(f"api {case.method} {case.path}", response.status_code)
