"""Prometheus metrics of the queue, read from the database at scrape time.

Every figure here is the database's, so any number of web processes and
workers agree on it: a scrape of ``container_manager.api.metrics.metrics_view``
(``/metrics/`` in your URLconf) asks the database, with the queries of the
statistics (the unfinished-jobs index, the tally of finished ones). What a
worker does (launches, failures, durations, pickup latency) is counted by
each worker and served on its own ``--metrics-port``
(:mod:`container_manager.worker.metrics`). docs/deployment.md ("Metrics") has the scrape
configuration and example alerts. Needs ``prometheus-client``
(``pip install "django-container-manager[metrics]"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from container_manager.models import ContainerJob, ExecutorHost, Worker
from container_manager.models.queries import due_q, holding_q, waiting_q
from container_manager.models.tally import history_from_jobs, history_from_tally, is_kept
from container_manager.states import UNFINISHED_STATUSES

PREFIX = "container_manager"


class DatabaseCollector(Collector):
    """Gauges of the queue, hosts and workers, read from the database at each scrape.

    Args:
        using: The database alias.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def collect(self) -> Iterator[Any]:
        now = timezone.now()
        jobs = ContainerJob.objects.using(self.using)
        unfinished = GaugeMetricFamily(
            f"{PREFIX}_jobs",
            "Jobs not finished, by named queue and status",
            labels=["queue", "status"],
        )
        for row in (
            jobs.filter(status__in=sorted(UNFINISHED_STATUSES))
            .values("queue", "status")
            .annotate(n=Count("id"))
            .order_by("queue", "status")
        ):
            unfinished.add_metric([row["queue"], row["status"]], row["n"])
        yield unfinished

        ready = GaugeMetricFamily(
            f"{PREFIX}_jobs_ready",
            "Jobs waiting whose time has come, by named queue",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_oldest_ready_job_age_seconds",
            "How long the oldest job ready to run has waited, by named queue",
            labels=["queue"],
        )
        for waiting in (
            jobs.filter(waiting_q() & due_q(now))
            .values("queue")
            .annotate(n=Count("id"), first=Min("queued_at"))
            .order_by("queue")
        ):
            ready.add_metric([waiting["queue"]], waiting["n"])
            if waiting["first"] is not None:
                age_seconds = max((now - waiting["first"]).total_seconds(), 0.0)
                oldest.add_metric([waiting["queue"]], age_seconds)
        yield ready
        yield oldest

        finished = GaugeMetricFamily(
            f"{PREFIX}_finished_jobs",
            "Finished jobs kept in the database, by named queue, status and error code",
            labels=["queue", "status", "error_code"],
        )
        groups = (
            history_from_tally(self.using, None)
            if is_kept(self.using)
            else history_from_jobs(jobs.all())
        )
        totals: dict[tuple[str, str, str], int] = {}
        for group in groups:
            key = (group.queue, group.status, group.error_code)
            totals[key] = totals.get(key, 0) + group.jobs
        for key, n in sorted(totals.items()):
            if n:
                finished.add_metric(list(key), n)
        yield finished

        running = GaugeMetricFamily(
            f"{PREFIX}_host_jobs", "Jobs held on each host (launching or running)", labels=["host"]
        )
        capacity = GaugeMetricFamily(
            f"{PREFIX}_host_capacity", "max_concurrent_jobs of each host", labels=["host"]
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_host_available",
            "1 when the host takes new jobs (active, not paused, not unhealthy)",
            labels=["host"],
        )
        hosts = ExecutorHost.objects.using(self.using).annotate(
            held=Count("jobs", filter=holding_q("jobs__"))
        )
        for host in hosts.order_by("name"):
            running.add_metric([host.name], host.held)
            capacity.add_metric([host.name], host.max_concurrent_jobs)
            available = host.is_active and not host.is_paused and host.health_status != "unhealthy"
            up.add_metric([host.name], 1 if available else 0)
        yield running
        yield capacity
        yield up

        alive = GaugeMetricFamily(f"{PREFIX}_workers_alive", "Workers whose heartbeat is fresh")
        age = GaugeMetricFamily(
            f"{PREFIX}_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat (workers not stopped)",
            labels=["worker_id"],
        )
        count = 0
        for worker in (
            Worker.objects.using(self.using).exclude(Q(status="stopped")).order_by("worker_id")
        ):
            count += worker.is_alive(now)
            age.add_metric(
                [worker.worker_id], max((now - worker.last_heartbeat_at).total_seconds(), 0.0)
            )
        alive.add_metric([], count)
        yield alive
        yield age


def database_registry(using: str = "default") -> CollectorRegistry:
    """A registry holding only :class:`DatabaseCollector` (what ``/metrics/`` serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(using))
    return registry


__all__ = ["PREFIX", "DatabaseCollector", "database_registry"]
