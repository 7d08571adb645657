"""Acquisition: workers claim ready jobs atomically, under the queue and host limits.

How a claim stays correct with any number of workers (PostgreSQL):

- One short transaction does it all and commits before any executor call,
  so no row lock is ever held while talking to Docker.
- Ready rows are locked with ``SELECT ... FOR UPDATE OF <job> SKIP LOCKED``:
  two workers never get the same row, and neither waits for the other's rows.
- The limits (per-host ``max_concurrent_jobs``, per-queue ``max_concurrent``)
  are a check-then-act: count what is active, then claim. Two workers counting
  at the same moment would both see room for the last slot. So every slot a
  claim takes is counted and taken under a transaction-scoped advisory lock
  of its own kind: one per host (``host_lock_key``) and one per limited queue
  (``queue_lock_key``); there is no lock for the whole cluster, and
  unlimited queues have none.
- A claim first takes, waiting in ascending key order, the locks of the
  hosts and limited queues the same worker's last claim used (a worker
  claims again and again for the same hosts), then reads the capacity and
  the ready jobs and chooses hosts. If the choice uses only locks it holds,
  the counts it read are exact and it claims. Otherwise it tries the
  missing locks without waiting (a claim never waits while holding locks
  taken out of order, so two claims never wait for each other in a circle),
  counts the slots again under every lock it holds, and chooses again among
  those hosts and queues only. A worker's first claim holds no lock yet: it
  waits for the missing ones in order instead.
- The claim's UPDATE locks the rows it takes, ``FOR UPDATE SKIP LOCKED``,
  and moves only rows still waiting: a claim never holds a row it then
  leaves (which would let another worker take a later job first), and a
  job another claim took since the read is skipped.
- Claims for different hosts and unlimited queues never wait for each
  other; claims for the same host wait for the few milliseconds until the
  other commits. Enqueues, ends and the admin never take these locks: they
  only add ready rows or free slots. In READ COMMITTED each statement sees
  everything the previous holder of a lock committed.

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
import zlib
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

#: High 32 bits of the advisory lock keys of host slots ("cmhs") and queue slots ("cmqs").
HOST_LOCK_SPACE = 0x636D_6873
QUEUE_LOCK_SPACE = 0x636D_7173
#: Candidates locked per claimed job, so that jobs skipped for a limit reached
#: within the batch do not leave the batch short.
CANDIDATE_FACTOR = 4
#: Upper bound of extra candidates locked beyond ``limit``.
MAX_EXTRA_CANDIDATES = 500


def host_lock_key(host_id: int) -> int:
    """The advisory lock key under which claims count and take ``host_id``'s slots."""
    return (HOST_LOCK_SPACE << 32) | (host_id & 0xFFFF_FFFF)


def slot_lock_keys(hosts: set[int], queues: set[str]) -> list[int]:
    """The advisory lock keys of these hosts and limited queues."""
    return [host_lock_key(h) for h in sorted(hosts)] + [queue_lock_key(q) for q in sorted(queues)]


def queue_lock_key(queue: str) -> int:
    """The advisory lock key under which claims count and take a limited queue's slots.

    Two queue names may share a key (a CRC-32 of the name); that only makes
    their claims wait for each other, never miscounts.
    """
    return (QUEUE_LOCK_SPACE << 32) | zlib.crc32(queue.encode("utf-8", "surrogatepass"))


@dataclass
class _Capacity:
    """Free slots per host and per limited queue, and the jobs given a slot so far."""

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

    def slots_used(self) -> tuple[set[int], set[str]]:
        """The hosts and the limited queues of the jobs assigned so far."""
        hosts = {host_id for _, host_id in self.assigned}
        limited = {job.queue for job, _ in self.assigned if job.queue in self.queue_limits}
        return hosts, limited

    def locked_to(self, host_ids: set[int], queues: set[str]) -> _Capacity:
        """A fresh capacity that may use only these hosts and limited queues (loads to recount)."""
        hosts = {pk: host for pk, host in self.hosts.items() if pk in host_ids}
        limits = {name: self.queue_limits[name] for name in queues if name in self.queue_limits}
        # A limited queue whose lock this claim does not hold is full for it.
        blocked = {name: 0 for name in self.queue_limits if name not in limits}
        capacity = _Capacity(
            hosts,
            Counter(),
            {**limits, **blocked},
            Counter(),
            self.paused_queues,
            self.routable & set(hosts),
        )
        capacity.has_default_setting = self.has_default_setting
        if self.default_host is not None and self.default_host.pk in hosts:
            capacity.default_host = self.default_host
        return capacity

    def take_in_order(self, candidates: list[ContainerJob], limit: int) -> None:
        """Reserve slots for the candidates, in their order, until ``limit`` are assigned."""
        for job in candidates:
            if len(self.assigned) >= limit:
                break
            self.take(job)

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
        routable = self._routable(hosts, active_types)
        capacity = _Capacity(hosts, Counter(), limits, Counter(), paused, routable)
        self._count_held(capacity)
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

    def _count_held(self, capacity: _Capacity) -> None:
        """Fill the loads of ``capacity``'s hosts and limited queues from the held jobs.

        One count for both limits: held jobs by host and queue, of those hosts
        and queues only when ``capacity`` is a locked subset.
        """
        held = ContainerJob.objects.using(self.using).holding()
        counted = set(capacity.hosts)
        limited = {name for name, limit in capacity.queue_limits.items() if limit > 0}
        held = held.filter(Q(host_id__in=sorted(counted)) | Q(queue__in=sorted(limited)))
        rows = held.values("host_id", "queue").annotate(n=Count("id")).order_by()
        for row in rows:
            if row["host_id"] in counted:
                capacity.host_load[row["host_id"]] += row["n"]
            if row["queue"] in limited:
                capacity.queue_load[row["queue"]] += row["n"]

    def _lock_slots(
        self, keys: list[int], lock_timeout_seconds: float | None, is_outermost: bool
    ) -> None:
        """Take the advisory locks ``keys``, in ascending order, waiting at most the timeout."""
        connection = connections[self.using]
        # Integers only, formatted in: every lock in one round trip, in order.
        locks = "; ".join(f"SELECT pg_advisory_xact_lock({key:d})" for key in sorted(keys))
        with connection.cursor() as cursor:
            if lock_timeout_seconds is None:
                cursor.execute(locks)
                return
            milliseconds = max(int(lock_timeout_seconds * 1000), 1)
            if is_outermost:
                # The claim is the whole transaction: the timeout may last to its end.
                cursor.execute(f"SET LOCAL lock_timeout = {milliseconds:d}; {locks}")
                return
            # Bound the wait for these locks only, then restore the caller's
            # setting (set_config(..., true) would last to the end of an outer
            # transaction).
            cursor.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                [f"{milliseconds}ms"],
            )
            previous = cursor.fetchone()[0]
            cursor.execute(locks)
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])

    def _try_slots(self, hosts: set[int], queues: set[str]) -> tuple[set[int], set[str]]:
        """Take whichever of these hosts' and queues' locks are free now; never wait."""
        host_ids, names = sorted(hosts), sorted(queues)
        keys = slot_lock_keys(hosts, queues)
        tries = ", ".join(f"pg_try_advisory_xact_lock({key:d})" for key in keys)
        with connections[self.using].cursor() as cursor:
            cursor.execute(f"SELECT {tries}")
            row = list(cursor.fetchone())
        got_hosts = {h for h, ok in zip(host_ids, row[: len(host_ids)], strict=True) if ok}
        got_queues = {q for q, ok in zip(names, row[len(host_ids) :], strict=True) if ok}
        return got_hosts, got_queues

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
        is_postgres = connections[self.using].vendor == "postgresql"
        with transaction.atomic(using=self.using):
            # The locks of the hosts and limited queues this worker's last
            # claim used come first (waiting, in order): what is read next
            # about them is exact, as in a steady stream of claims for the
            # same hosts.
            held_hosts: set[int] = set()
            held_queues: set[str] = set()
            if is_postgres:
                held_hosts, held_queues = self._last_slots.get(worker_id, (set(), set()))
                if held_hosts or held_queues:
                    keys = slot_lock_keys(held_hosts, held_queues)
                    self._lock_slots(keys, lock_timeout_seconds, is_outermost)
            now = timezone.now()
            capacity = self._capacity(now)
            candidates = self._candidates(capacity, now, limit, queues, job_id)
            capacity.take_in_order(candidates, limit)
            if is_postgres and capacity.assigned:
                hosts, limited = capacity.slots_used()
                if not (hosts <= held_hosts and limited <= held_queues):
                    # Some slots were counted without their lock. Holding no
                    # lock yet, wait for theirs (in order); holding some, take
                    # only those free now (never wait while holding locks
                    # taken out of order). Then count the slots again under
                    # every lock held, and choose again among those hosts and
                    # queues only. A job taken since the read is skipped by
                    # the UPDATE, which moves only rows still waiting.
                    if not (held_hosts or held_queues):
                        keys = slot_lock_keys(hosts, limited)
                        self._lock_slots(keys, lock_timeout_seconds, is_outermost)
                        got_hosts, got_queues = hosts, limited
                    else:
                        got_hosts, got_queues = self._try_slots(
                            hosts - held_hosts, limited - held_queues
                        )
                    capacity = capacity.locked_to(held_hosts | got_hosts, held_queues | got_queues)
                    self._count_held(capacity)
                    capacity.take_in_order(candidates, limit)
                if capacity.assigned:
                    hosts, limited = capacity.slots_used()
                # The next claim waits for these first: what this one used,
                # or, if it got nothing, what it wanted.
                self._last_slots[worker_id] = (hosts, limited)
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
        """Ready jobs that may fit ``capacity``, in claim order; read, not locked.

        No row is locked here: the claim's UPDATE locks exactly the rows it
        takes (``SKIP LOCKED``), so a claim never holds a row it then leaves,
        which would let another worker take a later job before it.
        """
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
        qs = (
            qs.filter(host_q).select_related("environment_template", "array").order_by(*READY_ORDER)
        )
        extra = min(limit * (CANDIDATE_FACTOR - 1), MAX_EXTRA_CANDIDATES)
        return list(qs[: limit + extra])

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
            # Guarded: only rows still waiting move, and (PostgreSQL) only
            # rows no other claim is taking at this moment.
            still_waiting = ContainerJob.objects.using(self.using).waiting().filter(pk__in=ids)
            # The ids outside too, so that the rows are found by primary key.
            moved = (
                ContainerJob.objects.using(self.using)
                .filter(pk__in=ids)
                .filter(pk__in=self._lock_rows(still_waiting.order_by()).values("pk"))
                .update(
                    status=JobStatus.VALIDATING,
                    host_id=host_id,
                    worker_id=worker_id,
                    last_worker_id=worker_id,
                    lease_expires_at=lease_until,
                    attempt=F("attempt") + 1,
                    current_step=JobStatus.VALIDATING.label,
                )
            )
            if moved != len(ids):
                # Not every row moved (another claim took some since they
                # were read): read back which did.
                claimed += self._read_claimed(ids, worker_id)
                continue
            for job in jobs:
                job.set_stored(
                    {
                        "status": JobStatus.VALIDATING,
                        "host_id": host_id,
                        "worker_id": worker_id,
                        "last_worker_id": worker_id,
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
            logger.debug(
                "Claimed job %s (attempt %s) on host %s",
                job.pk,
                job.attempt,
                job.host.name if job.host else None,
                extra={"job_id": job.pk, "worker_id": worker_id},
            )
        return claimed

    def _read_claimed(self, ids: list[int], worker_id: str) -> list[ContainerJob]:
        jobs = ContainerJob.objects.using(self.using).select_related(
            "host", "environment_template", "array"
        )
        return list(jobs.filter(pk__in=ids, worker_id=worker_id, status=JobStatus.VALIDATING))
