"""What one worker counts for Prometheus: launches, failures, durations, pickup latency.

Each worker serves its own counters and histograms on ``--metrics-port``
(``process_container_jobs --queue-mode --metrics-port 9101``), in a registry
of its own, so that workers on several machines never mix their figures; the
queue's gauges come from the database instead (:mod:`container_manager.metrics`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from container_manager.models import ContainerJob

#: Buckets of the job durations, in seconds: a second to a day.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
#: Buckets of the pickup latency (queued to launched), in seconds.
PICKUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    """The counters and histograms of one worker, in their own registry.

    Args:
        worker_id: The worker's id, a label of every series.
    """

    def __init__(self, worker_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["worker_id"]
        self.worker_id = worker_id
        self.launches = Counter(
            "container_manager_worker_launches",
            "Containers this worker launched, by host",
            [*labels, "host"],
            registry=self.registry,
        )
        self.launch_failures = Counter(
            "container_manager_worker_launch_failures",
            "Launches that failed, by error code and whether a retry was scheduled",
            [*labels, "error_code", "retried"],
            registry=self.registry,
        )
        self.finished = Counter(
            "container_manager_worker_jobs_finished",
            "Job ends this worker recorded, by named queue and status",
            [*labels, "queue", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "container_manager_job_duration_seconds",
            "How long each job's container ran, by named queue and status",
            [*labels, "queue", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.pickup = Histogram(
            "container_manager_pickup_latency_seconds",
            "From a job's queued_at to its launch, by named queue",
            [*labels, "queue"],
            buckets=PICKUP_BUCKETS,
            registry=self.registry,
        )
        self.up = Gauge(
            "container_manager_worker_up", "1 while the worker runs", labels, registry=self.registry
        )
        self.up.labels(worker_id).set(1)

    def launched(self, job: ContainerJob) -> None:
        """Count one launch, and its pickup latency."""
        host = job.host.name if job.host is not None else ""
        self.launches.labels(self.worker_id, host).inc()
        if job.queued_at is not None and job.launched_at is not None:
            latency = max((job.launched_at - job.queued_at).total_seconds(), 0.0)
            self.pickup.labels(self.worker_id, job.queue).observe(latency)

    def launch_failed(self, error_code: str, retried: bool) -> None:
        """Count one failed launch."""
        self.launch_failures.labels(
            self.worker_id, error_code or "UNKNOWN_ERROR", str(retried).lower()
        ).inc()

    def ended(self, job: ContainerJob) -> None:
        """Count one recorded end, and its duration."""
        self.finished.labels(self.worker_id, job.queue, job.status).inc()
        if job.started_at is not None and job.completed_at is not None:
            seconds = max((job.completed_at - job.started_at).total_seconds(), 0.0)
            self.duration.labels(self.worker_id, job.queue, job.status).observe(seconds)

    def stopped(self) -> None:
        self.up.labels(self.worker_id).set(0)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Serve the metrics over HTTP on ``address:port`` (a thread of prometheus-client)."""
        start_http_server(port, addr=address, registry=self.registry)
