"""Prometheus metrics with several workers: each worker's own counters on its port, and the
queue's gauges read from the database, parsed with prometheus-client's own parser."""

from __future__ import annotations

import socket
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from container_manager.models import ContainerJob, ExecutorHost
from container_manager.queue import queue_manager
from tests.acceptance.worker_process import WorkerProcess, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TOKEN = "a-long-enough-metrics-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(text: str) -> dict[str, list]:
    """Every sample of a scrape by metric name (counters and histograms by their sample names)."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def total(found: dict[str, list], name: str, **labels: str) -> float:
    return sum(
        s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    )


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return samples(answer.read().decode())


def test_two_workers_count_their_own_work_and_the_database_gives_the_queue():
    host = ExecutorHost.objects.create(
        name="mock-metrics",
        executor_type="mock",
        executor_config={"run_seconds": 0.2, "stdout": "ok\n"},
        max_concurrent_jobs=20,
    )
    jobs = [queue_manager.create_and_queue(command=f"job {n}", host=host) for n in range(10)]
    later = [
        queue_manager.create_and_queue(
            command="later",
            host=host,
            queue="nightly",
            schedule_for=timezone.now() + timedelta(hours=1),
        )
        for _ in range(3)
    ]
    ports = [free_port(), free_port()]
    workers = [
        WorkerProcess(f"--worker-id=metrics-{n}", f"--metrics-port={port}", "--max-concurrent=5")
        for n, port in enumerate(ports)
    ]
    try:
        for worker in workers:
            worker.wait_ready(30)
        wait_until(
            lambda: (
                ContainerJob.objects.filter(pk__in=[j.pk for j in jobs], status="completed").count()
                == 10
            ),
            60,
            0.2,
            what="the ten jobs completed",
        )
        scraped = [scrape(port) for port in ports]
        # Each worker counts only its own work; together, every job once.
        launched = [total(s, "container_manager_worker_launches_total") for s in scraped]
        finished = [
            total(s, "container_manager_worker_jobs_finished_total", status="completed")
            for s in scraped
        ]
        assert sum(launched) == 10, launched
        assert sum(finished) == 10, finished
        assert (
            sum(total(s, "container_manager_pickup_latency_seconds_count") for s in scraped) == 10
        )
        assert sum(total(s, "container_manager_job_duration_seconds_count") for s in scraped) == 10
        for n, found in enumerate(scraped):
            assert {s.labels["worker_id"] for s in found["container_manager_worker_up"]} == {
                f"metrics-{n}"
            }
            assert total(found, "container_manager_worker_up") == 1

        with override_settings(CONTAINER_MANAGER={"METRICS_TOKEN": TOKEN}):
            answer = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get("/metrics/")
            assert answer.status_code == 200
            db = samples(answer.content.decode())
            assert Client().get("/metrics/").status_code == 401
            assert Client(HTTP_AUTHORIZATION="Bearer wrong").get("/metrics/").status_code == 401
        assert total(db, "container_manager_jobs", queue="nightly", status="queued") == 3
        assert total(db, "container_manager_jobs_ready", queue="nightly") == 0
        assert (
            total(db, "container_manager_finished_jobs", queue="default", status="completed") == 10
        )
        assert total(db, "container_manager_workers_alive") == 2
        assert total(db, "container_manager_host_capacity", host="mock-metrics") == 20
        assert total(db, "container_manager_host_available", host="mock-metrics") == 1
        assert {
            s.labels["worker_id"] for s in db["container_manager_worker_heartbeat_age_seconds"]
        } == {
            "metrics-0",
            "metrics-1",
        }
    finally:
        for worker in workers:
            worker.stop()
    assert len(later) == 3


def test_the_oldest_ready_job_age_and_staff_access():
    host = ExecutorHost.objects.create(name="idle", executor_type="mock", is_paused=True)
    job = queue_manager.create_and_queue(command="wait", host=host, queue="slow")
    ContainerJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(minutes=5))
    staff = User.objects.create_user("watcher", is_staff=True)
    browser = Client()
    browser.force_login(staff)
    assert browser.get("/metrics/").status_code == 403, "staff without the view permission"
    admin = User.objects.create_superuser("boss", password="x")
    browser.force_login(admin)
    db = samples(browser.get("/metrics/").content.decode())
    assert 290 <= total(db, "container_manager_oldest_ready_job_age_seconds", queue="slow") <= 400
    assert total(db, "container_manager_host_available", host="idle") == 0


def test_metrics_port_errors_are_said_before_anything_runs():
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--metrics-port must be at least 1"):
        call_command(
            "process_container_jobs", "--queue-mode", "--metrics-port=0", stdout=StringIO()
        )
    with pytest.raises(CommandError, match="--metrics-port only applies to --queue-mode"):
        call_command("process_container_jobs", "--metrics-port=9999", stdout=StringIO())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"Cannot serve metrics on 127.0.0.1:{port}"):
            call_command(
                "process_container_jobs",
                "--queue-mode",
                "--once",
                f"--metrics-port={port}",
                stdout=StringIO(),
            )
