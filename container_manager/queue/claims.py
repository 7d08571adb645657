"""Acquisition: workers claim ready jobs atomically, under the queue and host limits.

How a claim stays correct with any number of workers (PostgreSQL):

- One short transaction does it all and commits before any executor call,
  so no row lock is ever held while talking to Docker.
- Ready rows are locked with ``SELECT ... FOR UPDATE OF <job> SKIP LOCKED``:
  two workers never get the same row, and neither waits for the other's rows.
- The limits (per-host ``max_concurrent_jobs``, per-queue ``max_concurrent``)
  are a check-then-act: count what is active, then claim. Two workers counting
  at the same moment would both see room for the last slot. So the check is
  serialised with one transaction-scoped advisory lock,
  ``pg_advisory_xact_lock(CLAIM_LOCK_KEY)``, taken first. It is held for the
  few milliseconds of the claim only (three small queries and an UPDATE) and
  blocks nothing but other claims: enqueues, completions and the admin never
  take it, and they only add ready rows or lower the counts. Finer locks (one
  per host and queue) would let claims on disjoint hosts overlap, but every
  claim of a job without a host may touch every host, so in practice they
  would serialise just the same, with a deadlock-prone lock order to keep.
- Counting happens after the lock is taken; in READ COMMITTED each statement
  sees everything the previous lock holder committed.

On SQLite there are no row locks and no advisory locks; the same API works
for one worker (SQLite serialises writers anyway).

Which hosts a job may get (docs/queue-management.md, "Routing"):

- only claimable hosts (``ExecutorHost.objects.claimable()``: active, not
  paused, not ``unhealthy``); a job pinned to another host waits;
- a job without a host never goes to a host whose executor cannot be
  loaded (an unknown ``executor_type``), and, while any active host runs
  images, never to one that does not (``process``): such hosts take only the
  jobs pinned to them. With process hosts only (the quick start), jobs
  without a host go to them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import connections, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone

from container_manager.conf import settings
from container_manager.executors import can_load, runs_images
from container_manager.models import ContainerJob, ExecutorHost, JobQueue
from container_manager.models.queries import READY_ORDER, claimable_host_q
from container_manager.queue.base import ManagerBase
from container_manager.queue.leases import lease_delta
from container_manager.states import JobStatus

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)

#: Key of the advisory lock that serialises the limit check of claims ("cm" + "claim").
CLAIM_LOCK_KEY = 0x636D_636C_6169_6D
#: Candidates locked per claimed job, so that jobs skipped for a limit reached
#: within the batch do not leave the batch short.
CANDIDATE_FACTOR = 4
#: Upper bound of extra candidates locked beyond ``limit``.
MAX_EXTRA_CANDIDATES = 500


@dataclass
class _Capacity:
    """Free slots per host and per limited queue, as counted under the claim lock."""

    hosts: dict[int, ExecutorHost]
    host_load: Counter[int]
    queue_limits: dict[str, int]
    queue_load: Counter[str]
    paused_queues: set[str]
    #: Hosts a job without a host may be routed to (a subset of ``hosts``).
    routable: set[int] = field(default_factory=set)
    default_host: ExecutorHost | None = None
    has_default_setting: bool = False
    assigned: list[tuple[ContainerJob, int]] = field(default_factory=list)

    def host_is_free(self, host_id: int) -> bool:
        host = self.hosts.get(host_id)
        return host is not None and self.host_load[host_id] < host.max_concurrent_jobs

    def queue_is_free(self, queue: str) -> bool:
        limit = self.queue_limits.get(queue)
        return limit is None or self.queue_load[queue] < limit

    def blocked_queues(self) -> set[str]:
        return self.paused_queues | {q for q in self.queue_limits if not self.queue_is_free(q)}

    def blocked_host_ids(self) -> set[int]:
        return {pk for pk in self.hosts if not self.host_is_free(pk)}

    def choose_host(self) -> int | None:
        """Pick a host for a job without one: DEFAULT_HOST, else the least loaded by weight."""
        if self.has_default_setting:
            host = self.default_host
            return host.pk if host is not None and self.host_is_free(host.pk) else None
        free = [h for h in self.hosts.values() if h.pk in self.routable and self.host_is_free(h.pk)]
        if not free:
            return None
        # Fill hosts in proportion to their weight: the next job goes where
        # (load + 1) / weight is lowest, ties broken by name for determinism.
        best = min(free, key=lambda h: ((self.host_load[h.pk] + 1) / h.weight, h.name))
        return best.pk

    def take(self, job: ContainerJob) -> int | None:
        """Reserve a slot for ``job``; return its host id, or None when it must wait."""
        if not self.queue_is_free(job.queue):
            return None
        host_id = job.host_id if job.host_id is not None else self.choose_host()
        if host_id is None or not self.host_is_free(host_id):
            return None
        self.host_load[host_id] += 1
        if job.queue in self.queue_limits:
            self.queue_load[job.queue] += 1
        self.assigned.append((job, host_id))
        return host_id


class ClaimMixin(ManagerBase):
    """``claim_jobs`` and ``claim_job``; mixed into ``JobQueueManager``."""

    # Capacity --------------------------------------------------------------

    def _active_hosts(self, now: datetime) -> tuple[dict[int, ExecutorHost], set[str]]:
        """The claimable hosts by id, and the executor types of every active host.

        One query: each active host comes with whether it may be given jobs now.
        """
        rows = (
            ExecutorHost.objects.using(self.using)
            .filter(is_active=True)
            .annotate(is_claimable=ExpressionWrapper(claimable_host_q(now), BooleanField()))
        )
        hosts: dict[int, ExecutorHost] = {}
        active_types: set[str] = set()
        for host in rows:
            active_types.add(host.executor_type)
            if host.is_claimable:
                hosts[host.pk] = host
        return hosts, active_types

    def _routable(self, hosts: dict[int, ExecutorHost], active_types: set[str]) -> set[int]:
        """The hosts among ``hosts`` that a job without a host may be routed to.

        Never one whose executor cannot be loaded. While any active host runs
        images (paused, full or unhealthy ones count: the deployment is one
        of images), only hosts that run images; otherwise every loadable one.
        """
        has_image_hosts = any(can_load(t) and runs_images(t) for t in active_types)
        return {
            pk
            for pk, host in hosts.items()
            if can_load(host.executor_type)
            and (runs_images(host.executor_type) or not has_image_hosts)
        }

    def _queue_settings(self) -> tuple[set[str], dict[str, int]]:
        """Paused queue names, and the limit of every limited queue (rows override settings)."""
        limits: dict[str, int] = {}
        for name in settings.QUEUES:
            limit = settings.queue_limit(name)
            if limit is not None:
                limits[name] = limit
        paused: set[str] = set()
        for row in JobQueue.objects.using(self.using).all():
            if row.is_paused:
                paused.add(row.name)
            if row.max_concurrent is not None:
                limits[row.name] = row.max_concurrent
        return paused, limits

    def _capacity(self, now: datetime) -> _Capacity:
        hosts, active_types = self._active_hosts(now)
        paused, limits = self._queue_settings()
        host_load: Counter[int] = Counter()
        queue_load: Counter[str] = Counter()
        # One count for both limits: held jobs by host and queue.
        held = (
            ContainerJob.objects.using(self.using)
            .holding()
            .values("host_id", "queue")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in held:
            if row["host_id"] is not None:
                host_load[row["host_id"]] += row["n"]
            if row["queue"] in limits:
                queue_load[row["queue"]] += row["n"]
        routable = self._routable(hosts, active_types)
        capacity = _Capacity(hosts, host_load, limits, queue_load, paused, routable)
        default_name = settings.DEFAULT_HOST
        if default_name:
            # The setting routes every job without a host to that host, of
            # whatever type, as long as its executor can be loaded.
            capacity.has_default_setting = True
            capacity.default_host = next(
                (h for h in hosts.values() if h.name == default_name and can_load(h.executor_type)),
                None,
            )
        return capacity

    def _lock_claims(self, lock_timeout_seconds: float | None, is_outermost: bool) -> None:
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            if lock_timeout_seconds is None:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])
                return
            milliseconds = max(int(lock_timeout_seconds * 1000), 1)
            if is_outermost:
                # The claim is the whole transaction: the timeout may last to
                # its end. Both in one round trip (integers, no parameters).
                cursor.execute(
                    f"SET LOCAL lock_timeout = {milliseconds:d}; "
                    f"SELECT pg_advisory_xact_lock({CLAIM_LOCK_KEY:d})"
                )
                return
            # Bound the wait for this lock only, then restore the caller's
            # setting (set_config(..., true) would last to the end of an outer
            # transaction).
            cursor.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                [f"{milliseconds}ms"],
            )
            previous = cursor.fetchone()[0]
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])

    def _lock_rows(self, qs: QuerySet[ContainerJob]) -> QuerySet[ContainerJob]:
        if connections[self.using].features.has_select_for_update_skip_locked:
            return qs.select_for_update(skip_locked=True, of=("self",))
        return qs

    # Claiming ----------------------------------------------------------------

    def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        queues: Sequence[str] | None = None,
        lease_seconds: int | None = None,
        *,
        lock_timeout_seconds: float | None = None,
    ) -> list[ContainerJob]:
        """Claim up to ``limit`` ready jobs for a worker, in one short transaction.

        Ready means: status queued or retrying, ``scheduled_for`` empty or past,
        queue not paused, pinned host (if any) active, not paused and not
        unhealthy (``ExecutorHost.objects.claimable()``). Jobs come
        by priority (high first), then ``queued_at``, then id. Per-queue limits
        (``JobQueue.max_concurrent``, else ``QUEUES[name]['max_concurrent']``)
        and per-host ``max_concurrent_jobs`` are counted over every worker's
        validating, preparing, pulling, running and launched-but-paused jobs,
        and never exceeded. A job without a host gets ``DEFAULT_HOST`` if that
        setting names one, else the available host with free capacity whose
        ``(load + 1) / weight`` is lowest, among those it may be routed to:
        never a host whose executor cannot be loaded, and, while any active
        host runs images, only hosts that do (a ``process`` host then takes
        only jobs pinned to it).

        Claimed jobs move to ``validating`` with ``worker_id``,
        ``lease_expires_at = now + lease`` and ``attempt + 1``.

        Args:
            worker_id: The claiming worker's id.
            limit: Most jobs to claim; 0 claims nothing.
            queues: Only these named queues; None for all.
            lease_seconds: Lease length; None for ``LEASE_SECONDS`` (60 s).
            lock_timeout_seconds: On PostgreSQL, give up waiting for the claim
                lock after this long (raises ``OperationalError``).

        Returns:
            The claimed jobs, committed, with ``host`` and
            ``environment_template`` loaded, in claim order. No lock is held.

        Raises:
            ValueError: Empty ``worker_id``, negative ``limit`` or non-positive lease.
            django.db.OperationalError: The lock timeout passed.
        """
        return self._claim(worker_id, limit, queues, lease_seconds, None, lock_timeout_seconds)

    def claim_job(
        self, job: ContainerJob, worker_id: str, lease_seconds: int | None = None
    ) -> ContainerJob | None:
        """Claim one specific job, if it is ready and a slot is free.

        Args:
            job: The job to claim.
            worker_id: The claiming worker's id.
            lease_seconds: Lease length; None for ``LEASE_SECONDS``.

        Returns:
            The claimed job (a fresh instance), or None when it is not ready,
            is held by someone else, or its queue or host is full or paused.
        """
        claimed = self._claim(worker_id, 1, None, lease_seconds, job.pk, None)
        return claimed[0] if claimed else None

    def _claim(
        self,
        worker_id: str,
        limit: int,
        queues: Sequence[str] | None,
        lease_seconds: int | None,
        job_id: int | None,
        lock_timeout_seconds: float | None,
    ) -> list[ContainerJob]:
        if not worker_id:
            raise ValueError("worker_id must not be empty")
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        lease = lease_delta(lease_seconds)
        if limit == 0:
            return []
        is_outermost = not connections[self.using].in_atomic_block
        with transaction.atomic(using=self.using):
            self._lock_claims(lock_timeout_seconds, is_outermost)
            now = timezone.now()
            capacity = self._capacity(now)
            candidates = self._candidates(capacity, now, limit, queues, job_id)
            for job in candidates:
                if len(capacity.assigned) >= limit:
                    break
                capacity.take(job)
            if not capacity.assigned:
                return []
            return self._mark_claimed(capacity.assigned, worker_id, now + lease, capacity.hosts)

    def _candidates(
        self,
        capacity: _Capacity,
        now: datetime,
        limit: int,
        queues: Sequence[str] | None,
        job_id: int | None,
    ) -> list[ContainerJob]:
        qs = ContainerJob.objects.using(self.using).ready(now)
        if job_id is not None:
            qs = qs.filter(pk=job_id)
        if queues is not None:
            qs = qs.filter(queue__in=list(queues))
        blocked_queues = capacity.blocked_queues()
        if blocked_queues:
            qs = qs.exclude(queue__in=sorted(blocked_queues))
        open_hosts = sorted(set(capacity.hosts) - capacity.blocked_host_ids())
        host_q = Q(host_id__in=open_hosts)
        if capacity.choose_host() is not None:
            host_q |= Q(host__isnull=True)
        qs = qs.filter(host_q).select_related("environment_template").order_by(*READY_ORDER)
        extra = min(limit * (CANDIDATE_FACTOR - 1), MAX_EXTRA_CANDIDATES)
        return list(self._lock_rows(qs)[: limit + extra])

    def _mark_claimed(
        self,
        assigned: list[tuple[ContainerJob, int]],
        worker_id: str,
        lease_until: datetime,
        hosts: dict[int, ExecutorHost],
    ) -> list[ContainerJob]:
        by_host: dict[int, list[ContainerJob]] = {}
        for job, host_id in assigned:
            by_host.setdefault(host_id, []).append(job)
        claimed: list[ContainerJob] = []
        for host_id, jobs in by_host.items():
            ids = [job.pk for job in jobs]
            # Guarded: only rows still ready move (we hold their locks, so all do).
            moved = (
                ContainerJob.objects.using(self.using)
                .waiting()
                .filter(pk__in=ids)
                .update(
                    status=JobStatus.VALIDATING,
                    host_id=host_id,
                    worker_id=worker_id,
                    lease_expires_at=lease_until,
                    attempt=F("attempt") + 1,
                    current_step=JobStatus.VALIDATING.label,
                )
            )
            if moved != len(ids):
                # Not every row moved (no row locks, e.g. SQLite beside a
                # writer): read back which did.
                claimed += self._read_claimed(ids, worker_id)
                continue
            for job in jobs:
                job.set_stored(
                    {
                        "status": JobStatus.VALIDATING,
                        "host_id": host_id,
                        "worker_id": worker_id,
                        "lease_expires_at": lease_until,
                        "attempt": job.attempt + 1,
                        "current_step": JobStatus.VALIDATING.label,
                    }
                )
                job.host = hosts[host_id]
            claimed += jobs
        order = {job.pk: index for index, (job, _) in enumerate(assigned)}
        claimed.sort(key=lambda job: order[job.pk])
        for job in claimed:
            logger.info(
                "Claimed job %s (attempt %s) on host %s",
                job.pk,
                job.attempt,
                job.host.name if job.host else None,
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
        return claimed

    def _read_claimed(self, ids: list[int], worker_id: str) -> list[ContainerJob]:
        jobs = ContainerJob.objects.using(self.using).select_related("host", "environment_template")
        return list(jobs.filter(pk__in=ids, worker_id=worker_id, status=JobStatus.VALIDATING))
