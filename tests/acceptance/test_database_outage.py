"""A worker waits out a database outage, at its start and while it runs, and carries on.

The outage is real for the worker: it reaches PostgreSQL through a loopback
proxy (:mod:`tests.acceptance.tcp_proxy`) that the test takes down, so its
connections are refused or cut as when the server restarts.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from container_manager.models import ContainerJob, Worker
from container_manager.states import JobStatus
from tests.acceptance.tcp_proxy import TcpProxy
from tests.acceptance.worker_process import (
    WorkerProcess,
    database_url,
    make_docker_host,
    queue_jobs,
    remove_containers,
    wait_until,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    settings = connection.settings_dict
    forwarder = TcpProxy((settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432)))
    yield forwarder
    forwarder.close()


def _through(proxy: TcpProxy) -> str:
    parts = urlsplit(database_url())
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))


def _completed(job: ContainerJob) -> bool:
    return ContainerJob.objects.filter(pk=job.pk, status=JobStatus.COMPLETED).exists()


def test_a_worker_started_while_the_database_is_down_waits_then_works(proxy, docker_engine):
    host = make_docker_host()
    (job,) = queue_jobs(1, host, "echo first", name="after-outage")
    worker = WorkerProcess("--worker-id=outage-start", DATABASE_URL=_through(proxy))
    try:
        worker.wait_for_line(r"Database unreachable", 20)
        assert worker.proc.poll() is None, "the worker must wait, not exit"
        assert not Worker.objects.filter(worker_id="outage-start").exists()
        proxy.up()
        worker.wait_for_line(r"Database reachable again after", 40)
        worker.wait_ready(20)
        wait_until(lambda: _completed(job), 30, what="the job done after the outage")
        # One warning in the log and one line of output for the whole outage.
        # One record for the whole outage, with its time and level.
        assert len(re.findall(r"Database unreachable", worker.output)) == 1, worker.output
        assert len(re.findall(r"^\S+Z WARNING Database unreachable", worker.output, re.M)) == 1
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(30) == 0
    finally:
        worker.stop()
        remove_containers(docker_engine, [job.pk])


def test_a_running_worker_waits_out_an_outage_and_carries_on(proxy, docker_engine):
    host = make_docker_host()
    proxy.up()
    worker = WorkerProcess("--worker-id=outage-running", DATABASE_URL=_through(proxy))
    jobs: list[ContainerJob] = []
    try:
        worker.wait_ready(20)
        jobs += queue_jobs(1, host, "echo before", name="before-outage")
        wait_until(lambda: _completed(jobs[0]), 30, what="the job before the outage")
        proxy.down()
        worker.wait_for_line(r"Database unreachable", 30)
        jobs += queue_jobs(1, host, "echo after", name="during-outage")
        proxy.up()
        worker.wait_for_line(r"Database reachable again after", 40)
        wait_until(lambda: _completed(jobs[1]), 40, what="the job queued during the outage")
        assert worker.proc.poll() is None
        stored = ContainerJob.objects.get(pk=jobs[1].pk)
        assert stored.stdout.strip() == "after"
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(30) == 0
    finally:
        worker.stop()
        remove_containers(docker_engine, [job.pk for job in jobs])
