"""A mock executor for your own tests: jobs "run" in memory, no Docker needed.

A host with ``executor_type="mock"`` runs nothing. Each container of its jobs
exists only in the memory of the process that launched it, "runs" for
``executor_config["run_seconds"]`` (default 0) and ends with
``executor_config["exit_code"]`` (default 0), printing
``executor_config["stdout"]`` and ``["stderr"]`` (by default
``"mock: <command>\\n"`` and nothing). It replaces 1.0.x's ``mock`` executor
(docs/migration-guide.md). Example, in a test::

    host = ExecutorHost.objects.create(
        name="mock", executor_type="mock", executor_config={"stdout": "done\\n"}
    )
    job = queue_manager.create_and_queue(command="anything", host=host)
    call_command("process_container_jobs", "--queue-mode", "--once")
    job.refresh_from_db()
    assert (job.status, job.stdout) == ("completed", "done\\n")

With ``"run_seconds": None`` a container runs until the test ends it with
:func:`end_job`, to test what your code does while a job runs (cancel it,
time it out).

Its containers die with the process that launched them, like local
processes: a worker with ``--once`` waits for them to end before it exits,
and a worker that is killed loses them (its jobs are queued again).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from container_manager.exceptions import ConfigurationError
from container_manager.executors import get_executor
from container_manager.executors.base import (
    ContainerRef,
    Executor,
    ExitStatus,
    HealthReport,
    LaunchSpec,
    Logs,
    StepCallback,
)
from container_manager.models import ContainerJob, ExecutorHost

_ids = itertools.count(1)


@dataclass
class _Container:
    ref: ContainerRef
    spec: LaunchSpec
    ends_at: float | None
    exit_code: int
    stdout: str
    stderr: str
    ended: ExitStatus | None = None
    is_paused: bool = False


def _option(config: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = config.get(key, default)
    if value is None and key == "run_seconds":
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigurationError(
            f'executor_config["{key}"] of a mock host must be a {kind.__name__}, not {value!r}'
        )
    return value


class MockExecutor(Executor):
    """Runs each attempt in memory (``executor_type="mock"``); see the module's docs."""

    supports_pause = True
    outlives_worker = False

    def __init__(self, host: ExecutorHost) -> None:
        super().__init__(host)
        config = host.executor_config or {}
        run_seconds = _option(config, "run_seconds", (int, float), 0)  # type: ignore[arg-type]
        if run_seconds is not None and run_seconds < 0:
            raise ConfigurationError('executor_config["run_seconds"] must be 0 or more')
        self.run_seconds: float | None = None if run_seconds is None else float(run_seconds)
        self.exit_code: int = _option(config, "exit_code", int, 0)
        self.stdout: str | None = config.get("stdout")
        self.stderr: str = _option(config, "stderr", str, "")
        self._lock = threading.Condition()
        self._containers: dict[tuple[int, int], _Container] = {}
        #: Every launch, in order: what your code asked to run.
        self.launches: list[LaunchSpec] = []

    def launch(self, spec: LaunchSpec, on_step: StepCallback | None = None) -> ContainerRef:
        """Start the attempt in memory; the same attempt twice returns the same container."""
        with self._lock:
            existing = self._containers.get((spec.job_id, spec.attempt))
            if existing is not None:
                return existing.ref
            self.launches.append(spec)
            ref = ContainerRef(spec.job_id, spec.attempt, f"mock-{next(_ids)}")
            stdout = (
                self.stdout if isinstance(self.stdout, str) else f"mock: {' '.join(spec.command)}\n"
            )
            ends_at = None if self.run_seconds is None else time.monotonic() + self.run_seconds
            self._containers[(spec.job_id, spec.attempt)] = _Container(
                ref, spec, ends_at, self.exit_code, stdout, self.stderr
            )
            self._lock.notify_all()
            return ref

    def end(
        self, ref: ContainerRef, exit_code: int | None = None, stdout: str | None = None
    ) -> None:
        """End a running container now, with this exit code and output (None: the host's)."""
        with self._lock:
            container = self._containers.get((ref.job_id, ref.attempt))
            if container is None or container.ended is not None:
                return
            if exit_code is not None:
                container.exit_code = exit_code
            if stdout is not None:
                container.stdout = stdout
            container.ended = ExitStatus(ref, container.exit_code)
            self._lock.notify_all()

    def _end_due(self, now: float) -> None:
        for container in self._containers.values():
            if (
                container.ended is None
                and container.ends_at is not None
                and now >= container.ends_at
            ):
                container.ended = ExitStatus(container.ref, container.exit_code)

    def find(self, job_id: int, attempt: int) -> ContainerRef | None:
        with self._lock:
            container = self._containers.get((job_id, attempt))
            return container.ref if container else None

    def list_managed(self) -> list[ContainerRef]:
        with self._lock:
            return [c.ref for c in self._containers.values()]

    def wait_finished(
        self, refs: Iterable[ContainerRef], timeout_seconds: float
    ) -> list[ExitStatus]:
        keys = [(ref.job_id, ref.attempt) for ref in refs]
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        with self._lock:
            while True:
                now = time.monotonic()
                self._end_due(now)
                ended = [
                    c.ended
                    for key in keys
                    if (c := self._containers.get(key)) is not None and c.ended is not None
                ]
                if ended or now >= deadline:
                    return ended
                due = [
                    c.ends_at
                    for key in keys
                    if (c := self._containers.get(key)) is not None and c.ends_at is not None
                ]
                self._lock.wait(min([deadline, *due]) - now)

    def logs(self, ref: ContainerRef, max_bytes: int) -> Logs:
        with self._lock:
            container = self._containers.get((ref.job_id, ref.attempt))
        if container is None:
            return Logs(stdout="", stderr="")
        return Logs(stdout=container.stdout[:max_bytes], stderr=container.stderr[:max_bytes])

    def kill(self, ref: ContainerRef) -> None:
        self.end(ref, 137)

    def remove(self, ref: ContainerRef) -> None:
        with self._lock:
            self._containers.pop((ref.job_id, ref.attempt), None)

    def pause(self, ref: ContainerRef) -> None:
        with self._lock:
            container = self._containers.get((ref.job_id, ref.attempt))
            if container is not None:
                container.is_paused = True

    def resume(self, ref: ContainerRef) -> None:
        with self._lock:
            container = self._containers.get((ref.job_id, ref.attempt))
            if container is not None:
                container.is_paused = False

    def health_check(self) -> HealthReport:
        return HealthReport(True)


def mock_executor(host: ExecutorHost) -> MockExecutor:
    """The mock executor of a ``mock`` host, in this process.

    Raises:
        TypeError: The host is not a mock host.
    """
    executor = get_executor(host)
    if not isinstance(executor, MockExecutor):
        raise TypeError(f"Host {host.name!r} is a {host.executor_type} host, not a mock host")
    return executor


def end_job(job: ContainerJob, exit_code: int = 0, stdout: str | None = None) -> bool:
    """End the running container of ``job`` on its mock host now; the worker then records the end.

    Returns:
        True when a running container of the job's current attempt was ended.
    """
    if job.host is None:
        return False
    executor = mock_executor(job.host)
    ref = executor.find(int(job.pk), int(job.attempt))
    if ref is None:
        return False
    executor.end(ref, exit_code, stdout)
    return True


__all__ = ["MockExecutor", "end_job", "mock_executor"]
