"""One definition per queue concept: the filters and ``JobQuerySet`` verbs of jobs.

"Ready and due", "holds a slot", "lease expired" and the other places a job
can be in the queue are defined here once, as ``Q`` builders and as verbs of
``ContainerJob.objects`` (``ContainerJob.objects.ready()``). Claims, the
statistics, the worker and the admin all use them, so they cannot drift apart.
The builders take a ``prefix`` so that the same rule can be read through a
relation (``holding_q("jobs__")`` from ``ExecutorHost``).

Hosts have one such concept too: :func:`claimable_host_q`, the hosts that
may be given jobs now (``ExecutorHost.objects.claimable()``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import models
from django.db.models import Q
from django.utils import timezone

from container_manager import states
from container_manager.models.legacy import (
    HOST_RESHAPED,
    JOB_RENAMES,
    JOB_RESHAPED,
    translate_job_ids,
    translate_lookups,
    warn,
)
from container_manager.states import JobStatus

#: The job model; the queryset is defined before it (models/job.py uses it).
_Job = TypeVar("_Job", bound=models.Model)
#: The host model (models/host.py uses ``HostQuerySet``).
_Model = TypeVar("_Model", bound=models.Model)

#: Order of the ready query: priority desc, then first in, first out (cm_job_ready_idx).
READY_ORDER = ("-priority", "queued_at", "id")

QUEUE_STATUSES = ("not_queued", "queued", "scheduled", "launched", "launch_failed")

#: ``ExecutorHost.health_status`` of a host that did not answer its last check.
UNHEALTHY = "unhealthy"
#: Longest wait between two checks of an unhealthy host (the backoff's ceiling).
HEALTH_RECHECK_MAX_SECONDS = 30
#: An unhealthy host that nobody checked for this long (no worker runs the
#: re-checks: only the command's legacy mode, say) is claimable again, so that
#: the next launch finds out; twice the backoff's ceiling.
HEALTH_STALE_SECONDS = 2 * HEALTH_RECHECK_MAX_SECONDS


def _in(prefix: str, statuses: frozenset[str]) -> Q:
    return Q(**{f"{prefix}status__in": sorted(statuses)})


def waiting_q(prefix: str = "") -> Q:
    """Jobs waiting in the queue (queued or retrying), due or not."""
    return _in(prefix, states.READY_STATUSES)


def due_q(now: datetime, prefix: str = "") -> Q:
    """Jobs without a scheduled time, or whose scheduled time has come."""
    return Q(**{f"{prefix}scheduled_for__isnull": True}) | Q(**{f"{prefix}scheduled_for__lte": now})


def ready_q(now: datetime, prefix: str = "") -> Q:
    """Jobs waiting in the queue whose scheduled time, if any, has come."""
    return waiting_q(prefix) & due_q(now, prefix)


def unmet_dependencies() -> models.Exists:
    """Jobs that wait for another job that has not completed (``JobDependency``).

    Used negated: ``~unmet_dependencies()`` keeps the jobs free to start.
    """
    from container_manager.models.images import JobDependency

    return models.Exists(
        JobDependency.objects.filter(job_id=models.OuterRef("pk")).exclude(
            depends_on__status=JobStatus.COMPLETED
        )
    )


def failed_dependencies() -> models.Exists:
    """Jobs that wait for a job that ended without completing (failed, timed out, cancelled)."""
    from container_manager.models.images import JobDependency

    return models.Exists(
        JobDependency.objects.filter(
            job_id=models.OuterRef("pk"),
            depends_on__status__in=sorted(states.TERMINAL_STATUSES - {JobStatus.COMPLETED}),
        )
    )


def launching_q(prefix: str = "") -> Q:
    """Jobs a worker has claimed and is launching (validating, preparing, pulling)."""
    return _in(prefix, states.LAUNCHING_STATUSES)


def active_q(prefix: str = "") -> Q:
    """Jobs a worker holds whose container may exist (launching or running)."""
    return _in(prefix, states.ACTIVE_STATUSES)


def holding_q(prefix: str = "") -> Q:
    """Jobs that occupy a slot of their host and queue.

    Claimed, launching and running jobs, and paused jobs whose container was
    launched (it is frozen, not gone).
    """
    return active_q(prefix) | Q(
        **{f"{prefix}status": JobStatus.PAUSED, f"{prefix}launched_at__isnull": False}
    )


def leased_q(prefix: str = "") -> Q:
    """Jobs a worker holds under a lease (``states.LEASED_STATUSES``)."""
    return _in(prefix, states.LEASED_STATUSES)


def expired_q(now: datetime, prefix: str = "") -> Q:
    """Leased jobs whose lease ran out: their worker is presumed dead."""
    return leased_q(prefix) & Q(**{f"{prefix}lease_expires_at__lt": now})


def launch_failed_q(prefix: str = "") -> Q:
    """Jobs that were queued and failed before a container ever ran."""
    return Q(
        **{
            f"{prefix}status": JobStatus.FAILED,
            f"{prefix}launched_at__isnull": True,
            f"{prefix}queued_at__isnull": False,
        }
    )


def unhealthy_q(now: datetime, prefix: str = "") -> Q:
    """Hosts known not to answer: unhealthy at a check less than ``HEALTH_STALE_SECONDS`` old.

    ``unknown`` (never checked) and ``healthy`` hosts are not, and neither is
    an unhealthy host whose last check is older: no worker is checking it.
    """
    fresh = now - timedelta(seconds=HEALTH_STALE_SECONDS)
    return Q(
        **{f"{prefix}health_status": UNHEALTHY, f"{prefix}last_health_check_at__gte": fresh}
    ) | Q(**{f"{prefix}health_status": UNHEALTHY, f"{prefix}last_health_check_at__isnull": True})


def claimable_host_q(now: datetime, prefix: str = "") -> Q:
    """Hosts that may be given jobs now: active, not paused, and not known to be down."""
    available = Q(**{f"{prefix}is_active": True, f"{prefix}is_paused": False})
    return available & ~unhealthy_q(now, prefix)


def queue_status_q(value: str, now: datetime | None = None) -> Q:
    """Return the filter matching jobs whose ``queue_status`` is ``value``.

    Args:
        value: One of ``QUEUE_STATUSES``.
        now: The time that decides between queued and scheduled.

    Returns:
        A ``Q`` object; the admin filter and the statistics use it.

    Raises:
        ValueError: For an unknown value.
    """
    now = now or timezone.now()
    waiting = waiting_q()
    due = due_q(now)
    launched = Q(launched_at__isnull=False)
    failed_launch = launch_failed_q()
    claimed = launching_q() & Q(launched_at__isnull=True)
    filters = {
        "launched": launched,
        "launch_failed": failed_launch,
        "scheduled": waiting & ~due & ~launched,
        "queued": ((waiting & due) | claimed) & ~launched,
        "not_queued": ~launched & ~failed_launch & ~waiting & ~claimed,
    }
    try:
        return filters[value]
    except KeyError:
        raise ValueError(f"Unknown queue status {value!r}; use one of {QUEUE_STATUSES}") from None


class HostQuerySet(models.QuerySet[_Model]):
    """Host queries: ``ExecutorHost.objects.claimable()``."""

    def filter(self, *args: Any, **kwargs: Any) -> HostQuerySet[_Model]:
        """``QuerySet.filter``; a 1.0.x field (``host_type``) is refused naming its 2.x place."""
        return super().filter(*args, **translate_lookups("ExecutorHost", kwargs, {}, HOST_RESHAPED))

    def exclude(self, *args: Any, **kwargs: Any) -> HostQuerySet[_Model]:
        """``QuerySet.exclude``, with the same check as :meth:`filter`."""
        return super().exclude(
            *args, **translate_lookups("ExecutorHost", kwargs, {}, HOST_RESHAPED)
        )

    def claimable(self, now: datetime | None = None) -> HostQuerySet[_Model]:
        """Hosts that may be given jobs now (``now`` defaults to the present)."""
        return self.filter(claimable_host_q(now or timezone.now()))

    def unhealthy(self, now: datetime | None = None) -> HostQuerySet[_Model]:
        """Hosts known not to answer (``now`` defaults to the present)."""
        return self.filter(unhealthy_q(now or timezone.now()))


class JobQuerySet(models.QuerySet[_Job]):
    """Job queries; ``update(status=...)`` only moves rows the state machine allows."""

    def filter(self, *args: Any, **kwargs: Any) -> JobQuerySet[_Job]:
        """``QuerySet.filter``; 1.0.x field names (``docker_image``) still work, deprecated."""
        return super().filter(
            *args,
            **translate_job_ids(
                translate_lookups("ContainerJob", kwargs, JOB_RENAMES, JOB_RESHAPED)
            ),
        )

    def exclude(self, *args: Any, **kwargs: Any) -> JobQuerySet[_Job]:
        """``QuerySet.exclude``, with 1.0.x field names as in :meth:`filter`."""
        return super().exclude(
            *args,
            **translate_job_ids(
                translate_lookups("ContainerJob", kwargs, JOB_RENAMES, JOB_RESHAPED)
            ),
        )

    def create_job(
        self,
        image: str,
        command: str = "",
        name: str = "",
        environment_template: Any = None,
        environment_vars: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> _Job:
        """Deprecated 1.0.x helper: ``create()`` with a template given by name.

        Args:
            image: The image.
            command: The command.
            name: The job's name.
            environment_template: A template, or its name.
            environment_vars: The job's own variables (over the template's).
            **kwargs: Other fields, 1.0.x names included.

        Returns:
            The new job (``pending``; queue it with ``queue_manager.queue_job``).

        Raises:
            ValueError: No template has that name.
        """
        warn(
            "ContainerJob.objects.create_job()",
            "ContainerJob.objects.create(image=..., environment={...}) or "
            "queue_manager.create_and_queue(...)",
        )
        template = environment_template
        if isinstance(template, str):
            templates = self.model._meta.get_field("environment_template").related_model
            assert templates is not None
            assert not isinstance(templates, str)
            template = templates._default_manager.filter(name=template).first()
            if template is None:
                raise ValueError(f"Environment template {environment_template!r} not found")
        return self.create(
            image=image,
            command=command,
            name=name,
            environment_template=template,
            environment=dict(environment_vars or {}),
            **kwargs,
        )

    def update(self, **kwargs: Any) -> int:
        """Update the rows, guarding any status change.

        When ``status`` is among the values, only rows whose current status may
        move to it are updated (the others are left as they are), so no code
        path can write an invalid transition in bulk.

        Returns:
            The number of rows changed.

        Raises:
            ValueError: For an unknown status.
            TypeError: When the status is an expression rather than a value.
        """
        if "status" not in kwargs:
            return super().update(**kwargs)
        new = kwargs["status"]
        if not isinstance(new, str):
            raise TypeError("ContainerJob.status can only be updated to a literal status")
        if new not in JobStatus.values:
            raise ValueError(f"Unknown job status {new!r}")
        guarded = self.filter(status__in=states.sources_of(new))
        return super(JobQuerySet, guarded).update(**kwargs)

    def with_queue_status(self, value: str) -> JobQuerySet[_Job]:
        """Filter on the queue status (not_queued, queued, scheduled, launched, launch_failed)."""
        return self.filter(queue_status_q(value))

    def waiting(self) -> JobQuerySet[_Job]:
        """Jobs waiting in the queue (queued or retrying), due or not."""
        return self.filter(waiting_q())

    def ready(self, now: datetime | None = None) -> JobQuerySet[_Job]:
        """Jobs waiting in the queue whose time has come and whose dependencies all completed.

        ``now`` defaults to the present.
        """
        return self.filter(ready_q(now or timezone.now())).filter(~unmet_dependencies())

    def launching(self) -> JobQuerySet[_Job]:
        """Jobs claimed and being launched."""
        return self.filter(launching_q())

    def holding(self) -> JobQuerySet[_Job]:
        """Jobs that occupy a slot of their host and queue."""
        return self.filter(holding_q())

    def leased(self) -> JobQuerySet[_Job]:
        """Jobs a worker holds under a lease."""
        return self.filter(leased_q())

    def expired(self, now: datetime | None = None) -> JobQuerySet[_Job]:
        """Leased jobs whose lease ran out (``now`` defaults to the present)."""
        return self.filter(expired_q(now or timezone.now()))

    def launch_failed(self) -> JobQuerySet[_Job]:
        """Jobs that were queued and failed before a container ever ran."""
        return self.filter(launch_failed_q())

    def held_by(self, worker_id: str) -> JobQuerySet[_Job]:
        """Leased jobs held by the worker ``worker_id`` (never by the empty id)."""
        return self.leased().filter(worker_id=worker_id).exclude(worker_id="")
