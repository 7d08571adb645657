"""``python -m chaos``: the chaos scenario, end to end (what ``make chaos`` runs).

1. Set-up, all of it the run's own: a work directory, a PostgreSQL cluster
   on 127.0.0.1:``--port``, a dockerd on a unix socket in the work
   directory with the busybox test image imported, the schema migrated.
2. Per executor (Docker, then local processes): an ExecutorHost, the
   witness, ``--workers`` worker processes, the jobs fed to the queue at a
   steady pace over most of the fault phase, and the faults of the seed's
   schedule. Then the faults stop and the run waits for the drain, gives
   finished containers ``--cleanup-grace`` seconds to go, stops the workers
   with SIGTERM and reads the product's rows.
3. The report: one row per invariant, with the ids behind every count that
   is not 0; exit status 0 only if every invariant is 0.

Everything it starts is stopped by PID at the end, on failure, on Ctrl-C,
and when the global deadline (``--duration-limit``) passes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chaos.invariants import JobRow, Outcome, Row, compute
from chaos.latency import EndWatcher, Outage, end_latencies
from chaos.schedule import DOCKER_RESTART, KILL, PG_RESTART, TERM, Fault, FaultPlan, make_schedule
from chaos.services import (
    TEST_IMAGE,
    Deadline,
    DeadlineExceeded,
    DockerDaemon,
    Postgres,
    ServiceError,
    alive,
    unmount_under,
)
from chaos.witness import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    RUN_LABEL,
    DockerWitness,
    ProcessWitness,
    docker_command,
    process_command,
)
from chaos.workers import WorkerPool

EXECUTORS = ("docker", "process")
EXIT_OK, EXIT_INVARIANTS, EXIT_ERROR = 0, 1, 2


# --- options -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="make chaos ARGS=... / python -m chaos",
        description="Fault-injection run of django-container-manager against its own "
        "PostgreSQL cluster and dockerd, checked by an independent witness.",
    )
    p.add_argument("--executor", choices=[*EXECUTORS, "both"], default="both")
    p.add_argument("--jobs", type=int, default=400, help="jobs per executor (400)")
    p.add_argument("--workers", type=int, default=4, help="worker processes at a time (4)")
    p.add_argument("--max-concurrent", type=int, default=8, help="--max-concurrent of each (8)")
    p.add_argument("--seed", type=int, default=None, help="seed of the schedule (random)")
    p.add_argument(
        "--fault-seconds",
        type=float,
        default=None,
        help="length of the fault phase (default: 0.15 s per job, at least 20 s)",
    )
    p.add_argument("--kill-every", default="2,5", help="SIGKILL a worker every MIN,MAX s (2,5)")
    p.add_argument("--sigterms", type=int, default=2, help="SIGTERMs, Docker scenario (2)")
    p.add_argument("--pg-restarts", type=int, default=1, help="PostgreSQL restarts, Docker (1)")
    p.add_argument("--docker-restarts", type=int, default=1, help="dockerd restarts (1)")
    p.add_argument("--process-sigterms", type=int, default=0, help="SIGTERMs, process (0)")
    p.add_argument(
        "--process-pg-restarts", type=int, default=0, help="PostgreSQL restarts, process (0)"
    )
    p.add_argument("--pg-down", type=float, default=3.0, help="seconds PostgreSQL stays down (3)")
    p.add_argument("--docker-down", type=float, default=3.0, help="seconds dockerd stays down (3)")
    p.add_argument("--lease", type=int, default=15, help="LEASE_SECONDS of the workers (15)")
    p.add_argument("--heartbeat", type=int, default=5, help="HEARTBEAT_SECONDS (5)")
    p.add_argument("--retention", choices=["remove", "keep", "keep_failed"], default="remove")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="longest drain wait (300)")
    p.add_argument(
        "--cleanup-grace",
        type=float,
        default=30.0,
        help="seconds after the drain for finished containers to be removed (30)",
    )
    p.add_argument("--term-timeout", type=float, default=60.0, help="SIGTERM to exit, at most")
    p.add_argument(
        "--duration-limit",
        type=float,
        default=1800.0,
        help="global deadline in seconds: past it the run stops and fails (1800)",
    )
    p.add_argument("--port", type=int, default=55432, help="port of the run's PostgreSQL")
    p.add_argument("--work-dir", type=Path, default=None, help="default: a new /tmp/cmchaos-*")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) on success")
    p.add_argument("--report", type=Path, default=None, help="also write the report as JSON")
    p.add_argument(
        "--inject-double",
        type=int,
        default=0,
        metavar="N",
        help="self-check: after the drain, run N completed jobs' commands once more, outside "
        "the product; the two rows of doubles must then show exactly N (0)",
    )
    args = p.parse_args(argv)
    try:
        low, high = (float(x) for x in args.kill_every.split(","))
    except ValueError:
        p.error(f"--kill-every must be MIN,MAX seconds, not {args.kill_every!r}")
    if not 0 < low <= high:
        p.error("--kill-every needs 0 < MIN <= MAX")
    args.kill_range = (low, high)
    for name in ("jobs", "workers", "max_concurrent", "lease", "heartbeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    if args.fault_seconds is None:
        args.fault_seconds = max(20.0, 0.15 * args.jobs)
    return args


# --- the run -------------------------------------------------------------------------


@dataclass
class Scenario:
    executor: str
    schedule: list[Fault]
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


class Run:
    """One ``python -m chaos`` invocation: its services, scenarios and report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.deadline = Deadline(self.started + args.duration_limit)
        self.run_id = uuid.uuid4().hex[:10]
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            self.work = args.work_dir.resolve()
        else:
            # Short: the engine's unix sockets live under it (108-byte limit).
            self.work = Path(tempfile.mkdtemp(prefix="cmchaos-", dir="/tmp"))
        # The cluster runs as user postgres, which must reach its folder inside.
        self.work.chmod(0o755)
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.journal: IO[str] = open(self.logs / "journal.log", "a")  # noqa: SIM115
        self.pg = Postgres(self.work / "pg", args.port, self.logs / "postgres.log")
        self.docker = DockerDaemon(self.work / "d", self.logs / "dockerd.log")
        self.pool: WorkerPool | None = None
        self.witness: DockerWitness | None = None
        self.process_witnesses: list[ProcessWitness] = []
        self.scenarios: list[Scenario] = []
        self.error: str | None = None

    # --- output ----------------------------------------------------------------------
    def say(self, text: str) -> None:
        stamp = f"[{time.monotonic() - self.started:7.1f} s]"
        print(f"{stamp} {text}", flush=True)
        self.journal.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.journal.flush()

    # --- set-up ----------------------------------------------------------------------
    def worker_env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "PG", "DATABASE"))
        }
        env.update(
            DATABASE_URL=self.pg.url,
            DJANGO_SETTINGS_MODULE="chaos.settings",
            CHAOS_RUN_ID=self.run_id,
            CHAOS_LEASE_SECONDS=str(self.args.lease),
            CHAOS_HEARTBEAT_SECONDS=str(self.args.heartbeat),
            CHAOS_RETENTION=self.args.retention,
            CHAOS_NAME_PREFIX=f"chaos{self.run_id}",
            CONTAINER_MANAGER_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        return env

    def set_up(self, executors: list[str]) -> None:
        self.say(f"work directory {self.work} (run {self.run_id}, seed {self.args.seed})")
        self.pg.init()
        self.pg.start(self.deadline)
        self.pg.create_database()
        self.say(f"PostgreSQL {self.pg.bin.parent.name} up on 127.0.0.1:{self.pg.port}")
        os.environ.update(
            {k: v for k, v in self.worker_env().items() if k.startswith(("DATABASE", "CHAOS_"))}
        )
        os.environ["DJANGO_SETTINGS_MODULE"] = "chaos.settings"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.say("schema migrated")
        if "docker" in executors:
            self.docker.start(self.deadline)
            self.docker.import_test_image()
            self.say(f"dockerd up on {self.docker.url}, image {TEST_IMAGE} imported")

    # --- one scenario ----------------------------------------------------------------
    def plan(self, executor: str) -> FaultPlan:
        a = self.args
        docker = executor == "docker"
        return FaultPlan(
            fault_seconds=a.fault_seconds,
            workers=a.workers,
            kill_every=a.kill_range,
            sigterms=a.sigterms if docker else a.process_sigterms,
            pg_restarts=a.pg_restarts if docker else a.process_pg_restarts,
            docker_restarts=a.docker_restarts if docker else 0,
        )

    def run_scenario(self, executor: str, index: int) -> Scenario:
        from django.db import connection

        from container_manager.models import ContainerJob, ExecutorHost, Worker

        a = self.args
        # One seed for the whole run; each scenario draws from its own stream of it.
        schedule = make_schedule(a.seed * 10 + index, self.plan(executor))
        scenario = Scenario(executor, schedule)
        self.say(f"== {executor}: {a.jobs} jobs, {a.workers} workers, {len(schedule)} faults")
        for fault in schedule:
            self.journal.write(f"  schedule {executor} {fault.describe()}\n")

        with connection.cursor() as cursor:
            tables = [m._meta.db_table for m in (ContainerJob, Worker, ExecutorHost)]
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        capacity = a.workers * a.max_concurrent * 2
        proc_witness: ProcessWitness | None = None
        output_dir = self.work / f"{executor}-out"
        if executor == "docker":
            host = ExecutorHost.objects.create(
                name="chaos-docker",
                executor_type="docker",
                connection_string=self.docker.url,
                executor_config={"default_network": "none"},
                auto_pull_images=False,
                max_concurrent_jobs=capacity,
            )
            self.witness = DockerWitness(self.docker.url, self.run_id)
            self.witness.start()
            if not self.witness.connected.wait(timeout=30):
                raise ServiceError("the witness could not subscribe to the engine's events")
        else:
            output_dir.mkdir(parents=True, exist_ok=True)
            host = ExecutorHost.objects.create(
                name="chaos-process",
                executor_type="process",
                executor_config={"output_dir": str(output_dir)},
                max_concurrent_jobs=capacity,
            )
            proc_witness = ProcessWitness(self.work / "process-witness", self.run_id)
            proc_witness.prepare()
            self.process_witnesses.append(proc_witness)

        rng = random.Random(a.seed * 10 + index + 5)
        specs = []
        for k in range(a.jobs):
            key = f"{executor[0]}{k}"
            marker = f"chaos-{key}-{uuid.uuid4().hex[:12]}"
            sleep = rng.choice([0.2, 0.3, 0.4, 0.5, 0.6, 0.8])
            specs.append((key, marker, sleep))
        feeder = Feeder(self, executor, host.pk, specs, proc_witness)

        self.pool = WorkerPool(
            slots=a.workers,
            max_concurrent=a.max_concurrent,
            env=self.worker_env(),
            log_dir=self.logs,
            term_timeout=a.term_timeout,
            label=executor[0],
            journal=self.journal,
        )
        restarts = Restarter(self)
        watcher = EndWatcher()
        watcher.start()
        self.pool.start_all()
        t0 = time.monotonic()
        feeder.start(t0, 0.7 * a.fault_seconds)
        pending = list(schedule)
        while pending or time.monotonic() - t0 < a.fault_seconds:
            self.deadline.check()
            now = time.monotonic() - t0
            while pending and pending[0].at <= now:
                fault = pending.pop(0)
                self.apply(fault, restarts)
            self.pool.poll()
            feeder.raise_error()
            time.sleep(0.05)
        while restarts.busy():
            self.deadline.check()
            self.pool.poll()
            time.sleep(0.05)
        restarts.stop()
        faults_done = time.monotonic()
        self.say(
            f"faults over ({self.pool.kills} SIGKILL, {self.pool.terms} SIGTERM, "
            f"{restarts.done} restart(s)); waiting for the feeder and the drain"
        )
        while feeder.is_alive():
            self.deadline.check()
            self.pool.poll()
            feeder.raise_error()
            time.sleep(0.05)
        feeder.raise_error()
        drain_from = max(faults_done, feeder.finished_at or faults_done)
        pks = sorted(feeder.queued)
        drained_at = self.wait_drain(pks, drain_from)
        drain_seconds = None if drained_at is None else drained_at - drain_from
        self.say(
            "drained in " + ("(not drained)" if drain_seconds is None else f"{drain_seconds:.1f} s")
        )

        watcher.stop()
        injected = self.inject_doubles(executor, feeder, proc_witness)
        leftovers = self.wait_cleanup(executor, pks, proc_witness, output_dir)
        self.say("stopping the workers (SIGTERM)")
        self.pool.stop_all(grace=a.term_timeout)

        if executor == "docker":
            assert self.witness is not None
            client = self.docker.client()
            try:
                self.witness.sync(client, TEST_IMAGE)
                self.witness.snapshot(client)
            finally:
                client.close()
            self.witness.stop()
            runs = self.witness.runs()
            scenario.facts["witness"] = {
                "events": self.witness.events_seen,
                "reconnects": self.witness.reconnects,
                "containers": len(self.witness.containers),
                "errors": self.witness.errors[-5:],
            }
            unit = "container"
            scenario.facts["end_latency"] = end_latencies(
                runs,
                {pk: (r.status, r.attempt) for pk, r in self._rows(pks).items()},
                watcher.first_terminal,
                watcher.holders,
                [Outage(r["kind"], r["down_at"], r["back_at"]) for r in restarts.log],
                self.pool.lost_at(),
            )
        else:
            assert proc_witness is not None
            runs = proc_witness.runs()
            unit = "process"
            scenario.facts["witness"] = {"runs": len(runs)}

        rows = self._rows(pks)
        outcome = Outcome(
            queued=dict(feeder.queued),
            rows=rows,
            runs=runs,
            leftovers=leftovers,
            workers=self.pool.lives(),
            drain_seconds=drain_seconds,
            retention=a.retention,
            unit=unit,
            injected_doubles=len(injected),
        )
        scenario.rows = compute(outcome)
        statuses: dict[str, int] = {}
        for row in rows.values():
            statuses[row.status] = statuses.get(row.status, 0) + 1
        workers = self.pool.workers
        scenario.facts.update(
            jobs=len(pks),
            statuses=statuses,
            sigkills=self.pool.kills,
            sigterms=self.pool.terms,
            # What the faults did, by the workers' exit statuses (not by what was sent):
            # workers that ended killed by the suite's SIGKILL, and workers that ended
            # with status 0 after a SIGTERM of the fault phase (not the final stop).
            sigkilled_exits=sum(
                1
                for w in workers
                if w.signal_sent == "SIGKILL" and w.proc.returncode == -signal.SIGKILL
            ),
            sigterm_clean_exits=sum(
                1
                for w in workers
                if w.signal_sent == "SIGTERM" and not w.final_stop and w.proc.returncode == 0
            ),
            restarts=restarts.log,
            worker_processes=len(self.pool.workers),
            fault_seconds=a.fault_seconds,
            injected_doubles=injected,
        )
        self.kill_job_processes(proc_witness)
        self.pool = None
        return scenario

    @staticmethod
    def _rows(pks: list[int]) -> dict[int, JobRow]:
        from container_manager.models import ContainerJob

        return {
            r["pk"]: JobRow(
                pk=r["pk"],
                status=r["status"],
                exit_code=r["exit_code"],
                stdout=r["stdout"],
                error_code=r["error_code"],
                attempt=r["attempt"],
            )
            for r in ContainerJob.objects.filter(pk__in=pks).values(
                "pk", "status", "exit_code", "stdout", "error_code", "attempt"
            )
        }

    def inject_doubles(
        self, executor: str, feeder: Feeder, witness: ProcessWitness | None
    ) -> list[int]:
        """Run the commands of ``--inject-double`` completed jobs once more, as a second
        run of their last attempt, outside the product: the witness must count each."""
        from container_manager.models import ContainerJob

        count = self.args.inject_double
        if count <= 0:
            return []
        completed = set(
            ContainerJob.objects.filter(pk__in=list(feeder.queued), status="completed").values_list(
                "pk", flat=True
            )
        )
        if executor == "docker":
            assert self.witness is not None
            runs = self.witness.runs()
        else:
            assert witness is not None
            runs = witness.runs()
        started: dict[int, list[Any]] = {}
        for r in runs:
            if r.started is not None:
                started.setdefault(r.job, []).append(r)
        chosen = [pk for pk in sorted(completed) if len(started.get(pk, [])) == 1][:count]
        for pk in chosen:
            marker = feeder.queued[pk]
            attempt = started[pk][0].attempt or 1
            if executor == "docker":
                client = self.docker.client(timeout=60)
                try:
                    box = client.create_container(
                        TEST_IMAGE,
                        ["/bin/sh", "-c", docker_command(marker, 0.1)],
                        labels={
                            LABEL_JOB: str(pk),
                            LABEL_ATTEMPT: str(attempt),
                            RUN_LABEL: self.run_id,
                        },
                        host_config=client.create_host_config(network_mode="none"),
                    )
                    client.start(box["Id"])
                    client.wait(box["Id"], timeout=60)
                    client.remove_container(box["Id"], force=True)
                finally:
                    client.close()
            else:
                assert witness is not None
                key = next(k for k, v in witness.pk_of_key.items() if v == pk)
                folder = tempfile.mkdtemp(
                    prefix=f"inject-job-{pk}-a{attempt}-", dir=witness.directory
                )
                subprocess.run(
                    ["/bin/sh", "-c", process_command(marker, 0.1)],
                    cwd=folder,
                    env={
                        "PATH": os.environ.get("PATH", os.defpath),
                        "CHAOS_RUN": self.run_id,
                        "CHAOS_KEY": key,
                        "CHAOS_DIR": str(witness.directory),
                    },
                    stdout=subprocess.DEVNULL,
                    check=True,
                    timeout=60,
                )
        self.say(f"injected a second run of job(s) {chosen} (self-check)")
        return chosen

    def apply(self, fault: Fault, restarts: Restarter) -> None:
        assert self.pool is not None
        if fault.kind in (KILL, TERM):
            assert fault.slot is not None
            sig = signal.SIGKILL if fault.kind == KILL else signal.SIGTERM
            self.pool.hit(fault.slot, sig)
        else:
            restarts.submit(fault.kind)

    def wait_drain(self, pks: list[int], since: float) -> float | None:
        """When every queued job is terminal; None if not within --drain-timeout."""
        from django.db import OperationalError, connection

        from container_manager.models import ContainerJob
        from container_manager.states import TERMINAL_STATUSES

        assert self.pool is not None
        end = since + self.args.drain_timeout
        last_report = 0.0
        while True:
            self.deadline.check()
            self.pool.poll()
            left: int | None
            try:
                left = (
                    ContainerJob.objects.filter(pk__in=pks)
                    .exclude(status__in=TERMINAL_STATUSES)
                    .count()
                )
            except OperationalError:
                connection.close()
                left = None
            now = time.monotonic()
            if left == 0:
                return now
            if now >= end:
                return None
            if now - last_report >= 10:
                last_report = now
                self.say(f"  {'?' if left is None else left} job(s) not terminal yet")
            time.sleep(0.25)

    def wait_cleanup(
        self, executor: str, pks: list[int], witness: ProcessWitness | None, output_dir: Path
    ) -> list[Any]:
        """Leftovers of terminal jobs, once none remain or --cleanup-grace passed."""
        from container_manager.models import ContainerJob
        from container_manager.states import TERMINAL_STATUSES

        assert self.pool is not None
        end = time.monotonic() + self.args.cleanup_grace
        terminal = set(
            ContainerJob.objects.filter(pk__in=pks, status__in=TERMINAL_STATUSES).values_list(
                "pk", flat=True
            )
        )
        while True:
            self.deadline.check()
            self.pool.poll()
            if executor == "docker":
                assert self.witness is not None
                client = self.docker.client()
                try:
                    rows = client.containers(
                        all=True, filters={"label": f"container_manager.chaos_run={self.run_id}"}
                    )
                finally:
                    client.close()
                found = self.witness.leftovers(rows)
            else:
                assert witness is not None
                found = witness.leftovers(output_dir)
            counted = [item for item in found if item.job in terminal]
            if not counted or self.args.retention == "keep" or time.monotonic() >= end:
                if counted:
                    self.say(f"  {len(counted)} leftover(s) after {self.args.cleanup_grace:.0f} s")
                return found
            time.sleep(0.5)

    def kill_job_processes(self, witness: ProcessWitness | None) -> None:
        """SIGKILL, by pid, job processes of this run still alive (started by our workers)."""
        if witness is None:
            return
        for pid in witness.live_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- tear-down -------------------------------------------------------------------
    def tear_down(self) -> None:
        """Stop everything the run started, by PID; each step even if an earlier one failed."""
        steps: list[tuple[str, Any]] = []
        if self.pool is not None:
            steps.append(("workers", self.pool.kill_all))
        steps += [
            (f"job processes {w.directory}", lambda w=w: self.kill_job_processes(w))
            for w in self.process_witnesses
        ]
        if self.witness is not None:
            steps.append(("witness", self.witness.stop))
        steps += [
            ("database connections", self._close_connections),
            ("dockerd", lambda: self.docker.stop(grace=60)),
            ("PostgreSQL", lambda: self.pg.stop(grace=60)),
        ]
        steps += [
            (f"job processes {w.directory}", lambda w=w: self.kill_job_processes(w))
            for w in self.process_witnesses
        ]
        steps.append(("mounts", lambda: unmount_under(self.work)))
        for what, step in steps:
            try:
                step()
            except BaseException as exc:
                print(f"chaos: tear-down of {what} failed: {exc!r}", file=sys.stderr, flush=True)

    @staticmethod
    def _close_connections() -> None:
        from django.db import connections

        connections.close_all()


class Feeder(threading.Thread):
    """Queues the scenario's jobs at a steady pace, through the product's API, across outages."""

    def __init__(
        self,
        run: Run,
        executor: str,
        host_id: int,
        specs: list[tuple[str, str, float]],
        witness: ProcessWitness | None,
    ) -> None:
        super().__init__(name="chaos-feeder", daemon=True)
        self.run_ = run
        self.executor = executor
        self.host_id = host_id
        self.specs = specs
        self.witness = witness
        self.queued: dict[int, str] = {}
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self.retries = 0
        self._t0 = 0.0
        self._seconds = 0.0

    def start(self, t0: float = 0.0, seconds: float = 0.0) -> None:
        self._t0, self._seconds = t0, seconds
        super().start()

    def raise_error(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the feeder failed: {self.error!r}") from self.error

    def run(self) -> None:
        from django.db import connection

        try:
            total = len(self.specs)
            for index, spec in enumerate(self.specs):
                due = self._t0 + self._seconds * index / max(1, total)
                while time.monotonic() < due:
                    time.sleep(max(0.0, min(0.05, due - time.monotonic())))
                self.run_.deadline.check()
                self.queue_one(*spec)
            self.finished_at = time.monotonic()
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def queue_one(self, key: str, marker: str, sleep: float) -> None:
        from django.db import DatabaseError, connection, transaction

        from container_manager.models import ContainerJob
        from container_manager.queue import queue_manager

        name = f"chaos-{self.run_.run_id}-{key}"
        if self.executor == "docker":
            command = docker_command(marker, sleep)
            environment = {"CHAOS_RUN": self.run_.run_id, "CHAOS_KEY": key}
            image = TEST_IMAGE
        else:
            assert self.witness is not None
            command = process_command(marker, sleep)
            environment = {
                "CHAOS_RUN": self.run_.run_id,
                "CHAOS_KEY": key,
                "CHAOS_DIR": str(self.witness.directory),
            }
            image = ""
        while True:
            self.run_.deadline.check()
            try:
                existing = ContainerJob.objects.filter(name=name).values_list("pk", flat=True)
                pk = next(iter(existing), None)
                if pk is None:
                    with transaction.atomic():
                        job = ContainerJob.objects.create(
                            name=name,
                            host_id=self.host_id,
                            image=image,
                            command=command,
                            is_shell_command=True,
                            environment=environment,
                            timeout_seconds=600,
                        )
                        queue_manager.queue_job(job)
                    pk = job.pk
                break
            except DatabaseError:
                # The cluster is down (a scheduled restart): the transaction is
                # either committed or not at all; the look-up by name tells which.
                self.retries += 1
                connection.close()
                time.sleep(0.2)
        self.queued[int(pk)] = marker
        if self.witness is not None:
            self.witness.pk_of_key[key] = int(pk)


class Restarter:
    """Runs the scheduled restarts one after the other, in a thread of their own."""

    def __init__(self, run: Run) -> None:
        self.run_ = run
        self.jobs: queue.Queue[str | None] = queue.Queue()
        self.log: list[dict[str, Any]] = []
        self.done = 0
        self.error: BaseException | None = None
        self._busy = threading.Event()
        self.thread = threading.Thread(target=self._work, name="chaos-restarts", daemon=True)
        self.thread.start()

    def submit(self, kind: str) -> None:
        self._busy.set()
        self.jobs.put(kind)

    def busy(self) -> bool:
        if self.error is not None:
            raise RuntimeError(f"a restart failed: {self.error!r}") from self.error
        return self._busy.is_set() or not self.jobs.empty()

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=5)

    def _work(self) -> None:
        run = self.run_
        while True:
            kind = self.jobs.get()
            if kind is None:
                return
            self._busy.set()
            try:
                started = time.monotonic()
                if kind == PG_RESTART:
                    run.pg.stop()
                    down = time.monotonic()
                    run.say(f"PostgreSQL stopped ({down - started:.1f} s)")
                    time.sleep(run.args.pg_down)
                    run.pg.start(run.deadline)
                elif kind == DOCKER_RESTART:
                    run.docker.stop()
                    down = time.monotonic()
                    if run.witness is not None:
                        run.witness.engine_stopped(time.time())
                    run.say(f"dockerd stopped ({down - started:.1f} s)")
                    time.sleep(run.args.docker_down)
                    run.docker.start(run.deadline)
                else:
                    raise ValueError(kind)
                back = time.monotonic()
                run.say(f"{kind}: back after {back - down:.1f} s down")
                back_at = time.time()
                self.log.append(
                    {
                        "kind": kind,
                        "stop_seconds": round(down - started, 2),
                        "down_seconds": round(back - down, 2),
                        # Wall times, to set against the engine's event times.
                        "down_at": back_at - (back - started),
                        "back_at": back_at,
                    }
                )
                self.done += 1
            except BaseException as exc:
                self.error = exc
            finally:
                if self.jobs.empty():
                    self._busy.clear()


# --- report --------------------------------------------------------------------------


def print_report(run: Run, wall: float, expected: int) -> bool:
    ok = run.error is None and len(run.scenarios) == expected
    print()
    print(
        f"chaos run {run.run_id}: seed {run.args.seed}, {run.args.jobs} jobs and "
        f"{run.args.workers} workers (--max-concurrent {run.args.max_concurrent}) per executor, "
        f"lease {run.args.lease} s, heartbeat {run.args.heartbeat} s"
    )
    for scenario in run.scenarios:
        f = scenario.facts
        print()
        restarts = ", ".join(f"{r['kind']} ({r['down_seconds']} s down)" for r in f["restarts"])
        print(
            f"== {scenario.executor}: {f['jobs']} jobs, {f['sigkills']} SIGKILL, "
            f"{f['sigterms']} SIGTERM ({f['sigkilled_exits']} workers ended by SIGKILL, "
            f"{f['sigterm_clean_exits']} cleanly by SIGTERM), restarts: {restarts or 'none'}; "
            f"{f['worker_processes']} worker processes; statuses {f['statuses']}"
        )
        print(f"   witness: {f['witness']}")
        for group, fig in f.get("end_latency", {}).items():
            print(
                f"   end recorded after the container's death, {group}: {fig['count']} ends, "
                f"p50 {fig['p50']} s, p99 {fig['p99']} s, max {fig['max']} s"
            )
        width = max(len(r.name) for r in scenario.rows)
        for row in scenario.rows:
            mark = ("ok" if row.ok else "FAIL") if row.invariant else "--"
            value = "-" if row.value is None else row.value
            note = f"  (expected {row.expected}: injected)" if row.expected else ""
            print(f"   {row.name:<{width}}  {value!s:>8}  {mark}{note}")
        for row in scenario.rows:
            if row.details and (not row.ok or not row.invariant):
                print(f"   {row.name}:")
                for line in row.details:
                    print(f"      {line}")
        ok = ok and all(r.ok for r in scenario.rows)
    print()
    if run.error:
        print(f"RUN FAILED: {run.error}")
    print(f"{'PASS' if ok else 'FAIL'}: wall time {wall:.1f} s; logs in {run.logs}")
    return ok


def write_json(run: Run, path: Path, ok: bool, wall: float) -> None:
    data = {
        "ok": ok,
        "error": run.error,
        "seed": run.args.seed,
        "jobs": run.args.jobs,
        "workers": run.args.workers,
        "wall_seconds": round(wall, 1),
        "logs": str(run.logs),
        "scenarios": {
            s.executor: {
                "facts": s.facts,
                "rows": [
                    {
                        "name": r.name,
                        "value": r.value,
                        "expected": r.expected,
                        "invariant": r.invariant,
                        "ok": r.ok,
                        "details": r.details,
                    }
                    for r in s.rows
                ],
                "schedule": [f.describe() for f in s.schedule],
            }
            for s in run.scenarios
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the run as Ctrl-C does, through the clean-up."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def watchdog(run: Run) -> None:
    """Past the deadline the main thread is interrupted; a minute later, the last resort."""
    while time.monotonic() < run.deadline.at:
        time.sleep(0.5)
    import _thread

    _thread.interrupt_main()
    time.sleep(90)
    print("chaos: the clean-up did not end a minute and a half after the deadline", flush=True)
    with contextlib.suppress(Exception):
        if run.pool is not None:
            run.pool.kill_all()
        for proc in (run.docker.proc, run.pg.proc):
            if proc is not None and alive(proc.pid):
                proc.kill()
    os._exit(EXIT_ERROR)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    executors = list(EXECUTORS) if args.executor == "both" else [args.executor]
    run = Run(args)
    threading.Thread(target=watchdog, args=(run,), name="chaos-watchdog", daemon=True).start()
    status = EXIT_ERROR
    try:
        with signals_raise():
            try:
                run.set_up(executors)
                for index, executor in enumerate(executors):
                    run.scenarios.append(run.run_scenario(executor, index))
            except DeadlineExceeded:
                run.error = f"stopped at the duration limit ({args.duration_limit:.0f} s)"
            except KeyboardInterrupt as exc:
                run.error = f"interrupted ({exc or 'Ctrl-C'})"
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                run.say("tearing down (workers, dockerd, PostgreSQL)")
                run.tear_down()
    finally:
        wall = time.monotonic() - run.started
        ok = print_report(run, wall, len(executors))
        if args.report is not None:
            write_json(run, args.report, ok, wall)
        run.journal.close()
        if run.error is None:
            status = EXIT_OK if ok else EXIT_INVARIANTS
        if ok and not args.keep and args.work_dir is None:
            shutil.rmtree(run.work, ignore_errors=True)
        else:
            for data in (run.pg.data, run.docker.data_root, run.docker.exec_root):
                shutil.rmtree(data, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
