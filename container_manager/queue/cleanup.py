"""What the worker's clean-up of leftover containers reads: hosts, jobs, recorded ends.

The clean-up (``container_manager.worker.sweeper``) lists the containers of
each Docker host (and the attempts of each process host on this machine) and
decides, container by container, from the rows read here. It writes nothing
itself: the end of a cancelled or timed-out job whose output is not stored
yet is recorded by ``finish_job``, like any other end.
"""

from __future__ import annotations

from collections.abc import Iterable

from container_manager.executors.base import ContainerRef
from container_manager.models import ContainerJob, ExecutorHost, ExecutorType
from container_manager.models.host import HealthStatus
from container_manager.queue.base import ManagerBase
from container_manager.states import JobStatus

#: Ended statuses written in the same UPDATE as the container's exit code and
#: output (``finish_job``), or by a launch that failed before any container
#: ran (``record_launch_failure``): nothing more is ever recorded for them.
_ENDED_WITH_OUTPUT = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


def is_end_recorded(job: ContainerJob) -> bool:
    """Tell whether the end of the job's current attempt is stored, output included.

    ``completed`` and ``failed`` are written together with the exit code and
    the output. ``cancelled`` and ``timeout`` are written first, and the
    output once the killed container has ended (``finish_job`` stores it with
    the exit code): until then ``exit_code`` is None.
    """
    return job.status in _ENDED_WITH_OUTPUT or job.exit_code is not None


class CleanupMixin(ManagerBase):
    """Reads of the clean-up of leftover containers; mixed into ``JobQueueManager``."""

    def hosts_to_sweep(self) -> list[ExecutorHost]:
        """Return the active Docker and process hosts that are not known to be down.

        Unhealthy hosts are left to the host checks; they are swept once
        they answer again. A process host's attempts are swept on the
        machine of each worker that sweeps it: every machine clears its own.
        """
        return list(
            ExecutorHost.objects.using(self.using)
            .filter(is_active=True, executor_type__in=(ExecutorType.DOCKER, ExecutorType.PROCESS))
            .exclude(health_status=HealthStatus.UNHEALTHY)
            .order_by("pk")
        )

    def jobs_of_containers(self, refs: Iterable[ContainerRef]) -> dict[int, ContainerJob]:
        """Return the rows of the jobs that ``refs`` belong to, by id, in one query.

        A job missing from the answer was deleted. Each row comes with its host.
        """
        ids = sorted({ref.job_id for ref in refs})
        if not ids:
            return {}
        rows = ContainerJob.objects.using(self.using).select_related("host").filter(pk__in=ids)
        return {int(job.pk): job for job in rows}
