"""Generated input through the queue API, on a job in every state: documented errors only.

Each example calls one public method of ``queue_manager`` with generated
arguments on a job in one of the state machine's states (and on hosts and
queues by generated names). The call must either succeed or raise one of the
errors docs/api-reference.md documents for it (a ``ValueError`` subclass of
ours, a ``ValidationError`` naming the field, ``ExecutorHost.DoesNotExist``);
anything else (``DataError``, ``TypeError``, ``OverflowError`` ...) fails the
test. A call that raises must leave every job, queue and host row as it was.

Each example runs in a savepoint that is rolled back. ``CM_PROPERTY_EXAMPLES``
sets the examples per test (12 by default).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from container_manager.exceptions import ContainerManagerError
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.queue import queue_manager
from container_manager.states import JobStatus
from tests.property.tally import record
from tests.property.test_admin_input import PROPERTY, nasty_text, rolled_back
from tests.unit import fake_executor as fakes

pytestmark = pytest.mark.django_db

fake_host = fakes.fake_host
fake_executor = fakes.fake_executor

#: What a refused call may raise (docs/api-reference.md, "Errors").
DOCUMENTED = (ContainerManagerError, ValueError, ValidationError, ExecutorHost.DoesNotExist)

STATES = [member.value for member in JobStatus]

priorities = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.integers(-2, 102),
    st.booleans(),
    st.floats(allow_nan=True),
    st.sampled_from(["50", "", "high", b"1", [], {}]),
)
datetimes = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.datetimes(timezones=st.just(timezone.get_current_timezone())),
    st.sampled_from(["2026-01-01", 0, 1e20, "", timedelta(seconds=5)]),
)
names = st.one_of(nasty_text, st.integers(), st.none())


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row the queue API may touch, in a stable order."""
    return {
        "jobs": list(ContainerJob.objects.order_by("pk").values()),
        "queues": list(JobQueue.objects.order_by("pk").values()),
        "hosts": list(ExecutorHost.objects.order_by("pk").values()),
    }


def job_in(host: ExecutorHost, status: str) -> ContainerJob:
    """A job stored in ``status``, with what that status implies (a container when running)."""
    job = ContainerJob.objects.create(name=f"job-{status}", command="echo hi", host=host)
    fields: dict[str, Any] = {"status": status}
    if status in (JobStatus.RUNNING, JobStatus.PAUSED):
        fields.update(container_id=f"c-{job.pk}", attempt=1, started_at=timezone.now())
    if status in (JobStatus.QUEUED, JobStatus.RETRYING):
        fields.update(queued_at=timezone.now())
    ContainerJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


def call(surface: str, operation: Any) -> None:
    """Run one call; a refusal must be documented and change nothing."""
    before = snapshot()
    refused: Exception | None = None
    try:
        with transaction.atomic():
            operation()
    except DOCUMENTED as exc:
        refused = exc
    record(surface, 200 if refused is None else 400)
    if refused is None:
        return
    if isinstance(refused, ValidationError) and hasattr(refused, "error_dict"):
        assert all(field for field in refused.error_dict), refused
    assert snapshot() == before, f"{surface} raised {refused!r} and changed rows"


JOB_CALLS = {
    "queue_job": lambda job, priority, when, flag: queue_manager.queue_job(
        job, schedule_for=when, priority=priority
    ),
    "dequeue_job": lambda job, priority, when, flag: queue_manager.dequeue_job(job),
    "retry_failed_job": lambda job, priority, when, flag: queue_manager.retry_failed_job(
        job, reset_count=flag
    ),
    "pause_job": lambda job, priority, when, flag: queue_manager.pause_job(job),
    "resume_job": lambda job, priority, when, flag: queue_manager.resume_job(job),
    "cancel_job": lambda job, priority, when, flag: queue_manager.cancel_job(job),
}


@PROPERTY
@given(
    status=st.sampled_from(STATES),
    method=st.sampled_from(sorted(JOB_CALLS)),
    priority=priorities,
    when=datetimes,
    flag=st.booleans(),
)
def test_job_calls_in_every_state_succeed_or_raise_a_documented_error(
    fake_host, fake_executor, status, method, priority, when, flag
):
    with rolled_back():
        job = job_in(fake_host, status)
        if method == "cancel_job" and job.container_id:
            fake_executor.add_container(job.pk, job.attempt)
        call(f"queue API {method}", lambda: JOB_CALLS[method](job, priority, when, flag))


@PROPERTY
@given(
    method=st.sampled_from(["pause_queue", "resume_queue", "pause_host", "resume_host"]),
    name=names,
)
def test_queue_and_host_calls_by_name_succeed_or_raise_a_documented_error(fake_host, method, name):
    with rolled_back():
        call(f"queue API {method}", lambda: getattr(queue_manager, method)(name))
        if method.endswith("_queue"):
            # A refused name creates no queue; an accepted one is stored as given.
            stored = set(JobQueue.objects.values_list("name", flat=True))
            assert stored <= {name}


@PROPERTY
@given(
    limit=st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    exclude=st.one_of(st.none(), st.lists(st.integers(-(2**70), 2**70), max_size=5)),
)
def test_get_ready_jobs_takes_any_limit_and_exclusion(fake_host, limit, exclude):
    with rolled_back():
        job_in(fake_host, JobStatus.QUEUED)

        def read() -> None:
            list(queue_manager.get_ready_jobs(limit=limit, exclude_ids=exclude))

        call("queue API get_ready_jobs", read)
