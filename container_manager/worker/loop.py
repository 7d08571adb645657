"""The worker: acquire, launch, follow, store results, acquire again.

One :class:`Worker` keeps up to ``max_concurrent`` jobs of its own (claimed,
launching or running). Its main loop claims jobs for the free slots
(:mod:`.claimer`), launches them in a small thread pool, and sleeps in
``JobQueueManager.wait_for_work`` when there is nothing to do: on PostgreSQL a
``NOTIFY`` wakes it at once, elsewhere it polls every ``poll_interval``. A
thread per host follows the running containers (:mod:`.follower`); a
heartbeat thread renews leases (:mod:`.heartbeat`); every heartbeat interval
the loop also rescues jobs of dead workers (:mod:`.rescuer`) and enforces
timeouts; every ``CLEANUP_INTERVAL_SECONDS`` a thread removes the containers
that faults left behind (:mod:`.sweeper`).

Stopping (SIGTERM, SIGINT, or :meth:`Worker.request_stop`): no new claims,
launches in flight finish, claimed jobs not yet launched go back to the
queue, running containers keep running and their leases are expired at once
so that another worker adopts them, and the worker row is marked stopped.

Each part is built here with what it needs (the queue, the container layer,
the shared :class:`~container_manager.worker.state.WorkerState` and a few
callbacks); none holds the worker itself.

Example::

    from container_manager.worker import Worker

    Worker(max_concurrent=10, queues=["reports"]).run()
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from django.db import connection

from container_manager.conf import DEFAULT_ACQUIRE_TIMEOUT_SECONDS, DEFAULT_MAX_CONCURRENT, settings
from container_manager.containers import Containers
from container_manager.containers import containers as shared_containers
from container_manager.models import ContainerJob
from container_manager.queue import JobQueueManager
from container_manager.queue.base import default_worker_id
from container_manager.worker.claimer import Claimer
from container_manager.worker.db import (
    DatabaseWatch,
    drop_connection_if_broken,
    is_connection_error,
)
from container_manager.worker.follower import Follower
from container_manager.worker.heartbeat import Heartbeat, mark_stopped, register
from container_manager.worker.hosts import HostMonitor
from container_manager.worker.rescuer import Rescuer
from container_manager.worker.state import WorkerState, WorkerStats
from container_manager.worker.sweeper import Sweeper

logger = logging.getLogger(__name__)

#: Shortest sleep of the loop when woken early, so that a storm of wake-ups
#: cannot spin it.
MIN_WAIT_SECONDS = 0.05
#: A worker that holds jobs claims again once a quarter of its slots are free,
#: or 20 ms after its first free slot, whichever comes first: one claim for
#: several jobs that ended together instead of one per job. An idle worker
#: claims at once.
CLAIM_BATCH_SHARE = 0.25
CLAIM_COALESCE_SECONDS = 0.02
#: With ``once``, how long each wait for local processes to end lasts.
ONCE_FOLLOW_SLICE_SECONDS = 0.5


class Worker:
    """A queue worker; ``process_container_jobs --queue-mode`` runs one.

    Args:
        worker_id: The id its jobs and its row carry; None for ``<hostname>:<pid>``.
        queues: Named queues to take jobs from; None for all.
        max_concurrent: Most jobs held at once (claimed, launching or running).
        poll_interval_seconds: Longest idle sleep when no NOTIFY comes; None
            for ``POLL_INTERVAL_SECONDS``.
        once: Launch what is ready now, then exit instead of looping.
        acquire_timeout_seconds: Longest wait for the claim's host and queue locks, and for
            launches in flight when stopping or with ``once``.
        echo: Called with each line of human output; None logs it.
        lease_seconds: Lease of claimed jobs; None for ``LEASE_SECONDS``.
        heartbeat_seconds: Heartbeat and rescue interval; None for ``HEARTBEAT_SECONDS``.
        queue_manager: The queue; None for a ``JobQueueManager`` of this worker id.
        containers: The container layer; None for the shared one.
    """

    def __init__(
        self,
        *,
        worker_id: str | None = None,
        queues: Sequence[str] | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        poll_interval_seconds: float | None = None,
        once: bool = False,
        acquire_timeout_seconds: float = DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
        echo: Callable[[str], None] | None = None,
        lease_seconds: int | None = None,
        heartbeat_seconds: float | None = None,
        queue_manager: JobQueueManager | None = None,
        containers: Containers | None = None,
    ) -> None:
        if poll_interval_seconds is None:
            poll_interval_seconds = float(settings.POLL_INTERVAL_SECONDS)
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, not {max_concurrent}")
        if poll_interval_seconds <= 0 or acquire_timeout_seconds <= 0:
            raise ValueError("poll_interval_seconds and acquire_timeout_seconds must be positive")
        self.worker_id = worker_id or default_worker_id()
        self.max_concurrent = max_concurrent
        self.poll_interval_seconds = poll_interval_seconds
        self.once = once
        self.acquire_timeout_seconds = acquire_timeout_seconds
        self.heartbeat_seconds = float(heartbeat_seconds or settings.HEARTBEAT_SECONDS)
        self.containers = containers if containers is not None else shared_containers
        self.queue_manager = queue_manager or JobQueueManager(
            worker_id=self.worker_id, containers=self.containers
        )
        self.state = WorkerState(
            self.worker_id, queues, lease_seconds, wake=self.queue_manager.interrupt, echo=echo
        )
        self._stop_signal = ""
        self._is_status_requested = False
        #: When (time.time()) the loop next looks for schedules due.
        self._next_schedule_check = 0.0
        self.database = DatabaseWatch(self.state)
        self._build_parts()

    def _build_parts(self) -> None:
        """Build the claimer, follower, rescuer, heartbeat, host checks and clean-up.

        Each gets what it needs and nothing more.

        ``free_slots`` is passed late-bound, so that a subclass (or a test)
        may change how slots are counted.
        """
        self.follower = Follower(self.queue_manager, self.containers, self.state)
        self.claimer = Claimer(
            self.queue_manager,
            self.state,
            max_concurrent=self.max_concurrent,
            acquire_timeout_seconds=self.acquire_timeout_seconds,
            free_slots=lambda: self.free_slots(),
            on_launched=self.follower.add,
        )
        self.rescuer = Rescuer(
            self.queue_manager,
            self.containers,
            self.state,
            free_slots=lambda: self.free_slots(),
            known_job_ids=lambda: set(self.claimer.job_ids()) | set(self.follower.job_ids()),
            relaunch=self.claimer.relaunch,
            follow=self.follower.add,
        )
        self.host_monitor = HostMonitor(self.queue_manager, self.state)
        self.sweeper = Sweeper(self.queue_manager, self.containers, self.state)
        self._heartbeat = Heartbeat(
            self.queue_manager,
            self.state,
            self.heartbeat_seconds,
            monitor=self.host_monitor,
            # With ``once`` the clean-up is one pass of its own at the end.
            sweeper=None if self.once else self.sweeper,
        )

    # State ---------------------------------------------------------------------

    @property
    def queues(self) -> list[str] | None:
        """The named queues this worker serves; None for all."""
        return self.state.queues

    @property
    def lease_seconds(self) -> int | None:
        """Lease of the jobs it claims or adopts; None for ``LEASE_SECONDS``."""
        return self.state.lease_seconds

    @property
    def stats(self) -> WorkerStats:
        """What the worker did so far."""
        return self.state.stats

    @property
    def is_stopping(self) -> bool:
        """True once a stop was requested: no new work is taken."""
        return self.state.is_stopping

    def active_count(self) -> int:
        """Jobs held: claimed or launching, plus running ones being followed."""
        return len(self.claimer) + len(self.follower)

    def free_slots(self) -> int:
        """How many more jobs this worker may take on."""
        return max(self.max_concurrent - self.active_count(), 0)

    def echo(self, message: str) -> None:
        """Write one line of human output (the command's stdout, or the log)."""
        self.state.echo(message)

    # Control -------------------------------------------------------------------

    def request_stop(self, reason: str = "") -> None:
        """Stop taking work and shut down (safe from a signal handler or thread)."""
        if not self._stop_signal:
            self._stop_signal = reason or "stop requested"
        self.state.stop()

    def request_status(self) -> None:
        """Print the status at the loop's next turn (safe from a signal handler)."""
        self._is_status_requested = True
        self.state.wake()

    def serve_metrics(self, port: int, address: str = "127.0.0.1") -> None:
        """Count launches, failures, durations and pickup latency, served for Prometheus.

        Args:
            port: The TCP port (each worker of a machine needs its own).
            address: The address to listen on; 127.0.0.1 by default.

        Raises:
            ImportError: prometheus-client is not installed (with the pip command).
            OSError: The port cannot be bound (in use, or not allowed).
        """
        try:
            from container_manager.worker.metrics import WorkerMetrics
        except ImportError as exc:
            raise ImportError(
                "Worker metrics need prometheus-client: "
                "pip install 'django-container-manager[metrics]'"
            ) from exc
        metrics = WorkerMetrics(self.worker_id)
        metrics.serve(port, address)
        self.state.metrics = metrics

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the worker gracefully; SIGUSR1 prints its status.

        The handlers only set flags and wake the loop, which does the work:
        nothing unsafe runs inside a signal handler. Main thread only.
        """

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.request_stop(signal.Signals(signum).name)

        def on_status(signum: int, frame: FrameType | None) -> None:
            self.request_status()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGUSR1, on_status)

    def status(self) -> dict[str, Any]:
        """Return the queue's metrics and this worker's own counts."""
        metrics = self.queue_manager.get_worker_metrics()
        return {
            "queue": metrics,
            "worker_id": self.worker_id,
            "max_concurrent": self.max_concurrent,
            "launching": self.claimer.job_ids(),
            "running": self.follower.job_ids(),
            "jobs_launched": self.stats.jobs_launched,
            "jobs_finished": self.stats.jobs_finished,
            "jobs_adopted": self.stats.jobs_adopted,
            "jobs_requeued": self.stats.jobs_requeued,
            "errors": len(self.stats.errors),
        }

    def print_status(self) -> None:
        """Print the status lines that SIGUSR1 asks for."""
        self._is_status_requested = False
        status = self.status()
        queue = status.pop("queue")
        paused = queue.get("paused_queues") or []
        self.echo(
            f"Queue status: {queue.get('ready_now', 0)} ready now, "
            f"{queue.get('scheduled_future', 0)} scheduled, {queue.get('running', 0)} running, "
            f"{queue.get('launch_failed', 0)} failed to launch; "
            f"{queue.get('available_hosts', 0)} host(s) with {queue.get('free_host_slots', 0)} "
            f"free slot(s)" + (f"; paused queues: {', '.join(paused)}" if paused else "")
        )
        self.echo(
            f"Worker status: {status['worker_id']} holds {len(status['launching'])} launching "
            f"{status['launching']} and {len(status['running'])} running {status['running']} "
            f"of max {status['max_concurrent']}; launched {status['jobs_launched']}, "
            f"finished {status['jobs_finished']}, adopted {status['jobs_adopted']}, "
            f"requeued {status['jobs_requeued']}, errors {status['errors']}"
        )

    # Run -----------------------------------------------------------------------

    def run(self) -> WorkerStats:
        """Register, reconcile with the engines, then work until stopped (or once).

        Returns:
            What the worker did.

        The database is waited for, with backoff, if it does not answer at
        the start (or goes away later): the worker never exits for an outage.

        Raises:
            WorkerIdInUseError: Another live worker uses this id.
        """
        if not self._when_database_answers(
            lambda: register(self.worker_id, self.queues, self.max_concurrent)
        ):
            return self.stats
        try:
            if not self._when_database_answers(self._reconcile):
                return self.stats
            self._heartbeat.start()
            if not self.once:
                self.follower.start()
            self.echo(f"Worker {self.worker_id} ready (pid {os.getpid()})")
            if self.once:
                self._run_once()
            else:
                self._run_forever()
        finally:
            self._shutdown()
        return self.stats

    def _when_database_answers(self, step: Callable[[], object]) -> bool:
        """Run one start-up step, waiting out database outages before and during it.

        The database may go away between the check that it answers and the
        step (a restart at that moment): the step is tried again once it is
        back, so a worker never exits for an outage. Other errors propagate.

        Returns:
            True once the step ran; False when a stop was requested first.
        """
        error: BaseException | None = None
        while self.database.wait_until_up(error):
            try:
                step()
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                error = exc
                continue
            return True
        return False

    def _reconcile(self) -> None:
        """Take back what an earlier life of this worker id held, and rescue dead workers' jobs."""
        found = self.rescuer.expire_own_leases()
        if found:
            self.echo(f"Reconciling {found} job(s) held by an earlier run of {self.worker_id}")
        self.rescuer.rescue(self.free_slots())

    def _maintain(self) -> None:
        drop_connection_if_broken()
        try:
            self.follower.sync()
            self.rescuer.expire_untracked()
            self.rescuer.rescue(self.free_slots())
            failed = self.queue_manager.fail_dependents()
            if failed:
                self.echo(f"Failed {failed} job(s) whose dependencies ended without completing")
        except Exception as exc:
            logger.exception("Maintenance pass failed", extra={"worker_id": self.worker_id})
            self.stats.add_error(f"maintenance: {type(exc).__name__}: {exc}")
            connection.close()

    def _run_forever(self) -> None:
        next_maintenance = time.monotonic() + self.heartbeat_seconds
        while not self.is_stopping:
            self.stats.iterations += 1
            if self._is_status_requested:
                self._print_status_safely()
            if time.monotonic() >= next_maintenance:
                self._maintain()
                next_maintenance = time.monotonic() + self.heartbeat_seconds
            if time.time() >= self._next_schedule_check:
                self._fire_schedules_safely()
            free = self._coalesce_free_slots()
            claimed = self._acquire_safely()
            if self.is_stopping:
                break
            if claimed and len(claimed) == free and self.free_slots() > 0:
                continue
            wait = min(
                self.poll_interval_seconds,
                next_maintenance - time.monotonic(),
                self._next_schedule_check - time.time(),
            )
            self.queue_manager.wait_for_work(max(wait, MIN_WAIT_SECONDS))

    def _fire_schedules_safely(self) -> None:
        """Queue the jobs of the schedules due now, and note when the next one is."""
        self._next_schedule_check = time.time() + self.poll_interval_seconds
        try:
            made = self.queue_manager.fire_schedules()
            due = self.queue_manager.next_schedule_due()
        except Exception as exc:
            if is_connection_error(exc):
                self.database.wait_until_up(exc)
                return
            logger.exception("Firing schedules failed", extra={"worker_id": self.worker_id})
            self.stats.add_error(f"schedules: {type(exc).__name__}: {exc}")
            connection.close()
            return
        for job in made:
            self.state.echo(f"Schedule queued job {job.pk} ({job.name})", logged=True)
        if due is not None:
            self._next_schedule_check = min(self._next_schedule_check, due.timestamp())

    def _coalesce_free_slots(self) -> int:
        """Wait briefly for more free slots while only a few are free; return how many are.

        Each end wakes the loop (``finish_job`` announces work); without this
        a busy worker would claim one job per end, each claim a transaction.
        """
        free = self.free_slots()
        wanted = max(1, math.ceil(self.max_concurrent * CLAIM_BATCH_SHARE))
        if free == 0 or free >= wanted or free == self.max_concurrent:
            return free
        deadline = time.monotonic() + CLAIM_COALESCE_SECONDS
        while free < wanted and not self.is_stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.queue_manager.wait_for_work(left)
            free = self.free_slots()
        return free

    def _print_status_safely(self) -> None:
        try:
            self.print_status()
        except Exception as exc:
            self._is_status_requested = False
            logger.warning("Could not print the status: %s", exc, exc_info=True)
            drop_connection_if_broken()

    def _acquire_safely(self) -> list[ContainerJob]:
        try:
            drop_connection_if_broken()
            return self.claimer.acquire()
        except Exception as exc:
            if is_connection_error(exc):
                # Logged once per outage; the loop carries on when it is back.
                self.database.wait_until_up(exc)
                return []
            logger.exception("Acquiring jobs failed", extra={"worker_id": self.worker_id})
            self.stats.add_error(f"acquire: {type(exc).__name__}: {exc}")
            connection.close()
            return []

    def _run_once(self) -> None:
        self.stats.iterations = 1
        self._fire_schedules_safely()
        self._acquire_safely()
        if not self.claimer.wait_idle(self.acquire_timeout_seconds):
            # Image tasks are this process's own work, as local processes are:
            # seen to their end. Container launches are not waited for longer.
            while self.claimer.holds_image_tasks() and not self.is_stopping:
                self.claimer.wait_idle(ONCE_FOLLOW_SLICE_SECONDS)
            if len(self.claimer):
                self.echo(f"Launches still in flight after {self.acquire_timeout_seconds} s")
        self.follower.poll_all(0.0)
        # Local processes die with the worker and cannot be adopted: see them to their end.
        while self.follower.has_unadoptable() and not self.is_stopping:
            self.follower.poll_all(ONCE_FOLLOW_SLICE_SECONDS)
            try:
                self.follower.sync()
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                self.database.wait_until_up(exc)
        # No sweeper thread runs with ``once`` (a worker run from cron would
        # end before its first pass): leftovers are cleared in one pass here.
        self.sweeper.sweep()

    def _shutdown(self) -> None:
        if self.is_stopping and self._stop_signal:
            self.echo(f"Received {self._stop_signal}, shutting down gracefully...")
        self.state.stop()
        in_flight = len(self.claimer)
        if in_flight:
            self.echo(f"Waiting for {in_flight} launch(es) in flight")
        if in_flight and not self.claimer.wait_idle(self.acquire_timeout_seconds):
            self.echo(f"{len(self.claimer)} launch(es) still in flight; their leases will expire")
        self.claimer.close()
        self.follower.stop()
        self._heartbeat.stop()
        if self._heartbeat.is_alive():
            # Its last beat must not write "stopping" over our "stopped".
            self._heartbeat.join(self.heartbeat_seconds + 5)
        for part in (self.host_monitor, self.sweeper):
            # Stopped with the heartbeat; a pass in progress ends before the
            # worker's last writes and its connections close.
            if isinstance(part, threading.Thread) and part.is_alive():
                part.join(self.heartbeat_seconds + 5)
        handed = self._hand_over_running()
        if handed:
            self.echo(f"Left {handed} running container(s) for another worker to adopt")
        try:
            mark_stopped(self.worker_id, self.stats.jobs_launched, self.stats.jobs_finished)
        except Exception:
            logger.exception("Could not mark worker %s stopped", self.worker_id)
        if self.state.metrics is not None:
            self.state.metrics.stopped()
        self.queue_manager.close()
        self.containers.close()
        connection.close()

    def _hand_over_running(self) -> int:
        """Expire the leases of our running jobs, so that the next worker adopts them now.

        Jobs whose launch is still in flight keep their lease: their launch
        thread may still record them, and they are rescued once it expires.
        """
        try:
            return self.queue_manager.hand_over(self.worker_id, self.follower.job_ids())
        except Exception:
            logger.exception(
                "Could not hand over running jobs", extra={"worker_id": self.worker_id}
            )
            return 0
