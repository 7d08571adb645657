"""Host health, written here only: ``health_status``, ``health_error``, ``last_health_check_at``.

An unreachable host is an infrastructure fault, not the job's: the host is
marked ``unhealthy``, claims skip it (jobs pinned to it wait, the others go
to healthy hosts), any worker checks it again with backoff (1, 2, 4 ... s,
at most every ``HEALTH_RECHECK_MAX_SECONDS``), and it is marked ``healthy``
again once it answers. ``unknown`` means never checked, and is claimable.

Each change of status is one guarded ``UPDATE`` that only one caller wins,
so the outage is logged once (when it starts and when it ends), however
many workers and launches saw it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from container_manager.executors import can_load
from container_manager.executors.base import HealthReport
from container_manager.models import ExecutorHost
from container_manager.models.host import HealthStatus
from container_manager.models.queries import HEALTH_RECHECK_MAX_SECONDS
from container_manager.notify import announce_work
from container_manager.queue.base import ManagerBase

logger = logging.getLogger(__name__)

#: First wait before an unhealthy host is checked again; doubled after each
#: failed check, up to ``HEALTH_RECHECK_MAX_SECONDS``.
HEALTH_RECHECK_MIN_SECONDS = 1.0
#: Longest ``health_error`` kept.
MAX_HEALTH_ERROR_CHARS = 2000


def recheck_delay(failed_checks: int) -> float:
    """Seconds to wait before the next check of a host that failed ``failed_checks`` in a row.

    1, 2, 4, 8, 16, then ``HEALTH_RECHECK_MAX_SECONDS`` (30).
    """
    exponent = min(max(failed_checks - 1, 0), 16)
    return float(min(HEALTH_RECHECK_MIN_SECONDS * 2**exponent, HEALTH_RECHECK_MAX_SECONDS))


class HostHealthMixin(ManagerBase):
    """``record_host_health`` and ``check_host``; mixed into ``JobQueueManager``."""

    def record_host_health(
        self,
        host: ExecutorHost,
        is_healthy: bool,
        detail: str = "",
        *,
        now: datetime | None = None,
    ) -> bool:
        """Write the result of a check of ``host`` (the only writer of its health fields).

        Args:
            host: The host; its instance is updated too.
            is_healthy: Whether it answered.
            detail: What the check found (the error when it did not answer).
            now: The time of the check; None for now.

        Returns:
            True when this call changed the host's status (healthy to
            unhealthy or back): the caller that gets True is the one that
            says so in the log.
        """
        now = now or timezone.now()
        rows = ExecutorHost.objects.using(self.using).filter(pk=host.pk)
        if is_healthy:
            fields = {"health_status": HealthStatus.HEALTHY, "health_error": ""}
            recovered = rows.filter(health_status=HealthStatus.UNHEALTHY).update(
                **fields, last_health_check_at=now
            )
            first = 0
            if not recovered:
                first = rows.exclude(health_status=HealthStatus.HEALTHY).update(
                    **fields, last_health_check_at=now
                )
            if not recovered and not first:
                rows.update(last_health_check_at=now)
            host.health_status, host.health_error = HealthStatus.HEALTHY, ""
            host.last_health_check_at = now
            if recovered:
                logger.info(
                    "Host %s answers again%s; jobs are claimed for it",
                    host.name,
                    f" ({detail})" if detail else "",
                    extra={"worker_id": self.worker_id},
                )
                # Waiting workers wake up: the jobs pinned to it are ready again.
                announce_work("", using=self.using)
            return bool(recovered or first)
        error = (detail or "no answer")[:MAX_HEALTH_ERROR_CHARS]
        fields = {"health_status": HealthStatus.UNHEALTHY, "health_error": error}
        changed = rows.exclude(health_status=HealthStatus.UNHEALTHY).update(
            **fields, last_health_check_at=now
        )
        if not changed:
            rows.update(health_error=error, last_health_check_at=now)
        host.health_status, host.health_error = HealthStatus.UNHEALTHY, error
        host.last_health_check_at = now
        if changed:
            logger.warning(
                "Host %s does not answer (%s); no jobs are claimed for it until it does",
                host.name,
                error,
                extra={"worker_id": self.worker_id},
            )
        return bool(changed)

    def probe_host(self, host: ExecutorHost) -> HealthReport:
        """Ask the host's executor whether it answers, without writing anything.

        Returns:
            The executor's report; a host whose executor cannot be built (an
            unknown ``executor_type``, a bad ``executor_config``) answers
            unhealthy with the reason.
        """
        return self.containers.check_host(host)

    def check_host(self, host: ExecutorHost) -> HealthReport:
        """Check whether ``host`` answers, and record the result.

        Hosts whose executor cannot be loaded are not checked (nothing is
        routed to them; jobs pinned to them fail at once).

        Returns:
            The report.
        """
        if not can_load(host.executor_type):
            return HealthReport(False, f"no executor for executor_type {host.executor_type!r}")
        report = self.probe_host(host)
        self.record_host_health(host, report.is_healthy, report.detail)
        return report

    def hosts_to_check(self) -> list[ExecutorHost]:
        """Return the active hosts whose health is unknown or unhealthy, with a loadable executor.

        The worker checks each when its backoff has passed (``recheck_delay``
        counted from ``last_health_check_at``).
        """
        hosts = ExecutorHost.objects.using(self.using).filter(
            is_active=True,
            health_status__in=[HealthStatus.UNKNOWN, HealthStatus.UNHEALTHY],
        )
        return [host for host in hosts if can_load(host.executor_type)]
